#pragma once

// A remote runner: this pantry's runner taking jobs from another pantry's coordinator
// (`pantry runner --coordinator URL --token T`, config `ci.runner_of`). It is the client of the
// coordinator's /api/v1/runners/ routes (service.cpp):
//
//   POST /api/v1/runners/claim?wait_ms=N      long-poll: 200 with a ticket (ticket.h), 204 none
//   POST /api/v1/runners/heartbeat            {"jobs": [{job, lease}…]} → {"lost": [job…]}
//   POST /api/v1/runners/jobs/<id>/log?lease=L        NDJSON lines {time, stream, step, text}
//   GET  /api/v1/runners/jobs/<id>/source?lease=L     the uploaded tree
//   GET  /api/v1/runners/jobs/<id>/artifacts/<from>?lease=L
//   PUT  /api/v1/runners/jobs/<id>/artifacts?lease=L
//   POST /api/v1/runners/jobs/<id>/tests?lease=L      [test result…] (test_history.h's to_json)
//   GET  /api/v1/runners/jobs/<id>/secrets/<name>?lease=L
//   POST /api/v1/runners/jobs/<id>/finish?lease=L     {passed, exit_code, cpu_seconds, reason,
//   image, cache} (cache: the job's traffic through this runner's pantry, cache_use.h's to_json)
//
// Every job route answers 409 once the lease is no longer the job's (cancelled, superseded,
// re-queued after this runner went silent): the runner then kills the job. The heartbeat finds
// the same even when the job prints nothing. See docs/ARCHITECTURE.md, "Remote runners".
//
// Images: a ticket names its image as the coordinator's pantry knows it (`local/ci/x@sha256:…`,
// `busybox@sha256:…`); the runner pulls it through its own pantry, whose OCI upstream named
// `coordinator` is the coordinator's pantry, as `coordinator/<name>` (remote_image()).

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/log_store.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/service.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pantry::orchestrator::coordinator {

// The name of the OCI upstream through which a remote runner's pantry reaches the coordinator's.
inline constexpr std::string_view kCoordinatorUpstream = "coordinator";

// The image of a ticket as the runner's pantry names it: "coordinator/" + `image` ("" stays "").
std::string remote_image(std::string_view image);
// The inverse, for the outcome the runner reports: `image` without the "coordinator/" prefix.
std::string coordinator_image(std::string_view image);

// One job's log lines on their way to the coordinator, batched: sent when a batch reaches
// options.flush_bytes or its first line is options.flush_after old, never one request per line.
// A sender thread of its own makes the requests, so add() never waits for the network (it is
// called from the runner's threads) unless options.max_pending bytes are already waiting.
//
// Thread safety: add() from any thread; close() once, from one thread.
class log_batcher {
 public:
  enum class sent {
    ok,      // the coordinator stored the batch
    lost,    // 409: the job is no longer this runner's; nothing more is sent
    failed,  // no answer or another status: the batch is tried again
  };
  // Sends one batch (NDJSON, one log_entry per line). Blocking; called on the sender thread.
  using send_fn = std::function<sent(const std::string& ndjson)>;

  struct options {
    std::size_t flush_bytes = std::size_t{64} << 10;  // a batch this large goes at once
    std::chrono::milliseconds flush_after{200};       // a line waits at most this long
    std::size_t max_pending = std::size_t{4} << 20;   // add() waits while this much is unsent
    std::chrono::milliseconds retry_after{250};       // after a failed send
    int max_failures = 40;  // sends failed in a row before a batch is dropped (about 10 s)
  };

  explicit log_batcher(send_fn send);
  log_batcher(send_fn send, options opt);
  // close().
  ~log_batcher();
  log_batcher(const log_batcher&) = delete;
  log_batcher& operator=(const log_batcher&) = delete;

  // Queues `entries`. Returns false iff the lease is known to be lost (then nothing is queued).
  bool add(std::vector<log_entry> entries);
  // Sends what is queued (trying a failed batch again, at most max_failures times) and stops the
  // sender thread. Later add() calls drop their lines.
  void close();
  bool lost() const;
  // Requests made so far (for tests and logs).
  std::uint64_t requests() const;

 private:
  void sender();

  send_fn send_;
  options opt_;
  mutable std::mutex mu_;
  std::condition_variable wake_;                    // the sender: a batch is due, or close()
  std::condition_variable drained_;                 // add(): pending went down
  std::string pending_;                             // guarded by mu_
  std::chrono::steady_clock::time_point first_at_;  // when pending_'s first line came
  bool closing_ = false;                            // guarded by mu_
  bool lost_ = false;                               // guarded by mu_
  std::uint64_t requests_ = 0;                      // guarded by mu_
  std::thread thread_;
};

// `pantry runner`: `cfg.ci.runner_of.slots` slots (0: one per core), each claiming a job from
// the coordinator at cfg.ci.runner_of.url and running it with execute_job() on `runner`.
//
// start() fails when the runner is null (runner.enabled is off) or the config has no OCI upstream
// named `coordinator`; it does not reach the coordinator (an unreachable coordinator is tried
// again every second, with a warning). stop() kills the jobs it holds and returns within about
// the claim's wait (5 s): jobs it held are re-queued by the coordinator when the runner's
// silence passes ci.runner_timeout there.
class remote_runner_service : public proxy::service {
 public:
  static std::shared_ptr<remote_runner_service> create(
      const config::config& cfg, std::shared_ptr<runner::runner_service> runner);
};

}  // namespace pantry::orchestrator::coordinator
