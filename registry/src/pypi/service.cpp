// The PyPI service: its routes (routes.h) over one index cache (index_cache.h), installed on the
// server, and the hosted indexes' routes. A reloaded config makes a new set of them, which the
// requests that start afterwards use.

#include "pantry/registry/pypi/service.h"

#include "pantry/proxy/reconfigurable.h"

#include "index_cache.h"
#include "routes.h"
#include "serving.h"

#include <atomic>
#include <memory>
#include <mutex>

namespace pantry::registry::pypi {
namespace {

namespace asio = boost::asio;
using proxy::exchange;

// The routes over one context, made from one config. A request holds the set it started with
// for as long as it runs, so a reload never changes the settings under it.
struct route_set {
  route_set(std::shared_ptr<const context> c, std::shared_ptr<proxy::client> upstream,
            const config::oci_hosted& accounts, std::shared_ptr<std::mutex> records)
      : ctx(std::move(c)),
        index(std::make_shared<index_cache>(ctx, std::move(upstream))),
        hosted(std::make_shared<hosted_route>(ctx, accounts, std::move(records))),
        simple(std::make_shared<simple_route>(ctx, index, hosted)),
        json_api(std::make_shared<json_api_route>(ctx, index, hosted, simple)),
        files(std::make_shared<files_route>(ctx, simple)) {}

  const std::shared_ptr<const context> ctx;
  const std::shared_ptr<index_cache> index;
  const std::shared_ptr<hosted_route> hosted;
  const std::shared_ptr<simple_route> simple;
  const std::shared_ptr<json_api_route> json_api;
  const std::shared_ptr<files_route> files;
};

class service_impl final : public service,
                           public proxy::reconfigurable,
                           public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::pypi_config& cfg, std::shared_ptr<cache::store> store,
               std::shared_ptr<proxy::client> upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics,
               boost::asio::any_io_executor blocking, const config::oci_hosted& accounts)
      : store_(std::move(store)),
        upstream_(std::move(upstream)),
        flights_(std::move(flights)),
        metrics_(std::move(metrics)),
        blocking_(std::move(blocking)),
        records_(std::make_shared<std::mutex>()) {
    hosted_route::sweep_uploads(*store_, !cfg.hosted.empty());
    routes_.store(make_routes(cfg, accounts));
  }

  void install(proxy::server& srv) override {
    auto self = shared_from_this();
    srv.route("/simple/", [self](exchange& ex) { return self->serve<&route_set::simple>(ex); });
    srv.route("/simple", [self](exchange& ex) { return self->serve<&route_set::simple>(ex); });
    srv.route("/files/", [self](exchange& ex) { return self->serve<&route_set::files>(ex); });
    srv.route("/pypi/", [self](exchange& ex) { return self->serve<&route_set::json_api>(ex); });
    // The set of hosted indexes is fixed at start (a reload keeps it: config/reload.h).
    for (const auto& h : routes_.load()->ctx->cfg.hosted) {
      // "/team" takes "/teamwork" too: the route tells them apart.
      srv.route("/" + h.name, [self](exchange& ex) { return self->serve<&route_set::hosted>(ex); });
    }
  }

  void reconfigure(const config::config& cfg) override {
    routes_.store(make_routes(cfg.pypi, cfg.oci.hosted));
  }

 private:
  std::shared_ptr<const route_set> make_routes(const config::pypi_config& cfg,
                                               const config::oci_hosted& accounts) const {
    auto ctx = std::make_shared<const context>(cfg, store_, flights_, metrics_, blocking_);
    return std::make_shared<const route_set>(std::move(ctx), upstream_, accounts, records_);
  }

  // Serves `ex` with the route `member` of the route set now, which it holds until it ends.
  template <auto route_set::*member>
  asio::awaitable<void> serve(exchange& ex) {
    auto routes = routes_.load();
    co_await ((*routes).*member)->handle(ex);
  }

  const std::shared_ptr<cache::store> store_;
  const std::shared_ptr<proxy::client> upstream_;
  const std::shared_ptr<proxy::flight_table> flights_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const boost::asio::any_io_executor blocking_;
  const std::shared_ptr<std::mutex> records_;  // shared by every route set's hosted_route
  std::atomic<std::shared_ptr<const route_set>> routes_;
};

}  // namespace

std::shared_ptr<service> service::create(const config::pypi_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         boost::asio::any_io_executor blocking,
                                         const config::oci_hosted& accounts) {
  return std::make_shared<service_impl>(cfg, std::move(store), std::move(upstream),
                                        std::move(flights), std::move(metrics), std::move(blocking),
                                        accounts);
}

}  // namespace pantry::registry::pypi
