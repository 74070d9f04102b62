#include "pantry/proxy/flight.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <vector>

namespace pantry::proxy {
namespace {

using wake_channel = asio::experimental::concurrent_channel<void(boost::system::error_code)>;

// The not-yet-committed tail lives in segments of this size. The fetch reads from upstream
// straight into the free end of the last one, so every segment but the last is full and the
// segment holding any offset is found by division, not by a walk.
constexpr std::size_t kSegment = 256 * 1024;

// Waking a hundred readers for every few kilobytes the upstream socket yields costs more than
// the bytes are worth: readers are woken once this much has arrived since the last wake-up, or
// once kWakeDelay has passed since bytes arrived that no reader was told of.
constexpr std::uint64_t kWakeStep = 1024 * 1024;
constexpr auto kWakeDelay = std::chrono::milliseconds(5);

// A completion handler parked while the cache's writer thread works for it. It counts as work
// on its executor, so that the executor's context keeps running until the handler is back.
template <class Handler>
struct parked_handler {
  explicit parked_handler(Handler h)
      : handler(std::move(h)), work(asio::get_associated_executor(handler)) {}
  Handler handler;
  asio::executor_work_guard<asio::associated_executor_t<Handler>> work;
};

// Calls the parked handler with `args` on its own executor. The calling thread (the cache's
// writer thread) gives up its hold on the handler here, so that everything the handler owns is
// destroyed on that executor.
template <class Handler, class... Args>
void resume_on_executor(std::shared_ptr<parked_handler<Handler>> p, Args... args) {
  auto ex = p->work.get_executor();
  asio::post(ex, [p = std::move(p), ... args = std::move(args)]() mutable {
    std::move(p->handler)(std::move(args)...);
  });
}

}  // namespace

struct flight_table::state {
  std::shared_ptr<cache::store> store;
  std::shared_ptr<client> upstream;
  mutable std::mutex mutex;
  std::unordered_map<cache::digest, std::weak_ptr<flight::impl>, cache::digest_hash>
      flights;  // guarded by mutex

  // Commits handed to the cache's writer thread whose outcome has not yet been posted back to
  // its flight's executor. Shared with those writer-thread callbacks, which must not hold the
  // state itself (its last reference would take the client with it on the writer thread).
  struct commit_count {
    std::mutex mutex;
    std::condition_variable idle;
    std::size_t running = 0;  // guarded by mutex
  };
  const std::shared_ptr<commit_count> commits = std::make_shared<commit_count>();
};

// Threads: the fetch (run()) runs on the flight's executor and owns everything bound to an
// io_context: the upstream response, the wake-up timer and, through the table's state, the
// client. It ends, and drops them, there. The cache's writer thread only stores progress into an
// atomic and posts the commit's outcome back to that executor; it never holds a reference to the
// flight. What readers share (this object) holds nothing bound to an io_context once no reader
// waits, so the last of them may let go of it on any thread.
class flight::impl : public std::enable_shared_from_this<flight::impl> {
 public:
  explicit impl(fetch_spec spec) : spec_(std::move(spec)) {}

  asio::awaitable<void> run(std::shared_ptr<flight_table::state> table);
  // The flight is verified over `reader`, the blob complete in the cache: nothing to fetch.
  void verify_over(cache::blob_reader reader, std::string content_type);
  asio::awaitable<result<flight_head>> wait_head();
  asio::awaitable<result<flight_bytes>> read_some(std::uint64_t offset,
                                                  std::span<std::byte> scratch);
  bool verified() {
    std::lock_guard g(mutex_);
    return phase_ == phase::verified;
  }
  flight_refusal refusal() {
    std::lock_guard g(mutex_);
    return refusal_;
  }

 private:
  enum class phase { connecting, streaming, verified, failed };

