#include "pantry/proxy/client.h"

#include "client_proxy_env.h"
#include "pantry/text.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pantry::proxy {
namespace {

namespace beast = boost::beast;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using steady_clock = std::chrono::steady_clock;

using tcp_stream_t = asio::as_tuple_t<asio::use_awaitable_t<>>::as_default_on_t<beast::tcp_stream>;
using tls_stream_t = beast::ssl_stream<tcp_stream_t>;
using parser_t = http::response_parser<http::buffer_body>;

// Registries send long header sets; Beast's 8 KiB default is too small (docs/ARCHITECTURE.md,
// "The path of a request").
constexpr std::uint32_t kHeaderLimit = 64 * 1024;
// A redirect's body is read (and dropped) up to this size so that its connection can be reused;
// a longer one closes the connection instead.
constexpr std::size_t kRedirectDrainLimit = 64 * 1024;
constexpr std::size_t kReadAllChunk = 64 * 1024;

// "30s", "250ms".
std::string format_limit(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

std::string host_port(std::string_view host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  std::string out = v6 ? "[" + std::string(host) + "]" : std::string(host);
  return out + ":" + std::to_string(port);
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// An absolute http(s) URL taken apart for sending.
struct target {
  std::string url;  // normalized: lowercase scheme and host, no default port, user info or fragment
  bool tls = false;
  std::string host;  // a lowercase name or an address, IPv6 without brackets
  std::uint16_t port = 0;
  std::string authority;   // the Host header: host[:port], IPv6 in brackets
  std::string path;        // origin-form request target: path and query, at least "/"
  std::string basic_auth;  // "Basic …" from the URL's user info, or empty

  std::string origin() const { return (tls ? "https://" : "http://") + host_port(host, port); }
};

result<target> to_target(const boost::urls::url_view& u) {
  target t;
  if (u.scheme_id() == boost::urls::scheme::https) {
    t.tls = true;
  } else if (u.scheme_id() != boost::urls::scheme::http) {
    return error(errc::invalid_argument, "scheme \"" + std::string(u.scheme()) +
                                             "\" is not supported; use http:// or https://");
  }
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
      t.host = std::string(u.host());
      break;
    case boost::urls::host_type::ipv6:
      t.host = u.host_ipv6_address().to_string();
      break;
    case boost::urls::host_type::name:
      t.host = ascii_lower(std::string(u.host()));
      break;
    default:
      break;
  }
  if (t.host.empty()) return error(errc::invalid_argument, "the URL names no usable host");
  const std::uint16_t default_port = t.tls ? 443 : 80;
  t.port = default_port;
  if (u.has_port() && !u.port().empty()) {
    auto port = parse_port(u.port());
    if (!port || *port == 0) {
      return error(errc::invalid_argument,
                   "port \"" + std::string(u.port()) + "\" is not 1..65535");
    }
    t.port = *port;
  }
  t.authority = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  if (t.port != default_port) t.authority += ":" + std::to_string(t.port);
  t.path = std::string(u.encoded_path());
  if (t.path.empty()) t.path = "/";
  if (u.has_query()) t.path += "?" + std::string(u.encoded_query());
  t.url = std::string(t.tls ? "https://" : "http://") + t.authority + t.path;
  if (u.has_userinfo()) {
    t.basic_auth = basic_authorization(u.user(), u.password());
  }
  return t;
}

result<target> parse_target(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return error(errc::invalid_argument,
                 "not an absolute http:// or https:// URL (" + parsed.error().message() + ")");
  }
  return to_target(*parsed);
}

// The absolute URL a Location header points to, from the URL that answered.
result<target> resolve_location(const std::string& base, std::string_view location) {
  auto b = boost::urls::parse_uri(base);
  auto ref = boost::urls::parse_uri_reference(location);
  if (!b || !ref) {
    return error(errc::invalid_argument, "Location \"" + std::string(location) + "\" is not a URL");
  }
  boost::urls::url dest;
  auto r = boost::urls::resolve(*b, *ref, dest);
  if (!r) {
    return error(errc::invalid_argument, "Location \"" + std::string(location) +
                                             "\" cannot be resolved: " + r.error().message());
  }
  auto t = to_target(dest);
  if (!t) {
    return error(errc::invalid_argument,
                 "Location \"" + std::string(location) + "\": " + t.error().message);
  }
  t->basic_auth.clear();  // credentials come only from the URL the caller gave
  return t;
}

bool is_redirect(unsigned status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// One connection to an origin, or to a proxy (plain, or a CONNECT tunnel under `tls`).
struct connection {
  // Beast reads at most the buffer's spare capacity (never less than 512 bytes) per call; an
  // unreserved buffer stays at 512 bytes, costing about 200,000 reads per 100 MiB body.
  explicit connection(tcp_stream_t s) : plain(std::move(s)) { buffer.reserve(kReadChunk); }

  static constexpr std::size_t kReadChunk = 64 * 1024;

  tcp_stream_t& tcp() { return tls ? tls->next_layer() : *plain; }

  std::shared_ptr<ssl::context> ssl_ctx;  // declared before `tls`, which refers to it
  std::optional<tcp_stream_t> plain;      // exactly one of `plain` and `tls` is set
  std::unique_ptr<tls_stream_t> tls;
  beast::flat_buffer buffer;  // bytes read past what the parser has taken
};

// Calls `f` with the connection's outermost stream; `f` returns an awaitable.
template <class F>
auto with_stream(connection& c, F&& f) -> decltype(f(*c.plain)) {
  if (c.tls) return f(*c.tls);
  return f(*c.plain);
}

// True unless the peer has visibly closed an idle pooled connection (or, on plain HTTP, sent
// bytes nobody asked for). A TLS peer may legitimately have sent a session ticket.
bool looks_alive(connection& c) {
  char byte;
  const auto n = ::recv(c.tcp().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  if (n == 0) return false;
  return c.tls != nullptr;
}

// How a request is carried: straight to the origin or through a proxy.
struct route {
  std::string key;  // the pool the connection belongs to
  std::optional<detail::proxy_endpoint> proxy;
  bool absolute_form = false;  // plain HTTP through the proxy: the target is the whole URL
  std::string connect_host;
  std::uint16_t connect_port = 0;
};

// TLS settings as applied: `system_store` adds the system CAs to a configured ca_file (after a
// redirect to another host, which the ca_file was not configured for).
struct tls_settings {
  tls_options options;
  bool system_store = false;

  std::string key() const {
    if (!options.verify) return "noverify";
    if (!options.ca_file) return "system";
    return (system_store ? "system+" : "") + *options.ca_file;
  }
};

}  // namespace

class client_impl;

class response::impl {
 public:
  impl(std::shared_ptr<client_impl> owner, std::unique_ptr<connection> conn, std::string pool_key,
       std::unique_ptr<parser_t> parser, std::string what, std::string url,
       std::chrono::milliseconds idle_timeout)
      : owner_(std::move(owner)),
        conn_(std::move(conn)),
        pool_key_(std::move(pool_key)),
        parser_(std::move(parser)),
        what_(std::move(what)),
        url_(std::move(url)),
        idle_timeout_(idle_timeout) {
    if (auto n = parser_->content_length()) content_length_ = *n;
  }

  unsigned status() const noexcept { return parser_->get().result_int(); }
  const http::fields& headers() const noexcept { return parser_->get().base(); }
  const std::string& url() const noexcept { return url_; }
  const std::string& what() const noexcept { return what_; }
  std::optional<std::uint64_t> content_length() const noexcept { return content_length_; }

  // Hands the connection back to the pool if the message is complete (a header-only answer).
  void finish_if_done();

  asio::awaitable<result<std::size_t>> read_some(std::span<std::byte> out);

  // Reads and drops up to `limit` body bytes; past that, or on an error, the connection closes.
  asio::awaitable<void> drain(std::size_t limit) {
    std::vector<std::byte> scratch(16 * 1024);
    std::size_t total = 0;
    while (!done_ && conn_ && total <= limit) {
      auto n = co_await read_some(scratch);
      if (!n) co_return;
      total += *n;
    }
    conn_.reset();
  }

  void abandon() noexcept { conn_.reset(); }

 private:
  error body_error(const error_code& ec) const;

  std::shared_ptr<client_impl> owner_;
  std::unique_ptr<connection> conn_;  // null once the body is done or failed
  std::string pool_key_;
  std::unique_ptr<parser_t> parser_;
  std::string what_;  // "GET https://host/path", for messages
  std::string url_;
  std::chrono::milliseconds idle_timeout_;
  std::optional<std::uint64_t> content_length_;
  std::uint64_t received_ = 0;
  bool done_ = false;
};

class client_impl final : public client, public std::enable_shared_from_this<client_impl> {
 public:
  client_impl(asio::any_io_executor ex, const client_options& opt)
      : ex_(std::move(ex)),
        opt_(opt),
        env_(opt.use_env_proxy ? detail::read_proxy_env() : detail::proxy_env{}) {}

  asio::awaitable<result<response>> send(request req) override;
  // send() without the health record: the request and its redirects.
  asio::awaitable<result<response>> send_following(request& req);

  // Takes back a connection whose response was read completely and allowed keep-alive.
  void release(const std::string& key, std::unique_ptr<connection> c);

 private:
  struct idle_connection {
    std::unique_ptr<connection> conn;
    steady_clock::time_point since;
  };

  // One request to one URL, without following redirects. `redirected_from` (the URL the caller
  // asked for, when this is a redirect) goes into messages.
  asio::awaitable<result<std::unique_ptr<response::impl>>> send_once(
      http::verb method, const target& t, const http::fields& headers, const std::string& body,
      const tls_settings& tls, const std::string& redirected_from);
  asio::awaitable<result<std::unique_ptr<connection>>> connect(const target& t, const route& r,
                                                               const tls_settings& tls,
                                                               const std::string& what,
                                                               bool& retryable);
  asio::awaitable<result<tcp::resolver::results_type>> resolve(const std::string& host,
                                                               std::uint16_t port,
                                                               steady_clock::time_point deadline,
                                                               const std::string& what);
  // These two return the error, or nothing on success (result<void> from a coroutine trips gcc
  // 12's -Wmaybe-uninitialized).
  asio::awaitable<std::optional<error>> open_tunnel(connection& c, const target& t,
                                                    const detail::proxy_endpoint& proxy,
                                                    const std::string& what);
  asio::awaitable<std::optional<error>> handshake(connection& c, const target& t,
                                                  const tls_settings& tls, const std::string& what);

  result<route> make_route(const target& t, const tls_settings& tls, const std::string& what) const;
  result<std::shared_ptr<ssl::context>> ssl_context(const tls_settings& tls);
  std::unique_ptr<connection> take(const std::string& key);
  void prune_locked(steady_clock::time_point now, std::vector<std::unique_ptr<connection>>& dead);

  const asio::any_io_executor ex_;
  const client_options opt_;
  const detail::proxy_env env_;

  std::mutex mu_;
  // Idle keep-alive connections per route key, oldest first.
  std::unordered_map<std::string, std::deque<idle_connection>> idle_;  // guarded by mu_
  std::map<std::string, std::shared_ptr<ssl::context>> ssl_contexts_;  // guarded by mu_
};

// ---- response ---------------------------------------------------------------------------------

void response::impl::finish_if_done() {
  if (!parser_->is_done()) return;
  done_ = true;
  auto c = std::move(conn_);
  // Leftover bytes after a complete message mean the peer is out of step: never reuse that.
  if (c && owner_ && parser_->keep_alive() && c->buffer.size() == 0) {
    owner_->release(pool_key_, std::move(c));
  }
}

error response::impl::body_error(const error_code& ec) const {
  if (ec == asio::error::operation_aborted) {
    return error(errc::cancelled, what_ + ": cancelled while reading the body");
  }
  std::string got = std::to_string(received_);
  if (content_length_) got += " of " + std::to_string(*content_length_);
  got += " bytes";
  if (ec == beast::error::timeout) {
    return error(errc::io_error, what_ + ": no body byte within " + format_limit(idle_timeout_) +
                                     " (idle timeout) after " + got);
  }
  if (ec == http::error::partial_message || ec == asio::error::eof ||
      ec == ssl::error::stream_truncated || ec == asio::error::connection_reset) {
    return error(errc::io_error,
                 what_ + ": body ended early after " + got + " (" + ec.message() + ")");
  }
  return error(errc::io_error, what_ + ": reading the body after " + got + ": " + ec.message());
}

asio::awaitable<result<std::size_t>> response::impl::read_some(std::span<std::byte> out) {
  if (done_) co_return 0;
  if (!conn_) {
    co_return error(errc::io_error, what_ + ": the body cannot be read after an earlier error");
  }
  if (out.empty()) {
    co_return error(errc::invalid_argument, what_ + ": read_some needs a non-empty buffer");
  }
  for (;;) {
    auto& body = parser_->get().body();
    body.data = out.data();
    body.size = out.size();
    conn_->tcp().expires_after(idle_timeout_);
    auto [ec, n] = co_await with_stream(
        *conn_, [&](auto& s) { return http::async_read_some(s, conn_->buffer, *parser_); });
    const std::size_t got = out.size() - body.size;
    received_ += got;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      conn_.reset();
      co_return body_error(ec);
    }
    finish_if_done();
    if (got > 0 || done_) co_return got;
  }
}

response::response(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
response::response(response&&) noexcept = default;
response& response::operator=(response&&) noexcept = default;
response::~response() = default;

unsigned response::status() const noexcept {
  return impl_->status();
}
const http::fields& response::headers() const noexcept {
  return impl_->headers();
}
const std::string& response::url() const noexcept {
  return impl_->url();
}
std::optional<std::uint64_t> response::content_length() const noexcept {
  return impl_->content_length();
}

asio::awaitable<result<std::size_t>> response::read_some(std::span<std::byte> out) {
  co_return co_await impl_->read_some(out);
}

asio::awaitable<result<std::string>> response::read_all(std::size_t limit) {
  const auto too_big = [&] {
    impl_->abandon();
    return error(errc::size_mismatch, impl_->what() + ": body is larger than the limit of " +
                                          std::to_string(limit) + " bytes");
  };
  if (auto n = impl_->content_length(); n && *n > limit) co_return too_big();
  std::string body;
  std::vector<std::byte> chunk(kReadAllChunk);
  for (;;) {
    auto n = co_await impl_->read_some(chunk);
    if (!n) co_return n.error();
    if (*n == 0) co_return std::move(body);
    if (body.size() + *n > limit) co_return too_big();
    body.append(reinterpret_cast<const char*>(chunk.data()), *n);
  }
}

// ---- client -----------------------------------------------------------------------------------

std::shared_ptr<client> client::create(asio::any_io_executor ex, const client_options& opt) {
  return std::make_shared<client_impl>(std::move(ex), opt);
}

void client_impl::prune_locked(steady_clock::time_point now,
                               std::vector<std::unique_ptr<connection>>& dead) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& q = it->second;
    while (!q.empty() && now - q.front().since >= opt_.pool_idle) {
      dead.push_back(std::move(q.front().conn));
      q.pop_front();
    }
    it = q.empty() ? idle_.erase(it) : std::next(it);
  }
}

