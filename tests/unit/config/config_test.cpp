#include "pantry/config/config.h"

#include "parse_helpers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace pantry::config {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::uint64_t kGiB = 1ULL << 30;

// A config with every field away from its default.
config unusual_config() {
  config c;
  c.listen = {"::1", 9000};
  c.data_dir = "/var/lib/pantry data/#1: 'quoted' \"too\" ~ é";
  c.cache.max_size = 1536ULL << 10;
  c.pypi.upstreams = {{"internal", "http://pypi.internal:8080/root/pypi/+simple/", "/etc/ca.pem"},
                      {"pypi", "https://pypi.org/simple/", std::nullopt},
                      {"owner", "http://pantry1:8585/team/simple/", std::nullopt, true}};
  c.pypi.index_ttl = seconds(5400);
  c.pypi.negative_ttl = seconds(0);
  c.pypi.offline = true;
  c.pypi.routes = {{"mycorp-*", "internal"}, {"[a-z]?x", "internal"}, {"*", "pypi"}};
  c.server = {8, seconds(5), seconds(5400), seconds(1), false, log_level::off};
  c.upstream = {seconds(3), seconds(120), seconds(86400 + 1), 1024};
  c.oci.default_upstream = "ghcr.io";
  c.oci.upstreams = {{"ghcr.io", "https://ghcr.io", std::nullopt, "", ""},
                     {"registry.local", "http://[::1]:5000", "ca bundle.pem", "bot", "p@ss: word"}};
  c.oci.tag_ttl = seconds(0);
  c.oci.hosted = {"team/images/",
                  {{"ci", "0123456789abcdef-\"quoted\""}},
                  true,
                  "a-token-key: of at least 32 characters"};
  c.pypi.hosted = {{"team", {"ci"}, {"numpy", "mycorp-*"}}, {"ml.models_2", {"ci"}, {}}};
  c.runner.enabled = false;
  c.runner.runc = "/opt/runc v1/runc";
  c.runner.runc_root = "/run/ci: 'a'/runc";
  c.runner.state_dir = "/dev/shm/pantry #2/state";
  c.runner.cgroup_parent = "ci.pantry_2-a";
  c.runner.layers = {"../layers ~ é", 0};
  c.runner.job_port = 1;
  c.runner.max_line = 80;
  c.runner.defaults = {(6ULL << 20) + 1, 0.125, 1, seconds(90), 1ULL << 20};
  c.ci.enabled = false;
  c.ci.slots = 1024;
  c.ci.tokens = {{"dev", "0123456789abcdef: 'x'", ci_role::submit},
                 {"box.2", "fedcba9876543210", ci_role::runner}};
  c.ci.secrets = {{"PYPI_TOKEN", "/etc/pantry/secrets/pypi token #1"}, {"a.b-c", "/x"}};
  c.ci.runner_timeout = seconds(1);
  c.ci.log_limits = {1, seconds(5400), 1};
  c.ci.artifact_limits = {1536, seconds(86400), 1ULL << 40};
  c.pins.enabled = true;
  c.pins.schedule = "*/5 1-3 * jan,feb sun";
  c.pins.python = {"3.9", "3.12.1"};
  c.pins.platforms = {"macos-arm64", "windows-x86_64"};
  c.pins.prereleases = pins_prereleases::always;
  c.pins.min_release_age = seconds(5400);
  c.pins.max_open = 100;
  c.pins.groups = {{"py.test", "pytest*"}, {"b", "[a-z]?x: 'y' #1"}};
  c.pins.ignore = {"boto*", "x: \"y\""};
  c.pins.repositories = {
      {"app",
       "",
       "https://git.example/team/app.git",
       "/etc/t #1: 'x'",
       "release/1.x",
       {"requirements.txt", "ci/Contain erfile"},
       {pins_forge_kind::gitlab, "https://gitlab.example/api/v4", "group/sub/app", "/etc/g: t"}},
      {"local", "/srv/git/local ~ é", "", "", "", {".pantry.yml"}, {}}};
  return c;
}

class temp_dir {
 public:
  temp_dir() {
    path_ = std::filesystem::temp_directory_path() /
            ("pantry-config-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::string write(const std::string& name, std::string_view text) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(ConfigTest, DefaultsAreWhatTheExampleFileSays) {
  const config c = defaults();
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.port, 8585);
  EXPECT_EQ(c.data_dir, "./pantry-data");
  EXPECT_EQ(c.server.threads, 0u);
  EXPECT_EQ(c.server.header_timeout, seconds(30));
  EXPECT_EQ(c.server.idle_timeout, seconds(60));
  EXPECT_EQ(c.server.shutdown_grace, seconds(10));
  EXPECT_TRUE(c.server.access_log);
  EXPECT_EQ(c.server.log_level, log_level::info);
  EXPECT_EQ(c.upstream.connect_timeout, seconds(10));
  EXPECT_EQ(c.upstream.header_timeout, seconds(30));
  EXPECT_EQ(c.upstream.idle_timeout, seconds(30));
  EXPECT_EQ(c.upstream.max_idle_connections, 16u);
  EXPECT_EQ(c.cache.max_size, 50 * kGiB);
  ASSERT_EQ(c.pypi.upstreams.size(), 1u);
  EXPECT_EQ(c.pypi.upstreams[0], (pypi_upstream{"pypi", "https://pypi.org/simple/", {}}));
  EXPECT_EQ(c.pypi.index_ttl, seconds(600));
  EXPECT_EQ(c.pypi.negative_ttl, seconds(600));
  EXPECT_FALSE(c.pypi.offline);
  EXPECT_TRUE(c.pypi.routes.empty());
  EXPECT_EQ(c.oci.default_upstream, "docker.io");
  ASSERT_EQ(c.oci.upstreams.size(), 1u);
  EXPECT_EQ(c.oci.upstreams[0],
            (oci_upstream{"docker.io", "https://registry-1.docker.io", {}, "", ""}));
  EXPECT_EQ(c.oci.tag_ttl, seconds(300));
}

TEST(ConfigTest, EmbeddedDefaultsAreTheExampleFile) {
  std::ifstream in(PANTRY_SOURCE_DIR "/deploy/pantry.example.yaml", std::ios::binary);
  ASSERT_TRUE(in) << "cannot open deploy/pantry.example.yaml";
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(embedded_defaults(), file);
  EXPECT_EQ(parse_ok(file), defaults());
}

TEST(ConfigTest, EmptyFileKeepsDefaults) {
  EXPECT_EQ(parse_ok(""), defaults());
  EXPECT_EQ(parse_ok("# nothing set\n\n"), defaults());
  EXPECT_EQ(parse_ok("---\n"), defaults());
}

TEST(ConfigTest, EmptySectionKeepsDefaults) {
  EXPECT_EQ(parse_ok("cache:\n  # max_size: 1GiB\npypi:\noci:\n"), defaults());
}

TEST(ConfigTest, OverlayReplacesOnlyTheKeysGiven) {
  const config c = parse_ok("cache:\n  max_size: 512MiB\npypi:\n  offline: true\n");
  config want = defaults();
  want.cache.max_size = 512ULL << 20;
  want.pypi.offline = true;
  EXPECT_EQ(c, want);
}

TEST(ConfigTest, OverlayListReplacesTheWholeList) {
  const config c = parse_ok(
      "pypi:\n"
      "  upstreams:\n"
      "    - name: internal\n"
      "      url: https://pypi.internal/simple/\n"
      "      ca_file: /etc/pantry/internal.pem\n");
  ASSERT_EQ(c.pypi.upstreams.size(), 1u);
  EXPECT_EQ(c.pypi.upstreams[0].name, "internal");
  EXPECT_EQ(c.pypi.upstreams[0].url, "https://pypi.internal/simple/");
  EXPECT_EQ(c.pypi.upstreams[0].ca_file, "/etc/pantry/internal.pem");
  EXPECT_EQ(c.pypi.index_ttl, defaults().pypi.index_ttl);
  EXPECT_EQ(c.oci, defaults().oci);
}

TEST(ConfigTest, ReadsEveryKey) {
  const config c = parse_ok(
      "listen: \"[::1]:9000\"\n"
      "data_dir: /srv/pantry\n"
      "cache: {max_size: 1TiB}\n"
      "pypi:\n"
      "  upstreams: [{name: a, url: 'http://a:81/simple/'}, {name: b, url: 'https://b/'}]\n"
      "  index_ttl: 1h30m\n"
      "  offline: True\n"
      "oci:\n"
      "  default_upstream: ghcr.io\n"
      "  upstreams:\n"
      "    - {name: ghcr.io, url: 'https://ghcr.io/'}\n"
      "  tag_ttl: 0s\n");
  EXPECT_EQ(c.listen.str(), "[::1]:9000");
  EXPECT_EQ(c.data_dir, "/srv/pantry");
  EXPECT_EQ(c.cache.max_size, 1ULL << 40);
  ASSERT_EQ(c.pypi.upstreams.size(), 2u);
  EXPECT_EQ(c.pypi.upstreams[1].url, "https://b/");
  EXPECT_EQ(c.pypi.index_ttl, seconds(5400));
  EXPECT_TRUE(c.pypi.offline);
  EXPECT_EQ(c.oci.default_upstream, "ghcr.io");
  ASSERT_EQ(c.oci.upstreams.size(), 1u);
  EXPECT_EQ(c.oci.upstreams[0].url, "https://ghcr.io") << "the trailing '/' is dropped";
  EXPECT_EQ(c.oci.tag_ttl, seconds(0));
}

TEST(ConfigTest, RoundTripOfDefaults) {
  EXPECT_EQ(parse_ok(to_yaml(defaults(), secrets::shown)), defaults())
      << to_yaml(defaults(), secrets::shown);
}

TEST(ConfigTest, RoundTripOfNonDefaultValues) {
  const config c = unusual_config();
  const std::string yaml = to_yaml(c, secrets::shown);
  EXPECT_EQ(parse_ok(yaml), c) << yaml;
}

TEST(ConfigTest, RoundTripOfAwkwardStrings) {
  for (const std::string dir : {"~",
                                "null",
                                "true",
                                "123",
                                "- x",
                                "[a]",
                                "{b}",
                                "a: b",
                                "#c",
                                " leading space",
                                "trailing space ",
                                "'",
                                "\"",
                                "@at",
                                "`tick",
                                "%pct",
                                "*star",
                                "&amp",
                                "!bang",
                                "|pipe",
                                ">gt",
                                "? q",
                                "données/東京",
                                "\xEF\xBB\xBF"
                                "bom"}) {
    config c = defaults();
    c.data_dir = dir;
    c.pypi.upstreams[0].ca_file = dir;
    const std::string yaml = to_yaml(c, secrets::shown);
    EXPECT_EQ(parse_ok(yaml), c) << "data_dir " << dir << "\n" << yaml;
  }
}

TEST(ConfigTest, ToYamlWritesSizesAndDurationsWithUnits) {
  const std::string yaml = to_yaml(defaults(), secrets::shown);
  EXPECT_THAT(yaml, HasSubstr("max_size: 50GiB"));
  EXPECT_THAT(yaml, HasSubstr("index_ttl: 10m"));
  EXPECT_THAT(yaml, HasSubstr("tag_ttl: 5m"));
  EXPECT_THAT(yaml, HasSubstr("listen: 0.0.0.0:8585"));
  EXPECT_THAT(yaml, HasSubstr("offline: false"));
  EXPECT_THAT(yaml, HasSubstr("negative_ttl: 10m"));
  EXPECT_THAT(yaml, HasSubstr("routes: []"));
  EXPECT_THAT(yaml, HasSubstr("threads: 0"));
  EXPECT_THAT(yaml, HasSubstr("header_timeout: 30s"));
  EXPECT_THAT(yaml, HasSubstr("idle_timeout: 1m"));
  EXPECT_THAT(yaml, HasSubstr("shutdown_grace: 10s"));
  EXPECT_THAT(yaml, HasSubstr("access_log: true"));
  EXPECT_THAT(yaml, HasSubstr("connect_timeout: 10s"));
  EXPECT_THAT(yaml, HasSubstr("max_idle_connections: 16"));
}

TEST(ConfigTest, ErrorMessageHasTheDocumentedForm) {
  EXPECT_EQ(error_of("cache:\n  max_size: 50 GB\n"),
            "test.yaml:2:13: cache.max_size: \"50 GB\" is not a size; use a number with B, KiB, "
            "MiB, GiB or TiB, e.g. 50GiB");
}

TEST(ConfigTest, UnknownKeySuggestsNearest) {
  const std::string msg = error_of("cache:\n  max_sise: 1GiB\n");
  EXPECT_THAT(msg, StartsWith("test.yaml:2:3: cache.max_sise: \"max_sise\" is not a known key"));
  EXPECT_THAT(msg, HasSubstr("did you mean max_size?"));
}

TEST(ConfigTest, UnknownTopLevelKeySuggestsNearest) {
  const std::string msg = error_of("data-dir: /x\n");
  EXPECT_THAT(msg, StartsWith("test.yaml:1:1: data-dir: \"data-dir\" is not a known key"));
  EXPECT_THAT(msg, HasSubstr("did you mean data_dir?"));
}

TEST(ConfigTest, UnknownKeyInTheWrongSectionNamesTheRightOne) {
  const std::string msg = error_of("listen: 0.0.0.0:1\nmax_size: 1GiB\n");
  EXPECT_THAT(msg, StartsWith("test.yaml:2:1: max_size: \"max_size\" is not a known key"));
  EXPECT_THAT(msg, HasSubstr("did you mean cache.max_size or runner.layers.max_size? (it belongs "
                             "under cache: or runner.layers:)"));
}

TEST(ConfigTest, UnknownKeyFarFromAnyListsTheKnownKeys) {
  const std::string msg = error_of("pypi:\n  frobnicate: 3\n");
  EXPECT_THAT(msg, StartsWith("test.yaml:2:3: pypi.frobnicate: \"frobnicate\" is not a known key"));
  EXPECT_THAT(
      msg,
      HasSubstr("known keys here: upstreams, index_ttl, negative_ttl, offline, routes, hosted"));
}

TEST(ConfigTest, UnknownUpstreamKeySuggestsNearest) {
  const std::string msg =
      error_of("pypi:\n  upstreams:\n    - name: a\n      urll: https://a/simple/\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:7: pypi.upstreams[0].urll: \"urll\" is not a known key; "
                             "did you mean url?"));
}

