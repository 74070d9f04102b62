#pragma once

// The lock that keeps two bumps of one data dir apart (the schedule's inside `pantry serve` and
// a `pantry pins bump` beside it): flock(2) on <data_dir>/pins/bump.lock, which holds the
// holder's pid for the message of whoever finds it taken. The kernel lets go of it when the
// holder dies, so a crash never leaves it held.

#include "pantry/error.h"

#include <filesystem>
#include <memory>

namespace pantry::orchestrator::pins {

class run_lock {
 public:
  // Takes the lock at once or fails: errc::locked naming the file and the holder's pid ("pins
  // bump: another run holds DIR/pins/bump.lock (pid 4242); wait for it to end"); io_error
  // naming the file when it cannot be made.
  static result<std::unique_ptr<run_lock>> acquire(const std::filesystem::path& data_dir);
  ~run_lock();
  run_lock(const run_lock&) = delete;
  run_lock& operator=(const run_lock&) = delete;

 private:
  explicit run_lock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace pantry::orchestrator::pins
