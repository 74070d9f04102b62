#pragma once

// What the routes of the PyPI service share: the service's context (config, cache, flights,
// the freshness policy's reporter), the entry attributes pantry stores, plain-text answers and
// redirects, gzip, and the files an index answer makes fetchable.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"

#include "../freshness.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::registry::pypi {

namespace http = boost::beast::http;

// Entry attributes (cache::entry::attributes): the digests of an index answer's stored forms,
// and where a file comes from.
inline constexpr std::string_view kAttrHtml = "html";          // a page's HTML; "html.gz" its gzip
inline constexpr std::string_view kAttrJson = "json";          // a page's or JSON API answer's JSON
inline constexpr std::string_view kAttrUrl = "url";            // a file's upstream URL
inline constexpr std::string_view kAttrNames = "names";        // a project list, one name per line
inline constexpr std::string_view kAttrGenerate = "generate";  // METADATA made from the wheel

// What pantry asks upstream for: JSON first (it carries size and upload time), HTML otherwise.
inline constexpr std::string_view kUpstreamAccept =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01";

// The service's configuration and collaborators, built once and shared by every route and the
// index cache. Routes hold it by shared_ptr so that a fetch that outlives its request keeps it.
struct context {
  context(const config::pypi_config& cfg, std::shared_ptr<cache::store> store,
          std::shared_ptr<proxy::flight_table> flights,
          std::shared_ptr<proxy::metrics_registry> metrics, boost::asio::any_io_executor blocking);

  // The freshness rules of index answers: index_ttl, negative_ttl, offline.
  freshness::rules index_rules() const;
  // The upstream named `name`, or null.
  const config::pypi_upstream* find_upstream(std::string_view name) const;
  // The upstreams to ask for `project` after the hosted upstream, in order: the routed one
  // alone, or all but the hosted upstream by priority.
  std::vector<const config::pypi_upstream*> upstreams_for(std::string_view project) const;
  // The hosted upstream (owner.h), asked before upstreams_for() for every project; null if none.
  const config::pypi_upstream* hosted_upstream() const;

  const config::pypi_config cfg;
  const std::shared_ptr<cache::store> store;
  const std::shared_ptr<proxy::flight_table> flights;
  const freshness::reporter report;             // protocol "pypi"
  const boost::asio::any_io_executor blocking;  // cache writes and hashing
};

// A text/plain answer (a newline added if `body` lacks one).
boost::asio::awaitable<void> plain(proxy::exchange& ex, http::status status, std::string body,
                                   http::fields extra = {});
// 406 for a simple API page whose Accept header takes none of its representations, naming them.
boost::asio::awaitable<void> not_acceptable(proxy::exchange& ex);
// 301 to `location`.
boost::asio::awaitable<void> redirect(proxy::exchange& ex, std::string location);
// An index answer that could not be had: 404 for errc::not_found (offline and not cached), else
// 502, with the error's message.
boost::asio::awaitable<void> index_failure(proxy::exchange& ex, const error& why);

// "a, b, c": the names of the upstreams asked, for a message.
std::string join_names(const std::vector<std::string>& names);

// gzip of `in` at zlib `level`; "" if zlib fails. Cached representations are compressed once,
// so at the best level (9, Z_BEST_COMPRESSION); answers made per request at zlib's default.
std::string gzip(std::string_view in, int level = 9);
// True iff the client's Accept-Encoding allows gzip.
bool accepts_gzip(const proxy::exchange& ex);

// The Content-Type a file is served with, by its name.
std::string media_type_of(std::string_view filename);

// Makes the file at `url` from `u` fetchable through pantry under the hash `sha` (adding its
// entry to `out`, stamped `now`) and returns pantry's path for it, or "" when it cannot be: no
// hash, or a URL that pantry does not proxy (it is then left pointing at upstream).
std::string register_file(const config::pypi_upstream& u, const std::string& url,
                          std::string_view filename, const std::optional<cache::digest>& sha,
                          std::optional<std::uint64_t> size, cache::clock::time_point now,
                          std::vector<std::pair<std::string, cache::entry>>& out);
// "/files/<upstream>/<location>" -> "<location>".
std::string location_of(const config::pypi_upstream& u, const std::string& path);

// The whole of a small cached blob (a page or a name list), by its digest's text.
result<std::string> read_blob_text(cache::store& store, std::string_view digest_text);

}  // namespace pantry::registry::pypi
