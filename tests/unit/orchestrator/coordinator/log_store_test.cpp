#include "pantry/orchestrator/coordinator/log_store.h"

#include "cache_fixture.h"
#include "keys.h"
#include "unit/cache/test_util.h"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

namespace asio = boost::asio;
using cache::testing_util::fails_with;
using cache::testing_util::ok;
using namespace std::chrono_literals;

constexpr std::uint64_t kDay = 86400;

log_entry line(std::string text, std::string step = "test", log_stream stream = log_stream::out) {
  return log_entry{0, clock::now(), stream, std::move(step), std::move(text)};
}

// `n` lines "<prefix> 0" … "<prefix> n-1".
std::vector<log_entry> lines(std::string_view prefix, int n, std::string step = "test") {
  std::vector<log_entry> out;
  for (int i = 0; i < n; ++i)
    out.push_back(line(std::string(prefix) + " " + std::to_string(i), step));
  return out;
}

std::vector<std::string> texts(const std::vector<log_entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries)
    out.push_back(e.text);
  return out;
}

class LogStoreTest : public cache_store_test {
 protected:
  std::shared_ptr<log_store> open_logs(log_limits limits = {}) {
    auto s = log_store::open(cache_, limits);
    EXPECT_TRUE(ok(s));
    return s ? *s : nullptr;
  }

  // Every line from `from` on, read in pages of `page_size`.
  std::vector<log_entry> read_all(log_store& logs, job_id job, const log_filter& f = {},
                                  std::size_t page_size = 1000, std::uint64_t from = 0) {
    std::vector<log_entry> out;
    for (int guard = 0; guard < 100000; ++guard) {
      auto p = logs.read(job, from, page_size, f);
      EXPECT_TRUE(ok(p));
      if (!p) break;
      EXPECT_GE(p->next, from) << "read went backwards";
      for (auto& e : p->entries)
        out.push_back(std::move(e));
      if (p->done || p->next == from) break;
      from = p->next;
    }
    return out;
  }
};

TEST_F(LogStoreTest, AppendedLinesReadBackInOrderWithSeqs) {
  auto logs = open_logs();
  ASSERT_TRUE(ok(logs->append(1, lines("a", 3))));
  ASSERT_TRUE(ok(logs->append(1, {line("err", "test", log_stream::err)})));
  auto p = logs->read(1, 0, 100, {});
  ASSERT_TRUE(ok(p));
  ASSERT_EQ(p->entries.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_EQ(p->entries[i].seq, i);
  EXPECT_EQ(texts(p->entries), (std::vector<std::string>{"a 0", "a 1", "a 2", "err"}));
  EXPECT_EQ(p->entries[3].stream, log_stream::err);
  EXPECT_EQ(p->next, 4u);
  EXPECT_FALSE(p->done) << "not closed yet";

  ASSERT_TRUE(ok(logs->close(1)));
  auto after = logs->read(1, 4, 100, {});
  ASSERT_TRUE(ok(after));
  EXPECT_TRUE(after->entries.empty());
  EXPECT_TRUE(after->done);
  EXPECT_TRUE(fails_with(logs->append(1, lines("late", 1)), errc::invalid_argument));
}

TEST_F(LogStoreTest, UnknownJobReadsEmptyAndNotDone) {
  auto logs = open_logs();
  auto p = logs->read(42, 0, 10, {});
  ASSERT_TRUE(ok(p));
  EXPECT_TRUE(p->entries.empty());
  EXPECT_FALSE(p->done);
  EXPECT_FALSE(logs->info(42).has_value());
}

TEST_F(LogStoreTest, FiltersByStepAndPattern) {
  auto logs = open_logs();
  ASSERT_TRUE(ok(logs->append(7, lines("setup", 5, "install"))));
  std::vector<log_entry> mixed = lines("ok", 10, "test");
  mixed[3].text = "FAILED test_add - assert 1 == 2";
  mixed[8].text = "FAILED test_sub";
  ASSERT_TRUE(ok(logs->append(7, mixed)));
  ASSERT_TRUE(ok(logs->close(7)));

  EXPECT_EQ(read_all(*logs, 7, {"install", nullptr}).size(), 5u);
  auto failed = compile_log_pattern("^FAILED");
  ASSERT_TRUE(failed) << failed.error().message;
  auto hits = read_all(*logs, 7, {"", failed->get()});
  EXPECT_EQ(texts(hits),
            (std::vector<std::string>{"FAILED test_add - assert 1 == 2", "FAILED test_sub"}));
  EXPECT_EQ(hits[0].seq, 5u + 3u);
  EXPECT_TRUE(read_all(*logs, 7, {"install", failed->get()}).empty());
  auto bad = compile_log_pattern("(unclosed");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("(unclosed"), std::string::npos) << bad.error().message;
}

