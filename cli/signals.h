#pragma once

// Stop signals for the pantry command: SIGINT and SIGTERM are blocked in every thread and taken by
// one waiting thread, which turns them into a call (stop the server, cancel the step).

#include <signal.h>

#include <atomic>
#include <ctime>
#include <functional>
#include <string_view>
#include <thread>

namespace pantry::cli {

// SIGINT and SIGTERM, blocked in the calling thread and so in every thread it starts after: they
// then arrive only where a signal_waiter waits for them. Call before any thread starts.
inline sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// A thread that waits for one of `signals` and calls `on_signal` with its name, once; it ends
// with the object.
class signal_waiter {
 public:
  signal_waiter(sigset_t signals, std::function<void(std::string_view)> on_signal)
      : signals_(signals), thread_([this, on_signal = std::move(on_signal)] {
          timespec tick{0, 200'000'000};
          while (running_.load()) {
            int sig = sigtimedwait(&signals_, nullptr, &tick);
            if (!running_.load()) return;  // the destructor's wake-up, not a stop signal
            if (sig == SIGINT || sig == SIGTERM) {
              on_signal(sig == SIGINT ? "SIGINT" : "SIGTERM");
              return;
            }
          }
        }) {}
  // Wakes the thread with a SIGTERM of its own (blocked everywhere, so it reaches only that
  // thread's sigtimedwait): without it, every command would wait out the rest of a tick, 100 ms
  // on average, before it exits.
  ~signal_waiter() {
    running_.store(false);
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

 private:
  sigset_t signals_;
  std::atomic<bool> running_{true};
  std::thread thread_;  // last: it reads the members above
};

}  // namespace pantry::cli
