// The upstream client against small servers written here (plain sockets, raw HTTP), so that each
// test controls exactly what the peer does: stall, close early, redirect, proxy, speak TLS.

#include "pantry/proxy/client.h"

#include "client_proxy_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pantry::proxy {
namespace {

namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// ---- a test server ----------------------------------------------------------------------------

// One accepted connection: reads request heads, writes raw bytes.
class test_conn {
 public:
  test_conn(tcp::socket s, ssl::context* tls, int index) : index(index) {
    if (tls) {
      tls_.emplace(std::move(s), *tls);
    } else {
      plain_.emplace(std::move(s));
    }
  }

  const int index;  // the connection's number on its server, from 0
  int request = 0;  // the request's number on this connection, from 0
  std::string sni;  // the server name a TLS client sent

  asio::awaitable<bool> handshake() {
    if (!tls_) co_return true;
    auto [ec] = co_await tls_->async_handshake(ssl::stream_base::server, tok);
    if (ec) co_return false;
    if (const char* name = SSL_get_servername(tls_->native_handle(), TLSEXT_NAMETYPE_host_name)) {
      sni = name;
    }
    co_return true;
  }

  // The next request head (request line and header lines), or nothing at EOF.
  asio::awaitable<std::optional<std::string>> read_head() {
    for (;;) {
      if (auto end = buf_.find("\r\n\r\n"); end != std::string::npos) {
        std::string head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        co_return head;
      }
      char chunk[4096];
      auto [ec, n] = co_await read_some(asio::buffer(chunk));
      if (ec) co_return std::nullopt;
      buf_.append(chunk, n);
    }
  }

  asio::awaitable<bool> write(std::string_view bytes) {
    if (tls_) {
      auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(bytes), tok);
      co_return !ec;
    }
    auto [ec, n] = co_await asio::async_write(*plain_, asio::buffer(bytes), tok);
    co_return !ec;
  }

  // Waits until the server stops.
  asio::awaitable<void> stall() {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(1h);
    co_await t.async_wait(tok);
  }

  // Answers CONNECT and relays bytes to 127.0.0.1:`port` and back until both sides close.
  asio::awaitable<void> tunnel_to(std::uint16_t port) {
    tcp::socket upstream(co_await asio::this_coro::executor);
    auto [ec] = co_await upstream.async_connect({asio::ip::make_address("127.0.0.1"), port}, tok);
    if (ec) {
      co_await write("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
      co_return;
    }
    co_await write("HTTP/1.1 200 Connection established\r\n\r\n");
    co_await (pump(*plain_, upstream) && pump(upstream, *plain_));
  }

 private:
  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      asio::mutable_buffer b) {
    if (tls_) co_return co_await tls_->async_read_some(b, tok);
    co_return co_await plain_->async_read_some(b, tok);
  }

  static asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to) {
    char chunk[16384];
    for (;;) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(chunk), tok);
      if (ec) break;
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(chunk, n), tok);
      if (wec) break;
    }
    boost::system::error_code ignored;
    to.shutdown(tcp::socket::shutdown_send, ignored);
  }

  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  std::string buf_;
};

// Answers each request head; returns false to close the connection.
using handler_fn = std::function<asio::awaitable<bool>(test_conn&, std::string head)>;

// A server on 127.0.0.1 and a free port, on a thread of its own; it records every request head.
class test_server {
 public:
  explicit test_server(handler_fn h, ssl::context* tls = nullptr)
      : handler_(std::move(h)),
        tls_(tls),
        acceptor_(ctx_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(ctx_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ctx_.run(); });
  }
  ~test_server() {
    ctx_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url(std::string_view path, std::string_view host = "127.0.0.1") const {
    return std::string(tls_ ? "https://" : "http://") + std::string(host) + ":" +
           std::to_string(port()) + std::string(path);
  }
  int connections() const { return connections_.load(); }
  std::vector<std::string> heads() const {
    std::lock_guard lock(mu_);
    return heads_;
  }
  std::vector<std::string> snis() const {
    std::lock_guard lock(mu_);
    return snis_;
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(tok);
      if (ec) co_return;
      auto c = std::make_unique<test_conn>(std::move(s), tls_, connections_++);
      asio::co_spawn(ctx_, serve(std::move(c)), asio::detached);
    }
  }

  asio::awaitable<void> serve(std::unique_ptr<test_conn> c) {
    if (!co_await c->handshake()) co_return;
    if (tls_) {
      std::lock_guard lock(mu_);
      snis_.push_back(c->sni);
    }
    for (;;) {
      auto head = co_await c->read_head();
      if (!head) co_return;
      {
        std::lock_guard lock(mu_);
        heads_.push_back(*head);
      }
      const bool more = co_await handler_(*c, *head);
      ++c->request;
      if (!more) co_return;
    }
  }

  handler_fn handler_;
  ssl::context* tls_;
  asio::io_context ctx_;  // destroyed before handler_: pending handlers are dropped with it
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<std::string> heads_;  // guarded by mu_
  std::vector<std::string> snis_;   // guarded by mu_
};

