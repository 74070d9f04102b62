#pragma once

// How a response was served (a cache outcome), and one client's traffic counted apart from the
// server's metrics: a `traffic_tally` is given to a listener (server.h's listener_options), and
// every exchange served through that listener is counted into it when it ends, by its route label,
// its cache outcome and the body bytes it sent. The runner gives each job's listener a tally of
// its own, so a job's requests are told apart from everyone else's by the socket they came
// through, not by anything the request says. No Beast here: the runner's and the coordinator's
// headers carry these counts.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::proxy {

// How a response was served, for the access log, metrics and tallies.
enum class cache_outcome { none, hit, miss, stale, revalidated, coalesced };
// "HIT", "MISS", "STALE", "REVALIDATED", "COALESCED"; "-" for none (the access log's spelling).
std::string_view to_string(cache_outcome o) noexcept;
// "hit", "miss", "stale", "revalidated", "coalesced", "none": the metrics' label and the
// X-Pantry-Cache response header's value.
std::string_view outcome_label(cache_outcome o) noexcept;
// The outcome outcome_label() spells `text` as (ASCII case ignored); nullopt for anything else.
std::optional<cache_outcome> parse_cache_outcome(std::string_view text) noexcept;

// The response header that says how a response was served (outcome_label), sent when the handler
// set the outcome before the header went out.
inline constexpr std::string_view kCacheHeader = "X-Pantry-Cache";

struct traffic_count {
  std::uint64_t requests = 0;
  std::uint64_t bytes = 0;  // response body bytes sent
};

struct traffic_entry {
  std::string route;  // the route label (exchange::set_route)
  cache_outcome outcome = cache_outcome::none;
  traffic_count count;
};

// Requests counted by route label and cache outcome. Thread-safe.
class traffic_tally {
 public:
  // Counts one request of `route` served with `outcome` and `bytes` body bytes.
  void add(std::string_view route, cache_outcome outcome, std::uint64_t bytes);
  // What was counted, by route label, then outcome.
  std::vector<traffic_entry> entries() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, cache_outcome>, traffic_count> counts_;  // guarded by mutex_
};

}  // namespace pantry::proxy
