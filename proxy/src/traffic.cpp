#include "pantry/proxy/traffic.h"

#include <boost/algorithm/string/predicate.hpp>

namespace pantry::proxy {

namespace {

constexpr cache_outcome kOutcomes[] = {cache_outcome::none,        cache_outcome::hit,
                                       cache_outcome::miss,        cache_outcome::stale,
                                       cache_outcome::revalidated, cache_outcome::coalesced};

}  // namespace

std::string_view to_string(cache_outcome o) noexcept {
  switch (o) {
    case cache_outcome::hit:
      return "HIT";
    case cache_outcome::miss:
      return "MISS";
    case cache_outcome::stale:
      return "STALE";
    case cache_outcome::revalidated:
      return "REVALIDATED";
    case cache_outcome::coalesced:
      return "COALESCED";
    case cache_outcome::none:
      break;
  }
  return "-";
}

std::string_view outcome_label(cache_outcome o) noexcept {
  switch (o) {
    case cache_outcome::hit:
      return "hit";
    case cache_outcome::miss:
      return "miss";
    case cache_outcome::stale:
      return "stale";
    case cache_outcome::revalidated:
      return "revalidated";
    case cache_outcome::coalesced:
      return "coalesced";
    case cache_outcome::none:
      break;
  }
  return "none";
}

std::optional<cache_outcome> parse_cache_outcome(std::string_view text) noexcept {
  for (cache_outcome o : kOutcomes) {
    if (boost::algorithm::iequals(text, outcome_label(o))) return o;
  }
  return std::nullopt;
}

void traffic_tally::add(std::string_view route, cache_outcome outcome, std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  traffic_count& c = counts_[{std::string(route), outcome}];
  ++c.requests;
  c.bytes += bytes;
}

std::vector<traffic_entry> traffic_tally::entries() const {
  std::lock_guard lock(mutex_);
  std::vector<traffic_entry> out;
  out.reserve(counts_.size());
  for (const auto& [key, count] : counts_)
    out.push_back(traffic_entry{key.first, key.second, count});
  return out;
}

}  // namespace pantry::proxy
