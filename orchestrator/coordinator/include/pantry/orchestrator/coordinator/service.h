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
//   GET  /api/v1/jobs/<id>/log[?follow=1][&step=S][&grep=RE][&format=ndjson]  text by default
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
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>

namespace pantry::orchestrator::coordinator {

class coordinator_service : public proxy::service {
 public:
  // `runner`: the built-in runner (null or disabled: no built-in slots, jobs wait for remote
  // runners). `self_url` and `control_token`: pantry's own API, for the image build job.
  static std::shared_ptr<coordinator_service> create(
      const config::config& cfg, std::shared_ptr<cache::store> store,
      std::shared_ptr<runner::runner_service> runner,
      std::shared_ptr<proxy::metrics_registry> metrics, boost::asio::any_io_executor blocking,
      std::string self_url, std::string control_token);
};

}  // namespace pantry::orchestrator::coordinator
