#include "pantry/app/app.h"

#include "pantry/app/control.h"
#include "pantry/app/human.h"
#include "pantry/cache/store.h"
#include "pantry/orchestrator/builder/service.h"
#include "pantry/orchestrator/coordinator/remote_runner.h"
#include "pantry/orchestrator/coordinator/service.h"
#include "pantry/orchestrator/pins/bot_service.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"
#include "pantry/registry/oci/service.h"
#include "pantry/registry/pypi/service.h"
#include "pantry/web/service.h"
#include "reloader.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/host_name.hpp>
#include <boost/asio/thread_pool.hpp>

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
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
// reverse).
std::vector<std::shared_ptr<proxy::service>> make_services(const config::config& cfg,
                                                           const parts& p) {
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
  return services;
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
  explicit app_impl(const config::config& cfg) : cfg_(cfg), given_(cfg) {}
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

 private:
  // Stops the started services (last first), joins the blocking pool and flushes the cache.
  // Once only; later calls do nothing.
  result<void> tear_down();

  config::config cfg_;
  const config::config given_;  // cfg_ before the data dir's token key was filled in
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
  std::size_t started_ = 0;             // services_[0, started_) have started
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
  }
  auto opened = cache::store::open(opt);
  if (!opened) return opened.error();
  store_ = std::move(*opened);

  metrics_ = std::make_shared<proxy::metrics_registry>();
  auto srv = proxy::server::create(server_options_of(cfg_), metrics_);
  if (!srv) return srv.error();
  server_ = std::move(*srv);

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
  reloader_ = std::make_shared<reloader>(given_, cfg_.oci.hosted.token_key, metrics_,
                                         blocking_->get_executor(), control_.token);
  services_ = make_services(
      cfg_, parts{control_.url, control_.token, store_, metrics_, upstream_, std::move(health),
                  flights_, blocking_->get_executor(), [weak = std::weak_ptr<reloader>(reloader_)] {
                    auto r = weak.lock();
                    return r ? r->last() : std::nullopt;
                  }});
  reloader_->set_services(services_);
  services_.push_back(reloader_);  // stopped first: no reload once the others stop
  for (auto& s : services_)
    s->install(*server_);

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

  for (; started_ < services_.size(); ++started_) {
    if (auto r = services_[started_]->start(); !r) return r.error();
  }
  if (auto r = publish_control(cfg_.data_dir, control_); !r) return r.error();
  published_ = true;
  return {};
}

result<void> app_impl::run() {
  spdlog::info("pantry serve: listening on {}:{}; PIP_INDEX_URL=http://{}:{}/simple/",
               cfg_.listen.host, server_->port(), reachable_host(cfg_.listen.host),
               server_->port());
  server_->run();
  if (auto r = tear_down(); !r) return r.error();
  spdlog::info("pantry serve: stopped");
  return {};
}

result<void> app_impl::tear_down() {
  if (torn_down_) return {};
  torn_down_ = true;
  if (published_) withdraw_control(cfg_.data_dir, control_.pid);
  while (started_ > 0)
    services_[--started_]->stop();
  // Without stop(): queued cache writes finish rather than being dropped.
  if (blocking_) blocking_->join();
  if (store_) return store_->flush();
  return {};
}

}  // namespace

result<std::unique_ptr<app>> app::create(const config::config& cfg) {
  auto a = std::make_unique<app_impl>(cfg);
  if (auto r = a->assemble(); !r) return r.error();
  return std::unique_ptr<app>(std::move(a));
}

}  // namespace pantry::app