void client_impl::release(const std::string& key, std::unique_ptr<connection> c) {
  if (opt_.max_idle_per_host == 0) return;
  c->tcp().expires_never();
  std::vector<std::unique_ptr<connection>> dead;  // closed after the lock is released
  std::lock_guard lock(mu_);
  const auto now = steady_clock::now();
  prune_locked(now, dead);
  auto& q = idle_[key];
  q.push_back({std::move(c), now});
  while (q.size() > opt_.max_idle_per_host) {
    dead.push_back(std::move(q.front().conn));
    q.pop_front();
  }
}

std::unique_ptr<connection> client_impl::take(const std::string& key) {
  std::vector<std::unique_ptr<connection>> dead;  // closed after the lock is released
  std::lock_guard lock(mu_);
  const auto now = steady_clock::now();
  prune_locked(now, dead);
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  std::unique_ptr<connection> found;
  auto& q = it->second;
  while (!q.empty() && !found) {
    auto c = std::move(q.back().conn);  // the most recently used is the likeliest alive
    q.pop_back();
    if (looks_alive(*c)) {
      found = std::move(c);
    } else {
      dead.push_back(std::move(c));
    }
  }
  if (q.empty()) idle_.erase(it);
  return found;
}

result<std::shared_ptr<ssl::context>> client_impl::ssl_context(const tls_settings& tls) {
  const std::string key = tls.key();
  {
    std::lock_guard lock(mu_);
    if (auto it = ssl_contexts_.find(key); it != ssl_contexts_.end()) return it->second;
  }
  // Built outside the lock: loading a CA bundle reads a file. A failed one is not cached, so a
  // fixed file is picked up by the next request.
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression, ec);
  if (tls.options.verify) {
    if (tls.options.ca_file) {
      ctx->load_verify_file(*tls.options.ca_file, ec);
      if (ec) {
        return error(errc::config_error,
                     "cannot load the CA file \"" + *tls.options.ca_file + "\": " + ec.message());
      }
    }
    if (!tls.options.ca_file || tls.system_store) {
      ctx->set_default_verify_paths(ec);
      if (ec) {
        return error(errc::config_error, "cannot load the system CA store: " + ec.message());
      }
    }
    ctx->set_verify_mode(ssl::verify_peer, ec);
  } else {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  std::lock_guard lock(mu_);
  return ssl_contexts_.emplace(key, std::move(ctx)).first->second;
}

