#pragma once

// The CI dashboard's pages, rendered on the server from what the coordinator holds
// (orchestrator/coordinator/service.h): the pipelines with their status, one pipeline's jobs, a
// job's log (filtered by step and pattern, with a raw download), the projects, a project's tests
// (slowest, failing, flaky, quarantined) and its charts over time (chart.h). Pure: records in,
// HTML out; no sockets, no clock (the caller passes `now`). Every value from a record is escaped.
//
// The pages read whole without JavaScript. Where the script (kDashboardScriptPath) runs, it
// follows a running job's log (the element #log with data-follow, the NDJSON URL to stream from)
// and refreshes a live part of a page (the element #live with data-refresh, milliseconds).
//
// Paths (web/src/dashboard_routes.cpp serves them):
//   /pipelines[?project=P]        newest 100 pipelines
//   /pipelines/<id>               its jobs
//   /jobs/<id>/log[?step=S][&grep=RE]   the log so far; with follow=1&format=ndjson[&from=SEQ]
//                                 the coordinator's stream, for the script
//   /jobs/<id>/log/raw[?step=S][&grep=RE]  text/plain, as an attachment
//   /projects                     every project of the recent pipelines
//   /projects/<p>/tests           /projects/<p>/charts[?pipelines=N][&days=N]

#include "pantry/orchestrator/coordinator/service.h"
#include "pantry/web/chart.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::web {

namespace coordinator = orchestrator::coordinator;

// Where the dashboard's script is served (same origin, as the policy in layout.h allows).
inline constexpr std::string_view kDashboardScriptPath = "/static/dashboard.js";
// The script itself (web/static/dashboard.js, compiled in).
std::string_view dashboard_script();

// How often a live page part is refreshed by the script, in milliseconds.
inline constexpr int kRefreshMillis = 2000;

// The newest pipelines (newest first), of `project` when it is not "".
std::string render_pipelines_page(std::span<const coordinator::pipeline_record> pipelines,
                                  std::string_view project, coordinator::clock::time_point now);

// One pipeline with its jobs, each linked to its log.
std::string render_pipeline_page(const coordinator::pipeline_record& p,
                                 coordinator::clock::time_point now);

// What a job's log page shows.
struct log_view {
  const coordinator::pipeline_record* pipeline = nullptr;  // holds the job (required)
  coordinator::job_id job = 0;
  std::string step, grep;                       // the filters as asked
  std::vector<coordinator::log_entry> entries;  // the lines that pass them, in order
  std::uint64_t next = 0;                       // the seq to follow from
  bool done = false;                            // the log is closed and every line is shown
  bool more = false;  // the page stops before the log does (see the raw download)
  std::string error;  // a bad filter, shown instead of the lines
};
std::string render_log_page(const log_view& v);

// Every project among `recent` (the newest pipelines), with its latest pipeline.
std::string render_projects_page(std::span<const coordinator::pipeline_record> recent);

// A project's tests: the 20 slowest, its failures, its flaky and quarantined tests.
std::string render_tests_page(const coordinator::project_tests& t);

// The window a charts page was computed over.
struct chart_window {
  std::size_t pipelines = 0;
  int days = 0;
};

// The charts of a project's ended pipelines over time (x: when each was submitted): time to red,
// time to green, flaky rate (among the failed pipelines of the last kFlakyWindow ended ones, the
// share red only because of flaky or quarantined tests), CPU-seconds, runner-seconds saved, and
// the cache hit ratio of the requests its jobs made through pantry (cache_use.h; a pipeline
// whose jobs made none has no point). `each` in any order.
inline constexpr std::size_t kFlakyWindow = 10;
std::vector<chart_series> measure_charts(std::span<const coordinator::pipeline_measures> each);

// The project's measures (the aggregate as a table) and measure_charts().
std::string render_charts_page(std::string_view project, const coordinator::measured_window& m,
                               const chart_window& window);

// 404: `what` was not found ("pipeline 42", "job 7", "project \"demo\""), with a hint where
// to look instead.
std::string render_not_found_page(std::string_view what, std::string_view hint);

// 401: how to sign in (a token of ci.tokens as the password).
std::string render_sign_in_page();

// An error page titled `title` with `message` (a bad query value, a store that cannot be read).
std::string render_error_page(std::string_view title, std::string_view message);

// "2026-12-07 03:12:05 UTC"; "—" for the epoch (not yet).
std::string format_utc(coordinator::clock::time_point t);
// "850 ms", "41 s", "3 min 20 s", "2 h 5 min".
std::string format_duration(double seconds);

}  // namespace pantry::web