TEST(ConfigTest, RepeatedKeyIsAnError) {
  const std::string msg = error_of("cache:\n  max_size: 1GiB\n  max_size: 2GiB\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:3:3: cache.max_size: \"max_size\" is set twice (first on "
                             "line 2); remove one of them"));
}

TEST(ConfigTest, MapWhereScalarExpectedIsAnError) {
  const std::string msg = error_of("cache:\n  max_size: {a: 1}\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:13: cache.max_size: \"{a: 1}\" is a map, expected a "
                             "size, e.g. 50GiB; write the value on the same line as the key"));
}

TEST(ConfigTest, ListWhereScalarExpectedIsAnError) {
  const std::string msg = error_of("listen: [0.0.0.0, 8585]\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:1:9: listen: \"[0.0.0.0, 8585]\" is a list, expected "
                             "HOST:PORT"));
}

TEST(ConfigTest, ListWhereMapExpectedIsAnError) {
  const std::string msg = error_of("cache:\n  - max_size: 1GiB\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:3: cache: \"[{max_size: 1GiB}]\" is a list, expected a "
                             "map"));
}

TEST(ConfigTest, ScalarWhereListExpectedIsAnError) {
  const std::string msg = error_of("pypi:\n  upstreams: https://pypi.org/simple/\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:14: pypi.upstreams: \"https://pypi.org/simple/\" is a "
                             "single value, expected a list of upstreams"));
}

TEST(ConfigTest, ScalarWhereUpstreamMapExpectedIsAnError) {
  const std::string msg = error_of("oci:\n  upstreams:\n    - https://ghcr.io\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:3:7: oci.upstreams[0]: \"https://ghcr.io\" is a single "
                             "value, expected a map with name and url"));
}

TEST(ConfigTest, TopLevelMustBeAMap) {
  const std::string msg = error_of("just some text\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:1:1: (top level): \"just some text\" is a single value, "
                             "expected a map of settings"));
}

TEST(ConfigTest, EmptyValueIsAnErrorAtItsKey) {
  const std::string msg = error_of("listen: 0.0.0.0:1\ndata_dir:\ncache: {}\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:1: data_dir: \"\" has no value; set a directory, e.g. "
                             "./pantry-data, or remove the key to keep the default"));
}

TEST(ConfigTest, YesAndNoAreNotBooleans) {
  for (const std::string word : {"yes", "no", "on", "off", "y", "1"}) {
    const std::string msg = error_of("pypi:\n  offline: " + word + "\n");
    EXPECT_THAT(msg, HasSubstr("test.yaml:2:12: pypi.offline: \"" + word +
                               "\" is not a boolean; use true or false"));
  }
}

TEST(ConfigTest, TrueAndFalseAreBooleans) {
  EXPECT_TRUE(parse_ok("pypi: {offline: true}").pypi.offline);
  EXPECT_TRUE(parse_ok("pypi: {offline: TRUE}").pypi.offline);
  EXPECT_FALSE(parse_ok("pypi: {offline: False}").pypi.offline);
}

TEST(ConfigTest, DuplicateUpstreamNamesAreAnError) {
  const std::string msg = error_of(
      "pypi:\n"
      "  upstreams:\n"
      "    - name: pypi\n"
      "      url: https://pypi.org/simple/\n"
      "    - name: pypi\n"
      "      url: https://mirror.example/simple/\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:5:13: pypi.upstreams[1].name: \"pypi\" is already the name "
                             "of pypi.upstreams[0] (line 3); give each upstream its own name"));
}

TEST(ConfigTest, DefaultUpstreamMustNameAnUpstream) {
  const std::string msg = error_of("oci:\n  default_upstream: quay.io\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:21: oci.default_upstream: \"quay.io\" names no upstream "
                             "in oci.upstreams; set it to one of: docker.io"));
}

TEST(ConfigTest, ReplacedUpstreamsMustStillHoldTheDefaultUpstream) {
  const std::string msg =
      error_of("oci:\n  upstreams:\n    - {name: ghcr.io, url: 'https://ghcr.io'}\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:2:3: oci.default_upstream: \"docker.io\" (the default) "
                             "names no upstream in oci.upstreams; add an upstream named docker.io "
                             "or set oci.default_upstream to one of: ghcr.io"));
}

