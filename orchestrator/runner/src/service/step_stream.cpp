#include "pantry/orchestrator/runner/step_stream.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <openssl/crypto.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <span>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

using steady = std::chrono::steady_clock;

// A step that prints nothing for this long still gets a keep-alive event, so that a client that
// went away is noticed (and the step cancelled) within it.
constexpr std::chrono::seconds kKeepAlive{2};

std::string_view stream_name(output_stream s) {
  return s == output_stream::err ? "err" : "out";
}

bool same_token(std::string_view a, std::string_view b) {
  // Constant time in the token's contents, as pantry_auth compares it: how far a guess matched
  // must not show in the timing.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// The events of one step, from the runner's thread to the connection's coroutine.
class event_queue : public std::enable_shared_from_this<event_queue> {
 public:
  explicit event_queue(asio::any_io_executor ex) : timer_(ex) {}

  void push(std::string line) {
    {
      std::lock_guard lock(mutex_);
      lines_.push_back(std::move(line));
    }
    wake();
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    wake();
  }
  // Waits (on the timer's executor) until there are lines, the queue is closed, or `timeout`
  // passed; returns what is queued and whether the queue is closed.
  asio::awaitable<std::pair<std::deque<std::string>, bool>> take(steady::duration timeout) {
    bool ready = false;
    {
      std::lock_guard lock(mutex_);
      ready = !lines_.empty() || closed_;
    }
    if (!ready) {
      // A push between the check and the wait posts its wake-up behind this coroutine, so the
      // wait is cancelled after it began: no line waits a whole timeout.
      timer_.expires_after(timeout);
      boost::system::error_code ec;
      auto token = asio::redirect_error(asio::use_awaitable, ec);
      co_await timer_.async_wait(token);
    }
    std::lock_guard lock(mutex_);
    std::deque<std::string> out;
    out.swap(lines_);
    co_return std::pair{std::move(out), closed_};
  }

 private:
  void wake() {
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
  }

  std::mutex mutex_;
  std::deque<std::string> lines_;
  bool closed_ = false;
  asio::steady_timer timer_;
};

std::string event_line(const json::object& o) {
  std::string s = json::serialize(o);
  s.push_back('\n');
  return s;
}

}  // namespace

asio::awaitable<void> respond_text(proxy::exchange& ex, http::status status, std::string text) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(text) + "\n";
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> respond_json(proxy::exchange& ex, http::status status,
                                   const json::object& body) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = json::serialize(body);
  co_await ex.respond(std::move(res));
}

asio::awaitable<bool> authorized(proxy::exchange& ex, std::string_view token) {
  auto auth = std::string_view(ex.request()[http::field::authorization]);
  if (auth.starts_with("Bearer ") && same_token(auth.substr(7), token)) co_return true;
  co_await respond_text(ex, http::status::unauthorized,
                        "this route needs the control token of this pantry (the pantry command "
                        "reads it from the data dir's serve.json)");
  co_return false;
}

asio::awaitable<std::optional<std::string>> read_body(proxy::exchange& ex, std::size_t limit) {
  std::string body;
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return std::nullopt;
    if (*n == 0) break;
    if (body.size() + *n > limit) {
      co_await respond_text(ex, http::status::payload_too_large,
                            "the request body is over " + std::to_string(limit) + " bytes");
      co_return std::nullopt;
    }
    body.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  co_return body;
}

json::object event_json(const step_event& e) {
  json::object o;
  o["type"] = e.type == step_event::kind::report ? "report" : "line";
  o["stream"] = stream_name(e.stream);
  o["time"] =
      std::chrono::duration_cast<std::chrono::microseconds>(e.line.time.time_since_epoch()).count();
  o["text"] = e.line.text;
  switch (e.line.end) {
    case line_end::newline:
      break;
    case line_end::crlf:
      o["end"] = "crlf";
      break;
    case line_end::cut:
      o["end"] = "cut";
      break;
    case line_end::eof:
      o["end"] = "eof";
      break;
  }
  return o;
}

asio::awaitable<void> stream_step(proxy::exchange& ex, streamed_step step) {
  http::response_header<> header;
  header.result(http::status::ok);
  header.version(11);
  header.set(http::field::content_type, "application/x-ndjson");
  header.set(http::field::cache_control, "no-store");
  if (co_await ex.begin(std::move(header), std::nullopt)) co_return;
  // Sent at once: the client knows the step was accepted before its first line.
  if (co_await ex.write({})) co_return;

  auto io = co_await asio::this_coro::executor;
  auto queue = std::make_shared<event_queue>(io);
  auto cancel = std::make_shared<step_cancel>();
  auto outcome = std::make_shared<std::optional<result<json::object>>>();
  // The step runs on its own: this coroutine only ships its events, and cancels it when the
  // client is gone.
  asio::co_spawn(
      io,
      [step = std::move(step), queue, cancel, outcome]() -> asio::awaitable<void> {
        // A named sink: a lambda converted to std::function inside the co_await expression
        // would be destroyed twice by gcc 12 (CONTRIBUTING.md).
        step_event_sink sink = [queue](const step_event& e) {
          queue->push(event_line(event_json(e)));
        };
        auto r = co_await step(std::move(sink), cancel);
        *outcome = std::move(r);
        queue->close();
      },
      asio::detached);

  bool client_gone = false;
  for (;;) {
    auto [lines, closed] = co_await queue->take(kKeepAlive);
    std::string chunk;
    for (auto& l : lines)
      chunk += l;
    if (chunk.empty() && !closed) chunk = event_line(json::object{{"type", "keepalive"}});
    if (!chunk.empty() && !client_gone) {
      auto ec = co_await ex.write(std::as_bytes(std::span(chunk)));
      if (ec) {
        client_gone = true;
        cancel->cancel();
      }
    }
    if (closed) break;
  }
  if (client_gone) co_return;
  json::object last;
  if (*outcome && **outcome) {
    last = std::move(***outcome);
    last["type"] = "result";
  } else {
    last["type"] = "error";
    last["message"] = *outcome ? (*outcome)->error().message : "the step ended without a result";
  }
  std::string tail = event_line(last);
  if (co_await ex.write(std::as_bytes(std::span(tail)))) co_return;
  co_await ex.end();
}

}  // namespace pantry::orchestrator::runner
