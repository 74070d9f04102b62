// The arguments of `pantry run` (parse_run_args): options until `--` or the first non-option,
// then the command; sizes, durations, volumes, secrets read from files; usage errors naming the
// argument.

#include "run.h"
#include "unit/temp_dir.h"
#include "usage_error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace runner = orchestrator::runner;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using args = std::vector<std::string>;

const std::string kImage =
    "local/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

void expect_usage_error(const args& a, const std::vector<std::string>& parts) {
  EXPECT_TRUE(usage_error(parse_run_args(a), a, parts));
}

// `--image kImage` and then `rest`.
args with_image(std::vector<std::string> rest) {
  args a{"--image", kImage};
  a.insert(a.end(), rest.begin(), rest.end());
  return a;
}

class RunArgsTest : public test_util::temp_dir_test {
 protected:
  std::string write_file(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p.string();
  }
};

TEST(RunArgsImageTest, ImageIsRequired) {
  expect_usage_error({}, {"--image"});
  expect_usage_error({"--", "true"}, {"--image"});
  expect_usage_error({"--network", "none", "true"}, {"--image"});
}

TEST(RunArgsImageTest, AnImageAloneGetsTheDefaults) {
  auto r = parse_run_args({"--image", kImage});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.image, kImage);
  EXPECT_TRUE(r->request.step.argv.empty());
  EXPECT_FALSE(r->request.allow_unpinned);
  EXPECT_EQ(r->request.step.network, runner::network_mode::isolated);
  EXPECT_EQ(r->request.output, runner::output_mode::merged);
  EXPECT_TRUE(r->request.environment_report);
  EXPECT_EQ(r->request.timeout.count(), 0);
  EXPECT_FALSE(r->request.tmpfs_size.has_value());
  EXPECT_FALSE(r->request.step.memory_bytes.has_value());
  EXPECT_FALSE(r->config_file.has_value());
  EXPECT_FALSE(r->data_dir.has_value());
  EXPECT_FALSE(r->timestamps);
  EXPECT_FALSE(r->verbose);
}