TEST(ConfigTest, OciCredentialsAndHostedUsers) {
  const config c = parse_ok(
      "oci:\n"
      "  upstreams:\n"
      "    - {name: docker.io, url: 'https://registry-1.docker.io'}\n"
      "    - {name: ghcr.io, url: 'https://ghcr.io', username: bot, password: s3cret}\n"
      "  hosted:\n"
      "    prefix: team/images/\n"
      "    users: [{name: ci, token: 0123456789abcdef0123}]\n"
      "    pull_auth: true\n");
  ASSERT_EQ(c.oci.upstreams.size(), 2u);
  EXPECT_EQ(c.oci.upstreams[1].username, "bot");
  EXPECT_EQ(c.oci.upstreams[1].password, "s3cret");
  EXPECT_EQ(c.oci.hosted.prefix, "team/images/");
  ASSERT_EQ(c.oci.hosted.users.size(), 1u);
  EXPECT_EQ(c.oci.hosted.users[0], (oci_user{"ci", "0123456789abcdef0123"}));
  EXPECT_TRUE(c.oci.hosted.pull_auth);
  EXPECT_EQ(parse_ok(to_yaml(c, secrets::shown)), c) << to_yaml(c, secrets::shown);
  EXPECT_EQ(defaults().oci.hosted.prefix, "local/");
  EXPECT_TRUE(defaults().oci.hosted.users.empty());
}

TEST(ConfigTest, OciCredentialsErrors) {
  EXPECT_THAT(error_of("oci:\n  upstreams: [{name: docker.io, url: 'https://x', username: u}]\n"),
              HasSubstr("oci.upstreams[0].password: the upstream \"docker.io\" has a username but "
                        "no password"));
  EXPECT_THAT(
      error_of("oci:\n  upstreams: [{name: docker.io, url: 'https://x', username: u, password: "
               "p}]\n"),
      HasSubstr("\"docker.io\" has credentials, and what is pulled with them is served only to "
                "clients that log in to pantry; add a user to oci.hosted.users"));
  EXPECT_THAT(error_of("pypi:\n  upstreams: [{name: a, url: 'https://x/simple/', username: u}]\n"),
              HasSubstr("pypi.upstreams[0].username: \"username\" is not a known key"));
}

TEST(ConfigTest, ShownConfigHidesSecretsAndItsPlaceholderIsRefused) {
  const config c = unusual_config();
  const std::string hidden = to_yaml(c);
  EXPECT_THAT(hidden, Not(HasSubstr("p@ss: word"))) << hidden;
  EXPECT_THAT(hidden, Not(HasSubstr("0123456789abcdef"))) << hidden;
  EXPECT_THAT(hidden, HasSubstr("password: <hidden>")) << hidden;
  EXPECT_THAT(hidden, HasSubstr("token: <hidden>")) << hidden;
  EXPECT_THAT(hidden, Not(HasSubstr("of at least 32 characters"))) << hidden;
  EXPECT_THAT(hidden, HasSubstr("token_key: <hidden>")) << hidden;
  EXPECT_THAT(to_yaml(c, secrets::shown), HasSubstr("p@ss: word"));
  // Run as it is printed, the hidden config would log in with "<hidden>": it is refused.
  const std::string msg = error_of(hidden);
  EXPECT_THAT(msg, HasSubstr("oci.upstreams[1].password: \"<hidden>\" is the placeholder `pantry "
                             "config show` prints in place of a password; put the real password "
                             "here"));
  EXPECT_THAT(msg, HasSubstr("oci.hosted.users[0].token: \"<hidden>\" is the placeholder"));
}

TEST(ConfigTest, HostedErrorsNeverEchoTokens) {
  EXPECT_THAT(error_of("oci:\n  hosted:\n    prefix: local\n"),
              HasSubstr("test.yaml:3:13: oci.hosted.prefix: \"local\" does not end with '/'"));
  EXPECT_THAT(error_of("oci:\n  hosted:\n    prefix: Local/\n"),
              HasSubstr("oci.hosted.prefix: \"Local/\" has an empty component or one that starts"));
  const std::string short_token =
      error_of("oci:\n  hosted:\n    users: [{name: ci, token: hunter2}]\n");
  EXPECT_THAT(short_token, HasSubstr("oci.hosted.users[0].token: the token has 7 characters; use "
                                     "at least 16"));
  EXPECT_THAT(short_token, Not(HasSubstr("hunter2")));
  const std::string short_key = error_of("oci:\n  hosted:\n    token_key: shared-but-short\n");
  EXPECT_THAT(short_key, HasSubstr("test.yaml:3:16: oci.hosted.token_key: the token_key has 16 "
                                   "characters; use at least 32"));
  EXPECT_THAT(short_key, Not(HasSubstr("shared-but-short")));
  EXPECT_THAT(
      error_of("oci:\n  hosted:\n    users: [{name: ci, token: 0123456789abcdef}, {name: ci, "
               "token: 0123456789abcdef}]\n"),
      HasSubstr("oci.hosted.users[1].name: \"ci\" is listed twice"));
  EXPECT_THAT(error_of("oci:\n  hosted:\n    users: [{name: ci}]\n"),
              HasSubstr("oci.hosted.users[0]: a user needs both name and token"));
}

TEST(ConfigTest, UrlMustBeHttpOrHttps) {
  const std::string msg =
      error_of("pypi:\n  upstreams:\n    - name: a\n      url: ftp://pypi.org/simple/\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:12: pypi.upstreams[0].url: \"ftp://pypi.org/simple/\" is "
                             "not an http:// or https:// URL; write the full URL, e.g. "
                             "https://pypi.org/simple/"));
  EXPECT_THAT(error_of("oci:\n  upstreams: [{name: x, url: ghcr.io}]\n"),
              HasSubstr("test.yaml:2:30: oci.upstreams[0].url: \"ghcr.io\" is not an http://"));
}

TEST(ConfigTest, PypiUrlMustEndInSlash) {
  const std::string msg =
      error_of("pypi:\n  upstreams:\n    - name: a\n      url: https://pypi.org/simple\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:12: pypi.upstreams[0].url: \"https://pypi.org/simple\" "
                             "does not end in '/'; add the trailing slash"));
}

TEST(ConfigTest, BadUrlsAreErrors) {
  const auto url_error = [](const std::string& url) {
    return error_of("pypi:\n  upstreams:\n    - name: a\n      url: '" + url + "'\n");
  };
  EXPECT_THAT(url_error("https:///simple/"), HasSubstr("has no host"));
  EXPECT_THAT(url_error("https://pypi org/simple/"), HasSubstr("contains a space"));
  EXPECT_THAT(url_error("https://u:p@pypi.org/simple/"), HasSubstr("has credentials"));
  EXPECT_THAT(url_error("https://pypi.org:99999/simple/"),
              HasSubstr("port that is not 1 to 65535"));
  EXPECT_THAT(url_error("https://pypi.org:/simple/"), HasSubstr("empty port"));
  EXPECT_THAT(url_error("https://pypi.org/simple/?x=1"), HasSubstr("query or fragment"));
  EXPECT_THAT(url_error("https://[::1/simple/"), HasSubstr("unclosed '['"));
  EXPECT_THAT(url_error("https://p_y!/simple/"), HasSubstr("invalid host name"));
  EXPECT_EQ(parse_ok("pypi: {upstreams: [{name: a, url: 'https://[::1]:3141/root/+simple/'}]}")
                .pypi.upstreams[0]
                .url,
            "https://[::1]:3141/root/+simple/");
}

TEST(ConfigTest, OciUrlMustHaveNoPath) {
  const std::string msg = error_of(
      "oci:\n  upstreams:\n    - name: docker.io\n"
      "      url: https://registry-1.docker.io/v2/\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:12: oci.upstreams[0].url: "
                             "\"https://registry-1.docker.io/v2/\" has a path"));
}

TEST(ConfigTest, UpstreamNameMustBeLowercaseWordCharacters) {
  for (const std::string name : {"PyPI", "my index", "a/b", "..", "ü"}) {
    const std::string msg = error_of("pypi:\n  upstreams:\n    - name: '" + name +
                                     "'\n      url: https://pypi.org/simple/\n");
    EXPECT_THAT(msg, HasSubstr("test.yaml:3:13: pypi.upstreams[0].name: \"" + name + "\""));
    EXPECT_THAT(msg, HasSubstr("use lowercase letters, digits, '.', '_' and '-'"));
  }
  EXPECT_THAT(error_of("oci:\n  upstreams: [{name: 'Quay.io', url: 'https://quay.io'}]\n"),
              HasSubstr("test.yaml:2:22: oci.upstreams[0].name: \"Quay.io\" is not a valid "
                        "upstream name"));
}

TEST(ConfigTest, UpstreamNeedsNameAndUrl) {
  const std::string msg = error_of(
      "pypi:\n  upstreams:\n    - url: https://pypi.org/simple/\n"
      "    - name: b\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:3:7: pypi.upstreams[0].name: \"{url: "
                             "https://pypi.org/simple/}\" has no name; add name:"));
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:7: pypi.upstreams[1].url: \"{name: b}\" has no url; add "
                             "url:"));
}

TEST(ConfigTest, UpstreamListMustNotBeEmpty) {
  EXPECT_THAT(error_of("pypi:\n  upstreams: []\n"),
              HasSubstr("test.yaml:2:14: pypi.upstreams: \"[]\" is an empty list; list at least "
                        "one upstream"));
  EXPECT_THAT(error_of("pypi:\n  upstreams:\n"),
              HasSubstr("test.yaml:2:3: pypi.upstreams: \"\" has no value, expected a list"));
  EXPECT_THAT(error_of("pypi:\n  upstreams:\n    -\n"),
              HasSubstr("pypi.upstreams[0]: \"\" is empty, expected a map with name and url"));
}

