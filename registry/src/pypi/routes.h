#pragma once

// The routes of the PyPI service, one class per route, each in its own file:
//
//   /simple/<project>/                      simple_route       route_simple.cpp
//   /simple/                                project_list       route_project_list.cpp
//   /pypi/<project>[/<version>]/json        json_api_route     route_json_api.cpp
//   /files/<upstream>/<location>[.metadata] files_route        route_files.cpp
//   /<hosted index>/…                       hosted_route       route_hosted.cpp
//
// The index answers behind the first three come from the index cache (index_cache.h); files
// are immutable and come from the cache or one single-flight fetch. Handlers run on the
// connection's strand and answer every request themselves (errors as text/plain).

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/server.h"
#include "pantry/registry/pypi/negotiate.h"

#include "pantry/registry/pypi/hosted.h"

#include "../oci/pantry_auth.h"
#include "index_cache.h"
#include "owner.h"
#include "serving.h"

#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The Python package indexes pantry hosts (pypi.hosted), each under its own prefix:
//
//   POST       /<index>/                                  upload (the legacy API of twine)
//   PUT/DELETE /<index>/<project>/<version>/yank          yank ({"reason": "..."}) / un-yank
//   GET/HEAD   /<index>/files/<project>/<filename>[.metadata]
//   GET/HEAD   /<index>/simple/[<project>/]               the index alone
//
// Uploads and yanks take the Basic auth of oci.hosted.users (the token as password) of a user
// the index lists as an uploader. A hosted project's files, its metadata files and its record are
// pinned blobs (outside the quota, never evicted); keys.h names their keys. /simple/ asks
// find() first: a project a hosted index has is served from there alone.
class hosted_route : public std::enable_shared_from_this<hosted_route> {
 public:
  // `accounts`: oci.hosted, whose users upload. `records` serializes the read-modify-write of
  // project records; the routes made from every reloaded config share one.
  hosted_route(std::shared_ptr<const context> ctx, const config::oci_hosted& accounts,
               std::shared_ptr<std::mutex> records);

  // Removes what a dead process left of uploads and, with `hosted` (an index is configured),
  // makes the directory uploads are received in. Once, when the service is made.
  static void sweep_uploads(const cache::store& store, bool hosted);

  // Everything under /<index> of a configured index.
  boost::asio::awaitable<void> handle(proxy::exchange& ex);

  // A project of a hosted index.
  struct found {
    const config::pypi_hosted* index = nullptr;
    hosted_project project;
  };
  // `project` (normalized) in the first hosted index (config order) that has it; nullopt when
  // none does; an error when its record cannot be read. Reads the cache; does not block long.
  result<std::optional<found>> find(std::string_view project) const;

  // Serves the page of `f` in the representation `chosen`, with an ETag of its bytes. With
  // `upstream` (an index's page of the project, for a name the index merges), its files follow
  // the hosted ones, except those whose file name a hosted file has.
  boost::asio::awaitable<void> serve_page(proxy::exchange& ex, const found& f,
                                          const negotiated& chosen,
                                          const project_page* upstream = nullptr);

  // Whether `index` merges the upstreams' files into the page of `project` (pypi.hosted's merge).
  static bool merges(const config::pypi_hosted& index, std::string_view project);

  // Adds every hosted project to `names` (normalized -> name as uploaded), unless a name is
  // there already; `index` empty: of every index.
  result<void> add_names(std::map<std::string, std::string>& names,
                         std::string_view index = {}) const;

 private:
  struct upload_form;
  boost::asio::awaitable<void> upload(proxy::exchange& ex, const config::pypi_hosted& index);
  boost::asio::awaitable<void> yank(proxy::exchange& ex, const config::pypi_hosted& index,
                                    std::string project, std::string version);
  boost::asio::awaitable<void> serve_file(proxy::exchange& ex, const config::pypi_hosted& index,
                                          std::string_view rest);
  boost::asio::awaitable<void> serve_simple(proxy::exchange& ex, const config::pypi_hosted& index,
                                            std::string_view rest);
  // Answers 401 or 403 and returns false unless the request is an uploader's of `index`.
  boost::asio::awaitable<bool> authorize(proxy::exchange& ex, const config::pypi_hosted& index);

  static std::filesystem::path uploads_dir(const cache::store& store);

