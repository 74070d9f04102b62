#pragma once

// pantry's own registry auth: the users of oci.hosted.users, who authenticate with Basic
// "name:token" or with a Bearer token from pantry's token endpoint (/auth/token, the Docker token
// protocol, so `docker login`, `podman login` and `skopeo --creds` work). Tokens are HMAC-signed
// with a key made at start, valid for an hour; a restart makes clients log in again, which they
// do on their own.

#include "pantry/config/config.h"
#include "pantry/proxy/server.h"

#include <boost/asio/awaitable.hpp>

#include <array>
#include <cstddef>
#include <optional>
#include <string>

namespace pantry::registry::oci {

class pantry_auth {
 public:
  // `control_token`: pantry's own credential (service.h), "" for none. Tokens are signed with
  // cfg.token_key, or with a random key of this object's own when it is empty (tokens then die
  // with it).
  explicit pantry_auth(const config::oci_hosted& cfg, std::string control_token = {});

  // The identity of a request that carries the control token.
  static constexpr std::string_view kControlUser = "pantry";

  // Whether any user is configured (otherwise nothing can be pushed and nothing asks for auth).
  bool enabled() const noexcept { return !cfg_.users.empty(); }

  struct identity {
    std::string user;      // the user, or "" for anonymous
    bool invalid = false;  // credentials were sent and are wrong (or an expired token)
  };
  identity who(const proxy::exchange& ex) const;

  // GET /auth/token?service=…&scope=…: with a user's Basic credentials, a token for that user;
  // without credentials, an anonymous token (pull only); wrong credentials, 401.
  boost::asio::awaitable<void> handle_token(proxy::exchange& ex) const;

  // 401 UNAUTHORIZED with a Bearer challenge pointing at the token endpoint.
  boost::asio::awaitable<void> challenge(proxy::exchange& ex, std::string scope,
                                         std::string message) const;

 private:
  std::string issue(const std::string& user, std::int64_t expires) const;
  std::optional<std::string> check_token(std::string_view token) const;
  std::optional<std::string> check_basic(std::string_view value) const;

  const config::oci_hosted cfg_;
  const std::string control_token_;
  std::string key_;  // the HMAC key
};

}  // namespace pantry::registry::oci
