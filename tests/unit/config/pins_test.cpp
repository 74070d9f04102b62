// The pins: section: its defaults, every key, the errors that name the field and the value, the
// checks across keys, and how `pantry config show` writes it back.

#include "pantry/config/config.h"

#include "parse_helpers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace pantry::config {
namespace {

using ::testing::HasSubstr;

TEST(PinsConfigTest, DefaultsAreWhatTheExampleFileSays) {
  const pins_config pins = defaults().pins;
  EXPECT_FALSE(pins.enabled);
  EXPECT_EQ(pins.schedule, "@daily");
  EXPECT_EQ(pins.python, (std::vector<std::string>{"3.11"}));
  EXPECT_EQ(pins.platforms, (std::vector<std::string>{"linux-x86_64"}));
  EXPECT_EQ(pins.prereleases, pins_prereleases::if_pinned);
  EXPECT_EQ(pins.min_release_age, std::chrono::seconds(0));
  EXPECT_EQ(pins.max_open, 5u);
  EXPECT_TRUE(pins.groups.empty());
  EXPECT_TRUE(pins.ignore.empty());
  EXPECT_TRUE(pins.repositories.empty());
}

const char* const kFull =
    "pins:\n"
    "  enabled: true\n"
    "  schedule: \"0 6 * * mon-fri\"\n"
    "  python: [\"3.10\", \"3.12.1\"]\n"
    "  platforms: [linux-x86_64, macos-arm64, windows-x86_64]\n"
    "  prereleases: never\n"
    "  min_release_age: 3d\n"
    "  max_open: 10\n"
    "  groups: [{name: pytest, match: \"pytest*\"}]\n"
    "  ignore: [\"boto*\", numpy]\n"
    "  repositories:\n"
    "    - name: app\n"
    "      url: https://git.example/team/app.git\n"
    "      token_file: /etc/pantry/secrets/app\n"
    "      branch: main\n"
    "      files: [requirements.txt, ci/Containerfile, .pantry.yml]\n"
    "      forge: {kind: gitea, api: \"https://git.example/api/v1/\", repository: team/app,\n"
    "              token_file: /etc/pantry/secrets/gitea}\n"
    "    - name: local\n"
    "      path: /srv/git/local\n"
    "      files: [requirements/dev.txt]\n";

TEST(PinsConfigTest, ReadsEveryKey) {
  const pins_config pins = parse_ok(kFull).pins;
  EXPECT_TRUE(pins.enabled);
  EXPECT_EQ(pins.schedule, "0 6 * * mon-fri");
  EXPECT_EQ(pins.python, (std::vector<std::string>{"3.10", "3.12.1"}));
  EXPECT_EQ(pins.platforms,
            (std::vector<std::string>{"linux-x86_64", "macos-arm64", "windows-x86_64"}));
  EXPECT_EQ(pins.prereleases, pins_prereleases::never);
  EXPECT_EQ(pins.min_release_age, std::chrono::seconds(3 * 86400));
  EXPECT_EQ(pins.max_open, 10u);
  EXPECT_EQ(pins.groups, (std::vector<pins_group>{{"pytest", "pytest*"}}));
  EXPECT_EQ(pins.ignore, (std::vector<std::string>{"boto*", "numpy"}));
  ASSERT_EQ(pins.repositories.size(), 2u);
  const pins_repository& app = pins.repositories[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.url, "https://git.example/team/app.git");
  EXPECT_EQ(app.token_file, "/etc/pantry/secrets/app");
  EXPECT_EQ(app.branch, "main");
  EXPECT_EQ(app.files,
            (std::vector<std::string>{"requirements.txt", "ci/Containerfile", ".pantry.yml"}));
  EXPECT_EQ(app.forge, (pins_forge{pins_forge_kind::gitea, "https://git.example/api/v1", "team/app",
                                   "/etc/pantry/secrets/gitea"}));
  EXPECT_EQ(pins.repositories[1].path, "/srv/git/local");
  EXPECT_EQ(pins.repositories[1].forge.kind, pins_forge_kind::none);
}

TEST(PinsConfigTest, ConfigShowReadsBack) {
  const config c = parse_ok(kFull);
  const std::string yaml = to_yaml(c, secrets::shown);
  EXPECT_THAT(yaml, HasSubstr("schedule: \"0 6 * * mon-fri\""));
  auto again = parse(yaml, "shown.yaml");
  ASSERT_TRUE(again.has_value()) << again.error().message << "\n" << yaml;
  EXPECT_EQ(again->pins, c.pins) << yaml;
  auto defaults_again = parse(to_yaml(defaults()), "shown.yaml");
  ASSERT_TRUE(defaults_again.has_value()) << defaults_again.error().message;
  EXPECT_EQ(defaults_again->pins, defaults().pins);
}

TEST(PinsConfigTest, BadValuesNameTheFieldAndTheValue) {
  EXPECT_THAT(error_of("pins:\n  schedule: \"0 25 * * *\"\n"),
              HasSubstr("test.yaml:2:13: pins.schedule: cron schedule \"0 25 * * *\": hour "
                        "\"25\" is out of range 0-23"));
  EXPECT_THAT(error_of("pins:\n  schedule: \"0 0 30 2 *\"\n"), HasSubstr("never fires"));
  // A version is read as written: 3.10 unquoted stays "3.10".
  EXPECT_EQ(parse_ok("pins:\n  python: [3.10]\n").pins.python, (std::vector<std::string>{"3.10"}));
  EXPECT_THAT(error_of("pins:\n  python: [\"3\"]\n"),
              HasSubstr("test.yaml:2:12: pins.python[0]: \"3\" is not a Python version; write "
                        "MAJOR.MINOR"));
  EXPECT_THAT(error_of("pins:\n  python: []\n"), HasSubstr("pins.python: [] names no Python"));
  EXPECT_THAT(error_of("pins:\n  python: \"3.11\"\n"),
              HasSubstr("pins.python: \"3.11\" is a single value, expected a list"));
  EXPECT_THAT(error_of("pins:\n  platforms: [linux-x86_64, linux-x86_64]\n"),
              HasSubstr("pins.platforms[1]: \"linux-x86_64\" is listed twice"));
  EXPECT_THAT(error_of("pins:\n  platforms: [solaris-sparc]\n"),
              HasSubstr("pins.platforms[0]: \"solaris-sparc\" is not a platform"));
  EXPECT_THAT(error_of("pins:\n  platforms: [linux]\n"),
              HasSubstr("\"linux\" is not a platform; write PLATFORM-MACHINE"));
  EXPECT_THAT(error_of("pins:\n  prereleases: sometimes\n"),
              HasSubstr("pins.prereleases: \"sometimes\" is not one of them; use never, "
                        "if_pinned or always"));
  EXPECT_THAT(error_of("pins:\n  max_open: 0\n"),
              HasSubstr("pins.max_open: \"0\" is out of range; use 1 to 100"));
  EXPECT_THAT(error_of("pins:\n  min_release_age: 3\n"), HasSubstr("pins.min_release_age"));
  EXPECT_THAT(error_of("pins:\n  groups: [{name: a/b, match: x}]\n"),
              HasSubstr("pins.groups[0].name: \"a/b\" is not a group name"));
  EXPECT_THAT(error_of("pins:\n  groups: [{name: a}]\n"), HasSubstr("has no match"));
  EXPECT_THAT(error_of("pins:\n  groups: [{name: a, match: x}, {name: a, match: y}]\n"),
              HasSubstr("pins.groups[1].name: \"a\" is already the name of pins.groups[0]"));
  EXPECT_THAT(error_of("pins:\n  schedul: \"@daily\"\n"),
              HasSubstr("\"schedul\" is not a known key; did you mean schedule?"));
}

TEST(PinsConfigTest, RepositoriesAreChecked) {
  const auto repo = [](const std::string& item) {
    return "pins:\n  repositories:\n    - " + item + "\n";
  };
  EXPECT_THAT(error_of(repo("{name: a, files: [r.txt]}")),
              HasSubstr("test.yaml:3:8: pins.repositories[0]: a: set exactly one of path (a "
                        "local clone) and url (a git URL); neither is set"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, url: \"https://h/x\", files: [r.txt]}")),
              HasSubstr("both are set"));
  EXPECT_THAT(error_of(repo("{name: a, url: \"https://user:secret@h/x\", files: [r.txt]}")),
              HasSubstr("pins.repositories[0].url: \"https://user:secret@h/x\" has "
                        "credentials in it; remove the user:password@ part and put the token in "
                        "the file token_file names"));
  EXPECT_THAT(error_of(repo("{name: a, url: \"git@h:x.git\", files: [r.txt]}")),
              HasSubstr("is not an http:// or https:// URL"));
  EXPECT_THAT(error_of(repo("{name: a, path: x, files: [r.txt]}")),
              HasSubstr("pins.repositories[0].path: \"x\" is not an absolute path"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, token_file: /t, files: [r.txt]}")),
              HasSubstr("a: token_file is for a url"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [../r.txt]}")),
              HasSubstr("pins.repositories[0].files[0]: \"../r.txt\" is not a path inside the "
                        "repository"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [/etc/r.txt]}")),
              HasSubstr("\"/etc/r.txt\" is not a path inside the repository"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: []}")), HasSubstr("[] names no file"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x}")), HasSubstr("has no files"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [r], forge: {kind: github}}")),
              HasSubstr("pins.repositories[0].forge: a: a github forge needs api, repository and "
                        "token_file; missing: api, repository, token_file"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [r], forge: {kind: bitbucket}}")),
              HasSubstr("\"bitbucket\" is not one of them; use none, github, gitlab or gitea"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [r], forge: {repository: team}}")),
              HasSubstr("\"team\" is not OWNER/NAME"));
  EXPECT_THAT(error_of(repo("{name: a, path: /x, files: [r], forge: {token_file: t}}")),
              HasSubstr("pins.repositories[0].forge.token_file: \"t\" is not an absolute path"));
  EXPECT_THAT(error_of("pins:\n  repositories:\n    - {name: a, path: /x, files: [r]}\n"
                       "    - {name: a, path: /y, files: [r]}\n"),
              HasSubstr("pins.repositories[1].name: \"a\" is already the name of "
                        "pins.repositories[0] (line 3)"));
}

}  // namespace
}  // namespace pantry::config
