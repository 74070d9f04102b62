#include "pantry/orchestrator/runner/service.h"

#include "pantry/cache/store.h"
#include "pantry/orchestrator/runner/images.h"
#include "pantry/orchestrator/runner/layer_store.h"
#include "pantry/orchestrator/runner/report.h"
#include "pantry/orchestrator/runner/step_stream.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/server.h"

#include "../host_fs.h"

#include <boost/asio/thread_pool.hpp>

#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <list>
#include <mutex>

namespace pantry::orchestrator::runner {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;

constexpr std::size_t kMaxRequest = std::size_t{4} << 20;  // secrets are at most 1 MiB each
// The Python probe: bounded, so that an image whose python3 hangs cannot hold the step.
constexpr std::chrono::seconds kProbeTimeout{30};
constexpr std::uint64_t kProbeTmpfs = std::uint64_t{64} << 20;
constexpr std::size_t kRunnerThreads = 32;

// --- the service

class runner_impl final : public runner_service, public std::enable_shared_from_this<runner_impl> {
 public:
  runner_impl(const config::config& cfg, std::string self_url, std::string token,
              std::shared_ptr<cache::store> store)
      : cfg_(cfg.runner),
        places_(config::runner_places_for(cfg)),
        base_url_(std::move(self_url)),
        token_(std::move(token)),
        store_(std::move(store)) {}

  void install(proxy::server& srv) override;
  result<void> start() override;
  void stop() noexcept override;

  asio::awaitable<result<step_outcome>> run_step(step_request request, step_event_sink sink,
                                                 std::shared_ptr<step_cancel> cancel) override;
  asio::awaitable<result<step_outcome>> run_on_layers(layers_step_request request,
                                                      step_event_sink sink,
                                                      std::shared_ptr<step_cancel> cancel) override;
  asio::awaitable<result<void>> materialize(std::string base_image,
                                            std::vector<cached_layer> layers, fs::path dir,
                                            std::vector<std::string> paths) override;
  fs::path keep_upper_dir() const override {
    return disabled_.empty() ? keep_upper_dir_path() : fs::path();
  }
  // Beside the state directory (so on its file system, unless that is a mount point of its
  // own), and never inside it: sweep() empties the state directory.
  fs::path keep_upper_dir_path() const { return places_.state_dir + ".kept"; }
  const std::string& token() const noexcept override { return token_; }

 private:
  asio::awaitable<void> handle(proxy::exchange& ex);
  // Opens the layer store and the runtime and sweeps what a crashed pantry left.
  std::optional<error> open();
  // The blocking part of a step, on the runner's pool. `pinned`: the image as the report and the
  // log name it.
  result<step_outcome> execute(const step_request& request, const image_config& config,
                               const std::string& pinned, const std::vector<layer_lease>& layers,
                               const fs::path& keep_upper, const step_event_sink& sink,
                               step_cancel& cancel);
  // Leases on the base image's layers (through /v2/) and the cached layers (from the cache),
  // in order; `pinned` gets the base as pinned ("scratch" without one).
  asio::awaitable<result<std::vector<layer_lease>>> stack(const std::string& base_image,
                                                          const std::vector<cached_layer>& layers,
                                                          std::string& pinned);
  // Registers `cancel` while the step runs, so that stop() can cancel it.
  struct active_step {
    runner_impl* self;
    std::shared_ptr<step_cancel> cancel;
    ~active_step();
  };
  std::unique_ptr<active_step> track(std::shared_ptr<step_cancel> cancel);
  void report(const step_event_sink& sink, const std::vector<std::string>& lines);
  std::vector<std::string> probe_python(const container_spec& main, step_cancel& cancel);

  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_pool(F f) {
    return proxy::off_thread(pool_->get_executor(), std::move(f));
  }