result<route> client_impl::make_route(const target& t, const tls_settings& tls,
                                      const std::string& what) const {
  route r;
  const detail::proxy_setting& setting = t.tls ? env_.https : env_.http;
  if (!detail::no_proxy_matches(env_.no_proxy, t.host, t.port)) {
    if (setting.error) return error(errc::config_error, what + ": " + *setting.error);
    r.proxy = setting.endpoint;
  }
  if (r.proxy) {
    r.connect_host = r.proxy->host;
    r.connect_port = r.proxy->port;
    r.absolute_form = !t.tls;
  } else {
    r.connect_host = t.host;
    r.connect_port = t.port;
  }
  if (r.absolute_form) {
    // Plain HTTP through a proxy: one pool per proxy, whatever the origin.
    r.key = "proxy|" + r.proxy->str() + "|" + r.proxy->authorization;
  } else {
    r.key = (t.tls ? "https|" : "http|") + host_port(t.host, t.port);
    if (t.tls) r.key += "|" + tls.key();
    if (r.proxy) r.key += "|via|" + r.proxy->str() + "|" + r.proxy->authorization;
  }
  return r;
}

asio::awaitable<result<tcp::resolver::results_type>> client_impl::resolve(
    const std::string& host, std::uint16_t port, steady_clock::time_point deadline,
    const std::string& what) {
  // The resolver runs getaddrinfo on a thread of its own and cannot be interrupted, so the
  // deadline is a timer raced against it; a late answer lands in the shared state and is dropped.
  struct state {
    state(const asio::any_io_executor& resolver_ex, const asio::any_io_executor& timer_ex)
        : resolver(resolver_ex), timer(timer_ex) {}
    tcp::resolver resolver;
    asio::steady_timer timer;
    bool done = false;
    error_code ec;
    tcp::resolver::results_type results;
  };
  const auto cex = co_await asio::this_coro::executor;
  auto st = std::make_shared<state>(ex_, cex);
  st->timer.expires_at(deadline);
  st->resolver.async_resolve(
      host, std::to_string(port),
      asio::bind_executor(cex, [st](error_code ec, tcp::resolver::results_type results) {
        st->done = true;
        st->ec = ec;
        st->results = std::move(results);
        st->timer.cancel();
      }));
  auto [wait_ec] = co_await st->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  if (!st->done) {
    st->resolver.cancel();
    if (wait_ec == asio::error::operation_aborted) {
      co_return error(errc::cancelled, what + ": cancelled while resolving " + host);
    }
    co_return error(errc::io_error, what + ": resolving " + host + " took longer than " +
                                        format_limit(opt_.connect_timeout) + " (connect timeout)");
  }
  if (st->ec) {
    co_return error(errc::io_error, what + ": resolving " + host + ": " + st->ec.message());
  }
  co_return std::move(st->results);
}