std::string reply(int status, std::string_view body, std::string_view extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

std::string first_line(const std::string& head) {
  return head.substr(0, head.find("\r\n"));
}

// A handler that answers every request with 200 and `body`.
handler_fn answer(std::string body) {
  return [body](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(200, body));
  };
}

// Sets (or unsets) an environment variable for the life of the guard.
class env_guard {
 public:
  env_guard(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~env_guard() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// The proxy variables for one test: every spelling cleared, then the given ones set.
struct proxy_env_guard {
  proxy_env_guard(std::optional<std::string> http, std::optional<std::string> https,
                  std::optional<std::string> no_proxy)
      : upper_http("HTTP_PROXY", std::nullopt),
        upper_https("HTTPS_PROXY", std::nullopt),
        upper_no("NO_PROXY", std::nullopt),
        http_proxy("http_proxy", std::move(http)),
        https_proxy("https_proxy", std::move(https)),
        no("no_proxy", std::move(no_proxy)) {}
  env_guard upper_http, upper_https, upper_no, http_proxy, https_proxy, no;
};

// ---- the client side --------------------------------------------------------------------------

struct fetched {
  unsigned status = 0;
  std::string url;
  std::optional<std::uint64_t> content_length;
  http::fields headers;
  std::string body;
};

request get(std::string url) {
  request r;
  r.url = std::move(url);
  return r;
}

asio::awaitable<result<fetched>> fetch(client& c, request req) {
  auto res = co_await c.send(std::move(req));
  if (!res) co_return res.error();
  fetched f;
  f.status = res->status();
  f.url = res->url();
  f.content_length = res->content_length();
  f.headers = res->headers();
  auto body = co_await res->read_all(std::size_t{1} << 30);
  if (!body) co_return body.error();
  f.body = std::move(*body);
  co_return f;
}

class ClientTest : public ::testing::Test {
 protected:
  static client_options options() {
    client_options o;
    o.use_env_proxy = false;
    o.connect_timeout = 10s;
    o.header_timeout = 10s;
    o.idle_timeout = 10s;
    return o;
  }

  std::shared_ptr<client> make_client(const client_options& o = options()) {
    return client::create(ioc_.get_executor(), o);
  }

  // Runs `aw` on the test's io_context until it finishes.
  template <class T>
  T run(asio::awaitable<T> aw) {
    auto f = asio::co_spawn(ioc_, std::move(aw), asio::use_future);
    ioc_.restart();
    ioc_.run();
    return f.get();
  }

  result<fetched> fetch_sync(client& c, request req) { return run(fetch(c, std::move(req))); }

  asio::io_context ioc_;
};

// ---- plain HTTP -------------------------------------------------------------------------------

TEST_F(ClientTest, GetWithContentLength) {
  test_server server(answer("hello"));
  auto c = make_client();
  auto r = fetch_sync(*c, get(server.url("/x?y=1")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->content_length, std::optional<std::uint64_t>(5));
  EXPECT_EQ(r->url, server.url("/x?y=1"));
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(first_line(heads[0]), "GET /x?y=1 HTTP/1.1");
  EXPECT_THAT(heads[0], HasSubstr("Host: 127.0.0.1:" + std::to_string(server.port()) + "\r\n"));
  EXPECT_THAT(heads[0], HasSubstr("User-Agent: pantry\r\n"));
}

TEST_F(ClientTest, GetWithChunkedBody) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  });
  auto c = make_client();
  auto r = fetch_sync(*c, get(server.url("/chunked")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "hello world");
  EXPECT_EQ(r->content_length, std::nullopt);
}

TEST_F(ClientTest, InterimResponsesAreSkipped) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + reply(200, "ok"));
  });
  auto c = make_client();
  auto r = fetch_sync(*c, get(server.url("/")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "ok");
}

