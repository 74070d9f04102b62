// The ci: section: its defaults, every key's errors, and how `pantry config show` writes it.

#include "pantry/config/config.h"

#include "parse_helpers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace pantry::config {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::uint64_t kMiB = 1ULL << 20;
constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr seconds kDay{86400};

TEST(CiConfigTest, DefaultsAreWhatTheExampleFileSays) {
  const ci_config ci = defaults().ci;
  EXPECT_TRUE(ci.enabled);
  EXPECT_EQ(ci.slots, 0u);
  EXPECT_TRUE(ci.tokens.empty());
  EXPECT_TRUE(ci.secrets.empty());
  EXPECT_EQ(ci.runner_timeout, seconds(30));
  EXPECT_EQ(ci.log_limits, (ci_storage_limits{64 * kMiB, 30 * kDay, 2 * kGiB}));
  EXPECT_EQ(ci.artifact_limits, (ci_storage_limits{kGiB, 30 * kDay, 10 * kGiB}));
  EXPECT_TRUE(ci.quarantine.empty());
  EXPECT_EQ(ci.quarantine_exit_passes, 10u);
}

TEST(CiConfigTest, ReadsEveryKey) {
  const config c = parse_ok(
      "ci:\n"
      "  enabled: false\n"
      "  slots: 3\n"
      "  tokens:\n"
      "    - {name: dev, token: 0123456789abcdef, role: submit}\n"
      "    - {name: viewer, token: 0123456789abcdeX, role: read}\n"
      "    - {name: box, token: 0123456789abcdeY, role: runner}\n"
      "  secrets: {PYPI_TOKEN: /etc/pantry/pypi, deploy.key: /k}\n"
      "  runner_timeout: 1m\n"
      "  logs: {max_job: 1MiB}\n"
      "  artifacts: {keep_for: 7d, max_total: 5GiB}\n");
  const ci_config& ci = c.ci;
  EXPECT_FALSE(ci.enabled);
  EXPECT_EQ(ci.slots, 3u);
  ASSERT_EQ(ci.tokens.size(), 3u);
  EXPECT_EQ(ci.tokens[0], (ci_token{"dev", "0123456789abcdef", ci_role::submit}));
  EXPECT_EQ(ci.tokens[1].role, ci_role::read);
  EXPECT_EQ(ci.tokens[2].role, ci_role::runner);
  EXPECT_EQ(ci.secrets.at("PYPI_TOKEN"), "/etc/pantry/pypi");
  EXPECT_EQ(ci.secrets.at("deploy.key"), "/k");
  EXPECT_EQ(ci.runner_timeout, seconds(60));
  EXPECT_EQ(ci.log_limits, (ci_storage_limits{kMiB, 30 * kDay, 2 * kGiB}));
  EXPECT_EQ(ci.artifact_limits, (ci_storage_limits{kGiB, 7 * kDay, 5 * kGiB}));
}

TEST(CiConfigTest, BadValuesNameTheFieldAndTheValue) {
  EXPECT_THAT(error_of("ci:\n  slots: 2000\n"),
              HasSubstr("test.yaml:2:10: ci.slots: \"2000\" is out of range; use 0 for one per "
                        "CPU core, or 1 to 1024"));
  EXPECT_THAT(error_of("ci:\n  runner_timeout: 0s\n"),
              HasSubstr("test.yaml:2:19: ci.runner_timeout: \"0s\" is zero"));
  EXPECT_THAT(error_of("ci:\n  logs: {max_job: 0B}\n"),
              HasSubstr("test.yaml:2:19: ci.logs.max_job: \"0B\" would keep nothing"));
  EXPECT_THAT(error_of("ci:\n  logs: {max_job: 3GiB}\n"),
              HasSubstr("ci.logs.max_job: \"2GiB\" (max_total) is less than \"3GiB\" (max_job)"));
  EXPECT_THAT(error_of("ci:\n  enabled: yes\n"), HasSubstr("ci.enabled: \"yes\" is not a boolean"));
}

TEST(CiConfigTest, UnknownKeysGetTheNearestKnownOne) {
  EXPECT_THAT(error_of("ci:\n  slot: 2\n"),
              HasSubstr("test.yaml:2:3: ci.slot: \"slot\" is not a known key; did you mean "
                        "slots?"));
  EXPECT_THAT(error_of("ci:\n  logs: {keepfor: 1d}\n"),
              HasSubstr("ci.logs.keepfor: \"keepfor\" is not a known key; did you mean keep_for?"));
  EXPECT_THAT(error_of("runner_timeout: 1m\n"),
              HasSubstr("did you mean ci.runner_timeout? (it belongs under ci:)"));
}

