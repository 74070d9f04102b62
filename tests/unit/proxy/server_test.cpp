// The HTTP server, started on 127.0.0.1 port 0 and spoken to with blocking sockets.

#include "pantry/proxy/server.h"
#include "pantry/cache/store.h"
#include "pantry/proxy/handover.h"
#include "unit/log_capture.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

namespace pantry::proxy {
namespace {

namespace beast = boost::beast;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string pattern(std::size_t n, std::uint64_t seed) {
  std::string out(n, '\0');
  std::mt19937_64 gen(seed);
  for (auto& c : out)
    c = static_cast<char>(gen());
  return out;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> reply_text(exchange& ex, std::string body,
                                 http::status status = http::status::ok) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "text/plain");
  res.body() = std::move(body);
  co_await ex.respond(std::move(res));
}

// A server running on two threads until the object goes.
class running_server {
 public:
  explicit running_server(std::function<void(server&)> setup, server_options opt = {}) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.threads = 2;
    auto r = server::create(opt, metrics);
    if (!r) throw std::runtime_error(r.error().message);
    srv = std::move(*r);
    setup(*srv);
    thread_ = std::thread([this] { srv->run(); });
  }
  ~running_server() { stop(); }
  // Stops the server and waits until run() has returned.
  void stop() {
    if (!thread_.joinable()) return;
    srv->stop();
    thread_.join();
  }
  std::uint16_t port() const { return srv->port(); }

  std::shared_ptr<metrics_registry> metrics = std::make_shared<metrics_registry>();
  std::unique_ptr<server> srv;

 private:
  std::thread thread_;
};

// A blocking client socket, usable as a Beast sync stream. Every receive gives up after 30 s so
// that a broken server fails a test instead of hanging it.
class test_client {
 public:
  explicit test_client(std::uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    timeval tv{30, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect_errno_ =
        ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  }
  ~test_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  test_client(const test_client&) = delete;
  test_client& operator=(const test_client&) = delete;

  int connect_errno() const { return connect_errno_; }

  template <class Buffers>
  std::size_t read_some(const Buffers& buffers, error_code& ec) {
    ec = {};
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
         ++it) {
      asio::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      return recv(b.data(), b.size(), ec);
    }
    return 0;
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers) {
    error_code ec;
    std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers, error_code& ec) {
    ec = {};
    std::size_t total = 0;
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
         ++it) {
      asio::const_buffer b = *it;
      send(std::string_view(static_cast<const char*>(b.data()), b.size()));
      total += b.size();
    }
    return total;
  }
  template <class Buffers>
  std::size_t write_some(const Buffers& buffers) {
    error_code ec;
    return write_some(buffers, ec);
  }

  // One recv(): bytes read, 0 at EOF; on failure `ec` holds errno.
  std::size_t recv(void* data, std::size_t size, error_code& ec) {
    ssize_t n = ::recv(fd_, data, size, 0);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
    } else {
      ec = error_code(errno, boost::system::system_category());
    }
    return 0;
  }

  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) throw std::runtime_error("send: " + std::string(std::strerror(errno)));
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  // Reads one response; for a HEAD request the parser expects no body.
  http::response<http::string_body> read_response(bool head = false) {
    error_code ec;
    http::response_parser<http::string_body> p;
    p.body_limit(boost::none);
    p.skip(head);
    http::read(*this, buffer, p, ec);
    if (ec) throw std::runtime_error("reading a response failed: " + ec.message());
    return p.release();
  }

  http::response<http::string_body> get(std::string_view target, std::string_view extra = {}) {
    send(std::string("GET ") + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
         std::string(extra) + "\r\n");
    return read_response();
  }

  // Reads until the peer closes; returns the error that ended it (eof for a clean close) and
  // appends what came before to `out`.
  error_code read_to_end(std::string* out = nullptr) {
    if (out) out->append(beast::buffers_to_string(buffer.data()));
    buffer.clear();
    char buf[16384];
    for (;;) {
      error_code ec;
      std::size_t n = recv(buf, sizeof buf, ec);
      if (ec) return ec;
      if (out) out->append(buf, n);
    }
  }

  beast::flat_buffer buffer;

 private:
  int fd_ = -1;
  int connect_errno_ = 0;
};

std::string make_request(std::string_view method, std::string_view target,
                         std::string_view extra = {}) {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
         std::string(extra) + "\r\n";
}

TEST(ServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  running_server s([](server& srv) {
    srv.route("/echo/", [](exchange& ex) -> asio::awaitable<void> {
      co_await reply_text(ex, std::string(ex.request().target()));
    });
  });
  test_client c(s.port());
  auto r1 = c.get("/echo/one");
  EXPECT_EQ(r1.result_int(), 200u);
  EXPECT_EQ(r1.body(), "/echo/one");
  EXPECT_TRUE(r1.keep_alive());
  auto r2 = c.get("/echo/two?x=1");
  EXPECT_EQ(r2.result_int(), 200u);
  EXPECT_EQ(r2.body(), "/echo/two?x=1");
}

TEST(ServerTest, AccessLogTurnsOnAndOffOnALiveConnectionWhateverTheLogLevel) {
  test_util::log_capture log;
  spdlog::set_level(spdlog::level::warn);  // hides pantry's own info lines, not the access log
  server_options opt;
  opt.access_log = false;
  running_server s([](server&) {}, opt);
  // One connection throughout: an exchange is logged (or not) after its response is written and
  // before the next request on it is read. So the request just before a switch may end on either
  // side of it (n=1, n=3 are not asserted); the one before that (n=0), and each request sent after
  // a switch until the next one, end on the side they were sent on.
  test_client c(s.port());
  EXPECT_EQ(c.get("/healthz?n=0").result_int(), 200u);
  EXPECT_EQ(c.get("/healthz?n=1").result_int(), 200u);
  s.srv->set_access_log(true);
  EXPECT_EQ(c.get("/healthz?n=2").result_int(), 200u);
  EXPECT_EQ(c.get("/healthz?n=3").result_int(), 200u);
  s.srv->set_access_log(false);
  EXPECT_EQ(c.get("/healthz?n=4").result_int(), 200u);
  EXPECT_EQ(c.get("/healthz?n=5").result_int(), 200u);
  s.stop();  // every exchange has ended
  EXPECT_EQ(log.count("GET /healthz?n=0 "), 0u) << log.dump();
  EXPECT_EQ(log.count("GET /healthz?n=2 200 "), 1u) << log.dump();
  EXPECT_EQ(log.count("GET /healthz?n=4 "), 0u) << log.dump();
  EXPECT_EQ(log.count("GET /healthz?n=5 "), 0u) << log.dump();
  for (const auto& line : log.lines()) {
    if (line.text.find("GET /healthz") != std::string::npos) {
      EXPECT_EQ(line.level, spdlog::level::info) << line.text;
    }
  }
}