  // Streams the upstream body into writer_ and the tail. True once the whole body came; false
  // when the flight ended without a commit to make (it failed, or found the blob cached).
  asio::awaitable<bool> fetch(flight_table::state& table);
  // Hands writer_'s commit to the cache's writer thread; resumes on this coroutine's executor.
  asio::awaitable<result<cache::object_info>> commit(flight_table::state& table);
  // Tells readers the commit's outcome.
  void settle(const result<cache::object_info>& committed, flight_table::state& table);
  void fail(error e);
  void leave_table(flight_table::state& table);
  // Wakes every waiting reader. Requires mutex_.
  void notify_locked();
  // After the fetch received bytes: wakes readers now, or arms `wake` to do it shortly.
  // Requires mutex_.
  void announce_locked(asio::steady_timer& wake);
  // Waits for the next notify; `lk` is released while waiting.
  asio::awaitable<void> wait(std::unique_lock<std::mutex>& lk);
  // Takes in the writer thread's progress and drops tail segments that lie wholly below
  // committed_. Requires mutex_.
  void trim_locked();

  const fetch_spec spec_;

  std::mutex mutex_;
  phase phase_ = phase::connecting;  // guarded by mutex_
  std::optional<error> error_;       // guarded by mutex_
  flight_refusal refusal_;           // guarded by mutex_
  flight_head head_;                 // guarded by mutex_
  std::uint64_t received_ = 0;       // guarded by mutex_
  std::uint64_t committed_ = 0;      // guarded by mutex_
  std::uint64_t tail_start_ = 0;     // guarded by mutex_
  // Segments of kSegment bytes; tail_start_ is a multiple of kSegment. The fetch writes bytes
  // at and past received_ without the mutex; readers see only bytes below received_, which
  // never change, through views that share the segment (so trimming never frees it under them).
  std::deque<std::shared_ptr<std::byte[]>> tail_;       // guarded by mutex_
  std::vector<std::shared_ptr<wake_channel>> waiters_;  // guarded by mutex_
  std::uint64_t announced_ = 0;  // received_ at the last wake-up; guarded by mutex_
  bool wake_armed_ = false;      // the fetch's wake-up timer is set; guarded by mutex_
  // Set once verified; shared by readers, which is safe: a blob_reader holds no transaction or
  // position between calls.
  std::shared_ptr<cache::blob_reader> verified_reader_;  // guarded by mutex_