TEST(ConfigTest, ListenMustBeHostPort) {
  EXPECT_THAT(error_of("listen: 8585\n"),
              HasSubstr("test.yaml:1:9: listen: \"8585\" has no host; write 0.0.0.0:8585"));
  EXPECT_THAT(error_of("listen: 'localhost'\n"),
              HasSubstr("test.yaml:1:9: listen: \"localhost\" has no port"));
}

TEST(ConfigTest, ListenPortOutOfRangeIsAnError) {
  EXPECT_THAT(error_of("listen: 0.0.0.0:70000\n"),
              HasSubstr("test.yaml:1:9: listen: \"0.0.0.0:70000\" has port 70000, which is out of "
                        "range; use a port from 1 to 65535"));
}

TEST(ConfigTest, EmptyDataDirIsAnError) {
  EXPECT_THAT(error_of("data_dir: ''\n"),
              HasSubstr("test.yaml:1:11: data_dir: \"\" is empty; set a directory, e.g. "
                        "./pantry-data"));
}

TEST(ConfigTest, ControlCharacterInPathIsAnError) {
  EXPECT_THAT(error_of("data_dir: \"/srv/\\x01x\"\n"),
              HasSubstr("test.yaml:1:11: data_dir: \"/srv/\\x01x\" contains a control character"));
}

TEST(ConfigTest, MaxSizeZeroIsAnError) {
  EXPECT_THAT(error_of("cache:\n  max_size: 0\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"0\" is zero, which would cache "
                        "nothing; set a positive size, e.g. 50GiB"));
}

TEST(ConfigTest, BadSizeIsAnError) {
  EXPECT_THAT(error_of("cache:\n  max_size: -1GiB\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"-1GiB\" is negative"));
  EXPECT_THAT(error_of("cache:\n  max_size: 99999999999999TiB\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"99999999999999TiB\" is too large"));
  EXPECT_THAT(error_of("cache:\n  max_size: 5XB\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"5XB\" has an unknown unit \"XB\""));
  EXPECT_THAT(error_of("cache:\n  max_size: ''\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"\" is empty"));
}

TEST(ConfigTest, BadDurationIsAnError) {
  EXPECT_THAT(error_of("pypi:\n  index_ttl: 600\n"),
              HasSubstr("test.yaml:2:14: pypi.index_ttl: \"600\" has no unit; add one: 600s"));
  EXPECT_THAT(error_of("oci:\n  tag_ttl: 5 minutes\n"),
              HasSubstr("test.yaml:2:12: oci.tag_ttl: \"5 minutes\" is not a duration"));
  EXPECT_THAT(error_of("oci:\n  tag_ttl: -5m\n"),
              HasSubstr("test.yaml:2:12: oci.tag_ttl: \"-5m\" is negative"));
  EXPECT_THAT(error_of("oci:\n  tag_ttl: 5y\n"),
              HasSubstr("test.yaml:2:12: oci.tag_ttl: \"5y\" has an unknown unit \"y\""));
  EXPECT_THAT(error_of("oci:\n  tag_ttl: 99999999d\n"),
              HasSubstr("test.yaml:2:12: oci.tag_ttl: \"99999999d\" is too long"));
}

TEST(ConfigTest, SyntaxErrorNamesLineAndColumn) {
  const std::string msg = error_of("listen: 0.0.0.0:1\ncache: b: c\n");
  EXPECT_THAT(msg, StartsWith("test.yaml:2:9: (syntax): \"cache: b: c\" is not valid YAML: illegal "
                              "map value; check the indentation"));
  EXPECT_THAT(error_of("pypi:\n  upstreams: [x\nfoo: 1\n"),
              HasSubstr("test.yaml:3:4: (syntax): \"foo: 1\" is not valid YAML: end of sequence "
                        "flow not found"));
}

TEST(ConfigTest, SecondDocumentIsAnError) {
  EXPECT_THAT(error_of("listen: 0.0.0.0:1\n---\ncache: {max_size: 1GiB}\n"),
              HasSubstr("test.yaml:2:1: (file): \"---\" starts a second YAML document"));
}

// yaml-cpp 0.7's LoadAll loops forever on these; YAML::Load ignores everything from the ','.
TEST(ConfigTest, StrayTopLevelCommaIsAnErrorNotAHang) {
  EXPECT_THAT(error_of(","), HasSubstr("test.yaml:1:1: (syntax): \",\" is not valid YAML"));
  EXPECT_THAT(error_of(",istmasi_xze2]:sc/vcrapa"), HasSubstr("test.yaml:1:1: (syntax):"));
  EXPECT_THAT(error_of("{listen: 0.0.0.0:1}\n, data_dir: x\n"),
              HasSubstr("test.yaml:2:1: (syntax): \", data_dir: x\" is not valid YAML: unexpected "
                        "text after the end of the document"));
}

TEST(ConfigTest, TextThatIsNotUtf8IsAnError) {
  EXPECT_THAT(error_of("listen: 0.0.0.0:1\ndata_dir: /caf\xE9\n"),
              HasSubstr("test.yaml:2:15: (file): \"data_dir: /caf\\xe9\" has a byte that is not "
                        "UTF-8 text; save the file as UTF-8"));
  EXPECT_THAT(error_of(std::string_view("a: 1\nb\0c: 2\n", 12)),
              HasSubstr("test.yaml:2:2: (file): \"b\\x00c: 2\" has a byte that is not UTF-8"));
}

TEST(ConfigTest, ByteOrderMarkAndCrlfLineEndsAreAccepted) {
  EXPECT_EQ(parse_ok("\xEF\xBB\xBF"
                     "cache:\r\n  max_size: 1GiB\r\n")
                .cache.max_size,
            kGiB);
  EXPECT_THAT(error_of("cache:\r\n  max_size: 0\r\n"),
              HasSubstr("test.yaml:2:13: cache.max_size: \"0\" is zero"));
}

TEST(ConfigTest, HugeInputIsAnError) {
  const std::string big((1 << 20) + 1, '#');
  EXPECT_THAT(error_of(big),
              HasSubstr("test.yaml:1:1: (file): \"1048577 bytes\" is too large for a "
                        "config file"));
}

TEST(ConfigTest, EveryProblemIsReportedOnItsOwnLine) {
  const std::string msg = error_of(
      "listen: nope\n"
      "cache:\n"
      "  max_size: 0\n"
      "pypi:\n"
      "  offline: yes\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:1:9: listen: \"nope\""));
  EXPECT_THAT(msg, HasSubstr("\ntest.yaml:3:13: cache.max_size: \"0\""));
  EXPECT_THAT(msg, HasSubstr("\ntest.yaml:5:12: pypi.offline: \"yes\""));
}

TEST(ConfigTest, ManyProblemsAreCapped) {
  std::string yaml = "pypi:\n  upstreams:\n";
  for (int i = 0; i < 100; ++i)
    yaml += "    - {name: 'BAD', url: 'x'}\n";
  const std::string msg = error_of(yaml);
  EXPECT_THAT(msg, HasSubstr("test.yaml: 180 more errors not shown"));
}

TEST(ConfigTest, SelfReferencingAnchorIsAnErrorNotAHang) {
  EXPECT_THAT(error_of("pypi: &a {upstreams: *a}\n"),
              HasSubstr("test.yaml:1:7: pypi.upstreams: \"{upstreams: {upstreams: "));
  EXPECT_THAT(error_of("cache: &a [*a]\n"), HasSubstr("test.yaml:1:8: cache: \"[[[["));
}

TEST(ConfigTest, LongValuesAreCutInMessages) {
  const std::string msg = error_of("listen: " + std::string(5000, 'x') + "\n");
  EXPECT_THAT(msg, HasSubstr("listen: \"xxxx"));
  EXPECT_THAT(msg, HasSubstr("...\" has no port"));
  EXPECT_LT(msg.size(), 300u);
}

TEST(ConfigTest, ErrorsNameTheSource) {
  auto r = parse("bogus: 1\n", "/etc/pantry/pantry.yaml");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith("/etc/pantry/pantry.yaml:1:1: bogus: "));
}

TEST(ConfigTest, LoadFileReadsTheFile) {
  const temp_dir dir;
  const std::string path = dir.write("pantry.yaml", "cache:\n  max_size: 3GiB\n");
  auto r = load_file(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->cache.max_size, 3 * kGiB);
}

TEST(ConfigTest, LoadFileErrorsNameTheFile) {
  const temp_dir dir;
  const std::string path = dir.write("pantry.yaml", "cache:\n  max_sise: 3GiB\n");
  auto r = load_file(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith(path + ":2:3: cache.max_sise: \"max_sise\""));
}

TEST(ConfigTest, LoadFileOfMissingFileNamesPathAndOsError) {
  const temp_dir dir;
  const std::string path = dir.path() + "/absent.yaml";
  auto r = load_file(path);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::config_error));
  EXPECT_THAT(r.error().message, HasSubstr(path));
  EXPECT_THAT(r.error().message, HasSubstr(std::strerror(ENOENT)));
}

TEST(ConfigTest, LoadFileOfDirectoryNamesPathAndOsError) {
  const temp_dir dir;
  auto r = load_file(dir.path());
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr(dir.path()));
  EXPECT_THAT(r.error().message, HasSubstr(std::strerror(EISDIR)));
}

TEST(ConfigTest, LoadFileOfUnreadableFileNamesPathAndOsError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  const temp_dir dir;
  const std::string path = dir.write("secret.yaml", "listen: 0.0.0.0:1\n");
  std::filesystem::permissions(path, std::filesystem::perms::none);
  auto r = load_file(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr(path));
  EXPECT_THAT(r.error().message, HasSubstr(std::strerror(EACCES)));
}

