#pragma once

// The pull-through side of the registry: names that resolve to an upstream. Manifests
// (manifests.cpp: by digest immutable, by tag under the freshness policy of ../freshness.h),
// blobs (blobs.cpp: single flight, served under a repository only if its manifests reference
// them), tag lists (tag_list.cpp: passed through, sorted and paged) and referrers lists
// (referrers.cpp). The service (service.cpp) resolves a name to a `target` and hands the request
// here.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/server.h"
#include "pantry/registry/oci/protocol.h"

#include "../freshness.h"
#include "../http_serve.h"
#include "upstream_auth.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::oci {

namespace http = boost::beast::http;

// Where a request's repository name goes.
struct target {
  upstream_auth* up = nullptr;  // null: hosted
  std::string repo;             // the name upstream, or in hosted storage
  std::string key_prefix;       // the repository key of its cache keys (keys.h)
};

// An upstream's answer about a manifest (or its failure, for blobs and tag lists too).
struct proxied_answer {
  std::optional<cache::entry> entry;  // the stored manifest (target set)
  http::status status = http::status::ok;
  std::string code;  // the spec's error code
  std::string message;
  std::string retry_after;
  bool upstream_failed = false;  // a failure a cached copy may stand in for (5xx, 429, network)
  // Nothing was sent: the entry was stored by a request that ended after the client looked in
  // the cache (proxied_manifests::stored_meanwhile), so the client counts as joined to it.
  bool coalesced = false;
};

// What the pull-through routes share. Owned by the service; a fetch that outlives its request
// keeps it alive through the route that started it.
// A referrers list asked of the upstream: the list, or the failure to answer with.
struct fetched_referrers {
  std::optional<std::vector<referrer>> list;
  proxied_answer failed;
  bool stored_meanwhile = false;  // the list came from the cache, stored by an ask just ended
};

struct proxied_context {
  // One upstream_auth per item of cfg.upstreams, sending through `client`.
  proxied_context(const config::oci_config& cfg, std::shared_ptr<cache::store> store,
                  const std::shared_ptr<proxy::client>& client,
                  std::shared_ptr<proxy::flight_table> flights,
                  std::shared_ptr<proxy::metrics_registry> metrics,
                  boost::asio::any_io_executor blocking);

  // The freshness rules of tags: tag_ttl, no negative answers kept, never offline.
  freshness::rules tag_rules() const;

  const config::oci_config cfg;
  const std::shared_ptr<cache::store> store;
  const std::shared_ptr<proxy::flight_table> flights;
  const freshness::reporter report;  // protocol "oci"
  const boost::asio::any_io_executor blocking;
  // By upstream name; a target points into it.
  const std::map<std::string, std::unique_ptr<upstream_auth>, std::less<>> upstreams;
  // Upstream HEADs of blobs no cached manifest of their repository references, keyed by the
  // blob's cache key (upstream, repository and digest): one at a time per key, its answer shared
  // by every client that asks meanwhile (blobs.cpp). Mutable: the routes hold the context const.
  mutable detail::coalescer<proxied_answer> blob_checks;
  // Upstream asks for a referrers list, keyed by the list's cache key: one at a time per key,
  // its list (or failure) shared by every client that asks meanwhile (referrers.cpp).
  mutable detail::coalescer<fetched_referrers> referrer_fetches;
};

// What an upstream's failure status `s` for `what` means for the client; `unknown_code` is the
// spec's code for a 404 (MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN).
proxied_answer failure(const target& t, const std::string& what, unsigned s,
                       std::string retry_after, std::string_view unknown_code);
proxied_answer failure(const target& t, const std::string& what, const proxy::response& res,
                       std::string_view unknown_code);
// An upstream that could not be asked (network, timeout, a broken body).
proxied_answer unreachable(const error& e);
// The failure as an OCI error, with upstream's Retry-After.
boost::asio::awaitable<void> answer_failure(proxy::exchange& ex, const proxied_answer& a);

// GET/HEAD /v2/<name>/manifests/<reference> of a proxied name, one upstream request for every
// client that asks at the same time with the same Accept, also for one that looked in the cache
// before another's request stored the manifest and asks only after that request ended.
class proxied_manifests : public std::enable_shared_from_this<proxied_manifests> {
 public:
  explicit proxied_manifests(std::shared_ptr<const proxied_context> ctx);

  boost::asio::awaitable<void> handle(proxy::exchange& ex, const target& t, const std::string& ref);

 private:
  // The double check of a request for `ref` about to go upstream. The client looked in the cache
  // before it came here; a fetch or revalidation may have stored an answer and left its
  // coalescer since. Returns that answer (`coalesced` set) iff the cache can now serve a client
  // that accepts `accepted` without asking upstream: by digest any cached copy, by tag a fresh
  // one of an accepted type.
  std::optional<proxied_answer> stored_meanwhile(const target& t, const std::string& ref,
                                                 const accept_set& accepted) const;
  boost::asio::awaitable<proxied_answer> revalidate(const target& t, const std::string& ref,
                                                    const std::vector<std::string_view>& accept,
                                                    const cache::entry& cached, bool& joined);
  boost::asio::awaitable<proxied_answer> head_manifest(const target& t, const std::string& ref,
                                                       http::fields headers);
  boost::asio::awaitable<proxied_answer> fetch_manifest(const target& t, const std::string& ref,
                                                        const std::vector<std::string_view>& accept,
                                                        bool& joined);
  boost::asio::awaitable<proxied_answer> fetch_manifest_now(target t, std::string ref,
                                                            http::fields headers);
  // The cached manifest for an expired tag, served because upstream failed (decision `d`).
  boost::asio::awaitable<void> serve_stale(proxy::exchange& ex, const target& t,
                                           cache::blob_reader& reader, const cache::entry& cached,
                                           const freshness::decision& d);

  const std::shared_ptr<const proxied_context> ctx_;
  detail::coalescer<proxied_answer> manifests_;
  detail::coalescer<proxied_answer> revalidations_;
};

// GET/HEAD /v2/<name>/blobs/<digest> of a proxied name (`name` as the client wrote it).
// `ctx` is shared: a HEAD it starts upstream outlives the request.
boost::asio::awaitable<void> serve_proxied_blob(const std::shared_ptr<const proxied_context>& ctx,
                                                proxy::exchange& ex, const target& t,
                                                const std::string& name, const std::string& ref);

// GET /v2/<name>/tags/list of a proxied name (`name` as the client wrote it).
boost::asio::awaitable<void> serve_proxied_tags(const proxied_context& ctx, proxy::exchange& ex,
                                                const target& t, const std::string& name);

// GET/HEAD /v2/<name>/referrers/<digest> of a proxied name (referrers.cpp): the upstream's
// referrers API, else its referrers tag schema; cached like a tag (tag_ttl, stale on failure).
// One upstream ask per list at a time, shared by the clients that want it meanwhile; `ctx` is
// shared because that ask outlives the request that started it.
boost::asio::awaitable<void> serve_proxied_referrers(
    const std::shared_ptr<const proxied_context>& ctx, proxy::exchange& ex, const target& t,
    const std::string& ref);

}  // namespace pantry::registry::oci
