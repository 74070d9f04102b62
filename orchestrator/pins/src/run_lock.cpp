#include "run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace pantry::orchestrator::pins {

namespace fs = std::filesystem;

result<std::unique_ptr<run_lock>> run_lock::acquire(const fs::path& data_dir) {
  const fs::path dir = data_dir / "pins";
  const fs::path file = dir / "bump.lock";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return error(errc::io_error, dir.string() + ": cannot create: " + ec.message());
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return error(errc::io_error, file.string() + ": cannot open: " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) holder.assign(buf, static_cast<std::size_t>(n));
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
      holder.pop_back();
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return error(errc::io_error, file.string() + ": cannot lock: " + std::strerror(err));
    }
    return error(errc::locked, "another pins bump holds " + file.string() + " (pid " +
                                   (holder.empty() ? std::string("unknown") : holder) +
                                   "); wait for it to end");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return error(errc::io_error, file.string() + ": cannot write: " + std::strerror(err));
  }
  return std::unique_ptr<run_lock>(new run_lock(fd));
}

run_lock::~run_lock() {
  ::close(fd_);  // lets go of the lock; the next holder writes its own pid
}

}  // namespace pantry::orchestrator::pins
