#pragma once

// Requests to one upstream registry with its auth: anonymous, Basic with configured credentials,
// or the Bearer challenge flow (realm, service, scope) with tokens reused per scope until they
// expire. What an upstream wants is learned from its first 401 and remembered, so later requests
// (and flights, which send one fixed request) carry the right Authorization at once.

#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/metrics.h"

#include "../http_serve.h"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace pantry::registry::oci {

namespace http = boost::beast::http;

class upstream_auth {
 public:
  upstream_auth(const config::oci_upstream& up, std::shared_ptr<proxy::client> client,
                std::shared_ptr<proxy::metrics_registry> metrics);

  const config::oci_upstream& upstream() const noexcept { return up_; }

  // Sends `method` `path` (starting "/v2/…") to the upstream for repository `repo` with the
  // Authorization it needs, answering one 401 challenge. A 401 that comes back is the caller's
  // to interpret (no such repository, or bad credentials).
  boost::asio::awaitable<result<proxy::response>> send(http::verb method, std::string path,
                                                       std::string repo, http::fields headers);

  // The Authorization value to send for `repo` now ("" for none), fetching a token if the
  // upstream is known to want one and none is cached. For a flight's request.
  boost::asio::awaitable<result<std::string>> authorization(std::string repo);

  // Drops the cached token for `repo`, after the upstream refused it.
  void forget_token(const std::string& repo);

  // Token requests sent so far (for tests and metrics).
  std::uint64_t token_requests() const;

 private:
  enum class mode { unknown, none, basic, bearer };
  struct token_slot {
    std::string value;
    std::chrono::steady_clock::time_point expires;
  };

  std::string basic_value() const;
  std::optional<std::string> cached_token(const std::string& scope);
  boost::asio::awaitable<result<std::string>> fetch_token(std::string scope);
  proxy::request make_request(http::verb method, const std::string& path,
                              const http::fields& headers) const;

  const config::oci_upstream up_;
  const std::shared_ptr<proxy::client> client_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;

  mutable std::mutex mutex_;
  mode mode_ = mode::unknown;                 // guarded by mutex_
  std::string realm_;                         // guarded by mutex_
  std::string service_;                       // guarded by mutex_
  std::map<std::string, token_slot> tokens_;  // by scope; guarded by mutex_
  std::uint64_t token_requests_ = 0;          // guarded by mutex_
  detail::coalescer<result<std::string>> fetches_;
};

}  // namespace pantry::registry::oci