TEST_F(ClientTest, LargeBodyStreamsWithoutLimit) {
  constexpr std::size_t kSize = 50 * 1024 * 1024;
  constexpr std::size_t kBlock = 1024 * 1024;
  const auto pattern = [](std::size_t i) {
    return static_cast<unsigned char>((i * 7 + i / 977) & 0xff);
  };
  test_server server([&](test_conn& c, std::string) -> asio::awaitable<bool> {
    if (!co_await c.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kSize) +
                          "\r\n\r\n")) {
      co_return false;
    }
    std::string block(kBlock, '\0');
    for (std::size_t off = 0; off < kSize; off += kBlock) {
      for (std::size_t j = 0; j < kBlock; ++j)
        block[j] = static_cast<char>(pattern(off + j));
      if (!co_await c.write(block)) co_return false;
    }
    co_return true;
  });
  auto c = make_client();
  struct outcome {
    std::size_t total = 0;
    std::size_t reads = 0;
    std::optional<std::size_t> first_bad;
    std::string error;
  };
  auto o = run([&]() -> asio::awaitable<outcome> {
    outcome out;
    auto res = co_await c->send(get(server.url("/big")));
    if (!res) {
      out.error = res.error().message;
      co_return out;
    }
    std::vector<std::byte> buf(64 * 1024);
    for (;;) {
      auto n = co_await res->read_some(buf);
      if (!n) {
        out.error = n.error().message;
        co_return out;
      }
      if (*n == 0) co_return out;
      ++out.reads;
      for (std::size_t j = 0; j < *n && !out.first_bad; ++j) {
        if (static_cast<unsigned char>(buf[j]) != pattern(out.total + j)) {
          out.first_bad = out.total + j;
        }
      }
      out.total += *n;
    }
  }());
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(o.total, kSize);
  EXPECT_GT(o.reads, 1u);
  EXPECT_EQ(o.first_bad, std::nullopt);
}

TEST_F(ClientTest, KeepAliveReusesOneConnection) {
  test_server server(answer("again"));
  auto c = make_client();
  for (int i = 0; i < 3; ++i) {
    auto r = fetch_sync(*c, get(server.url("/k" + std::to_string(i))));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body, "again");
  }
  EXPECT_EQ(server.connections(), 1);
  EXPECT_EQ(server.heads().size(), 3u);
}

TEST_F(ClientTest, HeadReadsNoBodyAndKeepsTheConnection) {
  test_server server([](test_conn& c, std::string head) -> asio::awaitable<bool> {
    if (head.starts_with("HEAD ")) {
      co_return co_await c.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    }
    co_return co_await c.write(reply(200, "body"));
  });
  auto c = make_client();
  request head = get(server.url("/h"));
  head.method = http::verb::head;
  auto r = fetch_sync(*c, head);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->content_length, std::optional<std::uint64_t>(1234));
  EXPECT_EQ(r->body, "");
  auto r2 = fetch_sync(*c, get(server.url("/h")));
  ASSERT_TRUE(r2.has_value()) << r2.error().message;
  EXPECT_EQ(r2->body, "body");
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(ClientTest, ExpiredPooledConnectionsAreNotReused) {
  test_server server(answer("fresh"));
  auto o = options();
  o.pool_idle = 0ms;  // every pooled connection has expired by the next request
  auto c = make_client(o);
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, get(server.url("/")));
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }
  EXPECT_EQ(server.connections(), 2);
}

// Fetches `url` `n` times, counting bodies equal to `body` in `ok` and recording failures.
asio::awaitable<void> fetch_many(std::shared_ptr<client> c, std::string url, int n,
                                 std::string body, std::atomic<int>& ok, std::mutex& mu,
                                 std::vector<std::string>& failures) {
  for (int i = 0; i < n; ++i) {
    auto r = co_await fetch(*c, get(url));
    if (r && r->body == body) {
      ++ok;
    } else {
      std::lock_guard lock(mu);
      failures.push_back(r ? "body \"" + r->body + "\"" : r.error().message);
    }
  }
}

TEST_F(ClientTest, ConcurrentRequestsFromSeveralThreads) {
  test_server server(answer("shared"));
  asio::io_context ctx;
  std::atomic<int> ok{0};
  std::mutex mu;
  std::vector<std::string> failures;
  {
    auto c = client::create(ctx.get_executor(), options());
    for (int i = 0; i < 16; ++i) {
      asio::co_spawn(asio::make_strand(ctx),
                     fetch_many(c, server.url("/c"), 5, "shared", ok, mu, failures),
                     asio::detached);
    }
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] { ctx.run(); });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(ok.load(), 80) << ::testing::PrintToString(failures);
  EXPECT_LE(server.connections(), 16);
}

TEST_F(ClientTest, ConnectionCloseIsNotPooled) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.write(reply(200, "bye", "Connection: close\r\n"));
    co_return false;
  });
  auto c = make_client();
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, get(server.url("/")));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body, "bye");
  }
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(ClientTest, PooledConnectionClosedByServerIsRetried) {
  // The first connection answers once, then closes when the second request arrives, without
  // answering it: the client must send it again on a fresh connection.
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    if (c.index == 0 && c.request == 1) co_return false;
    co_return co_await c.write(reply(200, "fine"));
  });
  auto c = make_client();
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, get(server.url("/r")));
    ASSERT_TRUE(r.has_value()) << "request " << i << ": " << r.error().message;
    EXPECT_EQ(r->body, "fine");
  }
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(server.heads().size(), 3u);
}

TEST_F(ClientTest, PooledConnectionClosedWhileIdleIsNotUsed) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.write(reply(200, "once"));
    co_return false;  // closes without saying so
  });
  auto c = make_client();
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, get(server.url("/")));
    ASSERT_TRUE(r.has_value()) << "request " << i << ": " << r.error().message;
    EXPECT_EQ(r->body, "once");
  }
  EXPECT_EQ(server.connections(), 2);
}

