#include "pantry/orchestrator/coordinator/test_history.h"

#include "cache_fixture.h"
#include "keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

clock::time_point at(int minute) {
  return clock::time_point(std::chrono::minutes(minute) + std::chrono::hours(24 * 20000));
}

test_result result_of(std::string id, test_outcome outcome, double seconds,
                      std::optional<test_outcome> rerun = std::nullopt) {
  test_result r;
  r.file = id.substr(0, id.find("::"));
  r.name = id.substr(id.rfind("::") + 2);
  r.id = std::move(id);
  r.outcome = outcome;
  r.seconds = seconds;
  r.rerun = rerun;
  return r;
}

test_run run_of(job_id job, int minute, std::string commit, std::vector<test_result> results) {
  test_run r;
  r.project = "acme/shop";
  r.job = job;
  r.pipeline = job;
  r.job_name = "test";
  r.commit = std::move(commit);
  r.time = at(minute);
  r.results = std::move(results);
  return r;
}

std::vector<job_id> jobs_of(const std::vector<test_run>& runs) {
  std::vector<job_id> out;
  for (const auto& r : runs)
    out.push_back(r.job);
  return out;
}

class TestHistoryTest : public cache_store_test {};

TEST_F(TestHistoryTest, KeyFormatIsStable) {
  // A cache written by one version is read by the next: the format never changes silently.
  EXPECT_EQ(keys::test_run("acme/shop", 7), "ci/tests/acme/shop#00000000000000000007");
  EXPECT_EQ(keys::test_runs_of("acme"), "ci/tests/acme#");
}

TEST_F(TestHistoryTest, RecordedRunsReadBackWholeAfterARestart) {
  auto history = test_history::open(cache_);
  test_run run = run_of(7, 1, "a1b2", {});
  run.patch = "feature-x";
  run.pipeline = 3;
  run.shard = 2;
  run.shards = 3;
  test_result failed = result_of("tests/test_a.py::test_p[1-\xff bytes]", test_outcome::failed,
                                 0.25, test_outcome::passed);
  failed.classname = "tests.test_a";
  failed.message = "assert 1 == 2";
  failed.failed_at = at(1) - std::chrono::milliseconds(1234);
  run.results = {failed, result_of("t.py::ok", test_outcome::skipped, 0)};
  ASSERT_TRUE(history->record(run));

  history.reset();
  reopen_cache();
  history = test_history::open(cache_);
  auto runs = history->runs("acme/shop");
  ASSERT_TRUE(runs) << runs.error().message;
  ASSERT_EQ(runs->size(), 1u);
  const test_run& back = (*runs)[0];
  EXPECT_EQ(back.project, "acme/shop");
  EXPECT_EQ(back.job, 7u);
  EXPECT_EQ(back.pipeline, 3u);
  EXPECT_EQ(back.job_name, "test");
  EXPECT_EQ(back.commit, "a1b2");
  EXPECT_EQ(back.patch, "feature-x");
  EXPECT_EQ(back.shard, 2);
  EXPECT_EQ(back.shards, 3);
  EXPECT_EQ(back.time, at(1));
  ASSERT_EQ(back.results.size(), 2u);
  EXPECT_EQ(back.results[0].id, failed.id);
  EXPECT_EQ(back.results[0].file, "tests/test_a.py");
  EXPECT_EQ(back.results[0].classname, "tests.test_a");
  EXPECT_EQ(back.results[0].outcome, test_outcome::failed);
  EXPECT_EQ(back.results[0].rerun, test_outcome::passed);
  EXPECT_DOUBLE_EQ(back.results[0].seconds, 0.25);
  EXPECT_EQ(back.results[0].message, "assert 1 == 2");
  EXPECT_EQ(back.results[0].failed_at, failed.failed_at);
  EXPECT_EQ(back.results[1].outcome, test_outcome::skipped);
  EXPECT_FALSE(back.results[1].rerun.has_value());
  EXPECT_FALSE(back.results[1].failed_at.has_value());
}

