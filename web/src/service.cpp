#include "pantry/web/service.h"

#include "dashboard_routes.h"

#include "pantry/cache/store.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/reconfigurable.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"
#include "pantry/web/front_page.h"
#include "pantry/web/layout.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <string>
#include <utility>

namespace pantry::web {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

// The server counts each answer's cache outcome under this name (proxy/src/server.cpp).
const std::string kCacheRequests = "pantry_cache_requests_total";

class web_service_impl final : public proxy::service,
                               public proxy::reconfigurable,
                               public std::enable_shared_from_this<web_service_impl> {
 public:
  web_service_impl(const config::config& cfg, std::shared_ptr<cache::store> store,
                   std::shared_ptr<proxy::metrics_registry> metrics,
                   std::shared_ptr<proxy::upstream_health> health,
                   std::shared_ptr<orchestrator::coordinator::coordinator_service> coordinator,
                   std::string version,
                   std::function<std::optional<config::reload_report>()> last_reload)
      : cfg_(std::make_shared<const config::config>(cfg)),
        store_(std::move(store)),
        metrics_(std::move(metrics)),
        health_(std::move(health)),
        coordinator_(std::move(coordinator)),
        version_(std::move(version)),
        last_reload_(std::move(last_reload)) {}

  void reconfigure(const config::config& cfg) override {
    cfg_.store(std::make_shared<const config::config>(cfg));
  }

  void install(proxy::server& srv) override {
    // For a request without a usable Host header (HTTP/1.0): the address pantry listens on.
    const std::string& host = cfg_.load()->listen.host;
    std::string h = host.empty() || host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host;
    if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";
    fallback_ = h + ":" + std::to_string(srv.port());
    auto self = shared_from_this();
    srv.route("/", [self](proxy::exchange& ex) { return self->front(ex); });
    srv.route("/readyz", [self](proxy::exchange& ex) { return self->ready(ex); });
    install_dashboard(srv, coordinator_);
  }

 private:
  asio::awaitable<void> front(proxy::exchange& ex);
  asio::awaitable<void> ready(proxy::exchange& ex);
  front_page gather(const proxy::exchange& ex) const;
  // Fills in what the upstream client last saw from each upstream.
  void add_health(std::vector<upstream_state>& upstreams) const;

  std::atomic<std::shared_ptr<const config::config>> cfg_;  // swapped by a reload
  const std::shared_ptr<cache::store> store_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const std::shared_ptr<proxy::upstream_health> health_;
  const std::shared_ptr<orchestrator::coordinator::coordinator_service> coordinator_;
  const std::string version_;
  const std::function<std::optional<config::reload_report>()> last_reload_;
  std::string fallback_;  // set by install(), read-only after
};

void web_service_impl::add_health(std::vector<upstream_state>& upstreams) const {
  if (!health_) return;
  for (auto& u : upstreams) {
    auto origin = proxy::upstream_health::origin_of(u.url);
    if (!origin) continue;
    auto r = health_->of(*origin);
    u.last_success = r.last_success;
    u.last_failure = r.last_failure;
    u.failure = std::move(r.failure);
  }
}

front_page web_service_impl::gather(const proxy::exchange& ex) const {
  const auto& req = ex.request();
  auto page = make_front_page(
      *cfg_.load(), base_address_of(req[http::field::host], req["X-Forwarded-Proto"], fallback_),
      version_);
  page.now = system_clock::now();
  add_health(page.upstreams);
  if (auto st = store_->get_stats()) {
    page.cache.bytes = st->bytes;
    page.cache.objects = st->objects;
    page.cache.entries = st->entries;
  } else {
    spdlog::warn("web: the front page shows no cache totals: {}", st.error().message);
  }
  const auto outcome = [&](const char* o) {
    return metrics_->counter_sum(kCacheRequests, {{"outcome", o}});
  };
  page.cache.hits = outcome("hit") + outcome("revalidated") + outcome("stale");
  page.cache.misses = outcome("miss") + outcome("coalesced");
  return page;
}

asio::awaitable<void> web_service_impl::front(proxy::exchange& ex) {
  ex.set_route("front_page");
  const auto method = ex.request().method();
  const unsigned version = ex.request().version();
  if (method != http::verb::get && method != http::verb::head) {
    http::response<http::string_body> res{http::status::method_not_allowed, version};
    res.set(http::field::allow, "GET, HEAD");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "method not allowed: / answers GET and HEAD\n";
    co_await ex.respond(std::move(res));
    co_return;
  }
  const front_page page = gather(ex);
  const bool json = wants_json(ex.header_values(http::field::accept));
  http::response<http::string_body> res{http::status::ok, version};
  if (json) {
    res.set(http::field::content_type, "application/json");
    res.body() = render_json(page);
  } else {
    res.set(http::field::content_type, "text/html; charset=utf-8");
    res.set("Content-Security-Policy", kContentSecurityPolicy);
    res.body() = render_html(page);
  }
  // Live values: never cached; the representation depends on Accept.
  res.set(http::field::cache_control, "no-store");
  res.set(http::field::vary, "Accept");
  res.set("X-Content-Type-Options", "nosniff");
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> web_service_impl::ready(proxy::exchange& ex) {
  ex.set_route("readyz");
  // One read transaction: the cache is open and readable (a key nothing writes).
  std::string cache_problem;
  auto probe = store_->get_entry("readyz/probe");
  if (!probe && !probe.error().is(errc::not_found)) {
    cache_problem = "the cache cannot be read: " + probe.error().message;
  }
  auto upstreams = upstreams_of(*cfg_.load());
  add_health(upstreams);
  std::optional<config::reload_report> last_reload;
  if (last_reload_) last_reload = last_reload_();
  const readiness r = assess_readiness(upstreams, cache_problem, last_reload);
  if (!r.ready) spdlog::warn("web: /readyz answers 503: {}", cache_problem);
  http::response<http::string_body> res{
      r.ready ? http::status::ok : http::status::service_unavailable, ex.request().version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = r.json;
  co_await ex.respond(std::move(res));
}

}  // namespace

std::shared_ptr<proxy::service> web_service::create(
    const config::config& cfg, std::shared_ptr<cache::store> store,
    std::shared_ptr<proxy::metrics_registry> metrics,
    std::shared_ptr<proxy::upstream_health> health,
    std::shared_ptr<orchestrator::coordinator::coordinator_service> coordinator,
    std::string version, std::function<std::optional<config::reload_report>()> last_reload) {
  return std::make_shared<web_service_impl>(cfg, std::move(store), std::move(metrics),
                                            std::move(health), std::move(coordinator),
                                            std::move(version), std::move(last_reload));
}

}  // namespace pantry::web