asio::awaitable<std::optional<error>> client_impl::open_tunnel(connection& c, const target& t,
                                                               const detail::proxy_endpoint& proxy,
                                                               const std::string& what) {
  const std::string authority = host_port(t.host, t.port);
  const std::string via = "proxy " + proxy.str() + ": CONNECT " + authority;
  http::request<http::empty_body> req{http::verb::connect, authority, 11};
  req.set(http::field::host, authority);
  req.set(http::field::user_agent, opt_.user_agent);
  if (!proxy.authorization.empty()) req.set(http::field::proxy_authorization, proxy.authorization);
  auto [wec, wn] = co_await http::async_write(*c.plain, req);
  http::response_parser<http::empty_body> p;
  p.header_limit(kHeaderLimit);
  p.skip(true);  // a 2xx answer to CONNECT has no body: the tunnel starts right after the header
  error_code ec = wec;
  if (!ec) std::tie(ec, std::ignore) = co_await http::async_read_header(*c.plain, c.buffer, p);
  if (ec == beast::error::timeout) {
    co_return error(errc::io_error, what + ": " + via + ": no answer within " +
                                        format_limit(opt_.connect_timeout) + " (connect timeout)");
  }
  if (ec) co_return error(errc::io_error, what + ": " + via + ": " + ec.message());
  const auto& res = p.get();
  if (res.result_int() / 100 != 2) {
    co_return error(errc::io_error, what + ": " + via +
                                        " refused: " + std::to_string(res.result_int()) + " " +
                                        std::string(res.reason()));
  }
  if (c.buffer.size() != 0) {
    co_return error(errc::io_error, what + ": " + via + ": the proxy sent bytes before TLS began");
  }
  co_return std::nullopt;
}

