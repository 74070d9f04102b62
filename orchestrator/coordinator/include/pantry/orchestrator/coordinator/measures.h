#pragma once

// Measuring CI: per pipeline and per project, how accurate (flaky rate, pipelines red only
// because of flaky or quarantined tests), how prompt (time to red, time to green, queue wait)
// and how costly (runner CPU-seconds, runner seconds saved by superseding and by stopping early,
// the share of the jobs' pip and image traffic served from pantry's cache) the project's CI is.
// Pure functions over the scheduler's records and the test history: no store, no clock. See
// docs/ARCHITECTURE.md, "Measuring CI".

#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/scheduler.h"
#include "pantry/orchestrator/coordinator/test_history.h"

#include <boost/json/object.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

// One ended pipeline's measures. Seconds are wall-clock seconds unless named CPU.
struct pipeline_measures {
  pipeline_id pipeline = 0;
  std::string project;
  pipeline_state state = pipeline_state::running;
  clock::time_point submitted, finished;
  // Submit -> the first moment a failed job was known to fail; nullopt unless a job failed. For
  // a failed job with test results that carry a failure time (the pytest plugin's
  // pantry.failed_at, junit.h), its earliest failing test's report, held within the job's start
  // and end (the time comes from the runner's clock); for any other failed job (lint, builds,
  // tests without the plugin), its end.
  std::optional<double> time_to_red;
  // Submit -> the pipeline's end; nullopt unless it passed.
  std::optional<double> time_to_green;
  double queue_wait = 0;   // summed over the jobs that started: started_at - queued_at
  double cpu_seconds = 0;  // summed over the jobs
  // The record's saved_runner_seconds: what its supersede spared.
  double saved_by_supersede = 0;
  // What stopping at a failure spared: for every job cancelled or skipped because of a failure
  // (not by a supersede or a user's cancel), its usual runtime less what it had already run;
  // jobs with no usual runtime count 0.
  double saved_by_stopping_early = 0;
  // The tests that made it red (failed or erred and not passed on a re-run), sorted.
  std::vector<std::string> failing_tests;
  // Failed, every failed job reported a failing test, and every test in failing_tests is flaky
  // or quarantined (a failure that passed its re-run is a flake: a job failed only by such
  // failures is red only because of flaky tests).
  bool red_only_flaky = false;
  // The jobs' traffic through pantry's cache, summed; hit_ratio() gives its shares.
  cache_use cache;
};

// A job's usual runtime in seconds (the scheduler's usual_runtime), nullopt when unknown.
using usual_runtime_fn = std::function<std::optional<double>(const job_record&)>;

// The measures of ended pipeline `p`. `runs` are the project's test runs (those of other
// pipelines are ignored); `flaky` and `quarantined` the ids of the project's flaky and
// quarantined tests; `usual` prices the jobs a failure stopped. A pipeline still running is
// measured as far as it got (no time to green, finished = epoch).
pipeline_measures measure_pipeline(const pipeline_record& p, std::span<const test_run> runs,
                                   const std::set<std::string, std::less<>>& flaky,
                                   const std::set<std::string, std::less<>>& quarantined,
                                   const usual_runtime_fn& usual);

// A project's measures over a window of ended pipelines.
struct project_measures {
  std::string project;
  std::size_t pipelines = 0;  // ended pipelines in the window
  std::size_t passed = 0, failed = 0, cancelled = 0;
  std::size_t red_only_flaky = 0;  // failed pipelines red only because of flaky/quarantined tests
  std::size_t tests = 0;           // distinct tests in the test runs given
  std::size_t flaky_tests = 0;     // of those, flaky per flaky_tests()
  // flaky_tests / tests and red_only_flaky / failed; nullopt when the divisor is 0.
  std::optional<double> flaky_test_rate, red_only_flaky_rate;
  // Medians over the window's pipelines that have the value.
  std::optional<double> median_time_to_red, median_time_to_green, median_queue_wait;
  double cpu_seconds = 0, saved_by_supersede = 0, saved_by_stopping_early = 0;
  cache_use cache;  // summed over the window's pipelines
};

// The aggregate of `measures` (the window's pipelines, one project) with the test counts from
// the window's runs: `tests` distinct tests of which `flaky_tests` are flaky.
project_measures aggregate_measures(std::string_view project,
                                    std::span<const pipeline_measures> measures, std::size_t tests,
                                    std::size_t flaky_tests);

// The median of `values` (the mean of the middle two for an even count); nullopt when empty.
std::optional<double> median(std::vector<double> values);

// The API's forms: times as integer milliseconds since the Unix epoch, durations as seconds,
// an unknown value as null; the cache's shares as cache_hit_ratio and cache_byte_hit_ratio (null
// without traffic) and the counts under "cache" (cache_use.h's to_json).
boost::json::object to_json(const pipeline_measures& m);
boost::json::object to_json(const project_measures& m);

}  // namespace pantry::orchestrator::coordinator