TEST(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  running_server s([](server& srv) {
    srv.route("/echo/", [](exchange& ex) -> asio::awaitable<void> {
      co_await reply_text(ex, std::string(ex.request().target()));
    });
  });
  test_client c(s.port());
  c.send(make_request("GET", "/echo/1") + make_request("GET", "/echo/2") +
         make_request("GET", "/echo/3"));
  EXPECT_EQ(c.read_response().body(), "/echo/1");
  EXPECT_EQ(c.read_response().body(), "/echo/2");
  EXPECT_EQ(c.read_response().body(), "/echo/3");
}

TEST(ServerTest, LongestPrefixWins) {
  running_server s([](server& srv) {
    srv.route("/", [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "root"); });
    srv.route("/a/b/",
              [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "ab"); });
    srv.route("/a/", [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "a"); });
  });
  test_client c(s.port());
  EXPECT_EQ(c.get("/").body(), "root");
  EXPECT_EQ(c.get("/a/x").body(), "a");
  EXPECT_EQ(c.get("/a/b/c").body(), "ab");
  EXPECT_EQ(c.get("/a/bc").body(), "a");
  EXPECT_EQ(c.get("/?q=/a/b/").body(), "root");
  EXPECT_EQ(c.get("/healthz").body(), "ok");
}

TEST(ServerTest, RootPrefixTakesOnlyTheRootSoUnknownPathsStill404) {
  running_server s([](server& srv) {
    srv.route("/", [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "root"); });
  });
  test_client c(s.port());
  EXPECT_EQ(c.get("/?x=1").body(), "root");
  auto r = c.get("/nope/x");
  EXPECT_EQ(r.result_int(), 404u) << r.body();
  EXPECT_THAT(r.body(), HasSubstr("no route for path /nope/x"));
  EXPECT_EQ(c.get("/a").result_int(), 404u);
}

TEST(ServerTest, UnknownPathIs404NamingThePath) {
  running_server s([](server& srv) {
    srv.route("/known/",
              [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "k"); });
  });
  test_client c(s.port());
  auto r = c.get("/nope/x?y=1");
  EXPECT_EQ(r.result_int(), 404u);
  EXPECT_THAT(r.body(), HasSubstr("/nope/x"));
  EXPECT_THAT(std::string(r[http::field::content_type]), StartsWith("text/plain"));
  EXPECT_EQ(c.get("/known/1").body(), "k") << "the connection stays usable after a 404";
}

TEST(ServerTest, HealthzSaysOk) {
  running_server s([](server&) {});
  test_client c(s.port());
  auto r = c.get("/healthz");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r.body(), "ok");
}

TEST(ServerTest, HeadSendsTheHeaderOnly) {
  running_server s([](server& srv) {
    srv.route("/whole", [](exchange& ex) -> asio::awaitable<void> {
      co_await reply_text(ex, "hello world");
    });
    srv.route("/length", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, 5);
      co_await ex.write(bytes_of("hello"));
      co_await ex.end();
    });
    srv.route("/chunked", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, std::nullopt);
      co_await ex.write(bytes_of("hello"));
      co_await ex.end();
    });
  });
  test_client c(s.port());
  c.send(make_request("HEAD", "/whole"));
  auto r1 = c.read_response(true);
  EXPECT_EQ(r1[http::field::content_length], "11");
  c.send(make_request("HEAD", "/length"));
  auto r2 = c.read_response(true);
  EXPECT_EQ(r2[http::field::content_length], "5");
  c.send(make_request("HEAD", "/chunked"));
  auto r3 = c.read_response(true);
  EXPECT_EQ(r3[http::field::transfer_encoding], "chunked");
  // Had any body byte followed a HEAD response, this response would not parse as itself.
  auto r4 = c.get("/whole");
  EXPECT_EQ(r4.body(), "hello world");
  EXPECT_EQ(c.buffer.size(), 0u) << beast::buffers_to_string(c.buffer.data());
}

