#include "proxied.h"

#include "respond.h"

namespace pantry::registry::oci {

namespace asio = boost::asio;

namespace {

std::map<std::string, std::unique_ptr<upstream_auth>, std::less<>> make_upstreams(
    const config::oci_config& cfg, const std::shared_ptr<proxy::client>& client,
    const std::shared_ptr<proxy::metrics_registry>& metrics) {
  std::map<std::string, std::unique_ptr<upstream_auth>, std::less<>> out;
  for (const auto& u : cfg.upstreams) {
    out.emplace(u.name, std::make_unique<upstream_auth>(u, client, metrics));
  }
  return out;
}

}  // namespace

proxied_context::proxied_context(const config::oci_config& cfg_in,
                                 std::shared_ptr<cache::store> store_in,
                                 const std::shared_ptr<proxy::client>& client,
                                 std::shared_ptr<proxy::flight_table> flights_in,
                                 std::shared_ptr<proxy::metrics_registry> metrics,
                                 asio::any_io_executor blocking_in)
    : cfg(cfg_in),
      store(std::move(store_in)),
      flights(std::move(flights_in)),
      report(metrics, "oci"),
      blocking(std::move(blocking_in)),
      upstreams(make_upstreams(cfg, client, metrics)) {}

freshness::rules proxied_context::tag_rules() const {
  freshness::rules r;
  r.ttl = cfg.tag_ttl;
  return r;
}

proxied_answer failure(const target& t, const std::string& what, const proxy::response& res,
                       std::string_view unknown_code) {
  return failure(t, what, res.status(), std::string(res.headers()[http::field::retry_after]),
                 unknown_code);
}

proxied_answer failure(const target& t, const std::string& what, unsigned s,
                       std::string retry_after, std::string_view unknown_code) {
  proxied_answer a;
  const std::string who = t.up->upstream().name + " (" + t.up->upstream().url + ")";
  if (s == 404) {
    a.status = http::status::not_found;
    a.code = std::string(unknown_code);
    a.message = who + " has no " + what;
  } else if (s == 401 || s == 403) {
    // Docker Hub answers 401 for a repository that does not exist.
    a.status = http::status::not_found;
    a.code = "NAME_UNKNOWN";
    a.message = who + " refused " + what + " (" + std::to_string(s) + "): the repository " +
                t.repo + " does not exist or needs credentials";
  } else if (s == 429) {
    a.status = http::status::too_many_requests;
    a.code = "TOOMANYREQUESTS";
    a.message = who + " is rate-limiting pantry (429) for " + what;
    a.retry_after = std::move(retry_after);
    a.upstream_failed = true;
  } else {
    a.status = http::status::bad_gateway;
    a.code = "UNAVAILABLE";
    a.message = who + " answered " + std::to_string(s) + " for " + what;
    a.upstream_failed = s >= 500 || s == 408;
  }
  return a;
}

proxied_answer unreachable(const error& e) {
  proxied_answer a;
  a.status = http::status::bad_gateway;
  a.code = "UNAVAILABLE";
  a.message = e.message;
  a.upstream_failed = true;
  return a;
}

asio::awaitable<void> answer_failure(proxy::exchange& ex, const proxied_answer& a) {
  http::fields extra;
  if (!a.retry_after.empty()) extra.set(http::field::retry_after, a.retry_after);
  co_await oci_error(ex, a.status, a.code, a.message, extra);
}

}  // namespace pantry::registry::oci
