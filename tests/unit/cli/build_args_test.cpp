// The arguments of `pantry build` (parse_build_args): -t and CONTEXT required, the Containerfile
// found (-f, else Containerfile, else Dockerfile) and read, SOURCE_DATE_EPOCH from --build-arg
// before the environment; usage errors naming the argument.

#include "build.h"
#include "unit/temp_dir.h"
#include "usage_error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace builder = orchestrator::builder;
using ::testing::ElementsAre;
using args = std::vector<std::string>;

class BuildArgsTest : public test_util::temp_dir_test {
 protected:
  void SetUp() override {
    temp_dir_test::SetUp();
    // The machine's SOURCE_DATE_EPOCH must not decide the tests; put back at the end.
    if (const char* e = std::getenv("SOURCE_DATE_EPOCH")) saved_epoch_ = e;
    ::unsetenv("SOURCE_DATE_EPOCH");
  }
  void TearDown() override {
    if (saved_epoch_) {
      ::setenv("SOURCE_DATE_EPOCH", saved_epoch_->c_str(), 1);
    } else {
      ::unsetenv("SOURCE_DATE_EPOCH");
    }
    temp_dir_test::TearDown();
  }

  void write_file(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }

  // `-t local/app:1 dir_` after `before`.
  args build(std::vector<std::string> before = {}) {
    args a = std::move(before);
    a.insert(a.end(), {"-t", "local/app:1", dir_.string()});
    return a;
  }

  void expect_usage_error(const args& a, const std::vector<std::string>& parts) {
    EXPECT_TRUE(usage_error(parse_build_args(a), a, parts));
  }

  std::optional<std::string> saved_epoch_;
};

TEST_F(BuildArgsTest, TagAndContextAreRequired) {
  write_file("Containerfile", "FROM scratch\n");
  expect_usage_error({dir_.string()}, {"-t NAME:TAG"});
  expect_usage_error({"-t", "local/app:1"}, {"CONTEXT"});
  expect_usage_error({}, {"CONTEXT"});
  expect_usage_error({"-t", "local/app:1", dir_.string(), "other"},
                     {"one CONTEXT", "not also other"});
  expect_usage_error({"-t", "local/app:1", (dir_ / "missing").string()},
                     {"CONTEXT " + (dir_ / "missing").string(), "not a directory"});
}

TEST_F(BuildArgsTest, TheContainerfileIsReadFromTheContext) {
  write_file("Containerfile", "FROM scratch\nCOPY a /a\n");
  write_file("Dockerfile", "FROM scratch\n");
  auto r = parse_build_args(build());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.containerfile_text, "FROM scratch\nCOPY a /a\n");
  EXPECT_EQ(r->request.containerfile_name, "Containerfile");
  EXPECT_EQ(r->request.context, dir_);
  EXPECT_THAT(r->request.tags, ElementsAre("local/app:1"));
}

TEST_F(BuildArgsTest, WithoutAContainerfileTheDockerfileIsRead) {
  write_file("Dockerfile", "FROM scratch\n");
  auto r = parse_build_args(build());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.containerfile_text, "FROM scratch\n");
  EXPECT_EQ(r->request.containerfile_name, "Dockerfile");
}

TEST_F(BuildArgsTest, WithNeitherTheErrorSaysToUseDashF) {
  expect_usage_error(build(), {"cannot read", "Dockerfile", "-f FILE"});
}

TEST_F(BuildArgsTest, DashFNamesTheFileAsGiven) {
  write_file("Containerfile", "FROM scratch\n");
  write_file("ci.Containerfile", "FROM scratch\nRUN true\n");
  const std::string file = (dir_ / "ci.Containerfile").string();
  for (const args& a : {build({"-f", file}), build({"--file", file}), build({"--file=" + file})}) {
    auto r = parse_build_args(a);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->request.containerfile_text, "FROM scratch\nRUN true\n");
    EXPECT_EQ(r->request.containerfile_name, file);
  }
  expect_usage_error(build({"-f", (dir_ / "nope").string()}),
                     {"cannot read " + (dir_ / "nope").string()});
}

TEST_F(BuildArgsTest, TheContextIsMadeAbsoluteAndNormal) {
  write_file("Containerfile", "FROM scratch\n");
  fs::create_directory(dir_ / "sub");
  auto r = parse_build_args({"-t", "local/app:1", (dir_ / "sub" / "..").string()});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.context.lexically_normal(), r->request.context);
  EXPECT_TRUE(fs::equivalent(r->request.context, dir_)) << r->request.context;
}