TEST_F(LogStoreTest, LinesSpanChunkBoundariesAndSurviveReopen) {
  auto logs = open_logs();
  // ~1.2 MB of lines: several chunks plus a tail, appended in uneven batches.
  const int kLines = 12000;
  std::string pad(90, 'x');
  int appended = 0;
  for (int batch = 1; appended < kLines; batch = batch * 3 % 1001 + 1) {
    std::vector<log_entry> b;
    for (int i = 0; i < batch && appended < kLines; ++i, ++appended) {
      b.push_back(line(std::to_string(appended) + " " + pad, appended % 2 ? "odd" : "even"));
    }
    ASSERT_TRUE(ok(logs->append(3, std::move(b))));
  }
  auto info = logs->info(3);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->lines, static_cast<std::uint64_t>(kLines));
  EXPECT_LT(logs->buffered_bytes(), kChunkBytes + 200) << "the tail is written once it is full";

  // Every line once, in order, whatever the page size (pages end inside chunks and at their
  // boundaries).
  for (std::size_t page : {1000u, 100000u, 7u}) {
    auto all = read_all(*logs, 3, {}, page);
    ASSERT_EQ(all.size(), static_cast<std::size_t>(kLines)) << "page size " << page;
    for (int i = 0; i < kLines; i += 997) {
      EXPECT_EQ(all[i].seq, static_cast<std::uint64_t>(i));
      EXPECT_EQ(all[i].text, std::to_string(i) + " " + pad);
    }
  }
  // Starting in the middle of a chunk.
  auto tail = read_all(*logs, 3, {}, 500, 5001);
  ASSERT_FALSE(tail.empty());
  EXPECT_EQ(tail.front().seq, 5001u);
  EXPECT_EQ(tail.size(), static_cast<std::size_t>(kLines - 5001));
  // A step filter across chunks.
  EXPECT_EQ(read_all(*logs, 3, {"odd", nullptr}).size(), static_cast<std::size_t>(kLines / 2));

  ASSERT_TRUE(ok(logs->close(3)));
  EXPECT_EQ(logs->buffered_bytes(), 0u);
  logs.reset();
  reopen_cache();
  auto again = open_logs();
  auto reopened = again->info(3);
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(reopened->closed);
  EXPECT_EQ(reopened->lines, static_cast<std::uint64_t>(kLines));
  auto all = read_all(*again, 3);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kLines));
  EXPECT_EQ(all.back().text, std::to_string(kLines - 1) + " " + pad);
  EXPECT_EQ(again->total_bytes(), reopened->bytes);
}

TEST_F(LogStoreTest, LongLinesAndOddBytesAreKept) {
  auto logs = open_logs();
  std::string huge(kMaxLineBytes * 2 + 10, 'y');
  std::string binary = "\x01\"\\\xff\xfe tab\t\xc3\xa9";
  ASSERT_TRUE(ok(logs->append(4, {line(huge), line(binary)})));
  ASSERT_TRUE(ok(logs->close(4)));
  auto all = read_all(*logs, 4);
  ASSERT_EQ(all.size(), 4u) << "the long line is split in three";
  EXPECT_EQ(all[0].text.size() + all[1].text.size() + all[2].text.size(), huge.size());
  EXPECT_EQ(all[3].text, binary);
}

TEST_F(LogStoreTest, OneGigabyteWriterIsCutAtTheLimitWithOneClosingLine) {
  log_limits limits;
  limits.max_job = 1 << 20;
  auto logs = open_logs(limits);
  std::vector<log_entry> batch;
  for (int i = 0; i < 1024; ++i)
    batch.push_back(line(std::string(1023, 'z')));  // 1 MiB a batch
  const int kBatches = 1024;                        // 1 GiB in all
  std::uint64_t most_buffered = 0;
  for (int i = 0; i < kBatches; ++i) {
    ASSERT_TRUE(ok(logs->append(9, batch)));
    most_buffered = std::max(most_buffered, logs->buffered_bytes());
  }
  ASSERT_TRUE(ok(logs->close(9)));
  auto info = logs->info(9);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->cut);
  EXPECT_LE(info->bytes, limits.max_job + 200) << "stored only up to the limit";
  EXPECT_EQ(info->lines + info->dropped_lines, 1024u * kBatches + 1) << "every line counted";
  EXPECT_LE(most_buffered, kChunkBytes + 4096) << "memory stays bounded by one chunk";

  auto all = read_all(*logs, 9);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back().stream, log_stream::pantry);
  EXPECT_EQ(all.back().text, "log cut at 1MiB; the job's further output is dropped");
  int notices = 0;
  for (const auto& e : all)
    notices += e.stream == log_stream::pantry;
  EXPECT_EQ(notices, 1);
  auto p = logs->read(9, 0, 1, {});
  ASSERT_TRUE(ok(p));
  EXPECT_TRUE(p->cut);
}

