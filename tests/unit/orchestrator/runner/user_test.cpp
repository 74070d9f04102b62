#include "pantry/orchestrator/runner/user.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr std::string_view kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "# a comment\n"
    "broken line\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "app:x:1000:1000:App,,,:/home/app:/bin/sh\r\n"
    "nohome:x:1001:1001:::/bin/sh\n";

constexpr std::string_view kGroup =
    "root:x:0:\n"
    "daemon:x:1:\n"
    "users:x:100:app,other\n"
    "docker:x:999:other,app\n"
    "app:x:1000:\n"
    "staff:x:50:\n";

exec_user ok(std::string_view user, std::string_view passwd = kPasswd,
             std::string_view group = kGroup) {
  auto u = resolve_user(user, passwd, group);
  EXPECT_TRUE(u) << user << ": " << u.error().message;
  return u ? *u : exec_user{};
}

TEST(UserTest, EmptyIsRootWithItsHome) {
  auto u = ok("");
  EXPECT_EQ(u.uid, 0u);
  EXPECT_EQ(u.gid, 0u);
  EXPECT_EQ(u.home, "/root");
  EXPECT_EQ(u.name, "root");
  EXPECT_THAT(u.additional_gids, IsEmpty());
}

TEST(UserTest, NameGivesUidGidHomeAndSupplementaryGroups) {
  auto u = ok("app");
  EXPECT_EQ(u.uid, 1000u);
  EXPECT_EQ(u.gid, 1000u);
  EXPECT_EQ(u.home, "/home/app");  // the CR of a CRLF file is not part of the home
  EXPECT_THAT(u.additional_gids, ElementsAre(100u, 999u));
}

TEST(UserTest, NumericUidUsesItsEntryWhenThereIsOne) {
  auto u = ok("1000");
  EXPECT_EQ(u.gid, 1000u);
  EXPECT_EQ(u.home, "/home/app");
  EXPECT_THAT(u.additional_gids, ElementsAre(100u, 999u));
  auto stranger = ok("4242");
  EXPECT_EQ(stranger.uid, 4242u);
  EXPECT_EQ(stranger.gid, 0u);
  EXPECT_EQ(stranger.home, "/");
  EXPECT_EQ(stranger.name, "");
  EXPECT_THAT(stranger.additional_gids, IsEmpty());
}

TEST(UserTest, ExplicitGroupWinsAndDropsSupplementaryGroups) {
  auto u = ok("app:staff");
  EXPECT_EQ(u.uid, 1000u);
  EXPECT_EQ(u.gid, 50u);
  EXPECT_THAT(u.additional_gids, IsEmpty());
  auto n = ok("app:4321");
  EXPECT_EQ(n.gid, 4321u);
  auto both = ok("4242:4343");
  EXPECT_EQ(both.uid, 4242u);
  EXPECT_EQ(both.gid, 4343u);
  auto named_group = ok("4242:users");
  EXPECT_EQ(named_group.gid, 100u);
}

TEST(UserTest, EmptyHomeFieldMeansRoot) {
  EXPECT_EQ(ok("nohome").home, "/");
}

TEST(UserTest, ImageWithoutPasswdTakesNumbersOnly) {
  auto u = ok("1000:1000", "", "");
  EXPECT_EQ(u.uid, 1000u);
  EXPECT_EQ(u.home, "/");
  auto root = ok("", "", "");
  EXPECT_EQ(root.uid, 0u);
  EXPECT_EQ(root.home, "/");
  auto missing = resolve_user("app", "", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "user \"app\" is not in the image's /etc/passwd");
}

TEST(UserTest, Refusals) {
  struct bad_case {
    const char* user;
    const char* message;
  };
  for (const auto& c : std::vector<bad_case>{
           {"ghost", "user \"ghost\" is not in the image's /etc/passwd"},
           {"app:ghosts", "group \"ghosts\" is not in the image's /etc/group"},
           {"app:", "empty group"},
           {":100", "empty user"},
           {"2147483648", "uid out of range"},
           {"1:99999999999", "gid out of range"},
       }) {
    auto u = resolve_user(c.user, kPasswd, kGroup);
    ASSERT_FALSE(u) << c.user;
    EXPECT_THAT(u.error().message, HasSubstr(c.message)) << c.user;
    EXPECT_TRUE(u.error().is(errc::invalid_argument));
  }
  EXPECT_TRUE(resolve_user("2147483647", kPasswd, kGroup));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
