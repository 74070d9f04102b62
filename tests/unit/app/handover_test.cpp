// An upgrade's hand-over between two processes (app/handover.h): the PANTRY_HANDOVER value and
// the readiness line, written and read back, every malformed form refused with a message naming
// it; and start_successor() against real successors (shell scripts) and bad binaries.

#include "pantry/app/handover.h"
#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

namespace pantry::app {
namespace {

using ::testing::HasSubstr;

TEST(HandoverTest, FormatsAndParsesBack) {
  handover h{4321, 3, 4};
  EXPECT_EQ(format_handover(h), "from=4321 listen=3 ready=4");
  auto back = parse_handover(format_handover(h));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->from_pid, 4321);
  EXPECT_EQ(back->listen_fd, 3);
  EXPECT_EQ(back->ready_fd, 4);
  auto spaced = parse_handover("  ready=9 from=7   listen=8 ");
  ASSERT_TRUE(spaced) << spaced.error().message;
  EXPECT_EQ(spaced->from_pid, 7);
  EXPECT_EQ(spaced->listen_fd, 8);
  EXPECT_EQ(spaced->ready_fd, 9);
}

TEST(HandoverTest, RefusesMalformedValuesNamingThePart) {
  struct bad_case {
    const char* value;
    const char* says;
  } const cases[] = {
      {"", "missing from, listen, ready"},
      {"from=1 listen=3", "missing ready"},
      {"from=1 listen=3 ready=4 from=2", "from is given twice"},
      {"from=1 listen=3 ready=4 fds=5", "unknown key \"fds\""},
      {"from=1 listen=three ready=4", "the value of listen (\"three\") is not a number"},
      {"from=1 listen=3 ready", "\"ready\" is not KEY=VALUE"},
      {"from=1 listen=2 ready=4", "listen=2 is not a descriptor from 3 to 65535"},
      {"from=0 listen=3 ready=4", "from=0 is not a process id"},
      {"from=1 listen=3 ready=3", "listen and ready name the same descriptor"},
  };
  for (const auto& c : cases) {
    auto r = parse_handover(c.value);
    ASSERT_FALSE(r) << "accepted \"" << c.value << "\"";
    EXPECT_TRUE(r.error().is(errc::invalid_argument));
    EXPECT_THAT(r.error().message, HasSubstr(c.says)) << "for \"" << c.value << "\"";
    EXPECT_THAT(r.error().message, HasSubstr(std::string("PANTRY_HANDOVER=\"") + c.value + "\""));
  }
}

TEST(HandoverTest, ReadinessLines) {
  EXPECT_EQ(format_ready(77), "ready 77\n");
  EXPECT_EQ(format_not_ready("bad config\nat line 3"), "failed bad config at line 3\n");
  auto ready = parse_readiness("ready 77\n");
  ASSERT_TRUE(ready) << ready.error().message;
  EXPECT_TRUE(ready->ready);
  EXPECT_EQ(ready->pid, 77);
  auto failed = parse_readiness(format_not_ready("listen: port 1 differs"));
  ASSERT_TRUE(failed) << failed.error().message;
  EXPECT_FALSE(failed->ready);
  EXPECT_EQ(failed->message, "listen: port 1 differs");

  struct bad_case {
    const char* text;
    const char* says;
  } const cases[] = {
      {"", "without a word"},
      {"ready 7", "is unfinished"},
      {"ready x\n", "names no process id"},
      {"ready 0\n", "names no process id"},
      {"hello\n", "is neither `ready PID` nor `failed WHY`"},
  };
  for (const auto& c : cases) {
    auto r = parse_readiness(c.text);
    ASSERT_FALSE(r) << "accepted \"" << c.text << "\"";
    EXPECT_THAT(r.error().message, HasSubstr(c.says)) << "for \"" << c.text << "\"";
  }
}

// A listening socket on a free loopback port, as the server's.
class SuccessorTest : public test_util::temp_dir_test {
 protected:
  void SetUp() override {
    temp_dir_test::SetUp();
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listen_fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listen_fd_, 16), 0);
  }
  void TearDown() override {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    temp_dir_test::TearDown();
  }

  // An executable shell script with `body`.
  std::string script(const std::string& name, const std::string& body) {
    auto path = dir_ / name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    ::chmod(path.c_str(), 0755);
    return path.string();
  }

  int listen_fd_ = -1;
};