TEST(RunArgsImageTest, OptionsTakeTheirValueInlineOrNext) {
  auto r = parse_run_args({"--image=" + kImage, "--network", "none", "--config=/etc/p.yaml",
                           "--data-dir", "/var/lib/pantry"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.image, kImage);
  EXPECT_EQ(r->request.step.network, runner::network_mode::none);
  EXPECT_EQ(r->config_file, "/etc/p.yaml");
  EXPECT_EQ(r->data_dir, "/var/lib/pantry");
  expect_usage_error({"--image"}, {"--image", "needs a value"});
}

TEST(RunArgsImageTest, DoubleDashEndsTheOptions) {
  auto r = parse_run_args(with_image({"--", "--image", "-c", "--"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.image, kImage);
  EXPECT_THAT(r->request.step.argv, ElementsAre("--image", "-c", "--"));
  auto empty = parse_run_args(with_image({"--"}));
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->request.step.argv.empty());
}

TEST(RunArgsImageTest, TheFirstNonOptionStartsTheCommand) {
  // Options after it belong to the command, as with `docker run IMAGE CMD -x`.
  auto r = parse_run_args(with_image({"sh", "-c", "echo hi", "--network", "host"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(r->request.step.argv, ElementsAre("sh", "-c", "echo hi", "--network", "host"));
  EXPECT_EQ(r->request.step.network, runner::network_mode::isolated);
}

TEST(RunArgsImageTest, Flags) {
  auto r = parse_run_args(with_image({"--allow-unpinned", "--separate-streams", "--timestamps",
                                      "--no-report", "--verbose", "true"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->request.allow_unpinned);
  EXPECT_EQ(r->request.output, runner::output_mode::separate);
  EXPECT_TRUE(r->timestamps);
  EXPECT_FALSE(r->request.environment_report);
  EXPECT_TRUE(r->verbose);
  expect_usage_error(with_image({"--verbose=yes"}), {"--verbose", "takes no value"});
}

TEST(RunArgsImageTest, UnknownOptionIsNamed) {
  expect_usage_error(with_image({"--privileged", "true"}), {"unknown option --privileged"});
  expect_usage_error(with_image({"-x", "1"}), {"unknown option -x"});
}

TEST(RunArgsImageTest, NetworkModes) {
  for (std::string mode : {"isolated", "none", "host"}) {
    auto r = parse_run_args(with_image({"--network", mode}));
    ASSERT_TRUE(r) << mode << ": " << r.error().message;
    EXPECT_EQ(runner::to_string(r->request.step.network), mode);
  }
  expect_usage_error(with_image({"--network", "bridge"}), {"--network bridge"});
}

TEST(RunArgsImageTest, SizesOfMemoryAndTmpfs) {
  auto r = parse_run_args(with_image({"--memory", "2GiB", "--tmpfs-size=512MiB"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.memory_bytes, std::uint64_t{2} << 30);
  EXPECT_EQ(r->request.tmpfs_size, std::uint64_t{512} << 20);
  // 0: the step's writes on disk.
  auto on_disk = parse_run_args(with_image({"--tmpfs-size", "0"}));
  ASSERT_TRUE(on_disk) << on_disk.error().message;
  EXPECT_EQ(on_disk->request.tmpfs_size, 0u);
  expect_usage_error(with_image({"--memory", "lots"}), {"--memory", "lots"});
  expect_usage_error(with_image({"--memory", "-1GiB"}), {"--memory"});
  expect_usage_error(with_image({"--tmpfs-size", "1XB"}), {"--tmpfs-size", "1XB"});
}

TEST(RunArgsImageTest, CpusAndPidsLimit) {
  auto r = parse_run_args(with_image({"--cpus", "1.5", "--pids-limit", "128"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.cpus, 1.5);
  EXPECT_EQ(r->request.step.pids_limit, 128);
  expect_usage_error(with_image({"--cpus", "0"}), {"--cpus 0"});
  expect_usage_error(with_image({"--cpus", "-2"}), {"--cpus -2"});
  expect_usage_error(with_image({"--cpus", "two"}), {"--cpus two"});
  expect_usage_error(with_image({"--pids-limit", "0"}), {"--pids-limit 0"});
  expect_usage_error(with_image({"--pids-limit", "12x"}), {"--pids-limit 12x"});
}

TEST(RunArgsImageTest, TimeoutDurations) {
  struct {
    std::string text;
    std::int64_t ms;
  } cases[] = {{"90s", 90'000}, {"10m", 600'000}, {"1h30m", 5'400'000}, {"0s", 0}};
  for (const auto& c : cases) {
    auto r = parse_run_args(with_image({"--timeout", c.text}));
    ASSERT_TRUE(r) << c.text << ": " << r.error().message;
    EXPECT_EQ(r->request.timeout.count(), c.ms) << c.text;
  }
  expect_usage_error(with_image({"--timeout", "600"}), {"--timeout"});  // a bare number
  expect_usage_error(with_image({"--timeout", "ten"}), {"--timeout", "ten"});
}

TEST(RunArgsImageTest, VolumeForms) {
  auto r = parse_run_args(with_image(
      {"--volume", "/srv/data:/data", "-v", "/srv/ro:/ro:ro", "--volume=/srv/rw/:/rw:rw"}));
  ASSERT_TRUE(r) << r.error().message;
  const auto& v = r->request.step.volumes;
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].source, "/srv/data");
  EXPECT_EQ(v[0].destination, "/data");
  EXPECT_FALSE(v[0].read_only);
  EXPECT_EQ(v[1].source, "/srv/ro");
  EXPECT_TRUE(v[1].read_only);
  EXPECT_EQ(v[2].destination, "/rw");
  EXPECT_FALSE(v[2].read_only);
  for (std::string bad : {"/only-host", "/a:/b:rx", ":/b", "/a:", "/a:/b:ro:x"}) {
    expect_usage_error(with_image({"--volume", bad}), {"--volume " + bad, "HOST:CONTAINER"});
  }
}

TEST(RunArgsImageTest, AVolumesRelativeHostPathIsMadeAbsolute) {
  auto r = parse_run_args(with_image({"-v", "data/../out:/out"}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->request.step.volumes.size(), 1u);
  EXPECT_EQ(r->request.step.volumes[0].source, (fs::current_path() / "out").string());
}

TEST(RunArgsImageTest, EnvNeedsKeyEqualsValue) {
  auto r = parse_run_args(with_image({"--env", "A=1", "-e", "B=", "--env=C=x=y"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(r->request.step.env, ElementsAre("A=1", "B=", "C=x=y"));
  // `-e HOME` passes the shell's value in docker; here nothing of the shell's environment is.
  expect_usage_error(with_image({"--env", "HOME"}), {"--env HOME", "KEY=VALUE"});
  expect_usage_error(with_image({"-e", "PATH"}), {"-e PATH", "KEY=VALUE"});
}

TEST(RunArgsImageTest, UserWorkdirEntrypoint) {
  auto r = parse_run_args(
      with_image({"-u", "1000:1000", "-w", "/src", "--entrypoint", "/bin/sh", "-c", "true"}));
  // -c is not an option of pantry run: it ends up unknown, not in the command.
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("unknown option -c"));
  r = parse_run_args(
      with_image({"-u", "1000:1000", "-w", "/src", "--entrypoint", "/bin/sh", "--", "-c", "true"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.user, "1000:1000");
  EXPECT_EQ(r->request.step.working_dir, "/src");
  ASSERT_TRUE(r->request.step.entrypoint.has_value());
  EXPECT_THAT(*r->request.step.entrypoint, ElementsAre("/bin/sh"));
  EXPECT_THAT(r->request.step.argv, ElementsAre("-c", "true"));
}

TEST_F(RunArgsTest, ProjectIsMountedAtWorkspaceAndBecomesTheWorkdir) {
  auto r = parse_run_args(with_image({"--project", dir_.string()}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.project_dir, dir_.string());
  EXPECT_EQ(r->request.step.working_dir, "/workspace");
  // An explicit -w wins, before or after.
  r = parse_run_args(with_image({"-w", "/src", "--project", dir_.string()}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.working_dir, "/src");
  r = parse_run_args(with_image({"--project", dir_.string(), "-w", "/src"}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->request.step.working_dir, "/src");
  expect_usage_error(with_image({"--project", (dir_ / "missing").string()}),
                     {"--project", "not a directory"});
}

TEST_F(RunArgsTest, SecretsAreReadFromTheirFiles) {
  const std::string token = write_file("token", std::string("s3cr3t\n\0tail", 12));
  const std::string key = write_file("key", "");
  auto r = parse_run_args(with_image({"--secret", "api_token=" + token, "--secret=key=" + key}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->request.secrets.size(), 2u);
  EXPECT_EQ(r->request.secrets[0].name, "api_token");
  EXPECT_EQ(r->request.secrets[0].value, std::string("s3cr3t\n\0tail", 12));
  EXPECT_EQ(r->request.secrets[1].name, "key");
  EXPECT_EQ(r->request.secrets[1].value, "");
}

TEST_F(RunArgsTest, ASecretsMissingFileIsNamed) {
  const std::string missing = (dir_ / "no-such-file").string();
  expect_usage_error(with_image({"--secret", "token=" + missing}),
                     {"--secret token", "cannot read", missing});
}

TEST_F(RunArgsTest, ASecretOverOneMebibyteIsRefused) {
  const std::string big = write_file("big", std::string((std::size_t{1} << 20) + 1, 'x'));
  expect_usage_error(with_image({"--secret", "big=" + big}), {"--secret big", "over 1 MiB"});
}

TEST_F(RunArgsTest, ASecretNeedsNameEqualsFile) {
  for (std::string bad : {"token", "=file", "token="}) {
    expect_usage_error(with_image({"--secret", bad}), {"--secret " + bad, "NAME=FILE"});
  }
}

}  // namespace
}  // namespace pantry::cli
