#pragma once

// HTTP serving pieces shared by the protocols: byte ranges, conditional requests, dates, serving a
// cached blob or a running flight, coalescing equal computations, and running blocking work off
// the I/O threads.

#include "pantry/cache/store.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/server.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace pantry::registry::detail {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using proxy::exchange;
using clock = cache::clock;

// The path of a request target, without its query.
std::string path_of(std::string_view target);

// The entry attribute that records the size of the blob an entry points at, when it is known
// before the blob is fetched (from an index page or a manifest).
inline constexpr std::string_view kSizeAttribute = "size";
// The blob size an entry's kSizeAttribute records, if it has a valid one.
std::optional<std::uint64_t> recorded_size(const cache::entry& e);

// The whole of a small cached blob (an index page, a manifest) as text.
result<std::string> read_small_blob(cache::store& store, const cache::digest& id);

// A range request "bytes=a-b" / "bytes=a-" / "bytes=-n" against a body of `size` bytes.
struct byte_range {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};
enum class range_answer { whole, partial, unsatisfiable };
range_answer parse_range(std::string_view header, std::uint64_t size, byte_range& out);

bool etag_matches(const exchange& ex, std::string_view etag);

// RFC 9110's IMF-fixdate: "Thu, 26 Nov 2026 16:09:00 GMT".
std::string http_date(clock::time_point t);
std::optional<std::time_t> parse_http_date(std::string_view text);

// Whether a cached representation with `etag`, stored at `modified`, is what the client has:
// If-None-Match decides when present; otherwise If-Modified-Since not before `modified` (RFC
// 9110 section 13.2.2). The 304 then carries the ETag.
bool not_modified(const exchange& ex, std::string_view etag, clock::time_point modified);

// Serves a complete cached blob with ETag, Last-Modified, Range and conditional requests;
// `extra` header lines are added (Docker-Content-Digest, …).
asio::awaitable<void> serve_blob(exchange& ex, cache::blob_reader& reader,
                                 const std::string& content_type, const http::fields& extra = {});

// Streams a flight's body to the client as it arrives, switching to the cache once the flight
// is verified. A flight that fails before its header answers `on_error(status, message)`; one
// that fails after bytes were sent resets the connection.
using error_responder =
    std::function<asio::awaitable<void>(exchange&, http::status, std::string message)>;
asio::awaitable<void> stream_flight(exchange& ex, proxy::flight& fl, cache::store& store,
                                    const cache::digest& id, const std::string& content_type,
                                    const http::fields& extra, const error_responder& on_error);

using proxy::off_thread;

// Runs one computation per key while callers with the same key wait for its result. The
// computation runs on its own (co_spawn), so a caller that goes away does not stop it.
template <class T>
class coalescer {
 public:
  asio::awaitable<T> run(const std::string& key, std::function<asio::awaitable<T>()> fn,
                         bool& joined) {
    using channel = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
    auto ex = co_await asio::this_coro::executor;
    auto ch = std::make_shared<channel>(ex, 1);
    std::shared_ptr<call> c;
    {
      std::lock_guard g(mutex_);
      auto& slot = calls_[key];
      joined = slot != nullptr;
      if (!slot) slot = std::make_shared<call>();
      c = slot;
      c->waiters.push_back(ch);
    }
    if (!joined) {
      asio::co_spawn(
          ex,
          [this, c, key, fn = std::move(fn)]() -> asio::awaitable<void> {
            T value = co_await fn();
            std::lock_guard g(mutex_);
            c->value = std::move(value);
            for (auto& w : c->waiters)
              w->try_send(boost::system::error_code{});
            c->waiters.clear();
            calls_.erase(key);
          },
          asio::detached);
    }
    co_await ch->async_receive(asio::as_tuple(asio::use_awaitable));
    std::lock_guard g(mutex_);
    co_return *c->value;
  }

 private:
  struct call {
    std::optional<T> value;
    std::vector<
        std::shared_ptr<asio::experimental::concurrent_channel<void(boost::system::error_code)>>>
        waiters;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<call>> calls_;  // guarded by mutex_
};

}  // namespace pantry::registry::detail