TEST_F(TestHistoryTest, KeepsTheNewestRunsPerProjectAndProjectsApart) {
  history_options o;
  o.max_runs_per_project = 3;
  auto history = test_history::open(cache_, o);
  for (job_id job = 1; job <= 5; ++job) {
    ASSERT_TRUE(history->record(run_of(job, static_cast<int>(job), "c", {})));
  }
  // A project whose name the other's is a prefix of keeps its own runs.
  test_run other = run_of(9, 9, "c", {});
  other.project = "acme/shop/api";
  ASSERT_TRUE(history->record(other));
  other.project = "acme";
  ASSERT_TRUE(history->record(other));

  auto runs = history->runs("acme/shop");
  ASSERT_TRUE(runs) << runs.error().message;
  EXPECT_THAT(jobs_of(*runs), ElementsAre(3u, 4u, 5u));
  EXPECT_THAT(jobs_of(history->runs("acme/shop", 2).value()), ElementsAre(4u, 5u));
  EXPECT_TRUE(history->runs("acme/shop", 0).value().empty());
  EXPECT_THAT(jobs_of(history->runs("acme/shop/api").value()), ElementsAre(9u));
  EXPECT_THAT(jobs_of(history->runs("acme").value()), ElementsAre(9u));
  EXPECT_FALSE(cache_->get_record(keys::test_run("acme/shop", 1)))
      << "a pruned run's record stays behind";
}

TEST_F(TestHistoryTest, RecordingAJobAgainReplacesItsRun) {
  auto history = test_history::open(cache_);
  ASSERT_TRUE(history->record(run_of(4, 1, "c", {result_of("t.py::a", test_outcome::failed, 1)})));
  ASSERT_TRUE(history->record(run_of(4, 2, "c", {result_of("t.py::a", test_outcome::passed, 1)})));
  auto runs = history->runs("acme/shop").value();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].results[0].outcome, test_outcome::passed);
  EXPECT_TRUE(history->remove_run("acme/shop", 4));
  EXPECT_TRUE(history->runs("acme/shop").value().empty());
  auto again = history->remove_run("acme/shop", 4);
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(errc::not_found)) << again.error().message;
}

TEST_F(TestHistoryTest, BadProjectsAndJobsAreRefused) {
  auto history = test_history::open(cache_);
  test_run run = run_of(1, 1, "c", {});
  run.project = "a#b";
  auto r = history->record(run);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("project \"a#b\" holds a '#'"));
  run.project = "ok";
  run.job = 0;
  r = history->record(run);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("job id 0"));
  EXPECT_FALSE(history->runs(""));
}

TEST_F(TestHistoryTest, CorruptRecordIsAnErrorNamingItsKey) {
  auto history = test_history::open(cache_);
  ASSERT_TRUE(history->record(run_of(2, 1, "c", {})));
  const std::string key = keys::test_run("acme/shop", 2);
  const std::string junk = "{\"v\":1,\"project\":3}";
  ASSERT_TRUE(cache_->put_record(key, std::as_bytes(std::span(junk.data(), junk.size()))));
  auto runs = history->runs("acme/shop");
  ASSERT_FALSE(runs);
  EXPECT_TRUE(runs.error().is(errc::corrupt));
  EXPECT_THAT(runs.error().message, HasSubstr("record " + key + ": a member is missing"));
}

TEST(TestHistoryQueriesTest, SummaryHasMedianDurationsOfPassingRunsAndRecentFailures) {
  std::vector<test_run> runs;
  // slow passes at 1, 2, 3, 100 (an outlier), 4 and 5 seconds; fails once, long ago.
  const std::vector<double> times = {9, 1, 2, 3, 100, 4, 5};
  for (int i = 0; i < static_cast<int>(times.size()); ++i) {
    runs.push_back(
        run_of(static_cast<job_id>(i + 1), i, "c" + std::to_string(i),
               {result_of("t.py::slow", i == 0 ? test_outcome::failed : test_outcome::passed,
                          times[static_cast<std::size_t>(i)]),
                result_of("t.py::never_passes", test_outcome::error, 0.5)}));
  }
  runs.push_back(run_of(20, 30, "c", {result_of("u.py::skipped", test_outcome::skipped, 0)}));
  summary_options o;
  o.recent_runs = 3;
  auto stats = summarize(runs, o);
  ASSERT_EQ(stats.size(), 3u);
  const test_stat& slow = stats[1];
  ASSERT_EQ(slow.id, "t.py::slow");
  EXPECT_EQ(slow.file, "t.py");
  EXPECT_EQ(slow.runs, 7u);
  EXPECT_EQ(slow.passes, 6u);
  EXPECT_EQ(slow.failures, 1u);
  // the last 5 passing: 2, 3, 100, 4, 5 → 4
  EXPECT_EQ(slow.seconds, 4.0);
  EXPECT_EQ(slow.last_failed, at(0));
  EXPECT_EQ(slow.last_failed_job, 1u);
  EXPECT_FALSE(slow.failed_recently) << "its failure is older than its last 3 runs";
  EXPECT_EQ(slow.first_seen, at(0));
  EXPECT_EQ(slow.last_seen, at(6));
  const test_stat& never = stats[0];
  ASSERT_EQ(never.id, "t.py::never_passes");
  EXPECT_EQ(never.seconds, 0.5) << "without a pass, the failing runs' median";
  EXPECT_TRUE(never.failed_recently);
  EXPECT_EQ(never.last_outcome, test_outcome::error);
  EXPECT_FALSE(stats[2].seconds.has_value());
  EXPECT_EQ(stats[2].skips, 1u);

  o.job_name = "lint";
  EXPECT_TRUE(summarize(runs, o).empty());
}

