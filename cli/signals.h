#pragma once

// Signals for the pantry command: SIGINT and SIGTERM (and SIGHUP for `pantry serve`) are blocked
// in every thread and taken by one waiting thread, which turns them into a call (stop the server,
// cancel the step, reload the config).

#include <signal.h>

#include <atomic>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <string_view>
#include <thread>

namespace pantry::cli {

// `which`, blocked in the calling thread and so in every thread it starts after: they then
// arrive only where a signal_loop waits for them. Call before any thread starts.
inline sigset_t block_signals(std::initializer_list<int> which) {
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : which)
    sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// SIGINT and SIGTERM, for a signal_waiter.
inline sigset_t block_stop_signals() {
  return block_signals({SIGINT, SIGTERM});
}

// SIGHUP, for `pantry serve`, which reloads its config on it.
inline sigset_t block_hangup() {
  return block_signals({SIGHUP});
}

// A thread that waits for the signals of `signals` (blocked in every thread) and calls
// `on_signal` with each, until it returns false or the object goes.
class signal_loop {
 public:
  // `wake` is one of `signals`: the destructor sends it to the thread, so that the command does
  // not wait out the rest of a tick.
  signal_loop(sigset_t signals, int wake, std::function<bool(int sig)> on_signal)
      : signals_(signals), wake_(wake), thread_([this, on_signal = std::move(on_signal)] {
          timespec tick{0, 200'000'000};
          while (running_.load()) {
            int sig = sigtimedwait(&signals_, nullptr, &tick);
            if (!running_.load()) return;  // the destructor's wake-up
            if (sig > 0 && !on_signal(sig)) return;
          }
        }) {}
  // Wakes the thread with `wake` (blocked everywhere, so it reaches only that thread's
  // sigtimedwait): without it, every command would wait out the rest of a tick, 100 ms on
  // average, before it exits.
  ~signal_loop() {
    running_.store(false);
    pthread_kill(thread_.native_handle(), wake_);
    thread_.join();
  }

 private:
  sigset_t signals_;
  int wake_;
  std::atomic<bool> running_{true};
  std::thread thread_;  // last: it reads the members above
};

// A thread that waits for one of the stop signals (block_stop_signals()) and calls `on_signal`
// with its name, once; it ends with the object.
class signal_waiter {
 public:
  signal_waiter(sigset_t signals, std::function<void(std::string_view)> on_signal)
      : loop_(signals, SIGTERM, [on_signal = std::move(on_signal)](int sig) {
          if (sig != SIGINT && sig != SIGTERM) return true;
          on_signal(sig == SIGINT ? "SIGINT" : "SIGTERM");
          return false;
        }) {}

 private:
  signal_loop loop_;
};

}  // namespace pantry::cli