asio::awaitable<std::optional<error>> client_impl::handshake(connection& c, const target& t,
                                                             const tls_settings& tls,
                                                             const std::string& what) {
  auto ctx = ssl_context(tls);
  if (!ctx) co_return error(ctx.error().code, what + ": " + ctx.error().message);
  c.ssl_ctx = *ctx;
  c.tls = std::make_unique<tls_stream_t>(std::move(*c.plain), *c.ssl_ctx);
  c.plain.reset();
  SSL* ssl = c.tls->native_handle();
  const bool ip = is_ip_literal(t.host);
  // SNI carries names only (RFC 6066).
  if (!ip) SSL_set_tlsext_host_name(ssl, t.host.c_str());
  if (tls.options.verify) {
    // OpenSSL's own check (rather than a verify callback) records why a name did not match, so
    // the error can say so.
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t.host.c_str());
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, t.host.c_str());
    }
  }
  const std::string peer = host_port(t.host, t.port);
  auto [ec] = co_await c.tls->async_handshake(ssl::stream_base::client);
  if (!ec) co_return std::nullopt;
  if (ec == asio::error::operation_aborted) {
    co_return error(errc::cancelled, what + ": cancelled during the TLS handshake");
  }
  if (ec == beast::error::timeout) {
    co_return error(errc::io_error, what + ": TLS handshake with " + peer + ": no answer within " +
                                        format_limit(opt_.connect_timeout) + " (connect timeout)");
  }
  const long verify = SSL_get_verify_result(ssl);
  if (tls.options.verify && verify != X509_V_OK) {
    co_return error(errc::io_error, what + ": TLS certificate verify failed for " + peer + " (" +
                                        X509_verify_cert_error_string(verify) + ")");
  }
  co_return error(errc::io_error, what + ": TLS handshake with " + peer + ": " + ec.message());
}