  // What the writer thread reports committed (writer_.on_progress), taken in by trim_locked. A
  // box of its own, so that the writer thread never holds the flight.
  const std::shared_ptr<std::atomic<std::uint64_t>> progress_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  // The fetch coroutine's own; readers use it only through visit_committed, which is safe.
  cache::blob_writer writer_;
};

void flight::impl::notify_locked() {
  announced_ = received_;
  for (auto& w : waiters_)
    w->try_send(boost::system::error_code{});
  waiters_.clear();
}

void flight::impl::announce_locked(asio::steady_timer& wake) {
  if (received_ - announced_ >= kWakeStep) {
    notify_locked();
    return;
  }
  if (wake_armed_) return;
  wake_armed_ = true;
  wake.expires_after(kWakeDelay);
  // Also called, with operation_aborted, when the fetch ends and destroys the timer: readers
  // then learn of the last bytes at once.
  wake.async_wait([weak = weak_from_this()](boost::system::error_code) {
    if (auto f = weak.lock()) {
      std::lock_guard g(f->mutex_);
      f->wake_armed_ = false;
      if (f->announced_ != f->received_) f->notify_locked();
    }
  });
}

asio::awaitable<void> flight::impl::wait(std::unique_lock<std::mutex>& lk) {
  // A channel with room for one wake-up: a notify that comes before the reader starts waiting is
  // kept, not lost.
  auto ch = std::make_shared<wake_channel>(co_await asio::this_coro::executor, 1);
  waiters_.push_back(ch);
  lk.unlock();
  // A reader destroyed while it waits (with its io_context) takes its channel off the list: the
  // channel belongs to that context and must not stay in a flight that others still hold.
  struct unlist {
    impl* self;
    const wake_channel* ch;
    bool woken = false;
    ~unlist() {
      if (woken) return;
      std::lock_guard g(self->mutex_);
      std::erase_if(self->waiters_, [&](const auto& w) { return w.get() == ch; });
    }
  } guard{this, ch.get()};
  co_await ch->async_receive(asio::as_tuple(asio::use_awaitable));
  guard.woken = true;
  lk.lock();
}

void flight::impl::trim_locked() {
  committed_ = std::max(committed_, progress_->load(std::memory_order_acquire));
  // The segment the fetch is reading into ends past received_ >= committed_, so it stays.
  while (!tail_.empty() && tail_start_ + kSegment <= committed_) {
    tail_start_ += kSegment;
    tail_.pop_front();
  }
}

void flight::impl::verify_over(cache::blob_reader reader, std::string content_type) {
  std::lock_guard g(mutex_);
  phase_ = phase::verified;
  head_ = {reader.size(), std::move(content_type)};
  received_ = committed_ = reader.size();
  verified_reader_ = std::make_shared<cache::blob_reader>(std::move(reader));
  notify_locked();
}

void flight::impl::fail(error e) {
  std::lock_guard g(mutex_);
  if (phase_ == phase::verified || phase_ == phase::failed) return;
  spdlog::warn("fetch {} for {} failed: {}", spec_.req.url, spec_.id.short_str(), e.message);
  phase_ = phase::failed;
  error_ = std::move(e);
  tail_.clear();
  notify_locked();
}

void flight::impl::leave_table(flight_table::state& table) {
  std::lock_guard g(table.mutex);
  auto it = table.flights.find(spec_.id);
  if (it != table.flights.end() && it->second.lock().get() == this) table.flights.erase(it);
}

asio::awaitable<void> flight::impl::run(std::shared_ptr<flight_table::state> table) {
  if (co_await fetch(*table)) {
    auto committed = co_await commit(*table);
    settle(committed, *table);
  }
  leave_table(*table);
  // Returning here, on the flight's executor, drops the table's state (and perhaps the client
  // with it) and, unless a reader still holds the flight, the flight.
}

asio::awaitable<bool> flight::impl::fetch(flight_table::state& table) {
  const std::string& url = spec_.req.url;

  auto sent = co_await table.upstream->send(spec_.req);
  if (!sent) {
    fail(sent.error());
    co_return false;
  }
  // Destroyed when this returns, before the commit: a connection read to its end goes back to
  // the pool at once.
  response res = std::move(*sent);
  if (res.status() != 200) {
    {
      std::lock_guard g(mutex_);
      refusal_.status = res.status();
      refusal_.retry_after = std::string(res.headers()[http::field::retry_after]);
    }
    bool gone = res.status() == 404 || res.status() == 410;
    fail(error(gone ? errc::not_found : errc::io_error,
               "upstream answered " + std::to_string(res.status()) + " for GET " + url));
    co_return false;
  }
  auto length = res.content_length();
  if (spec_.size && length && *spec_.size != *length) {
    fail(error(errc::size_mismatch, "upstream GET " + url + " announced " +
                                        std::to_string(*length) + " bytes, but the index said " +
                                        std::to_string(*spec_.size)));
    co_return false;
  }
  std::string content_type(res.headers()[http::field::content_type]);

  auto w = table.store->begin_blob(spec_.id, spec_.media_type, spec_.size ? spec_.size : length);
  if (!w && w.error().is(errc::already_exists)) {
    // Committed since join() looked, by something other than a flight of this table (a blob
    // stored whole, an upload).
    if (auto reader = table.store->open_blob(spec_.id)) {
      verify_over(std::move(*reader), content_type);
    } else {
      std::lock_guard g(mutex_);
      phase_ = phase::failed;
      error_ = reader.error();
      notify_locked();
    }
  }
  if (!w) {
    if (!w.error().is(errc::already_exists)) fail(w.error());
    co_return false;
  }
  writer_ = std::move(*w);
  writer_.on_progress([progress = progress_](std::uint64_t committed) {
    progress->store(committed, std::memory_order_release);
  });
  // Bound to this coroutine's executor, so it lives here, not in what readers share.
  asio::steady_timer wake(co_await asio::this_coro::executor);
  {
    std::lock_guard g(mutex_);
    head_ = {spec_.size ? spec_.size : length, content_type};
    phase_ = phase::streaming;
    notify_locked();
  }

  for (;;) {
    std::span<std::byte> space;
    {
      std::lock_guard g(mutex_);
      std::uint64_t end = tail_start_ + tail_.size() * kSegment;
      if (received_ == end) {
        tail_.push_back(std::make_shared_for_overwrite<std::byte[]>(kSegment));
        end += kSegment;
      }
      auto room = static_cast<std::size_t>(end - received_);
      space = std::span(tail_.back().get() + (kSegment - room), room);
    }
    auto n = co_await res.read_some(space);
    if (!n) {
      writer_.abort();
      fail(n.error());
      co_return false;
    }
    if (*n == 0) break;
    if (auto wr = writer_.write(space.first(*n)); !wr) {
      writer_.abort();
      fail(wr.error());
      co_return false;
    }
    std::lock_guard g(mutex_);
    received_ += *n;
    trim_locked();
    announce_locked(wake);
  }
  co_return true;
}

asio::awaitable<result<cache::object_info>> flight::impl::commit(flight_table::state& table) {
  // The commit checks size and digest on the cache's writer thread. Its callback only posts the
  // outcome back here: the flight, its timer and the client must never be let go of there.
  auto initiation = [this, commits = table.commits](auto handler) {
    auto parked = std::make_shared<parked_handler<decltype(handler)>>(std::move(handler));
    {
      std::lock_guard g(commits->mutex);
      ++commits->running;
    }
    writer_.commit_async([parked, commits](result<cache::object_info> r) mutable {
      resume_on_executor(std::move(parked), std::move(r));
      {
        std::lock_guard g(commits->mutex);
        --commits->running;
      }
      commits->idle.notify_all();
    });
  };
  // Built beforehand, not inside the co_await expression (see CONTRIBUTING.md, gcc 12 traps).
  auto committed = co_await asio::async_initiate<const asio::use_awaitable_t<>,
                                                 void(result<cache::object_info>)>(
      initiation, asio::use_awaitable);
  co_return committed;
}

void flight::impl::settle(const result<cache::object_info>& committed, flight_table::state& table) {
  if (!committed) {
    fail(committed.error());
    return;
  }
  auto reader = table.store->open_blob(spec_.id);
  std::lock_guard g(mutex_);
  if (reader) {
    phase_ = phase::verified;
    committed_ = received_;
    verified_reader_ = std::make_shared<cache::blob_reader>(std::move(*reader));
    tail_.clear();
    tail_start_ = received_;
  } else {
    phase_ = phase::failed;
    error_ = reader.error();
  }
  notify_locked();
}

asio::awaitable<result<flight_head>> flight::impl::wait_head() {
  std::unique_lock lk(mutex_);
  while (phase_ == phase::connecting)
    co_await wait(lk);
  if (phase_ == phase::failed) co_return *error_;
  co_return head_;
}

asio::awaitable<result<flight_bytes>> flight::impl::read_some(std::uint64_t offset,
                                                              std::span<std::byte> scratch) {
  std::unique_lock lk(mutex_);
  for (;;) {
    if (phase_ == phase::failed) co_return *error_;
    bool verified = phase_ == phase::verified;
    std::uint64_t limit = verified ? received_ : (received_ > 0 ? received_ - 1 : 0);
    if (verified && offset >= limit) co_return flight_bytes{};
    if (offset < limit && !scratch.empty()) {
      std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), limit - offset));
      if (verified) {
        auto reader = verified_reader_;
        lk.unlock();
        auto n = reader->read(offset, scratch.first(want));
        if (!n) co_return n.error();
        co_return flight_bytes{nullptr, scratch.first(*n)};
      }
      // Readers take in the writer thread's progress too, so a stalled upstream does not keep
      // committed segments in memory (and a late joiner reads them from the cache).
      trim_locked();
      if (offset >= tail_start_) {
        // From memory, without a copy: the segment holding `offset`, found by division, up to
        // its end.
        std::uint64_t rel = offset - tail_start_;
        const auto& segment = tail_[static_cast<std::size_t>(rel / kSegment)];
        auto from = static_cast<std::size_t>(rel % kSegment);
        std::size_t n = std::min(want, kSegment - from);
        co_return flight_bytes{segment, std::span<const std::byte>(segment.get() + from, n)};
      }
      // Below the tail: the bytes are committed to the cache.
      std::uint64_t committed = committed_;
      lk.unlock();
      std::size_t copied = 0;
      auto v = writer_.visit_committed(offset, std::min<std::uint64_t>(want, committed - offset),
                                       [&](std::span<const std::byte> piece) {
                                         std::memcpy(scratch.data() + copied, piece.data(),
                                                     piece.size());
                                         copied += piece.size();
                                         return piece.size();
                                       });
      if (!v) co_return v.error();
      co_return flight_bytes{nullptr, scratch.first(copied)};
    }
    co_await wait(lk);
  }
}

