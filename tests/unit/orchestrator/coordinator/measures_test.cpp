#include "pantry/orchestrator/coordinator/measures.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

using flaky_set = std::set<std::string, std::less<>>;

clock::time_point at(int second) {
  return clock::time_point(std::chrono::seconds(second) + std::chrono::hours(24 * 20000));
}

job_record job(job_id id, std::string name, job_state state, int queued, int started, int finished,
               double cpu = 0) {
  job_record j;
  j.id = id;
  j.pipeline = 7;
  j.name = name;
  j.spec_name = std::move(name);
  j.state = state;
  j.queued_at = at(queued);
  if (started >= 0) j.started_at = at(started);
  j.finished_at = at(finished);
  j.cpu_seconds = cpu;
  return j;
}

pipeline_record pipeline(pipeline_state state, int created, int finished,
                         std::vector<job_record> jobs) {
  pipeline_record p;
  p.id = 7;
  p.project = "acme/shop";
  p.state = state;
  p.created_at = at(created);
  p.finished_at = at(finished);
  p.jobs = std::move(jobs);
  return p;
}

test_run run_of(job_id job, pipeline_id p,
                std::vector<std::pair<std::string, test_outcome>> tests) {
  test_run r;
  r.project = "acme/shop";
  r.job = job;
  r.pipeline = p;
  for (auto& [id, outcome] : tests) {
    test_result t;
    t.id = id;
    t.outcome = outcome;
    r.results.push_back(std::move(t));
  }
  return r;
}

usual_runtime_fn usual_of(std::map<std::string, double> known) {
  return [known = std::move(known)](const job_record& j) -> std::optional<double> {
    auto it = known.find(j.spec_name);
    if (it == known.end()) return std::nullopt;
    return it->second;
  };
}

TEST(MeasuresTest, PassedPipelineHasTimeToGreenQueueWaitAndCpu) {
  auto p = pipeline(pipeline_state::passed, 100, 160,
                    {job(1, "lint", job_state::passed, 100, 103, 120, 4.5),
                     job(2, "test", job_state::passed, 120, 130, 160, 20.25)});
  auto m = measure_pipeline(p, {}, {}, {}, {});
  EXPECT_THAT(m.time_to_green, Optional(60.0)) << boost::json::serialize(to_json(m));
  EXPECT_EQ(m.time_to_red, std::nullopt);
  EXPECT_DOUBLE_EQ(m.queue_wait, 13.0);
  EXPECT_DOUBLE_EQ(m.cpu_seconds, 24.75);
  EXPECT_DOUBLE_EQ(m.saved_by_stopping_early, 0.0);
  EXPECT_FALSE(m.red_only_flaky);
}

TEST(MeasuresTest, TimeToRedIsTheFirstFailedJobsEnd) {
  // Two failures under keep_going: the earlier end counts, not the first in submission order.
  auto p = pipeline(pipeline_state::failed, 100, 200,
                    {job(1, "slow", job_state::failed, 100, 101, 190),
                     job(2, "fast", job_state::failed, 100, 101, 130)});
  auto m = measure_pipeline(p, {}, {}, {}, {});
  EXPECT_THAT(m.time_to_red, Optional(30.0));
  EXPECT_EQ(m.time_to_green, std::nullopt);
}

TEST(MeasuresTest, TimeToRedIsTheFirstFailingTestsReportWhenTheJobHasOne) {
  // The test job fails at its end (190) but its first test failed at 112; lint (no test
  // results) failed at 130. A quarantined test's failure carries no time and a passing job's
  // failure times do not count.
  auto p = pipeline(pipeline_state::failed, 100, 200,
                    {job(1, "test", job_state::failed, 100, 110, 190),
                     job(2, "lint", job_state::failed, 100, 101, 130),
                     job(3, "other", job_state::passed, 100, 101, 105)});
  auto r = run_of(1, 7,
                  {{"t::late", test_outcome::failed},
                   {"t::early", test_outcome::error},
                   {"t::quarantined", test_outcome::failed}});
  r.results[0].failed_at = at(150);
  r.results[1].failed_at = at(112);
  auto passed = run_of(3, 7, {{"t::q", test_outcome::failed}});
  passed.results[0].failed_at = at(102);
  std::vector<test_run> runs{r, passed};
  auto m = measure_pipeline(p, runs, {}, {}, {});
  EXPECT_THAT(m.time_to_red, Optional(12.0)) << boost::json::serialize(to_json(m));

  // Without failure times (a runner without the plugin): the first failed job's end.
  auto plain = measure_pipeline(p, {}, {}, {}, {});
  EXPECT_THAT(plain.time_to_red, Optional(30.0));
}