asio::awaitable<result<std::unique_ptr<connection>>> client_impl::connect(const target& t,
                                                                          const route& r,
                                                                          const tls_settings& tls,
                                                                          const std::string& what,
                                                                          bool& retryable) {
  retryable = false;
  const auto deadline = steady_clock::now() + opt_.connect_timeout;
  auto endpoints = co_await resolve(r.connect_host, r.connect_port, deadline, what);
  if (!endpoints) co_return endpoints.error();

  const std::string peer = (r.proxy ? "proxy " : "") + host_port(r.connect_host, r.connect_port);
  tcp_stream_t stream(ex_);
  stream.expires_at(deadline);
  auto [ec, ep] = co_await stream.async_connect(*endpoints);
  if (ec == asio::error::operation_aborted) {
    co_return error(errc::cancelled, what + ": cancelled while connecting to " + peer);
  }
  if (ec == beast::error::timeout) {
    co_return error(errc::io_error, what + ": connect " + peer + ": no connection within " +
                                        format_limit(opt_.connect_timeout) + " (connect timeout)");
  }
  if (ec) {
    retryable = true;
    co_return error(errc::io_error, what + ": connect " + peer + ": " + ec.message());
  }
  stream.socket().set_option(tcp::no_delay(true), ec);

  auto c = std::make_unique<connection>(std::move(stream));
  if (r.proxy && t.tls) {
    if (auto failed = co_await open_tunnel(*c, t, *r.proxy, what)) co_return std::move(*failed);
  }
  if (t.tls) {
    if (auto failed = co_await handshake(*c, t, tls, what)) co_return std::move(*failed);
  }
  c->tcp().expires_never();
  co_return std::move(c);
}

