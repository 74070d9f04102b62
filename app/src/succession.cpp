#include "succession.h"

#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/small_body.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/crypto.h>

#include <chrono>
#include <span>
#include <utility>

namespace pantry::app::detail {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

// How often a request at a closed gate looks again.
constexpr std::chrono::milliseconds kGatePoll{20};
// An upgrade request's body is a path; more is a mistake.
constexpr std::size_t kMaxBody = 16 * 1024;

class gated final : public proxy::server {
 public:
  gated(proxy::server& inner, std::shared_ptr<service_gate> gate)
      : inner_(inner), gate_(std::move(gate)) {}

  void route(std::string prefix, proxy::handler h) override {
    inner_.route(std::move(prefix),
                 [gate = gate_, h = std::move(h)](proxy::exchange& ex) -> asio::awaitable<void> {
                   auto why = co_await gate->pass();
                   if (!why) {
                     co_await h(ex);
                     co_return;
                   }
                   http::response<http::string_body> res{http::status::service_unavailable, 11};
                   res.set(http::field::content_type, "text/plain; charset=utf-8");
                   res.body() = *why + "\n";
                   co_await ex.respond(std::move(res));
                 });
  }
  std::uint16_t port() const noexcept override { return inner_.port(); }
  asio::any_io_executor executor() noexcept override { return inner_.executor(); }
  result<std::unique_ptr<proxy::listener>> adopt_listener(int fd,
                                                          proxy::listener_options opt) override {
    return inner_.adopt_listener(fd, std::move(opt));
  }
  void set_access_log(bool on) noexcept override { inner_.set_access_log(on); }
  void run() override { inner_.run(); }
  void stop() noexcept override { inner_.stop(); }

 private:
  proxy::server& inner_;
  std::shared_ptr<service_gate> gate_;
};

http::response<http::string_body> json_answer(http::status status, const json::object& body) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = json::serialize(body) + "\n";
  return res;
}

http::response<http::string_body> error_answer(http::status status, const std::string& message) {
  json::object o;
  o["error"] = message;
  return json_answer(status, o);
}

bool token_matches(std::string_view header, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (token.empty() || !header.starts_with(kBearer)) return false;
  header.remove_prefix(kBearer.size());
  return header.size() == token.size() &&
         CRYPTO_memcmp(header.data(), token.data(), token.size()) == 0;
}

// The body's "binary", empty when there is none; an error message for a body that is not
// {"binary": "…"}.
result<std::string> binary_of(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return std::string();
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return error(errc::invalid_argument,
                 "the body is not a JSON object such as {\"binary\": \"/usr/local/bin/pantry\"}");
  }
  auto b = v.get_object().if_contains("binary");
  if (b == nullptr) return std::string();
  if (!b->is_string()) {
    return error(errc::invalid_argument, "\"binary\" is not a string; give the new binary's path");
  }
  return std::string(b->get_string());
}

}  // namespace

void service_gate::open() {
  std::lock_guard g(mutex_);
  open_ = true;
}

void service_gate::fail(std::string why) {
  std::lock_guard g(mutex_);
  why_ = std::move(why);
}

asio::awaitable<std::optional<std::string>> service_gate::pass() {
  std::optional<asio::steady_timer> timer;
  for (;;) {
    {
      std::lock_guard g(mutex_);
      if (open_) co_return std::nullopt;
      if (why_) co_return why_;
    }
    if (!timer) timer.emplace(co_await asio::this_coro::executor);
    timer->expires_after(kGatePoll);
    co_await timer->async_wait(asio::use_awaitable);
  }
}

std::unique_ptr<proxy::server> gated_server(proxy::server& inner,
                                            std::shared_ptr<service_gate> gate) {
  return std::make_unique<gated>(inner, std::move(gate));
}

void install_upgrade_route(proxy::server& srv, std::string token, asio::any_io_executor blocking,
                           std::function<result<upgrade_report>(const std::string&)> upgrade) {
  srv.route("/api/v1/upgrade",
            [token = std::move(token), blocking,
             upgrade = std::move(upgrade)](proxy::exchange& ex) -> asio::awaitable<void> {
              ex.set_route("upgrade");
              const auto& req = ex.request();
              if (req.target() != "/api/v1/upgrade") {
                auto res = error_answer(http::status::not_found,
                                        "no such route; POST /api/v1/upgrade starts an upgrade");
                co_await ex.respond(std::move(res));
                co_return;
              }
              if (req.method() != http::verb::post) {
                auto res =
                    error_answer(http::status::method_not_allowed, "use POST to start an upgrade");
                res.set(http::field::allow, "POST");
                co_await ex.respond(std::move(res));
                co_return;
              }
              auto auth = ex.header_values(http::field::authorization);
              if (auth.size() != 1 || !token_matches(auth[0], token)) {
                auto res = error_answer(http::status::unauthorized,
                                        "an upgrade needs the control token of this pantry "
                                        "(serve.json in its data dir): use `pantry upgrade`");
                co_await ex.respond(std::move(res));
                co_return;
              }
              auto body = co_await proxy::read_small_body(ex, kMaxBody);
              if (!body) {
                ex.reset();
                co_return;
              }
              if (!*body) {
                auto res = error_answer(http::status::payload_too_large,
                                        "the body is larger than 16 KiB; send only "
                                        "{\"binary\": \"PATH\"}");
                co_await ex.respond(std::move(res));
                co_return;
              }
              auto binary = binary_of(**body);
              if (!binary) {
                auto res = error_answer(http::status::bad_request, binary.error().message);
                co_await ex.respond(std::move(res));
                co_return;
              }
              const std::string path = *binary;
              auto done = co_await proxy::off_thread(blocking, [&] { return upgrade(path); });
              if (!done) {
                auto status = done.error().is(errc::conflict) ? http::status::conflict
                                                              : http::status::internal_server_error;
                auto res = error_answer(status, done.error().message);
                co_await ex.respond(std::move(res));
                co_return;
              }
              json::object o;
              o["old_pid"] = done->old_pid;
              o["new_pid"] = done->new_pid;
              o["binary"] = done->binary;
              o["drain_ms"] = done->drain.count();
              o["jobs"] = done->jobs;
              auto res = json_answer(http::status::ok, o);
              co_await ex.respond(std::move(res));
            });
}

}  // namespace pantry::app::detail
