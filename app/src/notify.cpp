#include "pantry/app/notify.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace pantry::app {
namespace {

std::string& taken_socket() {
  static std::string value;
  return value;
}

}  // namespace

result<void> send_notify(std::string_view socket, std::string_view message) {
  const std::string quoted = std::string(kNotifySocketEnv) + "=\"" + std::string(socket) + "\"";
  if (socket.size() < 2 || (socket[0] != '/' && socket[0] != '@')) {
    return error(errc::invalid_argument,
                 quoted +
                     " is neither an absolute socket path nor an abstract name starting with "
                     "'@'; it is set by the service manager: unset it when there is none");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof addr.sun_path) {
    return error(errc::invalid_argument, quoted + " is longer than an AF_UNIX address (" +
                                             std::to_string(sizeof addr.sun_path - 1) +
                                             " bytes) may be");
  }
  std::memcpy(addr.sun_path, socket.data(), socket.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size());
  if (socket[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract: the length, not a terminating NUL, ends the name
  } else {
    ++len;
  }
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return error(errc::io_error,
                 "cannot make a socket to notify " + quoted + ": " + std::strerror(errno));
  }
  ssize_t sent = -1;
  do {
    sent = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&addr), len);
  } while (sent < 0 && errno == EINTR);
  const int saved = errno;
  ::close(fd);
  if (sent < 0) {
    return error(errc::io_error,
                 "cannot notify the service manager at " + quoted + ": " + std::strerror(saved));
  }
  return {};
}

void take_notify_socket() {
  const std::string name(kNotifySocketEnv);
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return;
  taken_socket() = value;
  ::unsetenv(name.c_str());
}

const std::string& notify_socket() {
  return taken_socket();
}

void notify_service_manager(std::string_view message) noexcept {
  if (taken_socket().empty()) return;
  try {
    if (auto r = send_notify(taken_socket(), message); !r) {
      spdlog::warn("pantry serve: {}", r.error().message);
    }
  } catch (...) {  // an allocation that failed: nothing to tell anyone
  }
}

std::string format_reloading() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec);
}

}  // namespace pantry::app