  config::runner_config cfg_;
  config::runner_places places_;  // runc root, state dir, cgroup parent, layers dir: settled
  std::string base_url_;
  std::string token_;
  std::shared_ptr<cache::store> store_;
  proxy::server* server_ = nullptr;
  std::string disabled_;  // why start() could not open the runner; "" when it runs
  std::shared_ptr<proxy::client> client_;
  std::optional<asio::thread_pool> pool_;
  std::shared_ptr<layer_store> layers_;
  std::unique_ptr<runtime> runtime_;
  std::shared_ptr<image_puller> puller_;
  host_facts host_;
  std::atomic<bool> stopping_{false};
  std::mutex active_mutex_;
  std::list<std::shared_ptr<step_cancel>> active_;  // guarded by active_mutex_
  std::atomic<std::uint64_t> steps_started_{0};
};

void runner_impl::install(proxy::server& srv) {
  server_ = &srv;
  // The runner's own client: loopback to pantry itself, never through an HTTP proxy of the
  // environment (which would not know 127.0.0.1 as this host).
  proxy::client_options co;
  co.use_env_proxy = false;
  co.user_agent = "pantry-runner";
  client_ = proxy::client::create(srv.executor(), co);
  std::weak_ptr<runner_impl> weak = weak_from_this();
  srv.route("/api/v1/runner/", [weak](proxy::exchange& ex) -> asio::awaitable<void> {
    auto self = weak.lock();
    if (!self) {
      co_await respond_text(ex, http::status::service_unavailable, "the runner has stopped");
      co_return;
    }
    co_await self->handle(ex);
  });
}

result<void> runner_impl::start() {
  if (auto e = open()) {
    // pantry serves its registries without the runner rather than not at all (a machine without
    // runc, a user who is not root); the runner's routes say why.
    disabled_ = e->message;
    spdlog::warn("runner: disabled: {}", e->message);
  }
  return {};
}

std::optional<error> runner_impl::open() {
  pool_.emplace(kRunnerThreads);
  layer_store_options lo;
  lo.root = places_.layers_dir;
  lo.max_size = cfg_.layers.max_size;
  auto store = layer_store::open(lo);
  if (!store) return error(store.error().code, "layer store: " + store.error().message);
  layers_ = std::move(*store);
  runtime_options ro;
  ro.runc = cfg_.runc;
  ro.runc_root = places_.runc_root;
  ro.state_dir = places_.state_dir;
  ro.cgroup_parent = places_.cgroup_parent;
  auto rt = runtime::open(ro);
  if (!rt) return rt.error();
  runtime_ = std::move(*rt);
  auto swept = runtime_->sweep();
  if (!swept) {
    spdlog::warn("runner: cleaning up after an earlier run failed: {}", swept.error().message);
  }
  std::error_code ec;
  fs::create_directories(keep_upper_dir_path(), ec);
  if (ec)
    return error(errc::io_error,
                 "cannot make " + keep_upper_dir_path().string() + ": " + ec.message());
  host_ = read_host_facts();
  // The control token passes pantry's pull authentication (oci.hosted.pull_auth).
  puller_ =
      image_puller::create(client_, base_url_, "Bearer " + token_, layers_, pool_->get_executor());
  auto st = layers_->stats();
  spdlog::info(
      "runner: runc root {}, state dir {}, cgroup parent {}; {} unpacked layers in {} "
      "({} bytes)",
      places_.runc_root, places_.state_dir, places_.cgroup_parent, st.layers, places_.layers_dir,
      st.bytes);
  return std::nullopt;
}

void runner_impl::stop() noexcept {
  stopping_ = true;
  {
    std::lock_guard lock(active_mutex_);
    for (auto& c : active_)
      c->cancel();
  }
  // Cancelled steps end within the runtime's kill grace; their threads then finish.
  if (pool_) pool_->join();
  puller_.reset();
  client_.reset();
  if (!runtime_) return;
  runtime_.reset();  // its parent cgroups go with it where they are empty
  // The runner's places go too where they are empty (rmdir removes nothing else), and the parent
  // of the derived ones: /run/pantry/<ID>/ would otherwise pile up, one per data dir ever served.
  // A parent of a place the config names is the user's, and stays.
  for (const fs::path& dir :
       {keep_upper_dir_path(), fs::path(places_.state_dir), fs::path(places_.runc_root)}) {
    ::rmdir(dir.c_str());
  }
  if (!cfg_.state_dir) ::rmdir(fs::path(places_.state_dir).parent_path().c_str());
  if (!cfg_.runc_root) ::rmdir(fs::path(places_.runc_root).parent_path().c_str());
}

void runner_impl::report(const step_event_sink& sink, const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    step_event e;
    e.type = step_event::kind::report;
    e.line.time = log_clock::now();
    e.line.text = l;
    sink(e);
  }
}

