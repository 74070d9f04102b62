#pragma once

// A blocking client of pantry's own HTTP API (the coordinator's routes, the build routes, the
// hosted registry), for the programs that talk to a pantry: `pantry submit/jobs/logs/cancel/
// artifacts`, the remote `pantry runner`, and the builder's HTTP backend (which the coordinator
// also runs in-process against its own pantry over loopback).
//
// Each call runs to its end on a private io_context, on the calling thread: call it from any
// thread that is not an I/O thread of a server in the same process (blocking one of those while
// it waits for that server would wait for itself). Every request carries "Authorization: Bearer
// <token>". Redirects are not followed: pantry's API answers itself.
//
// Thread safety: none. One call at a time per client; use a client per thread.

#include "pantry/error.h"
#include "pantry/proxy/client.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace pantry::orchestrator::coordinator {

namespace asio = boost::asio;
namespace http = boost::beast::http;

struct api_client_options {
  std::string user_agent = "pantry";
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds header_timeout{30'000};  // from request sent to response header
  // No body byte for this long fails call(), put_file()'s answer and download().
  std::chrono::milliseconds idle_timeout{30'000};
  // The same for stream(); nullopt waits for ever, as `pantry logs -f` must: a followed log may be
  // silent for minutes.
  std::optional<std::chrono::milliseconds> stream_idle_timeout;
  // put_file() reads the file into memory (the upstream client sends a body from a string): a
  // larger file is refused with errc::size_mismatch, before anything is sent.
  std::uint64_t max_upload = std::uint64_t{8} << 30;
  // For an https:// base URL: a PEM CA bundle to trust instead of the system store.
  std::optional<std::string> ca_file;
  // Read HTTP_PROXY / HTTPS_PROXY / NO_PROXY. Off by default: a pantry is usually on loopback or
  // the local network, and loopback is not special to NO_PROXY.
  bool use_env_proxy = false;
};

class api_client {
 public:
  // An answer of any status; the caller decides which ones it expects (failure() words the rest).
  struct reply {
    unsigned status = 0;
    http::fields headers;
    std::string body;    // empty for HEAD
    std::string method;  // "GET", for messages
    std::string url;     // the full URL the request went to
  };

  // `base_url`: "http://127.0.0.1:8585" or "https://ci.example:8585" (a trailing '/' is dropped);
  // request paths are appended to it. `token`: pantry's control token or a runner's token.
  api_client(std::string base_url, std::string token, api_client_options opt = {});
  ~api_client();
  api_client(const api_client&) = delete;
  api_client& operator=(const api_client&) = delete;

  // The default limit of an answer's body that call() reads into memory.
  static constexpr std::size_t kMaxAnswer = std::size_t{1} << 20;

  // Sends `body` (with `headers`) to base_url + `path` and reads the whole answer. Fails only when
  // no answer came (the error names the URL and the cause) or its body is larger than `limit`
  // (errc::size_mismatch); a 4xx or 5xx is a reply, for the caller to judge.
  result<reply> call(http::verb method, std::string path, std::string body = {},
                     http::fields headers = {}, std::size_t limit = kMaxAnswer);

  // call() with the bytes of `file` as the body, sent as `content_type` (and `headers`). Fails
  // naming the file when it cannot be read or is larger than options.max_upload.
  result<reply> put_file(http::verb method, std::string path, const std::filesystem::path& file,
                         std::string content_type, http::fields headers = {});

  // GETs `path` into `out_file` (written beside it as "<out_file>.part" and renamed when whole, so
  // a failed download leaves no partial file under the name). Returns the status (2xx); any
  // other status is an error (see failure()) and writes nothing.
  result<unsigned> download(std::string path, const std::filesystem::path& out_file);

  // Sends a request and hands the answer's body bytes to `on_bytes` as they arrive, until the body
  // ends or `on_bytes` returns false (the connection is then closed). Returns the status (2xx);
  // any other status is an error (see failure()) and `on_bytes` is not called. Waits for body
  // bytes as long as options.stream_idle_timeout says.
  result<unsigned> stream(http::verb method, std::string path, std::string body,
                          const std::function<bool(std::string_view bytes)>& on_bytes,
                          http::fields headers = {});

  // The error for an answer the caller did not expect: `what` (may be empty), the request, the
  // status and the server's message (the text of the body, or the "error"/"message" of a JSON
  // one, or the first OCI error's message), e.g.
  //   "storing a layer: POST http://127.0.0.1:8585/api/v1/build/cache/ab12… answered 400: …".
  // 404 is errc::not_found, 400 errc::invalid_argument, 409 errc::already_exists, the rest
  // errc::io_error.
  static error failure(std::string_view what, const reply& r);

  const std::string& base_url() const noexcept;

  // For asynchronous helpers that share this client's connections (the builder's image puller):
  // the executor they must run on (a strand of the private context), the HTTP client (whose
  // requests carry no token unless the helper adds it), and run(), which runs one such coroutine
  // to its end on the calling thread.
  asio::any_io_executor executor() const;
  const std::shared_ptr<proxy::client>& http_client() const noexcept;
  template <class T>
  result<T> run(asio::awaitable<result<T>> task);

 private:
  class impl;
  // Runs `task` on the private context until it and everything it started are done; an
  // exception that escapes it is an error.
  std::optional<error> run_to_end(asio::awaitable<void> task);

  std::unique_ptr<impl> impl_;
};

template <class T>
result<T> api_client::run(asio::awaitable<result<T>> task) {
  std::optional<result<T>> out;
  auto keep = [](asio::awaitable<result<T>> t,
                 std::optional<result<T>>& o) -> asio::awaitable<void> {
    auto r = co_await std::move(t);
    o.emplace(std::move(r));
  };
  if (auto e = run_to_end(keep(std::move(task), out))) return std::move(*e);
  if (!out) return error(errc::io_error, "bug: a client task ended without a result");
  return std::move(*out);
}

}  // namespace pantry::orchestrator::coordinator
