#include "respond.h"

#include "pantry/registry/oci/protocol.h"

#include "../http_serve.h"

#include <boost/url/parse.hpp>

namespace pantry::registry::oci {

namespace asio = boost::asio;

void api_headers(http::fields& h) {
  h.set("Docker-Distribution-API-Version", "registry/2.0");
}

asio::awaitable<void> oci_error(proxy::exchange& ex, http::status status, std::string code,
                                std::string message, http::fields extra) {
  http::response<http::string_body> res{status, 11};
  for (const auto& f : extra)
    res.set(f.name_string(), f.value());
  api_headers(res);
  res.set(http::field::content_type, "application/json");
  res.body() = error_body(code, message);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> serve_manifest(proxy::exchange& ex, cache::store& store,
                                     const cache::entry& e, bool by_tag, std::string_view warning) {
  auto reader = store.open_blob(*e.target);
  if (!reader) {
    co_await oci_error(
        ex, http::status::service_unavailable, "UNAVAILABLE",
        "the cached manifest " + e.target->str() + " cannot be read: " + reader.error().message);
    co_return;
  }
  co_await serve_manifest(ex, *reader, e, by_tag, warning);
}

asio::awaitable<void> serve_manifest(proxy::exchange& ex, cache::blob_reader& reader,
                                     const cache::entry& e, bool by_tag, std::string_view warning) {
  http::fields extra;
  api_headers(extra);
  extra.set("Docker-Content-Digest", e.target->str());
  if (by_tag) extra.set(http::field::cache_control, "no-cache");
  if (!warning.empty()) extra.set(http::field::warning, warning);
  co_await detail::serve_blob(ex, reader, e.content_type, extra);
}

std::string query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  auto parsed = boost::urls::parse_relative_ref(target);
  if (!parsed) return {};
  for (auto p : parsed->params()) {
    if (p.key == name) return std::string(p.value);
  }
  return {};
}

}  // namespace pantry::registry::oci
