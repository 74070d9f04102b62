#include "pantry/orchestrator/runner/process.h"

#include "strings.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace pantry::orchestrator::runner {
namespace {

using detail::errno_error;

// Through syscall(2): glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrappers do not link
// from C++.
int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}
int send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// A NULL-terminated char* array over `strings` (which must outlive it).
std::vector<char*> c_array(const std::vector<std::string>& strings, const std::string* first) {
  std::vector<char*> out;
  out.reserve(strings.size() + 2);
  if (first) out.push_back(const_cast<char*>(first->c_str()));
  for (const auto& s : strings)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

bool has_nul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

// posix_spawn's attribute and file-action objects, destroyed on every path.
struct spawn_state {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  spawn_state() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~spawn_state() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  spawn_state(const spawn_state&) = delete;
  spawn_state& operator=(const spawn_state&) = delete;
};

result<std::array<unique_fd, 2>> make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno_error("process: cannot create a pipe", errno);
  return std::array<unique_fd, 2>{unique_fd(fds[0]), unique_fd(fds[1])};
}

int poll_timeout(std::optional<spawn_clock::time_point> deadline) {
  if (!deadline) return -1;
  const auto left = *deadline - spawn_clock::now();
  if (left <= spawn_clock::duration::zero()) return 0;
  // Round up, so that poll does not return just before the deadline and spin.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, 1 << 30));
}

}  // namespace

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string to_string(const exit_status& status) {
  if (status.exited()) return "exit code " + std::to_string(status.code);
  const char* name = strsignal(status.signal);
  return "killed by signal " + std::to_string(status.signal) + " (" + (name ? name : "?") + ")";
}

result<process> process::spawn(const spawn_options& o) {
  if (o.program.empty() || o.program.front() != '/') {
    return error(errc::invalid_argument,
                 "process: program \"" + o.program + "\" is not an absolute path");
  }
  if (has_nul(o.program) || has_nul(o.working_dir) ||
      std::any_of(o.args.begin(), o.args.end(), has_nul) ||
      std::any_of(o.env.begin(), o.env.end(), has_nul)) {
    return error(errc::invalid_argument,
                 "process: an argument or environment entry of " + o.program + " holds a NUL byte");
  }

  output_pipe own;
  if (!o.output_to) {
    auto made = output_pipe::create(o.output);
    if (!made) return made.error();
    own = std::move(*made);
  }
  const output_pipe& to = o.output_to ? *o.output_to : own;

  spawn_state s;
  int rc = posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
  // dup2 clears close-on-exec on the copy; the originals (O_CLOEXEC) go at exec.
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&s.actions, to.out_writer(), 1);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&s.actions, to.err_writer(), 2);
  // Another thread may have opened a descriptor without O_CLOEXEC: none reaches the child.
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&s.actions, 3);
  if (rc == 0 && !o.working_dir.empty()) {
    rc = posix_spawn_file_actions_addchdir_np(&s.actions, o.working_dir.c_str());
  }
  // The child starts with no signal blocked and every signal at its default action, whatever
  // the calling thread blocks or ignores (a server may ignore SIGPIPE).
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (o.new_process_group) flags |= POSIX_SPAWN_SETPGROUP;
  if (rc == 0) rc = posix_spawnattr_setsigmask(&s.attr, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&s.attr, &all);
  if (rc == 0 && o.new_process_group) rc = posix_spawnattr_setpgroup(&s.attr, 0);
  if (rc == 0) rc = posix_spawnattr_setflags(&s.attr, flags);
  if (rc != 0) return errno_error("process: cannot prepare to start " + o.program, rc);

  auto argv = c_array(o.args, &o.program);
  auto envp = c_array(o.env, nullptr);
  pid_t pid = -1;
  // glibc's posix_spawn reports a failed exec (ENOENT, EACCES…) as its return value.
  rc = posix_spawn(&pid, o.program.c_str(), &s.actions, &s.attr, argv.data(), envp.data());
  if (rc == ENOENT) return error(errc::not_found, "process: " + o.program + " does not exist");
  if (rc != 0) return errno_error("process: cannot start " + o.program, rc);

  process p;
  p.pid_ = pid;
  // The child is ours and not yet reaped, so its pid cannot have been reused.
  p.pidfd_.reset(open_pidfd(pid));
  if (!p.pidfd_) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    int ignored = 0;
    while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {
    }
    p.pid_ = -1;
    return errno_error("process: pidfd_open for " + o.program + " (Linux 5.3 or later is needed)",
                       e);
  }
  own.close_writers();
  p.output_ = std::move(own);
  return p;
}

result<process> process::adopt(pid_t pid) {
  process p;
  p.pidfd_.reset(open_pidfd(pid));
  if (!p.pidfd_) {
    const int e = errno;
    return error(e == ESRCH ? errc::not_found : errc::io_error,
                 "process: cannot adopt pid " + std::to_string(pid) + ": " + std::strerror(e));
  }
  p.pid_ = pid;
  return p;
}

