// The runner: section: its defaults, the places derived from data_dir, every key's errors, and
// how `pantry config show` writes it.

#include "pantry/config/config.h"

#include "parse_helpers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

namespace pantry::config {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::uint64_t kMiB = 1ULL << 20;
constexpr std::uint64_t kGiB = 1ULL << 30;

// Runs a test body in another current directory and returns to the one before.
class current_dir {
 public:
  explicit current_dir(const std::filesystem::path& dir)
      : before_(std::filesystem::current_path()) {
    std::filesystem::current_path(dir);
  }
  ~current_dir() { std::filesystem::current_path(before_); }
  current_dir(const current_dir&) = delete;
  current_dir& operator=(const current_dir&) = delete;

 private:
  std::filesystem::path before_;
};

TEST(RunnerConfigTest, DefaultsAreWhatTheExampleFileSays) {
  const runner_config r = defaults().runner;
  EXPECT_TRUE(r.enabled);
  EXPECT_EQ(r.runc, "/usr/sbin/runc");
  EXPECT_EQ(r.runc_root, std::nullopt);
  EXPECT_EQ(r.state_dir, std::nullopt);
  EXPECT_EQ(r.cgroup_parent, std::nullopt);
  EXPECT_EQ(r.layers.dir, "layers");
  EXPECT_EQ(r.layers.max_size, 20 * kGiB);
  EXPECT_EQ(r.job_port, 8585);
  // orchestrator/runner's kDefaultMaxLine.
  EXPECT_EQ(r.max_line, 16384u);
  EXPECT_EQ(r.defaults.memory, 2 * kGiB);
  EXPECT_EQ(r.defaults.cpus, 0);
  EXPECT_EQ(r.defaults.pids_limit, 4096u);
  EXPECT_EQ(r.defaults.timeout, seconds(3600));
  EXPECT_EQ(r.defaults.tmpfs_size, kGiB);
}

TEST(RunnerConfigTest, DataDirIdIsAKnownAnswer) {
  // printf %s /srv/pantry | sha256sum | cut -c1-12
  EXPECT_EQ(data_dir_id("/srv/pantry"), "9407809c7203");
}

TEST(RunnerConfigTest, DataDirIdIsTheSameForTheSameDirectoryWrittenAnotherWay) {
  const std::string id = data_dir_id("/srv/pantry");
  for (const char* same : {"/srv/pantry/", "/srv/./pantry", "/srv/x/../pantry", "//srv//pantry"}) {
    EXPECT_EQ(data_dir_id(same), id) << same;
  }
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  const current_dir in(tmp);
  EXPECT_EQ(data_dir_id("./pantry-data"), data_dir_id((tmp / "pantry-data").string()));
  EXPECT_EQ(data_dir_id("pantry-data/"), data_dir_id("./pantry-data"));
}

TEST(RunnerConfigTest, DataDirIdDiffersForDifferentDirectories) {
  EXPECT_NE(data_dir_id("/srv/pantry"), data_dir_id("/srv/pantry2"));
  EXPECT_NE(data_dir_id("/srv/pantry"), data_dir_id("/srv"));
  EXPECT_NE(data_dir_id("/srv/pantry"), data_dir_id("/SRV/pantry"));
  // A relative data dir names a different directory from each current directory.
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  std::string in_tmp;
  {
    const current_dir in(tmp);
    in_tmp = data_dir_id("pantry-data");
  }
  const current_dir in_root("/");
  EXPECT_NE(data_dir_id("pantry-data"), in_tmp);
  EXPECT_EQ(data_dir_id("pantry-data"), data_dir_id("/pantry-data"));
}

TEST(RunnerConfigTest, UnsetPlacesAreDerivedFromTheDataDir) {
  const config c = parse_ok("data_dir: /srv/pantry\n");
  const runner_places p = runner_places_for(c);
  EXPECT_EQ(p.runc_root, "/run/pantry/9407809c7203/runc");
  EXPECT_EQ(p.state_dir, "/run/pantry/9407809c7203/containers");
  EXPECT_EQ(p.cgroup_parent, "pantry-9407809c7203");
  EXPECT_EQ(p.layers_dir, "/srv/pantry/layers");
}

TEST(RunnerConfigTest, DerivedPlacesFollowADataDirChangedAfterParsing) {
  // As `--data-dir` does: the places are derived when they are used, not when the file is read.
  config c = parse_ok("data_dir: /srv/pantry\n");
  c.data_dir = "/var/lib/pantry";
  const runner_places p = runner_places_for(c);
  EXPECT_EQ(p.runc_root, "/run/pantry/53a7cb0141cf/runc");
  EXPECT_EQ(p.state_dir, "/run/pantry/53a7cb0141cf/containers");
  EXPECT_EQ(p.cgroup_parent, "pantry-53a7cb0141cf");
  EXPECT_EQ(p.layers_dir, "/var/lib/pantry/layers");
}

TEST(RunnerConfigTest, TwoDataDirsNeverShareAPlace) {
  config a = defaults();
  config b = defaults();
  a.data_dir = "/srv/a";
  b.data_dir = "/srv/b";
  const runner_places pa = runner_places_for(a);
  const runner_places pb = runner_places_for(b);
  EXPECT_NE(pa.runc_root, pb.runc_root);
  EXPECT_NE(pa.state_dir, pb.state_dir);
  EXPECT_NE(pa.cgroup_parent, pb.cgroup_parent);
  EXPECT_NE(pa.layers_dir, pb.layers_dir);
}

TEST(RunnerConfigTest, ReadsEveryKey) {
  const config c = parse_ok(
      "data_dir: /srv/pantry\n"
      "runner:\n"
      "  enabled: false\n"
      "  runc: /usr/local/bin/runc\n"
      "  runc_root: /run/ci/runc\n"
      "  state_dir: /dev/shm/ci\n"
      "  cgroup_parent: ci.pantry_1-a\n"
      "  layers: {dir: /var/cache/layers, max_size: 0}\n"
      "  job_port: 18585\n"
      "  max_line: 1MiB\n"
      "  defaults:\n"
      "    memory: 6MiB\n"
      "    cpus: 1.5\n"
      "    pids_limit: 1\n"
      "    timeout: 0s\n"
      "    tmpfs_size: 1MiB\n");
  const runner_config& r = c.runner;
  EXPECT_FALSE(r.enabled);
  EXPECT_EQ(r.runc, "/usr/local/bin/runc");
  EXPECT_EQ(r.runc_root, "/run/ci/runc");
  EXPECT_EQ(r.state_dir, "/dev/shm/ci");
  EXPECT_EQ(r.cgroup_parent, "ci.pantry_1-a");
  EXPECT_EQ(r.layers, (runner_layers{"/var/cache/layers", 0}));
  EXPECT_EQ(r.job_port, 18585);
  EXPECT_EQ(r.max_line, kMiB);
  EXPECT_EQ(r.defaults, (runner_step_defaults{6 * kMiB, 1.5, 1, seconds(0), kMiB}));
  const runner_places p = runner_places_for(c);
  EXPECT_EQ(p,
            (runner_places{"/run/ci/runc", "/dev/shm/ci", "ci.pantry_1-a", "/var/cache/layers"}));
}

TEST(RunnerConfigTest, OverlayKeepsTheOtherKeys) {
  const config c = parse_ok("runner:\n  defaults: {cpus: 2}\n  layers: {max_size: 1GiB}\n");
  config want = defaults();
  want.runner.defaults.cpus = 2;
  want.runner.layers.max_size = kGiB;
  EXPECT_EQ(c, want);
}

TEST(RunnerConfigTest, RelativeLayersDirIsUnderTheDataDir) {
  config c = parse_ok("data_dir: /srv/pantry\nrunner: {layers: {dir: ../shared/./layers/}}\n");
  EXPECT_EQ(c.runner.layers.dir, "../shared/./layers/") << "kept as written";
  EXPECT_EQ(runner_places_for(c).layers_dir, "/srv/shared/layers");
}

TEST(RunnerConfigTest, ConfigShowWritesTheResolvedPlaces) {
  config c = defaults();
  c.data_dir = "/srv/pantry";
  const std::string yaml = to_yaml(c);
  EXPECT_THAT(yaml, HasSubstr("\n  runc_root: /run/pantry/9407809c7203/runc  # derived from "
                              "data_dir\n"));
  EXPECT_THAT(yaml, HasSubstr("\n  state_dir: /run/pantry/9407809c7203/containers  # derived "
                              "from data_dir\n"));
  EXPECT_THAT(yaml, HasSubstr("\n  cgroup_parent: pantry-9407809c7203  # derived from data_dir\n"));
  EXPECT_THAT(yaml, HasSubstr("\n    dir: layers  # relative to data_dir: /srv/pantry/layers\n"));
  EXPECT_THAT(yaml, HasSubstr("\n  job_port: 8585\n  max_line: 16KiB\n"));
  EXPECT_THAT(yaml, HasSubstr("\n    memory: 2GiB\n    cpus: 0\n    pids_limit: 4096\n"
                              "    timeout: 1h\n    tmpfs_size: 1GiB\n"));
  EXPECT_EQ(parse_ok(yaml), c) << yaml;
}

TEST(RunnerConfigTest, ConfigShowWritesSetPlacesWithoutAComment) {
  const config c = parse_ok("runner: {runc_root: /run/ci/runc, layers: {dir: /srv/layers}}\n");
  const std::string yaml = to_yaml(c);
  EXPECT_THAT(yaml, HasSubstr("\n  runc_root: /run/ci/runc\n"));
  EXPECT_THAT(yaml, HasSubstr("\n    dir: /srv/layers\n"));
  EXPECT_EQ(parse_ok(yaml), c) << yaml;
}

TEST(RunnerConfigTest, APlaceSetToItsDerivedValueReadsAsUnset) {
  // So that the output of `pantry config show`, used as a file, still follows the data dir.
  const config c = parse_ok(
      "data_dir: /srv/pantry\n"
      "runner:\n"
      "  runc_root: /run/pantry/9407809c7203/runc\n"
      "  state_dir: /run/pantry/9407809c7203/containers\n"
      "  cgroup_parent: pantry-9407809c7203\n");
  EXPECT_EQ(c.runner.runc_root, std::nullopt);
  EXPECT_EQ(c.runner.state_dir, std::nullopt);
  EXPECT_EQ(c.runner.cgroup_parent, std::nullopt);
  // The same values with another data dir are set places.
  const config d = parse_ok(
      "data_dir: /var/lib/pantry\n"
      "runner:\n"
      "  runc_root: /run/pantry/9407809c7203/runc\n");
  EXPECT_EQ(d.runner.runc_root, "/run/pantry/9407809c7203/runc");
}

TEST(RunnerConfigTest, CpusRoundTripExactly) {
  for (const char* cpus : {"0", "0.01", "0.1", "0.3", "1", "1.5", "2.25", "4096", "0.123456789"}) {
    const config c = parse_ok(std::string("runner: {defaults: {cpus: ") + cpus + "}}\n");
    EXPECT_EQ(parse_ok(to_yaml(c)), c) << cpus << "\n" << to_yaml(c);
  }
  EXPECT_THAT(to_yaml(parse_ok("runner: {defaults: {cpus: 0.10}}\n")), HasSubstr("cpus: 0.1\n"));
}

TEST(RunnerConfigTest, PathErrors) {
  EXPECT_EQ(error_of("runner:\n  runc: runc\n"),
            "test.yaml:2:9: runner.runc: \"runc\" is not an absolute path; give runc's, e.g. "
            "/usr/sbin/runc");
  EXPECT_EQ(error_of("runner:\n  runc_root: run/pantry/runc\n"),
            "test.yaml:2:14: runner.runc_root: \"run/pantry/runc\" is not an absolute path; use a "
            "directory of pantry's own, e.g. /run/pantry/ci/runc");
  EXPECT_EQ(error_of("runner:\n  state_dir: /tmp\n"),
            "test.yaml:2:14: runner.state_dir: \"/tmp\" is the root or a top-level directory, and "
            "the runner removes whatever it finds in this directory when it starts; use a "
            "directory of pantry's own, e.g. /run/pantry/ci/containers");
  EXPECT_THAT(error_of("runner:\n  state_dir: /run/x/../\n"),
              HasSubstr("\"/run/x/../\" is the root or a top-level directory"));
  EXPECT_THAT(error_of("runner:\n  runc_root: /\n"),
              HasSubstr("\"/\" is the root or a top-level directory"));
  EXPECT_THAT(error_of("runner:\n  runc_root: /run/runc/\n"),
              HasSubstr("\"/run/runc/\" is runc's default root, which other tools share"));
  EXPECT_EQ(error_of("runner:\n  state_dir:\n"),
            "test.yaml:2:3: runner.state_dir: \"\" has no value; set an absolute path, e.g. "
            "/run/pantry/ci/containers, or remove the key to keep the default");
  EXPECT_THAT(error_of("runner:\n  layers: {dir: \"a\\tb\"}\n"),
              HasSubstr("runner.layers.dir: \"a\\tb\""));
}

TEST(RunnerConfigTest, CgroupParentMustBeOneName) {
  for (const char* bad : {"a/b", "/pantry", ".", "..", "pantry ci", "pantry:1", "é"}) {
    EXPECT_THAT(error_of(std::string("runner:\n  cgroup_parent: \"") + bad + "\"\n"),
                HasSubstr("is not one cgroup name; use letters, digits, '_', '.' and '-', e.g. "
                          "pantry-ci"))
        << bad;
  }
  EXPECT_EQ(error_of("runner:\n  cgroup_parent: a/b\n"),
            "test.yaml:2:18: runner.cgroup_parent: \"a/b\" is not one cgroup name; use letters, "
            "digits, '_', '.' and '-', e.g. pantry-ci");
  EXPECT_EQ(parse_ok("runner:\n  cgroup_parent: ...a\n").runner.cgroup_parent, "...a");
}

TEST(RunnerConfigTest, NumberErrors) {
  EXPECT_EQ(error_of("runner:\n  job_port: 0\n"),
            "test.yaml:2:13: runner.job_port: \"0\" is out of range; use a port from 1 to 65535, "
            "e.g. 8585");
  EXPECT_THAT(error_of("runner:\n  job_port: 65536\n"), HasSubstr("\"65536\" is out of range"));
  EXPECT_THAT(error_of("runner:\n  job_port: http\n"), HasSubstr("\"http\" is not a whole number"));
  EXPECT_EQ(error_of("runner:\n  max_line: 79\n"),
            "test.yaml:2:13: runner.max_line: \"79\" is out of range; use a size from 80B to "
            "16MiB, e.g. 16KiB");
  EXPECT_THAT(error_of("runner:\n  max_line: 17MiB\n"), HasSubstr("\"17MiB\" is out of range"));
  EXPECT_EQ(parse_ok("runner:\n  max_line: 80\n").runner.max_line, 80u);
  EXPECT_EQ(error_of("runner:\n  layers:\n    max_size: 20 GB\n"),
            "test.yaml:3:15: runner.layers.max_size: \"20 GB\" is not a size; use a number with "
            "B, KiB, MiB, GiB or TiB, e.g. 50GiB");
  EXPECT_EQ(error_of("runner:\n  defaults:\n    memory: 5MiB\n"),
            "test.yaml:3:13: runner.defaults.memory: \"5MiB\" is less than 6MiB, the least a "
            "container can start with; set e.g. 2GiB");
  EXPECT_THAT(error_of("runner:\n  defaults:\n    memory: 0\n"), HasSubstr("\"0\" is less than"));
  EXPECT_EQ(error_of("runner:\n  defaults:\n    tmpfs_size: 0\n"),
            "test.yaml:3:17: runner.defaults.tmpfs_size: \"0\" is less than 1MiB (and 0 would be "
            "a tmpfs without a limit); set e.g. 1GiB");
  EXPECT_EQ(error_of("runner:\n  defaults:\n    pids_limit: 0\n"),
            "test.yaml:3:17: runner.defaults.pids_limit: \"0\" is out of range; use a number of "
            "processes from 1 to 4194304, e.g. 4096");
  EXPECT_THAT(error_of("runner:\n  defaults:\n    pids_limit: -1\n"), HasSubstr("is negative"));
  EXPECT_EQ(error_of("runner:\n  defaults:\n    timeout: 10\n"),
            "test.yaml:3:14: runner.defaults.timeout: \"10\" has no unit; add one: 10s "
            "(seconds), 10m, 10h or 10d");
  EXPECT_THAT(error_of("runner:\n  enabled: yes\n"),
              HasSubstr("runner.enabled: \"yes\" is not a boolean; use true or false"));
}

TEST(RunnerConfigTest, CpusErrors) {
  const std::string range = "use 0 for no limit, or a number of CPUs from 0.01 to 4096, e.g. 1.5";
  EXPECT_EQ(error_of("runner:\n  defaults:\n    cpus: 0.001\n"),
            "test.yaml:3:11: runner.defaults.cpus: \"0.001\" is out of range; " + range);
  EXPECT_EQ(error_of("runner:\n  defaults:\n    cpus: 4097\n"),
            "test.yaml:3:11: runner.defaults.cpus: \"4097\" is out of range; " + range);
  for (const char* bad : {"two", "-1", "1e3", ".5", "1.", "inf", "nan", "1,5", "0x10", "+1"}) {
    EXPECT_EQ(error_of(std::string("runner:\n  defaults:\n    cpus: \"") + bad + "\"\n"),
              "test.yaml:3:11: runner.defaults.cpus: \"" + std::string(bad) +
                  "\" is not a number of CPUs; " + range)
        << bad;
  }
}

TEST(RunnerConfigTest, UnknownKeysSuggestTheNearest) {
  EXPECT_THAT(error_of("runner:\n  runc_rot: /run/ci/runc\n"),
              HasSubstr("runner.runc_rot: \"runc_rot\" is not a known key; did you mean "
                        "runc_root?"));
  EXPECT_THAT(error_of("runner:\n  defaults:\n    memroy: 1GiB\n"),
              HasSubstr("runner.defaults.memroy: \"memroy\" is not a known key; did you mean "
                        "memory?"));
  EXPECT_THAT(error_of("runner:\n  layers:\n    dirs: x\n"), HasSubstr("did you mean dir?"));
  EXPECT_THAT(error_of("runner:\n  pids_limit: 10\n"),
              HasSubstr("did you mean runner.defaults.pids_limit? (it belongs under "
                        "runner.defaults:)"));
  EXPECT_THAT(error_of("job_port: 1\n"),
              HasSubstr("did you mean runner.job_port? (it belongs under runner:)"));
}

TEST(RunnerConfigTest, SectionsMustBeMaps) {
  EXPECT_THAT(error_of("runner: true\n"), HasSubstr("runner: \"true\" is a single value"));
  EXPECT_THAT(error_of("runner:\n  defaults: [1]\n"), HasSubstr("runner.defaults: "));
  EXPECT_EQ(parse_ok("runner:\n  layers:\n  defaults:\n"), defaults());
}

TEST(RunnerConfigTest, PlacesMustNotHoldOneAnother) {
  EXPECT_EQ(error_of("runner:\n  runc_root: /run/ci/runc\n  state_dir: /run/ci/runc\n"),
            "test.yaml:3:14: runner.state_dir: \"/run/ci/runc\" (runner.state_dir) is "
            "\"/run/ci/runc\" (runner.runc_root), and the runner empties or evicts in each of them "
            "on its own; give each its own directory");
  EXPECT_THAT(error_of("runner:\n  runc_root: /run/ci/state/runc\n  state_dir: /run/ci/state\n"),
              HasSubstr("test.yaml:2:14: runner.runc_root: \"/run/ci/state/runc\" "
                        "(runner.runc_root) is inside \"/run/ci/state\" (runner.state_dir)"));
  EXPECT_THAT(error_of("data_dir: /run/ci\nrunner:\n  state_dir: /run/ci/\n"),
              HasSubstr("test.yaml:3:14: runner.state_dir: \"/run/ci/layers\" (runner.layers.dir) "
                        "is inside \"/run/ci\" (runner.state_dir)"));
  // A data dir in the derived places' parent is apart from them.
  EXPECT_EQ(parse_ok("data_dir: /run/pantry\n").data_dir, "/run/pantry");
}

}  // namespace
}  // namespace pantry::config
