// The single flight against an upstream written here (a plain socket server on 127.0.0.1 that
// sends what the test tells it, when it tells it: the header, body pieces, a close, a reset) and
// a real cache store in a temp dir. Readers run as coroutines on strands of a two-thread
// io_context, as server connections do; the test thread drives the upstream and waits on what
// the readers have received.

#include "pantry/proxy/flight.h"

#include "pantry/cache/digest.h"
#include "pantry/cache/store.h"
#include "pantry/proxy/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace pantry::proxy {
namespace {

using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr auto tok = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kMedia = "application/octet-stream";

// Polls `done` until it holds. The limit only keeps a broken test from hanging; nothing is
// asserted about how long it took.
template <class Pred>
bool eventually(Pred done, std::chrono::seconds limit = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// `n` pseudo-random bytes, the same for the same seed.
std::string pattern(std::size_t n, std::uint64_t seed) {
  std::string out(n, '\0');
  std::mt19937_64 gen(seed);
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t x = gen();
    for (std::size_t j = i; j < std::min(n, i + 8); ++j, x >>= 8)
      out[j] = static_cast<char>(x);
  }
  return out;
}

::testing::AssertionResult same_bytes(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  auto diff = std::mismatch(got.begin(), got.end(), want.begin(), want.end());
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size() << "; first difference at byte "
         << (diff.first - got.begin());
}

std::string describe(const error& e) {
  return e.code.message() + ": " + e.message;
}

// ---- the upstream -----------------------------------------------------------------------------

// What a scripted upstream response does next.
struct step {
  enum class kind {
    send,   // write `bytes`
    done,   // the response is complete; wait for the next request on this connection
    close,  // shut the connection down cleanly
    reset,  // abort the connection (RST)
  };
  kind what = kind::send;
  std::string bytes;
};

using step_channel = asio::experimental::concurrent_channel<void(boost::system::error_code, step)>;

// One accepted upstream connection.
class upstream_conn {
 public:
  upstream_conn(tcp::socket s, step_channel& steps) : socket_(std::move(s)), steps_(steps) {}

  // The next request head, or nothing at EOF.
  asio::awaitable<std::optional<std::string>> read_head() {
    for (;;) {
      if (auto end = buf_.find("\r\n\r\n"); end != std::string::npos) {
        std::string head = buf_.substr(0, end + 4);
        buf_.erase(0, end + 4);
        co_return head;
      }
      char chunk[4096];
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk), tok);
      if (ec) co_return std::nullopt;
      buf_.append(chunk, n);
    }
  }

  asio::awaitable<bool> write(std::string_view bytes) {
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(bytes), tok);
    co_return !ec;
  }

  // Plays the steps the test pushes. Returns true when the response is complete and the
  // connection stays open, false when a step (or a failed write) ended the connection.
  asio::awaitable<bool> play() {
    for (;;) {
      auto [ec, s] = co_await steps_.async_receive(tok);
      if (ec) co_return false;
      boost::system::error_code ignored;
      switch (s.what) {
        case step::kind::send:
          if (!co_await write(s.bytes)) co_return false;
          break;
        case step::kind::done:
          co_return true;
        case step::kind::close:
          socket_.shutdown(tcp::socket::shutdown_both, ignored);
          socket_.close(ignored);
          co_return false;
        case step::kind::reset:
          socket_.set_option(tcp::socket::linger(true, 0), ignored);
          socket_.close(ignored);
          co_return false;
      }
    }
  }

 private:
  tcp::socket socket_;
  step_channel& steps_;
  std::string buf_;
};

// Answers request number `index` (counted over all connections, from 0); returns false to close
// the connection.
using respond_fn = std::function<asio::awaitable<bool>(upstream_conn&, int index)>;

// A server on 127.0.0.1 and a free port, on a thread of its own. It counts every request it gets.
class upstream {
 public:
  explicit upstream(respond_fn fn)
      : respond_(std::move(fn)),
        acceptor_(ctx_, {asio::ip::make_address("127.0.0.1"), 0}),
        steps_(ctx_, 1024) {
    asio::co_spawn(ctx_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ctx_.run(); });
  }
  ~upstream() {
    ctx_.stop();
    thread_.join();
  }
  upstream(const upstream&) = delete;
  upstream& operator=(const upstream&) = delete;

  std::string url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) +
           std::string(path);
  }
  int requests() const { return requests_.load(); }
  std::vector<std::string> heads() const {
    std::lock_guard g(mu_);
    return heads_;
  }

  // Queues a step for the scripted response being played, or the next one.
  void push(step s) {
    if (!steps_.try_send(boost::system::error_code{}, std::move(s))) {
      ADD_FAILURE() << "the upstream's step queue is full";
    }
  }
  void send(std::string bytes) { push({step::kind::send, std::move(bytes)}); }
  void done() { push({step::kind::done, {}}); }
  void reset() { push({step::kind::reset, {}}); }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor_.async_accept(tok);
      if (ec) co_return;
      asio::co_spawn(ctx_, serve(std::move(s)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket s) {
    upstream_conn c(std::move(s), steps_);
    for (;;) {
      auto head = co_await c.read_head();
      if (!head) co_return;
      const int index = requests_++;
      {
        std::lock_guard g(mu_);
        heads_.push_back(*head);
      }
      if (!co_await respond_(c, index)) co_return;
    }
  }

  respond_fn respond_;
  asio::io_context ctx_;  // destroyed after the members below, before respond_
  tcp::acceptor acceptor_;
  step_channel steps_;
  std::thread thread_;
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::vector<std::string> heads_;  // guarded by mu_
};

