#pragma once

// The routes of the PyPI service, one class per route, each in its own file:
//
//   /simple/<project>/                      simple_route       route_simple.cpp
//   /simple/                                project_list       route_project_list.cpp
//   /pypi/<project>[/<version>]/json        json_api_route     route_json_api.cpp
//   /files/<upstream>/<location>[.metadata] files_route        route_files.cpp
//
// The index answers behind the first three come from the index cache (index_cache.h); files
// are immutable and come from the cache or one single-flight fetch. Handlers run on the
// connection's strand and answer every request themselves (errors as text/plain).

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/server.h"
#include "pantry/registry/pypi/negotiate.h"

#include "index_cache.h"
#include "serving.h"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The project list: the union of every upstream's root page (cached with index_ttl, stale when
// upstream fails) and the projects pantry has pages for, so that it still lists what pantry can
// serve when the upstreams are down or pypi.offline is true.
class project_list : public std::enable_shared_from_this<project_list> {
 public:
  project_list(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index);

  // GET/HEAD /simple/ (methods and the route label are checked by the caller).
  boost::asio::awaitable<void> serve(proxy::exchange& ex);

 private:
  // An upstream's root page, kept as a list of names, one per line.
  boost::asio::awaitable<index_cache::answer> fetch_root(const config::pypi_upstream& u,
                                                         std::optional<cache::entry> existing);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
};

// Project pages (PEP 503 HTML and PEP 691 JSON, chosen by Accept), asked of the project's
// upstreams in order; a definitive 404/410 falls through to the next, an error never does.
class simple_route : public std::enable_shared_from_this<simple_route> {
 public:
  simple_route(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index);

  // /simple and everything under /simple/ (the project list goes to project_list).
  boost::asio::awaitable<void> handle(proxy::exchange& ex);

  // `project`'s (normalized) page of upstream `u`, from the index cache: fresh, revalidated or
  // fetched (one request for concurrent callers), storing the files it lists as fetchable.
  boost::asio::awaitable<index_cache::answer> resolve_page(const config::pypi_upstream& u,
                                                           std::string project);

 private:
  // Reads upstream's page, makes every file it lists fetchable and stores both renderings.
  boost::asio::awaitable<index_cache::answer> fetch_page(const config::pypi_upstream& u,
                                                         std::string project,
                                                         std::optional<cache::entry> existing);
  boost::asio::awaitable<void> serve_page(proxy::exchange& ex, const cache::entry& e,
                                          const negotiated& chosen, proxy::cache_outcome outcome,
                                          std::string_view warning);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
  const std::shared_ptr<project_list> list_;
};

// Warehouse's JSON API, proxied from upstreams whose URL ends in /simple/, with its file URLs
// made pantry's /files/ URLs (absolute, for the Host the client used).
class json_api_route : public std::enable_shared_from_this<json_api_route> {
 public:
  json_api_route(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index);

  // Everything under /pypi/.
  boost::asio::awaitable<void> handle(proxy::exchange& ex);

 private:
  boost::asio::awaitable<index_cache::answer> fetch_json(const config::pypi_upstream& u,
                                                         std::string url, std::string key,
                                                         std::optional<cache::entry> existing);
  boost::asio::awaitable<void> serve_json_api(proxy::exchange& ex, const cache::entry& e,
                                              proxy::cache_outcome outcome,
                                              std::string_view warning);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
};

// Files an index page listed: served from the cache, else fetched once (single flight) and
// checked against the hash the index gave; .metadata files upstream lacks are made from the
// wheel. A file no cached page lists (a lock file's URL after the cache was lost) sends for the
// page of the project its file name names, from the upstream its path names, through `pages`;
// a URL that page does not list is never fetched.
class files_route {
 public:
  files_route(std::shared_ptr<const context> ctx, std::shared_ptr<simple_route> pages);

  // Everything under /files/.
  boost::asio::awaitable<void> handle(proxy::exchange& ex);

 private:
  boost::asio::awaitable<void> serve_file(proxy::exchange& ex, const config::pypi_upstream& u,
                                          const cache::entry& e);
  // The entry under `key` (the file at `location` of `u`) once the page of the project its file
  // name names has been resolved: errc::not_found when the name names no project, `u` is not
  // asked for that project, or the page does not list the file; the page's failure otherwise.
  boost::asio::awaitable<result<cache::entry>> listed_by_page(const config::pypi_upstream& u,
                                                              std::string location,
                                                              std::string key);
  // A wheel's METADATA that upstream does not offer: made from the cached wheel (fetched first
  // if needed) and cached itself.
  boost::asio::awaitable<void> serve_generated_metadata(proxy::exchange& ex,
                                                        const config::pypi_upstream& u,
                                                        const std::string& key, cache::entry e);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<simple_route> pages_;
};

}  // namespace pantry::registry::pypi