TEST_F(ClientTest, PostIsNotRetriedOnADeadPooledConnection) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    if (c.request == 1) co_return false;
    co_return co_await c.write(reply(200, "ok"));
  });
  auto c = make_client();
  auto r1 = fetch_sync(*c, get(server.url("/")));
  ASSERT_TRUE(r1.has_value()) << r1.error().message;
  request post = get(server.url("/post"));
  post.method = http::verb::post;
  auto r2 = fetch_sync(*c, post);
  ASSERT_FALSE(r2.has_value()) << "status " << r2->status;
  EXPECT_TRUE(r2.error().is(errc::io_error)) << r2.error().code.message();
  EXPECT_THAT(r2.error().message, HasSubstr("POST " + server.url("/post")));
  EXPECT_THAT(r2.error().message, HasSubstr("reading the response header"));
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(ClientTest, ConnectRefusedNamesHostAndPort) {
  std::uint16_t port = 0;
  {
    asio::io_context tmp;
    tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    port = a.local_endpoint().port();
  }
  auto c = make_client();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/x";
  auto r = fetch_sync(*c, get(url));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("GET " + url));
  EXPECT_THAT(r.error().message, HasSubstr("connect 127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(r.error().message, HasSubstr("refused"));
}

TEST_F(ClientTest, HeaderTimeoutNamesThePhaseAndLimit) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.stall();
    co_return false;
  });
  auto o = options();
  o.header_timeout = 200ms;
  auto c = make_client(o);
  auto r = fetch_sync(*c, get(server.url("/slow")));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().code.message();
  EXPECT_EQ(r.error().message, "GET " + server.url("/slow") + ": no response header within 200ms");
}

TEST_F(ClientTest, IdleBodyTimeoutNamesTheBytesThatCame) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    co_await c.stall();
    co_return false;
  });
  auto o = options();
  o.idle_timeout = 200ms;
  auto c = make_client(o);
  auto r = fetch_sync(*c, get(server.url("/stall")));
  ASSERT_FALSE(r.has_value()) << "body " << r->body;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("GET " + server.url("/stall")));
  EXPECT_THAT(r.error().message, HasSubstr("no body byte within 200ms"));
  EXPECT_THAT(r.error().message, HasSubstr("after 10 of 100 bytes"));
}

TEST_F(ClientTest, TruncatedBodyIsAnError) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    co_return false;
  });
  auto c = make_client();
  auto r = fetch_sync(*c, get(server.url("/short")));
  ASSERT_FALSE(r.has_value()) << "body " << r->body;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("GET " + server.url("/short")));
  EXPECT_THAT(r.error().message, HasSubstr("ended early after 10 of 100 bytes"));
}

TEST_F(ClientTest, TruncatedChunkedBodyIsAnError) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_await c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    co_return false;
  });
  auto c = make_client();
  auto r = fetch_sync(*c, get(server.url("/short")));
  ASSERT_FALSE(r.has_value()) << "body " << r->body;
  EXPECT_THAT(r.error().message, HasSubstr("ended early after 5 bytes"));
}

TEST_F(ClientTest, ReadAllStopsAtItsLimit) {
  test_server server(answer(std::string(100, 'x')));
  auto c = make_client();
  auto r = run([&]() -> asio::awaitable<result<std::string>> {
    auto res = co_await c->send(get(server.url("/")));
    if (!res) co_return res.error();
    co_return co_await res->read_all(10);
  }());
  ASSERT_FALSE(r.has_value()) << *r;
  EXPECT_TRUE(r.error().is(errc::size_mismatch)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("limit of 10 bytes"));
}

TEST_F(ClientTest, UnsupportedUrlIsInvalidArgument) {
  auto c = make_client();
  auto r = fetch_sync(*c, get("ftp://example.com/x"));
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("ftp://example.com/x"));
}

TEST_F(ClientTest, PortOutOfRangeIsInvalidArgument) {
  auto c = make_client();
  auto r = fetch_sync(*c, get("http://127.0.0.1:99999/x"));
  ASSERT_FALSE(r.has_value());
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("\"99999\""));
}

TEST_F(ClientTest, UserInfoBecomesBasicAuthAndStaysOutOfTheUrl) {
  test_server server(answer("ok"));
  auto c = make_client();
  const std::string url = "http://user:pw@127.0.0.1:" + std::to_string(server.port()) + "/p";
  auto r = fetch_sync(*c, get(url));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->url, server.url("/p"));
  ASSERT_EQ(server.heads().size(), 1u);
  EXPECT_THAT(server.heads()[0], HasSubstr("Authorization: Basic dXNlcjpwdw==\r\n"));
}