// Runs `wait` on an io_context of its own thread and reports when it returned.
class waiting {
 public:
  waiting(std::shared_ptr<log_store> logs, job_id job, std::uint64_t from,
          std::chrono::milliseconds deadline = 60s) {
    asio::co_spawn(
        io_,
        [logs, job, from, deadline, this]() -> asio::awaitable<void> {
          using namespace asio::experimental::awaitable_operators;
          asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
          // Named operands, not temporaries inside the co_await (CONTRIBUTING.md).
          auto waited = logs->wait(job, from);
          auto timed = timer.async_wait(asio::use_awaitable);
          auto either = std::move(waited) || std::move(timed);
          auto r = co_await std::move(either);
          timed_out_ = r.index() == 1;
          done_ = true;
        },
        asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~waiting() {
    io_.stop();
    thread_.join();
  }
  bool done() const { return done_; }
  bool timed_out() const { return timed_out_; }
  // True once done, false if still waiting after `limit`.
  bool finishes_within(std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done_ && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(1ms);
    return done_;
  }

 private:
  asio::io_context io_;
  std::atomic<bool> done_{false};
  std::atomic<bool> timed_out_{false};
  std::thread thread_;
};

TEST_F(LogStoreTest, WaitWakesOnAppendPastFrom) {
  auto logs = open_logs();
  ASSERT_TRUE(ok(logs->append(5, lines("a", 2))));
  waiting w(logs, 5, 2);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(w.done()) << "lines 0 and 1 are before `from`";
  ASSERT_TRUE(ok(logs->append(5, lines("b", 1))));
  ASSERT_TRUE(w.finishes_within(10s));
  EXPECT_FALSE(w.timed_out());
}

TEST_F(LogStoreTest, WaitWakesOnCloseAndRemoveAndReturnsAtOnceWhenSatisfied) {
  auto logs = open_logs();
  {
    waiting before_any(logs, 6, 0);
    std::this_thread::sleep_for(20ms);
    EXPECT_FALSE(before_any.done());
    ASSERT_TRUE(ok(logs->close(6)));
    ASSERT_TRUE(before_any.finishes_within(10s));
    EXPECT_FALSE(before_any.timed_out());
  }
  {
    waiting closed(logs, 6, 100);
    ASSERT_TRUE(closed.finishes_within(10s)) << "a closed log has nothing more to wait for";
  }
  {
    ASSERT_TRUE(ok(logs->append(8, lines("x", 1))));
    waiting removed(logs, 8, 1);
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(ok(logs->remove(8)));
    ASSERT_TRUE(removed.finishes_within(10s));
    EXPECT_FALSE(removed.timed_out());
  }
}

TEST_F(LogStoreTest, WaitIsCancelledByTheCallersDeadline) {
  auto logs = open_logs();
  waiting w(logs, 11, 0, 30ms);
  ASSERT_TRUE(w.finishes_within(10s));
  EXPECT_TRUE(w.timed_out());
  // The cancelled waiter is gone: a later append still works and wakes nobody twice.
  ASSERT_TRUE(ok(logs->append(11, lines("a", 1))));
}

TEST_F(LogStoreTest, ConcurrentWritersAndFollowersSeeEveryLine) {
  auto logs = open_logs();
  constexpr int kJobs = 3, kBatches = 200, kPerBatch = 50;
  std::vector<std::thread> writers;
  for (int j = 1; j <= kJobs; ++j) {
    writers.emplace_back([&logs, j] {
      for (int b = 0; b < kBatches; ++b) {
        EXPECT_TRUE(ok(logs->append(j, lines(std::string(200, 'w'), kPerBatch))));
      }
      EXPECT_TRUE(ok(logs->close(j)));
    });
  }
  // A follower per job: wait, read, until done.
  std::vector<std::thread> followers;
  std::vector<std::size_t> seen(kJobs + 1);
  for (int j = 1; j <= kJobs; ++j) {
    followers.emplace_back([&, j] {
      asio::io_context io;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            std::uint64_t from = 0;
            for (;;) {
              co_await logs->wait(j, from);
              auto p = logs->read(j, from, 1000, {});
              EXPECT_TRUE(ok(p));
              if (!p) co_return;
              seen[j] += p->entries.size();
              from = p->next;
              if (p->done) co_return;
            }
          },
          asio::detached);
      io.run();
    });
  }
  for (auto& t : writers)
    t.join();
  for (auto& t : followers)
    t.join();
  for (int j = 1; j <= kJobs; ++j)
    EXPECT_EQ(seen[j], std::size_t{kBatches * kPerBatch}) << j;
}

