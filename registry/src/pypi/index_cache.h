#pragma once

// The index cache: what an upstream index answers about projects (index pages, project lists,
// JSON API answers), kept under the freshness policy of ../freshness.h. It decides from the
// cached entry whether to serve it, revalidate it (If-None-Match / If-Modified-Since) or fetch;
// sends the request; and settles every answer but a new 200 itself: 304 renews the entry,
// 404/410 is remembered for negative_ttl as a negative answer, a failure serves the stale copy
// (Warning 111) or, with nothing cached, the failure. A new 200 goes back to the route that
// asked, which reads it into what it stores (a page's renderings, a list of names, a rewritten
// JSON answer). Concurrent requests for one key share one upstream request, also when one looked
// in the cache before another's request stored its answer and asks only after it ended.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/server.h"

#include "../http_serve.h"
#include "serving.h"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace pantry::registry::pypi {

class index_cache {
 public:
  // What a key holds for a client: the entry to serve (a 200 or a negative answer) or why there
  // is none; how it was obtained; the Warning to send ("" or one of freshness.h's values).
  struct answer {
    result<cache::entry> entry;
    proxy::cache_outcome outcome = proxy::cache_outcome::none;
    std::string_view warning;
  };

  // An upstream's 200 answer, read whole, for the route to store.
  struct fetched {
    std::string body;
    std::string content_type;
    std::string url;     // after redirects
    cache::entry fresh;  // a 200 entry stamped now, with the answer's ETag and Last-Modified
  };

  // Fetches the answer for one key from upstream, given the expired entry if there is one (the
  // route's part: builds the request, calls fetch(), stores what comes back).
  using fetch_fn =
      std::function<boost::asio::awaitable<answer>(const std::optional<cache::entry>& existing)>;

  index_cache(std::shared_ptr<const context> ctx, std::shared_ptr<proxy::client> upstream);

  // What `key` (of upstream `u`; `what` names it in messages) holds: fresh from the cache,
  // revalidated or fetched by `fetch`, or stale when upstream fails. An error only when there is
  // nothing to serve: errc::not_found when offline and not cached, else upstream's failure.
  boost::asio::awaitable<answer> resolve(const config::pypi_upstream& u, std::string key,
                                         std::string what, fetch_fn fetch);

  // Sends `req` for `key` (conditional when `existing` has validators) and settles the answer
  // unless it is a new 200: then returns its body, read whole.
  boost::asio::awaitable<std::variant<fetched, answer>> fetch(
      const config::pypi_upstream& u, const std::string& key, proxy::request& req,
      const std::optional<cache::entry>& existing);

  // Upstream's 200 that cannot be used (`why`: a page pantry cannot read): counted as an
  // upstream failure; the stale copy when there is one, else the error.
  answer upstream_failed(const config::pypi_upstream& u,
                         const std::optional<cache::entry>& existing, const error& why) const;
  // A fetched answer stored as `e`.
  static answer stored(cache::entry e);
  // A fetched answer that could not be stored under `key` (logged).
  static answer storage_failure(const std::string& key, const error& why);

 private:
  // The entry under `key` if it can be served: every blob it names is still cached.
  std::optional<cache::entry> cached(const std::string& key) const;
  // True iff every blob an entry names (its representations or name list) is still cached.
  bool usable(const cache::entry& e) const;
  // Applies the decision for a revalidation or fetch that upstream answered with `a`.
  boost::asio::awaitable<answer> settle(const config::pypi_upstream& u, const std::string& key,
                                        const std::optional<cache::entry>& existing,
                                        const freshness::upstream_answer& a);

  const std::shared_ptr<const context> ctx_;
  const std::shared_ptr<proxy::client> upstream_;
  detail::coalescer<answer> pages_;
};

}  // namespace pantry::registry::pypi