TEST(MeasuresTest, AFailureTimeFromAnotherClockIsHeldWithinItsJob) {
  auto p = pipeline(pipeline_state::failed, 100, 200,
                    {job(1, "test", job_state::failed, 100, 120, 190)});
  auto r = run_of(1, 7, {{"t::x", test_outcome::failed}});
  r.results[0].failed_at = at(50);  // a runner's clock 70 s behind
  std::vector<test_run> runs{r};
  EXPECT_THAT(measure_pipeline(p, runs, {}, {}, {}).time_to_red, Optional(20.0));
  runs[0].results[0].failed_at = at(900);  // ahead
  EXPECT_THAT(measure_pipeline(p, runs, {}, {}, {}).time_to_red, Optional(90.0));
}

TEST(MeasuresTest, StoppingEarlySavesTheUsualRuntimeOfStoppedJobs) {
  // lint fails at 120; test (running since 110) is cancelled at 120 having run 10 of its usual
  // 60 s; deploy (queued) is skipped; docs has no history; build passed before the failure.
  auto p = pipeline(pipeline_state::failed, 100, 120,
                    {job(1, "build", job_state::passed, 100, 100, 105),
                     job(2, "lint", job_state::failed, 100, 101, 120),
                     job(3, "test", job_state::cancelled, 100, 110, 120),
                     job(4, "deploy", job_state::skipped, 100, -1, 120),
                     job(5, "docs", job_state::cancelled, 100, -1, 120)});
  auto m = measure_pipeline(p, {}, {}, {},
                            usual_of({{"build", 5}, {"test", 60}, {"deploy", 15}, {"lint", 19}}));
  EXPECT_DOUBLE_EQ(m.saved_by_stopping_early, 50.0 + 15.0) << boost::json::serialize(to_json(m));
}

TEST(MeasuresTest, ASupersededPipelineSavesByItsSupersedeOnly) {
  auto p = pipeline(pipeline_state::cancelled, 100, 120,
                    {job(1, "test", job_state::cancelled, 100, 101, 120)});
  p.superseded_by = 8;
  p.saved_runner_seconds = 42.5;
  auto m = measure_pipeline(p, {}, {}, {}, usual_of({{"test", 60}}));
  EXPECT_DOUBLE_EQ(m.saved_by_supersede, 42.5);
  EXPECT_DOUBLE_EQ(m.saved_by_stopping_early, 0.0);
}

TEST(MeasuresTest, RedOnlyFlakyWhenEveryFailingTestIsFlakyOrQuarantined) {
  auto p = pipeline(pipeline_state::failed, 100, 150,
                    {job(1, "test 1/2", job_state::failed, 100, 101, 150),
                     job(2, "test 2/2", job_state::failed, 100, 101, 140)});
  std::vector<test_run> runs{
      run_of(1, 7, {{"t::flaky", test_outcome::failed}, {"t::ok", test_outcome::passed}}),
      run_of(2, 7, {{"t::quarantined", test_outcome::error}}),
      // Another pipeline's failure of the same job id space does not count.
      run_of(9, 6, {{"t::real", test_outcome::failed}}),
  };
  auto m = measure_pipeline(p, runs, flaky_set{"t::flaky"}, flaky_set{"t::quarantined"}, {});
  EXPECT_THAT(m.failing_tests, ElementsAre("t::flaky", "t::quarantined"));
  EXPECT_TRUE(m.red_only_flaky) << boost::json::serialize(to_json(m));

  auto without_quarantine = measure_pipeline(p, runs, flaky_set{"t::flaky"}, {}, {});
  EXPECT_FALSE(without_quarantine.red_only_flaky);
}