  const std::shared_ptr<const context> ctx_;
  const oci::pantry_auth auth_;
  const std::filesystem::path dir_;  // uploads being received
  // Serializes the read-modify-write of project records (held on the blocking pool only).
  const std::shared_ptr<std::mutex> records_;
};

// The project list: the union of every upstream's root page (cached with index_ttl, stale when
// upstream fails) and the projects pantry has pages for, so that it still lists what pantry can
// serve when the upstreams are down or pypi.offline is true.
class project_list : public std::enable_shared_from_this<project_list> {
 public:
  project_list(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index,
               std::shared_ptr<const hosted_route> hosted);

  // GET/HEAD /simple/ (methods and the route label are checked by the caller).
  boost::asio::awaitable<void> serve(proxy::exchange& ex);

 private:
  // An upstream's root page, kept as a list of names, one per line.
  boost::asio::awaitable<index_cache::answer> fetch_root(const config::pypi_upstream& u,
                                                         std::optional<cache::entry> existing);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
  const std::shared_ptr<const hosted_route> hosted_;
};

// Project pages (PEP 503 HTML and PEP 691 JSON, chosen by Accept), asked of the project's
// upstreams in order; a definitive 404/410 falls through to the next, an error never does. A
// project a hosted index has is served from there alone, whatever the upstreams and routes say;
// so is one the hosted upstream has (owner.h), which is asked before the routes and upstreams.
class simple_route : public std::enable_shared_from_this<simple_route> {
 public:
  simple_route(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index,
               std::shared_ptr<hosted_route> hosted);

  // /simple and everything under /simple/ (the project list goes to project_list).
  boost::asio::awaitable<void> handle(proxy::exchange& ex);

  // `project`'s (normalized) page of upstream `u`, from the index cache: fresh, revalidated or
  // fetched (one request for concurrent callers), storing the files it lists as fetchable.
  boost::asio::awaitable<index_cache::answer> resolve_page(const config::pypi_upstream& u,
                                                           std::string project);

  // What the hosted upstream says about `project` (normalized), and its page when it has it
  // (resolved as resolve_page does); not_hosted when no upstream is hosted.
  struct owner_answer {
    owner_verdict verdict;
    index_cache::answer page;
  };
  boost::asio::awaitable<owner_answer> ask_owner(std::string project);

 private:
  // Reads upstream's page, makes every file it lists fetchable and stores both renderings.
  boost::asio::awaitable<index_cache::answer> fetch_page(const config::pypi_upstream& u,
                                                         std::string project,
                                                         std::optional<cache::entry> existing);
  boost::asio::awaitable<void> serve_page(proxy::exchange& ex, const cache::entry& e,
                                          const negotiated& chosen, proxy::cache_outcome outcome,
                                          std::string_view warning);
  // A hosted project whose index merges it: its files, then those of the upstreams' page.
  boost::asio::awaitable<void> serve_merged(proxy::exchange& ex, hosted_route::found f,
                                            std::string project, negotiated chosen);

  // The origin that relative file links of a stored page are resolved against when it is read
  // back to be merged: a reserved name (RFC 6761), stripped again before rendering.
  static constexpr std::string_view kMergeBase = "http://pantry.invalid";

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<index_cache> index_;
  const std::shared_ptr<hosted_route> hosted_;
  const std::shared_ptr<project_list> list_;
};

// Warehouse's JSON API, proxied from upstreams whose URL ends in /simple/, with its file URLs
// made pantry's /files/ URLs (absolute, for the Host the client used). A hosted project's name
// gets 404: no upstream's answer is given for it; nor for a name the hosted upstream has, and
// while it cannot say whether it has one, a 502.
class json_api_route : public std::enable_shared_from_this<json_api_route> {
 public:
  // `pages` asks the hosted upstream.
  json_api_route(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index,
                 std::shared_ptr<const hosted_route> hosted, std::shared_ptr<simple_route> pages);

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
  const std::shared_ptr<const hosted_route> hosted_;
  const std::shared_ptr<simple_route> pages_;
};

// Files an index page listed: served from the cache, else fetched once (single flight) and
// checked against the hash the index gave; .metadata files upstream lacks are made from the
// wheel. A file no cached page lists (a lock file's URL after the cache was lost) sends for the
// page of the project its file name names, from the upstream its path names, through `pages`;
// a URL that page does not list is never fetched, nor one of another upstream than the hosted
// upstream for a project that one has (or while it cannot say).
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
