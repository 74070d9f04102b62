#include "freshness.h"

#include <spdlog/spdlog.h>

namespace pantry::registry::freshness {

using proxy::cache_outcome;
using time_point = cache::clock::time_point;

std::string_view to_string(action a) noexcept {
  switch (a) {
    case action::serve_cached:
      return "serve_cached";
    case action::revalidate:
      return "revalidate";
    case action::fetch:
      return "fetch";
    case action::serve_renewed:
      return "serve_renewed";
    case action::take_new:
      return "take_new";
    case action::serve_negative:
      return "serve_negative";
    case action::serve_stale:
      return "serve_stale";
    case action::fail:
      break;
  }
  return "fail";
}

namespace {

// Fresh until its stored expiry or the TTL the rules give now, from when it was fetched,
// whichever comes first: a reload that shortens a TTL holds for what is cached already, and one
// that lengthens it holds from the next fetch or revalidation on.
bool fresh(const cache::entry& e, const rules& r, time_point now) {
  const auto ttl = e.status == 200 ? r.ttl : r.negative_ttl;
  return !e.expired(now) && now < e.fetched_at + ttl;
}

}  // namespace

decision on_request(const cache::entry* cached, const rules& r, time_point now) {
  decision d;
  if (cached && fresh(*cached, r, now)) {
    d.act = action::serve_cached;
    d.outcome = cache_outcome::hit;
    return d;
  }
  if (cached && r.offline) {
    // The cache is the only source: an expired copy is the answer as much as a fresh one, so it
    // counts as a hit, but the client is told it may be out of date.
    d.act = action::serve_cached;
    d.outcome = cache_outcome::hit;
    d.warning = kWarningStale;
    return d;
  }
  if (r.offline) {
    d.act = action::fail;
    return d;
  }
  d.act = cached ? action::revalidate : action::fetch;
  return d;
}

decision on_answer(const cache::entry* cached, const upstream_answer& answer, const rules& r,
                   time_point now) {
  using kind = upstream_answer::kind;
  decision d;
  switch (answer.what) {
    case kind::not_modified:
      if (cached) {
        d.act = action::serve_renewed;
        d.outcome = cache_outcome::revalidated;
        d.entry = renewed(*cached, r, now);
        return d;
      }
      // "Not modified" with nothing cached to compare against says nothing: a failure.
      d.act = action::fail;
      d.reason = answer.reason.empty()
                     ? std::string("upstream answered 304 Not Modified to an unconditional request")
                     : answer.reason;
      return d;
    case kind::modified:
      d.act = action::take_new;
      d.outcome = cache_outcome::miss;
      return d;
    case kind::gone: {
      d.act = action::serve_negative;
      d.outcome = cache_outcome::miss;
      cache::entry e;
      e.status = answer.status;
      e.fetched_at = now;
      e.expires_at = now + r.negative_ttl;
      d.entry = std::move(e);
      d.store = r.negative_ttl.count() > 0;
      return d;
    }
    case kind::failed:
      break;
  }
  d.reason = answer.reason;
  if (cached) {
    d.act = action::serve_stale;
    d.outcome = cache_outcome::stale;
    d.warning = kWarningRevalidationFailed;
  } else {
    d.act = action::fail;
  }
  return d;
}

void stamp(cache::entry& e, const rules& r, time_point now) {
  e.fetched_at = now;
  e.expires_at = now + r.ttl;
}

cache::entry renewed(const cache::entry& cached, const rules& r, time_point now) {
  cache::entry e = cached;
  stamp(e, r, now);
  return e;
}

validators conditional(const cache::entry& cached) {
  validators v;
  // A negative entry has nothing to compare: 404s are asked again whole.
  if (cached.status != 200) return v;
  if (!cached.etag.empty()) {
    v.if_none_match = cached.etag;
  } else {
    v.if_modified_since = cached.last_modified;
  }
  return v;
}

reporter::reporter(std::shared_ptr<proxy::metrics_registry> metrics, std::string protocol)
    : metrics_(std::move(metrics)), protocol_(std::move(protocol)) {}

void reporter::sent(std::string_view upstream) const {
  metrics_->add("pantry_upstream_requests_total",
                {{"protocol", protocol_}, {"upstream", std::string(upstream)}}, 1,
                "Requests pantry sent upstream");
}

void reporter::failed(std::string_view upstream) const {
  metrics_->add("pantry_upstream_failures_total",
                {{"protocol", protocol_}, {"upstream", std::string(upstream)}}, 1,
                "Upstream requests that failed");
}

void reporter::served_stale(std::string_view upstream, std::string_view reason) const {
  spdlog::warn("{}: serving a stale copy from {}: {}", protocol_, upstream, reason);
}

}  // namespace pantry::registry::freshness