runner_impl::active_step::~active_step() {
  std::lock_guard lock(self->active_mutex_);
  self->active_.remove(cancel);
}

std::unique_ptr<runner_impl::active_step> runner_impl::track(std::shared_ptr<step_cancel> cancel) {
  {
    std::lock_guard lock(active_mutex_);
    active_.push_back(cancel);
  }
  if (stopping_) cancel->cancel();
  return std::make_unique<active_step>(active_step{this, std::move(cancel)});
}

asio::awaitable<result<step_outcome>> runner_impl::run_step(step_request request,
                                                            step_event_sink sink,
                                                            std::shared_ptr<step_cancel> cancel) {
  if (!disabled_.empty()) co_return error(errc::io_error, "the runner is disabled: " + disabled_);
  if (stopping_) co_return error(errc::cancelled, "the runner is stopping");
  auto tracked = track(cancel);
  auto ref = parse_image_reference(request.image);
  if (!ref) co_return ref.error();
  auto pull = std::make_shared<proxy::traffic_tally>();
  auto image = co_await puller_->resolve(*ref, request.allow_unpinned, pull);
  if (!image) co_return image.error();
  auto leases = co_await puller_->unpack_layers(*image, pull);
  if (!leases) co_return leases.error();
  auto ran = co_await on_pool(
      [&]() { return execute(request, image->config, image->pinned, *leases, {}, sink, *cancel); });
  if (ran) ran->image_pull = pull->entries();
  co_return ran;
}

asio::awaitable<result<step_outcome>> runner_impl::run_on_layers(
    layers_step_request request, step_event_sink sink, std::shared_ptr<step_cancel> cancel) {
  if (!disabled_.empty()) co_return error(errc::io_error, "the runner is disabled: " + disabled_);
  if (stopping_) co_return error(errc::cancelled, "the runner is stopping");
  auto tracked = track(cancel);
  std::string pinned;
  auto stacked = co_await stack(request.base_image, request.layers, pinned);
  if (!stacked) co_return stacked.error();
  std::vector<layer_lease> leases = std::move(*stacked);
  if (leases.empty()) {
    co_return error(errc::invalid_argument,
                    "a RUN step needs a file system to run in: FROM scratch has none yet (COPY a "
                    "static binary first, or start FROM an image)");
  }
  image_config config;
  config.architecture = request.architecture;
  request.step.environment_report = false;
  request.step.secrets.clear();
  request.step.tmpfs_size = 0;
  co_return co_await on_pool([&]() {
    return execute(request.step, config, pinned, leases, request.keep_upper, sink, *cancel);
  });
}

asio::awaitable<result<std::vector<layer_lease>>> runner_impl::stack(
    const std::string& base_image, const std::vector<cached_layer>& layers, std::string& pinned) {
  std::vector<layer_lease> leases;
  pinned = "scratch";
  if (!base_image.empty()) {
    auto ref = parse_image_reference(base_image);
    if (!ref) co_return ref.error();
    auto image = co_await puller_->resolve(*ref, /*allow_unpinned=*/false);
    if (!image) co_return image.error();
    auto base = co_await puller_->unpack_layers(*image);
    if (!base) co_return base.error();
    leases = std::move(*base);
    pinned = image->pinned;
  }
  auto built = co_await on_pool([&]() -> result<void> {
    for (const auto& l : layers) {
      auto have = layers_->acquire(l.diff_id);
      if (have) {
        leases.push_back(std::move(*have));
        continue;
      }
      auto blob = store_->open_blob(l.digest);
      if (!blob) {
        return error(errc::not_found,
                     "layer " + l.digest.str() + " (diff ID " + l.diff_id.str() +
                         ") is no longer in pantry's cache: " + blob.error().message);
      }
      auto lease = layers_->unpack(l.diff_id, l.media_type, blob_source(std::move(*blob)));
      if (!lease) return lease.error();
      leases.push_back(std::move(*lease));
    }
    return {};
  });
  if (!built) co_return built.error();
  co_return leases;
}