std::string ok_head(std::size_t length) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
         std::to_string(length) + "\r\n\r\n";
}

std::string chunked_head() {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
         "Transfer-Encoding: chunked\r\n\r\n";
}

std::string chunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + std::string(data) + "\r\n";
}

std::string reply(int status, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

// Every response played step by step as the test pushes steps.
respond_fn scripted() {
  return [](upstream_conn& c, int) -> asio::awaitable<bool> { co_return co_await c.play(); };
}

// The first response scripted, every later one `body` at once.
respond_fn scripted_then(std::string body) {
  return [body = std::move(body)](upstream_conn& c, int index) -> asio::awaitable<bool> {
    if (index == 0) co_return co_await c.play();
    co_return co_await c.write(ok_head(body.size()) + body);
  };
}

// ---- readers ----------------------------------------------------------------------------------

struct reader_options {
  std::size_t buffer = 64 * 1024;
  std::chrono::microseconds pause{0};  // between reads: a client slower than the fetch
  // Stop reading (and drop the flight) once this many bytes came: a client that goes away.
  std::uint64_t stop_after = std::numeric_limits<std::uint64_t>::max();
  // Read with read_some() (views of the flight's memory) instead of read(); with `hold`, keep
  // every view until the end, long after the flight has dropped its segments.
  bool views = false;
  bool hold = false;
};

// What one reader saw. The atomics may be read at any time; the rest once `done` is true.
struct reader {
  std::atomic<bool> joined_known{false};
  bool joined = false;  // set before joined_known
  std::atomic<std::uint64_t> got{0};
  std::atomic<int> reads_started{0};
  std::atomic<bool> done{false};
  std::optional<flight_head> head;
  std::optional<error> head_error;
  std::optional<error> read_error;
  std::string body;
  std::vector<std::pair<std::uint64_t, flight_bytes>> held;  // (offset, view) with `hold`
  std::uint64_t views = 0;                                   // read_some() answers from memory
};

// Reads `f` from byte 0 until its end or an error. After a failed wait_head it still tries one
// read, to see what read() says too.
asio::awaitable<void> read_flight(flight& f, reader& r, reader_options o) {
  std::vector<std::byte> buf(o.buffer);
  auto head = co_await f.wait_head();
  if (head) {
    r.head = *head;
  } else {
    r.head_error = head.error();
  }
  for (;;) {
    std::span<std::byte> out(buf);
    ++r.reads_started;
    std::span<const std::byte> got;
    if (o.views) {
      auto v = co_await f.read_some(r.body.size(), out);
      if (!v) {
        r.read_error = v.error();
        co_return;
      }
      got = v->bytes;
      if (v->hold) {
        ++r.views;
        if (o.hold) r.held.emplace_back(r.body.size(), *v);
      }
    } else {
      auto n = co_await f.read(r.body.size(), out);
      if (!n) {
        r.read_error = n.error();
        co_return;
      }
      got = std::span(buf).first(*n);
    }
    if (got.empty() || r.head_error) co_return;
    r.body.append(reinterpret_cast<const char*>(got.data()), got.size());
    r.got.store(r.body.size());
    if (r.body.size() >= o.stop_after) co_return;
    if (o.pause.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, o.pause);
      co_await t.async_wait(tok);
    }
  }
}

asio::awaitable<void> run_reader(flight f, std::shared_ptr<reader> r, reader_options o) {
  co_await read_flight(f, *r, o);
  f = flight();
  r->done.store(true);
}

// Joins as a server connection does: the fetch, if this starts it, runs on the joiner's strand.
asio::awaitable<void> join_and_read(flight_table& table, fetch_spec spec, std::shared_ptr<reader> r,
                                    reader_options o) {
  auto ex = co_await asio::this_coro::executor;
  bool joined = false;
  flight f = table.join(spec, ex, joined);
  r->joined = joined;
  r->joined_known.store(true);
  co_await read_flight(f, *r, o);
  f = flight();
  r->done.store(true);
}

// ---- threads ----------------------------------------------------------------------------------

// Where a client was destroyed. The flight table holds its client and every flight holds the
// table's state, so once the test has let go of the table this tells which thread let go of a
// flight's last hold on what it fetched with.
struct release_record {
  std::mutex mutex;
  std::optional<std::thread::id> thread;  // guarded by mutex
  std::atomic<bool> released{false};      // set after `thread`
};

// Passes requests on to a real client and records where it is destroyed.
class recording_client final : public client {
 public:
  recording_client(std::shared_ptr<client> inner, std::shared_ptr<release_record> record)
      : inner_(std::move(inner)), record_(std::move(record)) {}
  ~recording_client() override {
    std::lock_guard g(record_->mutex);
    record_->thread = std::this_thread::get_id();
    record_->released.store(true);
  }
  asio::awaitable<result<response>> send(request req) override {
    co_return co_await inner_->send(std::move(req));
  }

 private:
  std::shared_ptr<client> inner_;
  std::shared_ptr<release_record> record_;
};

