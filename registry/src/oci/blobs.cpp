// Blobs of proxied names: served from the cache when there, else fetched once by single flight
// (every client that asks meanwhile streams the same fetch) and verified against their digest.
// A blob is served under a repository only if that repository's cached manifests reference it,
// or the upstream says the repository has it.

#include "pantry/registry/oci/protocol.h"

#include "keys.h"
#include "proxied.h"
#include "respond.h"

namespace pantry::registry::oci {

namespace asio = boost::asio;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

asio::awaitable<void> serve_proxied_blob(const proxied_context& ctx, exchange& ex, const target& t,
                                         const std::string& name, const std::string& ref) {
  cache::store& store = *ctx.store;
  const auto id = cache::digest::parse(ref).value();
  const std::string key = keys::blob(t.key_prefix, ref);
  auto known = store.get_entry(key);
  if (!known) {
    // No manifest of this repository that pantry has seen references the blob: only the
    // upstream can say whether the repository has it.
    ctx.report.sent(t.up->upstream().name);
    auto res = co_await t.up->send(http::verb::head, "/v2/" + t.repo + "/blobs/" + ref, t.repo, {});
    if (!res) {
      co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE",
                         "cannot ask " + t.up->upstream().name + " for blob " + ref + " of " +
                             name + ": " + res.error().message);
      co_return;
    }
    if (res->status() != 200) {
      auto a = failure(t, "blob " + ref + " in " + t.repo, *res, "BLOB_UNKNOWN");
      co_await answer_failure(ex, a);
      co_return;
    }
    cache::entry b;
    b.target = id;
    b.content_type = std::string(kBlobType);
    b.fetched_at = clock::now();
    b.expires_at = b.fetched_at + kForever;
    if (auto n = res->content_length()) {
      b.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(*n));
    }
    co_await detail::off_thread(ctx.blocking, [&] { return store.put_entry(key, b); });
    known = b;
  }
  http::fields extra;
  api_headers(extra);
  extra.set("Docker-Content-Digest", ref);
  if (auto reader = store.open_blob(id)) {
    ex.set_outcome(cache_outcome::hit);
    const std::string blob_type(kBlobType);
    co_await detail::serve_blob(ex, *reader, blob_type, extra);
    co_return;
  }
  const std::optional<std::uint64_t> size = detail::recorded_size(*known);
  if (ex.request().method() == http::verb::head && size) {
    // A HEAD needs no download: the size is known from the manifest or upstream's HEAD.
    http::response_header<> h;
    h.version(11);
    h.result(http::status::ok);
    for (const auto& f : extra)
      h.set(f.name_string(), f.value());
    h.set(http::field::content_type, kBlobType);
    ex.set_outcome(cache_outcome::miss);
    if (co_await ex.begin(std::move(h), *size)) co_return;
    co_await ex.end();
    co_return;
  }
  proxy::flight fl;
  // Twice at most: a token the upstream refuses before it should expire (a revoked or rotated
  // key) is renewed once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto auth = co_await t.up->authorization(t.repo);
    if (!auth) {
      co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", auth.error().message);
      co_return;
    }
    proxy::fetch_spec spec;
    spec.req.url = t.up->upstream().url + "/v2/" + t.repo + "/blobs/" + ref;
    spec.req.headers.set(http::field::accept_encoding, "identity");
    if (!auth->empty()) spec.req.headers.set(http::field::authorization, *auth);
    spec.req.tls.ca_file = t.up->upstream().ca_file;
    spec.req.authorization_on_redirect = false;
    spec.id = id;
    spec.media_type = std::string(kBlobType);
    spec.size = size;
    bool joined = false;
    fl = ctx.flights->join(spec, co_await asio::this_coro::executor, joined);
    if (!joined) ctx.report.sent(t.up->upstream().name);
    ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
    auto head = co_await fl.wait_head();
    if (head) break;
    const auto refusal = fl.refusal();
    if (refusal.status == 401 && attempt == 0 && !auth->empty()) {
      t.up->forget_token(t.repo);
      continue;
    }
    // 404 and 5xx keep the flight's own message (502 or 404, below); 401 and 429 mean what they
    // mean for manifests.
    if (refusal.status != 401 && refusal.status != 403 && refusal.status != 429) break;
    auto a = failure(t, "blob " + ref + " in " + t.repo, refusal.status, refusal.retry_after,
                     "BLOB_UNKNOWN");
    co_await answer_failure(ex, a);
    co_return;
  }
  detail::error_responder on_error = [](exchange& x, http::status s,
                                        std::string message) -> asio::awaitable<void> {
    std::string code = s == http::status::not_found ? "BLOB_UNKNOWN" : "UNAVAILABLE";
    co_await oci_error(x, s, code, message);
  };
  const std::string blob_type(kBlobType);
  co_await detail::stream_flight(ex, fl, store, id, blob_type, extra, on_error);
}

}  // namespace pantry::registry::oci