TEST(ConfigTest, LoadFileOfHugeFileStopsReading) {
  auto r = load_file("/dev/zero");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("/dev/zero:1:1: (file):"));
  EXPECT_THAT(r.error().message, HasSubstr("is too large for a config file"));
}

TEST(ConfigTest, ParsedConfigDoesNotDependOnTheDefaultsObject) {
  const config a = parse_ok("cache: {max_size: 1GiB}");
  EXPECT_EQ(defaults().cache.max_size, 50 * kGiB);
  EXPECT_EQ(a.cache.max_size, kGiB);
  EXPECT_THAT(to_yaml(a, secrets::shown), Not(HasSubstr("50GiB")));
}

// --- server: and upstream: ---

TEST(ConfigTest, ReadsServerAndUpstreamSections) {
  const config c = parse_ok(
      "server:\n"
      "  threads: 4\n"
      "  header_timeout: 5s\n"
      "  idle_timeout: 2m\n"
      "  shutdown_grace: 1m30s\n"
      "  access_log: false\n"
      "upstream:\n"
      "  connect_timeout: 2s\n"
      "  header_timeout: 1h\n"
      "  idle_timeout: 90s\n"
      "  max_idle_connections: 1\n");
  EXPECT_EQ(c.server, (server_config{4, seconds(5), seconds(120), seconds(90), false}));
  EXPECT_EQ(c.upstream, (upstream_config{seconds(2), seconds(3600), seconds(90), 1}));
  config want = defaults();
  want.server = c.server;
  want.upstream = c.upstream;
  EXPECT_EQ(c, want) << "nothing else changes";
}

TEST(ConfigTest, ServerAndUpstreamOverlayKeyByKey) {
  const config c = parse_ok("server: {threads: 2}\nupstream: {idle_timeout: 5m}\n");
  config want = defaults();
  want.server.threads = 2;
  want.upstream.idle_timeout = seconds(300);
  EXPECT_EQ(c, want);
  EXPECT_EQ(parse_ok("server:\nupstream:\n"), defaults()) << "empty sections keep the defaults";
}

TEST(ConfigTest, ServerThreadsRange) {
  EXPECT_EQ(parse_ok("server: {threads: 0}").server.threads, 0u);
  EXPECT_EQ(parse_ok("server: {threads: 1}").server.threads, 1u);
  EXPECT_EQ(parse_ok("server: {threads: 256}").server.threads, 256u);
  EXPECT_EQ(error_of("server:\n  threads: 257\n"),
            "test.yaml:2:12: server.threads: \"257\" is out of range; use 0 for one thread per CPU "
            "core, or a number from 1 to 256");
  EXPECT_THAT(error_of("server:\n  threads: 99999999999999999999999\n"),
              HasSubstr("test.yaml:2:12: server.threads: \"99999999999999999999999\" is out of "
                        "range"));
  EXPECT_THAT(error_of("server:\n  threads: -1\n"),
              HasSubstr("test.yaml:2:12: server.threads: \"-1\" is negative; use 0 for one thread "
                        "per CPU core"));
  for (const std::string bad : {"four", "1.5", "0x10", "+4", "1e2", "''"}) {
    EXPECT_THAT(error_of("server:\n  threads: " + bad + "\n"),
                HasSubstr("test.yaml:2:12: server.threads: "))
        << bad;
  }
  EXPECT_THAT(error_of("server:\n  threads: four\n"),
              HasSubstr("\"four\" is not a whole number; use 0 for one thread per CPU core, or a "
                        "number from 1 to 256"));
  EXPECT_THAT(error_of("server:\n  threads:\n"),
              HasSubstr("test.yaml:2:3: server.threads: \"\" has no value; set a whole number, or "
                        "remove the key to keep the default"));
  EXPECT_THAT(error_of("server:\n  threads: [1]\n"),
              HasSubstr("test.yaml:2:12: server.threads: \"[1]\" is a list, expected a whole "
                        "number; write the value on the same line as the key"));
}

TEST(ConfigTest, MaxIdleConnectionsRange) {
  EXPECT_EQ(parse_ok("upstream: {max_idle_connections: 1024}").upstream.max_idle_connections,
            1024u);
  EXPECT_EQ(error_of("upstream:\n  max_idle_connections: 0\n"),
            "test.yaml:2:25: upstream.max_idle_connections: \"0\" is out of range; use a number "
            "from 1 to 1024, e.g. 16");
  EXPECT_THAT(error_of("upstream:\n  max_idle_connections: 1025\n"),
              HasSubstr("test.yaml:2:25: upstream.max_idle_connections: \"1025\" is out of range"));
  EXPECT_THAT(error_of("upstream:\n  max_idle_connections: many\n"),
              HasSubstr("\"many\" is not a whole number; use a number from 1 to 1024"));
}

TEST(ConfigTest, ServerAndUpstreamTimeoutsMustNotBeZero) {
  EXPECT_EQ(error_of("server:\n  header_timeout: 0s\n"),
            "test.yaml:2:19: server.header_timeout: \"0s\" is zero, which would close every "
            "connection before its request arrives; set a positive duration, e.g. 30s");
  const std::pair<std::string, std::string> cases[] = {
      {"server", "idle_timeout"},     {"server", "shutdown_grace"}, {"upstream", "connect_timeout"},
      {"upstream", "header_timeout"}, {"upstream", "idle_timeout"},
  };
  for (const auto& [section, key] : cases) {
    const std::string msg = error_of(section + ":\n  " + key + ": 0m\n");
    EXPECT_THAT(msg, StartsWith("test.yaml:2:" + std::to_string(key.size() + 5) + ": " + section +
                                "." + key + ": \"0m\" is zero, which would "));
    EXPECT_THAT(msg, HasSubstr("; set a positive duration, e.g. "));
  }
}

TEST(ConfigTest, ServerAndUpstreamBadDurations) {
  EXPECT_THAT(error_of("server:\n  idle_timeout: 60\n"),
              HasSubstr("test.yaml:2:17: server.idle_timeout: \"60\" has no unit; add one: 60s"));
  EXPECT_THAT(error_of("server:\n  shutdown_grace: 1.5s\n"),
              HasSubstr("test.yaml:2:19: server.shutdown_grace: \"1.5s\" is not a whole number"));
  EXPECT_THAT(error_of("upstream:\n  connect_timeout: 10ms\n"),
              HasSubstr("test.yaml:2:20: upstream.connect_timeout: \"10ms\" has an unknown unit "
                        "\"ms\""));
  EXPECT_THAT(error_of("upstream:\n  header_timeout: -30s\n"),
              HasSubstr("test.yaml:2:19: upstream.header_timeout: \"-30s\" is negative"));
  EXPECT_THAT(error_of("upstream:\n  idle_timeout: {s: 30}\n"),
              HasSubstr("test.yaml:2:17: upstream.idle_timeout: \"{s: 30}\" is a map, expected a "
                        "duration, e.g. 10m"));
}

TEST(ConfigTest, AccessLogIsABoolean) {
  EXPECT_FALSE(parse_ok("server: {access_log: false}").server.access_log);
  EXPECT_THAT(error_of("server:\n  access_log: off\n"),
              HasSubstr("test.yaml:2:15: server.access_log: \"off\" is not a boolean; use true or "
                        "false"));
}

TEST(ConfigTest, LogLevelIsOneOfSpdlogsNames) {
  for (log_level l : {log_level::trace, log_level::debug, log_level::info, log_level::warn,
                      log_level::error, log_level::off}) {
    const std::string name(to_string(l));
    EXPECT_EQ(parse_ok("server: {log_level: " + name + "}").server.log_level, l) << name;
    config c = defaults();
    c.server.log_level = l;
    EXPECT_THAT(to_yaml(c), HasSubstr("\n  log_level: " + name + "\n"));
  }
  // One spelling each: the ones other loggers use are suggested, not guessed.
  EXPECT_THAT(error_of("server:\n  log_level: warning\n"),
              HasSubstr("test.yaml:2:14: server.log_level: \"warning\" is not a log level; use "
                        "trace, debug, info, warn, error or off (did you mean warn?)"));
  EXPECT_THAT(error_of("server:\n  log_level: DEBUG\n"),
              HasSubstr("server.log_level: \"DEBUG\" is not a log level; use trace, debug, info, "
                        "warn, error or off (did you mean debug?)"));
  EXPECT_THAT(error_of("server:\n  log_level: critical\n"), HasSubstr("(did you mean error?)"));
  EXPECT_THAT(error_of("server:\n  log_level: inf\n"), HasSubstr("(did you mean info?)"));
  const std::string far = error_of("server:\n  log_level: loud\n");
  EXPECT_THAT(far, HasSubstr("\"loud\" is not a log level; use trace, debug, info, warn, error "
                             "or off"));
  EXPECT_THAT(far, Not(HasSubstr("did you mean")));
  EXPECT_THAT(error_of("server:\n  log_level: [info]\n"),
              HasSubstr("server.log_level: \"[info]\" is a list, expected trace, debug, info, "
                        "warn, error or off"));
  EXPECT_THAT(error_of("log_level: debug\n"),
              HasSubstr("did you mean server.log_level? (it belongs under server:)"));
}

TEST(ConfigTest, ServerAndUpstreamMustBeMaps) {
  EXPECT_THAT(error_of("server: 8\n"),
              HasSubstr("test.yaml:1:9: server: \"8\" is a single value, expected a map; put its "
                        "keys on the lines below, indented"));
  EXPECT_THAT(error_of("upstream:\n  - connect_timeout: 1s\n"),
              HasSubstr("test.yaml:2:3: upstream: \"[{connect_timeout: 1s}]\" is a list, expected "
                        "a map"));
}

