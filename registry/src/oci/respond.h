#pragma once

// Answers shared by the pull-through and hosted sides of the registry.

#include "pantry/cache/store.h"
#include "pantry/proxy/server.h"

#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>

namespace pantry::registry::oci {

namespace http = boost::beast::http;

inline constexpr std::string_view kBlobType = "application/octet-stream";
// Immutable entries (by digest) never expire; this is "never" in the entry's clock.
inline constexpr auto kForever = std::chrono::hours(24 * 365 * 100);
// Manifests larger than this are refused (distribution refuses > 4 MiB too).
inline constexpr std::size_t kMaxManifest = 4 << 20;

// Docker-Distribution-API-Version.
void api_headers(http::fields& h);

// {"errors":[…]} with the spec's code.
boost::asio::awaitable<void> oci_error(proxy::exchange& ex, http::status status, std::string code,
                                       std::string message, http::fields extra = {});

// A cached manifest with Docker-Content-Digest and its Content-Type; by tag it is not
// cacheable by clients. A non-empty `warning` (one of freshness.h's values: a stale copy) is
// sent as the Warning header.
boost::asio::awaitable<void> serve_manifest(proxy::exchange& ex, cache::store& store,
                                            const cache::entry& e, bool by_tag,
                                            std::string_view warning = {});
// The same with the manifest's blob open already.
boost::asio::awaitable<void> serve_manifest(proxy::exchange& ex, cache::blob_reader& reader,
                                            const cache::entry& e, bool by_tag,
                                            std::string_view warning = {});

// The value of query parameter `name` in a request target, percent-decoded; "" when absent.
std::string query_param(std::string_view target, std::string_view name);

}  // namespace pantry::registry::oci
