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

namespace {

// Asks the upstream whether t.repo has blob `ref` (a HEAD) and, when it does, records that in the
// cache as a manifest would (key, with the size the upstream gave). Returns the stored entry, or
// the failure to answer with.
asio::awaitable<proxied_answer> check_blob_upstream(std::shared_ptr<const proxied_context> ctx,
                                                    target t, std::string name, std::string ref,
                                                    std::string key) {
  cache::store& store = *ctx->store;
  // A check that ended after this client looked in the cache has left the coalescer: what it
  // stored answers this one too, without another HEAD.
  if (auto stored = store.get_entry(key)) {
    proxied_answer a;
    a.entry = std::move(*stored);
    a.coalesced = true;
    co_return a;
  }
  ctx->report.sent(t.up->upstream().name);
  const std::string path = "/v2/" + t.repo + "/blobs/" + ref;
  http::fields no_headers;
  auto res = co_await t.up->send(http::verb::head, path, t.repo, no_headers);
  if (!res) {
    auto a = unreachable(res.error());
    a.message = "cannot ask " + t.up->upstream().name + " for blob " + ref + " of " + name + ": " +
                res.error().message;
    co_return a;
  }
  if (res->status() != 200)
    co_return failure(t, "blob " + ref + " in " + t.repo, *res, "BLOB_UNKNOWN");
  cache::entry b;
  b.target = cache::digest::parse(ref).value();
  b.content_type = std::string(kBlobType);
  b.fetched_at = clock::now();
  b.expires_at = b.fetched_at + kForever;
  if (auto n = res->content_length()) {
    b.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(*n));
  }
  co_await detail::off_thread(ctx->blocking, [&] { return store.put_entry(key, b); });
  proxied_answer a;
  a.entry = std::move(b);
  co_return a;
}

}  // namespace

asio::awaitable<void> serve_proxied_blob(const std::shared_ptr<const proxied_context>& ctx_ptr,
                                         exchange& ex, const target& t, const std::string& name,
                                         const std::string& ref) {
  const proxied_context& ctx = *ctx_ptr;
  cache::store& store = *ctx.store;
  const auto id = cache::digest::parse(ref).value();
  const std::string key = keys::blob(t.key_prefix, ref);
  auto known = store.get_entry(key);
  if (!known) {
    // No manifest of this repository that pantry has seen references the blob: only the
    // upstream can say whether the repository has it. One HEAD per blob and repository at a
    // time (the key names both, and the upstream): clients that ask meanwhile share its answer.
    std::function<asio::awaitable<proxied_answer>()> fn =
        [ctx_ptr, t, name, ref, key]() -> asio::awaitable<proxied_answer> {
      return check_blob_upstream(ctx_ptr, t, name, ref, key);
    };
    bool joined = false;
    auto a = co_await ctx.blob_checks.run(key, std::move(fn), joined);
    if (!a.entry) {
      co_await answer_failure(ex, a);
      co_return;
    }
    known = std::move(*a.entry);
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