TEST(TestHistoryQueriesTest, RecentFailuresAreMostRecentFirstOncePerTest) {
  std::vector<test_run> runs = {
      run_of(1, 1, "c1", {result_of("a.py::x", test_outcome::failed, 1)}),
      run_of(2, 2, "c2", {result_of("b.py::y", test_outcome::error, 1)}),
      run_of(3, 3, "c3", {result_of("a.py::x", test_outcome::failed, 1, test_outcome::failed)}),
      run_of(4, 4, "c4", {result_of("c.py::z", test_outcome::passed, 1)}),
  };
  auto failures = recent_failures(runs, 10);
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].id, "a.py::x");
  EXPECT_EQ(failures[0].job, 3u);
  EXPECT_EQ(failures[0].commit, "c3");
  EXPECT_EQ(failures[0].rerun, test_outcome::failed);
  EXPECT_EQ(failures[1].id, "b.py::y");
  EXPECT_EQ(failures[1].outcome, test_outcome::error);
  EXPECT_EQ(recent_failures(runs, 1).size(), 1u);
}

TEST(TestHistoryQueriesTest, FlakyByRerunAndBySameCommitWithEvidence) {
  std::vector<test_run> runs = {
      // re-run flake in job 1
      run_of(1, 1, "aaa",
             {result_of("f.py::rerun", test_outcome::failed, 1, test_outcome::passed),
              result_of("f.py::commit", test_outcome::failed, 1),
              result_of("f.py::broken", test_outcome::failed, 1, test_outcome::failed)}),
      // same commit, passes in job 2: pairs with job 1's failure
      run_of(2, 2, "aaa",
             {result_of("f.py::rerun", test_outcome::passed, 1),
              result_of("f.py::commit", test_outcome::passed, 1),
              result_of("f.py::broken", test_outcome::failed, 1, test_outcome::failed)}),
      // another commit: a failure after a pass on that commit
      run_of(3, 3, "bbb", {result_of("f.py::commit", test_outcome::passed, 1)}),
      run_of(4, 4, "bbb", {result_of("f.py::commit", test_outcome::error, 1)}),
      // failing on a new commit with no pass on it: not a flake
      run_of(5, 5, "ccc", {result_of("f.py::commit", test_outcome::failed, 1)}),
  };
  auto flaky = flaky_tests(runs);
  ASSERT_EQ(flaky.size(), 2u);
  const flaky_test& commit = flaky[0];
  EXPECT_EQ(commit.id, "f.py::commit");
  EXPECT_EQ(commit.file, "f.py");
  EXPECT_EQ(commit.runs, 5u);
  EXPECT_EQ(commit.flakes, 2u);
  EXPECT_DOUBLE_EQ(commit.rate, 0.4);
  EXPECT_THAT(commit.commits, ElementsAre("bbb", "aaa"));
  EXPECT_EQ(commit.first_seen, at(1));
  EXPECT_EQ(commit.first_flaked, at(2));
  EXPECT_EQ(commit.last_flaked, at(4));
  ASSERT_EQ(commit.evidence.size(), 2u);
  EXPECT_EQ(commit.evidence[0].kind, flake_kind::same_commit);
  EXPECT_EQ(commit.evidence[0].failed_job, 4u);
  EXPECT_EQ(commit.evidence[0].passed_job, 3u);
  EXPECT_EQ(commit.evidence[1].failed_job, 1u);
  EXPECT_EQ(commit.evidence[1].passed_job, 2u);

  const flaky_test& rerun = flaky[1];
  EXPECT_EQ(rerun.id, "f.py::rerun");
  EXPECT_EQ(rerun.flakes, 1u);
  ASSERT_EQ(rerun.evidence.size(), 1u);
  EXPECT_EQ(rerun.evidence[0].kind, flake_kind::rerun);
  EXPECT_EQ(rerun.evidence[0].failed_job, 1u);
  EXPECT_EQ(rerun.evidence[0].passed_job, 1u);
  EXPECT_EQ(to_string(rerun.evidence[0].kind), "rerun");
}