TEST(ServerTest, StreamsABodyWithContentLength) {
  const std::string body = pattern(300'000, 1);
  running_server s([&](server& srv) {
    srv.route("/s", [&](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      h.set(http::field::content_type, "application/octet-stream");
      co_await ex.begin(h, body.size());
      for (std::size_t i = 0; i < body.size(); i += 100'000) {
        co_await ex.write(bytes_of(std::string_view(body).substr(i, 100'000)));
      }
      co_await ex.end();
    });
  });
  test_client c(s.port());
  auto r = c.get("/s");
  EXPECT_EQ(r[http::field::content_length], std::to_string(body.size()));
  EXPECT_FALSE(r.chunked());
  EXPECT_EQ(r.body().size(), body.size());
  EXPECT_TRUE(r.body() == body) << "body differs";
  EXPECT_EQ(c.get("/s").body().size(), body.size()) << "keep-alive after a streamed body";
}

TEST(ServerTest, StreamsAChunkedBody) {
  const std::string body = pattern(250'000, 2);
  running_server s([&](server& srv) {
    srv.route("/c", [&](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, std::nullopt);
      co_await ex.write({});  // sends the header at once; never a last chunk
      for (std::size_t i = 0; i < body.size(); i += 70'000) {
        co_await ex.write(bytes_of(std::string_view(body).substr(i, 70'000)));
      }
      co_await ex.end();
    });
  });
  test_client c(s.port());
  auto r = c.get("/c");
  EXPECT_TRUE(r.chunked());
  EXPECT_FALSE(r.has_content_length());
  EXPECT_EQ(r.body().size(), body.size());
  EXPECT_TRUE(r.body() == body) << "body differs";
  EXPECT_EQ(c.get("/c").body().size(), body.size()) << "keep-alive after a chunked body";
}

TEST(ServerTest, Http10ClientGetsABodyEndedByClose) {
  running_server s([](server& srv) {
    srv.route("/c", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, std::nullopt);
      co_await ex.write(bytes_of("abc"));
      co_await ex.write(bytes_of("def"));
      co_await ex.end();
    });
  });
  test_client c(s.port());
  c.send("GET /c HTTP/1.0\r\n\r\n");
  std::string raw;
  EXPECT_EQ(c.read_to_end(&raw), asio::error::eof);
  EXPECT_THAT(raw, StartsWith("HTTP/1.0 200 OK\r\n"));
  EXPECT_THAT(raw, ::testing::EndsWith("\r\n\r\nabcdef"));
  EXPECT_THAT(raw, ::testing::Not(HasSubstr("chunked")));
}

TEST(ServerTest, RepeatedHeaderLinesAreSeparateValues) {
  running_server s([](server& srv) {
    srv.route("/h", [](exchange& ex) -> asio::awaitable<void> {
      std::string joined;
      for (auto v : ex.header_values(http::field::accept)) {
        if (!joined.empty()) joined += '|';
        joined += v;
      }
      // Built before co_await: gcc 12 mishandles temporaries of a conditional inside co_await.
      std::string from = ex.peer().starts_with("127.0.0.1:") ? "ok" : ex.peer();
      co_await reply_text(ex, joined + " from " + from);
    });
  });
  test_client c(s.port());
  auto r = c.get("/h",
                 "Accept: application/vnd.oci.image.index.v1+json\r\n"
                 "Accept: application/vnd.docker.distribution.manifest.v2+json\r\n"
                 "Accept: a/b, c/d\r\n");
  EXPECT_EQ(r.body(),
            "application/vnd.oci.image.index.v1+json|"
            "application/vnd.docker.distribution.manifest.v2+json|a/b, c/d from ok");
}

// Reads the whole request body in pieces and answers "<size> <sha256>".
asio::awaitable<void> digest_body(exchange& ex) {
  std::vector<std::byte> buf(64 * 1024);
  cache::hasher h;
  std::uint64_t total = 0;
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) {
      co_await reply_text(ex, n.error().message, http::status::bad_request);
      co_return;
    }
    if (*n == 0) break;
    h.update(std::span(buf.data(), *n));
    total += *n;
  }
  co_await reply_text(ex, std::to_string(total) + " " + h.finish().str());
}

TEST(ServerTest, StreamsA20MBRequestBodyWithNoLimit) {
  const std::string body = pattern(20 << 20, 3);
  running_server s([](server& srv) { srv.route("/upload", digest_body); });
  test_client c(s.port());
  c.send(make_request("PUT", "/upload", "Content-Length: " + std::to_string(body.size()) + "\r\n"));
  for (std::size_t i = 0; i < body.size(); i += 1 << 20) {
    c.send(std::string_view(body).substr(i, 1 << 20));
  }
  auto r = c.read_response();
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(r.body(), std::to_string(body.size()) + " " + cache::digest::of(body).str());
}

TEST(ServerTest, StreamsAChunkedRequestBody) {
  const std::string body = pattern(3 << 20, 4);
  running_server s([](server& srv) { srv.route("/upload", digest_body); });
  test_client c(s.port());
  c.send(make_request("POST", "/upload", "Transfer-Encoding: chunked\r\n"));
  for (std::size_t i = 0; i < body.size(); i += 300'000) {
    auto piece = std::string_view(body).substr(i, 300'000);
    char line[32];
    std::snprintf(line, sizeof line, "%zx\r\n", piece.size());
    c.send(line);
    c.send(piece);
    c.send("\r\n");
  }
  c.send("0\r\n\r\n");
  auto r = c.read_response();
  EXPECT_EQ(r.body(), std::to_string(body.size()) + " " + cache::digest::of(body).str());
}

TEST(ServerTest, ExpectContinueGetsA100BeforeTheBody) {
  running_server s([](server& srv) { srv.route("/upload", digest_body); });
  test_client c(s.port());
  c.send(make_request("PUT", "/upload", "Content-Length: 5\r\nExpect: 100-continue\r\n"));
  char buf[64];
  error_code ec;
  std::string interim;
  while (interim.find("\r\n\r\n") == std::string::npos && !ec) {
    std::size_t n = c.recv(buf, sizeof buf, ec);
    interim.append(buf, n);
  }
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("hello");
  EXPECT_EQ(c.read_response().body(), "5 " + cache::digest::of(std::string("hello")).str());
}

TEST(ServerTest, UnreadRequestBodyIsDroppedAndTheConnectionKept) {
  running_server s([](server& srv) {
    srv.route("/ignore",
              [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "ignored"); });
  });
  test_client c(s.port());
  const std::string body = pattern(100'000, 5);
  c.send(make_request("POST", "/ignore", "Content-Length: 100000\r\n") + body);
  auto r1 = c.read_response();
  EXPECT_TRUE(r1.keep_alive());
  EXPECT_EQ(c.get("/ignore").body(), "ignored");
}

TEST(ServerTest, AcceptsA60KiBHeader) {
  running_server s([](server& srv) {
    srv.route("/big", [](exchange& ex) -> asio::awaitable<void> {
      co_await reply_text(ex, std::to_string(ex.request()["X-Big"].size()));
    });
  });
  test_client c(s.port());
  auto r = c.get("/big", "X-Big: " + std::string(60 * 1024, 'a') + "\r\n");
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(r.body(), std::to_string(60 * 1024));
}

TEST(ServerTest, RejectsA70KiBHeaderWith431) {
  running_server s([](server& srv) {
    srv.route("/big", [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "no"); });
  });
  test_client c(s.port());
  c.send(make_request("GET", "/big", "X-Big: " + std::string(70 * 1024, 'a') + "\r\n"));
  auto r = c.read_response();
  EXPECT_EQ(r.result_int(), 431u) << r.body();
  EXPECT_THAT(r.body(), HasSubstr("header too large"));
  EXPECT_FALSE(r.keep_alive());
  EXPECT_EQ(c.read_to_end(), asio::error::eof);
}

TEST(ServerTest, MalformedRequestGets400ThenClose) {
  running_server s([](server&) {});
  {
    test_client c(s.port());
    c.send("GET /x HTTP/1.1\r\nHost: test\r\nBad Header Line\r\n\r\n");
    auto r = c.read_response();
    EXPECT_EQ(r.result_int(), 400u) << r.body();
    EXPECT_THAT(r.body(), StartsWith("malformed request: "));
    EXPECT_EQ(c.read_to_end(), asio::error::eof);
  }
  {
    test_client c(s.port());
    c.send("\x01\x02garbage\r\n\r\n");
    auto r = c.read_response();
    EXPECT_EQ(r.result_int(), 400u) << r.body();
    EXPECT_EQ(c.read_to_end(), asio::error::eof);
  }
  EXPECT_EQ(
      s.metrics->counter("pantry_http_requests_total", {{"route", "malformed"}, {"status", "400"}}),
      2u);
}

TEST(ServerTest, IdleTimeoutClosesTheConnection) {
  server_options opt;
  opt.idle_timeout = 100ms;
  running_server s([](server&) {}, opt);
  test_client c(s.port());
  EXPECT_EQ(c.get("/healthz").body(), "ok");
  EXPECT_EQ(c.read_to_end(), asio::error::eof) << "the server closes an idle connection";
}

TEST(ServerTest, HeaderTimeoutClosesAHalfSentRequest) {
  server_options opt;
  opt.header_timeout = 100ms;
  running_server s([](server&) {}, opt);
  test_client c(s.port());
  c.send("GET /healthz HTTP/1.1\r\nHost: te");
  EXPECT_EQ(c.read_to_end(), asio::error::eof);
}

TEST(ServerTest, HandlerWithoutResponseGets500) {
  running_server s([](server& srv) {
    srv.route("/lazy", [](exchange&) -> asio::awaitable<void> { co_return; });
  });
  test_client c(s.port());
  auto r = c.get("/lazy");
  EXPECT_EQ(r.result_int(), 500u);
  EXPECT_THAT(r.body(), HasSubstr("/lazy"));
}

TEST(ServerTest, ResetGivesTheClientAConnectionReset) {
  running_server s([](server& srv) {
    srv.route("/reset", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, 1000);
      co_await ex.write(bytes_of("0123456789"));
      ex.reset();
    });
  });
  test_client c(s.port());
  c.send(make_request("GET", "/reset"));
  std::string got;
  EXPECT_EQ(c.read_to_end(&got), boost::system::errc::connection_reset) << "after: " << got;
}

TEST(ServerTest, HandlerExceptionResetsTheConnection) {
  running_server s([](server& srv) {
    srv.route("/throw", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, 100);
      co_await ex.write(bytes_of("partial"));
      throw std::runtime_error("handler bug");
    });
  });
  test_client c(s.port());
  c.send(make_request("GET", "/throw"));
  std::string got;
  EXPECT_EQ(c.read_to_end(&got), boost::system::errc::connection_reset) << "after: " << got;
}