TEST_F(ClientTest, HealthRecordsAnswersAndFailuresPerOriginWithoutUserInfo) {
  test_server server([](test_conn& conn, std::string) -> asio::awaitable<bool> {
    co_return co_await conn.write(reply(503, "down"));
  });
  std::uint16_t closed_port = 0;
  {
    asio::io_context tmp;
    tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  auto o = options();
  o.health = std::make_shared<upstream_health>();
  auto c = make_client(o);
  const std::string closed = "http://127.0.0.1:" + std::to_string(closed_port);
  const std::string open = "http://127.0.0.1:" + std::to_string(server.port());
  EXPECT_EQ(upstream_health::origin_of(
                "http://user:pw-s3cret@127.0.0.1:" + std::to_string(closed_port) + "/simple/"),
            std::optional<std::string>(closed));
  EXPECT_EQ(upstream_health::origin_of("HTTPS://PyPI.org:443/simple/"),
            std::optional<std::string>("https://pypi.org"));
  EXPECT_EQ(upstream_health::origin_of("ftp://x/"), std::nullopt);

  const auto before = upstream_health::clock::now();
  auto refused = fetch_sync(
      *c, get("http://user:pw-s3cret@127.0.0.1:" + std::to_string(closed_port) + "/simple/"));
  ASSERT_FALSE(refused.has_value());
  auto r = o.health->of(closed);
  EXPECT_FALSE(r.last_success.has_value());
  ASSERT_TRUE(r.last_failure.has_value());
  EXPECT_GE(*r.last_failure, before);
  EXPECT_THAT(r.failure, HasSubstr("refused"));
  EXPECT_THAT(r.failure, Not(HasSubstr("pw-s3cret")));

  auto down = fetch_sync(*c, get(open + "/x"));
  ASSERT_TRUE(down.has_value()) << down.error().message;
  r = o.health->of(open);
  EXPECT_FALSE(r.last_success.has_value()) << "a 503 is not an answer";
  ASSERT_TRUE(r.last_failure.has_value());
  EXPECT_EQ(r.failure, "HTTP 503 from " + open + "/x");
}

TEST_F(ClientTest, HealthCountsA404AsAnAnswer) {
  test_server server([](test_conn& conn, std::string) -> asio::awaitable<bool> {
    co_return co_await conn.write(reply(404, "no such project"));
  });
  auto o = options();
  o.health = std::make_shared<upstream_health>();
  auto c = make_client(o);
  auto r = fetch_sync(*c, get(server.url("/simple/nope/")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const auto rec = o.health->of("http://127.0.0.1:" + std::to_string(server.port()));
  EXPECT_TRUE(rec.last_success.has_value());
  EXPECT_FALSE(rec.last_failure.has_value());
}

// ---- redirects --------------------------------------------------------------------------------

TEST_F(ClientTest, RedirectToAnotherOriginDropsCredentials) {
  test_server target(answer("landed"));
  const std::string location = target.url("/final");
  test_server origin([&](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(302, "moved", "Location: " + location + "\r\n"));
  });
  auto c = make_client();
  request req = get(origin.url("/start"));
  req.headers.set(http::field::authorization, "Bearer secret");
  req.headers.set(http::field::cookie, "session=1");
  req.headers.set("X-Custom", "kept");
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "landed");
  EXPECT_EQ(r->url, location);
  ASSERT_EQ(origin.heads().size(), 1u);
  EXPECT_THAT(origin.heads()[0], HasSubstr("Authorization: Bearer secret\r\n"));
  const auto heads = target.heads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(first_line(heads[0]), "GET /final HTTP/1.1");
  EXPECT_THAT(heads[0], Not(HasSubstr("Authorization")));
  EXPECT_THAT(heads[0], Not(HasSubstr("Cookie")));
  EXPECT_THAT(heads[0], HasSubstr("X-Custom: kept\r\n"));
}

TEST_F(ClientTest, SameOriginRedirectKeepsCredentialsAndConnection) {
  test_server server([](test_conn& c, std::string head) -> asio::awaitable<bool> {
    if (head.starts_with("GET /start ")) {
      co_return co_await c.write(reply(301, "", "Location: next?a=b\r\n"));
    }
    co_return co_await c.write(reply(200, "here"));
  });
  auto c = make_client();
  request req = get(server.url("/start"));
  req.headers.set(http::field::authorization, "Bearer secret");
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "here");
  EXPECT_EQ(r->url, server.url("/next?a=b"));
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(first_line(heads[1]), "GET /next?a=b HTTP/1.1");
  EXPECT_THAT(heads[1], HasSubstr("Authorization: Bearer secret\r\n"));
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(ClientTest, RedirectWithoutAuthorizationEvenToTheSameOrigin) {
  test_server server([](test_conn& c, std::string head) -> asio::awaitable<bool> {
    if (head.starts_with("GET /v2/r/blobs/x ")) {
      co_return co_await c.write(reply(307, "", "Location: /cdn/x?sig=1\r\n"));
    }
    co_return co_await c.write(reply(200, "blob"));
  });
  auto c = make_client();
  request req = get(server.url("/v2/r/blobs/x"));
  req.headers.set(http::field::authorization, "Bearer registry-token");
  req.authorization_on_redirect = false;
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "blob");
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_THAT(heads[0], HasSubstr("Authorization: Bearer registry-token\r\n"));
  EXPECT_EQ(first_line(heads[1]), "GET /cdn/x?sig=1 HTTP/1.1");
  EXPECT_THAT(heads[1], Not(HasSubstr("Authorization"))) << heads[1];
}

