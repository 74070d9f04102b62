// Platforms: the host's as GOARCH names it, and which image platforms run on it.

#include "pantry/orchestrator/runner/platform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/utsname.h>

#include <string>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::HasSubstr;

platform parsed(std::string_view text) {
  auto p = parse_platform(text);
  EXPECT_TRUE(p) << text << ": " << (p ? "" : p.error().message);
  return p ? *p : platform{};
}

TEST(PlatformTest, MachinesMapToGoArchitectures) {
  auto name = [](std::string_view machine) {
    auto p = platform_of_machine(machine);
    return p ? p->str() : "error: " + p.error().message;
  };
  EXPECT_EQ(name("x86_64"), "linux/amd64");
  EXPECT_EQ(name("aarch64"), "linux/arm64");
  EXPECT_EQ(name("arm64"), "linux/arm64");
  EXPECT_EQ(name("armv7l"), "linux/arm/v7");
  EXPECT_EQ(name("armv6l"), "linux/arm/v6");
  EXPECT_EQ(name("i686"), "linux/386");
  EXPECT_EQ(name("ppc64le"), "linux/ppc64le");
  EXPECT_EQ(name("s390x"), "linux/s390x");
  EXPECT_EQ(name("riscv64"), "linux/riscv64");
  EXPECT_EQ(name("vax"), "error: machine \"vax\" has no known image architecture (GOARCH)");
}

TEST(PlatformTest, HostPlatformIsUnamesMachine) {
  ::utsname u{};
  ASSERT_EQ(::uname(&u), 0);
  auto host = host_platform();
  ASSERT_TRUE(host) << host.error().message;
  EXPECT_EQ(*host, platform_of_machine(u.machine).value()) << u.machine;
}

TEST(PlatformTest, ParsesOsArchitectureAndVariant) {
  EXPECT_EQ(parsed("linux/amd64"), (platform{"linux", "amd64", ""}));
  EXPECT_EQ(parsed("linux/arm64/v8"), (platform{"linux", "arm64", "v8"}));
  EXPECT_EQ(parsed("linux/arm/v7").str(), "linux/arm/v7");
  for (std::string_view bad : {"", "linux", "linux/", "/amd64", "linux/arm/v7/x", "linux//v7"}) {
    auto p = parse_platform(bad);
    ASSERT_FALSE(p) << bad;
    EXPECT_THAT(p.error().message, HasSubstr("is not a platform")) << bad;
  }
}

TEST(PlatformTest, AMissingVariantIsTheArchitecturesFirst) {
  const platform amd64 = parsed("linux/amd64");
  const platform arm64 = parsed("linux/arm64");
  EXPECT_TRUE(platform_runs_on(parsed("linux/amd64"), amd64));
  EXPECT_TRUE(platform_runs_on(parsed("linux/amd64/v1"), amd64));
  EXPECT_FALSE(platform_runs_on(parsed("linux/amd64/v3"), amd64));
  EXPECT_TRUE(platform_runs_on(parsed("linux/arm64/v8"), arm64));
  EXPECT_TRUE(platform_runs_on(parsed("linux/arm64"), parsed("linux/arm64/v8")));
  EXPECT_TRUE(platform_runs_on(parsed("linux/arm/v7"), parsed("linux/arm")));
  EXPECT_FALSE(platform_runs_on(parsed("linux/arm/v6"), parsed("linux/arm/v7")));
  EXPECT_FALSE(platform_runs_on(parsed("linux/arm64"), amd64));
  EXPECT_FALSE(platform_runs_on(parsed("windows/amd64"), amd64));
  EXPECT_FALSE(platform_runs_on(parsed("unknown/unknown"), amd64));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
