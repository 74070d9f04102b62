// How `pantry run` and `pantry build` find the serve that holds a data dir (app/control.h): the
// file it publishes, read back; a stale or broken file; the URL a wildcard listener is reached
// at; the control token.

#include "pantry/app/control.h"
#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

namespace pantry::app {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ControlTest : public test_util::temp_dir_test {
 protected:
  void write_file(std::string_view text) {
    std::ofstream(control_file(dir_), std::ios::binary) << text;
  }

  // The names in the data dir.
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_))
      out.insert(e.path().filename().string());
    return out;
  }
};

// A pid no process has: a child of ours, exited and reaped.
long dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

TEST_F(ControlTest, TheFileIsServeJsonInTheDataDir) {
  EXPECT_EQ(control_file(dir_), dir_ / "serve.json");
}

TEST_F(ControlTest, WhatIsPublishedIsFoundWithMode0600) {
  const control_endpoint ep{"http://127.0.0.1:8585", new_control_token(), ::getpid()};
  // Mode 0600 whatever the umask: whoever reads the token may run steps.
  const mode_t old_umask = ::umask(0);
  auto published = publish_control(dir_, ep);
  ::umask(old_umask);
  ASSERT_TRUE(published) << published.error().message;

  struct stat st {};
  ASSERT_EQ(::stat(control_file(dir_).c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << (st.st_mode & 07777);
  EXPECT_EQ(names(), std::set<std::string>{"serve.json"}) << "no temporary file left";

  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->url, ep.url);
  EXPECT_EQ((*found)->token, ep.token);
  EXPECT_EQ((*found)->pid, ep.pid);
}

TEST_F(ControlTest, PublishingAgainReplacesTheFileAndKeeps0600) {
  write_file("{}");
  ASSERT_EQ(::chmod(control_file(dir_).c_str(), 0644), 0);
  const control_endpoint ep{"http://[::1]:9000", "abc", ::getpid()};
  auto published = publish_control(dir_, ep);
  ASSERT_TRUE(published) << published.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(control_file(dir_).c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << (st.st_mode & 07777);
  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->url, "http://[::1]:9000");
}

TEST_F(ControlTest, NoFileIsNoServe) {
  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_FALSE(found->has_value()) << (*found)->url;
}

TEST_F(ControlTest, AFileNamingADeadProcessIsNoServe) {
  // What a crashed serve leaves behind.
  const long pid = dead_pid();
  ASSERT_TRUE(publish_control(dir_, {"http://127.0.0.1:8585", "t", pid}));
  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_FALSE(found->has_value()) << "pid " << pid << " taken for a live serve";
}

TEST_F(ControlTest, AFileNamingNoPidIsNoServe) {
  write_file(R"({"url": "http://127.0.0.1:8585", "token": "t", "pid": 0})");
  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_FALSE(found->has_value());
}

TEST_F(ControlTest, AMalformedFileIsAnErrorNamingIt) {
  const std::string file = control_file(dir_).string();
  for (std::string_view text : {
           "", "not json", "[1, 2]",
           R"({"url": "http://127.0.0.1:8585", "token": "t"})",              // no pid
           R"({"url": "http://127.0.0.1:8585", "pid": 1})",                  // no token
           R"({"token": "t", "pid": 1})",                                    // no url
           R"({"url": "http://127.0.0.1:8585", "token": "t", "pid": "1"})",  // pid a string
           R"({"url": 8585, "token": "t", "pid": 1})",                       // url a number
       }) {
    write_file(text);
    auto found = find_control(dir_);
    ASSERT_FALSE(found) << "accepted: " << text;
    EXPECT_TRUE(found.error().is(errc::invalid_argument))
        << text << " -> " << found.error().message;
    EXPECT_THAT(found.error().message, HasSubstr(file)) << "for " << text;
    EXPECT_THAT(found.error().message, HasSubstr("remove it")) << "for " << text;
  }
}

TEST_F(ControlTest, WithdrawRemovesOnlyItsOwnPidsFile) {
  const long self = ::getpid();
  ASSERT_TRUE(publish_control(dir_, {"http://127.0.0.1:8585", "t", self}));
  withdraw_control(dir_, self + 1);  // another serve's stop: not its file
  EXPECT_TRUE(fs::exists(control_file(dir_)));
  auto found = find_control(dir_);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_TRUE(found->has_value());

  withdraw_control(dir_, self);
  EXPECT_FALSE(fs::exists(control_file(dir_)));
  withdraw_control(dir_, self);  // nothing there: nothing happens
  EXPECT_TRUE(names().empty());
}

TEST_F(ControlTest, WithdrawLeavesAMalformedFileAlone) {
  write_file("not json");
  withdraw_control(dir_, ::getpid());
  EXPECT_TRUE(fs::exists(control_file(dir_)));
}

TEST(ControlUrlTest, WildcardAddressesAreReachedOnLoopback) {
  EXPECT_EQ(loopback_url("0.0.0.0", 8585), "http://127.0.0.1:8585");
  EXPECT_EQ(loopback_url("", 8585), "http://127.0.0.1:8585");
  EXPECT_EQ(loopback_url("::", 8585), "http://[::1]:8585");
  EXPECT_EQ(loopback_url("[::]", 8585), "http://[::1]:8585");
}

TEST(ControlUrlTest, OtherHostsAreKeptWithBracketsForIpv6) {
  EXPECT_EQ(loopback_url("127.0.0.1", 1), "http://127.0.0.1:1");
  EXPECT_EQ(loopback_url("10.1.2.3", 65535), "http://10.1.2.3:65535");
  EXPECT_EQ(loopback_url("pantry.internal", 8585), "http://pantry.internal:8585");
  EXPECT_EQ(loopback_url("localhost", 8585), "http://localhost:8585");
  EXPECT_EQ(loopback_url("::1", 8585), "http://[::1]:8585");
  EXPECT_EQ(loopback_url("fd00::5", 8585), "http://[fd00::5]:8585");
  EXPECT_EQ(loopback_url("[fd00::5]", 8585), "http://[fd00::5]:8585");
}

TEST(ControlTokenTest, Is64HexDigitsAndNewEachTime) {
  const std::string a = new_control_token();
  const std::string b = new_control_token();
  EXPECT_EQ(a.size(), 64u) << a;
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_EQ(b.size(), 64u) << b;
  EXPECT_EQ(b.find_first_not_of("0123456789abcdef"), std::string::npos) << b;
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace pantry::app