TEST_F(ClientTest, SeeOtherTurnsPostIntoGet) {
  test_server server([](test_conn& c, std::string head) -> asio::awaitable<bool> {
    if (head.starts_with("POST ")) {
      co_return co_await c.write(reply(303, "", "Location: /result\r\n"));
    }
    co_return co_await c.write(reply(200, "result"));
  });
  auto c = make_client();
  request req = get(server.url("/form"));
  req.method = http::verb::post;
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "result");
  const auto heads = server.heads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(first_line(heads[1]), "GET /result HTTP/1.1");
}

TEST_F(ClientTest, RedirectLoopIsAnError) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(302, "", "Location: /loop\r\n"));
  });
  auto o = options();
  o.max_redirects = 3;
  auto c = make_client(o);
  auto r = fetch_sync(*c, get(server.url("/loop")));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_THAT(r.error().message, HasSubstr("GET " + server.url("/loop")));
  EXPECT_THAT(r.error().message, HasSubstr("more than 3 redirects"));
  EXPECT_EQ(server.heads().size(), 4u);
}

TEST_F(ClientTest, RedirectsAreReturnedWhenNotFollowed) {
  test_server server([](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(307, "", "Location: /elsewhere\r\n"));
  });
  auto c = make_client();
  request req = get(server.url("/here"));
  req.follow_redirects = false;
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->status, 307u);
  EXPECT_EQ(r->headers[http::field::location], "/elsewhere");
}

// ---- proxies ----------------------------------------------------------------------------------

TEST_F(ClientTest, HttpProxyGetsTheAbsoluteUrl) {
  test_server proxy(answer("via proxy"));
  proxy_env_guard env("http://user:pw@127.0.0.1:" + std::to_string(proxy.port()), std::nullopt,
                      std::nullopt);
  auto o = options();
  o.use_env_proxy = true;
  auto c = make_client(o);
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, get("http://origin.invalid:8080/pkg?q=" + std::to_string(i)));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body, "via proxy");
  }
  const auto heads = proxy.heads();
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(first_line(heads[0]), "GET http://origin.invalid:8080/pkg?q=0 HTTP/1.1");
  EXPECT_THAT(heads[0], HasSubstr("Host: origin.invalid:8080\r\n"));
  EXPECT_THAT(heads[0], HasSubstr("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"));
  EXPECT_EQ(proxy.connections(), 1);
}

TEST_F(ClientTest, NoProxyGoesDirect) {
  test_server proxy(answer("via proxy"));
  test_server origin(answer("direct"));
  proxy_env_guard env("http://127.0.0.1:" + std::to_string(proxy.port()), std::nullopt,
                      "example.com, 127.0.0.1");
  auto o = options();
  o.use_env_proxy = true;
  auto c = make_client(o);
  auto r = fetch_sync(*c, get(origin.url("/d")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "direct");
  EXPECT_EQ(proxy.connections(), 0);
}

TEST_F(ClientTest, EnvironmentIsIgnoredWhenNotAsked) {
  test_server proxy(answer("via proxy"));
  test_server origin(answer("direct"));
  proxy_env_guard env("http://127.0.0.1:" + std::to_string(proxy.port()), std::nullopt,
                      std::nullopt);
  auto c = make_client();  // use_env_proxy = false
  auto r = fetch_sync(*c, get(origin.url("/d")));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "direct");
  EXPECT_EQ(proxy.connections(), 0);
}

TEST_F(ClientTest, UnusableProxySettingFailsTheRequest) {
  proxy_env_guard env("socks5://127.0.0.1:1080", std::nullopt, std::nullopt);
  auto o = options();
  o.use_env_proxy = true;
  auto c = make_client(o);
  auto r = fetch_sync(*c, get("http://origin.invalid/x"));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("http_proxy=\"socks5://127.0.0.1:1080\""));
}

