// Measuring CI (measures.h): per pipeline and per project.

#include "pantry/orchestrator/coordinator/measures.h"

#include "meta.h"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

bool started(const job_record& j) {
  return j.started_at != clock::time_point{};
}

double seconds_between(clock::time_point from, clock::time_point to) {
  return std::max(0.0, std::chrono::duration<double>(to - from).count());
}

// A test that made its job red: it failed or erred, and a re-run (if any) did not pass.
bool made_red(const test_result& r) {
  return is_failure(r.outcome) && !(r.rerun && !is_failure(*r.rerun));
}

// When failed job `j` of pipeline `pipeline` was known to be red: its earliest failing test's
// report (measures.h's time_to_red), else its end.
clock::time_point red_at(const job_record& j, pipeline_id pipeline,
                         std::span<const test_run> runs) {
  std::optional<clock::time_point> first;
  for (const test_run& r : runs) {
    if (r.pipeline != pipeline || r.job != j.id) continue;
    for (const test_result& t : r.results) {
      if (!is_failure(t.outcome) || !t.failed_at) continue;
      if (!first || *t.failed_at < *first) first = t.failed_at;
    }
  }
  if (!first) return j.finished_at;
  // Another machine's clock may be off: never before the job started nor after it ended.
  const clock::time_point from = started(j) ? j.started_at : j.queued_at;
  return std::clamp(*first, std::min(from, j.finished_at), j.finished_at);
}

json::value number_or_null(const std::optional<double>& s) {
  return s ? json::value(*s) : json::value(nullptr);
}

}  // namespace