bool flight::verified() const {
  return impl_->verified();
}

flight_refusal flight::refusal() const {
  return impl_->refusal();
}

asio::awaitable<result<flight_head>> flight::wait_head() {
  return impl_->wait_head();
}

asio::awaitable<result<std::size_t>> flight::read(std::uint64_t offset, std::span<std::byte> out) {
  auto got = co_await impl_->read_some(offset, out);
  if (!got) co_return got.error();
  if (got->hold) std::memcpy(out.data(), got->bytes.data(), got->bytes.size());
  co_return got->bytes.size();
}

asio::awaitable<result<flight_bytes>> flight::read_some(std::uint64_t offset,
                                                        std::span<std::byte> scratch) {
  return impl_->read_some(offset, scratch);
}

flight_table::flight_table(std::shared_ptr<cache::store> store, std::shared_ptr<client> upstream)
    : state_(std::make_shared<state>()) {
  state_->store = std::move(store);
  state_->upstream = std::move(upstream);
}

flight_table::~flight_table() {
  // A commit's outcome still on its way to a flight's executor would land in an io_context that
  // may be destroyed right after this table (pantry serve tears down its services, then the
  // server). The writer thread finishes it without the I/O threads, so this wait ends.
  auto& commits = *state_->commits;
  std::unique_lock lk(commits.mutex);
  commits.idle.wait(lk, [&] { return commits.running == 0; });
}

