// Tag lists of proxied names: passed through from upstream (never cached: a list is only as
// good as the moment it was asked), in the lexical order the spec wants, paged with n and last
// here when the upstream ignores them.

#include "pantry/registry/oci/protocol.h"

#include "proxied.h"
#include "respond.h"

#include <boost/json.hpp>

namespace pantry::registry::oci {

namespace asio = boost::asio;
using proxy::exchange;

namespace {

constexpr std::size_t kMaxTagList = 16 << 20;

}  // namespace

asio::awaitable<void> serve_proxied_tags(const proxied_context& ctx, exchange& ex, const target& t,
                                         const std::string& name) {
  std::string query;
  for (std::string_view p : {"n", "last"}) {
    std::string v = query_param(ex.request().target(), p);
    if (v.empty()) continue;
    query += query.empty() ? '?' : '&';
    query += std::string(p) + "=" + v;
  }
  ctx.report.sent(t.up->upstream().name);
  http::fields headers;
  headers.set(http::field::accept, "application/json");
  auto res =
      co_await t.up->send(http::verb::get, "/v2/" + t.repo + "/tags/list" + query, t.repo, headers);
  if (!res) {
    co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", res.error().message);
    co_return;
  }
  if (res->status() != 200) {
    auto a = failure(t, "tag list of " + t.repo, *res, "NAME_UNKNOWN");
    co_await answer_failure(ex, a);
    co_return;
  }
  auto body = co_await res->read_all(kMaxTagList);
  if (!body) {
    co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", body.error().message);
    co_return;
  }
  http::response<http::string_body> out{http::status::ok, 11};
  api_headers(out);
  out.set(http::field::content_type, "application/json");
  // The next page's link names the repository as the client does.
  std::string link(res->headers()[http::field::link]);
  if (auto p = link.find("last="); p != std::string::npos) {
    std::string last = link.substr(p + 5, link.find_first_of("&>", p + 5) - (p + 5));
    std::string n = query_param(ex.request().target(), "n");
    std::string next = "</v2/" + name + "/tags/list?";
    if (!n.empty()) next += "n=" + n + "&";
    next += "last=" + last + ">; rel=\"next\"";
    out.set(http::field::link, next);
  }
  // The spec wants lexical order; docker-registry sends its storage's order.
  boost::system::error_code ec;
  auto doc = boost::json::parse(*body, ec);
  if (!ec && doc.is_object() && doc.as_object().contains("tags") &&
      doc.as_object()["tags"].is_array()) {
    auto& tags = doc.as_object()["tags"].as_array();
    std::vector<std::string> names;
    for (const auto& v : tags) {
      if (v.is_string()) names.emplace_back(v.get_string());
    }
    // An upstream that ignores n and last (docker-registry 2.x) is paged here; one that sent a
    // Link has paged already.
    const bool paged = out.find(http::field::link) != out.end();
    const auto target = ex.request().target();
    const std::string n_text = paged ? std::string() : query_param(target, "n");
    auto page = page_tags(std::move(names), name, n_text, query_param(target, "last"));
    if (!page.next.empty()) out.set(http::field::link, page.next);
    tags.clear();
    for (auto& v : page.tags)
      tags.emplace_back(std::move(v));
    out.body() = boost::json::serialize(doc);
  } else {
    out.body() = std::move(*body);
  }
  out.prepare_payload();
  co_await ex.respond(std::move(out));
}

}  // namespace pantry::registry::oci
