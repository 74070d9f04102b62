// A job's traffic through pantry's cache: sums, ratios and where a counted request belongs. The
// JSON forms are in records.cpp, with the records that carry them.

#include "pantry/orchestrator/coordinator/cache_use.h"

namespace pantry::orchestrator::coordinator {

namespace {

std::optional<double> share(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return std::nullopt;
  return static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

cache_count& cache_count::operator+=(const cache_count& o) noexcept {
  requests += o.requests;
  bytes += o.bytes;
  return *this;
}

cache_count cache_split::total() const noexcept {
  cache_count t = cache;
  t += upstream;
  t += coalesced;
  return t;
}

cache_split& cache_split::operator+=(const cache_split& o) noexcept {
  cache += o.cache;
  upstream += o.upstream;
  coalesced += o.coalesced;
  return *this;
}

cache_split cache_use::all() const noexcept {
  cache_split s = pypi;
  s += oci;
  s += image;
  return s;
}

cache_use& cache_use::operator+=(const cache_use& o) noexcept {
  pypi += o.pypi;
  oci += o.oci;
  image += o.image;
  return *this;
}

cache_ratio hit_ratio(const cache_use& u) noexcept {
  const cache_split s = u.all();
  const cache_count total = s.total();
  return {share(s.cache.requests, total.requests), share(s.cache.bytes, total.bytes)};
}

void count_request(cache_use& u, std::string_view route, std::string_view outcome, bool image_pull,
                   const cache_count& c) noexcept {
  cache_split* split = nullptr;
  if (image_pull) {
    split = &u.image;
  } else if (route.starts_with("pypi_")) {
    split = &u.pypi;
  } else if (route.starts_with("oci_")) {
    split = &u.oci;
  }
  if (!split) return;
  if (outcome == "hit" || outcome == "stale" || outcome == "revalidated") {
    split->cache += c;
  } else if (outcome == "miss") {
    split->upstream += c;
  } else if (outcome == "coalesced") {
    split->coalesced += c;
  }
}

}  // namespace pantry::orchestrator::coordinator