TEST(MeasuresTest, AFailedJobWithoutFailingTestsIsNotExplainedByFlakes) {
  // lint failed with no test results; test failed on a flaky test only.
  auto p = pipeline(pipeline_state::failed, 100, 150,
                    {job(1, "lint", job_state::failed, 100, 101, 110),
                     job(2, "test", job_state::failed, 100, 101, 150)});
  std::vector<test_run> runs{run_of(2, 7, {{"t::flaky", test_outcome::failed}})};
  auto m = measure_pipeline(p, runs, flaky_set{"t::flaky"}, {}, {});
  EXPECT_FALSE(m.red_only_flaky);
}

TEST(MeasuresTest, ATestThatPassedItsRerunDidNotMakeItRed) {
  auto p = pipeline(pipeline_state::failed, 100, 150,
                    {job(1, "test", job_state::failed, 100, 101, 150)});
  auto r = run_of(1, 7, {{"t::flaky", test_outcome::failed}, {"t::real", test_outcome::failed}});
  r.results[0].rerun = test_outcome::passed;
  std::vector<test_run> runs{r};
  auto m = measure_pipeline(p, runs, flaky_set{"t::flaky"}, {}, {});
  EXPECT_THAT(m.failing_tests, ElementsAre("t::real"));
  EXPECT_FALSE(m.red_only_flaky);
}

TEST(MeasuresTest, AJobRedOnlyByFailuresThatPassedTheirRerunsIsRedOnlyFlaky) {
  // The plugin keeps the first run's status: the job failed, and only flakes failed it.
  auto p = pipeline(pipeline_state::failed, 100, 150,
                    {job(1, "test", job_state::failed, 100, 101, 150)});
  auto r = run_of(1, 7, {{"t::coin", test_outcome::failed}, {"t::ok", test_outcome::passed}});
  r.results[0].rerun = test_outcome::passed;
  std::vector<test_run> runs{r};
  auto m = measure_pipeline(p, runs, {}, {}, {});
  EXPECT_THAT(m.failing_tests, ElementsAre());
  EXPECT_TRUE(m.red_only_flaky) << boost::json::serialize(to_json(m));
}

TEST(MeasuresTest, MedianOfOddEvenAndEmpty) {
  EXPECT_THAT(median({3, 1, 2}), Optional(2.0));
  EXPECT_THAT(median({4, 1, 3, 2}), Optional(2.5));
  EXPECT_EQ(median({}), std::nullopt);
}

TEST(MeasuresTest, AggregateCountsRatesAndMedians) {
  pipeline_measures green1, green2, red_flaky, red_real, cancelled, running;
  green1.state = green2.state = pipeline_state::passed;
  green1.time_to_green = 60;
  green2.time_to_green = 80;
  green1.queue_wait = 1;
  green2.queue_wait = 3;
  red_flaky.state = red_real.state = pipeline_state::failed;
  red_flaky.time_to_red = 10;
  red_flaky.red_only_flaky = true;
  red_flaky.queue_wait = 2;
  red_real.time_to_red = 30;
  red_real.queue_wait = 10;
  red_real.cpu_seconds = 7;
  red_real.saved_by_stopping_early = 20;
  cancelled.state = pipeline_state::cancelled;
  cancelled.saved_by_supersede = 5;
  cancelled.queue_wait = 0;
  running.state = pipeline_state::running;
  running.cpu_seconds = 1000;  // not ended: outside the aggregate
  std::vector<pipeline_measures> all{green1, green2, red_flaky, red_real, cancelled, running};

  auto a = aggregate_measures("acme/shop", all, 200, 3);
  const std::string shown = boost::json::serialize(to_json(a));
  EXPECT_EQ(a.pipelines, 5u) << shown;
  EXPECT_EQ(a.passed, 2u);
  EXPECT_EQ(a.failed, 2u);
  EXPECT_EQ(a.cancelled, 1u);
  EXPECT_EQ(a.red_only_flaky, 1u);
  EXPECT_THAT(a.flaky_test_rate, Optional(0.015)) << shown;
  EXPECT_THAT(a.red_only_flaky_rate, Optional(0.5)) << shown;
  EXPECT_THAT(a.median_time_to_red, Optional(20.0)) << shown;
  EXPECT_THAT(a.median_time_to_green, Optional(70.0)) << shown;
  EXPECT_THAT(a.median_queue_wait, Optional(2.0)) << shown;
  EXPECT_DOUBLE_EQ(a.cpu_seconds, 7.0);
  EXPECT_DOUBLE_EQ(a.saved_by_supersede, 5.0);
  EXPECT_DOUBLE_EQ(a.saved_by_stopping_early, 20.0);
}