TEST(CiConfigTest, TokensAreCheckedWithoutEchoingThem) {
  const std::string short_token =
      error_of("ci:\n  tokens: [{name: dev, token: short-secret, role: submit}]\n");
  EXPECT_THAT(short_token, HasSubstr("ci.tokens[0].token: the token has 12 characters; use at "
                                     "least 16"));
  EXPECT_THAT(short_token, Not(HasSubstr("short-secret")));

  const std::string twice = error_of(
      "ci:\n"
      "  tokens:\n"
      "    - {name: a, token: 0123456789abcdef, role: submit}\n"
      "    - {name: b, token: 0123456789abcdef, role: read}\n");
  EXPECT_THAT(twice, HasSubstr("test.yaml:4:24: ci.tokens[1].token: the token is the same as the "
                               "one on line 3"));
  EXPECT_THAT(twice, Not(HasSubstr("0123456789abcdef")));

  EXPECT_THAT(error_of("ci:\n"
                       "  tokens:\n"
                       "    - {name: a, token: 0123456789abcdef, role: submit}\n"
                       "    - {name: a, token: 0123456789abcdeX, role: read}\n"),
              HasSubstr("ci.tokens[1].name: \"a\" is already the name of ci.tokens[0] (line 3)"));
  EXPECT_THAT(error_of("ci:\n  tokens: [{name: a, token: 0123456789abcdef, role: admin}]\n"),
              HasSubstr("ci.tokens[0].role: \"admin\" is not a role; use submit"));
  EXPECT_THAT(error_of("ci:\n  tokens: [{name: a, token: 0123456789abcdef}]\n"),
              HasSubstr("ci.tokens[0].role: \"{name: a, token: 0123456789abcdef}\" has no role"));
  EXPECT_THAT(error_of("ci:\n  tokens: [{name: a/b, token: 0123456789abcdef, role: read}]\n"),
              HasSubstr("ci.tokens[0].name: \"a/b\" is not a token name"));
  EXPECT_THAT(error_of("ci:\n  tokens: [{name: a, token: \"<hidden>\", role: read}]\n"),
              HasSubstr("is the placeholder `pantry config show` prints"));
}

TEST(CiConfigTest, SecretsAreNamesOfFilesWithAbsolutePaths) {
  EXPECT_THAT(error_of("ci:\n  secrets: {PYPI_TOKEN: secrets/pypi}\n"),
              HasSubstr("test.yaml:2:25: ci.secrets.PYPI_TOKEN: \"secrets/pypi\" is not an "
                        "absolute path"));
  EXPECT_THAT(error_of("ci:\n  secrets: {../x: /etc/x}\n"),
              HasSubstr("test.yaml:2:13: ci.secrets.../x: \"../x\" is not a secret name"));
  EXPECT_THAT(error_of("ci:\n  secrets: {A: /a, A: /b}\n"),
              HasSubstr("ci.secrets.A: \"A\" is set twice (first on line 2)"));
  EXPECT_THAT(error_of("ci:\n  secrets: [/a]\n"),
              HasSubstr("ci.secrets: \"[/a]\" is a list, expected a map, e.g. {PYPI_TOKEN: "));
  // A bad entry keeps the whole map as it was.
  auto c = parse("ci:\n  secrets: {A: /a, B: b}\n", "test.yaml");
  EXPECT_FALSE(c.has_value());
}

TEST(CiConfigTest, CiNamesAreFileNames) {
  EXPECT_TRUE(is_ci_name("PYPI_TOKEN"));
  EXPECT_TRUE(is_ci_name("test-3.11"));
  EXPECT_TRUE(is_ci_name(std::string(63, 'a')));
  EXPECT_FALSE(is_ci_name(std::string(64, 'a')));
  EXPECT_FALSE(is_ci_name(""));
  EXPECT_FALSE(is_ci_name("."));
  EXPECT_FALSE(is_ci_name(".."));
  EXPECT_FALSE(is_ci_name("a/b"));
  EXPECT_FALSE(is_ci_name("a b"));
}

