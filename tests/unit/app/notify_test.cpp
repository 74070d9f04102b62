// systemd's notify protocol (app/notify.h): datagrams to a socket this test binds, at a path and
// at an abstract name, received with the sender's credentials; malformed socket names refused
// with a message naming them.

#include "pantry/app/notify.h"
#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace pantry::app {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class NotifyTest : public test_util::temp_dir_test {
 protected:
  // Binds a datagram socket at `name` (a path, or '@' and an abstract name), with SO_PASSCRED.
  void bind_at(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
    int on = 1;
    ASSERT_EQ(::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0)
        << std::strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(name.size(), sizeof addr.sun_path) << name;
    std::memcpy(addr.sun_path, name.data(), name.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (name[0] == '@') {
      addr.sun_path[0] = '\0';
    } else {
      ++len;
    }
    ASSERT_EQ(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len), 0)
        << name << ": " << std::strerror(errno);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    test_util::temp_dir_test::TearDown();
  }

  struct datagram {
    std::string text;
    pid_t pid = 0;
  };
  // The next datagram and its sender's pid; empty text when none came within five seconds.
  datagram receive() {
    datagram d;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return d;
    char buf[4096];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd_, &msg, 0);
    if (n < 0) return d;
    d.text.assign(buf, static_cast<std::size_t>(n));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        d.pid = cred.pid;
      }
    }
    return d;
  }

  int fd_ = -1;
};

TEST_F(NotifyTest, SendsOneDatagramToAPath) {
  const std::string path = (dir_ / "notify.sock").string();
  bind_at(path);
  ASSERT_TRUE(send_notify(path, "MAINPID=4321\nREADY=1"));
  auto d = receive();
  EXPECT_EQ(d.text, "MAINPID=4321\nREADY=1");
  EXPECT_EQ(d.pid, ::getpid()) << "sender of \"" << d.text << "\"";
}

TEST_F(NotifyTest, SendsToAnAbstractName) {
  const std::string name = "@pantry-notify-test-" + std::to_string(::getpid());
  bind_at(name);
  auto sent = send_notify(name, "READY=1");
  ASSERT_TRUE(sent) << sent.error().message;
  auto d = receive();
  EXPECT_EQ(d.text, "READY=1");
  EXPECT_EQ(d.pid, ::getpid()) << "sender of \"" << d.text << "\"";
}

TEST_F(NotifyTest, RefusesMalformedNamesAndNamesThem) {
  auto relative = send_notify("run/notify", "READY=1");
  ASSERT_FALSE(relative);
  EXPECT_THAT(relative.error().message, HasSubstr("NOTIFY_SOCKET=\"run/notify\""));
  EXPECT_THAT(relative.error().message, HasSubstr("neither an absolute socket path"));
  auto empty = send_notify("", "READY=1");
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message, HasSubstr("NOTIFY_SOCKET=\"\""));
  const std::string long_name = "/" + std::string(200, 'x');
  auto too_long = send_notify(long_name, "READY=1");
  ASSERT_FALSE(too_long);
  EXPECT_THAT(too_long.error().message, HasSubstr("longer than an AF_UNIX address"));
}

TEST_F(NotifyTest, SayingNothingListensIsAnErrorNamingTheSocket) {
  const std::string path = (dir_ / "nobody.sock").string();
  auto r = send_notify(path, "READY=1");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr(path));
  EXPECT_THAT(r.error().message, HasSubstr("No such file"));
}

TEST(NotifyFormatTest, ReloadingCarriesTheMonotonicClock) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long before = static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  const std::string msg = format_reloading();
  ASSERT_THAT(msg, StartsWith("RELOADING=1\nMONOTONIC_USEC="));
  const long long usec = std::stoll(msg.substr(std::string("RELOADING=1\nMONOTONIC_USEC=").size()));
  EXPECT_GE(usec, before) << msg;
}

}  // namespace
}  // namespace pantry::app