asio::awaitable<result<std::unique_ptr<response::impl>>> client_impl::send_once(
    http::verb method, const target& t, const http::fields& headers, const std::string& body,
    const tls_settings& tls, const std::string& redirected_from) {
  std::string what = std::string(http::to_string(method)) + " " + t.url;
  if (!redirected_from.empty()) what += " (redirected from " + redirected_from + ")";
  auto r = make_route(t, tls, what);
  if (!r) co_return r.error();

  http::request<http::string_body> req{method, r->absolute_form ? t.url : t.path, 11};
  req.body() = body;
  for (const auto& f : headers) {
    if (f.name() != http::field::host) req.insert(f.name_string(), f.value());
  }
  req.set(http::field::host, t.authority);
  if (req.find(http::field::user_agent) == req.end()) {
    req.set(http::field::user_agent, opt_.user_agent);
  }
  if (!t.basic_auth.empty() && req.find(http::field::authorization) == req.end()) {
    req.set(http::field::authorization, t.basic_auth);
  }
  if (r->absolute_form && !r->proxy->authorization.empty()) {
    req.set(http::field::proxy_authorization, r->proxy->authorization);
  }
  req.prepare_payload();

  const bool idempotent = method == http::verb::get || method == http::verb::head;
  bool retried = false;  // one retry per request: a refused connect or a dead pooled connection
  bool fresh = false;
  for (;;) {
    std::unique_ptr<connection> c;
    if (!fresh) c = take(r->key);
    const bool reused = c != nullptr;
    if (!c) {
      bool retryable = false;
      auto cr = co_await connect(t, *r, tls, what, retryable);
      if (!cr) {
        if (idempotent && retryable && !retried) {
          spdlog::debug("upstream client: {}; retrying once", cr.error().message);
          retried = true;
          continue;
        }
        co_return cr.error();
      }
      c = std::move(*cr);
    }
    // A pooled connection that the peer closed while it sat idle fails before any byte of an
    // answer comes back; the request never reached the server's application, so an idempotent
    // one is sent again on a fresh connection.
    const auto stale = [&](const error_code& ec, bool got_some) {
      return reused && idempotent && !retried && !got_some && ec != beast::error::timeout &&
             ec != asio::error::operation_aborted;
    };
    const auto fail = [&](const error_code& ec, std::string_view phase) {
      if (ec == asio::error::operation_aborted) {
        return error(errc::cancelled, what + ": cancelled while " + std::string(phase));
      }
      if (ec == beast::error::timeout) {
        return error(errc::io_error,
                     what + ": no response header within " + format_limit(opt_.header_timeout));
      }
      return error(errc::io_error, what + ": " + std::string(phase) + ": " + ec.message());
    };

    c->tcp().expires_after(opt_.header_timeout);
    auto [wec, wn] = co_await with_stream(*c, [&](auto& s) { return http::async_write(s, req); });
    if (wec) {
      if (stale(wec, false)) {
        spdlog::debug("upstream client: {}: pooled connection closed ({}); retrying", what,
                      wec.message());
        retried = fresh = true;
        continue;
      }
      co_return fail(wec, "sending the request");
    }

    auto p = std::make_unique<parser_t>();
    error_code rec;
    for (;;) {
      p->header_limit(kHeaderLimit);
      p->body_limit(boost::none);
      if (method == http::verb::head) p->skip(true);
      std::tie(rec, std::ignore) = co_await with_stream(
          *c, [&](auto& s) { return http::async_read_header(s, c->buffer, *p); });
      if (rec) break;
      const unsigned status = p->get().result_int();
      // Interim answers (100 Continue, 103 Early Hints) precede the real one.
      if (status < 100 || status >= 200 || status == 101) break;
      p = std::make_unique<parser_t>();
    }
    if (rec) {
      if (stale(rec, p->got_some() || c->buffer.size() != 0)) {
        spdlog::debug("upstream client: {}: pooled connection closed ({}); retrying", what,
                      rec.message());
        retried = fresh = true;
        continue;
      }
      co_return fail(rec, "reading the response header");
    }
    c->tcp().expires_never();
    auto res = std::make_unique<response::impl>(shared_from_this(), std::move(c), r->key,
                                                std::move(p), what, t.url, opt_.idle_timeout);
    res->finish_if_done();
    co_return std::move(res);
  }
}