asio::awaitable<result<void>> runner_impl::materialize(std::string base_image,
                                                       std::vector<cached_layer> layers,
                                                       fs::path dir,
                                                       std::vector<std::string> paths) {
  if (!disabled_.empty()) co_return error(errc::io_error, "the runner is disabled: " + disabled_);
  std::string pinned;
  auto leases = co_await stack(base_image, layers, pinned);
  if (!leases) co_return leases.error();
  if (leases->empty()) co_return result<void>{};  // scratch: nothing to copy
  co_return co_await on_pool([&]() -> result<void> {
    // A read-only view would need two lower directories at least; an overlay with a scratch
    // upper directory (never written) takes one as well.
    const fs::path work = keep_upper_dir_path() / ("view-" + random_hex16());
    const fs::path root = work / "root";
    std::error_code ec;
    for (const auto& d : {root, work / "upper", work / "work", work / "links"}) {
      fs::create_directories(d, ec);
      if (ec) return error(errc::io_error, "cannot make " + d.string() + ": " + ec.message());
    }
    std::vector<fs::path> dirs;
    for (const auto& l : *leases)
      dirs.push_back(l.dir());
    if (auto e = detail::mount_overlay(root, dirs, work / "links", work / "upper", work / "work")) {
      fs::remove_all(work, ec);
      return *e;
    }
    result<void> copied = {};
    // cp -a keeps owners, modes, links, hard links, device nodes and xattrs; --parents makes the
    // directories above a path.
    spawn_options o;
    o.program = "/bin/cp";
    o.working_dir = root.string();
    o.args = {"-a", "--parents", "-t", dir.string(), "--"};
    bool any = false;
    if (paths.empty()) {
      o.args.push_back(".");
      any = true;
    }
    for (const auto& p : paths) {
      std::string rel = fs::path(p).lexically_normal().relative_path().string();
      if (rel.empty()) rel = ".";
      if (rel.starts_with("..")) continue;
      struct stat st {};
      if (::lstat((root / rel).c_str(), &st) != 0) continue;  // not in this file system
      o.args.push_back(rel);
      any = true;
    }
    if (any) {
      auto r = run_process(o, std::chrono::minutes(10));
      if (!r) {
        copied = r.error();
      } else if (!r->status.success()) {
        copied = error(errc::io_error, "copying the stage's files failed (" + to_string(r->status) +
                                           "): " + r->out.substr(0, 2000));
      }
    }
    auto unmounted = detail::unmount(root);
    if (!unmounted) fs::remove_all(work, ec);
    if (unmounted) spdlog::warn("runner: {}", unmounted->message);
    return copied;
  });
}

std::vector<std::string> runner_impl::probe_python(const container_spec& main,
                                                   step_cancel& cancel) {
  container_spec probe;
  probe.root.layers = main.root.layers;
  probe.root.tmpfs_size_bytes = kProbeTmpfs;
  probe.image = main.image;
  probe.step.entrypoint =
      std::vector<std::string>{"/bin/sh", "-c", std::string(python_probe_script())};
  probe.step.argv.clear();
  probe.step.env = main.step.env;
  probe.step.user = main.step.user;
  probe.step.working_dir = main.step.working_dir;
  probe.step.network = network_mode::none;
  probe.step.memory_bytes = main.step.memory_bytes;
  probe.step.pids_limit = main.step.pids_limit;
  probe.timeout = kProbeTimeout;
  auto c = runtime_->create(std::move(probe));
  if (!c) return {"python: not probed: " + c.error().message};
  cancel.on_cancel([p = c->get()] { p->cancel(); });
  std::string out;
  auto r = (*c)->run([&](const output_line& l) {
    out += l.line.text;
    out += '\n';
  });
  cancel.on_cancel(nullptr);
  if (!r) return {"python: not probed: " + r.error().message};
  if (r->timed_out) return {"python: the probe did not finish within 30 s"};
  return python_report(out);
}

