#pragma once

// The built-in runner as a tenant of `pantry serve` (proxy/service.h): it runs steps — one
// command in a container of an image named by digest — for `pantry run`, the builder's RUN steps
// and, later, the coordinator's jobs.
//
// A step: the image is resolved through pantry's own /v2/ (images.h: the cache, else the
// upstream, else a hosted repository, every digest checked), its layers unpacked once into the
// layer store, the container made and run by the runtime (container.h) under pantry's own runc
// root and cgroup parent. Network `isolated` gets a listener of pantry's own inside the job's
// network namespace, at 127.0.0.1:<runner.job_port>, serving only the read-only routes (the
// PyPI index and files, GET and HEAD on /v2/); the step's PIP_INDEX_URL and friends point there.
// Before the step's own output its log gets the environment report (report.h): the host, the
// image by digest, the step's environment with secrets masked, and the image's Python, pip and
// `pip freeze` (a short probe in the same image, network none) when it has them.
//
// HTTP: `POST /api/v1/runner/steps` with a JSON step (see parse_step_request) and the control
// token (`Authorization: Bearer …`, app/control.h); the answer streams the step's log as
// newline-delimited JSON events, one per line, ending with the result (see the route in
// service.cpp and cli/run.cpp, its client). A client that goes away cancels the step.
//
// Threads: steps block (processes, mounts), so each runs on the runner's own pool, never on an
// I/O thread nor on the app's blocking pool (which does the cache's writes).

#include "pantry/cache/digest.h"
#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/container.h"
#include "pantry/orchestrator/runner/process.h"
#include "pantry/orchestrator/runner/step_request.h"
#include "pantry/proxy/service.h"
#include "pantry/proxy/traffic.h"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::cache {
class store;
}  // namespace pantry::cache

namespace pantry::orchestrator::runner {

// What a step's log is made of, in order: report lines, then output lines.
struct step_event {
  enum class kind { report, output };
  kind type = kind::output;
  output_stream stream = output_stream::out;
  log_line line;
};
using step_event_sink = std::function<void(const step_event&)>;

struct step_outcome {
  std::string image;  // the image as pinned: NAME@sha256:… of the manifest that ran
  step_result result;
  // What the step asked of pantry through its own listener (network isolated), by route label and
  // cache outcome; empty for other networks.
  std::vector<proxy::traffic_entry> traffic;
  // The runner's pull of the step's image through /v2/ on the step's behalf: the manifests and
  // config, and the layers the layer store did not have yet (run_step only).
  std::vector<proxy::traffic_entry> image_pull;
};
boost::json::object to_json(const step_outcome& outcome);

// Cancels a step from any thread (idempotent); a step cancelled before it starts never runs.
class step_cancel {
 public:
  void cancel() noexcept;
  bool cancelled() const noexcept;
  // Called at once if already cancelled; replaces an earlier callback. Returns after `fn` ran
  // when it runs now. nullptr detaches.
  void on_cancel(std::function<void()> fn);

 private:
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  std::function<void()> fn_;
};

// A layer blob in pantry's cache (one the builder made) to stack on an image's layers.
struct cached_layer {
  cache::digest digest;   // of the blob as stored
  cache::digest diff_id;  // of its uncompressed tar
  std::string media_type;
};

// A builder's RUN step: the stage's layers so far, the command as the stage's config makes it,
// and where to keep what the step wrote.
struct layers_step_request {
  std::string base_image;            // NAME@sha256:… the stage starts from; "" for scratch
  std::vector<cached_layer> layers;  // built so far, on top of the base's, in order
  // argv (the whole command), env (the whole environment: the image's is not added again),
  // user, working_dir, network, limits. The image, secrets and report fields are ignored.
  step_request step;
  std::string architecture = "amd64";
  // Where the step's upper directory goes (container_spec's root.keep_upper): absolute, absent,
  // on the runner's state directory's file system (see keep_upper_dir()).
  std::filesystem::path keep_upper;
};

class runner_service : public proxy::service {
 public:
  // The runner of `cfg.runner` (its places settled with config::runner_places_for), reaching
  // pantry's own routes at `self_url` ("http://127.0.0.1:PORT"). `token`: the control token
  // requests must carry. Nothing is opened before start(), which opens the layer store and the
  // runtime (this process then becomes a child subreaper) and removes what a crashed pantry left in
  // the runner's places; when that fails (no runc, not root) pantry serves without the runner, logs
  // why, and the runner's routes and run_step() answer with the reason.
  static std::shared_ptr<runner_service> create(const config::config& cfg, std::string self_url,
                                                std::string token,
                                                std::shared_ptr<cache::store> store);

  // Runs one step to its end: resolves and unpacks the image, runs the report and the step, and
  // calls `sink` for every line (from the runner's threads, one call at a time). Errors: the
  // image could not be had (the message names the reference; an unpinned tag's refusal prints
  // the digest it resolves to), the step is invalid (errc::invalid_argument naming the option),
  // the runner is stopped (errc::cancelled). A step that ran and failed is no error: see the
  // outcome's exit code.
  virtual boost::asio::awaitable<result<step_outcome>> run_step(
      step_request request, step_event_sink sink, std::shared_ptr<step_cancel> cancel) = 0;

  // Runs a builder's RUN step (no report, the step's writes on disk, kept at
  // request.keep_upper). The base image's layers come through /v2/, the cached layers from the
  // cache (each unpacked once into the layer store). Errors as run_step(); a cached layer the
  // cache no longer has is errc::not_found naming it.
  virtual boost::asio::awaitable<result<step_outcome>> run_on_layers(
      layers_step_request request, step_event_sink sink, std::shared_ptr<step_cancel> cancel) = 0;

  // Writes the merged file system of `base_image`'s layers and `layers` (whiteouts applied;
  // owners, modes, links and xattrs as stored) into the existing directory `dir` on this host:
  // everything, or with `paths` (absolute) each of those paths with what is below it and the
  // directories above it. A path the file system lacks is skipped. For the builder's COPY --from
  // and its look at a stage's /etc/passwd. Errors as run_on_layers(), or the copy's.
  virtual boost::asio::awaitable<result<void>> materialize(std::string base_image,
                                                           std::vector<cached_layer> layers,
                                                           std::filesystem::path dir,
                                                           std::vector<std::string> paths) = 0;

  // A directory on the state directory's file system for kept upper directories (created by
  // start()); "" while the runner is disabled.
  virtual std::filesystem::path keep_upper_dir() const = 0;

  // The control token requests must carry, for other services' routes.
  virtual const std::string& token() const noexcept = 0;
};

}  // namespace pantry::orchestrator::runner
