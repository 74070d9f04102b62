#include "pantry/orchestrator/runner/netns.h"

#include "strings.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

namespace pantry::orchestrator::runner {
namespace {

error io_error(const std::string& what, int err) {
  return detail::errno_error("network namespace: " + what, err);
}

// Brings `lo` up in the calling thread's network namespace.
std::optional<error> loopback_up() {
  unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return io_error("socket for SIOCSIFFLAGS", errno);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return io_error("SIOCGIFFLAGS lo", errno);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return io_error("SIOCSIFFLAGS lo up", errno);
  return std::nullopt;
}

}  // namespace

result<network_namespace> network_namespace::create(bool loopback) {
  unique_fd fd;
  std::optional<error> failed;
  // The thread ends in the new namespace; the descriptor keeps the namespace alive.
  std::thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      failed = io_error("unshare(CLONE_NEWNET)", errno);
      return;
    }
    fd.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!fd) {
      failed = io_error("open /proc/thread-self/ns/net", errno);
      return;
    }
    if (loopback) failed = loopback_up();
  }).join();
  if (failed) return *failed;
  return network_namespace(std::move(fd));
}

std::string network_namespace::path() const {
  return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_.get());
}

result<void> network_namespace::run_inside(const std::function<void()>& fn) const {
  std::optional<error> failed;
  std::thread([&] {
    if (::setns(fd_.get(), CLONE_NEWNET) != 0) {
      failed = io_error("setns", errno);
      return;
    }
    fn();
  }).join();
  if (failed) return *failed;
  return {};
}

result<network_namespace::listener> network_namespace::listen_tcp(std::string_view ipv4_address,
                                                                  std::uint16_t port,
                                                                  int backlog) const {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  const std::string text(ipv4_address);
  if (::inet_pton(AF_INET, text.c_str(), &addr.sin_addr) != 1) {
    return error(errc::invalid_argument,
                 "network namespace: \"" + text + "\" is not a dotted IPv4 address");
  }
  listener out;
  std::optional<error> failed;
  auto entered = run_inside([&] {
    unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) {
      failed = io_error("socket", errno);
      return;
    }
    const int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      failed = io_error("bind " + text + ":" + std::to_string(port), errno);
      return;
    }
    if (::listen(s.get(), backlog) != 0) {
      failed = io_error("listen", errno);
      return;
    }
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      failed = io_error("getsockname", errno);
      return;
    }
    out.port = ntohs(bound.sin_port);
    out.fd = std::move(s);
  });
  if (!entered) return entered.error();
  if (failed) return *failed;
  return out;
}

}  // namespace pantry::orchestrator::runner