result<step_outcome> runner_impl::execute(const step_request& request, const image_config& config,
                                          const std::string& pinned,
                                          const std::vector<layer_lease>& layers,
                                          const fs::path& keep_upper, const step_event_sink& sink,
                                          step_cancel& cancel) {
  const auto& defaults = cfg_.defaults;
  container_spec spec;
  for (const auto& l : layers)
    spec.root.layers.push_back(l.dir());
  spec.root.tmpfs_size_bytes = request.tmpfs_size ? *request.tmpfs_size : defaults.tmpfs_size;
  spec.root.keep_upper = keep_upper;
  spec.image = config;
  spec.step = request.step;
  step_options& step = spec.step;
  if (!step.memory_bytes && defaults.memory > 0) step.memory_bytes = defaults.memory;
  if (!step.cpus && defaults.cpus > 0) step.cpus = defaults.cpus;
  if (!step.pids_limit && defaults.pids_limit > 0) {
    step.pids_limit = static_cast<std::int64_t>(defaults.pids_limit);
  }
  spec.timeout = request.timeout.count() > 0
                     ? request.timeout
                     : std::chrono::duration_cast<std::chrono::milliseconds>(defaults.timeout);
  spec.output = request.output;
  spec.max_line = cfg_.max_line;
  step.netns_path.clear();
  step.secrets.clear();
  step.seccomp = nullptr;
  step.seccomp_unconfined = false;
  for (const auto& s : request.secrets)
    step.secrets.push_back(secret_file{s.name, "", s.value});
  switch (step.network) {
    case network_mode::isolated:
      step.index_url = "http://127.0.0.1:" + std::to_string(cfg_.job_port) + "/simple/";
      break;
    case network_mode::host:
      step.index_url = base_url_ + "/simple/";
      break;
    case network_mode::none:
      step.index_url.clear();
      break;
  }
  auto made = runtime_->create(spec);
  if (!made) return made.error();
  container& c = **made;
  const std::uint64_t n = ++steps_started_;
  spdlog::info("runner: step {} in {}: {}", n, pinned,
               command_for_log(request.step.argv, c.secret_values()));

  if (request.environment_report) {
    report(sink,
           environment_report(host_, request.image, pinned, c.environment(), c.secret_values()));
    if (c.has_executable("python3") && !cancel.cancelled()) {
      report(sink, probe_python(spec, cancel));
    }
  }

  // pantry's own read-only routes, at 127.0.0.1:job_port inside the job's namespace.
  std::unique_ptr<proxy::listener> listener;
  std::shared_ptr<proxy::traffic_tally> traffic;
  if (const network_namespace* ns = c.network(); ns && step.network == network_mode::isolated) {
    auto l = ns->listen_tcp("127.0.0.1", cfg_.job_port);
    if (!l)
      return error(l.error().code,
                   "runner: cannot listen in the job's network: " + l.error().message);
    proxy::listener_options lo;
    lo.name = "job " + c.id();
    lo.allow = [](http::verb method, std::string_view path) {
      if (method != http::verb::get && method != http::verb::head) return false;
      for (std::string_view prefix : {"/simple/", "/files/", "/pypi/", "/v2/"}) {
        if (path.starts_with(prefix) || path == prefix.substr(0, prefix.size() - 1)) return true;
      }
      return false;
    };
    traffic = std::make_shared<proxy::traffic_tally>();
    lo.traffic = traffic;
    auto adopted = server_->adopt_listener(l->fd.release(), std::move(lo));
    if (!adopted) return adopted.error();
    listener = std::move(*adopted);
  }

  cancel.on_cancel([&c] { c.cancel(); });
  auto r = c.run([&](const output_line& l) {
    step_event e;
    e.stream = l.stream;
    e.line = l.line;
    sink(e);
  });
  cancel.on_cancel(nullptr);
  if (listener) listener->close();
  if (!r) return r.error();
  if (r->cleanup_error) {
    spdlog::warn("runner: step {}: cleaning up: {}", n, r->cleanup_error->message);
  }
  step_outcome out{pinned, std::move(*r), {}, {}};
  // The listener is closed: its connections are reset, so no exchange of the step is counted
  // after this read but one that was being answered as the step ended.
  if (traffic) out.traffic = traffic->entries();
  return out;
}