asio::awaitable<result<response>> client_impl::send(request req) {
  auto self = shared_from_this();  // pools and contexts outlive this call
  const std::shared_ptr<upstream_health> health = opt_.health;
  std::optional<std::string> origin;
  if (health) origin = upstream_health::origin_of(req.url);
  const auto started = steady_clock::now();
  auto r = co_await send_following(req);
  if (spdlog::should_log(spdlog::level::debug)) {
    const double ms =
        std::chrono::duration<double, std::milli>(steady_clock::now() - started).count();
    const std::string method(http::to_string(req.method));
    if (r) {
      spdlog::debug("upstream client: {} {}: HTTP {}, header after {:.1f} ms", method, r->url(),
                    r->status(), ms);
    } else {
      spdlog::debug("upstream client: {} after {:.1f} ms", r.error().message, ms);
    }
  }
  if (origin) {
    const auto now = upstream_health::clock::now();
    if (r && r->status() < 500) {
      health->succeeded(*origin, now);
    } else if (r) {
      health->failed(*origin, now, "HTTP " + std::to_string(r->status()) + " from " + r->url());
    } else if (!r.error().is(errc::cancelled)) {
      health->failed(*origin, now, r.error().message);
    }
  }
  co_return r;
}

asio::awaitable<result<response>> client_impl::send_following(request& req) {
  auto first = parse_target(req.url);
  if (!first) {
    co_return error(errc::invalid_argument, std::string(http::to_string(req.method)) + " " +
                                                req.url + ": " + first.error().message);
  }
  target t = std::move(*first);
  const std::string first_url = t.url;
  const std::string none;
  http::verb method = req.method;
  http::fields headers = std::move(req.headers);
  std::string body = std::move(req.body);
  tls_settings tls{std::move(req.tls), false};
  const int max_redirects = std::max(opt_.max_redirects, 0);
  for (int redirects = 0;; ++redirects) {
    // Named, not a temporary: gcc 12 mishandles a conditional's temporary inside co_await.
    const std::string& from = redirects > 0 ? first_url : none;
    auto sent = co_await send_once(method, t, headers, body, tls, from);
    if (!sent) co_return sent.error();
    std::unique_ptr<response::impl> res = std::move(*sent);
    const unsigned status = res->status();
    if (!req.follow_redirects || !is_redirect(status)) co_return response(std::move(res));
    const auto location = res->headers().find(http::field::location);
    if (location == res->headers().end()) co_return response(std::move(res));
    if (redirects >= max_redirects) {
      co_return error(errc::io_error, res->what() + ": more than " + std::to_string(max_redirects) +
                                          " redirects (the last to \"" +
                                          std::string(location->value()) + "\")");
    }
    auto next = resolve_location(t.url, location->value());
    if (!next) {
      co_return error(errc::io_error, res->what() + ": redirect (" + std::to_string(status) +
                                          ") to an unusable " + next.error().message);
    }
    co_await res->drain(kRedirectDrainLimit);
    if (status == 303 && method != http::verb::head) method = http::verb::get;
    if ((status == 301 || status == 302) && method == http::verb::post) method = http::verb::get;
    if (method == http::verb::get || method == http::verb::head) body.clear();
    if (next->origin() != t.origin() || !req.authorization_on_redirect) {
      // Credentials were meant for the origin the caller named, not for wherever it points.
      headers.erase(http::field::authorization);
      headers.erase(http::field::cookie);
      t.basic_auth.clear();
    }
    if (next->host != t.host) {
      // The TLS settings were configured for the first host; elsewhere the system CAs apply
      // (plus the configured CA file), and verification is never off.
      tls.options.verify = true;
      tls.system_store = true;
    }
    next->basic_auth = t.basic_auth;
    t = std::move(*next);
  }
}

std::optional<std::string> upstream_health::origin_of(std::string_view url) {
  auto t = parse_target(url);
  if (!t) return std::nullopt;
  return std::string(t->tls ? "https://" : "http://") + t->authority;
}

void upstream_health::succeeded(const std::string& origin, clock::time_point at) {
  std::lock_guard lock(mutex_);
  records_[origin].last_success = at;
}

void upstream_health::failed(const std::string& origin, clock::time_point at,
                             std::string_view why) {
  std::lock_guard lock(mutex_);
  auto& r = records_[origin];
  r.last_failure = at;
  r.failure = why;
}

upstream_health::record upstream_health::of(const std::string& origin) const {
  std::lock_guard lock(mutex_);
  auto it = records_.find(origin);
  return it == records_.end() ? record{} : it->second;
}

}  // namespace pantry::proxy