// Holds the cache's writer thread in a progress callback of a blob of the test's own until
// opened, so that whatever is queued behind it (a flight's commit) waits there. A callback is
// meant to return quickly; holding it is the point here.
class writer_hold {
 public:
  // Blocks the writer thread of `store`; false (with a failure added) if it could not.
  bool engage(cache::store& store) {
    const std::string bytes = pattern(cache::kChunkSize + 1, 99);
    auto w = store.begin_blob(cache::digest::of(bytes), std::string(kMedia), bytes.size());
    if (!w) {
      ADD_FAILURE() << "begin_blob: " << describe(w.error());
      return false;
    }
    writer_ = std::move(*w);
    writer_.on_progress([this](std::uint64_t) {
      std::unique_lock lk(mutex_);
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lk, [&] { return open_; });
    });
    // A full chunk goes to the writer thread once a byte past it arrives.
    if (auto r = writer_.write(std::as_bytes(std::span(bytes.data(), bytes.size()))); !r) {
      ADD_FAILURE() << "write: " << describe(r.error());
      return false;
    }
    std::unique_lock lk(mutex_);
    if (!cv_.wait_for(lk, 60s, [&] { return entered_; })) {
      ADD_FAILURE() << "the writer thread never committed the holding chunk";
      return false;
    }
    return true;
  }
  void open() {
    std::lock_guard g(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  ~writer_hold() {
    open();
    writer_.abort();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool entered_ = false;  // guarded by mutex_
  bool open_ = false;     // guarded by mutex_
  cache::blob_writer writer_;
};

::testing::AssertionResult finishes(const reader& r) {
  if (eventually([&] { return r.done.load(); })) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the reader did not finish; it has " << r.got.load() << " bytes";
}

// Succeeds iff the reader has (at least) `n` bytes.
::testing::AssertionResult reaches(const reader& r, std::uint64_t n) {
  eventually([&] { return r.got.load() >= n || r.done.load(); });
  if (r.got.load() >= n) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure()
                 << "the reader has " << r.got.load() << " bytes, waiting for " << n;
  if (r.done.load()) {
    failure << "; it ended";
    if (r.head_error) failure << " (wait_head: " << describe(*r.head_error) << ")";
    if (r.read_error) failure << " (read: " << describe(*r.read_error) << ")";
  }
  return failure;
}

// Succeeds iff the reader finished without an error holding exactly `want`.
::testing::AssertionResult reads_whole(const reader& r, const std::string& want) {
  if (!r.done.load()) {
    return ::testing::AssertionFailure() << "the reader is not done; it has " << r.got.load();
  }
  if (r.head_error) {
    return ::testing::AssertionFailure() << "wait_head failed: " << describe(*r.head_error);
  }
  if (r.read_error) {
    return ::testing::AssertionFailure()
           << "read failed after " << r.body.size() << " bytes: " << describe(*r.read_error);
  }
  return same_bytes(r.body, want);
}

// Succeeds iff the reader failed in read() with `e`, having received at most a prefix of `sent`
// that stops short of its last byte.
::testing::AssertionResult fails_reading(const reader& r, errc e, const std::string& sent) {
  if (!r.done.load()) {
    return ::testing::AssertionFailure() << "the reader is not done; it has " << r.got.load();
  }
  if (!r.read_error) {
    return ::testing::AssertionFailure()
           << "read() never failed; the reader got " << r.body.size() << " bytes";
  }
  if (!r.read_error->is(e)) {
    return ::testing::AssertionFailure() << "read() failed with " << describe(*r.read_error)
                                         << ", expected " << make_error_code(e).message();
  }
  if (r.body.size() >= sent.size()) {
    return ::testing::AssertionFailure()
           << "the reader got " << r.body.size() << " of " << sent.size() << " bytes";
  }
  return same_bytes(r.body, sent.substr(0, r.body.size()));
}

// ---- the fixture ------------------------------------------------------------------------------

class FlightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pantry-flight-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cache::options o;
    o.data_dir = dir_;
    o.durable = false;
    auto s = cache::store::open(o);
    ASSERT_TRUE(s) << describe(s.error());
    store_ = *s;
    client_options co;
    co.use_env_proxy = false;
    co.connect_timeout = 30s;
    co.header_timeout = 60s;
    co.idle_timeout = 60s;
    client_ = client::create(ioc_.get_executor(), co);
    table_ = std::make_unique<flight_table>(store_, client_);
    for (int i = 0; i < 2; ++i)
      threads_.emplace_back([this] { ioc_.run(); });
  }

  void TearDown() override {
    if (table_) {
      EXPECT_TRUE(eventually([&] { return table_->size() == 0; }))
          << table_->size() << " flights still running at the end of the test";
    }
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_)
      t.join();
    table_.reset();
    client_.reset();
    store_.reset();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  fetch_spec spec_for(const upstream& u, const std::string& body, bool size_known = true) {
    fetch_spec s;
    s.id = cache::digest::of(body);
    s.req.url = u.url("/blobs/" + s.id.hex());
    if (size_known) s.size = body.size();
    s.media_type = kMedia;
    return s;
  }

  // Joins from the test thread; a fetch this starts runs on a strand of its own.
  flight join(const fetch_spec& spec, bool& joined) {
    return table_->join(spec, asio::make_strand(ioc_), joined);
  }

  std::shared_ptr<reader> start_reader(flight f, reader_options o = {}) {
    auto r = std::make_shared<reader>();
    asio::co_spawn(asio::make_strand(ioc_), run_reader(std::move(f), r, o), asio::detached);
    return r;
  }

  // A reader that joins `spec` itself, on a strand of its own.
  std::shared_ptr<reader> start_joiner(const fetch_spec& spec, reader_options o = {}) {
    auto r = std::make_shared<reader>();
    asio::co_spawn(asio::make_strand(ioc_), join_and_read(*table_, spec, r, o), asio::detached);
    return r;
  }

  ::testing::AssertionResult table_empties() {
    if (eventually([&] { return table_->size() == 0; })) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << table_->size() << " flights still running";
  }

  // Succeeds iff `body` is a complete blob in the store, with the right size and sha256.
  ::testing::AssertionResult is_committed(const std::string& body) {
    auto id = cache::digest::of(body);
    auto info = store_->stat_blob(id);
    if (!info) {
      return ::testing::AssertionFailure()
             << id.short_str() << " is not committed: " << describe(info.error());
    }
    if (info->size != body.size()) {
      return ::testing::AssertionFailure() << id.short_str() << " was committed with " << info->size
                                           << " bytes, want " << body.size();
    }
    auto blob = store_->open_blob(id);
    if (!blob) return ::testing::AssertionFailure() << "open_blob: " << describe(blob.error());
    std::string stored(body.size(), '\0');
    auto n = blob->read(0, std::as_writable_bytes(std::span(stored.data(), stored.size())));
    if (!n) return ::testing::AssertionFailure() << "read: " << describe(n.error());
    if (cache::digest::of(stored) != id) {
      return ::testing::AssertionFailure()
             << "the stored bytes hash to " << cache::digest::of(stored).str() << ", not "
             << id.str();
    }
    return ::testing::AssertionSuccess();
  }

  // Succeeds iff nothing under `id` is in the store.
  ::testing::AssertionResult is_not_cached(const cache::digest& id) {
    auto info = store_->stat_blob(id);
    if (info) {
      return ::testing::AssertionFailure()
             << id.short_str() << " was committed (" << info->size << " bytes)";
    }
    if (!info.error().is(errc::not_found)) {
      return ::testing::AssertionFailure() << "stat_blob: " << describe(info.error());
    }
    auto blob = store_->open_blob(id);
    if (blob) {
      return ::testing::AssertionFailure()
             << "open_blob of " << id.short_str() << " succeeded (" << blob->size() << " bytes)";
    }
    return ::testing::AssertionSuccess();
  }

  std::filesystem::path dir_;
  asio::io_context ioc_;  // declared first: destroyed after everything that uses it
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  std::vector<std::thread> threads_;
  std::shared_ptr<cache::store> store_;
  std::shared_ptr<client> client_;
  std::unique_ptr<flight_table> table_;
};

