// Manifests of proxied names. By digest they are immutable: any cached copy serves. By tag they
// follow the freshness policy (../freshness.h): fresh within tag_ttl; past it a HEAD asks whether
// the tag still points at the cached digest (Docker Hub does not count HEADs against its pull
// limit), a GET fetches what it points at now, and a failing upstream gets the cached manifest
// served stale.

#include "pantry/registry/oci/protocol.h"

#include "keys.h"
#include "proxied.h"
#include "respond.h"

#include <spdlog/spdlog.h>

namespace pantry::registry::oci {

namespace asio = boost::asio;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;
using freshness::action;
using kind = freshness::upstream_answer::kind;

namespace {

http::fields accept_fields(const std::vector<std::string_view>& accept_lines) {
  http::fields h;
  for (auto v : accept_lines)
    h.insert(http::field::accept, v);
  if (accept_lines.empty()) h.set(http::field::accept, kAllManifests);
  return h;
}

// The coalescing key of a request for `ref` of `t` with `accept`: clients that accept the same
// types share one upstream request.
std::string flight_key(std::string_view what, const target& t, const std::string& ref,
                       const std::vector<std::string_view>& accept) {
  std::string key = std::string(what) + " " + t.key_prefix + " " + ref;
  for (auto v : accept) {
    key += '\n';
    key += v;
  }
  return key;
}

// What a HEAD of an expired tag says about the cached manifest.
freshness::upstream_answer classify_head(const proxied_answer& check, const cache::entry& cached) {
  freshness::upstream_answer a;
  if (check.entry && check.entry->target == cached.target) {
    a.what = kind::not_modified;
  } else if (check.upstream_failed) {
    a.what = kind::failed;
    a.reason = check.message;
  } else if (!check.entry && check.status == http::status::not_found) {
    a.what = kind::gone;
    a.status = 404;
  } else {
    // Another digest, or a HEAD that could not tell (no Docker-Content-Digest, a refusal): a GET
    // decides.
    a.what = kind::modified;
  }
  return a;
}

// What a failed GET means: a failure a cached copy may stand in for, or a definitive answer.
freshness::upstream_answer classify_failure(const proxied_answer& a) {
  freshness::upstream_answer out;
  if (a.upstream_failed) {
    out.what = kind::failed;
    out.reason = a.message;
  } else {
    out.what = kind::gone;
    out.status = static_cast<int>(a.status);
  }
  return out;
}

// What the cache holds for `ref` of `t`, and whether it can answer a client that accepts
// `accepted`.
struct cached_manifest {
  std::optional<cache::entry> entry;  // under the tag or digest, whether it can answer or not
  // Its manifest, open (so never evicted while upstream is asked about it), iff it can answer
  // the client: by digest any cached copy, by tag one of a type the client accepts.
  std::optional<cache::blob_reader> reader;
};

cached_manifest look_up(cache::store& store, const target& t, const std::string& ref,
                        const accept_set& accepted) {
  cached_manifest c;
  const bool by_digest = is_digest(ref);
  auto e =
      store.get_entry(by_digest ? keys::manifest(t.key_prefix, ref) : keys::tag(t.key_prefix, ref));
  if (!e) return c;
  c.entry = std::move(*e);
  if (!c.entry->target || (!by_digest && !accepts(accepted, c.entry->content_type))) return c;
  if (auto r = store.open_blob(*c.entry->target)) c.reader = std::move(*r);
  return c;
}

}  // namespace

proxied_manifests::proxied_manifests(std::shared_ptr<const proxied_context> ctx)
    : ctx_(std::move(ctx)) {}

std::optional<proxied_answer> proxied_manifests::stored_meanwhile(
    const target& t, const std::string& ref, const accept_set& accepted) const {
  auto c = look_up(*ctx_->store, t, ref, accepted);
  if (!c.reader) return std::nullopt;
  if (!is_digest(ref) && freshness::on_request(&*c.entry, ctx_->tag_rules(), clock::now()).act !=
                             action::serve_cached) {
    return std::nullopt;
  }
  proxied_answer a;
  a.entry = std::move(c.entry);
  a.coalesced = true;
  return a;
}

asio::awaitable<void> proxied_manifests::handle(exchange& ex, const target& t,
                                                const std::string& ref) {
  cache::store& store = *ctx_->store;
  auto accept_lines = ex.header_values(http::field::accept);
  cached_manifest found = look_up(store, t, ref, accepted_types(accept_lines));
  std::optional<cache::entry>& cached = found.entry;
  std::optional<cache::blob_reader>& reader = found.reader;
  if (is_digest(ref)) {
    // Immutable: any cached copy serves, whatever the Accept.
    if (reader) {
      ex.set_outcome(cache_outcome::hit);
      co_await serve_manifest(ex, *reader, *cached, false);
      co_return;
    }
    bool joined = false;
    auto a = co_await fetch_manifest(t, ref, accept_lines, joined);
    ex.set_outcome(joined || a.coalesced ? cache_outcome::coalesced : cache_outcome::miss);
    if (!a.entry) {
      co_await answer_failure(ex, a);
      co_return;
    }
    co_await serve_manifest(ex, store, *a.entry, false);
    co_return;
  }
  const cache::entry* usable = reader ? &*cached : nullptr;
  const freshness::rules rules = ctx_->tag_rules();
  // oci has no offline mode: the first decision is serve_cached, revalidate or fetch.
  const auto first = freshness::on_request(usable, rules, clock::now());
  if (first.act == action::serve_cached) {
    ex.set_outcome(first.outcome);
    co_await serve_manifest(ex, *reader, *cached, true, first.warning);
    co_return;
  }
  if (first.act == action::revalidate) {
    bool joined = false;
    auto check = co_await revalidate(t, ref, accept_lines, *cached, joined);
    const auto d = freshness::on_answer(usable, classify_head(check, *cached), rules, clock::now());
    switch (d.act) {
      case action::serve_renewed:
        // Renewed and stored by the revalidation every joined client shares.
        ex.set_outcome(joined || check.coalesced ? cache_outcome::coalesced : d.outcome);
        co_await serve_manifest(ex, *reader, *check.entry, true);
        co_return;
      case action::serve_stale:
        co_await serve_stale(ex, t, *reader, *cached, d);
        co_return;
      case action::serve_negative:
        co_await answer_failure(ex, check);
        co_return;
      default:
        break;  // take_new: the GET below
    }
  }
  bool joined = false;
  auto a = co_await fetch_manifest(t, ref, accept_lines, joined);
  if (!a.entry) {
    const auto d = freshness::on_answer(usable, classify_failure(a), rules, clock::now());
    if (d.act == action::serve_stale) {
      co_await serve_stale(ex, t, *reader, *cached, d);
      co_return;
    }
    co_await answer_failure(ex, a);
    co_return;
  }
  ex.set_outcome(joined || a.coalesced ? cache_outcome::coalesced : cache_outcome::miss);
  co_await serve_manifest(ex, store, *a.entry, true);
}

asio::awaitable<void> proxied_manifests::serve_stale(exchange& ex, const target& t,
                                                     cache::blob_reader& reader,
                                                     const cache::entry& cached,
                                                     const freshness::decision& d) {
  ex.set_outcome(d.outcome);
  ctx_->report.served_stale(t.up->upstream().name, d.reason);
  co_await serve_manifest(ex, reader, cached, true, d.warning);
}

// Asks upstream, once for every client that asks at the same time with the same Accept, whether
// an expired tag still points at the cached manifest; if it does, the tag's entry is renewed for
// another tag_ttl and returned.
asio::awaitable<proxied_answer> proxied_manifests::revalidate(
    const target& t, const std::string& ref, const std::vector<std::string_view>& accept,
    const cache::entry& cached, bool& joined) {
  std::string key = flight_key("head", t, ref, accept);
  auto self = shared_from_this();
  http::fields headers = accept_fields(accept);
  std::function<asio::awaitable<proxied_answer>()> fn =
      [self, t, ref, headers, cached,
       accepted = accepted_types(accept)]() -> asio::awaitable<proxied_answer> {
    if (auto a = self->stored_meanwhile(t, ref, accepted)) co_return std::move(*a);
    auto check = co_await self->head_manifest(t, ref, headers);
    if (check.upstream_failed) self->ctx_->report.failed(t.up->upstream().name);
    if (check.entry && check.entry->target == cached.target) {
      const cache::entry e = freshness::renewed(cached, self->ctx_->tag_rules(), clock::now());
      const std::string k = keys::tag(t.key_prefix, ref);
      co_await detail::off_thread(self->ctx_->blocking,
                                  [&] { return self->ctx_->store->put_entry(k, e); });
      check.entry = e;
    }
    co_return check;
  };
  auto a = co_await revalidations_.run(key, std::move(fn), joined);
  co_return a;
}

// HEAD of a tag upstream: the entry it returns has only target and content_type.
asio::awaitable<proxied_answer> proxied_manifests::head_manifest(const target& t,
                                                                 const std::string& ref,
                                                                 http::fields headers) {
  ctx_->report.sent(t.up->upstream().name);
  auto res =
      co_await t.up->send(http::verb::head, "/v2/" + t.repo + "/manifests/" + ref, t.repo, headers);
  proxied_answer a;
  if (!res) {
    a = unreachable(res.error());
  } else if (res->status() != 200) {
    a = failure(t, "manifest " + t.repo + ":" + ref, *res, "MANIFEST_UNKNOWN");
  } else if (auto d = cache::digest::parse(res->headers()["Docker-Content-Digest"]); !d) {
    // No digest in the answer: the HEAD cannot revalidate; a GET will.
    a.status = http::status::bad_gateway;
    a.code = "UNAVAILABLE";
    a.message = "no Docker-Content-Digest on HEAD";
  } else {
    cache::entry e;
    e.target = *d;
    e.content_type = std::string(res->headers()[http::field::content_type]);
    a.entry = std::move(e);
  }
  co_return a;
}

// Fetches a manifest (by tag or digest) once for every client that asks with the same Accept at
// the same time, verifies it and stores it with its tag and what it references.
asio::awaitable<proxied_answer> proxied_manifests::fetch_manifest(
    const target& t, const std::string& ref, const std::vector<std::string_view>& accept,
    bool& joined) {
  std::string key = flight_key("manifest", t, ref, accept);
  auto self = shared_from_this();
  http::fields headers = accept_fields(accept);
  std::function<asio::awaitable<proxied_answer>()> fn =
      [self, t, ref, headers,
       accepted = accepted_types(accept)]() -> asio::awaitable<proxied_answer> {
    if (auto stored = self->stored_meanwhile(t, ref, accepted)) co_return std::move(*stored);
    auto a = co_await self->fetch_manifest_now(t, ref, headers);
    if (a.upstream_failed) self->ctx_->report.failed(t.up->upstream().name);
    co_return a;
  };
  auto a = co_await manifests_.run(key, std::move(fn), joined);
  co_return a;
}

asio::awaitable<proxied_answer> proxied_manifests::fetch_manifest_now(target t, std::string ref,
                                                                      http::fields headers) {
  const std::string what = "manifest " + t.repo + (is_digest(ref) ? "@" : ":") + ref;
  ctx_->report.sent(t.up->upstream().name);
  auto res =
      co_await t.up->send(http::verb::get, "/v2/" + t.repo + "/manifests/" + ref, t.repo, headers);
  if (!res) co_return unreachable(res.error());
  if (res->status() != 200) co_return failure(t, what, *res, "MANIFEST_UNKNOWN");
  auto body = co_await res->read_all(kMaxManifest);
  if (!body) co_return unreachable(body.error());
  const cache::digest got = cache::digest::of(*body);
  proxied_answer bad;
  bad.status = http::status::bad_gateway;
  bad.code = "MANIFEST_INVALID";
  bad.upstream_failed = true;
  if (is_digest(ref) && got.str() != ref) {
    bad.message = t.up->upstream().name + " sent a " + what + " whose sha256 is " + got.str() +
                  "; nothing was cached";
    co_return bad;
  }
  std::string claimed(res->headers()["Docker-Content-Digest"]);
  if (!claimed.empty() && claimed != got.str()) {
    bad.message = t.up->upstream().name + " sent " + what + " with Docker-Content-Digest " +
                  claimed + " but its sha256 is " + got.str() + "; nothing was cached";
    co_return bad;
  }
  std::string content_type(res->headers()[http::field::content_type]);
  auto refs = parse_manifest(*body, content_type);
  if (content_type.empty()) {
    content_type = refs && !refs->media_type.empty() ? refs->media_type : std::string(kOciManifest);
  }
  const auto now = clock::now();
  std::vector<std::pair<std::string, cache::entry>> entries;
  cache::entry m;
  m.target = got;
  m.content_type = content_type;
  m.fetched_at = now;
  m.expires_at = now + kForever;
  entries.emplace_back(keys::manifest(t.key_prefix, got.str()), m);
  if (!is_digest(ref)) {
    cache::entry tag = m;
    freshness::stamp(tag, ctx_->tag_rules(), now);
    entries.emplace_back(keys::tag(t.key_prefix, ref), tag);
  }
  if (refs) {
    // What this repository's manifests reference may be served under its name.
    for (const auto& d : refs->blobs) {
      cache::entry b;
      b.target = d.digest;
      b.content_type = std::string(kBlobType);
      b.fetched_at = now;
      b.expires_at = now + kForever;
      b.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(d.size));
      entries.emplace_back(keys::blob(t.key_prefix, d.digest.str()), std::move(b));
    }
  } else {
    spdlog::warn("oci: {} from {}: {}; its blobs are checked upstream one by one", what,
                 t.up->upstream().name, refs.error().message);
  }
  auto stored = co_await detail::off_thread(ctx_->blocking, [&]() -> result<void> {
    auto d = ctx_->store->put_blob(std::as_bytes(std::span(*body)), content_type);
    if (!d) return d.error();
    return ctx_->store->put_entries(entries);
  });
  if (!stored) {
    proxied_answer a;
    a.status = http::status::service_unavailable;
    a.code = "UNAVAILABLE";
    a.message = "cannot cache " + what + ": " + stored.error().message;
    co_return a;
  }
  proxied_answer a;
  a.entry = m;
  co_return a;
}

}  // namespace pantry::registry::oci