TEST(NoProxyTest, Matches) {
  using detail::no_proxy_matches;
  EXPECT_TRUE(no_proxy_matches("*", "anything.example", 80));
  EXPECT_TRUE(no_proxy_matches("example.com", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches("example.com", "pypi.example.com", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "pypi.example.com", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com", "badexample.com", 443));
  EXPECT_TRUE(no_proxy_matches("a.test, EXAMPLE.com", "Pypi.Example.Com", 443));
  EXPECT_TRUE(no_proxy_matches("a.test example.com", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches("example.com:8080", "example.com", 8080));
  EXPECT_FALSE(no_proxy_matches("example.com:8080", "example.com", 80));
  EXPECT_TRUE(no_proxy_matches("10.1.2.3", "10.1.2.3", 80));
  EXPECT_FALSE(no_proxy_matches("10.1.2.3", "10.1.2.30", 80));
  EXPECT_TRUE(no_proxy_matches("::1", "::1", 80));
  EXPECT_TRUE(no_proxy_matches("[::1]", "[::1]", 80));
  EXPECT_TRUE(no_proxy_matches("[::1]:8080", "::1", 8080));
  EXPECT_FALSE(no_proxy_matches("[::1]:8080", "::1", 80));
  EXPECT_FALSE(no_proxy_matches("", "localhost", 80));
  EXPECT_FALSE(no_proxy_matches("example.com", "localhost", 80));  // loopback is not special
  EXPECT_FALSE(no_proxy_matches(",,", "example.com", 80));
}

TEST(ProxyUrlTest, Parses) {
  auto a = detail::parse_proxy_url("proxy.corp:3128");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->host, "proxy.corp");
  EXPECT_EQ(a->port, 3128);
  EXPECT_EQ(a->authorization, "");
  auto b = detail::parse_proxy_url("http://u%40x:p@[::1]:8080/");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 8080);
  EXPECT_EQ(b->str(), "[::1]:8080");
  EXPECT_EQ(b->authorization, "Basic dUB4OnA=");  // "u@x:p"
  auto c = detail::parse_proxy_url("http://proxy");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->port, 80);
  auto d = detail::parse_proxy_url("https://proxy:443");
  ASSERT_FALSE(d.has_value());
  EXPECT_THAT(d.error().message, HasSubstr("\"https\" is not supported"));
  EXPECT_FALSE(detail::parse_proxy_url("http://proxy:99999").has_value());
  EXPECT_FALSE(detail::parse_proxy_url("http://proxy:80/path").has_value());
}

// ---- TLS --------------------------------------------------------------------------------------

// A CA and two server certificates made with the openssl CLI: "good" for localhost and
// 127.0.0.1, "wrong" for wrong.example only.
class ClientTlsTest : public ClientTest {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/pantry-client-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script = "set -e; cd '" + dir_.string() + "'; exec >openssl.log 2>&1\n";
    script += "openssl req -x509 " + ec +
              " -keyout ca.key -out ca.pem -days 2 -subj /CN=pantry-test-ca"
              " -addext basicConstraints=critical,CA:TRUE"
              " -addext keyUsage=critical,keyCertSign,cRLSign\n";
    for (const auto& [name, san] :
         {std::pair<std::string, std::string>{"good", "DNS:localhost,IP:127.0.0.1"},
          {"wrong", "DNS:wrong.example"}}) {
      script += "openssl req " + ec + " -keyout " + name + ".key -out " + name +
                ".csr -subj /CN=" + name + "\n";
      script += "printf 'basicConstraints=CA:FALSE\\nsubjectAltName=" + san +
                "\\nextendedKeyUsage=serverAuth\\n' > " + name + ".ext\n";
      script += "openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial" +
                " -out " + name + ".pem -days 2 -extfile " + name + ".ext\n";
    }
    std::ofstream(dir_ / "make.sh") << script;
    const int rc = std::system(("sh '" + (dir_ / "make.sh").string() + "'").c_str());
    ASSERT_EQ(rc, 0) << "openssl failed; see " << (dir_ / "openssl.log");
  }

  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static std::unique_ptr<ssl::context> server_context(const std::string& name) {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain_file((dir_ / (name + ".pem")).string());
    ctx->use_private_key_file((dir_ / (name + ".key")).string(), ssl::context::pem);
    return ctx;
  }

  static request tls_get(std::string url) {
    request r = get(std::move(url));
    r.tls.ca_file = (dir_ / "ca.pem").string();
    return r;
  }

  static inline std::filesystem::path dir_;
};

TEST_F(ClientTlsTest, CaFileVerifiesTheServer) {
  auto ctx = server_context("good");
  test_server server(answer("secure"), ctx.get());
  auto c = make_client();
  for (std::string host : {"localhost", "127.0.0.1"}) {
    auto r = fetch_sync(*c, tls_get(server.url("/s", host)));
    ASSERT_TRUE(r.has_value()) << host << ": " << r.error().message;
    EXPECT_EQ(r->body, "secure");
    EXPECT_EQ(r->url, server.url("/s", host));
  }
  // SNI carries the name, never an address.
  EXPECT_EQ(server.snis(), (std::vector<std::string>{"localhost", ""}));
}

