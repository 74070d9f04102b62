#include "pantry/web/dashboard.h"

#include "pantry/web/layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace co = orchestrator::coordinator;

const co::clock::time_point kT0 = co::clock::from_time_t(1'765'000'000);  // 2025-12-06 05:46:40

int count_of(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1))
    ++n;
  return n;
}

co::job_record job(co::job_id id, co::pipeline_id p, std::string name, co::job_state state) {
  co::job_record j;
  j.id = id;
  j.pipeline = p;
  j.name = name;
  j.spec_name = name;
  j.state = state;
  j.queued_at = kT0;
  if (state != co::job_state::queued) j.started_at = kT0 + std::chrono::seconds(1);
  if (co::finished(state)) j.finished_at = kT0 + std::chrono::seconds(31);
  return j;
}

co::pipeline_record pipeline(co::pipeline_id id, std::string project, co::pipeline_state state) {
  co::pipeline_record p;
  p.id = id;
  p.project = std::move(project);
  p.patch = "7";
  p.commit = "0123456789abcdef0123456789abcdef01234567";
  p.state = state;
  p.created_at = kT0;
  if (state != co::pipeline_state::running) p.finished_at = kT0 + std::chrono::seconds(95);
  return p;
}

TEST(DashboardTest, PipelinesPageListsEachWithItsStateAndRefreshesLive) {
  auto a = pipeline(12, "team/app", co::pipeline_state::running);
  a.jobs = {job(30, 12, "lint", co::job_state::passed),
            job(31, 12, "test", co::job_state::running)};
  auto b = pipeline(11, "<evil>", co::pipeline_state::failed);
  b.jobs = {job(29, 11, "lint", co::job_state::failed)};
  const std::vector<co::pipeline_record> list = {a, b};
  const auto html = render_pipelines_page(list, "", kT0 + std::chrono::seconds(40));
  EXPECT_THAT(html, HasSubstr("<a href=\"/pipelines/12\">12</a>"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/pipelines/11\">11</a>"));
  EXPECT_THAT(html, HasSubstr("<span class=\"st st-running\">running</span>"));
  EXPECT_THAT(html, HasSubstr("<span class=\"st st-failed\">failed</span>"));
  EXPECT_THAT(html, HasSubstr("1 running, 1 passed"));
  EXPECT_THAT(html, HasSubstr("/pipelines?project=team%2Fapp"));
  EXPECT_THAT(html, HasSubstr("&lt;evil&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("<evil>")));
  EXPECT_THAT(html, HasSubstr("<code>0123456789ab</code>"));
  EXPECT_THAT(html, HasSubstr("40 s"));        // the running one, to now
  EXPECT_THAT(html, HasSubstr("1 min 35 s"));  // the ended one, to its end
  EXPECT_THAT(html, HasSubstr("id=\"live\" data-refresh=\"2000\""));
  EXPECT_THAT(html, HasSubstr("<script src=\"/static/dashboard.js\" defer></script>"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/pipelines\" aria-current=\"page\">Pipelines</a>"));

  const auto empty = render_pipelines_page({}, "demo", kT0);
  EXPECT_THAT(empty, HasSubstr("Pipelines of demo"));
  EXPECT_THAT(empty, HasSubstr("No pipelines of this project"));
  EXPECT_THAT(empty, HasSubstr("href=\"/projects/demo/charts\""));
}

TEST(DashboardTest, PipelinePageLinksEveryJobsLogAndIsLiveOnlyWhileRunning) {
  auto p = pipeline(5, "app", co::pipeline_state::running);
  p.jobs = {job(8, 5, "lint", co::job_state::passed), job(9, 5, "test 1/2", co::job_state::running),
            job(10, 5, "package", co::job_state::queued)};
  p.jobs[0].runner = "built-in";
  p.jobs[0].cpu_seconds = 2.5;
  const auto html = render_pipeline_page(p, kT0 + std::chrono::seconds(61));
  EXPECT_THAT(html, HasSubstr("<a href=\"/jobs/8/log\">lint</a>"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/jobs/9/log\">test 1/2</a>"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/jobs/10/log\">package</a>"));
  EXPECT_THAT(html, HasSubstr("built-in"));
  EXPECT_THAT(html, HasSubstr("2.5 s"));      // lint's CPU
  EXPECT_THAT(html, HasSubstr("30 s"));       // lint ran 1 s -> 31 s
  EXPECT_THAT(html, HasSubstr("1 min 0 s"));  // test 1/2 runs since 1 s, now is 61 s
  EXPECT_THAT(html, HasSubstr("data-refresh=\"2000\""));

  p.state = co::pipeline_state::failed;
  p.reason = "test 1/2 failed";
  p.finished_at = kT0 + std::chrono::seconds(70);
  const auto ended = render_pipeline_page(p, kT0 + std::chrono::seconds(500));
  EXPECT_THAT(ended, HasSubstr("id=\"live\""));  // the last refresh swaps this in and stops
  EXPECT_THAT(ended, Not(HasSubstr("data-refresh")));
  EXPECT_THAT(ended, HasSubstr("test 1/2 failed"));
  EXPECT_THAT(ended, HasSubstr("1 min 10 s"));
}

co::log_entry entry(std::uint64_t seq, std::string step, co::log_stream s, std::string text) {
  return co::log_entry{seq, kT0, s, std::move(step), std::move(text)};
}

TEST(DashboardTest, LogPageOfARunningJobShowsTheLinesSoFarAndHowToFollow) {
  auto p = pipeline(5, "app", co::pipeline_state::running);
  p.jobs = {job(9, 5, "test", co::job_state::running)};
  log_view v;
  v.pipeline = &p;
  v.job = 9;
  v.step = "run tests";
  v.grep = "a&b";
  v.entries = {entry(0, "", co::log_stream::report, "platform: linux/amd64"),
               entry(1, "run tests", co::log_stream::out, "ok <1>"),
               entry(2, "run tests", co::log_stream::err, "warning")};
  v.next = 3;
  const auto html = render_log_page(v);
  EXPECT_THAT(html, HasSubstr("<span class=\"r\">platform: linux/amd64\n</span>"));
  EXPECT_THAT(html, HasSubstr("<span class=\"o\">ok &lt;1&gt;\n</span>"));
  EXPECT_THAT(html, HasSubstr("<span class=\"e\">warning\n</span>"));
  EXPECT_EQ(count_of(html, "<span class=\"step\">"), 2) << html;
  EXPECT_THAT(html, HasSubstr("<span class=\"step\">step run tests\n</span>"));
  EXPECT_THAT(html, HasSubstr("data-follow=\"/jobs/9/log?follow=1&amp;format=ndjson&amp;from=3&amp;"
                              "step=run%20tests&amp;grep=a%26b\""))
      << html;
  EXPECT_THAT(html, HasSubstr("data-step=\"run tests\""));
  EXPECT_THAT(html, HasSubstr("href=\"/jobs/9/log/raw?step=run%20tests&amp;grep=a%26b\""));
  EXPECT_THAT(html, HasSubstr("href=\"/jobs/9/log/raw\" download>Download the whole log"));
  // Without JavaScript: the filters as a form, and a refresh link.
  EXPECT_THAT(html, HasSubstr("<form class=\"filters\" method=\"get\" action=\"/jobs/9/log\">"));
  EXPECT_THAT(html, HasSubstr("name=\"step\" list=\"steps\" value=\"run tests\""));
  EXPECT_THAT(html, HasSubstr("name=\"grep\" value=\"a&amp;b\""));
  EXPECT_THAT(html, HasSubstr("still running"));
  EXPECT_THAT(html, HasSubstr(">Refresh</a>"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/pipelines/5\">5</a>"));
}

TEST(DashboardTest, LogPageOfAnEndedJobDoesNotFollow) {
  auto p = pipeline(5, "app", co::pipeline_state::passed);
  p.jobs = {job(9, 5, "test", co::job_state::passed)};
  log_view v;
  v.pipeline = &p;
  v.job = 9;
  v.entries = {entry(0, "s", co::log_stream::out, "done")};
  v.next = 1;
  v.done = true;
  const auto html = render_log_page(v);
  EXPECT_THAT(html, Not(HasSubstr("data-follow")));
  EXPECT_THAT(html, HasSubstr("End of the log."));
  EXPECT_THAT(html, Not(HasSubstr("Download the whole log")));  // no filter: one raw link

  v.done = false;
  v.more = true;  // the page stopped at its line limit
  const auto cut = render_log_page(v);
  EXPECT_THAT(cut, Not(HasSubstr("data-follow")));
  EXPECT_THAT(cut, HasSubstr("shows the first 1 lines"));

  log_view bad;
  bad.pipeline = &p;
  bad.job = 9;
  bad.grep = "(";
  bad.error = "grep: \"(\" is not a regular expression: mismatched ( )";
  const auto err = render_log_page(bad);
  EXPECT_THAT(err, HasSubstr("class=\"bad\">grep: &quot;(&quot; is not a regular expression"));
  EXPECT_THAT(err, Not(HasSubstr("id=\"log\"")));
}

TEST(DashboardTest, TestsPageShowsSlowestFailingFlakyAndQuarantined) {
  co::project_tests t;
  t.project = "app";
  t.runs = 4;
  co::test_stat fast, slow, unknown;
  fast.id = "tests/test_a.py::test_fast";
  fast.seconds = 0.2;
  fast.runs = 4;
  slow.id = "tests/test_a.py::test_slow";
  slow.seconds = 12;
  slow.runs = 4;
  slow.last_outcome = co::test_outcome::failed;
  unknown.id = "tests/test_b.py::test_<skipped>";
  t.tests = {fast, slow, unknown};
  co::test_failure f;
  f.id = slow.id;
  f.job = 9;
  f.pipeline = 5;
  f.time = kT0;
  f.message = "assert 1 == 2";
  f.rerun = co::test_outcome::passed;
  t.recent_failures = {f};
  co::flaky_test fl;
  fl.id = slow.id;
  fl.runs = 4;
  fl.flakes = 1;
  fl.rate = 0.25;
  fl.commits = {"0123456789abcdef"};
  fl.last_flaked = kT0;
  t.flaky = {fl};
  co::quarantined_test q{"tests/test_c.py::test_net", false, "dev", kT0};
  t.quarantined = {q};
  const auto html = render_tests_page(t);
  const auto slowest = html.substr(html.find("id=\"slowest\""));
  EXPECT_LT(slowest.find("test_slow"), slowest.find("test_fast")) << html;
  EXPECT_LT(slowest.find("test_fast"), slowest.find("test_&lt;skipped&gt;")) << html;
  EXPECT_THAT(html, HasSubstr("12 s"));
  EXPECT_THAT(html, HasSubstr("200 ms"));
  EXPECT_THAT(html, HasSubstr("<a href=\"/jobs/9/log\">job 9</a>"));
  EXPECT_THAT(html, HasSubstr("(re-run passed)"));
  EXPECT_THAT(html, HasSubstr("assert 1 == 2"));
  EXPECT_THAT(html, HasSubstr("25%"));
  EXPECT_THAT(html, HasSubstr("1 of 4"));
  EXPECT_THAT(html, HasSubstr("API by dev"));
  EXPECT_THAT(html, HasSubstr("tests/test_c.py::test_net"));
  EXPECT_THAT(html, HasSubstr("4 job runs"));

  const auto none = render_tests_page(co::project_tests{"app", 0, {}, {}, {}, {}});
  EXPECT_THAT(none, HasSubstr("No test results recorded yet."));
  EXPECT_THAT(none, HasSubstr("No test failed"));
  EXPECT_THAT(none, HasSubstr("No flaky test"));
  EXPECT_THAT(none, HasSubstr("No quarantined test."));
}

co::pipeline_measures measured(co::pipeline_id id, int minute, co::pipeline_state state) {
  co::pipeline_measures m;
  m.pipeline = id;
  m.project = "app";
  m.state = state;
  m.submitted = kT0 + std::chrono::minutes(minute);
  m.finished = m.submitted + std::chrono::seconds(60);
  m.cpu_seconds = 10.0 * id;
  if (state == co::pipeline_state::passed) m.time_to_green = 60;
  if (state == co::pipeline_state::failed) m.time_to_red = 20;
  return m;
}

TEST(DashboardTest, MeasureChartsHaveOneSeriesPerMeasureOverTime) {
  // Newest first, as the coordinator gives them.
  auto red_flaky = measured(3, 2, co::pipeline_state::failed);
  red_flaky.red_only_flaky = true;
  red_flaky.saved_by_stopping_early = 30;
  // Its jobs: 3 of 4 requests (900 of 1000 bytes) from the cache; pipeline 2 made none.
  red_flaky.cache.pypi.cache = {2, 100};
  red_flaky.cache.pypi.upstream = {1, 100};
  red_flaky.cache.image.cache = {1, 800};
  auto first = measured(1, 0, co::pipeline_state::passed);
  first.cache.pypi.upstream = {4, 400};  // a cold cache: nothing from it
  const std::vector<co::pipeline_measures> each = {
      red_flaky, measured(2, 1, co::pipeline_state::failed), first};
  const auto charts = measure_charts(each);
  ASSERT_EQ(charts.size(), 6u);
  EXPECT_EQ(charts[0].title, "Time to red");
  ASSERT_EQ(charts[0].points.size(), 2u);
  EXPECT_EQ(charts[0].points[0].y, 20);
  EXPECT_LT(charts[0].points[0].x, charts[0].points[1].x);
  EXPECT_THAT(charts[0].points[0].note, HasSubstr("pipeline 2"));
  EXPECT_EQ(charts[1].title, "Time to green");
  ASSERT_EQ(charts[1].points.size(), 1u);
  EXPECT_EQ(charts[1].points[0].y, 60);
  EXPECT_EQ(charts[2].title, "Flaky rate");
  ASSERT_EQ(charts[2].points.size(), 2u);  // none before the first failure
  EXPECT_EQ(charts[2].points[0].y, 0);     // pipeline 2: red for real
  EXPECT_EQ(charts[2].points[1].y, 0.5);   // pipeline 3: 1 of the 2 failed was flaky
  EXPECT_EQ(charts[3].title, "CPU-seconds");
  ASSERT_EQ(charts[3].points.size(), 3u);
  EXPECT_EQ(charts[3].points[0].y, 10);
  EXPECT_EQ(charts[3].points[2].y, 30);
  EXPECT_EQ(charts[4].title, "Runner-seconds saved");
  ASSERT_EQ(charts[4].points.size(), 3u);
  EXPECT_EQ(charts[4].points[2].y, 30);
  EXPECT_THAT(charts[4].points[2].note, HasSubstr("stopping early 30 s"));
  EXPECT_EQ(charts[5].title, "Cache hit ratio");
  ASSERT_EQ(charts[5].points.size(), 2u);  // pipeline 2 made no request through the cache
  EXPECT_EQ(charts[5].points[0].y, 0);
  EXPECT_EQ(charts[5].points[1].y, 0.75);
  EXPECT_THAT(charts[5].points[1].note, HasSubstr("pipeline 3"));
  EXPECT_THAT(charts[5].points[1].note, HasSubstr("of bytes"));
  EXPECT_THAT(measure_charts({}).back().empty_note, HasSubstr("no job in the window"));

  co::project_measures a;
  a.project = "app";
  a.pipelines = 3;
  a.passed = 1;
  a.failed = 2;
  a.median_time_to_red = 20;
  const auto html = render_charts_page("app", {a, each}, {200, 30});
  EXPECT_EQ(count_of(html, "<svg class=\"chart\""), 6) << html;
  EXPECT_EQ(count_of(html, "<circle class=\"point\""), 2 + 1 + 2 + 3 + 3 + 2) << html;
  EXPECT_THAT(html, HasSubstr("newest 200 ended pipelines of the last 30 days"));
  EXPECT_THAT(html, HasSubstr("1 passed, 2 failed"));
  EXPECT_THAT(html, HasSubstr("<th>Median time to red</th><td>20 s</td>"));
}

TEST(DashboardTest, ProjectsPageListsEachProjectWithItsLatestPipeline) {
  const std::vector<co::pipeline_record> recent = {
      pipeline(9, "b/app", co::pipeline_state::running),
      pipeline(8, "a", co::pipeline_state::passed),
      pipeline(7, "b/app", co::pipeline_state::failed)};
  const auto html = render_projects_page(recent);
  EXPECT_THAT(html, HasSubstr("href=\"/projects/b/app/tests\""));
  EXPECT_THAT(html, HasSubstr("href=\"/projects/a/charts\""));
  EXPECT_THAT(html, HasSubstr("<a href=\"/pipelines/9\">9</a>"));
  EXPECT_THAT(html, Not(HasSubstr("<a href=\"/pipelines/7\">7</a>")));
  EXPECT_LT(html.find("/projects/a/"), html.find("/projects/b/app/"));  // by name
}

TEST(DashboardTest, ErrorPagesNameWhatWasWrong) {
  const auto nf = render_not_found_page("pipeline 42", "See /pipelines.");
  EXPECT_THAT(nf, HasSubstr("No pipeline 42."));
  EXPECT_THAT(nf, HasSubstr("See /pipelines."));
  EXPECT_THAT(render_not_found_page("project \"<x>\"", ""), HasSubstr("&quot;&lt;x&gt;&quot;"));
  EXPECT_THAT(render_sign_in_page(), HasSubstr("ci.tokens"));
  EXPECT_THAT(render_error_page("Bad request", "days: \"x\" is not a count"),
              HasSubstr("days: &quot;x&quot; is not a count"));
}

TEST(DashboardTest, TimesAndDurationsReadForPeople) {
  EXPECT_EQ(format_utc(kT0), "2025-12-06 05:46:40 UTC");
  EXPECT_EQ(format_utc(co::clock::time_point{}), "—");
  EXPECT_EQ(format_duration(0.85), "850 ms");
  EXPECT_EQ(format_duration(4.25), "4.2 s");
  EXPECT_EQ(format_duration(41), "41 s");
  EXPECT_EQ(format_duration(200), "3 min 20 s");
  EXPECT_EQ(format_duration(7500), "2 h 5 min");
  EXPECT_EQ(format_duration(-1), "—");
}

TEST(DashboardTest, TheScriptIsCompiledInAndThePolicyAllowsOnlyItsOrigin) {
  EXPECT_THAT(std::string(dashboard_script()), HasSubstr("data-follow"));
  EXPECT_THAT(std::string(kContentSecurityPolicy), HasSubstr("default-src 'none'"));
  EXPECT_THAT(std::string(kContentSecurityPolicy), HasSubstr("script-src 'self'"));
  EXPECT_THAT(std::string(kContentSecurityPolicy), Not(HasSubstr("script-src 'unsafe-inline'")));
}

}  // namespace
}  // namespace pantry::web
