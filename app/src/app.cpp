#include "pantry/app/app.h"

#include "pantry/app/control.h"
#include "pantry/app/human.h"
#include "pantry/app/notify.h"
#include "pantry/cache/store.h"
#include "pantry/cache/succession.h"
#include "pantry/orchestrator/builder/service.h"
#include "pantry/orchestrator/coordinator/remote_runner.h"
#include "pantry/orchestrator/coordinator/service.h"
#include "pantry/orchestrator/pins/api_service.h"
#include "pantry/orchestrator/pins/bot_service.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/handover.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"
#include "pantry/registry/oci/service.h"
#include "pantry/registry/pypi/service.h"
#include "pantry/web/service.h"
#include "reloader.h"
#include "succession.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/host_name.hpp>
#include <boost/asio/thread_pool.hpp>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pantry::app {
namespace {

namespace asio = boost::asio;

// What the services are built from: the parts the assembly owns and lends them.
struct parts {
  std::string self_url;  // pantry's own routes from this machine (app/control.h)
  std::string control_token;
  std::shared_ptr<cache::store> store;
  std::shared_ptr<proxy::metrics_registry> metrics;
  std::shared_ptr<proxy::client> upstream;
  std::shared_ptr<proxy::upstream_health> health;  // what `upstream` last saw from each origin
  std::shared_ptr<proxy::flight_table> flights;
  asio::any_io_executor blocking;  // cache writes and other blocking work, off the I/O threads
  std::function<std::optional<config::reload_report>()> last_reload;  // for /readyz
};

// Every tenant of the server, in the order they are installed and started (and stopped in
// reverse); those from `first_job_service` on run jobs (containers, the journal, the runner's
// state dir), which one process at a time may do: after an upgrade the successor starts them only
// once the predecessor has let go of the data dir.
struct service_list {
  std::vector<std::shared_ptr<proxy::service>> all;
  std::size_t first_job_service = 0;
};

service_list make_services(const config::config& cfg, const parts& p) {
  std::shared_ptr<orchestrator::runner::runner_service> runner;
  if (cfg.runner.enabled) {
    runner =
        orchestrator::runner::runner_service::create(cfg, p.self_url, p.control_token, p.store);
  }
  // A remote runner (ci.runner_of) takes its jobs from another pantry's coordinator instead of
  // running one of its own.
  std::shared_ptr<orchestrator::coordinator::coordinator_service> coordinator;
  if (cfg.ci.runner_of.url.empty() && cfg.ci.enabled) {
    coordinator = orchestrator::coordinator::coordinator_service::create(
        cfg, p.store, runner, p.metrics, p.blocking, p.self_url, p.control_token);
  }
  std::vector<std::shared_ptr<proxy::service>> services = {
      web::web_service::create(cfg, p.store, p.metrics, p.health, coordinator, PANTRY_VERSION,
                               p.last_reload),
      registry::pypi::service::create(cfg.pypi, p.store, p.upstream, p.flights, p.metrics,
                                      p.blocking, cfg.oci.hosted),
      registry::oci::service::create(cfg.oci, p.store, p.upstream, p.flights, p.metrics, p.blocking,
                                     p.control_token),
  };
  // GET /api/v1/pins: the records pins bump keeps, with or without the schedule.
  services.push_back(
      orchestrator::pins::api_service::create(cfg, coordinator, p.control_token, p.blocking));
  const std::size_t first_job_service = services.size();
  if (runner) {
    services.push_back(runner);
    services.push_back(orchestrator::builder::build_service::create(runner, p.store, p.blocking));
  }
  // After the runner: stopped before it, so that its jobs are cancelled while it still runs them.
  if (!cfg.ci.runner_of.url.empty()) {
    services.push_back(orchestrator::coordinator::remote_runner_service::create(cfg, runner));
  } else if (coordinator) {
    services.push_back(coordinator);
  }
  // Last: stopped first, so that a run under way ends before the parts it asks go.
  if (cfg.pins.enabled) {
    services.push_back(orchestrator::pins::bot_service::create(cfg, p.self_url, p.control_token));
  }
  return {std::move(services), first_job_service};
}

// What an upgrade does to running CI jobs, for its report.
std::string jobs_on_upgrade(const config::config& cfg, long old_pid, long new_pid) {
  const std::string drain = config::format_duration(
      std::chrono::duration_cast<std::chrono::seconds>(cfg.server.shutdown_grace));
  if (!cfg.ci.runner_of.url.empty()) {
    return "CI jobs drained: the jobs this runner took from " + cfg.ci.runner_of.url +
           " run on while process " + std::to_string(old_pid) + " drains (up to " + drain +
           "), then stop; that coordinator re-queues them once this runner is silent, and "
           "process " +
           std::to_string(new_pid) + " takes jobs from it";
  }
  if (cfg.ci.enabled) {
    return "CI jobs drained: the jobs running in process " + std::to_string(old_pid) +
           " run on while it drains (up to " + drain +
           "), then those still running stop, and process " + std::to_string(new_pid) +
           " re-queues them when it takes over the data dir (the restart counts as an attempt)";
  }
  return "no CI jobs run here (ci is off)";
}

proxy::server_options server_options_of(const config::config& cfg) {
  proxy::server_options so;
  so.host = cfg.listen.host;
  so.port = cfg.listen.port;
  so.threads = cfg.server.threads;
  so.header_timeout = cfg.server.header_timeout;
  so.idle_timeout = cfg.server.idle_timeout;
  so.shutdown_grace = cfg.server.shutdown_grace;
  so.access_log = cfg.server.access_log;
  return so;
}

proxy::client_options client_options_of(const config::config& cfg,
                                        std::shared_ptr<proxy::upstream_health> health) {
  proxy::client_options co;
  co.health = std::move(health);
  co.connect_timeout = cfg.upstream.connect_timeout;
  co.header_timeout = cfg.upstream.header_timeout;
  co.idle_timeout = cfg.upstream.idle_timeout;
  co.max_idle_per_host = cfg.upstream.max_idle_connections;
  return co;
}

// The name clients reach a server listening on `host` by: this machine's name when it listens
// on every address.
std::string reachable_host(const std::string& host) {
  if (!host.empty() && host != "0.0.0.0" && host != "::" && host != "[::]") return host;
  boost::system::error_code ec;
  std::string name = asio::ip::host_name(ec);
  if (ec || name.empty()) return "127.0.0.1";
  return name;
}

class app_impl final : public app {
 public:
  app_impl(const config::config& cfg, std::optional<handover> from)
      : cfg_(cfg), given_(cfg), from_(from) {}
  ~app_impl() override {
    if (auto r = tear_down(); !r) spdlog::error("pantry serve: {}", r.error().message);
  }