TEST_F(SuccessorTest, ReadyWhenTheSuccessorSaysSoWithTheSocketAndVariable) {
  // A descriptor without close-on-exec, which the successor must not inherit all the same.
  const int leaky = ::fcntl(STDERR_FILENO, F_DUPFD, 20);
  ASSERT_GE(leaky, 20);
  // Ready only if it got what an upgrade promises: the variable, the socket as descriptor 3, and
  // not the leaky descriptor.
  const std::string bin = script(
      "successor",
      "expected=\"from=$PPID listen=3 ready=4\"\n"
      "[ \"$PANTRY_HANDOVER\" = \"$expected\" ] || { echo \"failed env: $PANTRY_HANDOVER\" >&4; "
      "exit 1; }\n"
      "case \"$(readlink /proc/$$/fd/3)\" in socket:*) ;; *) echo 'failed fd 3 is no socket' >&4; "
      "exit 1;; esac\n"
      "[ -e /proc/$$/fd/" +
          std::to_string(leaky) + " ] && { echo 'failed fd " + std::to_string(leaky) +
          " inherited' >&4; exit 1; }\n"
          "echo \"ready $$\" >&4\n"
          "exec sleep 60\n");
  auto pid = start_successor(bin, listen_fd_, std::chrono::seconds(30));
  ::close(leaky);
  ASSERT_TRUE(pid) << pid.error().message;
  EXPECT_GT(*pid, 0);
  ::kill(static_cast<pid_t>(*pid), SIGKILL);
  int status = 0;
  EXPECT_EQ(::waitpid(static_cast<pid_t>(*pid), &status, 0), *pid);
}

TEST_F(SuccessorTest, FailedSuccessorSaysWhyAndIsReaped) {
  const std::string bin =
      script("bad-config", "echo 'failed pantry.yaml:3:1: listen: not an address' >&4\nexit 1\n");
  auto pid = start_successor(bin, listen_fd_, std::chrono::seconds(30));
  ASSERT_FALSE(pid);
  EXPECT_THAT(pid.error().message, HasSubstr("pantry.yaml:3:1: listen: not an address"));
  EXPECT_THAT(pid.error().message, HasSubstr(bin));
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1) << "no child left to reap";
}

TEST_F(SuccessorTest, SilentExitNamesTheStatus) {
  auto pid = start_successor("/bin/false", listen_fd_, std::chrono::seconds(30));
  ASSERT_FALSE(pid);
  EXPECT_THAT(pid.error().message, HasSubstr("/bin/false"));
  EXPECT_THAT(pid.error().message, HasSubstr("exited with status 1 before it was ready"));
}

TEST_F(SuccessorTest, SilenceUntilTheTimeoutKillsIt) {
  const std::string bin = script("mute", "exec sleep 60\n");
  auto pid = start_successor(bin, listen_fd_, std::chrono::milliseconds(300));
  ASSERT_FALSE(pid);
  EXPECT_THAT(pid.error().message, HasSubstr("said nothing within"));
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1) << "no child left to reap";
}

TEST_F(SuccessorTest, BinariesThatCannotRunAreRefusedUpFront) {
  auto missing =
      start_successor((dir_ / "no-such-pantry").string(), listen_fd_, std::chrono::seconds(5));
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("no-such-pantry"));
  EXPECT_THAT(missing.error().message, HasSubstr("No such file or directory"));
  auto relative = start_successor("bin/pantry", listen_fd_, std::chrono::seconds(5));
  ASSERT_FALSE(relative);
  EXPECT_THAT(relative.error().message, HasSubstr("\"bin/pantry\" is not an absolute path"));
}

}  // namespace
}  // namespace pantry::app