TEST(TestHistoryQueriesTest, EvidenceIsCappedButCounted) {
  std::vector<test_run> runs;
  for (int i = 0; i < 30; ++i) {
    runs.push_back(run_of(static_cast<job_id>(i + 1), i, "c" + std::to_string(i),
                          {result_of("f.py::t", test_outcome::failed, 1, test_outcome::passed)}));
  }
  auto flaky = flaky_tests(runs);
  ASSERT_EQ(flaky.size(), 1u);
  EXPECT_EQ(flaky[0].flakes, 30u);
  EXPECT_EQ(flaky[0].evidence.size(), kMaxEvidence);
  EXPECT_EQ(flaky[0].evidence.front().failed_job, 30u);
}

TEST(TestHistoryQueriesTest, SlowestAndPassesSince) {
  std::vector<test_run> runs = {
      run_of(1, 1, "c",
             {result_of("a::fast", test_outcome::passed, 0.1),
              result_of("a::slow", test_outcome::passed, 9),
              result_of("a::mid", test_outcome::passed, 3),
              result_of("a::skip", test_outcome::skipped, 0)}),
      run_of(2, 5, "c", {result_of("a::slow", test_outcome::failed, 9, test_outcome::passed)}),
      run_of(3, 9, "c", {result_of("a::slow", test_outcome::passed, 9)}),
  };
  auto stats = summarize(runs, {});
  auto top = slowest(stats, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, "a::slow");
  EXPECT_EQ(top[1].id, "a::mid");
  EXPECT_EQ(top[2].id, "a::fast");
  EXPECT_EQ(slowest(stats, 10).back().id, "a::skip");
  EXPECT_EQ(passes_since(runs, "a::slow", at(0)), 2u);
  EXPECT_EQ(passes_since(runs, "a::slow", at(2)), 1u) << "a failure passed on re-run is no pass";
  EXPECT_EQ(passes_since(runs, "a::slow", at(10)), 0u);
}

TEST(TestHistoryQueriesTest, MakeTestRunTakesTheJobsAndPipelinesFields) {
  pipeline_record p;
  p.id = 12;
  p.project = "acme/shop";
  p.commit = "0123abcd";
  p.patch = "feature-x";
  job_record j;
  j.id = 40;
  j.pipeline = 12;
  j.name = "test 2/3";
  j.spec_name = "test";
  j.shard = 2;
  j.shards = 3;
  j.finished_at = at(5);
  test_run run = make_test_run(p, j, {result_of("a::b", test_outcome::passed, 1)});
  EXPECT_EQ(run.project, "acme/shop");
  EXPECT_EQ(run.job, 40u);
  EXPECT_EQ(run.pipeline, 12u);
  EXPECT_EQ(run.job_name, "test");
  EXPECT_EQ(run.commit, "0123abcd");
  EXPECT_EQ(run.patch, "feature-x");
  EXPECT_EQ(run.shard, 2);
  EXPECT_EQ(run.shards, 3);
  EXPECT_EQ(run.time, at(5));
  ASSERT_EQ(run.results.size(), 1u);
}