  result<void> assemble();

  std::uint16_t port() const noexcept override { return server_->port(); }
  const control_endpoint& control() const noexcept override { return control_; }
  result<void> run() override;
  void stop() noexcept override { server_->stop(); }
  void set_config_source(config_source source) override { reloader_->set_source(source); }
  config::reload_report reload(const std::optional<std::string>& file) override {
    return reloader_->reload(file);
  }
  result<upgrade_report> upgrade(const std::string& binary) override;

 private:
  // A successor's: starts the job services once the predecessor let go of the data dir, then
  // opens their gate.
  void start_job_services();
  // Stops the started services (last first), joins the blocking pool and flushes the cache.
  // Once only; later calls do nothing.
  result<void> tear_down();

  config::config cfg_;
  const config::config given_;    // cfg_ before the data dir's token key was filled in
  std::optional<handover> from_;  // set when an upgrade started this process
  bool torn_down_ = false;
  control_endpoint control_;
  bool published_ = false;

  // Declared in the order they are made, so destroyed in reverse: the services and the
  // flights hold the upstream client, whose pooled sockets must go before the server's
  // io_contexts (the server's destructor also drops its routes, which hold the services, while
  // its contexts still exist); the store goes last, releasing the data dir.
  std::shared_ptr<cache::store> store_;
  std::shared_ptr<proxy::metrics_registry> metrics_;
  std::unique_ptr<proxy::server> server_;
  std::shared_ptr<proxy::client> upstream_;
  std::shared_ptr<proxy::flight_table> flights_;
  std::optional<asio::thread_pool> blocking_;
  std::vector<std::shared_ptr<proxy::service>> services_;
  std::shared_ptr<reloader> reloader_;  // the last of services_
  std::size_t first_job_service_ = 0;
  std::size_t started_ = 0;  // services_[0, started_) have started
  // A successor's job services: their routes wait at the gate until job_starter_ started them.
  std::shared_ptr<detail::service_gate> gate_;
  std::unique_ptr<proxy::server> gated_;
  std::thread job_starter_;
  std::atomic<bool> quitting_{false};
  std::mutex upgrade_mutex_;
  long successor_pid_ = 0;  // guarded by upgrade_mutex_
};

result<void> app_impl::assemble() {
  cache::options opt;
  opt.data_dir = cfg_.data_dir;
  opt.mode = cache::open_mode::owner;
  opt.max_size = cfg_.cache.max_size;
  if (cfg_.ci.enabled) {
    // The cache's own room (store.h's default) plus the most that the coordinator's logs and
    // artifacts may hold, so that they can never fill the map; the journal is small beside them.
    constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
    opt.map_size = std::max(2 * cfg_.cache.max_size, kGiB) + 2 * cfg_.ci.log_limits.max_total +
                   2 * cfg_.ci.artifact_limits.max_total + kGiB;
    // A reload may raise the quota only within the cache's own room.
    opt.max_size_limit = std::max(2 * cfg_.cache.max_size, kGiB) / 2;
  }
  auto opened = from_ ? cache::open_as_successor(opt, from_->from_pid) : cache::store::open(opt);
  if (!opened) return opened.error();
  store_ = std::move(*opened);

  metrics_ = std::make_shared<proxy::metrics_registry>();
  auto srv = from_ ? proxy::create_on_socket(server_options_of(cfg_), metrics_, from_->listen_fd)
                   : proxy::server::create(server_options_of(cfg_), metrics_);
  if (!srv) return srv.error();
  server_ = std::move(*srv);
  if (from_ && cfg_.listen.port != 0 && cfg_.listen.port != server_->port()) {
    return error(errc::config_error,
                 "listen: port " + std::to_string(cfg_.listen.port) +
                     " differs from the port this pantry took over (" +
                     std::to_string(server_->port()) +
                     "): an upgrade keeps the listening socket; restart pantry to move it");
  }

  auto health = std::make_shared<proxy::upstream_health>();
  upstream_ = proxy::client::create(server_->executor(), client_options_of(cfg_, health));
  flights_ = std::make_shared<proxy::flight_table>(store_, upstream_);
  blocking_.emplace(2);
  // Tokens signed with a key kept in the data dir outlive a restart; instances behind one load
  // balancer share the configured key instead.
  if (cfg_.oci.hosted.token_key.empty()) {
    auto key = registry::oci::data_dir_token_key(cfg_.data_dir);
    if (!key) return key.error();
    cfg_.oci.hosted.token_key = std::move(*key);
  }
  control_ = control_endpoint{loopback_url(cfg_.listen.host, server_->port()), new_control_token(),
                              static_cast<long>(::getpid())};
  // As given, without the data dir's token key: a reload compares files with files.
  reloader_ =
      std::make_shared<reloader>(given_, cfg_.oci.hosted.token_key, metrics_,
                                 blocking_->get_executor(), control_.token, *server_, store_);
  auto made = make_services(
      cfg_, parts{control_.url, control_.token, store_, metrics_, upstream_, std::move(health),
                  flights_, blocking_->get_executor(), [weak = std::weak_ptr<reloader>(reloader_)] {
                    auto r = weak.lock();
                    return r ? r->last() : std::nullopt;
                  }});
  services_ = std::move(made.all);
  first_job_service_ = made.first_job_service;
  reloader_->set_services(services_);
  // Stopped first: no reload once the others stop. After the job services, so a successor takes
  // reloads once it holds the data dir (until then the route waits at the gate).
  services_.push_back(reloader_);
  if (from_) {
    gate_ = std::make_shared<detail::service_gate>();
    gated_ = detail::gated_server(*server_, gate_);
  }
  for (std::size_t i = 0; i < services_.size(); ++i)
    services_[i]->install(from_ && i >= first_job_service_ ? *gated_ : *server_);
  detail::install_upgrade_route(*server_, control_.token, blocking_->get_executor(),
                                [this](const std::string& binary) { return upgrade(binary); });

  metrics_->gauge_fn("pantry_cache_bytes", "Bytes of cached blobs", [store = store_] {
    auto st = store->get_stats();
    return st ? static_cast<double>(st->bytes) : 0.0;
  });
  // Weak: the metrics outlive the server, and the flights hold the upstream client, whose
  // pooled sockets must go before the server's io_contexts.
  metrics_->gauge_fn("pantry_upstream_flights", "Upstream fetches running now",
                     [weak = std::weak_ptr<proxy::flight_table>(flights_)] {
                       auto f = weak.lock();
                       return f ? static_cast<double>(f->size()) : 0.0;
                     });

  auto st = store_->get_stats();
  if (!st) return st.error();
  spdlog::info("pantry {}: cache at {} holds {} blobs, {} of {} quota; {} entries", PANTRY_VERSION,
               std::filesystem::absolute(cfg_.data_dir).lexically_normal().string(), st->objects,
               human_bytes(st->bytes), human_bytes(cfg_.cache.max_size), st->entries);

  const std::size_t start_now = from_ ? first_job_service_ : services_.size();
  for (; started_ < start_now; ++started_) {
    if (auto r = services_[started_]->start(); !r) return r.error();
  }
  if (auto r = publish_control(cfg_.data_dir, control_); !r) return r.error();
  published_ = true;
  if (from_) job_starter_ = std::thread([this] { start_job_services(); });
  return {};
}

void app_impl::start_job_services() {
  while (!cache::wait_for_lock(*store_, std::chrono::milliseconds(100))) {
    if (quitting_.load()) {
      gate_->fail("pantry is stopping before it took over the data dir");
      return;
    }
  }
  spdlog::info("pantry serve: process {} handed the data dir over; this process writes to it now",
               from_->from_pid);
  for (; started_ < services_.size(); ++started_) {
    if (auto r = services_[started_]->start(); !r) {
      spdlog::error("pantry serve: {}", r.error().message);
      gate_->fail("pantry cannot serve this route: " + r.error().message);
      return;
    }
  }
  gate_->open();
}

result<upgrade_report> app_impl::upgrade(const std::string& binary) {
  std::lock_guard g(upgrade_mutex_);
  const long self = static_cast<long>(::getpid());
  if (successor_pid_ != 0) {
    return error(errc::conflict, "process " + std::to_string(successor_pid_) +
                                     " already took over from process " + std::to_string(self) +
                                     ", which is draining");
  }
  // A successor takes the data dir over within 50 ms of its predecessor's exit.
  if (from_ && !cache::wait_for_lock(*store_, std::chrono::seconds(5))) {
    return error(errc::conflict, "process " + std::to_string(self) +
                                     " has not taken over the data dir from process " +
                                     std::to_string(from_->from_pid) +
                                     " yet (it is draining): upgrade again when it has exited");
  }
  const std::string bin = binary.empty() ? own_binary() : binary;
  spdlog::info("pantry serve: upgrade: starting {} with this process's arguments", bin);
  auto pid = start_successor(bin, proxy::listening_socket(*server_), std::chrono::minutes(1));
  if (!pid) {
    spdlog::error("pantry serve: upgrade failed; process {} serves on: {}", self,
                  pid.error().message);
    // A successor that got as far as publishing its own control file left it naming itself.
    if (published_) (void)publish_control(cfg_.data_dir, control_);
    return pid.error();
  }
  successor_pid_ = *pid;
  upgrade_report report{self, *pid, bin, cfg_.server.shutdown_grace,
                        jobs_on_upgrade(cfg_, self, *pid)};
  spdlog::info(
      "pantry serve: upgrade: process {} serves on port {} now; process {} drains (up to {} ms) "
      "and exits; {}",
      *pid, server_->port(), self, report.drain.count(), report.jobs);
  proxy::drain(*server_);
  return report;
}

result<void> app_impl::run() {
  spdlog::info("pantry serve: listening on {}:{}; PIP_INDEX_URL=http://{}:{}/simple/",
               cfg_.listen.host, server_->port(), reachable_host(cfg_.listen.host),
               server_->port());
  if (from_) {
    // Once the server's threads run: the predecessor stops accepting when it reads this. The
    // service manager hears first, so that it follows the service here before the predecessor
    // exits.
    spdlog::info("pantry serve: took over port {} from process {}", server_->port(),
                 from_->from_pid);
    asio::post(server_->executor(), [fd = std::exchange(from_->ready_fd, -1)] {
      const long self = static_cast<long>(::getpid());
      notify_service_manager("MAINPID=" + std::to_string(self) + "\nREADY=1");
      report_readiness(fd, format_ready(self));
    });
  } else {
    asio::post(server_->executor(), [] { notify_service_manager("READY=1"); });
  }
  server_->run();
  {
    // A predecessor says nothing: the service goes on in its successor.
    std::lock_guard g(upgrade_mutex_);
    if (successor_pid_ == 0) notify_service_manager("STOPPING=1");
  }
  if (auto r = tear_down(); !r) return r.error();
  spdlog::info("pantry serve: stopped");
  return {};
}

result<void> app_impl::tear_down() {
  if (torn_down_) return {};
  torn_down_ = true;
  quitting_.store(true);
  if (job_starter_.joinable()) job_starter_.join();
  if (published_) withdraw_control(cfg_.data_dir, control_.pid);
  while (started_ > 0)
    services_[--started_]->stop();
  // Without stop(): queued cache writes finish rather than being dropped.
  if (blocking_) blocking_->join();
  if (store_) return store_->flush();
  return {};
}

}  // namespace

result<std::unique_ptr<app>> app::create(const config::config& cfg, std::optional<handover> from) {
  auto a = std::make_unique<app_impl>(cfg, from);
  if (auto r = a->assemble(); !r) return r.error();
  return std::unique_ptr<app>(std::move(a));
}

}  // namespace pantry::app