TEST_F(BuildArgsTest, OptionsAndFlags) {
  write_file("Containerfile", "FROM scratch\n");
  auto r = parse_build_args(build({"--no-cache", "--allow-unpinned", "--verbose", "--zstd",
                                   "--target", "test", "--config=/etc/p.yaml", "--data-dir",
                                   "/var/lib/pantry", "--tag", "local/app:latest"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->request.no_cache);
  EXPECT_TRUE(r->request.allow_unpinned);
  EXPECT_TRUE(r->verbose);
  EXPECT_EQ(r->request.compression, builder::layer_compression::zstd);
  EXPECT_EQ(r->request.target, "test");
  EXPECT_EQ(r->config_file, "/etc/p.yaml");
  EXPECT_EQ(r->data_dir, "/var/lib/pantry");
  EXPECT_THAT(r->request.tags, ElementsAre("local/app:latest", "local/app:1"));

  auto plain = parse_build_args(build());
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_FALSE(plain->request.no_cache);
  EXPECT_FALSE(plain->request.allow_unpinned);
  EXPECT_EQ(plain->request.compression, builder::layer_compression::gzip);
  EXPECT_EQ(plain->request.target, "");

  expect_usage_error(build({"--no-cache=true"}), {"--no-cache", "takes no value"});
  expect_usage_error(build({"--squash"}), {"unknown option --squash"});
  expect_usage_error({dir_.string(), "-t"}, {"-t", "needs a value"});
}

TEST_F(BuildArgsTest, BuildArgsKeepTheirOrder) {
  write_file("Containerfile", "FROM scratch\n");
  auto r =
      parse_build_args(build({"--build-arg", "A=1", "--build-arg=B=", "--build-arg", "A=2=x"}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->request.build_args.size(), 3u);
  EXPECT_EQ(r->request.build_args[0], (builder::key_value{"A", "1"}));
  EXPECT_EQ(r->request.build_args[1], (builder::key_value{"B", ""}));
  EXPECT_EQ(r->request.build_args[2], (builder::key_value{"A", "2=x"}));
  expect_usage_error(build({"--build-arg", "HTTP_PROXY"}), {"--build-arg HTTP_PROXY", "KEY=VALUE"});
  expect_usage_error(build({"--build-arg", "=1"}), {"--build-arg =1", "KEY=VALUE"});
}

TEST_F(BuildArgsTest, SourceDateEpochDefaultsToZero) {
  write_file("Containerfile", "FROM scratch\n");
  auto r = parse_build_args(build());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.source_date_epoch, 0);
}

TEST_F(BuildArgsTest, SourceDateEpochComesFromTheEnvironment) {
  write_file("Containerfile", "FROM scratch\n");
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  auto r = parse_build_args(build());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.source_date_epoch, 1700000000);
}

TEST_F(BuildArgsTest, SourceDateEpochFromABuildArgWinsOverTheEnvironment) {
  write_file("Containerfile", "FROM scratch\n");
  ::setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  auto r = parse_build_args(build({"--build-arg", "SOURCE_DATE_EPOCH=5"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.source_date_epoch, 5);
  // It stays a build arg too, for an `ARG SOURCE_DATE_EPOCH` in the file.
  EXPECT_THAT(r->request.build_args, ElementsAre(builder::key_value{"SOURCE_DATE_EPOCH", "5"}));
  // The last one given wins.
  r = parse_build_args(
      build({"--build-arg", "SOURCE_DATE_EPOCH=5", "--build-arg", "SOURCE_DATE_EPOCH=7"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.source_date_epoch, 7);
}

TEST_F(BuildArgsTest, ABadSourceDateEpochIsNamed) {
  write_file("Containerfile", "FROM scratch\n");
  ::setenv("SOURCE_DATE_EPOCH", "yesterday", 1);
  expect_usage_error(build(), {"SOURCE_DATE_EPOCH", "yesterday"});
  // A good build arg hides a bad environment.
  auto r = parse_build_args(build({"--build-arg", "SOURCE_DATE_EPOCH=1"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.source_date_epoch, 1);
  ::unsetenv("SOURCE_DATE_EPOCH");
  expect_usage_error(build({"--build-arg", "SOURCE_DATE_EPOCH=-1"}), {"SOURCE_DATE_EPOCH", "-1"});
}

}  // namespace
}  // namespace pantry::cli