std::optional<double> median(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

pipeline_measures measure_pipeline(const pipeline_record& p, std::span<const test_run> runs,
                                   const std::set<std::string, std::less<>>& flaky,
                                   const std::set<std::string, std::less<>>& quarantined,
                                   const usual_runtime_fn& usual) {
  pipeline_measures m;
  m.pipeline = p.id;
  m.project = p.project;
  m.state = p.state;
  m.submitted = p.created_at;
  m.finished = p.finished_at;
  m.saved_by_supersede = p.saved_runner_seconds;

  std::optional<clock::time_point> first_red;
  std::vector<const job_record*> failed_jobs;
  for (const job_record& j : p.jobs) {
    m.cpu_seconds += j.cpu_seconds;
    m.cache += j.cache;
    if (started(j)) m.queue_wait += seconds_between(j.queued_at, j.started_at);
    if (j.state == job_state::failed) {
      failed_jobs.push_back(&j);
      const clock::time_point red = red_at(j, p.id, runs);
      if (!first_red || red < *first_red) first_red = red;
    }
  }
  if (first_red) m.time_to_red = seconds_between(p.created_at, *first_red);
  if (p.state == pipeline_state::passed)
    m.time_to_green = seconds_between(p.created_at, p.finished_at);

  // Stopped early: in a pipeline that failed on its own (not superseded), the jobs cancelled or
  // skipped at or after its first failure were stopped by it. A job cancelled while running is
  // spared only the rest of its usual runtime.
  if (first_red && p.superseded_by == 0 && usual) {
    for (const job_record& j : p.jobs) {
      if (j.state != job_state::cancelled && j.state != job_state::skipped) continue;
      if (j.finished_at < *first_red) continue;
      const auto u = usual(j);
      if (!u) continue;
      const double ran = started(j) ? seconds_between(j.started_at, j.finished_at) : 0.0;
      m.saved_by_stopping_early += std::max(0.0, *u - ran);
    }
  }

  // Red only because of flaky or quarantined tests: every failed job reported a failing test,
  // and every test that made it red is flaky or quarantined. A test that failed and passed its
  // re-run is flaky by that alone and still failed its job (the plugin keeps the first run's
  // status), so a job whose only failures passed their re-runs is red only because of flakes.
  bool every_failed_job_explained = !failed_jobs.empty();
  std::set<std::string, std::less<>> failing;
  for (const job_record* j : failed_jobs) {
    bool job_has_failing_test = false;
    for (const test_run& r : runs) {
      if (r.pipeline != p.id || r.job != j->id) continue;
      for (const test_result& t : r.results) {
        if (is_failure(t.outcome)) job_has_failing_test = true;
        if (made_red(t)) failing.insert(t.id);
      }
    }
    // A job that failed without a failing test (a lint step, a crash, a timeout) is red for
    // a reason no flaky test explains.
    if (!job_has_failing_test) every_failed_job_explained = false;
  }
  m.failing_tests.assign(failing.begin(), failing.end());
  m.red_only_flaky = p.state == pipeline_state::failed && every_failed_job_explained &&
                     std::all_of(failing.begin(), failing.end(), [&](const std::string& id) {
                       return flaky.contains(id) || quarantined.contains(id);
                     });
  return m;
}

project_measures aggregate_measures(std::string_view project,
                                    std::span<const pipeline_measures> measures, std::size_t tests,
                                    std::size_t flaky_tests) {
  project_measures a;
  a.project = std::string(project);
  a.tests = tests;
  a.flaky_tests = flaky_tests;
  std::vector<double> to_red, to_green, waits;
  for (const pipeline_measures& m : measures) {
    if (m.state == pipeline_state::running) continue;
    ++a.pipelines;
    if (m.state == pipeline_state::passed) ++a.passed;
    if (m.state == pipeline_state::failed) ++a.failed;
    if (m.state == pipeline_state::cancelled) ++a.cancelled;
    if (m.red_only_flaky) ++a.red_only_flaky;
    if (m.time_to_red) to_red.push_back(*m.time_to_red);
    if (m.time_to_green) to_green.push_back(*m.time_to_green);
    waits.push_back(m.queue_wait);
    a.cpu_seconds += m.cpu_seconds;
    a.cache += m.cache;
    a.saved_by_supersede += m.saved_by_supersede;
    a.saved_by_stopping_early += m.saved_by_stopping_early;
  }
  if (tests > 0) a.flaky_test_rate = static_cast<double>(flaky_tests) / static_cast<double>(tests);
  if (a.failed > 0) {
    a.red_only_flaky_rate = static_cast<double>(a.red_only_flaky) / static_cast<double>(a.failed);
  }
  a.median_time_to_red = median(std::move(to_red));
  a.median_time_to_green = median(std::move(to_green));
  a.median_queue_wait = median(std::move(waits));
  return a;
}

namespace {

// The cache's share of the traffic, at the top where a chart reads it, and the counts under
// "cache".
void add_cache(json::object& o, const cache_use& u) {
  json::object counts = to_json(u);
  o["cache_hit_ratio"] = counts["hit_ratio"];
  o["cache_byte_hit_ratio"] = counts["byte_hit_ratio"];
  o["cache"] = std::move(counts);
}

}  // namespace

json::object to_json(const pipeline_measures& m) {
  json::object o;
  o["pipeline"] = m.pipeline;
  o["project"] = m.project;
  o["state"] = to_string(m.state);
  o["submitted"] = detail::to_ms(m.submitted);
  o["finished"] = detail::to_ms(m.finished);
  o["time_to_red"] = number_or_null(m.time_to_red);
  o["time_to_green"] = number_or_null(m.time_to_green);
  o["queue_wait"] = m.queue_wait;
  o["cpu_seconds"] = m.cpu_seconds;
  o["saved_by_supersede"] = m.saved_by_supersede;
  o["saved_by_stopping_early"] = m.saved_by_stopping_early;
  add_cache(o, m.cache);
  json::array failing;
  for (const auto& id : m.failing_tests)
    failing.emplace_back(id);
  o["failing_tests"] = std::move(failing);
  o["red_only_flaky"] = m.red_only_flaky;
  return o;
}

json::object to_json(const project_measures& m) {
  json::object o;
  o["project"] = m.project;
  o["pipelines"] = m.pipelines;
  o["passed"] = m.passed;
  o["failed"] = m.failed;
  o["cancelled"] = m.cancelled;
  o["red_only_flaky"] = m.red_only_flaky;
  o["tests"] = m.tests;
  o["flaky_tests"] = m.flaky_tests;
  o["flaky_test_rate"] = number_or_null(m.flaky_test_rate);
  o["red_only_flaky_rate"] = number_or_null(m.red_only_flaky_rate);
  o["median_time_to_red"] = number_or_null(m.median_time_to_red);
  o["median_time_to_green"] = number_or_null(m.median_time_to_green);
  o["median_queue_wait"] = number_or_null(m.median_queue_wait);
  o["cpu_seconds"] = m.cpu_seconds;
  o["saved_by_supersede"] = m.saved_by_supersede;
  o["saved_by_stopping_early"] = m.saved_by_stopping_early;
  add_cache(o, m.cache);
  return o;
}

}  // namespace pantry::orchestrator::coordinator