TEST_F(ClientTlsTest, KeepAliveReusesOneConnection) {
  auto ctx = server_context("good");
  test_server server(answer("again"), ctx.get());
  auto c = make_client();
  for (int i = 0; i < 3; ++i) {
    auto r = fetch_sync(*c, tls_get(server.url("/k", "localhost")));
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(ClientTlsTest, SystemStoreRejectsAnUnknownCa) {
  auto ctx = server_context("good");
  test_server server(answer("secure"), ctx.get());
  auto c = make_client();
  const std::string url = server.url("/s", "localhost");
  auto r = fetch_sync(*c, get(url));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().code.message();
  EXPECT_THAT(
      r.error().message,
      HasSubstr("GET " + url + ": TLS certificate verify failed for localhost:" +
                std::to_string(server.port()) + " (unable to get local issuer certificate)"));
}

TEST_F(ClientTlsTest, WrongHostNameIsRejected) {
  auto ctx = server_context("wrong");
  test_server server(answer("secure"), ctx.get());
  auto c = make_client();
  auto r = fetch_sync(*c, tls_get(server.url("/s", "localhost")));
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_THAT(r.error().message, HasSubstr("TLS certificate verify failed for localhost:"));
  EXPECT_THAT(r.error().message, HasSubstr("(hostname mismatch)"));
  auto r2 = fetch_sync(*c, tls_get(server.url("/s", "127.0.0.1")));
  ASSERT_FALSE(r2.has_value()) << "status " << r2->status;
  EXPECT_THAT(r2.error().message, HasSubstr("(IP address mismatch)"));
}

TEST_F(ClientTlsTest, VerificationCanBeTurnedOff) {
  auto ctx = server_context("wrong");
  test_server server(answer("trusting"), ctx.get());
  auto c = make_client();
  request req = get(server.url("/s", "localhost"));
  req.tls.verify = false;
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "trusting");
}

TEST_F(ClientTlsTest, MissingCaFileIsAConfigError) {
  auto ctx = server_context("good");
  test_server server(answer("x"), ctx.get());
  auto c = make_client();
  request req = get(server.url("/x", "localhost"));
  req.tls.ca_file = (dir_ / "missing.pem").string();
  auto r = fetch_sync(*c, req);
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().code.message();
  EXPECT_THAT(r.error().message, HasSubstr("missing.pem"));
}

TEST_F(ClientTlsTest, RedirectToAnotherHostKeepsTheCaFile) {
  auto ctx = server_context("good");
  test_server secure(answer("secure"), ctx.get());
  const std::string location = secure.url("/s", "localhost");
  test_server plain([&](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(308, "", "Location: " + location + "\r\n"));
  });
  auto c = make_client();
  request req = tls_get(plain.url("/start"));
  auto r = fetch_sync(*c, req);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->body, "secure");
  EXPECT_EQ(r->url, location);
}

TEST_F(ClientTlsTest, RedirectToAnotherHostAlwaysVerifies) {
  auto ctx = server_context("wrong");
  test_server secure(answer("secure"), ctx.get());
  const std::string location = secure.url("/s", "localhost");
  test_server plain([&](test_conn& c, std::string) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(302, "", "Location: " + location + "\r\n"));
  });
  auto c = make_client();
  request req = get(plain.url("/start"));
  req.tls.verify = false;  // configured for 127.0.0.1, not for where it redirects
  auto r = fetch_sync(*c, req);
  ASSERT_FALSE(r.has_value()) << "status " << r->status;
  EXPECT_THAT(r.error().message, HasSubstr("TLS certificate verify failed for localhost:"));
}

TEST_F(ClientTlsTest, HttpsThroughAConnectProxy) {
  auto ctx = server_context("good");
  test_server server(answer("tunnelled"), ctx.get());
  test_server proxy([](test_conn& c, std::string head) -> asio::awaitable<bool> {
    // "CONNECT localhost:PORT HTTP/1.1"
    const auto colon = head.find(':');
    const auto port = static_cast<std::uint16_t>(std::stoi(head.substr(colon + 1)));
    co_await c.tunnel_to(port);
    co_return false;
  });
  proxy_env_guard env(std::nullopt, "http://127.0.0.1:" + std::to_string(proxy.port()),
                      std::nullopt);
  auto o = options();
  o.use_env_proxy = true;
  auto c = make_client(o);
  for (int i = 0; i < 2; ++i) {
    auto r = fetch_sync(*c, tls_get(server.url("/t", "localhost")));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->body, "tunnelled");
  }
  const auto heads = proxy.heads();
  ASSERT_EQ(heads.size(), 1u);  // the tunnel is pooled like any TLS connection
  EXPECT_EQ(first_line(heads[0]),
            "CONNECT localhost:" + std::to_string(server.port()) + " HTTP/1.1");
  EXPECT_EQ(server.snis(), std::vector<std::string>{"localhost"});
  EXPECT_EQ(server.heads().size(), 2u);
}

}  // namespace
}  // namespace pantry::proxy