TEST(ConfigTest, UnknownServerAndUpstreamKeysSuggest) {
  EXPECT_THAT(error_of("server:\n  thread: 4\n"),
              HasSubstr("test.yaml:2:3: server.thread: \"thread\" is not a known key; did you mean "
                        "threads?"));
  EXPECT_THAT(error_of("upstream:\n  connect_timout: 4s\n"),
              HasSubstr("upstream.connect_timout: \"connect_timout\" is not a known key; did you "
                        "mean connect_timeout?"));
  EXPECT_THAT(
      error_of("server:\n  connect_timeout: 4s\n"),
      HasSubstr("test.yaml:2:3: server.connect_timeout: \"connect_timeout\" is not a known "
                "key; did you mean upstream.connect_timeout? (it belongs under upstream:)"));
  EXPECT_THAT(error_of("upstream:\n  access_log: true\n"),
              HasSubstr("did you mean server.access_log? (it belongs under server:)"));
  EXPECT_THAT(error_of("header_timeout: 4s\n"),
              HasSubstr("test.yaml:1:1: header_timeout: \"header_timeout\" is not a known key; did "
                        "you mean server.header_timeout or upstream.header_timeout? (it belongs "
                        "under server: or upstream:)"));
  EXPECT_THAT(error_of("servers:\n  threads: 4\n"),
              HasSubstr("test.yaml:1:1: servers: \"servers\" is not a known key; did you mean "
                        "server?"));
  EXPECT_THAT(error_of("server:\n  max_idle_conections: 4\n"),
              HasSubstr("did you mean upstream.max_idle_connections? (it belongs under "
                        "upstream:)"));
  EXPECT_THAT(error_of("server:\n  frobnicate: 4\n"),
              HasSubstr("known keys here: threads, header_timeout, idle_timeout, shutdown_grace, "
                        "access_log"));
}

TEST(ConfigTest, KeyOfTwoOtherSectionsAtTheTopLevelNamesBoth) {
  // A list that lost its indentation under pypi: or oci: is not a typo of `upstream`.
  EXPECT_THAT(error_of("upstreams: []\n"),
              HasSubstr("test.yaml:1:1: upstreams: \"upstreams\" is not a known key; did you mean "
                        "pypi.upstreams or oci.upstreams? (it belongs under pypi: or oci:)"));
  EXPECT_THAT(error_of("negative_ttl: 1m\n"),
              HasSubstr("did you mean pypi.negative_ttl? (it belongs under pypi:)"));
  EXPECT_THAT(error_of("pypi:\n  listen: 0.0.0.0:1\n"),
              HasSubstr("did you mean listen? (it belongs at the top level)"));
}

// --- pypi.negative_ttl ---

TEST(ConfigTest, ZeroTtlsAreAllowed) {
  const config c = parse_ok("pypi:\n  index_ttl: 0s\n  negative_ttl: 0s\n");
  EXPECT_EQ(c.pypi.index_ttl, seconds(0));
  EXPECT_EQ(c.pypi.negative_ttl, seconds(0));
  EXPECT_EQ(parse_ok("pypi: {negative_ttl: 1h5s}").pypi.negative_ttl, seconds(3605));
}

TEST(ConfigTest, BadNegativeTtlIsAnError) {
  EXPECT_THAT(error_of("pypi:\n  negative_ttl: 10\n"),
              HasSubstr("test.yaml:2:17: pypi.negative_ttl: \"10\" has no unit; add one: 10s"));
  EXPECT_THAT(error_of("pypi:\n  negative_ttl: [10m]\n"),
              HasSubstr("test.yaml:2:17: pypi.negative_ttl: \"[10m]\" is a list, expected a "
                        "duration"));
  EXPECT_THAT(error_of("pypi:\n  negative_tll: 10m\n"),
              HasSubstr("pypi.negative_tll: \"negative_tll\" is not a known key; did you mean "
                        "negative_ttl?"));
}

// --- pypi.routes ---

constexpr std::string_view kTwoIndexes =
    "pypi:\n"
    "  upstreams:\n"
    "    - {name: internal, url: 'https://pypi.internal/simple/'}\n"
    "    - {name: pypi, url: 'https://pypi.org/simple/'}\n";

// --- pypi.hosted ---

constexpr std::string_view kUsers =
    "oci:\n"
    "  hosted:\n"
    "    users: [{name: ci, token: 0123456789abcdef}, {name: alice, token: fedcba9876543210}]\n";

TEST(ConfigTest, ReadsHostedIndexes) {
  const config c = parse_ok(std::string(kUsers) +
                            "pypi:\n"
                            "  hosted:\n"
                            "    - name: team\n"
                            "      uploaders: [ci, alice]\n"
                            "    - {name: ml.models, uploaders: [alice]}\n");
  EXPECT_EQ(c.pypi.hosted, (std::vector<pypi_hosted>{{"team", {"ci", "alice"}, {}},
                                                     {"ml.models", {"alice"}, {}}}));
  EXPECT_TRUE(parse_ok("").pypi.hosted.empty()) << "none by default";
}

TEST(ConfigTest, HostedNameMustBeAFreeUrlPrefix) {
  const std::string head = std::string(kUsers) + "pypi:\n  hosted:\n    - {uploaders: [ci], ";
  EXPECT_EQ(error_of(head + "name: tEam}\n"),
            "test.yaml:6:31: pypi.hosted[0].name: \"tEam\" is not lowercase letters, digits, '.', "
            "'_' and '-'; use lowercase letters, digits, '.', '_' and '-', e.g. team");
  EXPECT_THAT(error_of(head + "name: simple}\n"),
              HasSubstr("pypi.hosted[0].name: \"simple\" is the first path segment of one of "
                        "pantry's own routes (simple, files, pypi, v2, auth, api, healthz, "
                        "metrics); choose another name"));
  EXPECT_THAT(error_of(head + "name: -x}\n"), HasSubstr("does not start with a lowercase letter"));
  EXPECT_THAT(error_of(head + "name: pypi}\n"), HasSubstr("one of pantry's own routes"));
  EXPECT_THAT(
      error_of(std::string(kUsers) +
               "pypi:\n  hosted: [{name: a, uploaders: [ci]}, {name: a, uploaders: [ci]}]\n"),
      HasSubstr("pypi.hosted[1].name: \"a\" is already the name of pypi.hosted[0] (line 5)"));
}

TEST(ConfigTest, HostedMergePatternsAreRoutePatterns) {
  const config c = parse_ok(std::string(kUsers) +
                            "pypi:\n  hosted: [{name: team, uploaders: [ci], merge: [numpy, "
                            "\"mycorp-*\"]}]\n");
  EXPECT_EQ(c.pypi.hosted.at(0).merge, (std::vector<std::string>{"numpy", "mycorp-*"}));
  EXPECT_EQ(error_of(std::string(kUsers) +
                     "pypi:\n  hosted: [{name: team, uploaders: [ci], merge: [My_Lib]}]\n"),
            "test.yaml:5:50: pypi.hosted[0].merge[0]: \"My_Lib\" is not written in PEP 503 "
            "normalized form, which is what routes match (lowercase; each run of '-', '_' and '.' "
            "is one '-'); write \"my-lib\"");
  EXPECT_THAT(error_of(std::string(kUsers) +
                       "pypi:\n  hosted: [{name: team, uploaders: [ci], merge: numpy}]\n"),
              HasSubstr("expected a list of globs over normalized project names"));
}

TEST(ConfigTest, HostedNameMustNotBeAnUpstreamsName) {
  EXPECT_EQ(error_of(std::string(kUsers) + std::string(kTwoIndexes) +
                     "  hosted: [{name: internal, uploaders: [ci]}]\n"),
            "test.yaml:8:19: pypi.hosted[0].name: \"internal\" is also the name of an upstream in "
            "pypi.upstreams; give the hosted index another name, e.g. internal-hosted");
}

TEST(ConfigTest, HostedUploadersMustBeOciHostedUsers) {
  EXPECT_EQ(
      error_of(std::string(kUsers) + "pypi:\n  hosted: [{name: team, uploaders: [ci, bob]}]\n"),
      "test.yaml:5:41: pypi.hosted[0].uploaders[1]: \"bob\" is not a user of "
      "oci.hosted.users, whose names and tokens hosted indexes share; add {name: bob, "
      "token: ...} there, or use one of: ci, alice");
  EXPECT_THAT(error_of("pypi:\n  hosted: [{name: team, uploaders: [ci]}]\n"),
              HasSubstr("\"ci\" is not a user of oci.hosted.users"));
  EXPECT_THAT(error_of(std::string(kUsers) + "pypi:\n  hosted: [{name: team, uploaders: []}]\n"),
              HasSubstr("pypi.hosted[0].uploaders: is empty, so no one could upload"));
  EXPECT_THAT(error_of(std::string(kUsers) + "pypi:\n  hosted: [{name: team, uploaders: ci}]\n"),
              HasSubstr("expected a list of names from oci.hosted.users"));
  EXPECT_THAT(
      error_of(std::string(kUsers) + "pypi:\n  hosted: [{name: team, uploaders: [ci, ci]}]\n"),
      HasSubstr("\"ci\" is listed twice; list each once"));
  EXPECT_THAT(error_of(std::string(kUsers) + "pypi:\n  hosted: [{name: team}]\n"),
              HasSubstr("uploaders"));
}