TEST(ServerTest, ShortBodyAtEndResetsTheConnection) {
  running_server s([](server& srv) {
    srv.route("/short", [](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, 100);
      co_await ex.write(bytes_of("only this"));
      co_await ex.end();
    });
  });
  test_client c(s.port());
  c.send(make_request("GET", "/short"));
  EXPECT_EQ(c.read_to_end(), boost::system::errc::connection_reset);
}

TEST(ServerTest, MetricsShowRequestCounters) {
  running_server s([](server& srv) {
    srv.route("/a/", [](exchange& ex) -> asio::awaitable<void> {
      ex.set_outcome(cache_outcome::hit);
      co_await reply_text(ex, "12345");
    });
    srv.route("/b/", [](exchange& ex) -> asio::awaitable<void> {
      ex.set_route("pypi_simple");
      ex.set_outcome(cache_outcome::miss);
      co_await reply_text(ex, "xy");
    });
  });
  // One connection: each exchange is counted before the next request is read.
  test_client c(s.port());
  c.get("/a/1");
  c.get("/a/2");
  c.get("/b/1");
  c.get("/nothing");
  auto r = c.get("/metrics");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(r[http::field::content_type], "text/plain; version=0.0.4");
  const std::string& m = r.body();
  EXPECT_THAT(m, HasSubstr("# TYPE pantry_http_requests_total counter\n"));
  EXPECT_THAT(m, HasSubstr("# HELP pantry_http_requests_total "));
  EXPECT_THAT(m, HasSubstr("pantry_http_requests_total{route=\"/a/\",status=\"200\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("pantry_http_requests_total{route=\"pypi_simple\",status=\"200\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("pantry_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("pantry_http_response_bytes_total{route=\"/a/\",outcome=\"hit\"} 10\n"));
  EXPECT_THAT(
      m, HasSubstr("pantry_http_response_bytes_total{route=\"pypi_simple\",outcome=\"miss\"} 2\n"));
  EXPECT_THAT(m, HasSubstr("# TYPE pantry_http_requests_in_flight gauge\n"
                           "pantry_http_requests_in_flight 1\n"));
  EXPECT_EQ(s.metrics->counter("pantry_http_requests_total", {{"route", "/a/"}, {"status", "200"}}),
            2u);
}

// A blob store in a fresh temp dir, removed at the end.
class temp_store {
 public:
  temp_store() {
    dir_ = std::filesystem::temp_directory_path() /
           ("pantry-server-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(dir_);
    cache::options opt;
    opt.data_dir = dir_;
    opt.durable = false;
    auto s = cache::store::open(opt);
    if (!s) throw std::runtime_error(s.error().message);
    store = *s;
  }
  ~temp_store() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  cache::digest put(const std::string& bytes) {
    auto id = cache::digest::of(bytes);
    auto w = store->begin_blob(id, "application/octet-stream", bytes.size());
    if (!w) throw std::runtime_error(w.error().message);
    for (std::size_t i = 0; i < bytes.size(); i += 1 << 20) {
      auto r = w->write(bytes_of(std::string_view(bytes).substr(i, 1 << 20)));
      if (!r) throw std::runtime_error(r.error().message);
    }
    auto c = w->commit();
    if (!c) throw std::runtime_error(c.error().message);
    return id;
  }

  std::shared_ptr<cache::store> store;

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

// Serves /blob?<offset>,<length>[,chunked] of `id` with write_blob.
void route_blob(server& srv, temp_store& ts, cache::digest id) {
  srv.route("/blob", [&ts, id](exchange& ex) -> asio::awaitable<void> {
    auto blob = ts.store->open_blob(id);
    if (!blob) {
      co_await reply_text(ex, blob.error().message, http::status::not_found);
      co_return;
    }
    std::string_view target = ex.request().target();
    std::uint64_t offset = 0, length = blob->size();
    bool chunked = false;
    if (auto q = target.find('?'); q != std::string_view::npos) {
      std::string args(target.substr(q + 1));
      unsigned long long o = 0, l = 0;
      char mode[16] = {};
      if (std::sscanf(args.c_str(), "%llu,%llu,%15s", &o, &l, mode) >= 2) {
        offset = o;
        length = l;
      }
      chunked = std::string_view(mode) == "chunked";
    }
    http::response_header<> h;
    h.result(http::status::ok);
    h.set(http::field::content_type, "application/octet-stream");
    std::optional<std::uint64_t> framing;
    if (!chunked) framing = length;
    co_await ex.begin(h, framing);
    if (error_code ec = co_await ex.write_blob(*blob, offset, length)) {
      ex.reset();
      co_return;
    }
    co_await ex.end();
  });
}

// Reads a response's header and body with small reads and pauses, like a slow client on a
// small receive buffer.
std::string read_slowly(test_client& c, std::size_t body_size) {
  std::string raw;
  char buf[4096];
  std::size_t header_end = std::string::npos;
  for (int i = 0;; ++i) {
    if (header_end == std::string::npos) header_end = raw.find("\r\n\r\n");
    if (header_end != std::string::npos && raw.size() >= header_end + 4 + body_size) break;
    error_code ec;
    std::size_t n = c.recv(buf, sizeof buf, ec);
    if (ec)
      throw std::runtime_error("slow read failed after " + std::to_string(raw.size()) +
                               " bytes: " + ec.message());
    raw.append(buf, n);
    if (i % 8 == 0) std::this_thread::sleep_for(1ms);
  }
  return raw;
}

TEST(ServerTest, WriteBlobServesAMultiChunkBlobToASlowReader) {
  temp_store ts;
  const std::string bytes = pattern(3 * cache::kChunkSize + 12345, 6);
  auto id = ts.put(bytes);
  running_server s([&](server& srv) { route_blob(srv, ts, id); });
  test_client c(s.port(), 4096);
  c.send(make_request("GET", "/blob"));
  std::string raw = read_slowly(c, bytes.size());
  auto header_end = raw.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos);
  EXPECT_THAT(raw.substr(0, header_end),
              HasSubstr("Content-Length: " + std::to_string(bytes.size())));
  std::string body = raw.substr(header_end + 4);
  EXPECT_EQ(body.size(), bytes.size());
  EXPECT_TRUE(body == bytes) << "body differs from the blob";
  // The connection is still in step: a second request on it works.
  c.buffer.clear();
  c.send(make_request("HEAD", "/blob"));
  auto head = c.read_response(true);
  EXPECT_EQ(head[http::field::content_length], std::to_string(bytes.size()));
}

TEST(ServerTest, WriteBlobServesARangeAcrossChunksChunked) {
  temp_store ts;
  const std::string bytes = pattern(2 * cache::kChunkSize + 500, 7);
  auto id = ts.put(bytes);
  running_server s([&](server& srv) { route_blob(srv, ts, id); });
  test_client c(s.port(), 4096);
  const std::uint64_t offset = cache::kChunkSize - 100, length = cache::kChunkSize + 300;
  auto r = c.get("/blob?" + std::to_string(offset) + "," + std::to_string(length) + ",chunked");
  EXPECT_TRUE(r.chunked());
  EXPECT_EQ(r.body().size(), length);
  EXPECT_TRUE(r.body() == bytes.substr(offset, length)) << "range differs";
  auto r2 = c.get("/blob?10,20");
  EXPECT_EQ(r2.body(), bytes.substr(10, 20));
}

TEST(ServerTest, StopLetsAnInFlightResponseFinish) {
  std::atomic<bool> stop_called{false};
  const std::string body = pattern(10 * 1000, 8);
  running_server s([&](server& srv) {
    srv.route("/slow", [&](exchange& ex) -> asio::awaitable<void> {
      http::response_header<> h;
      h.result(http::status::ok);
      co_await ex.begin(h, body.size());
      co_await ex.write(bytes_of(std::string_view(body).substr(0, 1000)));
      while (!stop_called)
        co_await sleep_for(5ms);
      for (std::size_t i = 1000; i < body.size(); i += 1000) {
        co_await sleep_for(5ms);
        co_await ex.write(bytes_of(std::string_view(body).substr(i, 1000)));
      }
      co_await ex.end();
    });
  });
  test_client idle(s.port());
  EXPECT_EQ(idle.get("/healthz").body(), "ok");
  test_client c(s.port());
  c.send(make_request("GET", "/slow"));
  // Wait for the first piece so that the response is in flight when stop() comes.
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos ||
         got.size() < got.find("\r\n\r\n") + 4 + 1000) {
    error_code ec;
    std::size_t n = c.recv(buf, sizeof buf, ec);
    ASSERT_FALSE(ec) << ec.message() << " after " << got;
    got.append(buf, n);
  }
  s.srv->stop();
  stop_called = true;
  EXPECT_EQ(c.read_to_end(&got), asio::error::eof);
  auto header_end = got.find("\r\n\r\n");
  EXPECT_TRUE(got.substr(header_end + 4) == body)
      << "got " << got.size() - header_end - 4 << " body bytes of " << body.size();
  EXPECT_EQ(idle.read_to_end(), asio::error::eof) << "an idle connection is closed at stop";
  s.stop();  // run() returns
  test_client late(s.port());
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED);
}

TEST(ServerTest, DrainAnswersAKeepAliveConnectionsNextRequestWithClose) {
  running_server s([](server& srv) {
    srv.route("/echo/", [](exchange& ex) -> asio::awaitable<void> {
      co_await reply_text(ex, std::string(ex.request().target()));
    });
  });
  test_client c(s.port());
  auto r1 = c.get("/echo/one");
  EXPECT_TRUE(r1.keep_alive());
  drain(*s.srv);
  // The connection waits for its next request (the client may have sent it already) instead of
  // closing under it, answers it and then closes.
  auto r2 = c.get("/echo/two");
  EXPECT_EQ(r2.result_int(), 200u);
  EXPECT_EQ(r2.body(), "/echo/two");
  EXPECT_FALSE(r2.keep_alive()) << "the answer says Connection: close";
  EXPECT_EQ(c.read_to_end(), asio::error::eof);
  s.stop();  // run() returns
  test_client late(s.port());
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED);
}

