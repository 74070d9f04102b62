// The blocking API client against a real proxy::server on 127.0.0.1 port 0.

#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/proxy/server.h"
#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/string_body.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace pantry::orchestrator::coordinator {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr std::string_view kToken = "s3cret";

// `n` bytes that differ from `seed`'s and show where a piece went missing: "<seed>:0 <seed>:1 …".
std::string numbered(std::size_t n, int seed) {
  std::string out;
  for (std::size_t i = 0; out.size() < n; ++i)
    out += std::to_string(seed) + ":" + std::to_string(i) + " ";
  out.resize(n);
  return out;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<void> reply(proxy::exchange& ex, http::status status, std::string body,
                            std::string content_type = "text/plain") {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  co_await ex.respond(std::move(res));
}

bool authorized(proxy::exchange& ex) {
  return ex.request()[http::field::authorization] == "Bearer " + std::string(kToken);
}

// Answers with "<METHOD> <target> <content-type>\n" and the request body.
asio::awaitable<void> echo(proxy::exchange& ex) {
  if (!authorized(ex)) {
    co_await reply(ex, http::status::unauthorized, "no token\n");
    co_return;
  }
  std::string body;
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n || *n == 0) break;
    body.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  const auto& req = ex.request();
  std::string head = std::string(req.method_string()) + " " + std::string(req.target()) + " " +
                     std::string(req[http::field::content_type]) + "\n";
  co_await reply(ex, http::status::ok, head + body);
}

// A chunked body: "tick N\n" every 300 ms, five times.
asio::awaitable<void> slow_ticks(proxy::exchange& ex) {
  http::response_header<> h;
  h.result(http::status::ok);
  co_await ex.begin(h, std::nullopt);
  co_await ex.write({});
  for (int i = 0; i < 5; ++i) {
    co_await sleep_for(300ms);
    const std::string line = "tick " + std::to_string(i) + "\n";
    co_await ex.write(std::as_bytes(std::span(line)));
  }
  co_await ex.end();
}

// A body that goes on until the client goes away (or 30 s).
asio::awaitable<void> endless(proxy::exchange& ex) {
  http::response_header<> h;
  h.result(http::status::ok);
  co_await ex.begin(h, std::nullopt);
  for (int i = 0; i < 3000; ++i) {
    const std::string line = "line " + std::to_string(i) + "\n";
    auto bytes = std::as_bytes(std::span(line));
    if (auto ec = co_await ex.write(bytes)) co_return;
    co_await sleep_for(10ms);
  }
  co_await ex.end();
}

asio::awaitable<void> blob(proxy::exchange& ex) {
  co_await reply(ex, http::status::ok, numbered(300 * 1024, 7), "application/octet-stream");
}

// A server running on two threads until the object goes.
class running_server {
 public:
  running_server() {
    proxy::server_options opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    opt.threads = 2;
    opt.shutdown_grace = 1s;
    auto r = proxy::server::create(opt, std::make_shared<proxy::metrics_registry>());
    if (!r) throw std::runtime_error(r.error().message);
    srv_ = std::move(*r);
    srv_->route("/echo", echo);
    srv_->route("/ticks", slow_ticks);
    srv_->route("/endless", endless);
    srv_->route("/blob", blob);
    srv_->route("/busy", [](proxy::exchange& ex) -> asio::awaitable<void> {
      co_await reply(ex, http::status::conflict, R"({"error":"the job is running"})",
                     "application/json");
    });
    srv_->route("/missing", [](proxy::exchange& ex) -> asio::awaitable<void> {
      co_await reply(ex, http::status::not_found, "no such job: 42\n");
    });
    thread_ = std::thread([this] { srv_->run(); });
  }
  ~running_server() {
    srv_->stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(srv_->port()); }

 private:
  std::unique_ptr<proxy::server> srv_;
  std::thread thread_;
};

class ApiClientTest : public test_util::temp_dir_test {};

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(ApiClientTest, CallSendsTheTokenAndTheBody) {
  running_server s;
  api_client c(s.url() + "/", std::string(kToken));
  http::fields h;
  h.set(http::field::content_type, "application/json");
  auto r = c.call(http::verb::post, "/echo/x?y=1", R"({"a":1})", h);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200u) << r->body;
  EXPECT_EQ(r->body, "POST /echo/x?y=1 application/json\n{\"a\":1}");
  EXPECT_EQ(r->url, s.url() + "/echo/x?y=1");
  EXPECT_EQ(r->method, "POST");
  // The same client again, on a pooled connection.
  auto again = c.call(http::verb::get, "/echo");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->body, "GET /echo \n");
}

TEST_F(ApiClientTest, AWrongTokenIsAnAnswerForTheCaller) {
  running_server s;
  api_client c(s.url(), "wrong");
  auto r = c.call(http::verb::get, "/echo");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 401u);
  auto e = api_client::failure("listing jobs", *r);
  EXPECT_EQ(e.message, "listing jobs: GET " + s.url() + "/echo answered 401: no token");
  EXPECT_TRUE(e.is(errc::io_error)) << e.code.message();
}

