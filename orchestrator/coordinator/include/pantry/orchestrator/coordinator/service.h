#pragma once

// The coordinator as a tenant of `pantry serve` (proxy/service.h): pipelines submitted over
// HTTP, their jobs scheduled on the built-in runner's slots and on remote runners, their logs and
// artifacts kept in the cache store. See docs/ARCHITECTURE.md, "The coordinator".
//
// Threads: the scheduler (scheduler.h) lives on one strand; every route and every runner slot
// reaches it there and leaves at once. Store calls (the journal, logs, artifacts) run on the
// blocking pool; the journal is one writer that coalesces: a pipeline changed many times while a
// write was under way is written once more, with its last state.
//
// The journal: each pipeline (with its jobs) is one entry `ci/pipeline/<id, 20 digits>`, its JSON
// in the attribute "pipeline". start() reads them back: queued jobs stay queued, running ones are
// re-queued once (scheduler::restore).
//
// HTTP, all under /api/v1/ (JSON in and out; errors {"error": "…"} naming the bad field):
//   POST /api/v1/pipelines                 submit {project, patch, commit, spec, spec_file, source}
//   GET  /api/v1/pipelines[?project=P]     newest first
//   GET  /api/v1/pipelines/<id>            with its jobs
//   POST /api/v1/pipelines/<id>/cancel
//   GET  /api/v1/jobs[?project=P]          the jobs of the newest pipelines
//   GET  /api/v1/jobs/<id>                 with its cache use: {pypi, oci, image, hit_ratio,
//        byte_hit_ratio} under "cache" (cache_use.h)
//   POST /api/v1/jobs/<id>/cancel
//   GET  /api/v1/jobs/<id>/log[?follow=1][&step=S][&grep=RE][&format=ndjson][&from=SEQ]  text by
//        default; from: the first line's seq (0)
//   GET  /api/v1/jobs/<id>/artifacts       the tar.zst the job kept
//   HEAD|PUT /api/v1/sources/sha256:<hex>  uploaded working trees, content-addressed
//   GET  /api/v1/projects/<project>/tests[?flaky=1|?slowest=N]  the project's test history:
//        {project, runs, quarantined: [quarantined_test…], tests: [test_stat…],
//        recent_failures: [test_failure…]}; with flaky, {project, runs, quarantined, flaky:
//        [flaky_test…]}; with slowest, the N slowest tests only (test_history.h's and
//        quarantine.h's to_json forms)
//   GET  /api/v1/projects/<project>/quarantine  {project, quarantined: [quarantined_test…]}
//   GET  /api/v1/projects/<project>/measures[?pipelines=N][&days=N]  the CI measures of its newest
//        N (100) ended pipelines of N (7) days: measures.h's project_measures form with
//        window_pipelines, window_days and each: [pipeline_measures…], each with its
//        cache_hit_ratio
//   PUT|DELETE /api/v1/projects/<project>/quarantine?test=ID  (submit) puts a test in quarantine
//        or takes it out: {project, test, changed, quarantined}
//   /api/v1/runners/…                      the remote runners' protocol (remote_runner.h)
// Tokens (config `ci.tokens`): read (GET), submit (also POST, PUT and DELETE), runner (the runners'
// protocol; the token's name is the runner's name); pantry's control token may do all.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/coordinator/log_store.h"
#include "pantry/orchestrator/coordinator/measures.h"
#include "pantry/orchestrator/coordinator/quarantine.h"
#include "pantry/orchestrator/coordinator/scheduler.h"
#include "pantry/orchestrator/coordinator/test_history.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pantry::proxy {
class exchange;
}