// ---- tests ------------------------------------------------------------------------------------

TEST_F(FlightTest, ConcurrentJoinersShareOneUpstreamRequest) {
  upstream u(scripted());
  const std::string body = pattern(300 * 1024 + 7, 1);  // more than one tail segment
  const auto spec = spec_for(u, body);
  constexpr int kReaders = 20;
  std::vector<std::shared_ptr<reader>> readers;
  for (int i = 0; i < kReaders; ++i)
    readers.push_back(start_joiner(spec));
  // The upstream says nothing until told, so every joiner finds the flight running.
  for (int i = 0; i < kReaders; ++i) {
    ASSERT_TRUE(eventually([&] { return readers[i]->joined_known.load(); }))
        << "reader " << i << " never joined";
  }
  u.send(ok_head(body.size()));
  u.send(body.substr(0, 100'000));
  u.send(body.substr(100'000));
  u.done();

  int starters = 0;
  for (int i = 0; i < kReaders; ++i) {
    const reader& r = *readers[i];
    ASSERT_TRUE(finishes(r)) << "reader " << i;
    EXPECT_TRUE(reads_whole(r, body)) << "reader " << i;
    EXPECT_EQ(cache::digest::of(r.body).str(), spec.id.str()) << "reader " << i;
    ASSERT_TRUE(r.head.has_value()) << "reader " << i;
    EXPECT_EQ(r.head->length, std::optional<std::uint64_t>(body.size())) << "reader " << i;
    EXPECT_EQ(r.head->content_type, kMedia) << "reader " << i;
    starters += r.joined ? 0 : 1;
  }
  EXPECT_EQ(starters, 1) << "readers whose join started a fetch (joined == false)";
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 1);
  const auto heads = u.heads();
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_THAT(heads[0], ::testing::StartsWith("GET /blobs/" + spec.id.hex() + " HTTP/1.1\r\n"));
}

TEST_F(FlightTest, JoinedIsFalseOnlyForTheFirst) {
  upstream u(scripted());
  const std::string body = pattern(1000, 2);
  const auto spec = spec_for(u, body);
  std::vector<bool> joined(5);
  std::vector<flight> flights;
  for (std::size_t i = 0; i < joined.size(); ++i) {
    bool j = false;
    flights.push_back(join(spec, j));
    joined[i] = j;
  }
  EXPECT_EQ(joined, (std::vector<bool>{false, true, true, true, true}));
  EXPECT_EQ(table_->size(), 1u);
  u.send(ok_head(body.size()) + body);
  u.done();
  auto r = start_reader(flights.back());
  flights.clear();
  ASSERT_TRUE(finishes(*r));
  EXPECT_TRUE(reads_whole(*r, body));
  EXPECT_EQ(u.requests(), 1);
}

// The window of a check-then-act race: a client looks in the cache (a miss) while another's
// flight is still running; that flight commits and leaves the table; only then does the first
// client join. It must get the committed blob, not start a second upstream fetch. Here the
// client's look is the one before the first join, and its join comes after the flight left.
TEST_F(FlightTest, JoinAfterAFlightCommittedAndLeftIsServedFromTheCache) {
  const std::string body = pattern(300 * 1024 + 9, 15);
  upstream u(scripted_then(body));  // a second fetch would get the blob too
  const auto spec = spec_for(u, body);
  ASSERT_TRUE(is_not_cached(spec.id));  // the late client's look
  auto first = start_joiner(spec);
  ASSERT_TRUE(eventually([&] { return first->joined_known.load(); }));
  EXPECT_FALSE(first->joined);
  u.send(ok_head(body.size()) + body);
  u.done();
  ASSERT_TRUE(finishes(*first));
  EXPECT_TRUE(reads_whole(*first, body));
  ASSERT_TRUE(table_empties());
  ASSERT_TRUE(is_committed(body));

  auto late = start_joiner(spec);
  ASSERT_TRUE(finishes(*late));
  EXPECT_TRUE(late->joined) << "the late client started a flight of its own";
  EXPECT_TRUE(reads_whole(*late, body));
  ASSERT_TRUE(late->head.has_value());
  EXPECT_EQ(late->head->length, std::optional<std::uint64_t>(body.size()));
  EXPECT_EQ(late->head->content_type, kMedia);
  EXPECT_EQ(u.requests(), 1) << "upstream requests for one blob";
  EXPECT_EQ(table_->size(), 0u);
}

TEST_F(FlightTest, LateJoinerReadsFromByteZeroOutOfCacheAndMemory) {
  upstream u(scripted());
  const std::string body = pattern(4 * 1024 * 1024 + 5, 3);
  const std::size_t first = 3 * 1024 * 1024;
  const auto spec = spec_for(u, body);
  bool joined = true;
  auto early = start_reader(join(spec, joined));
  EXPECT_FALSE(joined);
  u.send(ok_head(body.size()));
  for (std::size_t off = 0; off < first; off += 512 * 1024)
    u.send(body.substr(off, std::min<std::size_t>(512 * 1024, first - off)));
  ASSERT_TRUE(reaches(*early, first - 1));

  // Wait until at least two chunks are committed to the map; the flush then runs after the
  // writer thread has told the flight (the progress callbacks run right after each commit), so
  // the late reader drops the tail segments below them and reads those bytes from the cache.
  std::uint64_t used = 0;
  ASSERT_TRUE(eventually([&] {
    auto st = store_->get_stats();
    used = st ? st->used_bytes : 0;
    return used >= 2 * cache::kChunkSize;
  })) << "the map holds "
      << used << " bytes; the fetch has not committed two chunks of " << cache::kChunkSize;
  auto flushed = store_->flush();
  ASSERT_TRUE(flushed) << describe(flushed.error());

  auto late = start_reader(join(spec, joined), {.buffer = 100 * 1024});
  EXPECT_TRUE(joined);
  // Everything the flight has, except the withheld last byte, while the upstream is paused.
  ASSERT_TRUE(reaches(*late, first - 1));
  EXPECT_EQ(late->got.load(), first - 1);

  u.send(body.substr(first));
  u.done();
  ASSERT_TRUE(finishes(*early));
  ASSERT_TRUE(finishes(*late));
  EXPECT_TRUE(reads_whole(*early, body));
  EXPECT_TRUE(reads_whole(*late, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 1);
}

TEST_F(FlightTest, LastByteIsWithheldUntilTheBodyIsVerified) {
  // Chunked, size unknown beforehand: every body byte arrives, but the body is not over (and
  // so neither checked nor committed) until the terminating chunk comes.
  upstream u(scripted());
  const std::string body = pattern(1000, 4);
  const auto spec = spec_for(u, body, /*size_known=*/false);
  bool joined = true;
  auto f = join(spec, joined);
  auto r1 = start_reader(f);
  u.send(chunked_head());
  u.send(chunk(body));
  ASSERT_TRUE(reaches(*r1, body.size() - 1));
  auto r2 = start_reader(f);
  ASSERT_TRUE(reaches(*r2, body.size() - 1));
  // The flight has every byte (a reader got size - 1, so it received size), yet no reader has
  // the last one and both still wait.
  EXPECT_EQ(r1->got.load(), body.size() - 1);
  EXPECT_EQ(r2->got.load(), body.size() - 1);
  EXPECT_FALSE(r1->done.load());
  EXPECT_FALSE(r2->done.load());
  EXPECT_TRUE(is_not_cached(spec.id));

  u.send("0\r\n\r\n");
  u.done();
  ASSERT_TRUE(finishes(*r1));
  ASSERT_TRUE(finishes(*r2));
  EXPECT_TRUE(reads_whole(*r1, body));
  EXPECT_TRUE(reads_whole(*r2, body));
  ASSERT_TRUE(r1->head.has_value());
  EXPECT_EQ(r1->head->length, std::nullopt);
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
}

TEST_F(FlightTest, LastByteIsWithheldWhileTheEndIsMissing) {
  upstream u(scripted());
  const std::string body = pattern(200 * 1024 + 3, 5);
  const std::size_t sent = body.size() - 10;
  const auto spec = spec_for(u, body);
  bool joined = true;
  auto r = start_reader(join(spec, joined));
  u.send(ok_head(body.size()));
  u.send(body.substr(0, sent));
  ASSERT_TRUE(reaches(*r, sent - 1));
  EXPECT_EQ(r->got.load(), sent - 1);
  EXPECT_FALSE(r->done.load());
  u.send(body.substr(sent));
  u.done();
  ASSERT_TRUE(finishes(*r));
  EXPECT_TRUE(reads_whole(*r, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
}

TEST_F(FlightTest, DigestMismatchFailsEveryReaderAndCachesNothing) {
  const std::string good = pattern(200 * 1024 + 1, 6);
  std::string bad = good;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x01);
  upstream u(scripted_then(good));
  const auto spec = spec_for(u, good);
  std::vector<std::shared_ptr<reader>> readers;
  for (int i = 0; i < 5; ++i)
    readers.push_back(start_joiner(spec));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(eventually([&] { return readers[i]->joined_known.load(); })) << "reader " << i;
  }
  u.send(ok_head(bad.size()) + bad);
  u.done();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(finishes(*readers[i])) << "reader " << i;
    EXPECT_TRUE(fails_reading(*readers[i], errc::digest_mismatch, bad)) << "reader " << i;
  }
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_not_cached(spec.id));

  // The failed flight is gone: the next join fetches again, from an upstream that now behaves.
  auto again = start_joiner(spec);
  ASSERT_TRUE(finishes(*again));
  EXPECT_FALSE(again->joined);
  EXPECT_TRUE(reads_whole(*again, good));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(good));
  EXPECT_EQ(u.requests(), 2);
}

TEST_F(FlightTest, UpstreamResetMidBodyFailsReadersAndCachesNothing) {
  // Past two cache chunks, so the reset also finds committed chunks to throw away.
  const std::string body = pattern(3 * 1024 * 1024 + 9, 7);
  const std::size_t before_reset = 2 * 1024 * 1024 + 512 * 1024;
  upstream u(scripted_then(body));
  const auto spec = spec_for(u, body);
  std::vector<std::shared_ptr<reader>> readers;
  for (int i = 0; i < 3; ++i)
    readers.push_back(start_joiner(spec));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(eventually([&] { return readers[i]->joined_known.load(); })) << "reader " << i;
  }
  u.send(ok_head(body.size()));
  u.send(body.substr(0, before_reset));
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(reaches(*readers[i], before_reset - 1)) << "reader " << i;
  u.reset();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(finishes(*readers[i])) << "reader " << i;
    EXPECT_TRUE(fails_reading(*readers[i], errc::io_error, body)) << "reader " << i;
    EXPECT_EQ(readers[i]->body.size(), before_reset - 1) << "reader " << i;
  }
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_not_cached(spec.id));

  auto again = start_joiner(spec);
  ASSERT_TRUE(finishes(*again));
  EXPECT_FALSE(again->joined);
  EXPECT_TRUE(reads_whole(*again, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 2);
}

