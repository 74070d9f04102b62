#pragma once

// A job's share of pip and image traffic served from pantry's cache: its requests and response
// bytes by protocol and by where each answer came from, counted by the runner that ran it (the
// job's own listener in its network namespace, and the image pull made on its behalf; see
// docs/ARCHITECTURE.md, "Which job a request belongs to"). Pure: the runner's counts come in as
// route labels and outcome labels, so that this library needs no proxy.

#include "pantry/error.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace pantry::orchestrator::coordinator {

struct cache_count {
  std::uint64_t requests = 0;
  std::uint64_t bytes = 0;  // response body bytes
  cache_count& operator+=(const cache_count& o) noexcept;
};

// Where answers came from.
struct cache_split {
  cache_count cache;      // from the cache: a hit, a stale or revalidated answer, hosted content
  cache_count upstream;   // fetched from upstream for the request (a miss)
  cache_count coalesced;  // joined a fetch another request had started
  cache_count total() const noexcept;
  cache_split& operator+=(const cache_split& o) noexcept;
};

struct cache_use {
  cache_split pypi;   // the job's requests to /simple/, /files/, /pypi/
  cache_split oci;    // the job's requests to /v2/
  cache_split image;  // the runner's pull of the job's image (manifests, config, missing layers)
  cache_split all() const noexcept;
  cache_use& operator+=(const cache_use& o) noexcept;
};

// The share served from the cache, of requests and of bytes; nullopt when there were none.
struct cache_ratio {
  std::optional<double> requests, bytes;
};
cache_ratio hit_ratio(const cache_use& u) noexcept;

// Where a request the runner counted belongs: `route` is the registry's route label (pypi_… for
// the PyPI routes, oci_… for the registry's), `outcome` the cache outcome's label (hit, stale,
// revalidated, miss, coalesced). `image_pull`: counted by the runner's image pull, not the job's
// own listener. Requests with any other route or outcome (a 404, the /v2/ ping, a refusal) carry
// no cache traffic and are not counted.
void count_request(cache_use& u, std::string_view route, std::string_view outcome, bool image_pull,
                   const cache_count& c) noexcept;

// {"pypi": {"cache": {"requests": N, "bytes": N}, "upstream": {…}, "coalesced": {…}}, "oci": …,
//  "image": …, "hit_ratio": R|null, "byte_hit_ratio": R|null}
boost::json::object to_json(const cache_use& u);
// to_json's form read back (the ratios are ignored: they follow from the counts). Errors
// (errc::invalid_argument) name the member and its bad value: "cache.pypi.upstream.bytes: …".
result<cache_use> cache_use_from_json(const boost::json::value& v);

}  // namespace pantry::orchestrator::coordinator