process::process(process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      output_(std::move(other.output_)),
      status_(std::exchange(other.status_, std::nullopt)) {}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    output_ = std::move(other.output_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

process::~process() {
  kill_and_reap();
}

void process::kill_and_reap() noexcept {
  if (pidfd_ && !status_) {
    send_signal(pidfd_.get(), SIGKILL);
    (void)reap();
  }
}

result<void> process::signal(int sig) const {
  if (!pidfd_) return error(errc::invalid_argument, "process: no process to signal");
  if (send_signal(pidfd_.get(), sig) == 0 || errno == ESRCH) return {};
  return errno_error(
      "process: cannot send signal " + std::to_string(sig) + " to pid " + std::to_string(pid_),
      errno);
}

result<output_pipe> output_pipe::create(output_mode mode) {
  output_pipe p;
  auto out = make_pipe();
  if (!out) return out.error();
  p.out_r_ = std::move((*out)[0]);
  p.out_w_ = std::move((*out)[1]);
  if (mode == output_mode::separate) {
    auto err = make_pipe();
    if (!err) return err.error();
    p.err_r_ = std::move((*err)[0]);
    p.err_w_ = std::move((*err)[1]);
  }
  return p;
}

void output_pipe::close_writers() noexcept {
  out_w_.reset();
  err_w_.reset();
}

void output_pipe::close_readers() noexcept {
  out_r_.reset();
  err_r_.reset();
}

result<pump_status> output_pipe::pump(const chunk_sink& sink,
                                      std::optional<spawn_clock::time_point> deadline,
                                      int interrupt_fd) {
  std::array<char, 65536> buffer;
  while (true) {
    std::array<pollfd, 3> fds{};
    std::array<unique_fd*, 3> owners{};
    std::array<output_stream, 3> streams{};
    nfds_t n = 0;
    for (auto [fd, stream] :
         {std::pair{&out_r_, output_stream::out}, {&err_r_, output_stream::err}}) {
      if (!*fd) continue;
      fds[n] = pollfd{fd->get(), POLLIN, 0};
      owners[n] = fd;
      streams[n] = stream;
      ++n;
    }
    if (n == 0) return pump_status::eof;
    const nfds_t pipes = n;
    if (interrupt_fd >= 0) fds[n++] = pollfd{interrupt_fd, POLLIN, 0};

    const int ready = ::poll(fds.data(), n, poll_timeout(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("process: poll on an output pipe", errno);
    }
    if (ready == 0) return pump_status::deadline;
    for (nfds_t i = 0; i < pipes; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (got > 0) {
        sink(streams[i], std::string_view(buffer.data(), static_cast<std::size_t>(got)));
      } else if (got == 0) {
        owners[i]->reset();
      } else if (errno != EINTR && errno != EAGAIN) {
        return errno_error("process: reading an output pipe", errno);
      }
    }
    if (interrupt_fd >= 0 && fds[pipes].revents != 0) return pump_status::interrupted;
  }
}

result<exit_status> process::reap() {
  siginfo_t info{};
  while (waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED) != 0) {
    if (errno == ECHILD) {
      return error(errc::not_found,
                   "process: pid " + std::to_string(pid_) + " is not a child of this process");
    }
    if (errno != EINTR)
      return errno_error("process: waiting for pid " + std::to_string(pid_), errno);
  }
  exit_status s;
  if (info.si_code == CLD_EXITED) {
    s.code = info.si_status;
  } else {
    s.signal = info.si_status;
  }
  status_ = s;
  return s;
}

result<exit_status> process::wait() {
  if (status_) return *status_;
  if (!pidfd_) return error(errc::invalid_argument, "process: no process to wait for");
  return reap();
}

result<std::optional<exit_status>> process::wait_until(clock::time_point deadline) {
  if (status_) return std::optional<exit_status>(*status_);
  if (!pidfd_) return error(errc::invalid_argument, "process: no process to wait for");
  while (true) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, poll_timeout(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno_error("process: poll on pid " + std::to_string(pid_), errno);
    if (ready == 0) return std::optional<exit_status>();
    auto s = reap();
    if (!s) return s.error();
    return std::optional<exit_status>(*s);
  }
}

result<process_output> run_process(const spawn_options& options, std::chrono::milliseconds timeout,
                                   std::size_t max_output) {
  auto p = process::spawn(options);
  if (!p) return p.error();
  process_output collected;
  auto keep = [&](output_stream stream, std::string_view chunk) {
    std::string& to = stream == output_stream::out ? collected.out : collected.err;
    const std::size_t room = max_output - std::min(max_output, to.size());
    if (chunk.size() > room) collected.truncated = true;
    to.append(chunk.substr(0, room));
  };
  const auto deadline = process::clock::now() + timeout;
  auto pumped = p->pump(keep, deadline);
  if (!pumped) return pumped.error();
  if (*pumped == pump_status::deadline) {
    // A grandchild may still hold the pipes open: stop reading rather than wait for it.
    p->close_output();
  }
  auto status = p->wait_until(deadline);
  if (!status) return status.error();
  if (!*status) {
    collected.timed_out = true;
    (void)p->signal(SIGKILL);
    auto killed = p->wait();
    if (!killed) return killed.error();
    *status = *killed;
  } else if (*pumped == pump_status::deadline) {
    collected.timed_out = true;  // the process ended in time, its output did not
  }
  collected.status = **status;
  return collected;
}

}  // namespace pantry::orchestrator::runner
