// The remote runner's pure parts: the log batcher against a fake sender (no network), and the
// image names a remote runner pulls.

#include "pantry/orchestrator/coordinator/remote_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using namespace std::chrono_literals;

// A sender that records every batch and answers what the test says.
struct fake_coordinator {
  std::mutex mu;
  std::vector<std::string> batches;
  std::atomic<log_batcher::sent> answer{log_batcher::sent::ok};

  log_batcher::send_fn fn() {
    return [this](const std::string& body) {
      auto a = answer.load();
      std::lock_guard lock(mu);
      batches.push_back(body);
      return a;
    };
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return batches.size();
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string s;
    for (const auto& b : batches)
      s += b;
    return s;
  }
};

std::vector<log_entry> line(std::string text) {
  std::vector<log_entry> v(1);
  v[0].time = clock::now();
  v[0].stream = log_stream::out;
  v[0].step = "run";
  v[0].text = std::move(text);
  return v;
}

std::size_t lines_in(const std::string& s) {
  std::size_t n = 0;
  for (char c : s)
    n += c == '\n';
  return n;
}

TEST(LogBatcherTest, ManyLinesGoInFewRequestsInOrder) {
  fake_coordinator c;
  log_batcher::options opt;
  opt.flush_bytes = 4096;
  log_batcher b(c.fn(), opt);
  for (int i = 0; i < 2000; ++i)
    ASSERT_TRUE(b.add(line("line " + std::to_string(i))));
  b.close();
  const std::string all = c.all();
  EXPECT_EQ(lines_in(all), 2000u);
  // About 70 bytes a line: some 35 full batches, never one per line.
  EXPECT_LT(c.count(), 200u) << c.count() << " requests for 2000 lines";
  EXPECT_LT(all.find("\"line 0\""), all.find("\"line 1999\""));
  EXPECT_NE(all.find("\"stream\":\"o\""), std::string::npos) << all.substr(0, 200);
  EXPECT_NE(all.find("\"step\":\"run\""), std::string::npos) << all.substr(0, 200);
}

TEST(LogBatcherTest, AQuietLineGoesWithinFlushAfter) {
  fake_coordinator c;
  log_batcher::options opt;
  opt.flush_after = 50ms;
  log_batcher b(c.fn(), opt);
  std::this_thread::sleep_for(50ms);  // the sender is asleep, with nothing pending
  ASSERT_TRUE(b.add(line("alone")));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (c.count() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(c.count(), 1u) << "the line was not sent without close()";
  EXPECT_NE(c.all().find("\"alone\""), std::string::npos) << c.all();
  EXPECT_EQ(b.requests(), 1u);
}

TEST(LogBatcherTest, ALostLeaseStopsTheJobsLines) {
  fake_coordinator c;
  c.answer = log_batcher::sent::lost;
  log_batcher::options opt;
  opt.flush_after = 10ms;
  log_batcher b(c.fn(), opt);
  ASSERT_TRUE(b.add(line("first")));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!b.lost() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(b.lost());
  EXPECT_FALSE(b.add(line("second")));
  b.close();
  EXPECT_EQ(c.count(), 1u);
  EXPECT_EQ(c.all().find("second"), std::string::npos) << c.all();
}

TEST(LogBatcherTest, AFailedBatchIsSentAgainWithLaterLines) {
  fake_coordinator c;
  c.answer = log_batcher::sent::failed;
  log_batcher::options opt;
  opt.flush_after = 10ms;
  opt.retry_after = 300ms;  // room for the test to add a line while the sender waits
  log_batcher b(c.fn(), opt);
  ASSERT_TRUE(b.add(line("one")));
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (c.count() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(b.add(line("two")));
  c.answer = log_batcher::sent::ok;
  b.close();
  std::lock_guard lock(c.mu);
  ASSERT_GE(c.batches.size(), 2u);
  const std::string& last = c.batches.back();
  EXPECT_NE(last.find("\"one\""), std::string::npos) << last;
  EXPECT_LT(last.find("\"one\""), last.find("\"two\"")) << last;
  EXPECT_FALSE(b.lost());
}

TEST(LogBatcherTest, AnUnreachableCoordinatorCostsBoundedRetries) {
  fake_coordinator c;
  c.answer = log_batcher::sent::failed;
  log_batcher::options opt;
  opt.retry_after = 1ms;
  opt.max_failures = 5;
  log_batcher b(c.fn(), opt);
  ASSERT_TRUE(b.add(line("dropped")));
  b.close();
  EXPECT_EQ(c.count(), 5u);
  EXPECT_FALSE(b.lost());
}

TEST(RemoteImageTest, NamesGoThroughTheCoordinatorUpstream) {
  EXPECT_EQ(remote_image("local/ci/x@sha256:ab"), "coordinator/local/ci/x@sha256:ab");
  EXPECT_EQ(remote_image("busybox@sha256:ab"), "coordinator/busybox@sha256:ab");
  EXPECT_EQ(remote_image(""), "");
  EXPECT_EQ(coordinator_image("coordinator/local/ci/x@sha256:ab"), "local/ci/x@sha256:ab");
  EXPECT_EQ(coordinator_image("local/x@sha256:ab"), "local/x@sha256:ab");
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
