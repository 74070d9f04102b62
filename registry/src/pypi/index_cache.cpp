#include "index_cache.h"

#include <spdlog/spdlog.h>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using freshness::action;
using kind = freshness::upstream_answer::kind;
using proxy::cache_outcome;
using clock = cache::clock;

namespace {

// Index pages and JSON API answers larger than this are refused (pypi.org's largest project
// pages are a few MiB).
constexpr std::size_t kMaxPageBytes = 64 << 20;

}  // namespace

index_cache::index_cache(std::shared_ptr<const context> ctx,
                         std::shared_ptr<proxy::client> upstream)
    : ctx_(std::move(ctx)), upstream_(std::move(upstream)) {}

asio::awaitable<index_cache::answer> index_cache::resolve(const config::pypi_upstream& u,
                                                          std::string key, std::string what,
                                                          fetch_fn fetch) {
  const std::optional<cache::entry> existing = cached(key);
  const auto d =
      freshness::on_request(existing ? &*existing : nullptr, ctx_->index_rules(), clock::now());
  if (d.act == action::serve_cached) {
    answer r{*existing, d.outcome, d.warning};
    co_return r;
  }
  if (d.act == action::fail) {
    answer r{error(errc::not_found, what +
                                        " is not cached and pypi.offline is true, so pantry "
                                        "does not ask " +
                                        u.name),
             cache_outcome::none,
             {}};
    co_return r;
  }
  bool joined = false;
  // Named, not a temporary of the co_await expression: gcc 12 destroys such temporaries twice.
  std::function<asio::awaitable<answer>()> run = [this, key, fetch = std::move(fetch),
                                                  existing]() -> asio::awaitable<answer> {
    // The double check. The client looked in the cache before it came here; a request for this
    // key may have stored a fresh answer and left the coalescer since. Then that answer is this
    // client's too, as if it had joined that request, and upstream is not asked again.
    if (auto now = cached(key)) {
      const auto d = freshness::on_request(&*now, ctx_->index_rules(), clock::now());
      if (d.act == action::serve_cached) {
        answer r{std::move(*now), cache_outcome::coalesced, d.warning};
        co_return r;
      }
    }
    co_return co_await fetch(existing);
  };
  auto r = co_await pages_.run(key, std::move(run), joined);
  if (joined && r.outcome == cache_outcome::miss) r.outcome = cache_outcome::coalesced;
  co_return r;
}

asio::awaitable<std::variant<index_cache::fetched, index_cache::answer>> index_cache::fetch(
    const config::pypi_upstream& u, const std::string& key, proxy::request& req,
    const std::optional<cache::entry>& existing) {
  req.tls.ca_file = u.ca_file;
  if (existing) {
    const auto v = freshness::conditional(*existing);
    if (!v.if_none_match.empty()) req.headers.set(http::field::if_none_match, v.if_none_match);
    if (!v.if_modified_since.empty()) {
      req.headers.set(http::field::if_modified_since, v.if_modified_since);
    }
  }
  ctx_->report.sent(u.name);
  auto sent = co_await upstream_->send(req);
  if (!sent) co_return upstream_failed(u, existing, sent.error());
  const unsigned status = sent->status();
  if ((status == 304 && existing) || status == 404 || status == 410) {
    freshness::upstream_answer a;
    a.what = status == 304 ? kind::not_modified : kind::gone;
    a.status = static_cast<int>(status);
    auto settled = co_await settle(u, key, existing, a);
    co_return settled;
  }
  if (status != 200) {
    co_return upstream_failed(
        u, existing,
        error(errc::io_error,
              "index " + u.name + " answered " + std::to_string(status) + " for GET " + req.url));
  }
  auto body = co_await sent->read_all(kMaxPageBytes);
  if (!body) co_return upstream_failed(u, existing, body.error());
  fetched f;
  f.body = std::move(*body);
  f.content_type = std::string(sent->headers()[http::field::content_type]);
  f.url = sent->url();
  f.fresh.status = 200;
  f.fresh.etag = std::string(sent->headers()[http::field::etag]);
  f.fresh.last_modified = std::string(sent->headers()[http::field::last_modified]);
  freshness::stamp(f.fresh, ctx_->index_rules(), clock::now());
  co_return f;
}

asio::awaitable<index_cache::answer> index_cache::settle(
    const config::pypi_upstream& u, const std::string& key,
    const std::optional<cache::entry>& existing, const freshness::upstream_answer& a) {
  auto d =
      freshness::on_answer(existing ? &*existing : nullptr, a, ctx_->index_rules(), clock::now());
  if ((d.act == action::serve_renewed || d.act == action::serve_negative) && d.entry) {
    if (d.act == action::serve_renewed || d.store) {
      const cache::entry& e = *d.entry;
      auto put = co_await detail::off_thread(ctx_->blocking,
                                             [&] { return ctx_->store->put_entry(key, e); });
      if (!put) spdlog::warn("pypi: {}", put.error().message);
    }
    answer r{std::move(*d.entry), d.outcome, {}};
    co_return r;
  }
  // Not reached: fetch() settles only a 304 with a cached entry and a 404/410 here.
  answer r{error(errc::io_error, "index " + u.name + ": " + d.reason), cache_outcome::none, {}};
  co_return r;
}

index_cache::answer index_cache::upstream_failed(const config::pypi_upstream& u,
                                                 const std::optional<cache::entry>& existing,
                                                 const error& why) const {
  ctx_->report.failed(u.name);
  freshness::upstream_answer a;
  a.what = kind::failed;
  a.reason = why.message;
  auto d =
      freshness::on_answer(existing ? &*existing : nullptr, a, ctx_->index_rules(), clock::now());
  if (d.act == action::serve_stale) {
    ctx_->report.served_stale(u.name, d.reason);
    return {*existing, d.outcome, d.warning};
  }
  return {why, cache_outcome::none, {}};
}

index_cache::answer index_cache::stored(cache::entry e) {
  return {std::move(e), cache_outcome::miss, {}};
}

index_cache::answer index_cache::storage_failure(const std::string& key, const error& why) {
  spdlog::error("pypi: cannot cache {}: {}", key, why.message);
  return {error(errc::storage_error, why.message), cache_outcome::none, {}};
}

std::optional<cache::entry> index_cache::cached(const std::string& key) const {
  auto e = ctx_->store->get_entry(key);
  if (!e || !usable(*e)) return std::nullopt;
  return std::move(*e);
}

bool index_cache::usable(const cache::entry& e) const {
  if (e.status != 200) return true;
  bool any = false;
  for (auto name : {kAttrHtml, kAttrJson, kAttrNames}) {
    auto text = e.attribute(name);
    if (text.empty()) continue;
    auto d = cache::digest::parse(text);
    if (!d || !ctx_->store->stat_blob(*d)) return false;
    any = true;
  }
  return any;
}

}  // namespace pantry::registry::pypi
