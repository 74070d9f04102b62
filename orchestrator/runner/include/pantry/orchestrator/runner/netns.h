#pragma once

// A network namespace of a job's own, made by pantry rather than by runc, so that pantry can
// listen inside it before the job starts (network `isolated`: the job reaches pantry at 127.0.0.1
// and nothing else, with no bridge, NAT or iptables).
//
// The namespace lives as long as this object holds its descriptor and any process is inside it;
// runc joins it through path(), a /proc/<pid>/fd/<n> path of this process, so nothing is left in
// the file system when pantry dies. Creating, entering and listening each run on a short-lived
// thread of their own (setns and unshare change only the calling thread's namespace): no other
// thread of the caller ever changes its namespace. All calls block briefly; thread-safe.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/fd.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace pantry::orchestrator::runner {

class network_namespace {
 public:
  // A new, empty network namespace; with `loopback_up` its `lo` is brought up (a new namespace's
  // starts down). Errors: errc::io_error naming the step that failed (unshare needs
  // CAP_SYS_ADMIN).
  static result<network_namespace> create(bool loopback_up);

  // The namespace's descriptor (an nsfs file, close-on-exec).
  int fd() const noexcept { return fd_.get(); }
  // "/proc/<pid>/fd/<fd>": the path to give runc (linux.namespaces[].path); valid while this
  // object lives.
  std::string path() const;

  // Runs `fn` on a new thread inside the namespace and returns when it returned. Sockets that
  // `fn` creates stay in the namespace wherever they are used later. Errors: errc::io_error when
  // the thread cannot enter the namespace (`fn` does not run then).
  result<void> run_inside(const std::function<void()>& fn) const;

  // A TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) bound to `ipv4_address`:`port`
  // inside the namespace and listening; port 0 takes a free one. Errors: errc::invalid_argument
  // for an address that is not dotted IPv4, errc::io_error with the reason otherwise.
  struct listener {
    unique_fd fd;
    std::uint16_t port = 0;  // the port bound
  };
  result<listener> listen_tcp(std::string_view ipv4_address, std::uint16_t port,
                              int backlog = 128) const;

 private:
  explicit network_namespace(unique_fd fd) : fd_(std::move(fd)) {}
  unique_fd fd_;
};

}  // namespace pantry::orchestrator::runner