// --- pypi.upstreams[].hosted ---

TEST(ConfigTest, ReadsAHostedUpstream) {
  const config c = parse_ok(
      "pypi:\n"
      "  upstreams:\n"
      "    - {name: owner, url: \"http://pantry1:8585/team/simple/\", hosted: true}\n"
      "    - {name: pypi, url: \"https://pypi.org/simple/\", hosted: false}\n");
  ASSERT_EQ(c.pypi.upstreams.size(), 2u);
  EXPECT_TRUE(c.pypi.upstreams[0].hosted);
  EXPECT_FALSE(c.pypi.upstreams[1].hosted);
  EXPECT_FALSE(defaults().pypi.upstreams.at(0).hosted);
  // Written only where it is true, and read back.
  const std::string yaml = to_yaml(c);
  EXPECT_THAT(yaml, HasSubstr("hosted: true"));
  EXPECT_EQ(parse_ok(yaml).pypi.upstreams, c.pypi.upstreams) << yaml;
}

TEST(ConfigTest, AtMostOneHostedUpstream) {
  EXPECT_EQ(error_of("pypi:\n"
                     "  upstreams:\n"
                     "    - {name: a, url: \"http://p1:8585/team/simple/\", hosted: true}\n"
                     "    - {name: b, url: \"http://p1:8585/ml/simple/\", hosted: true}\n"),
            "test.yaml:4:59: pypi.upstreams[1].hosted: the upstream \"b\" is a second hosted "
            "upstream (pypi.upstreams[0], \"a\", is one); pantry asks one owner first, so mark "
            "one upstream hosted: true");
}

TEST(ConfigTest, HostedUpstreamIsAHostedIndexPage) {
  // A pantry's /simple/ serves every upstream's projects: its 200 would not mean "hosted".
  EXPECT_THAT(
      error_of("pypi:\n  upstreams:\n"
               "    - {name: owner, url: \"http://p1:8585/simple/\", hosted: true}\n"),
      HasSubstr("test.yaml:3:60: pypi.upstreams[0].url: \"http://p1:8585/simple/\" is not a "
                "hosted index's page; a hosted upstream is another pantry's hosted index, "
                "http://<pantry>/<index>/simple/"));
  EXPECT_THAT(error_of("pypi:\n  upstreams:\n"
                       "    - {name: owner, url: \"http://p1:8585/team/\", hosted: true}\n"),
              HasSubstr("pypi.upstreams[0].url: \"http://p1:8585/team/\" is not a hosted"));
  // Behind a path prefix, and not hosted: any index URL.
  EXPECT_TRUE(
      parse("pypi:\n  upstreams:\n"
            "    - {name: owner, url: \"https://ci.example/pantry/team/simple/\", hosted: true}\n",
            "test.yaml"));
  EXPECT_TRUE(parse("pypi:\n  upstreams:\n    - {name: p, url: \"http://p1:8585/simple/\"}\n",
                    "test.yaml"));
  EXPECT_THAT(
      error_of("pypi:\n  upstreams:\n"
               "    - {name: owner, url: \"http://p1:8585/team/simple/\", hosted: yes-ish}\n"),
      HasSubstr("pypi.upstreams[0].hosted: \"yes-ish\""));
}

TEST(ConfigTest, RouteMayNotNameTheHostedUpstream) {
  EXPECT_THAT(error_of("pypi:\n"
                       "  upstreams:\n"
                       "    - {name: owner, url: \"http://p1:8585/team/simple/\", hosted: true}\n"
                       "    - {name: pypi, url: \"https://pypi.org/simple/\"}\n"
                       "  routes: [{pattern: \"mycorp-*\", upstream: owner}]\n"),
              HasSubstr("test.yaml:5:44: pypi.routes[0].upstream: \"owner\" is the hosted "
                        "upstream, which is asked first for every project already; route the "
                        "pattern to another upstream or remove the route"));
}

TEST(ConfigTest, ReadsRoutes) {
  const config c = parse_ok(std::string(kTwoIndexes) +
                            "  routes:\n"
                            "    - pattern: \"mycorp-*\"\n"
                            "      upstream: internal\n"
                            "    - {pattern: 'team-[a-z]?-tools', upstream: internal}\n"
                            "    - {pattern: requests, upstream: pypi}\n");
  EXPECT_EQ(c.pypi.routes, (std::vector<pypi_route>{{"mycorp-*", "internal"},
                                                    {"team-[a-z]?-tools", "internal"},
                                                    {"requests", "pypi"}}));
}

TEST(ConfigTest, RoutesReplaceTheWholeListAndMayBeEmpty) {
  const std::string with_route =
      std::string(kTwoIndexes) + "  routes: [{pattern: a, upstream: pypi}]\n";
  EXPECT_EQ(parse_ok(with_route).pypi.routes.size(), 1u);
  EXPECT_TRUE(parse_ok(std::string(kTwoIndexes) + "  routes: []\n").pypi.routes.empty());
  EXPECT_EQ(parse_ok("pypi: {routes: [{pattern: x, upstream: pypi}]}").pypi.routes.size(), 1u)
      << "routes to the default upstream";
}

TEST(ConfigTest, RouteMustNameAPypiUpstream) {
  EXPECT_EQ(error_of(std::string(kTwoIndexes) + "  routes:\n"
                                                "    - pattern: mycorp-*\n"
                                                "      upstream: internl\n"),
            "test.yaml:7:17: pypi.routes[0].upstream: \"internl\" names no upstream in "
            "pypi.upstreams; set it to one of: internal, pypi");
  // Against the default upstreams when the file does not replace them.
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: x, upstream: internal}]\n"),
              HasSubstr("test.yaml:2:35: pypi.routes[0].upstream: \"internal\" names no upstream "
                        "in pypi.upstreams; set it to one of: pypi"));
  // An OCI registry's name is not a PyPI upstream.
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: x, upstream: docker.io}]\n"),
              HasSubstr("\"docker.io\" names no upstream in pypi.upstreams"));
  // Every bad route is reported.
  const std::string msg = error_of(std::string(kTwoIndexes) +
                                   "  routes:\n"
                                   "    - {pattern: a, upstream: pypi}\n"
                                   "    - {pattern: b, upstream: nope}\n"
                                   "    - {pattern: c, upstream: gone}\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:7:30: pypi.routes[1].upstream: \"nope\""));
  EXPECT_THAT(msg, HasSubstr("\ntest.yaml:8:30: pypi.routes[2].upstream: \"gone\""));
}

TEST(ConfigTest, RouteUpstreamIsCheckedAfterTheUpstreamsWhereverTheyAre) {
  // routes before upstreams in the file: the check uses the final upstream list.
  EXPECT_EQ(parse_ok("pypi:\n"
                     "  routes: [{pattern: x, upstream: internal}]\n"
                     "  upstreams: [{name: internal, url: 'https://i/simple/'}]\n")
                .pypi.routes[0]
                .upstream,
            "internal");
}

TEST(ConfigTest, RoutesMustBeAListOfMaps) {
  EXPECT_THAT(error_of("pypi:\n  routes:\n"),
              HasSubstr("test.yaml:2:3: pypi.routes: \"\" has no value, expected a list of routes; "
                        "write [] for none, or one \"- pattern: ...\" entry per route"));
  EXPECT_THAT(error_of("pypi:\n  routes: mycorp-*\n"),
              HasSubstr("test.yaml:2:11: pypi.routes: \"mycorp-*\" is a single value, expected a "
                        "list of routes"));
  EXPECT_THAT(error_of("pypi:\n  routes: {pattern: x, upstream: pypi}\n"),
              HasSubstr("test.yaml:2:11: pypi.routes: \"{pattern: x, upstream: pypi}\" is a map, "
                        "expected a list of routes"));
  EXPECT_THAT(error_of("pypi:\n  routes:\n    - mycorp-*\n"),
              HasSubstr("test.yaml:3:7: pypi.routes[0]: \"mycorp-*\" is a single value, expected a "
                        "map with pattern and upstream"));
  EXPECT_THAT(error_of("pypi:\n  routes:\n    -\n"),
              HasSubstr("pypi.routes[0]: \"\" is empty, expected a map with pattern and upstream"));
}

TEST(ConfigTest, RouteNeedsPatternAndUpstream) {
  const std::string msg = error_of("pypi:\n  routes:\n    - upstream: pypi\n    - pattern: x\n");
  EXPECT_THAT(msg, HasSubstr("test.yaml:3:7: pypi.routes[0].pattern: \"{upstream: pypi}\" has no "
                             "pattern; add pattern: followed by a glob"));
  EXPECT_THAT(msg, HasSubstr("test.yaml:4:7: pypi.routes[1].upstream: \"{pattern: x}\" has no "
                             "upstream; add upstream: followed by the name of one of "
                             "pypi.upstreams"));
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: '', upstream: pypi}]\n"),
              HasSubstr("test.yaml:2:22: pypi.routes[0].pattern: \"\" is empty; set a glob"));
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: x, upstream: }]\n"),
              HasSubstr("pypi.routes[0].upstream: \"\" has no value; set the name of one of "
                        "pypi.upstreams"));
}

TEST(ConfigTest, RoutePatternsAreUnique) {
  EXPECT_THAT(error_of("pypi:\n"
                       "  routes:\n"
                       "    - {pattern: 'a-*', upstream: pypi}\n"
                       "    - {pattern: 'a-*', upstream: pypi}\n"),
              HasSubstr("test.yaml:4:17: pypi.routes[1].pattern: \"a-*\" is already the pattern of "
                        "pypi.routes[0] (line 3), which wins as the first match; remove one of "
                        "them"));
}

