// The arguments of `pantry pins check`: options in any order, --name=VALUE, and usage errors
// naming the argument.

#include "pins.h"
#include "usage_error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::cli {
namespace {

using args = std::vector<std::string>;

TEST(PinsArgsTest, CheckTakesEveryOptionInAnyOrder) {
  auto o = parse_pins_check_args({"--only", "Typing_Extensions", "--repo=app", "--pantry",
                                  "http://127.0.0.1:8585/simple/", "--config", "p.yaml"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->only, "typing-extensions");
  EXPECT_EQ(o->repo, "app");
  EXPECT_EQ(o->pantry, "http://127.0.0.1:8585");
  EXPECT_EQ(o->config_file, "p.yaml");
}

TEST(PinsArgsTest, StatusTakesConfigRepoAndPantryAndRefusesTheRest) {
  auto o = parse_pins_status_args(
      {"--repo", "app", "--config=p.yaml", "--pantry", "http://127.0.0.1:8585"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->repo, "app");
  EXPECT_EQ(o->config_file, "p.yaml");
  EXPECT_EQ(o->pantry, "http://127.0.0.1:8585");
  auto only = parse_pins_status_args({"--only", "requests"});
  ASSERT_FALSE(only);
  EXPECT_EQ(only.error().message, "pantry pins: --only is for check and bump");
  auto prs = parse_pins_status_args({"--open-prs"});
  ASSERT_FALSE(prs);
  EXPECT_EQ(prs.error().message, "pantry pins: --open-prs is for bump");
  auto unknown = parse_pins_status_args({"--nope"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown option --nope"), std::string::npos)
      << unknown.error().message;
}

TEST(PinsArgsTest, CheckDefaultsToEveryRepositoryAndTheServe) {
  auto o = parse_pins_check_args({});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_FALSE(o->only);
  EXPECT_FALSE(o->repo);
  EXPECT_FALSE(o->pantry);
  EXPECT_FALSE(o->config_file);
}

TEST(PinsArgsTest, OpenPrsIsAFlagOffByDefault) {
  auto on = parse_pins_check_args({"--repo", "app", "--open-prs"});
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_TRUE(on->open_prs);
  EXPECT_EQ(on->repo, "app");
  auto off = parse_pins_check_args({"--repo", "app"});
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->open_prs);
  args valued{"--open-prs=yes"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(valued), valued, {"--open-prs", "takes no value"}));
}

TEST(PinsArgsTest, CheckRejectsBadArgumentsNamingThem) {
  args unknown{"--only-one", "x"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(unknown), unknown, {"--only-one"}));
  args missing{"--repo"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(missing), missing, {"--repo", "needs a value"}));
  args empty{"--config="};
  EXPECT_TRUE(usage_error(parse_pins_check_args(empty), empty, {"--config", "empty"}));
  args stray{"requirements.txt"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(stray), stray, {"requirements.txt"}));
  args bad_name{"--only", "-bad-"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(bad_name), bad_name, {"--only", "-bad-"}));
  args bad_url{"--pantry", "ftp://x/"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(bad_url), bad_url, {"--pantry", "ftp://x/"}));
  args no_host{"--pantry", "http:///simple"};
  EXPECT_TRUE(usage_error(parse_pins_check_args(no_host), no_host, {"--pantry"}));
}

}  // namespace
}  // namespace pantry::cli
