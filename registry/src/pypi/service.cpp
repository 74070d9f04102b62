// The PyPI service: its routes (routes.h) over one index cache (index_cache.h), installed on the
// server, and the hosted indexes' routes.

#include "pantry/registry/pypi/service.h"

#include "index_cache.h"
#include "routes.h"
#include "serving.h"

namespace pantry::registry::pypi {
namespace {

using proxy::exchange;

class service_impl final : public service, public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::pypi_config& cfg, std::shared_ptr<cache::store> store,
               std::shared_ptr<proxy::client> upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics,
               boost::asio::any_io_executor blocking, const config::oci_hosted& accounts)
      : ctx_(std::make_shared<const context>(cfg, std::move(store), std::move(flights),
                                             std::move(metrics), std::move(blocking))),
        index_(std::make_shared<index_cache>(ctx_, std::move(upstream))),
        hosted_(std::make_shared<hosted_route>(ctx_, accounts)),
        simple_(std::make_shared<simple_route>(ctx_, index_, hosted_)),
        json_api_(std::make_shared<json_api_route>(ctx_, index_, hosted_)),
        files_(std::make_shared<files_route>(ctx_, simple_)) {}

  void install(proxy::server& srv) override {
    auto self = shared_from_this();
    srv.route("/simple/", [self](exchange& ex) { return self->simple_->handle(ex); });
    srv.route("/simple", [self](exchange& ex) { return self->simple_->handle(ex); });
    srv.route("/files/", [self](exchange& ex) { return self->files_->handle(ex); });
    srv.route("/pypi/", [self](exchange& ex) { return self->json_api_->handle(ex); });
    for (const auto& h : ctx_->cfg.hosted) {
      // "/team" takes "/teamwork" too: the route tells them apart.
      srv.route("/" + h.name, [self](exchange& ex) { return self->hosted_->handle(ex); });
    }
  }

 private:
  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
  const std::shared_ptr<hosted_route> hosted_;
  const std::shared_ptr<simple_route> simple_;
  const std::shared_ptr<json_api_route> json_api_;
  const std::shared_ptr<files_route> files_;
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
