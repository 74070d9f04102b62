// `pantry ci check [FILE]`: its arguments and the summary line of a valid file.

#include "ci.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::cli {
namespace {

using ::testing::HasSubstr;

TEST(CiArgsTest, CheckTakesAnOptionalFile) {
  auto a = parse_ci_args({"check"});
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->file, ".pantry.yml");
  auto b = parse_ci_args({"check", "ci/pipeline.yml"});
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->file, "ci/pipeline.yml");
  EXPECT_THAT(parse_ci_args({}).error().message,
              HasSubstr("ci needs a subcommand: check [FILE] or measures"));
  EXPECT_THAT(parse_ci_args({"lint"}).error().message, HasSubstr("(got \"lint\")"));
  EXPECT_THAT(parse_ci_args({"check", "a", "b"}).error().message, HasSubstr("at most one FILE"));
  EXPECT_THAT(parse_ci_args({"check", "--strict"}).error().message,
              HasSubstr("\"--strict\" is not a file name"));
}

TEST(CiSummaryTest, CountsJobsAndShardsAndNamesTheImage) {
  const std::string image = "python@sha256:" + std::string(64, 'a');
  auto spec = orchestrator::coordinator::parse_pipeline_spec(
      "image: " + image +
          "\njobs:\n  lint: {run: x}\n  test: {run: x, parallel: 2}\n  pkg: {run: x}\n",
      ".pantry.yml");
  ASSERT_TRUE(spec.has_value()) << spec.error().message;
  EXPECT_EQ(ci_summary(*spec, ".pantry.yml"),
            "ci: .pantry.yml is valid: 3 jobs (4 with shards), image " + image);
  auto built = orchestrator::coordinator::parse_pipeline_spec(
      "build: {}\nkeep_going: true\njobs: {t: {run: x}}\n", "p.yml");
  ASSERT_TRUE(built.has_value()) << built.error().message;
  EXPECT_EQ(ci_summary(*built, "p.yml"),
            "ci: p.yml is valid: 1 job, image built from Containerfile (context .), keep_going");
}

}  // namespace
}  // namespace pantry::cli