TEST(ServerTest, ASecondServerOnTheListeningSocketServesOnAfterTheFirstDrains) {
  auto named = [](std::string name) {
    return [name](server& srv) {
      srv.route("/who",
                [name](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, name); });
    };
  };
  running_server first(named("first"));
  const int fd = ::fcntl(listening_socket(*first.srv), F_DUPFD_CLOEXEC, 3);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  server_options opt;
  opt.threads = 1;
  auto metrics = std::make_shared<metrics_registry>();
  auto second = create_on_socket(opt, metrics, fd);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ((*second)->port(), first.port());
  named("second")(**second);
  std::thread serving([&] { (*second)->run(); });
  drain(*first.srv);
  first.stop();
  for (int i = 0; i < 5; ++i) {
    test_client c(first.port());
    ASSERT_EQ(c.connect_errno(), 0) << "the port stays open: " << std::strerror(c.connect_errno());
    EXPECT_EQ(c.get("/who").body(), "second");
  }
  (*second)->stop();
  serving.join();

  auto bad = create_on_socket(opt, metrics, ::socket(AF_INET, SOCK_DGRAM, 0));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, ::testing::HasSubstr("not a stream socket"));
}

TEST(ServerTest, StopResetsWhatOutlastsTheGrace) {
  std::atomic<bool> handler_done{false};
  server_options opt;
  opt.shutdown_grace = 50ms;
  running_server s(
      [&](server& srv) {
        srv.route("/forever", [&](exchange& ex) -> asio::awaitable<void> {
          http::response_header<> h;
          h.result(http::status::ok);
          co_await ex.begin(h, 1 << 30);
          while (!co_await ex.write(bytes_of("x")))
            co_await sleep_for(2ms);
          handler_done = true;
        });
      },
      opt);
  test_client c(s.port());
  c.send(make_request("GET", "/forever"));
  char buf[256];
  error_code ec;
  c.recv(buf, sizeof buf, ec);
  ASSERT_FALSE(ec) << ec.message();
  s.stop();
  EXPECT_EQ(c.read_to_end(), boost::system::errc::connection_reset);
  EXPECT_TRUE(handler_done) << "the handler saw its write fail and returned";
}

