#pragma once

// The upstream HTTP client: keep-alive connection pools per (scheme, host, port, proxy), TLS with
// certificate and host-name verification (system CA store, or a configured CA file) and SNI,
// timeouts on connect, response header and idle body, redirects followed across hosts (without
// forwarding Authorization), HTTP_PROXY / HTTPS_PROXY / NO_PROXY, and one retry of an idempotent
// request that failed to connect or found a pooled connection closed before any byte came back.
//
// NO_PROXY is a comma- or space-separated list of "*", host names (with or without a leading dot;
// each also covers the names under it), "host:port" and IP literals; no CIDR ranges. Loopback is
// not special: "localhost" and "127.0.0.1" go through the proxy unless NO_PROXY lists them.

#include "pantry/error.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace pantry::proxy {

namespace asio = boost::asio;
namespace http = boost::beast::http;

// What the upstream client last saw from each origin ("https://pypi.org", "http://10.0.0.5:5000"),
// for the front page: when a request there last got an answer and when one last failed, and why.
// An answer is any response below 500 (a 404 or a 401 still says the upstream is up); a failure
// is an error before the response header (connect, TLS, timeout) or a 5xx. A request is counted
// once, against the origin of the URL it was sent to (not of a redirect's target), when its
// header has arrived; a body that fails later is not counted here (the fetch's own error says
// so). A request the caller cancelled counts as neither. Thread-safe: any thread records and reads.
class upstream_health {
 public:
  using clock = std::chrono::system_clock;
  struct record {
    std::optional<clock::time_point> last_success;
    std::optional<clock::time_point> last_failure;
    std::string failure;  // the last failure's message (it names the URL, never its user info)
  };

  // The origin of an absolute http(s) URL as the records are keyed: lowercase scheme and host,
  // the port only when it is not the scheme's default, no user info, no path. nullopt when `url`
  // is not an absolute http:// or https:// URL.
  static std::optional<std::string> origin_of(std::string_view url);

  void succeeded(const std::string& origin, clock::time_point at);
  void failed(const std::string& origin, clock::time_point at, std::string_view why);
  // What was recorded for `origin` (empty fields when nothing was).
  record of(const std::string& origin) const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, record> records_;  // guarded by mutex_
};

struct client_options {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds header_timeout{30'000};  // from request sent to response header
  std::chrono::milliseconds idle_timeout{30'000};    // no body byte for this long
  std::size_t max_idle_per_host = 16;                // pooled keep-alive connections
  std::chrono::milliseconds pool_idle{60'000};       // pooled connections older are closed
  int max_redirects = 5;
  // Read HTTP_PROXY / HTTPS_PROXY / NO_PROXY (and lowercase forms) from the environment.
  bool use_env_proxy = true;
  std::string user_agent = "pantry";
  // Where every request's outcome is recorded; null: nowhere.
  std::shared_ptr<upstream_health> health;
};

// Per-request TLS settings: a PEM CA bundle to trust instead of the system store.
struct tls_options {
  std::optional<std::string> ca_file;
  bool verify = true;  // off only when a config explicitly says so
};

struct request {
  http::verb method = http::verb::get;
  // Absolute http:// or https:// URL. User info ("https://user:token@host/") is sent as Basic
  // Authorization unless `headers` has an Authorization line, and is never part of url().
  std::string url;
  http::fields headers;
  // The request body, sent with its Content-Length (none when empty, as for GET). Only a
  // request that cannot have been processed (its connection failed before any response byte) is
  // retried, and only when it is idempotent.
  std::string body;
  // Applies to the URL's host. After a redirect to another host, verification is always on and the
  // system store is trusted in addition to `tls.ca_file`.
  tls_options tls;
  bool follow_redirects = true;
  // Authorization and Cookie go to a redirect's target only when it has the URL's origin, and
  // with this false never: a registry's 307 points at a presigned URL (a CDN, object storage)
  // that must not see the registry's token, whatever its host.
  bool authorization_on_redirect = true;
};

// An upstream response whose body is read piece by piece. Dropping it before the body is read to
// the end closes the connection instead of returning it to the pool.
class response {
 public:
  class impl;
  explicit response(std::unique_ptr<impl> p);
  response(response&&) noexcept;
  response& operator=(response&&) noexcept;
  ~response();

  unsigned status() const noexcept;
  const http::fields& headers() const noexcept;
  // The URL that answered, after redirects: normalized (lowercase host, no default port, no user
  // info or fragment).
  const std::string& url() const noexcept;
  // Content-Length, when the response has one.
  std::optional<std::uint64_t> content_length() const noexcept;

  // Reads the next part of the body into `out`; 0 at its end. An idle body past idle_timeout,
  // a reset, or a body shorter than its Content-Length is an error (errc::io_error) that names
  // the URL and how many bytes came. `out` must not be empty. One coroutine at a time.
  asio::awaitable<result<std::size_t>> read_some(std::span<std::byte> out);

  // Reads the whole body, failing with errc::size_mismatch past `limit` bytes.
  asio::awaitable<result<std::string>> read_all(std::size_t limit);

 private:
  std::unique_ptr<impl> impl_;
};

// "Basic <base64(user:password)>", for credentials given to an upstream or a proxy.
std::string basic_authorization(std::string_view user, std::string_view password);
// The user and password of a "Basic <base64(user:password)>" Authorization value, or nullopt
// when it is not one.
std::optional<std::pair<std::string, std::string>> parse_basic_authorization(
    std::string_view value);

// Thread-safe: one client serves coroutines on any executor and thread (each coroutine on a strand
// or a single-threaded context, as Beast's timeouts require).
class client {
 public:
  // Connections are made on `ex`'s execution context; destroy the client, and every response,
  // before that context. The proxy environment is read here, once.
  static std::shared_ptr<client> create(asio::any_io_executor ex, const client_options& opt);
  virtual ~client() = default;

  // Sends `req` and returns once the response header has arrived (after redirects). Errors name
  // the URL and the cause: "GET https://host/x: TLS certificate verify failed (self-signed
  // certificate in certificate chain)", "connect 127.0.0.1:9: connection refused", timeouts with
  // the phase and the limit.
  virtual asio::awaitable<result<response>> send(request req) = 0;
};

}  // namespace pantry::proxy