TEST_F(LogStoreTest, PruneDropsOldLogsThenOldestOverTheTotal) {
  log_limits limits;
  limits.keep_for = std::chrono::seconds(10 * kDay);
  limits.max_total = 3100;
  auto logs = open_logs(limits);
  for (job_id j = 1; j <= 4; ++j) {
    ASSERT_TRUE(ok(logs->append(j, lines(std::string(100, 'p'), 10))));  // ~1 KiB each
    if (j != 4) {
      ASSERT_TRUE(ok(logs->close(j)));
    }
    std::this_thread::sleep_for(2ms);  // distinct creation times: 1 is the oldest
  }
  // Over the total (4040 > 3100): the oldest closed log goes, the open one (4) never.
  auto r = logs->prune(clock::now());
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{1}));
  EXPECT_FALSE(logs->info(1));
  EXPECT_LE(logs->total_bytes(), limits.max_total);
  EXPECT_TRUE(fails_with(cache_->get_record("ci/log/1/0"), errc::not_found)) << "chunks gone";

  // Eleven days on: every closed log is too old; 4 is still being written.
  r = logs->prune(clock::now() + std::chrono::seconds(11 * kDay));
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{2, 3}));
  EXPECT_TRUE(logs->info(4));
  ASSERT_TRUE(ok(logs->close(4)));
  r = logs->prune(clock::now() + std::chrono::seconds(11 * kDay));
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{4}));
  EXPECT_EQ(logs->total_bytes(), 0u);

  // Nothing left in the store: a reopened store knows no log.
  logs.reset();
  auto again = open_logs(limits);
  for (job_id j = 1; j <= 4; ++j)
    EXPECT_FALSE(again->info(j)) << j;
}

TEST_F(LogStoreTest, LogLeftOpenByAnEarlierProcessIsPrunable) {
  log_limits limits;
  limits.keep_for = std::chrono::seconds(kDay);
  {
    auto logs = open_logs(limits);
    ASSERT_TRUE(ok(logs->append(12, lines("a", 3))));
    ASSERT_TRUE(ok(logs->flush_idle()));  // too young to be written
    std::this_thread::sleep_for(kFlushAge + 50ms);
    ASSERT_TRUE(ok(logs->flush_idle()));
    EXPECT_EQ(logs->buffered_bytes(), 0u);
  }
  auto logs = open_logs(limits);
  auto info = logs->info(12);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->closed);
  EXPECT_EQ(read_all(*logs, 12).size(), 3u) << "the flushed tail survived";
  auto r = logs->prune(clock::now() + std::chrono::seconds(2 * kDay));
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{12}));
}

TEST(CoordinatorKeysTest, FormatsStayAsStored) {
  // A store filled by one version of pantry is read by the next: these never change.
  EXPECT_EQ(keys::log_chunk(12, 3), "ci/log/12/3");
  EXPECT_EQ(keys::log_meta(12), "ci/logmeta/12");
  EXPECT_EQ(keys::artifact(12), "ci/artifact/12");
  EXPECT_EQ(keys::pipeline(7), "ci/pipeline/00000000000000000007");
  EXPECT_EQ(keys::job_of("ci/logmeta/12", keys::kLogMetaPrefix), 12u);
  EXPECT_FALSE(keys::job_of("ci/logmeta/12x", keys::kLogMetaPrefix));
  EXPECT_FALSE(keys::job_of("ci/logmeta/", keys::kLogMetaPrefix));
}

TEST_F(LogStoreTest, RemoveOfUnknownLogIsNotFound) {
  auto logs = open_logs();
  EXPECT_TRUE(fails_with(logs->remove(99), errc::not_found));
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
