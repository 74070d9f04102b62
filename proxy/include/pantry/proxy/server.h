#pragma once

// The HTTP/1.1 server: one port, requests routed to handlers by the longest matching path prefix;
// /healthz and /metrics are built in, every other route belongs to a tenant (a proxy::service,
// see service.h) that installs it. Beast on Asio with C++20 coroutines, one thread per core,
// keep-alive, streamed bodies with no size limit, 64 KiB header limit, idle timeouts, graceful
// shutdown. Listening sockets made elsewhere (inside a job's network namespace) can be handed to
// it, each serving the same routes through a filter of its own (adopt_listener).
//
// A handler is a coroutine that gets one `exchange` (a request and the means to answer it) and
// runs on the connection's strand. Handlers never throw; an exception escaping one is a bug, is
// logged, and the connection is reset.

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/traffic.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::proxy {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using error_code = boost::system::error_code;

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port; see server::port()
  unsigned threads = 0;    // 0: one per core
  std::size_t header_limit = 64 * 1024;
  std::chrono::milliseconds header_timeout{30'000};  // to read a request's header
  std::chrono::milliseconds idle_timeout{60'000};    // no request, or no request body byte
  std::chrono::milliseconds write_timeout{60'000};   // a client that takes no bytes for this long
  std::chrono::milliseconds shutdown_grace{10'000};  // in-flight responses finish within this
  // One line per request (peer, method, target, status, bytes, ms, cache outcome), at info,
  // through a logger of its own on the default logger's sinks: spdlog's level does not hide it.
  // set_access_log() turns it on and off later.
  bool access_log = true;
};

// One request on a connection and its response. Exactly one response per exchange: either
// respond(), or begin() + write()/write_blob()… + end(), or reset().
class exchange {
 public:
  virtual ~exchange() = default;

  virtual const http::request_header<>& request() const noexcept = 0;
  // The values of every header line named `name`, in order (several `Accept` lines from podman
  // and skopeo are several values; a comma-joined line is one value).
  virtual std::vector<std::string_view> header_values(http::field name) const = 0;
  // "ip:port" of the client.
  virtual const std::string& peer() const noexcept = 0;

  // Reads the next part of the request body into `out` (not empty). Returns 0 at the end of the
  // body. Answers `Expect: 100-continue` on the first call. No size limit; a client that sends
  // nothing for idle_timeout fails it. A body the handler leaves unread is dropped after the
  // response (up to 1 MiB; past that the connection closes).
  virtual asio::awaitable<result<std::size_t>> read_body(std::span<std::byte> out) = 0;

  // Sends a whole response (Content-Length set from the body).
  virtual asio::awaitable<error_code> respond(http::response<http::string_body> res) = 0;

  // Sends a response header. With `length`, Content-Length is set and exactly that many body
  // bytes must follow; without, the body is sent chunked (to an HTTP/1.0 client: ended by closing
  // the connection). For HEAD, 204 and 304, no body bytes follow and writes are ignored. The
  // header is held back and goes out with the first body bytes (one write instead of two).
  virtual asio::awaitable<error_code> begin(http::response_header<> header,
                                            std::optional<std::uint64_t> length) = 0;
  // Sends body bytes. With no bytes, sends a held-back header at once (before a long wait).
  // Bytes beyond the Content-Length are refused with errc::size_mismatch.
  virtual asio::awaitable<error_code> write(std::span<const std::byte> bytes) = 0;
  // Sends [offset, offset + length) of a cached blob: straight from the memory map while the
  // socket takes bytes without blocking, copying out only what it does not take, and never
  // holding a read transaction across a wait.
  virtual asio::awaitable<error_code> write_blob(cache::blob_reader& blob, std::uint64_t offset,
                                                 std::uint64_t length) = 0;
  // Finishes a begun response (the last chunk when chunked). A body shorter than its
  // Content-Length cannot be finished: the connection is reset and errc::size_mismatch returned.
  virtual asio::awaitable<error_code> end() = 0;

  // Aborts the response: the connection is reset (RST), so a client that got part of a body can
  // never take it for a whole one.
  virtual void reset() noexcept = 0;

  // For the access log, metrics and the listener's tally. Set before begin() or respond(), it is
  // also sent as the X-Pantry-Cache header (traffic.h).
  virtual void set_outcome(cache_outcome o) noexcept = 0;
  // A route label for metrics ("pypi_simple", "oci_blob", …); defaults to the matched prefix.
  virtual void set_route(std::string_view route) = 0;

  // The tally of the listener the request came through (listener_options::traffic): whose
  // request this is, for a job's own listener. Null on the main port. The server counts the
  // exchange into it when the exchange ends.
  virtual traffic_tally* traffic() const noexcept { return nullptr; }
};

using handler = std::function<asio::awaitable<void>(exchange&)>;

struct listener_options {
  std::string name;  // for log lines and refusals: "job 3f2a…"
  // Which requests this listener serves, decided from the request line (the path is the target
  // without its query) before any handler runs; a request it refuses is answered 403 with a
  // text/plain body naming the method and path and saying that this listener serves only some
  // routes (the allow function says nothing more). Called on a connection's strand, from any I/O
  // thread at once: it must be thread-safe and must not throw (a throw refuses, and is logged as
  // a bug). Empty: every route.
  std::function<bool(http::verb method, std::string_view path)> allow;
  // Every exchange served through this listener, refused ones included, is counted into it when
  // it ends (its route label, cache outcome and body bytes); null: none is.
  std::shared_ptr<traffic_tally> traffic;
};

// An extra listening socket adopted by the server (see server::adopt_listener). The object may
// outlive the server: once the server is gone it is closed and close() does nothing.
class listener {
 public:
  // Closes the listener as close() does.
  virtual ~listener() = default;
  // The port the socket is bound to (in its own network namespace).
  virtual std::uint16_t port() const noexcept = 0;
  // Stops accepting on the socket, closes it, and resets every connection accepted through it
  // (in-flight responses are cut: a job that ended has no one to answer). Idempotent; any thread;
  // does not block on the network. After it returns no new connection is accepted on it (the
  // socket stops listening at once; a connect is refused).
  virtual void close() noexcept = 0;
};

class server {
 public:
  // Binds the listening socket (so port() is known at once); serving starts with run().
  static result<std::unique_ptr<server>> create(const server_options& opt,
                                                std::shared_ptr<metrics_registry> metrics);
  virtual ~server() = default;

  // Routes requests whose target path starts with `prefix` to `h`; the longest prefix wins.
  // The prefix "/" is the exception: it matches the path "/" alone (a front page), so that a
  // path no other prefix takes still gets the server's 404. Call before run(). /healthz and
  // /metrics are built in.
  virtual void route(std::string prefix, handler h) = 0;

  // The bound port.
  virtual std::uint16_t port() const noexcept = 0;

  // An executor of the server's pool, for work that outlives a request (upstream fetches).
  virtual asio::any_io_executor executor() noexcept = 0;

  // Serves connections accepted on `fd`, a listening TCP socket (IPv4 or IPv6) the caller made
  // — for instance inside another network namespace — exactly as on the main port (same routes,
  // timeouts, access log, metrics), filtered by opt.allow. Takes ownership of `fd` in every case
  // (closed on error too). Callable before run() and while the server runs, from any thread.
  // Errors: errc::invalid_argument when fd is not a listening stream socket, errc::cancelled
  // after stop(). Stopping the server closes every adopted listener too (its connections then
  // get the shutdown grace like any other); the returned object closes it earlier.
  virtual result<std::unique_ptr<listener>> adopt_listener(int fd, listener_options opt) = 0;

  // Turns the access log (server_options::access_log) on or off for the requests that end from
  // now on, a running one included. Any thread; never blocks.
  virtual void set_access_log(bool on) noexcept = 0;

  // Serves on the server's threads until stop(); returns when every thread has finished.
  virtual void run() = 0;

  // Graceful shutdown: stop accepting, let in-flight responses finish within shutdown_grace,
  // then close what is left. Safe from any thread and from a signal-waiting thread.
  virtual void stop() noexcept = 0;
};

}  // namespace pantry::proxy