// ---- adopted listeners -------------------------------------------------------------------------

// A TCP socket on 127.0.0.1, any free port, listening unless told not to; -1 on failure (errno).
int loopback_socket(int type = SOCK_STREAM, bool listening = true) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      (listening && ::listen(fd, 16) != 0)) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

// True iff `fd` is no open descriptor any more.
bool is_closed(int fd) {
  return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

// The read-only routes a job's listener serves, as the runner decides them.
bool read_only(http::verb method, std::string_view path) {
  if (method != http::verb::get && method != http::verb::head) return false;
  for (std::string_view prefix : {"/simple/", "/files/", "/pypi/", "/v2/"}) {
    if (path.starts_with(prefix)) return true;
  }
  return false;
}

// The routes the listener tests install: /simple/ echoes the target and the peer, /upload/ says
// it was called, /files/endless sends bytes every 2 ms until a write fails (then sets `ended`).
void route_job_paths(server& srv, std::atomic<bool>* ended = nullptr) {
  srv.route("/simple/", [](exchange& ex) -> asio::awaitable<void> {
    co_await reply_text(ex, std::string(ex.request().target()) + " from " + ex.peer());
  });
  srv.route("/upload/",
            [](exchange& ex) -> asio::awaitable<void> { co_await reply_text(ex, "uploaded"); });
  srv.route("/files/endless", [ended](exchange& ex) -> asio::awaitable<void> {
    http::response_header<> h;
    h.result(http::status::ok);
    co_await ex.begin(h, 1 << 30);
    while (!co_await ex.write(bytes_of(std::string(1000, 'x'))))
      co_await sleep_for(2ms);
    if (ended) *ended = true;
  });
}

// Adopts `fd` as a listener serving read_only() routes; the test fails if that fails.
std::unique_ptr<listener> adopt_read_only(server& srv, int fd, std::string name = "job 3f2a") {
  listener_options opt;
  opt.name = std::move(name);
  opt.allow = read_only;
  auto r = srv.adopt_listener(fd, std::move(opt));
  if (!r) throw std::runtime_error("adopt_listener failed: " + r.error().message);
  return std::move(*r);
}

// Reads until at least `n` bytes (header included) have come, so that a response is in flight.
void read_at_least(test_client& c, std::size_t n) {
  std::size_t got = c.buffer.size();
  char buf[4096];
  while (got < n) {
    error_code ec;
    std::size_t k = c.recv(buf, sizeof buf, ec);
    if (ec) throw std::runtime_error("reading failed after " + std::to_string(got) + " bytes");
    got += k;
  }
}

// Waits up to 10 s for `flag`.
bool eventually(const std::atomic<bool>& flag) {
  for (int i = 0; i < 2000 && !flag; ++i)
    std::this_thread::sleep_for(5ms);
  return flag;
}

TEST(AdoptedListenerTest, ServesAnAllowedRouteAsTheMainPortDoes) {
  std::mutex m;
  std::vector<std::string> seen;
  running_server s([](server& srv) { route_job_paths(srv); });
  listener_options opt;
  opt.name = "job 1";
  opt.allow = [&](http::verb method, std::string_view path) {
    std::lock_guard lock(m);
    seen.push_back(std::string(http::to_string(method)) + " " + std::string(path));
    return read_only(method, path);
  };
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto adopted = s.srv->adopt_listener(fd, std::move(opt));
  ASSERT_TRUE(adopted) << adopted.error().message;
  auto& l = *adopted;
  ASSERT_NE(l->port(), 0);
  EXPECT_NE(l->port(), s.port());

  test_client c(l->port());
  auto r = c.get("/simple/pip/?x=1");
  EXPECT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_THAT(r.body(), StartsWith("/simple/pip/?x=1 from 127.0.0.1:"));
  EXPECT_TRUE(r.keep_alive());
  c.send(make_request("HEAD", "/simple/pip/"));
  EXPECT_EQ(c.read_response(true).result_int(), 200u);
  {
    std::lock_guard lock(m);
    EXPECT_THAT(seen, ::testing::ElementsAre("GET /simple/pip/", "HEAD /simple/pip/"))
        << "the filter gets the path without the query";
  }
  // The main port has no filter.
  test_client main(s.port());
  EXPECT_EQ(main.get("/upload/x").body(), "uploaded");
  // An exchange is counted before the connection reads the next request: one more makes the
  // count of the first two certain.
  EXPECT_EQ(c.get("/upload/x").result_int(), 403u);
  EXPECT_EQ(
      s.metrics->counter("pantry_http_requests_total", {{"route", "/simple/"}, {"status", "200"}}),
      2u);
}

// A job's listener has a tally of its own: its requests are counted there by route label and
// outcome with their body bytes, the main port's never; the outcome goes out as X-Pantry-Cache.
TEST(AdoptedListenerTest, ItsTallyCountsItsOwnRequestsOnly) {
  running_server s([](server& srv) {
    srv.route("/files/", [](exchange& ex) -> asio::awaitable<void> {
      ex.set_route("pypi_files");
      const bool cached = ex.request().target().ends_with("/cached");
      ex.set_outcome(cached ? cache_outcome::hit : cache_outcome::miss);
      co_await reply_text(ex, cached ? "12345" : "xy");
    });
    route_job_paths(srv);
  });
  auto tally = std::make_shared<traffic_tally>();
  listener_options opt;
  opt.name = "job 7";
  opt.allow = read_only;
  opt.traffic = tally;
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto adopted = s.srv->adopt_listener(fd, std::move(opt));
  ASSERT_TRUE(adopted) << adopted.error().message;

  test_client job((*adopted)->port());
  test_client main(s.port());
  auto r = job.get("/files/a/cached");
  EXPECT_EQ(r[kCacheHeader], "hit");
  EXPECT_EQ(job.get("/files/b/cached").body(), "12345");
  r = job.get("/files/c/fetched");
  EXPECT_EQ(r[kCacheHeader], "miss");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(main.get("/files/d/cached").result_int(), 200u);
    EXPECT_EQ(main.get("/files/e/fetched").result_int(), 200u);
  }
  EXPECT_EQ(main.get("/simple/x/").count(kCacheHeader), 0u) << "no outcome, no header";
  EXPECT_EQ(job.get("/upload/x").result_int(), 403u);
  // One more on the job's connection: the exchanges before it are counted by now.
  EXPECT_EQ(job.get("/simple/x/").result_int(), 200u);

  // Route, outcome, requests, and the bytes of the bodies whose size the test knows.
  std::vector<std::string> got;
  for (const auto& e : tally->entries()) {
    if (e.route == "/simple/") continue;  // the last request, perhaps not counted yet
    std::string line = e.route + " " + std::string(outcome_label(e.outcome)) + " " +
                       std::to_string(e.count.requests);
    if (e.route == "pypi_files") line += " " + std::to_string(e.count.bytes);
    got.push_back(std::move(line));
  }
  EXPECT_THAT(
      got, ::testing::ElementsAre("pypi_files hit 2 10", "pypi_files miss 1 2", "refused none 1"))
      << "got " << ::testing::PrintToString(got);
}

