#pragma once

// Wakes coroutines that wait for something to happen to a pipeline (a log line, a job's state)
// without polling: a waiter registers a timer under the pipeline's id and waits on it with its
// deadline; notify() expires every timer registered under that id, on the timer's own executor
// (a timer is not thread-safe). Expiring, not cancelling: a waiter may still be on its way to
// the wait when the wake-up runs (it registers, then reads a log page or visits the strand, then
// waits), and a cancel with no wait pending is lost, so the waiter slept to its deadline (2 s
// per page when following a busy log); an expired timer's next wait completes at once. Cheap when
// nobody waits: one mutex and a map lookup. Thread-safe.

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace pantry::orchestrator::coordinator::detail {

class hub {
 public:
  void add(std::uint64_t key, const std::shared_ptr<boost::asio::steady_timer>& timer) {
    std::lock_guard lock(mutex_);
    waiters_[key].push_back(timer);
  }

  void notify(std::uint64_t key) {
    std::vector<std::weak_ptr<boost::asio::steady_timer>> woken;
    {
      std::lock_guard lock(mutex_);
      auto it = waiters_.find(key);
      if (it == waiters_.end()) return;
      woken.swap(it->second);
      waiters_.erase(it);
    }
    for (auto& w : woken) {
      if (auto t = w.lock()) wake(std::move(t));
    }
  }

 private:
  // The reference moves into the handler, so the timer is never released last on the notifying
  // thread (its executor's context may be gone by then).
  static void wake(std::shared_ptr<boost::asio::steady_timer> t) {
    auto ex = t->get_executor();
    boost::asio::post(
        ex, [t = std::move(t)] { t->expires_at(boost::asio::steady_timer::time_point::min()); });
  }

  std::mutex mutex_;
  std::map<std::uint64_t, std::vector<std::weak_ptr<boost::asio::steady_timer>>> waiters_;
};

}  // namespace pantry::orchestrator::coordinator::detail
