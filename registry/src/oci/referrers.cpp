// Referrers lists of proxied names (OCI 1.1): asked of the upstream's referrers API; when the
// upstream answers 404 there (a registry without the API, such as distribution 2.8), read from
// the index kept under the referrers tag schema, as the spec tells clients to. Either way the
// client gets the referrers API's answer, filtered here by artifactType. The whole list is cached
// like a tag (../freshness.h with tag_ttl): fresh for tag_ttl, asked again after, and served
// stale when upstream then fails.

#include "pantry/registry/oci/protocol.h"

#include "../http_serve.h"
#include "keys.h"
#include "proxied.h"
#include "respond.h"

namespace pantry::registry::oci {

namespace asio = boost::asio;
using proxy::exchange;

namespace {

constexpr std::size_t kMaxReferrers = 4 << 20;

// The referrers upstream lists for `subject`, or the failure to answer with.
asio::awaitable<result<std::vector<referrer>>> upstream_referrers(const proxied_context& ctx,
                                                                  const target& t,
                                                                  const cache::digest& subject,
                                                                  proxied_answer& failed) {
  ctx.report.sent(t.up->upstream().name);
  http::fields headers;
  headers.set(http::field::accept, kOciIndex);
  auto res = co_await t.up->send(http::verb::get, "/v2/" + t.repo + "/referrers/" + subject.str(),
                                 t.repo, headers);
  if (!res) {
    failed = unreachable(res.error());
    co_return res.error();
  }
  const std::string what = "referrers of " + t.repo + "@" + subject.str();
  if (res->status() == 404) {
    // No referrers API: the tag schema. No such tag means no referrers.
    http::fields tag_headers;
    tag_headers.set(http::field::accept, kOciIndex);
    res = co_await t.up->send(http::verb::get,
                              "/v2/" + t.repo + "/manifests/" + referrers_tag(subject), t.repo,
                              tag_headers);
    if (!res) {
      failed = unreachable(res.error());
      co_return res.error();
    }
    if (res->status() == 404) co_return std::vector<referrer>{};
  }
  if (res->status() != 200) {
    failed = failure(t, what, *res, "NAME_UNKNOWN");
    co_return error(errc::io_error, failed.message);
  }
  auto body = co_await res->read_all(kMaxReferrers);
  if (!body) {
    failed = unreachable(body.error());
    co_return body.error();
  }
  auto list = parse_referrers_index(*body);
  if (!list) {
    failed = failure(t, what, 502, "", "NAME_UNKNOWN");
    failed.message = t.up->upstream().name + " answered " + what + " with " + list.error().message;
    co_return list.error();
  }
  co_return std::move(*list);
}

// The referrers list a cache entry holds, or nullopt when it cannot be read back.
std::optional<std::vector<referrer>> read_cached(cache::store& store, const cache::entry& e) {
  auto body = detail::read_small_blob(store, *e.target);
  if (!body) return std::nullopt;
  auto list = parse_referrers_index(*body);
  if (!list) return std::nullopt;
  return std::move(*list);
}

// Asks the upstream for the referrers list under `key` and stores it. Runs once per key at a
// time (ctx->referrer_fetches): a list that an ask which ended after the client looked in the
// cache has stored answers without asking again.
asio::awaitable<fetched_referrers> fetch_referrers(std::shared_ptr<const proxied_context> ctx,
                                                   target t, cache::digest subject,
                                                   std::string key) {
  const auto rules = ctx->tag_rules();
  fetched_referrers out;
  if (auto stored = ctx->store->get_entry(key); stored && stored->target) {
    if (freshness::on_request(&*stored, rules, cache::clock::now()).act ==
        freshness::action::serve_cached) {
      out.list = read_cached(*ctx->store, *stored);
      out.stored_meanwhile = out.list.has_value();
      if (out.list) co_return out;
    }
  }
  auto fetched = co_await upstream_referrers(*ctx, t, subject, out.failed);
  if (!fetched) co_return out;
  const std::string body = referrers_index(*fetched, "");
  cache::entry e;
  e.target = cache::digest::of(body);
  e.content_type = std::string(kOciIndex);
  freshness::stamp(e, rules, cache::clock::now());
  auto stored = co_await detail::off_thread(ctx->blocking, [&]() -> result<void> {
    auto put = ctx->store->put_blob(std::as_bytes(std::span(body)), e.content_type, false);
    if (!put) return put.error();
    return ctx->store->put_entry(key, e);
  });
  // An answer that could not be stored is still the answer.
  (void)stored;
  out.list = std::move(*fetched);
  co_return out;
}

}  // namespace

asio::awaitable<void> serve_proxied_referrers(const std::shared_ptr<const proxied_context>& ctx,
                                              exchange& ex, const target& t,
                                              const std::string& ref) {
  const auto subject = cache::digest::parse(ref).value();
  const std::string key = keys::referrers(t.key_prefix, ref);
  const auto rules = ctx->tag_rules();
  auto cached = ctx->store->get_entry(key);
  const cache::entry* have = cached && cached->target ? &*cached : nullptr;
  std::optional<std::vector<referrer>> list;
  std::string_view warning;
  if (freshness::on_request(have, rules, cache::clock::now()).act ==
      freshness::action::serve_cached) {
    list = read_cached(*ctx->store, *have);
    if (list) ex.set_outcome(proxy::cache_outcome::hit);
  }
  if (!list) {
    std::function<asio::awaitable<fetched_referrers>()> fn =
        [ctx, t, subject, key]() -> asio::awaitable<fetched_referrers> {
      return fetch_referrers(ctx, t, subject, key);
    };
    bool joined = false;
    auto fetched = co_await ctx->referrer_fetches.run(key, std::move(fn), joined);
    if (fetched.list) {
      list = std::move(fetched.list);
      ex.set_outcome(joined || fetched.stored_meanwhile ? proxy::cache_outcome::coalesced
                                                        : proxy::cache_outcome::miss);
    } else {
      const proxied_answer& failed = fetched.failed;
      // One failure of the upstream however many clients waited for it.
      if (failed.upstream_failed && !joined) ctx->report.failed(t.up->upstream().name);
      freshness::upstream_answer said;
      said.what = failed.upstream_failed ? freshness::upstream_answer::kind::failed
                                         : freshness::upstream_answer::kind::gone;
      said.status = static_cast<int>(failed.status);
      said.reason = failed.message;
      auto d = freshness::on_answer(have, said, rules, cache::clock::now());
      if (d.act == freshness::action::serve_stale) list = read_cached(*ctx->store, *have);
      if (!list) {
        co_await answer_failure(ex, failed);
        co_return;
      }
      warning = d.warning;
      ex.set_outcome(d.outcome);
      ctx->report.served_stale(t.up->upstream().name, d.reason);
    }
  }
  const std::string artifact_type = query_param(ex.request().target(), "artifactType");
  http::response<http::string_body> res{http::status::ok, 11};
  api_headers(res);
  res.set(http::field::content_type, kOciIndex);
  if (!artifact_type.empty()) res.set("OCI-Filters-Applied", "artifactType");
  if (!warning.empty()) res.set(http::field::warning, warning);
  res.body() = referrers_index(*list, artifact_type);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

}  // namespace pantry::registry::oci