// A job that pulled its image from the cache and fetched `upstream` of its `requests` PyPI files.
job_record with_traffic(job_record j, std::uint64_t requests, std::uint64_t upstream) {
  j.cache.image.cache = {2, 2000};
  j.cache.pypi.cache = {requests - upstream, 100 * (requests - upstream)};
  j.cache.pypi.upstream = {upstream, 100 * upstream};
  return j;
}

TEST(MeasuresTest, CacheHitRatioOfAPipelineSumsItsJobs) {
  auto p = pipeline(pipeline_state::passed, 100, 160,
                    {with_traffic(job(1, "lint", job_state::passed, 100, 103, 120), 4, 4),
                     with_traffic(job(2, "test", job_state::passed, 120, 130, 160), 6, 0),
                     job(3, "package", job_state::passed, 120, 130, 160)});
  auto m = measure_pipeline(p, {}, {}, {}, {});
  const auto o = to_json(m);
  // Requests: 4 image + 6 PyPI hits of 14; bytes: 4000 + 600 of 5000.
  EXPECT_EQ(m.cache.all().total().requests, 14u) << boost::json::serialize(o);
  EXPECT_DOUBLE_EQ(o.at("cache_hit_ratio").as_double(), 10.0 / 14) << boost::json::serialize(o);
  EXPECT_DOUBLE_EQ(o.at("cache_byte_hit_ratio").as_double(), 4600.0 / 5000);
  EXPECT_EQ(o.at("cache").at("pypi").at("upstream").at("requests"), 4);
}

TEST(MeasuresTest, CacheHitRatioOfAProjectIsOverTheWindowsTraffic) {
  auto first = measure_pipeline(
      pipeline(pipeline_state::passed, 0, 10,
               {with_traffic(job(1, "test", job_state::passed, 0, 1, 10), 10, 10)}),
      {}, {}, {}, {});
  auto second = measure_pipeline(
      pipeline(pipeline_state::passed, 20, 30,
               {with_traffic(job(2, "test", job_state::passed, 20, 21, 30), 10, 0)}),
      {}, {}, {}, {});
  EXPECT_THAT(hit_ratio(first.cache).requests, Optional(2.0 / 12));
  EXPECT_THAT(hit_ratio(second.cache).requests, Optional(1.0));
  auto a = aggregate_measures("acme/shop", std::vector{first, second}, 0, 0);
  // 2 + 12 of 24 requests; 2000 + 3000 of 6000 bytes in each pipeline.
  EXPECT_THAT(hit_ratio(a.cache).requests, Optional(14.0 / 24));
  EXPECT_THAT(hit_ratio(a.cache).bytes, Optional(5000.0 / 6000));
  EXPECT_DOUBLE_EQ(to_json(a).at("cache_hit_ratio").as_double(), 14.0 / 24);
}

TEST(MeasuresTest, AggregateOfNothingHasNullRates) {
  auto a = aggregate_measures("acme/shop", {}, 0, 0);
  auto o = to_json(a);
  EXPECT_TRUE(o.at("flaky_test_rate").is_null()) << boost::json::serialize(o);
  EXPECT_TRUE(o.at("red_only_flaky_rate").is_null());
  EXPECT_TRUE(o.at("median_time_to_red").is_null());
  EXPECT_TRUE(o.at("cache_hit_ratio").is_null());
  EXPECT_TRUE(o.at("cache_byte_hit_ratio").is_null());
  EXPECT_EQ(o.at("pipelines").as_uint64(), 0u);
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
