// step_cancel: a cancel reaches the callback in place at the time, or the one set later; a
// replaced or detached callback is never called, and is not running once on_cancel() returns.

#include "pantry/orchestrator/runner/service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

TEST(StepCancelTest, StartsNotCancelled) {
  step_cancel c;
  EXPECT_FALSE(c.cancelled());
}

TEST(StepCancelTest, CancelCallsTheCallbackOnceHoweverOftenItIsCalled) {
  step_cancel c;
  int calls = 0;
  c.on_cancel([&] { ++calls; });
  EXPECT_EQ(calls, 0);
  c.cancel();
  EXPECT_TRUE(c.cancelled());
  EXPECT_EQ(calls, 1);
  c.cancel();
  c.cancel();
  EXPECT_EQ(calls, 1);
}

TEST(StepCancelTest, ACallbackSetAfterTheCancelRunsAtOnce) {
  // A step cancelled before it starts: the container's callback runs as soon as it is set.
  step_cancel c;
  c.cancel();
  EXPECT_TRUE(c.cancelled());
  int first = 0;
  c.on_cancel([&] { ++first; });
  EXPECT_EQ(first, 1) << "on_cancel() returns after the callback ran";
  // Every later callback too: each stage of a step (probe, then the step) sets its own.
  int second = 0;
  c.on_cancel([&] { ++second; });
  EXPECT_EQ(second, 1);
  EXPECT_EQ(first, 1);
}

TEST(StepCancelTest, ACallbackReplacedIsNotCalled) {
  step_cancel c;
  int old_calls = 0;
  int new_calls = 0;
  c.on_cancel([&] { ++old_calls; });
  c.on_cancel([&] { ++new_calls; });
  c.cancel();
  EXPECT_EQ(old_calls, 0);
  EXPECT_EQ(new_calls, 1);
}

TEST(StepCancelTest, NullptrDetachesTheCallback) {
  step_cancel c;
  int calls = 0;
  c.on_cancel([&] { ++calls; });
  c.on_cancel(nullptr);
  c.cancel();
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(c.cancelled()) << "a cancel with no callback is still a cancel";
  c.on_cancel(nullptr);  // and detaching after the cancel calls nothing
  EXPECT_EQ(calls, 0);
}

TEST(StepCancelTest, DetachingWaitsForACallbackRunningOnAnotherThread) {
  // The callback may point at a container about to be destroyed: once on_cancel(nullptr)
  // returned, no thread may still be inside it.
  step_cancel c;
  std::atomic<bool> entered{false};
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  c.on_cancel([&] {
    entered = true;
    while (!release)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    finished = true;
  });
  std::thread canceller([&] { c.cancel(); });
  while (!entered)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::atomic<bool> detached{false};
  std::thread detacher([&] {
    c.on_cancel(nullptr);
    detached = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(detached) << "on_cancel(nullptr) returned while the callback was running";
  release = true;
  detacher.join();
  canceller.join();
  EXPECT_TRUE(finished);
  EXPECT_TRUE(detached);
  EXPECT_TRUE(c.cancelled());
}

TEST(StepCancelTest, CancelFromManyThreadsCallsTheCallbackOnce) {
  step_cancel c;
  std::atomic<int> calls{0};
  c.on_cancel([&] { ++calls; });
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] { c.cancel(); });
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace pantry::orchestrator::runner
