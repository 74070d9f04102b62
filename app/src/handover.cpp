#include "pantry/app/handover.h"

#include "pantry/app/notify.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

extern char** environ;

namespace pantry::app {
namespace {

using steady = std::chrono::steady_clock;

constexpr int kListenFd = 3;
constexpr int kReadyFd = 4;

bool parse_long(std::string_view s, long& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// "exited with status 1", "was killed by signal 9"
std::string status_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

// Reaps `pid`, waiting up to two seconds for it to exit on its own, then killing it.
std::string reap(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status_text(status);
    if (r < 0 && errno != EINTR)
      return "cannot be waited for (" + std::string(std::strerror(errno)) + ")";
    ::usleep(10'000);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return "did not exit and was killed";
}

// The arguments this process was started with.
std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    out.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string format_handover(const handover& h) {
  return "from=" + std::to_string(h.from_pid) + " listen=" + std::to_string(h.listen_fd) +
         " ready=" + std::to_string(h.ready_fd);
}

result<handover> parse_handover(std::string_view value) {
  auto bad = [&](std::string why) {
    return error(errc::invalid_argument,
                 std::string(kHandoverEnv) + "=\"" + std::string(value) + "\": " + why +
                     "; it is set by `pantry upgrade` for the process it starts (\"" +
                     format_handover({1234, kListenFd, kReadyFd}) +
                     "\"): unset it to start pantry by hand");
  };
  handover h;
  bool seen_from = false, seen_listen = false, seen_ready = false;
  std::size_t i = 0;
  while (i < value.size()) {
    if (value[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t end = value.find(' ', i);
    if (end == std::string_view::npos) end = value.size();
    std::string_view part = value.substr(i, end - i);
    i = end;
    auto eq = part.find('=');
    if (eq == std::string_view::npos) return bad("\"" + std::string(part) + "\" is not KEY=VALUE");
    std::string_view key = part.substr(0, eq);
    std::string_view val = part.substr(eq + 1);
    long n = 0;
    if (!parse_long(val, n)) {
      return bad("the value of " + std::string(key) + " (\"" + std::string(val) +
                 "\") is not a number");
    }
    auto once = [&](bool& seen) -> std::optional<error> {
      if (seen) return bad(std::string(key) + " is given twice");
      seen = true;
      return std::nullopt;
    };
    auto descriptor = [&](int& fd) -> std::optional<error> {
      if (n < 3 || n > 65535) {
        return bad(std::string(key) + "=" + std::string(val) +
                   " is not a descriptor from 3 to 65535 (0-2 are stdin, stdout, stderr)");
      }
      fd = static_cast<int>(n);
      return std::nullopt;
    };
    std::optional<error> e;
    if (key == "from") {
      e = once(seen_from);
      if (!e && n <= 0) e = bad("from=" + std::string(val) + " is not a process id");
      h.from_pid = n;
    } else if (key == "listen") {
      e = once(seen_listen);
      if (!e) e = descriptor(h.listen_fd);
    } else if (key == "ready") {
      e = once(seen_ready);
      if (!e) e = descriptor(h.ready_fd);
    } else {
      e = bad("unknown key \"" + std::string(key) + "\" (known: from, listen, ready)");
    }
    if (e) return *e;
  }
  if (!seen_from || !seen_listen || !seen_ready) {
    std::string missing;
    for (auto [name, seen] : {std::pair{"from", seen_from}, std::pair{"listen", seen_listen},
                              std::pair{"ready", seen_ready}}) {
      if (seen) continue;
      if (!missing.empty()) missing += ", ";
      missing += name;
    }
    return bad("missing " + missing);
  }
  if (h.listen_fd == h.ready_fd) return bad("listen and ready name the same descriptor");
  return h;
}

std::string format_ready(long pid) {
  return "ready " + std::to_string(pid) + "\n";
}

std::string format_not_ready(std::string_view why) {
  std::string line = "failed ";
  for (char c : why)
    line.push_back(c == '\n' || c == '\r' ? ' ' : c);
  line.push_back('\n');
  return line;
}

result<readiness> parse_readiness(std::string_view text) {
  if (text.empty()) {
    return error(errc::invalid_argument, "it closed the readiness pipe without a word");
  }
  auto nl = text.find('\n');
  if (nl == std::string_view::npos) {
    return error(errc::invalid_argument,
                 "its readiness line \"" + std::string(text.substr(0, 200)) + "\" is unfinished");
  }
  std::string_view line = text.substr(0, nl);
  readiness r;
  if (line.starts_with("ready ")) {
    if (!parse_long(line.substr(6), r.pid) || r.pid <= 0) {
      return error(errc::invalid_argument,
                   "its readiness line \"" + std::string(line) + "\" names no process id");
    }
    r.ready = true;
    return r;
  }
  if (line.starts_with("failed ")) {
    r.message = std::string(line.substr(7));
    return r;
  }
  return error(errc::invalid_argument, "its readiness line \"" + std::string(line.substr(0, 200)) +
                                           "\" is neither `ready PID` nor `failed WHY`");
}

std::string own_binary() {
  std::error_code ec;
  std::string path;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) path.assign(buf, static_cast<std::size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

result<long> start_successor(const std::string& binary, int listen_fd,
                             std::chrono::milliseconds timeout) {
  const std::string what = "the new process (" + binary + ")";
  if (binary.empty() || binary[0] != '/') {
    return error(errc::invalid_argument,
                 "the new binary \"" + binary + "\" is not an absolute path; give one");
  }
  if (::access(binary.c_str(), X_OK) != 0) {
    return error(errc::invalid_argument,
                 "cannot start the new binary " + binary + ": " + std::strerror(errno));
  }
  std::vector<std::string> args = own_arguments();
  if (args.empty()) {
    return error(errc::io_error, "cannot read this process's arguments from /proc/self/cmdline");
  }
  args[0] = binary;

  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return error(errc::io_error,
                 "cannot make the readiness pipe: " + std::string(std::strerror(errno)));
  }
  fd_closer read_end{p[0]};
  fd_closer write_end{p[1]};
  // Copies above the target numbers, so that each dup2 really copies (dup2 of a descriptor onto
  // itself would keep its close-on-exec flag).
  fd_closer listen_copy{::fcntl(listen_fd, F_DUPFD_CLOEXEC, 10)};
  fd_closer ready_copy{::fcntl(p[1], F_DUPFD_CLOEXEC, 10)};
  if (listen_copy.fd < 0 || ready_copy.fd < 0) {
    return error(errc::io_error, "cannot copy the listening socket (descriptor " +
                                     std::to_string(listen_fd) +
                                     ") for the new process: " + std::strerror(errno));
  }

  const std::string env_entry =
      std::string(kHandoverEnv) + "=" +
      format_handover({static_cast<long>(::getpid()), kListenFd, kReadyFd});
  std::vector<char*> envp;
  const std::string prefix = std::string(kHandoverEnv) + "=";
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!std::string_view(*e).starts_with(prefix)) envp.push_back(*e);
  }
  envp.push_back(const_cast<char*>(env_entry.c_str()));
  // Taken out of this process's environment at start (app/notify.h): the successor tells the
  // service manager its pid.
  const std::string notify_entry = std::string(kNotifySocketEnv) + "=" + notify_socket();
  if (!notify_socket().empty()) envp.push_back(const_cast<char*>(notify_entry.c_str()));
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, listen_copy.fd, kListenFd);
  posix_spawn_file_actions_adddup2(&fa, ready_copy.fd, kReadyFd);
  posix_spawn_file_actions_addclosefrom_np(&fa, kReadyFd + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // This thread blocks the stop signals (cli/signals.h); the new process starts with none blocked.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, binary.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(std::exchange(write_end.fd, -1));
  ::close(std::exchange(ready_copy.fd, -1));
  ::close(std::exchange(listen_copy.fd, -1));
  if (rc != 0) {
    return error(errc::io_error,
                 "cannot start the new binary " + binary + ": " + std::strerror(rc));
  }

  // Its line, until the pipe closes or the time is up.
  std::string text;
  const auto deadline = steady::now() + timeout;
  bool timed_out = false;
  while (text.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{read_end.fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[512];
    ssize_t got = ::read(read_end.fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<std::size_t>(got));
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
    reap(pid);
    return error(errc::io_error, what + " said nothing within " +
                                     std::to_string(timeout.count() / 1000) +
                                     " s and was killed; see its log lines");
  }
  auto said = parse_readiness(text);
  if (said && said->ready) return static_cast<long>(pid);
  std::string how = reap(pid);
  if (said) return error(errc::invalid_argument, what + " cannot start: " + said->message);
  return error(errc::invalid_argument,
               what + " " + how + " before it was ready: " + said.error().message);
}

result<std::optional<handover>> take_handover() {
  const char* value = std::getenv(std::string(kHandoverEnv).c_str());
  if (value == nullptr) return std::optional<handover>();
  auto h = parse_handover(value);
  ::unsetenv(std::string(kHandoverEnv).c_str());
  if (!h) return h.error();
  for (int fd : {h->listen_fd, h->ready_fd}) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) {
      return error(errc::invalid_argument, std::string(kHandoverEnv) + " names descriptor " +
                                               std::to_string(fd) +
                                               ", which is not open; unset it to start pantry "
                                               "by hand");
    }
    ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  return std::optional<handover>(*h);
}

void report_readiness(int ready_fd, std::string_view line) noexcept {
  if (ready_fd < 0) return;
  while (!line.empty()) {
    ssize_t w = ::write(ready_fd, line.data(), line.size());
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    line.remove_prefix(static_cast<std::size_t>(w));
  }
  ::close(ready_fd);
}

}  // namespace pantry::app