TEST_F(FlightTest, UpstreamCloseBeforeTheEndFailsReaders) {
  const std::string body = pattern(100 * 1024, 8);
  upstream u(scripted());
  const auto spec = spec_for(u, body);
  auto r = start_joiner(spec);
  u.send(ok_head(body.size()));
  u.send(body.substr(0, 5000));
  ASSERT_TRUE(reaches(*r, 4999));
  u.push({step::kind::close, {}});
  ASSERT_TRUE(finishes(*r));
  EXPECT_TRUE(fails_reading(*r, errc::io_error, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_not_cached(spec.id));
}

TEST_F(FlightTest, UpstreamErrorStatusFailsTheHead) {
  struct outcome {
    int status;
    errc code;
  };
  const std::vector<outcome> cases = {
      {404, errc::not_found}, {410, errc::not_found}, {500, errc::io_error}, {503, errc::io_error}};
  // Each status gets an upstream of its own.
  for (const auto& c : cases) {
    SCOPED_TRACE("status " + std::to_string(c.status));
    const int status = c.status;
    upstream failing([status](upstream_conn& conn, int) -> asio::awaitable<bool> {
      co_return co_await conn.write(reply(status, "no such thing"));
    });
    const std::string body = pattern(1000, 100 + static_cast<std::uint64_t>(status));
    const auto spec = spec_for(failing, body);
    std::vector<std::shared_ptr<reader>> readers;
    for (int i = 0; i < 3; ++i)
      readers.push_back(start_joiner(spec));
    for (int i = 0; i < 3; ++i) {
      const reader& r = *readers[i];
      ASSERT_TRUE(finishes(r)) << "reader " << i;
      ASSERT_TRUE(r.head_error.has_value()) << "reader " << i << ": wait_head succeeded";
      EXPECT_TRUE(r.head_error->is(c.code))
          << "reader " << i << ": wait_head failed with " << describe(*r.head_error);
      EXPECT_THAT(r.head_error->message, HasSubstr("upstream answered " + std::to_string(status) +
                                                   " for GET " + spec.req.url));
      ASSERT_TRUE(r.read_error.has_value()) << "reader " << i << ": read() succeeded";
      EXPECT_TRUE(r.read_error->is(c.code))
          << "reader " << i << ": read() failed with " << describe(*r.read_error);
      EXPECT_EQ(r.body, "") << "reader " << i;
    }
    ASSERT_TRUE(table_empties());
    EXPECT_TRUE(is_not_cached(spec.id));
    EXPECT_GE(failing.requests(), 1);
    EXPECT_LE(failing.requests(), 3);  // at most one per flight; usually one in all
  }
}

TEST_F(FlightTest, AnnouncedSizeOtherThanExpectedFailsTheHead) {
  const std::string body = pattern(1000, 9);
  upstream u([&](upstream_conn& c, int) -> asio::awaitable<bool> {
    co_return co_await c.write(reply(200, body + "x"));
  });
  const auto spec = spec_for(u, body);
  auto r = start_joiner(spec);
  ASSERT_TRUE(finishes(*r));
  ASSERT_TRUE(r->head_error.has_value()) << "wait_head succeeded";
  EXPECT_TRUE(r->head_error->is(errc::size_mismatch)) << describe(*r->head_error);
  EXPECT_THAT(r->head_error->message, HasSubstr("announced 1001 bytes"));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_not_cached(spec.id));
}