TEST(TrafficTest, OutcomeLabelsReadBack) {
  for (auto o : {cache_outcome::none, cache_outcome::hit, cache_outcome::miss, cache_outcome::stale,
                 cache_outcome::revalidated, cache_outcome::coalesced}) {
    EXPECT_EQ(parse_cache_outcome(outcome_label(o)), o) << outcome_label(o);
  }
  EXPECT_EQ(parse_cache_outcome("HIT"), cache_outcome::hit);
  EXPECT_EQ(parse_cache_outcome("hits"), std::nullopt);
  EXPECT_EQ(parse_cache_outcome(""), std::nullopt);
}

TEST(AdoptedListenerTest, RefusedRequestGets403NamingMethodAndPath) {
  running_server s([](server& srv) { route_job_paths(srv); });
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto l = adopt_read_only(*s.srv, fd, "job 3f2a");
  test_client c(l->port());
  c.send(make_request("POST", "/upload/x?y=2", "Content-Length: 3\r\n") + "abc");
  auto r = c.read_response();
  EXPECT_EQ(r.result_int(), 403u);
  EXPECT_EQ(r[http::field::content_type], "text/plain; charset=utf-8");
  EXPECT_EQ(r.body(),
            "forbidden: POST /upload/x: this listener (job 3f2a) serves only some routes\n");
  EXPECT_TRUE(r.keep_alive()) << "a refusal keeps the connection";
  // A route that exists but is not in the filter, and the built-in ones.
  EXPECT_EQ(c.get("/upload/x").result_int(), 403u);
  EXPECT_EQ(c.get("/metrics").result_int(), 403u);
  EXPECT_EQ(c.get("/simple/ok/").result_int(), 200u);
  EXPECT_EQ(
      s.metrics->counter("pantry_http_requests_total", {{"route", "refused"}, {"status", "403"}}),
      3u);
}

TEST(AdoptedListenerTest, CloseResetsItsConnectionsAndRefusesNewOnes) {
  running_server s([](server& srv) { route_job_paths(srv); });
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto l = adopt_read_only(*s.srv, fd);
  const std::uint16_t port = l->port();
  test_client idle(port);
  EXPECT_EQ(idle.get("/simple/a/").result_int(), 200u);
  test_client main(s.port());
  EXPECT_EQ(main.get("/healthz").body(), "ok");

  l->close();
  test_client late(port);
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED)
      << "connect after close(): " << std::strerror(late.connect_errno());
  EXPECT_EQ(idle.read_to_end(), boost::system::errc::connection_reset);
  l->close();  // idempotent
  EXPECT_EQ(main.get("/healthz").body(), "ok") << "the main port's connections are untouched";
  test_client fresh(s.port());
  EXPECT_EQ(fresh.get("/simple/b/").result_int(), 200u);
}

TEST(AdoptedListenerTest, CloseCutsAnInFlightResponse) {
  std::atomic<bool> ended{false};
  running_server s([&](server& srv) { route_job_paths(srv, &ended); });
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto l = adopt_read_only(*s.srv, fd);
  test_client c(l->port());
  c.send(make_request("GET", "/files/endless"));
  read_at_least(c, 5000);
  l.reset();  // the handle's destructor closes
  EXPECT_EQ(c.read_to_end(), boost::system::errc::connection_reset);
  EXPECT_TRUE(eventually(ended)) << "the handler saw its write fail and returned";
}