TEST(ConfigTest, UnknownRouteKeySuggestsTheRouteKey) {
  // `upstreams` is a key of pypi: and oci:, but in a route it is a typo of `upstream`.
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: x, upstreams: pypi}]\n"),
              HasSubstr("test.yaml:2:25: pypi.routes[0].upstreams: \"upstreams\" is not a known "
                        "key; did you mean upstream?"));
  EXPECT_THAT(error_of("pypi:\n  routes: [{patern: x, upstream: pypi}]\n"),
              HasSubstr("pypi.routes[0].patern: \"patern\" is not a known key; did you mean "
                        "pattern?"));
  EXPECT_THAT(error_of("pypi:\n  route: []\n"),
              HasSubstr("pypi.route: \"route\" is not a known key; did you mean routes?"));
}

TEST(ConfigTest, RoutePatternsMustLookNormalized) {
  const auto pattern_error = [](const std::string& pattern) {
    return error_of("pypi:\n  routes: [{pattern: '" + pattern + "', upstream: pypi}]\n");
  };
  const std::string where = "test.yaml:2:22: pypi.routes[0].pattern: ";
  EXPECT_EQ(pattern_error("MyCorp_*"),
            where +
                "\"MyCorp_*\" is not written in PEP 503 normalized form, which is what routes "
                "match (lowercase; each run of '-', '_' and '.' is one '-'); write "
                "\"mycorp-*\"");
  EXPECT_THAT(pattern_error("my.corp*"), HasSubstr("write \"my-corp*\""));
  EXPECT_THAT(pattern_error("my--corp*"), HasSubstr("write \"my-corp*\""));
  EXPECT_THAT(pattern_error("[A-Z]*"), HasSubstr("write \"[a-z]*\""));
  EXPECT_EQ(pattern_error("my corp"),
            where +
                "\"my corp\" has ' ', which is in no project name and means nothing in a "
                "glob; use a-z, 0-9, '-', '*', '?' and [...], e.g. \"mycorp-*\"");
  EXPECT_THAT(pattern_error("mycorp/*"), HasSubstr("\"mycorp/*\" has '/'"));
  EXPECT_THAT(pattern_error("\\x"), HasSubstr("\"\\\\x\" has '\\'"));
  EXPECT_THAT(pattern_error("caf\xC3\xA9"), HasSubstr("\"caf\xC3\xA9\" has '\xC3\xA9'"));
  EXPECT_THAT(pattern_error("mycorp-[a-z"),
              HasSubstr("\"mycorp-[a-z\" has a '[' with no ']' after it; close the set"));
  EXPECT_THAT(pattern_error("mycorp-[]"),
              HasSubstr("\"mycorp-[]\" has the empty set \"[]\"; list characters in it"));
  EXPECT_THAT(pattern_error("x[!]"), HasSubstr("has the empty set \"[!]\""));
  EXPECT_THAT(pattern_error("x[z-a]"),
              HasSubstr("\"x[z-a]\" has the backwards range \"z-a\", which matches nothing; write "
                        "it low to high"));
  EXPECT_THAT(pattern_error("x[a*]"), HasSubstr("has '*' inside [...]"));
  EXPECT_THAT(pattern_error("x[[a]"), HasSubstr("has '[' inside [...]"));
  EXPECT_THAT(pattern_error("x]"), HasSubstr("\"x]\" has a ']' with no '[' before it"));
  EXPECT_THAT(pattern_error("!x"), HasSubstr("\"!x\" has a '!' outside [...]"));
  EXPECT_THAT(pattern_error("-x*"), HasSubstr("\"-x*\" starts with '-', which no normalized"));
  EXPECT_THAT(pattern_error("mycorp-"),
              HasSubstr("\"mycorp-\" ends with '-', which no normalized project name does; remove "
                        "it, or end with '*'"));
  EXPECT_THAT(pattern_error("x\\ty"), HasSubstr("\"x\\\\ty\""));  // a backslash, not a tab
  EXPECT_THAT(error_of("pypi:\n  routes: [{pattern: \"a\\tb\", upstream: pypi}]\n"),
              HasSubstr("\"a\\tb\" contains a control character"));
}

TEST(ConfigTest, RoutePatternsThatLookNormalizedAreAccepted) {
  for (const std::string pattern : {"*", "mycorp-*", "mycorp", "?", "a?c", "team-[a-z0-9]*",
                                    "[!0-9]*", "*-internal", "[-a]x", "x[a-]", "a*b*c", "0[0-9]"}) {
    const config c = parse_ok("pypi:\n  routes: [{pattern: '" + pattern + "', upstream: pypi}]\n");
    ASSERT_EQ(c.pypi.routes.size(), 1u) << pattern;
    EXPECT_EQ(c.pypi.routes[0].pattern, pattern);
  }
}

TEST(ConfigTest, RouteErrorsComeBeforeCrossReferences) {
  // A broken route list is not replaced, so its upstreams are not checked as well.
  const std::string msg = error_of("pypi:\n  routes: [{pattern: 'X', upstream: nope}]\n");
  EXPECT_THAT(msg, HasSubstr("pypi.routes[0].pattern: \"X\""));
  EXPECT_THAT(msg, Not(HasSubstr("nope")));
}

TEST(ConfigTest, RoundTripOfRoutesWithGlobCharacters) {
  config c = defaults();
  c.pypi.routes = {
      {"*", "pypi"}, {"?", "pypi"}, {"[a-z]*", "pypi"}, {"[!0-9]?x", "pypi"}, {"a*", "pypi"}};
  const std::string yaml = to_yaml(c, secrets::shown);
  EXPECT_EQ(parse_ok(yaml), c) << yaml;
}

TEST(ConfigTest, RepeatsAreFoundAlikeInEveryList) {
  // Users, routes and both upstream lists are read by one list reader: a repeat is reported at
  // the repeated value, naming the first, even when the first item had a problem of its own.
  EXPECT_EQ(error_of("oci:\n  hosted:\n    users: [{name: ci, token: short}, {name: ci, token: "
                     "0123456789abcdef}]\n"),
            "test.yaml:3:31: oci.hosted.users[0].token: the token has 5 characters; use at least "
            "16, e.g. the output of `openssl rand -hex 24`\n"
            "test.yaml:3:46: oci.hosted.users[1].name: \"ci\" is listed twice; give each user its "
            "own name");
  EXPECT_EQ(error_of("pypi:\n  routes:\n    - {pattern: a-*, upstream: \"\"}\n    - {pattern: a-*, "
                     "upstream: pypi}\n"),
            "test.yaml:3:32: pypi.routes[0].upstream: \"\" is empty; set the name of one of "
            "pypi.upstreams, e.g. pypi\n"
            "test.yaml:4:17: pypi.routes[1].pattern: \"a-*\" is already the pattern of "
            "pypi.routes[0] (line 3), which wins as the first match; remove one of them");
  EXPECT_EQ(error_of("pypi:\n  upstreams:\n    - {name: a, url: x}\n    - {name: a, url: "
                     "\"https://a/\"}\n"),
            "test.yaml:3:22: pypi.upstreams[0].url: \"x\" is not an http:// or https:// URL; write "
            "the full URL, e.g. https://pypi.org/simple/\n"
            "test.yaml:4:14: pypi.upstreams[1].name: \"a\" is already the name of "
            "pypi.upstreams[0] (line 3); give each upstream its own name");
  EXPECT_EQ(error_of("oci:\n  upstreams:\n    - {name: a, url: x}\n    - {name: a, url: "
                     "\"https://a\"}\n"),
            "test.yaml:3:22: oci.upstreams[0].url: \"x\" is not an http:// or https:// URL; write "
            "the full URL, e.g. https://registry-1.docker.io\n"
            "test.yaml:4:14: oci.upstreams[1].name: \"a\" is already the name of "
            "oci.upstreams[0] (line 3); give each upstream its own name");
}

TEST(ConfigTest, RepeatIsReportedAfterTheOtherProblemsOfItsItem) {
  EXPECT_EQ(error_of("oci:\n  hosted:\n    users: [{name: ci, token: 0123456789abcdef}, {name: ci, "
                     "token: short}]\n"),
            "test.yaml:3:68: oci.hosted.users[1].token: the token has 5 characters; use at least "
            "16, e.g. the output of `openssl rand -hex 24`\n"
            "test.yaml:3:57: oci.hosted.users[1].name: \"ci\" is listed twice; give each user its "
            "own name");
}

TEST(ConfigTest, ChecksOverTheWholeFileRunSectionBySection) {
  // Once the file reads without a problem, each section checks its references, in the order the
  // sections are listed (pypi before oci), wherever the keys are in the file.
  EXPECT_EQ(error_of("oci:\n  default_upstream: quay.io\npypi:\n  routes: [{pattern: \"*\", "
                     "upstream: internal}]\n"),
            "test.yaml:4:37: pypi.routes[0].upstream: \"internal\" names no upstream in "
            "pypi.upstreams; set it to one of: pypi\n"
            "test.yaml:2:21: oci.default_upstream: \"quay.io\" names no upstream in "
            "oci.upstreams; set it to one of: docker.io");
}

TEST(ConfigTest, EveryTopLevelKeyIsKnownToSuggestions) {
  EXPECT_THAT(error_of("bogus_key_far_from_all: 1\n"),
              HasSubstr("known keys here: listen, data_dir, server, upstream, cache, pypi, oci, "
                        "runner"));
}

}  // namespace
}  // namespace pantry::config