TEST(TestHistoryQueriesTest, ApiFormsSpellTimesOutcomesAndMissingValues) {
  std::vector<test_run> runs = {
      run_of(1, 1, "c",
             {result_of("f.py::t", test_outcome::failed, 0.5, test_outcome::passed),
              result_of("f.py::s", test_outcome::skipped, 0)}),
  };
  const auto ms = [](int minute) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(at(minute).time_since_epoch())
        .count();
  };
  auto stats = summarize(runs, {});
  ASSERT_EQ(stats.size(), 2u);
  const std::string skipped = boost::json::serialize(to_json(stats[0]));
  EXPECT_EQ(skipped, R"({"id":"f.py::s","file":"f.py","runs":1,"passes":0,"failures":0,"skips":1,)"
                     R"("seconds":null,"last_outcome":"skipped","first_seen":)" +
                         std::to_string(ms(1)) + R"(,"last_seen":)" + std::to_string(ms(1)) +
                         R"(,"last_failed":null,"last_failed_job":0,"failed_recently":false})");
  auto flaky = flaky_tests(runs);
  ASSERT_EQ(flaky.size(), 1u);
  const std::string f = boost::json::serialize(to_json(flaky[0]));
  EXPECT_THAT(f, HasSubstr(R"("flakes":1,"rate":1E0,"commits":["c"],)")) << f;
  EXPECT_THAT(f, HasSubstr(R"("evidence":[{"kind":"rerun","commit":"c","failed_job":1,)")) << f;
  auto failures = recent_failures(runs, 5);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_THAT(boost::json::serialize(to_json(failures[0])),
              HasSubstr(R"({"id":"f.py::t","outcome":"failed","rerun":"passed","job":1,)"));
  EXPECT_THAT(boost::json::serialize(to_json(runs[0].results[1])),
              HasSubstr(R"("outcome":"skipped","seconds":0E0,"rerun":null,)"));
}

TEST(TestHistoryQueriesTest, ResultsRoundTripThroughTheirApiForm) {
  std::vector<test_result> sent = {
      result_of("tests/test_a.py::test_x[1-a]", test_outcome::failed, 0.25, test_outcome::passed),
      result_of("tests/test_a.py::test_y", test_outcome::passed, 1.5),
  };
  sent[0].classname = "tests.test_a";
  sent[0].message = "assert 1 == 2";
  sent[0].failed_at = at(3) + std::chrono::milliseconds(17);
  boost::json::array a;
  for (const auto& r : sent)
    a.emplace_back(to_json(r));
  auto back = test_results_from_json(a);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->size(), 2u);
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(boost::json::serialize(to_json((*back)[i])), boost::json::serialize(to_json(sent[i])))
        << "result " << i;
  }
  EXPECT_EQ((*back)[0].failed_at, sent[0].failed_at);
  EXPECT_EQ((*back)[1].failed_at, std::nullopt);
  EXPECT_THAT(boost::json::serialize(a[1]), HasSubstr(R"("failed_at":null)"));
}

TEST(TestHistoryQueriesTest, BadResultsNameTheElementAndMember) {
  auto expect_error = [](std::string_view text, std::string_view says, std::size_t max = 10) {
    auto r = test_results_from_json(boost::json::parse(text), max);
    ASSERT_FALSE(r) << text;
    EXPECT_THAT(r.error().message, HasSubstr(says)) << text;
  };
  const std::string ok = R"({"id":"a::b","name":"b","outcome":"passed","seconds":1})";
  expect_error(R"({"id":"a"})", "(document): expected an array");
  expect_error(R"([1])", "[0]: expected an object");
  expect_error("[" + ok + R"(,{"name":"b","outcome":"passed","seconds":1}])", "[1].id: missing");
  expect_error(R"([{"id":"","name":"b","outcome":"passed","seconds":1}])", "[0].id: empty");
  expect_error(R"([{"id":"a","name":7,"outcome":"passed","seconds":1}])",
               "[0].name: expected a string");
  expect_error(R"([{"id":"a","name":"b","outcome":"broken","seconds":1}])",
               "[0].outcome: \"broken\" is not passed, failed, error or skipped");
  expect_error(R"([{"id":"a","name":"b","outcome":"passed","rerun":3,"seconds":1}])",
               "[0].rerun: a non-string is not");
  expect_error(R"([{"id":"a","name":"b","outcome":"passed","seconds":-1}])",
               "[0].seconds: expected a non-negative number");
  expect_error(R"([{"id":"a","name":"b","outcome":"passed"}])", "[0].seconds: expected a number");
  for (std::string_view bad : {R"("soon")", "-1", "1.5", "1000000000000001"}) {
    expect_error(R"([{"id":"a","name":"b","outcome":"failed","seconds":1,"failed_at":)" +
                     std::string(bad) + "}]",
                 "[0].failed_at: expected milliseconds since the Unix epoch");
  }
  expect_error("[" + ok + "," + ok + "]", "2 results; at most 1", 1);
  auto fine = test_results_from_json(boost::json::parse("[" + ok + "]"));
  ASSERT_TRUE(fine) << fine.error().message;
  EXPECT_FALSE(fine->front().rerun);
  EXPECT_EQ(fine->front().file, "");
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