TEST(AdoptedListenerTest, StopClosesAdoptedListenersAndRunReturns) {
  running_server s([](server& srv) { route_job_paths(srv); });
  int fd = loopback_socket();
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto l = adopt_read_only(*s.srv, fd);
  test_client idle(l->port());
  EXPECT_EQ(idle.get("/simple/a/").result_int(), 200u);
  s.stop();  // returns once run() has
  EXPECT_EQ(idle.read_to_end(), asio::error::eof) << "an idle connection is closed at stop";
  test_client late(l->port());
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED);
  l->close();  // after stop: nothing to do

  int another = loopback_socket();
  ASSERT_GE(another, 0) << std::strerror(errno);
  auto r = s.srv->adopt_listener(another, {});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cancelled)) << r.error().message;
  EXPECT_TRUE(is_closed(another));
}

TEST(AdoptedListenerTest, ListenerThatOutlivesTheServerIsHarmless) {
  std::unique_ptr<listener> ran;
  std::unique_ptr<listener> never_ran;
  std::unique_ptr<listener> closed_early;
  {
    running_server s([](server& srv) { route_job_paths(srv); });
    int a = loopback_socket();
    int b = loopback_socket();
    ASSERT_GE(a, 0) << std::strerror(errno);
    ASSERT_GE(b, 0) << std::strerror(errno);
    ran = adopt_read_only(*s.srv, a);
    closed_early = adopt_read_only(*s.srv, b);
    closed_early->close();
    test_client c(ran->port());
    EXPECT_EQ(c.get("/simple/a/").result_int(), 200u);
  }
  {
    auto created = server::create({}, nullptr);
    ASSERT_TRUE(created) << created.error().message;
    int fd = loopback_socket();
    ASSERT_GE(fd, 0) << std::strerror(errno);
    never_ran = adopt_read_only(**created, fd);
  }
  test_client late(ran->port());
  EXPECT_EQ(late.connect_errno(), ECONNREFUSED) << "the server closed its listeners";
  EXPECT_NE(ran->port(), 0);
  ran->close();
  never_ran->close();
  ran.reset();
  never_ran.reset();
  closed_early.reset();
}

TEST(AdoptedListenerTest, AdoptingANonListeningOrUdpSocketIsInvalidAndClosesIt) {
  running_server s([](server& srv) { route_job_paths(srv); });
  struct attempt {
    std::string what;
    int fd;
  };
  std::vector<attempt> attempts = {
      {"a bound TCP socket not listening", loopback_socket(SOCK_STREAM, false)},
      {"a UDP socket", loopback_socket(SOCK_DGRAM, false)},
      {"a pipe", -1}};
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ::close(pipe_fds[1]);
  attempts[2].fd = pipe_fds[0];
  for (const auto& a : attempts) {
    ASSERT_GE(a.fd, 0) << a.what << ": " << std::strerror(errno);
    auto r = s.srv->adopt_listener(a.fd, {});
    ASSERT_FALSE(r) << a.what;
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << a.what << ": " << r.error().message;
    EXPECT_THAT(r.error().message, HasSubstr("descriptor " + std::to_string(a.fd))) << a.what;
    EXPECT_TRUE(is_closed(a.fd)) << a.what << ": the descriptor was left open";
  }
  auto r = s.srv->adopt_listener(-1, {});
  EXPECT_FALSE(r);
  test_client c(s.port());
  EXPECT_EQ(c.get("/healthz").body(), "ok");
}

// A network namespace of its own with `lo` up, and a socket listening on 127.0.0.1 inside it.
struct namespace_listener {
  int ns_fd = -1;  // keeps the namespace
  int listen_fd = -1;
  std::uint16_t port = 0;
  std::string failure;  // why it could not be made
  bool denied = false;  // not root
};

namespace_listener listen_in_a_new_namespace() {
  namespace_listener out;
  // The thread ends in the new namespace: the test's threads stay where they were.
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      out.denied = errno == EPERM;
      out.failure = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    out.ns_fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (out.ns_fd < 0) {
      out.failure = std::string("open /proc/thread-self/ns/net: ") + std::strerror(errno);
      return;
    }
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    bool up = s >= 0 && ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    up = up && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    if (s >= 0) ::close(s);
    if (!up) {
      out.failure = std::string("bringing lo up: ") + std::strerror(errno);
      return;
    }
    out.listen_fd = loopback_socket();
    if (out.listen_fd < 0) {
      out.failure = std::string("listening on 127.0.0.1: ") + std::strerror(errno);
      return;
    }
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(out.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    out.port = ntohs(addr.sin_port);
  }).join();
  return out;
}

// Runs `fn` on a thread of its own that has joined the network namespace `ns_fd`.
void inside(int ns_fd, const std::function<void()>& fn) {
  std::thread([&] {
    if (::setns(ns_fd, CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "setns: " << std::strerror(errno);
      return;
    }
    fn();
  }).join();
}

TEST(AdoptedListenerTest, ServesASocketMadeInAnotherNetworkNamespaceAndOnlyThere) {
  auto ns = listen_in_a_new_namespace();
  if (ns.denied) GTEST_SKIP() << ns.failure;
  ASSERT_TRUE(ns.failure.empty()) << ns.failure;
  struct ns_closer {
    int fd;
    ~ns_closer() { ::close(fd); }
  } keep{ns.ns_fd};
  running_server s([](server& srv) { route_job_paths(srv); });
  auto l = adopt_read_only(*s.srv, ns.listen_fd, "job ns");
  EXPECT_EQ(l->port(), ns.port);

  inside(ns.ns_fd, [&] {
    test_client c(ns.port);
    ASSERT_EQ(c.connect_errno(), 0) << std::strerror(c.connect_errno());
    auto r = c.get("/simple/pip/");
    EXPECT_EQ(r.result_int(), 200u) << r.body();
    EXPECT_THAT(r.body(), StartsWith("/simple/pip/ from 127.0.0.1:"));
    EXPECT_EQ(c.get("/upload/x").result_int(), 403u);
    test_client main_port(s.port());
    EXPECT_EQ(main_port.connect_errno(), ECONNREFUSED)
        << "the server's main port is not in the job's namespace";
  });
  // The isolation property: the host's loopback does not reach the job's listener.
  test_client from_host(ns.port);
  EXPECT_EQ(from_host.connect_errno(), ECONNREFUSED)
      << "port " << ns.port
      << " answered on the host's 127.0.0.1: " << std::strerror(from_host.connect_errno());

  l->close();
  inside(ns.ns_fd, [&] {
    test_client late(ns.port);
    EXPECT_EQ(late.connect_errno(), ECONNREFUSED);
  });
}

}  // namespace
}  // namespace pantry::proxy