TEST_F(FlightTest, ReaderThatReadsNothingNeverSlowsTheFetch) {
  const std::string body = pattern(3 * 1024 * 1024 + 17, 10);
  upstream u([&](upstream_conn& c, int) -> asio::awaitable<bool> {
    co_return co_await c.write(ok_head(body.size()) + body);
  });
  const auto spec = spec_for(u, body);
  bool joined = true;
  flight idle = join(spec, joined);
  EXPECT_FALSE(joined);
  // Nobody reads; the fetch runs to the end and commits anyway.
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  auto r = start_reader(std::move(idle), {.buffer = 256 * 1024});
  ASSERT_TRUE(finishes(*r));
  EXPECT_TRUE(reads_whole(*r, body));
  EXPECT_EQ(u.requests(), 1);
}

TEST_F(FlightTest, TrickleReachesAWaitingReader) {
  upstream u(scripted());
  const std::string body = pattern(1024 * 1024, 11);
  const auto spec = spec_for(u, body);
  bool joined = true;
  auto r = start_reader(join(spec, joined));
  u.send(ok_head(body.size()));
  ASSERT_TRUE(eventually([&] { return r->reads_started.load() >= 1; }))
      << "the reader never got the header";
  // Far less than the 64 KiB that wakes readers at once; the upstream then pauses.
  u.send(body.substr(0, 1000));
  ASSERT_TRUE(reaches(*r, 999));
  EXPECT_EQ(r->got.load(), 999u);
  // The reader is now waiting for more: a second small piece must reach it too.
  ASSERT_TRUE(eventually([&] { return r->reads_started.load() >= 2; }))
      << "reads started: " << r->reads_started.load();
  u.send(body.substr(1000, 3000));
  ASSERT_TRUE(reaches(*r, 3999));
  EXPECT_EQ(r->got.load(), 3999u);
  EXPECT_FALSE(r->done.load());
  u.send(body.substr(4000));
  u.done();
  ASSERT_TRUE(finishes(*r));
  EXPECT_TRUE(reads_whole(*r, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
}

TEST_F(FlightTest, FetchOutlivesTheClientThatStartedIt) {
  upstream u(scripted());
  const std::string body = pattern(2 * 1024 * 1024 + 1, 12);
  const auto spec = spec_for(u, body);
  // The first client reads a little, then goes away with its handle on the flight.
  auto quitter = start_joiner(spec, {.stop_after = 100 * 1024});
  ASSERT_TRUE(eventually([&] { return quitter->joined_known.load(); }));
  EXPECT_FALSE(quitter->joined);
  u.send(ok_head(body.size()));
  u.send(body.substr(0, 512 * 1024));
  ASSERT_TRUE(finishes(*quitter));
  EXPECT_FALSE(quitter->read_error.has_value()) << describe(*quitter->read_error);
  EXPECT_GE(quitter->body.size(), 100u * 1024);
  EXPECT_EQ(table_->size(), 1u) << "the flight left with its first client";

  auto second = start_joiner(spec);
  ASSERT_TRUE(eventually([&] { return second->joined_known.load(); }));
  EXPECT_TRUE(second->joined);
  u.send(body.substr(512 * 1024));
  u.done();
  ASSERT_TRUE(finishes(*second));
  EXPECT_TRUE(reads_whole(*second, body));
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 1);
}

TEST_F(FlightTest, FetchRunsToTheEndWithNoReaderLeft) {
  upstream u(scripted());
  const std::string body = pattern(300 * 1024, 13);
  const auto spec = spec_for(u, body);
  {
    bool joined = true;
    flight dropped = join(spec, joined);
    EXPECT_FALSE(joined);
  }
  u.send(ok_head(body.size()));
  u.send(body);
  u.done();
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 1);
}

