#include "pantry_auth.h"

#include "pantry/proxy/client.h"
#include "respond.h"

#include <boost/json.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <charconv>
#include <chrono>
#include <stdexcept>

namespace pantry::registry::oci {

namespace asio = boost::asio;

namespace {

constexpr std::int64_t kTokenLifetime = 3600;

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

pantry_auth::pantry_auth(const config::oci_hosted& cfg, std::string control_token)
    : cfg_(cfg), control_token_(std::move(control_token)), key_(cfg.token_key) {
  if (key_.empty()) {
    key_.resize(32);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) !=
        1) {
      throw std::runtime_error("pantry: no randomness for the registry token key");
    }
  }
}

// A token is "<user>.<expires>.<hmac hex>"; user names have no '.'-free guarantee, so the
// HMAC covers both and the last two dots split.
std::string pantry_auth::issue(const std::string& user, std::int64_t expires) const {
  std::string payload = user + "." + std::to_string(expires);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), reinterpret_cast<const unsigned char*>(key_.data()),
       static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(payload.data()),
       payload.size(), mac, &len);
  return payload + "." + hex(mac, len);
}

std::optional<std::string> pantry_auth::check_token(std::string_view token) const {
  auto last = token.rfind('.');
  if (last == std::string_view::npos || last == 0) return std::nullopt;
  auto mid = token.rfind('.', last - 1);
  if (mid == std::string_view::npos) return std::nullopt;
  std::string user(token.substr(0, mid));
  std::string_view exp_text = token.substr(mid + 1, last - mid - 1);
  std::int64_t expires = 0;
  auto [p, ec] = std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), expires);
  if (ec != std::errc() || p != exp_text.data() + exp_text.size()) return std::nullopt;
  if (!constant_time_equal(issue(user, expires), token)) return std::nullopt;
  if (now_seconds() >= expires) return std::nullopt;
  if (!user.empty()) {
    bool known = false;
    for (const auto& u : cfg_.users)
      known = known || u.name == user;
    if (!known) return std::nullopt;  // a user removed from the config since
  }
  return user;
}

std::optional<std::string> pantry_auth::check_basic(std::string_view value) const {
  auto creds = proxy::parse_basic_authorization(value);
  if (!creds) return std::nullopt;
  for (const auto& u : cfg_.users) {
    if (u.name == creds->first && constant_time_equal(u.token, creds->second)) return u.name;
  }
  return std::nullopt;
}

pantry_auth::identity pantry_auth::who(const proxy::exchange& ex) const {
  identity id;
  for (auto v : ex.header_values(http::field::authorization)) {
    if (v.size() > 7 && (v.substr(0, 7) == "Bearer " || v.substr(0, 7) == "bearer ")) {
      if (!control_token_.empty() && v.size() - 7 == control_token_.size() &&
          CRYPTO_memcmp(v.data() + 7, control_token_.data(), control_token_.size()) == 0) {
        id.user = std::string(kControlUser);
        return id;
      }
      if (auto user = check_token(v.substr(7))) {
        id.user = *user;
        return id;
      }
    } else if (auto user = check_basic(v)) {
      id.user = *user;
      return id;
    }
    id.invalid = true;
  }
  return id;
}

asio::awaitable<void> pantry_auth::handle_token(proxy::exchange& ex) const {
  std::string user;
  for (auto v : ex.header_values(http::field::authorization)) {
    auto u = check_basic(v);
    if (!u) {
      // Name the user, never the token.
      auto creds = proxy::parse_basic_authorization(v);
      std::string who = creds ? "user \"" + creds->first.substr(0, 64) + "\"" : "credentials";
      for (char& c : who) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
      }
      co_await challenge(ex, {},
                         "wrong user name or token for pantry (" + who +
                             "); use a name and token from oci.hosted.users");
      co_return;
    }
    user = *u;
  }
  const std::int64_t expires = now_seconds() + kTokenLifetime;
  boost::json::object o;
  const std::string token = issue(user, expires);
  o["token"] = token;
  o["access_token"] = token;
  o["expires_in"] = kTokenLifetime;
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = boost::json::serialize(o);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> pantry_auth::challenge(proxy::exchange& ex, std::string scope,
                                             std::string message) const {
  // The realm names pantry as the client reached it; a Host that is no host name is not echoed.
  std::string host(ex.request()[http::field::host]);
  const bool plain = !host.empty() && host.size() < 256 &&
                     host.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789.-:[]") == std::string::npos;
  if (!plain) host = "localhost";
  std::string value = "Bearer realm=\"http://" + host + "/auth/token\",service=\"pantry\"";
  if (!scope.empty()) value += ",scope=\"" + scope + "\"";
  http::fields extra;
  extra.set(http::field::www_authenticate, value);
  co_await oci_error(ex, http::status::unauthorized, "UNAUTHORIZED", std::move(message), extra);
}

}  // namespace pantry::registry::oci