flight flight_table::join(const fetch_spec& spec, asio::any_io_executor ex, bool& joined) {
  std::lock_guard g(state_->mutex);
  auto& slot = state_->flights[spec.id];
  if (auto running = slot.lock()) {
    joined = true;
    return flight(std::move(running));
  }
  // The double check. The caller found no complete blob before it came here, but a flight may
  // have committed it and left the table since: a flight leaves only once its commit is visible,
  // so the cache has the blob now, and the caller joins that flight's result there instead of
  // fetching it again. Looked up under the mutex, so no flight can commit and leave between this
  // look and the start of a new one. stat_blob first: a miss must not count twice in the cache's
  // counters (the caller's open_blob counted it).
  if (state_->store->stat_blob(spec.id)) {
    if (auto reader = state_->store->open_blob(spec.id)) {
      state_->flights.erase(spec.id);
      joined = true;
      auto done = std::make_shared<flight::impl>(spec);
      const std::string media_type = reader->info().media_type;
      done->verify_over(std::move(*reader), media_type);
      return flight(std::move(done));
    }
  }
  joined = false;
  auto f = std::make_shared<flight::impl>(spec);
  slot = f;
  // The fetch belongs to the flight: it runs on its own and keeps the flight (and the table's
  // state) alive until it ends on `ex`, whoever is still reading.
  asio::co_spawn(
      ex, [f, table = state_]() -> asio::awaitable<void> { co_await f->run(table); },
      asio::detached);
  return flight(std::move(f));
}

std::size_t flight_table::size() const {
  std::lock_guard g(state_->mutex);
  std::size_t n = 0;
  for (const auto& [id, f] : state_->flights)
    n += f.expired() ? 0 : 1;
  return n;
}

}  // namespace pantry::proxy