TEST_F(FlightTest, LargeBodyReadAtDifferentPacesIsByteExact) {
  upstream u(scripted());
  // Several 1 MiB cache chunks and many 256 KiB tail segments, with neither boundary aligned.
  const std::string body = pattern(5 * 1024 * 1024 + 123, 14);
  const std::size_t piece = 300 * 1024 + 1;
  const auto spec = spec_for(u, body);
  bool joined = true;
  auto f = join(spec, joined);
  EXPECT_FALSE(joined);
  auto fast = start_reader(f, {.buffer = 256 * 1024, .views = true, .hold = true});
  auto odd = start_reader(f, {.buffer = 4093, .views = true});
  auto slow = start_reader(f, {.buffer = 64 * 1024, .pause = 2ms});
  std::shared_ptr<reader> late;
  u.send(ok_head(body.size()));
  for (std::size_t sent = 0; sent < body.size();) {
    const std::size_t n = std::min(piece, body.size() - sent);
    u.send(body.substr(sent, n));
    sent += n;
    if (sent == body.size()) break;
    // Keep the fetch just ahead of the fastest reader, so that readers join the tail at every
    // stage: in memory, already committed, and still arriving.
    ASSERT_TRUE(reaches(*fast, sent - 1)) << "after " << sent << " bytes were sent";
    if (!late && sent >= 3 * 1024 * 1024) late = start_joiner(spec, {.buffer = 77 * 1024});
  }
  u.done();
  ASSERT_NE(late, nullptr);
  for (const auto* r : {fast.get(), odd.get(), slow.get(), late.get()}) {
    ASSERT_TRUE(finishes(*r));
    EXPECT_TRUE(reads_whole(*r, body));
    EXPECT_EQ(cache::digest::of(r->body).str(), spec.id.str());
  }
  EXPECT_TRUE(late->joined);
  ASSERT_TRUE(table_empties());
  EXPECT_TRUE(is_committed(body));
  EXPECT_EQ(u.requests(), 1);
  // The views came from the flight's memory, and the ones kept past the end (the flight gone,
  // its segments dropped) still hold the bytes they showed.
  EXPECT_GT(fast->views, 0u);
  EXPECT_GT(odd->views, 0u);
  ASSERT_FALSE(fast->held.empty());
  for (const auto& [offset, v] : fast->held) {
    const std::string_view seen(reinterpret_cast<const char*>(v.bytes.data()), v.bytes.size());
    ASSERT_EQ(seen, std::string_view(body).substr(offset, v.bytes.size()))
        << "the view of " << v.bytes.size() << " bytes at " << offset << " changed";
  }
}