TEST_F(ApiClientTest, FailureQuotesTheServersMessage) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  auto busy = c.call(http::verb::delete_, "/busy/7");
  ASSERT_TRUE(busy) << busy.error().message;
  auto e = api_client::failure("", *busy);
  EXPECT_EQ(e.message, "DELETE " + s.url() + "/busy/7 answered 409: the job is running");
  EXPECT_TRUE(e.is(errc::already_exists)) << e.code.message();
}

TEST_F(ApiClientTest, ABodyOverTheLimitIsAnError) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  auto r = c.call(http::verb::get, "/blob", {}, {}, 1024);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::size_mismatch)) << r.error().message;
}

TEST_F(ApiClientTest, AServerThatIsNotThereIsAnErrorNamingIt) {
  std::string url;
  {
    running_server s;
    url = s.url();
  }
  api_client c(url, std::string(kToken));
  auto r = c.call(http::verb::get, "/echo");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("127.0.0.1"));
}

TEST_F(ApiClientTest, PutFileSendsTheFile) {
  running_server s;
  const std::string bytes = numbered(200 * 1024, 3);
  std::ofstream(dir_ / "src.tar.zst", std::ios::binary) << bytes;
  api_client c(s.url(), std::string(kToken));
  auto r = c.put_file(http::verb::put, "/echo/sources", dir_ / "src.tar.zst", "application/zstd");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->status, 200u) << r->body.substr(0, 200);
  EXPECT_TRUE(r->body == "PUT /echo/sources application/zstd\n" + bytes)
      << r->body.size() << " bytes came back";
}

TEST_F(ApiClientTest, PutFileRefusesAFileOverTheLimitOrMissing) {
  running_server s;
  std::ofstream(dir_ / "big", std::ios::binary) << numbered(2000, 1);
  api_client_options opt;
  opt.max_upload = 1000;
  api_client c(s.url(), std::string(kToken), opt);
  auto big = c.put_file(http::verb::put, "/echo", dir_ / "big", "application/octet-stream");
  ASSERT_FALSE(big);
  EXPECT_TRUE(big.error().is(errc::size_mismatch)) << big.error().message;
  EXPECT_THAT(big.error().message, HasSubstr((dir_ / "big").string()));
  auto missing = c.put_file(http::verb::put, "/echo", dir_ / "nope", "text/plain");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr((dir_ / "nope").string()));
}

TEST_F(ApiClientTest, DownloadWritesTheFile) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  auto r = c.download("/blob", dir_ / "out");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 200u);
  EXPECT_TRUE(read(dir_ / "out") == numbered(300 * 1024, 7));
  EXPECT_FALSE(fs::exists(dir_ / "out.part"));
}

TEST_F(ApiClientTest, AFailedDownloadWritesNothing) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  auto r = c.download("/missing/42", dir_ / "out");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::not_found)) << r.error().message;
  EXPECT_EQ(r.error().message, "GET " + s.url() + "/missing/42 answered 404: no such job: 42");
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  EXPECT_FALSE(fs::exists(dir_ / "out.part"));
}

TEST_F(ApiClientTest, StreamWaitsThroughSilenceLongerThanTheIdleTimeout) {
  running_server s;
  api_client_options opt;
  opt.idle_timeout = 100ms;  // calls give up; streams (no stream_idle_timeout) do not
  api_client c(s.url(), std::string(kToken), opt);
  std::string got;
  auto r = c.stream(http::verb::get, "/ticks", {}, [&](std::string_view bytes) {
    got.append(bytes);
    return true;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 200u);
  EXPECT_EQ(got, "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n");

  auto call = c.call(http::verb::get, "/ticks");
  ASSERT_FALSE(call) << call->body;
  EXPECT_THAT(call.error().message, HasSubstr("/ticks"));
}

TEST_F(ApiClientTest, StreamHonoursItsOwnIdleTimeout) {
  running_server s;
  api_client_options opt;
  opt.stream_idle_timeout = 100ms;
  api_client c(s.url(), std::string(kToken), opt);
  auto r = c.stream(http::verb::get, "/ticks", {}, [](std::string_view) { return true; });
  ASSERT_FALSE(r) << "status " << *r;
  EXPECT_TRUE(r.error().is(errc::io_error)) << r.error().message;
}

TEST_F(ApiClientTest, StreamStopsWhenTheCallbackSaysSo) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  std::string got;
  auto r = c.stream(http::verb::get, "/endless", {}, [&](std::string_view bytes) {
    got.append(bytes);
    return got.find("line 3\n") == std::string::npos;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, 200u);
  EXPECT_THAT(got, HasSubstr("line 3\n"));
  EXPECT_EQ(got.find("line 300\n"), std::string::npos) << got.size() << " bytes came";
  // The client still works after dropping that connection.
  auto after = c.call(http::verb::get, "/echo");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->status, 200u);
}

TEST_F(ApiClientTest, StreamRefusedIsAnErrorWithTheServersMessage) {
  running_server s;
  api_client c(s.url(), std::string(kToken));
  bool called = false;
  auto r = c.stream(http::verb::post, "/busy", "{}", [&](std::string_view) {
    called = true;
    return true;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "POST " + s.url() + "/busy answered 409: the job is running");
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