asio::awaitable<void> runner_impl::handle(proxy::exchange& ex) {
  ex.set_route("runner_steps");
  const auto& req = ex.request();
  auto target = std::string_view(req.target());
  if (target != "/api/v1/runner/steps") {
    co_await respond_text(ex, http::status::not_found,
                          "no such runner route: " + std::string(target));
    co_return;
  }
  if (req.method() != http::verb::post) {
    co_await respond_text(ex, http::status::method_not_allowed,
                          "POST a step to /api/v1/runner/steps");
    co_return;
  }
  if (!co_await authorized(ex, token_)) co_return;
  if (!disabled_.empty()) {
    co_await respond_text(ex, http::status::service_unavailable,
                          "this pantry runs no steps: its runner is disabled: " + disabled_);
    co_return;
  }
  auto body = co_await read_body(ex, kMaxRequest);
  if (!body) co_return;
  auto request = parse_step_request(*body);
  if (!request) {
    co_await respond_text(ex, http::status::bad_request, request.error().message);
    co_return;
  }
  streamed_step step =
      [self = shared_from_this(), request = std::move(*request)](
          step_event_sink sink,
          std::shared_ptr<step_cancel> cancel) mutable -> asio::awaitable<result<json::object>> {
    auto r = co_await self->run_step(std::move(request), std::move(sink), std::move(cancel));
    if (!r) co_return r.error();
    co_return to_json(*r);
  };
  co_await stream_step(ex, std::move(step));
}

}  // namespace

// --- step_cancel

// The callback runs under the lock, so that once on_cancel() replaced it no thread is still
// inside the old one (which may point at a container about to be destroyed).
void step_cancel::cancel() noexcept {
  std::lock_guard lock(mutex_);
  if (cancelled_) return;
  cancelled_ = true;
  if (fn_) fn_();
}

bool step_cancel::cancelled() const noexcept {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void step_cancel::on_cancel(std::function<void()> fn) {
  std::lock_guard lock(mutex_);
  fn_ = std::move(fn);
  if (cancelled_ && fn_) fn_();
}

// --- JSON

json::object to_json(const step_outcome& outcome) {
  const step_result& r = outcome.result;
  json::object o;
  o["image"] = outcome.image;
  o["exit_code"] = r.exit_code;
  if (r.signal) o["signal"] = r.signal;
  o["wall_seconds"] = std::chrono::duration<double>(r.wall_time).count();
  if (r.peak_memory_bytes) o["peak_memory_bytes"] = *r.peak_memory_bytes;
  if (r.cpu_seconds) o["cpu_seconds"] = *r.cpu_seconds;
  o["oom_killed"] = r.oom_killed;
  o["pids_limit_hit"] = r.pids_limit_hit;
  o["timed_out"] = r.timed_out;
  o["cancelled"] = r.cancelled;
  if (!r.runc_error.empty()) o["runc_error"] = r.runc_error;
  if (!r.notes.empty()) {
    json::array notes;
    for (const auto& n : r.notes)
      notes.emplace_back(n);
    o["notes"] = std::move(notes);
  }
  return o;
}

std::shared_ptr<runner_service> runner_service::create(const config::config& cfg,
                                                       std::string self_url, std::string token,
                                                       std::shared_ptr<cache::store> store) {
  return std::make_shared<runner_impl>(cfg, std::move(self_url), std::move(token),
                                       std::move(store));
}

}  // namespace pantry::orchestrator::runner
