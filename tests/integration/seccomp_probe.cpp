// A static program for container_test that makes one syscall the default seccomp profile blocks
// and needs no capability: vmsplice(2) into a pipe. Prints "vmsplice: ok" and exits 0 when the
// call succeeds, else prints the error and exits 1. Static, so that it runs in a busybox root.

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

int main() {
  int fds[2];
  if (pipe(fds) != 0) {
    std::printf("pipe: %s\n", std::strerror(errno));
    return 2;
  }
  char byte = 'x';
  iovec iov{&byte, 1};
  if (vmsplice(fds[1], &iov, 1, 0) < 0) {
    std::printf("vmsplice: %s\n", std::strerror(errno));
    return 1;
  }
  std::printf("vmsplice: ok\n");
  return 0;
}