namespace pantry::orchestrator::coordinator {

// How a job's log is read or streamed: the API's query parameters.
struct log_query {
  std::string step;        // only this step's lines ("" = all)
  std::string grep;        // only lines matching this ECMAScript pattern ("" = all)
  std::uint64_t from = 0;  // the first line's seq
  bool follow = false;     // stream: keep going until the job's log ends
  bool ndjson = false;     // stream: one JSON object per line (seq, time, stream, step, text)
  std::string attachment;  // stream: a file name to offer the download as ("" = inline)
};

// A project's test history as its tests route answers it.
struct project_tests {
  std::string project;
  std::size_t runs = 0;                       // the job runs kept
  std::vector<test_stat> tests;               // every test, by id
  std::vector<test_failure> recent_failures;  // the 100 latest, most recent first
  std::vector<flaky_test> flaky;              // most recently flaked first
  std::vector<quarantined_test> quarantined;  // the effective list, the config's first
};

// A project's measures over a window: the aggregate and each ended pipeline's, newest first.
using measured_window = std::pair<project_measures, std::vector<pipeline_measures>>;

class coordinator_service : public proxy::service {
 public:
  // --- What the web interface's dashboard reads (web/dashboard.h). Call from any I/O thread's
  // coroutine between start() and stop(); none blocks the calling thread (the scheduler is read
  // on its strand, the store on the blocking pool). ---

  // True iff the request's Authorization header carries a token that may read: "Bearer TOKEN",
  // or HTTP Basic with TOKEN as the password (what a browser sends after its sign-in prompt; the
  // user name is ignored). Basic is for the dashboard's GET pages only: a browser resends it on
  // its own, so no route that changes anything may accept it (a cross-site form could use it).
  virtual bool may_read(const proxy::exchange& ex) const = 0;

  // The newest `limit` pipelines of `project` ("" = every project), newest first, with their
  // jobs and without their attachments (the spec and source).
  virtual boost::asio::awaitable<std::vector<pipeline_record>> recent_pipelines(
      std::string project, std::size_t limit) = 0;
  // One pipeline, as recent_pipelines gives it; nullopt when unknown (or forgotten).
  virtual boost::asio::awaitable<std::optional<pipeline_record>> find_pipeline(pipeline_id id) = 0;
  // The pipeline that job `id` belongs to; nullopt when the job is unknown.
  virtual boost::asio::awaitable<std::optional<pipeline_record>> pipeline_of_job(job_id id) = 0;

  // Up to `max` lines of job `id`'s log from query.from that pass its step and grep, as
  // log_store::read pages them (continue from `next`). errc::invalid_argument naming a bad grep
  // pattern; errc::not_found when the log was removed.
  virtual boost::asio::awaitable<result<log_store::page>> read_log(job_id id, log_query query,
                                                                   std::size_t max) = 0;
  // Answers `ex` with job `id`'s log as GET /api/v1/jobs/<id>/log does (400 for a bad grep,
  // streamed while it follows). The caller has checked the job exists and the reader's access.
  virtual boost::asio::awaitable<void> stream_log(proxy::exchange& ex, job_id id,
                                                  log_query query) = 0;

  // The project's test history (tests, recent failures, flaky tests, quarantine). Store errors
  // as they come; errc::invalid_argument for a name that is not a project's.
  virtual boost::asio::awaitable<result<project_tests>> tests_of(std::string project) = 0;
  // The project's measures over its newest `pipelines` ended pipelines of the last `days` days
  // (those the scheduler still holds), as GET .../measures computes them.
  virtual boost::asio::awaitable<result<measured_window>> measures_of(std::string project,
                                                                      std::size_t pipelines,
                                                                      int days) = 0;

  // `runner`: the built-in runner (null or disabled: no built-in slots, jobs wait for remote
  // runners). `self_url` and `control_token`: pantry's own API, for the image build job.
  static std::shared_ptr<coordinator_service> create(
      const config::config& cfg, std::shared_ptr<cache::store> store,
      std::shared_ptr<runner::runner_service> runner,
      std::shared_ptr<proxy::metrics_registry> metrics, boost::asio::any_io_executor blocking,
      std::string self_url, std::string control_token);
};

}  // namespace pantry::orchestrator::coordinator