TEST(CiConfigTest, QuarantineListsTestIdsPerProject) {
  const config c = parse_ok(
      "ci:\n"
      "  quarantine:\n"
      "    app: [\"tests/test_a.py::test_b[x-1]\", tests/test_c.py::TestD::test_e]\n"
      "    team/web: []\n"
      "  quarantine_exit_passes: 3\n");
  ASSERT_EQ(c.ci.quarantine.size(), 2u);
  EXPECT_EQ(
      c.ci.quarantine.at("app"),
      (std::vector<std::string>{"tests/test_a.py::test_b[x-1]", "tests/test_c.py::TestD::test_e"}));
  EXPECT_TRUE(c.ci.quarantine.at("team/web").empty());
  EXPECT_EQ(c.ci.quarantine_exit_passes, 3u);
  EXPECT_EQ(parse_ok(to_yaml(c, secrets::shown)), c);

  EXPECT_THAT(error_of("ci:\n  quarantine: [a]\n"),
              HasSubstr("ci.quarantine: \"[a]\" is a list, expected a map, e.g. {app: ["));
  EXPECT_THAT(error_of("ci:\n  quarantine: {\"a b\": [t]}\n"),
              HasSubstr("\"a b\" is not a project name"));
  EXPECT_THAT(error_of("ci:\n  quarantine: {app: tests/t.py::x}\n"),
              HasSubstr("ci.quarantine.app: \"tests/t.py::x\" is a single value, expected a "
                        "list of test ids"));
  EXPECT_THAT(error_of("ci:\n  quarantine: {app: [t, t]}\n"),
              HasSubstr("ci.quarantine.app[1]: \"t\" is listed twice"));
  EXPECT_THAT(error_of("ci:\n  quarantine: {app: [\"\"]}\n"),
              HasSubstr("ci.quarantine.app[0]: \"\" is empty; set a test id"));
  EXPECT_THAT(error_of("ci:\n  quarantine_exit_passes: 0\n"),
              HasSubstr("ci.quarantine_exit_passes: "));
}

TEST(CiConfigTest, ShowHidesTokensAndRoundTrips) {
  const config c = parse_ok(
      "ci:\n"
      "  tokens: [{name: dev, token: 0123456789abcdef, role: submit}]\n"
      "  secrets: {PYPI_TOKEN: /etc/pantry/pypi}\n");
  const std::string hidden = to_yaml(c);
  EXPECT_THAT(hidden, Not(HasSubstr("0123456789abcdef")));
  EXPECT_THAT(hidden, HasSubstr("/etc/pantry/pypi"));
  EXPECT_EQ(parse_ok(to_yaml(c, secrets::shown)), c);
}

TEST(CiConfigTest, RunnerOfNamesACoordinatorWithAToken) {
  EXPECT_EQ(defaults().ci.runner_of, ci_runner_of{});
  const config c = parse_ok(
      "ci:\n"
      "  runner_of: {url: \"http://ci.example:8585/\", token: 0123456789abcdef, slots: 3}\n");
  EXPECT_EQ(c.ci.runner_of, (ci_runner_of{"http://ci.example:8585", "0123456789abcdef", 3}));
  const std::string hidden = to_yaml(c);
  EXPECT_THAT(hidden, HasSubstr("url: http://ci.example:8585"));
  EXPECT_THAT(hidden, Not(HasSubstr("0123456789abcdef")));
  EXPECT_EQ(parse_ok(to_yaml(c, secrets::shown)), c);
  EXPECT_THAT(to_yaml(defaults()), Not(HasSubstr("runner_of")));

  EXPECT_THAT(error_of("ci:\n  runner_of: {url: \"http://ci.example:8585\"}\n"),
              HasSubstr("ci.runner_of.token: ci.runner_of needs both url and token"));
  EXPECT_THAT(error_of("ci:\n  runner_of: {token: 0123456789abcdef}\n"),
              HasSubstr("ci.runner_of.url: ci.runner_of needs both url and token"));
  EXPECT_THAT(error_of("ci:\n  runner_of: {url: ci.example, token: 0123456789abcdef}\n"),
              HasSubstr("ci.runner_of.url: \"ci.example\" is not an http:// or https:// URL"));
  const std::string short_token =
      error_of("ci:\n  runner_of: {url: \"http://h:1\", token: short-secret}\n");
  EXPECT_THAT(short_token, HasSubstr("ci.runner_of.token: the token has 12 characters"));
  EXPECT_THAT(short_token, Not(HasSubstr("short-secret")));
  EXPECT_THAT(error_of("ci:\n  runner_of: {url: \"http://h:1\", token: 0123456789abcdef, "
                       "slot: 1}\n"),
              HasSubstr("did you mean slots?"));
}

}  // namespace
}  // namespace pantry::config
