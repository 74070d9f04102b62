#pragma once

// The freshness policy of every mutable answer pantry caches (PyPI index pages, project lists
// and JSON API answers; OCI tags), one for both protocols: when the cached copy is served as it
// is, when upstream is asked whether it still holds, when a stale copy stands in for a failed
// upstream, what Warning it carries, and when there is nothing to serve.
//
//   cached   expired  offline  upstream says             decision                    outcome
//   yes      no       -        (not asked)               serve cached                hit
//   yes      yes      yes      (not asked)               serve cached, Warning 110   hit
//   no       -        yes      (not asked)               fail                        -
//   yes      yes      no       -> ask (conditionally)
//                              still holds (304, same)   serve renewed               revalidated
//                              something new (200)       take the new answer         miss
//                              404/410 or a refusal      negative answer             miss
//                              failure (network, 5xx,    serve stale, Warning 111    stale
//                                429, unreadable)
//   no       -        no       -> ask
//                              failure                   fail with upstream's reason -
//
// A client's Cache-Control never enters into it: the TTLs of the config decide (pip sends
// max-age=0 on every index page). Immutable content (files, blobs, manifests by digest) has no
// freshness and never comes here.
//
// The decisions are pure (no I/O, no clock: callers pass the time); `reporter` does the policy's
// I/O, the metrics and log lines both protocols share.

#include "pantry/cache/store.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::freshness {

// Warning header values (RFC 7234 section 5.5; clients still log them). 110: an answer served
// past its TTL without asking upstream (offline). 111: upstream was asked and failed.
inline constexpr std::string_view kWarningStale = "110 pantry \"Response is Stale\"";
inline constexpr std::string_view kWarningRevalidationFailed = "111 pantry \"Revalidation Failed\"";

struct rules {
  std::chrono::seconds ttl{0};           // a fetched or revalidated answer is fresh this long
  std::chrono::seconds negative_ttl{0};  // a 404/410 is remembered this long; 0: not stored
  bool offline = false;                  // never ask upstream
};

enum class action {
  serve_cached,    // serve the cached entry as it is
  revalidate,      // ask upstream whether the cached entry still holds
  fetch,           // nothing cached: ask upstream
  serve_renewed,   // upstream says the cached entry holds: store and serve `entry`
  take_new,        // upstream has a new answer (or a HEAD could not tell): fetch/store it, serve it
  serve_negative,  // upstream says there is no such thing: serve `entry`, stored iff `store`
  serve_stale,     // upstream failed: serve the cached entry with `warning`
  fail,            // nothing to serve: answer the failure (`reason`)
};
std::string_view to_string(action a) noexcept;

// What to do, and what the answer is counted as.
struct decision {
  action act = action::fail;
  proxy::cache_outcome outcome = proxy::cache_outcome::none;
  std::string_view warning;           // "" or one of kWarning*: the Warning header to send
  std::optional<cache::entry> entry;  // serve_renewed, serve_negative: the entry to store/serve
  bool store = false;                 // serve_negative: whether `entry` is worth storing
  std::string reason;                 // serve_stale, fail: why upstream could not answer
};

// Before upstream: `cached` is the usable cached entry (null when there is none, or it cannot
// serve this client), `now` the time of the request. Returns serve_cached, revalidate, fetch or
// fail (offline and nothing cached; `reason` empty, the caller names its offline setting).
decision on_request(const cache::entry* cached, const rules& r, cache::clock::time_point now);

// What upstream said, as far as freshness cares.
struct upstream_answer {
  enum class kind {
    not_modified,  // 304 to a conditional GET, or a HEAD naming the cached manifest's digest
    modified,      // a new answer (200), or a HEAD that could not tell (then a GET follows)
    gone,          // a definitive "no": 404/410 (PyPI), 404/401/403/other 4xx (OCI)
    failed,        // no answer worth keeping: network error, timeout, 5xx, 429, unreadable body
  };
  kind what = kind::failed;
  int status = 0;      // gone: upstream's status
  std::string reason;  // failed: what went wrong, naming the upstream and the URL
};

// After upstream answered a revalidation or fetch for which on_request gave `cached` (null: none)
// at `now`. Returns serve_renewed (with the renewed entry), take_new, serve_negative (with the
// negative entry), serve_stale (with kWarningRevalidationFailed) or fail.
decision on_answer(const cache::entry* cached, const upstream_answer& answer, const rules& r,
                   cache::clock::time_point now);

// `e` stamped as fetched (or confirmed) at `now`: fresh for r.ttl.
void stamp(cache::entry& e, const rules& r, cache::clock::time_point now);
// `cached` confirmed by upstream at `now`: the same entry, fresh for r.ttl from now.
cache::entry renewed(const cache::entry& cached, const rules& r, cache::clock::time_point now);

// The validators of a conditional request for `cached`: If-None-Match with its ETag, else
// If-Modified-Since with its Last-Modified; both empty for a negative entry or one without
// validators (the request is then unconditional).
struct validators {
  std::string if_none_match;
  std::string if_modified_since;
};
validators conditional(const cache::entry& cached);

// The policy's metrics and log lines, the same for every protocol. Thread-safe.
//   pantry_upstream_requests_total{protocol, upstream}  requests pantry sent upstream
//   pantry_upstream_failures_total{protocol, upstream}  of which failed (network, 5xx, 429, …)
class reporter {
 public:
  // `protocol` is the label value: "pypi" or "oci".
  reporter(std::shared_ptr<proxy::metrics_registry> metrics, std::string protocol);

  // A request went upstream to `upstream`.
  void sent(std::string_view upstream) const;
  // That request failed (once per upstream request, however many clients wait for it).
  void failed(std::string_view upstream) const;
  // A stale copy from `upstream` is served because of `reason`: a warning in the log.
  void served_stale(std::string_view upstream, std::string_view reason) const;

  const std::string& protocol() const noexcept { return protocol_; }

 private:
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const std::string protocol_;
};

}  // namespace pantry::registry::freshness