TEST_F(FlightTest, FlightLetsGoOfWhatItFetchedWithOnItsExecutorNotOnTheCacheWriterThread) {
  // The commit ends on the cache's writer thread. What the flight holds that belongs to an
  // io_context (its timer, the client with its pooled sockets) must still be let go of on the
  // flight's executor: from the writer thread that is a data race with the context's threads,
  // and a use after free once the context is gone.
  const std::string good = pattern(300 * 1024 + 3, 15);
  std::string bad = good;
  bad[bad.size() / 3] = static_cast<char>(bad[bad.size() / 3] ^ 0x20);
  upstream u(scripted());
  const auto spec = spec_for(u, good);
  const std::vector<std::thread::id> io_threads = {threads_[0].get_id(), threads_[1].get_id()};
  for (const bool corrupt : {true, false}) {
    SCOPED_TRACE(corrupt ? "a body with the wrong sha256" : "a good body");
    auto record = std::make_shared<release_record>();
    auto table =
        std::make_unique<flight_table>(store_, std::make_shared<recording_client>(client_, record));
    {
      bool joined = true;
      flight dropped = table->join(spec, asio::make_strand(ioc_), joined);
      EXPECT_FALSE(joined);
    }
    // Nobody reads, and only the flight holds the table's state now.
    table.reset();
    const std::string& sent = corrupt ? bad : good;
    u.send(ok_head(sent.size()) + sent);
    u.done();
    ASSERT_TRUE(eventually([&] { return record->released.load(); }))
        << "the flight never let go of its client";
    std::lock_guard g(record->mutex);
    ASSERT_TRUE(record->thread.has_value());
    EXPECT_THAT(io_threads, ::testing::Contains(*record->thread))
        << "the flight let go of its client on thread " << *record->thread
        << ", not on one of the io_context's threads " << io_threads[0] << " and " << io_threads[1];
  }
  EXPECT_TRUE(is_committed(good));
  EXPECT_EQ(u.requests(), 2);
}

TEST_F(FlightTest, TableGoesOnlyOnceItsFlightsCommitsAreHandedBack) {
  // pantry serve stops its I/O threads, tears down its services (and with them the flight
  // table), then destroys the server's io_contexts. A commit still with the cache's writer
  // thread then must not hand its outcome to a flight whose context is gone.
  writer_hold hold;
  ASSERT_TRUE(hold.engage(*store_));
  upstream u(scripted());
  const std::string body = pattern(100 * 1024, 16);
  const auto spec = spec_for(u, body);
  // One thread runs the flight's context: once a reader has every byte but the withheld last,
  // the fetch has handed its commit over (it does so in the handler that got the last bytes).
  auto ctx = std::make_unique<asio::io_context>(1);
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work(
      ctx->get_executor());
  std::thread runner([&] { ctx->run(); });
  auto table = std::make_unique<flight_table>(store_, client_);
  bool joined = true;
  auto r = std::make_shared<reader>();
  asio::co_spawn(asio::make_strand(*ctx),
                 run_reader(table->join(spec, asio::make_strand(*ctx), joined), r, {}),
                 asio::detached);
  EXPECT_FALSE(joined);
  u.send(ok_head(body.size()) + body);
  u.done();
  const bool got_all_but_one = reaches(*r, body.size() - 1);
  ctx->stop();
  runner.join();
  if (!got_all_but_one) hold.open();  // or the table below could wait for ever
  ASSERT_TRUE(got_all_but_one) << "the reader has " << r->got.load() << " bytes";

  std::atomic<bool> opened{false};
  std::thread opener([&] {
    std::this_thread::sleep_for(100ms);
    opened.store(true);
    hold.open();
  });
  table.reset();
  EXPECT_TRUE(opened.load())
      << "the flight table went while its flight's commit was still with the writer thread";
  opener.join();
  // The outcome posted to the flight's strand never runs: it goes, and the flight with it, with
  // the context's other handlers while the context still exists.
  work.reset();
  ctx.reset();
  EXPECT_TRUE(is_committed(body));
}

}  // namespace
}  // namespace pantry::proxy
