// The git CLI of the pin bot's bump for a repository given by URL: the Authorization header of
// its token by forge kind, the token file read and refused with messages that name the file and
// never the token, and the header passed through git's environment, never its arguments or a
// message (a stand-in git prints what it got).

#include "bot_git.h"

#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;
using config::pins_forge_kind;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kToken = "tok-3c9e1f0a7b";

class BotGitTest : public test_util::temp_dir_test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  config::pins_repository repo(const std::string& token_file) {
    config::pins_repository r;
    r.name = "app";
    r.url = "http://127.0.0.1:9/team/app.git";
    r.token_file = token_file;
    return r;
  }
};

TEST_F(BotGitTest, TheHeaderIsBasicForGithubAndGitlabAndBearerOtherwise) {
  // "x-access-token:tok-3c9e1f0a7b" and "oauth2:tok-3c9e1f0a7b" in base64.
  EXPECT_EQ(git_auth_header(pins_forge_kind::github, kToken),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9rLTNjOWUxZjBhN2I=");
  EXPECT_EQ(git_auth_header(pins_forge_kind::gitlab, kToken),
            "Authorization: Basic b2F1dGgyOnRvay0zYzllMWYwYTdi");
  EXPECT_EQ(git_auth_header(pins_forge_kind::gitea, kToken),
            std::string("Authorization: Bearer ") + kToken);
  EXPECT_EQ(git_auth_header(pins_forge_kind::none, kToken),
            std::string("Authorization: Bearer ") + kToken);
}

TEST_F(BotGitTest, TheTokenFileIsReadTrimmedAndRefusedByName) {
  auto git = git_for("/usr/bin/git", repo(write("token", std::string(kToken) + "\n")));
  ASSERT_TRUE(git.has_value()) << git.error().message;
  EXPECT_EQ(git->auth_header, std::string("Authorization: Bearer ") + kToken);
  EXPECT_EQ(git->url, "http://127.0.0.1:9/team/app.git");

  const std::string empty = write("empty", " \n");
  auto refused = git_for("/usr/bin/git", repo(empty));
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr(empty + " (token_file of "));
  EXPECT_THAT(refused.error().message, HasSubstr("is empty; put the token in it"));

  const std::string two = write("two", std::string(kToken) + "\nsecond-line\n");
  refused = git_for("/usr/bin/git", repo(two));
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr("holds more than one line"));
  EXPECT_THAT(refused.error().message, Not(HasSubstr(kToken)));

  refused = git_for("/usr/bin/git", repo((dir_ / "missing").string()));
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message, HasSubstr((dir_ / "missing").string()));

  // A local path or a URL without a token: no header.
  auto plain = git_for("/usr/bin/git", repo(""));
  ASSERT_TRUE(plain.has_value());
  EXPECT_FALSE(plain->auth_header.has_value());
}

TEST_F(BotGitTest, TheHeaderGoesThroughTheEnvironmentAndNeverIntoAMessage) {
  // A git that prints its arguments and the config it got from its environment, as a git
  // refused by the server would, then fails the way git does on a 401 without a prompt.
  const std::string fake = write("git",
                                 "#!/bin/sh\n"
                                 "echo \"args: $*\" >&2\n"
                                 "echo \"config: $GIT_CONFIG_COUNT $GIT_CONFIG_KEY_0 "
                                 "$GIT_CONFIG_VALUE_0\" >&2\n"
                                 "echo \"fatal: could not read Username for "
                                 "'http://127.0.0.1:9': terminal prompts disabled\" >&2\n"
                                 "exit 128\n");
  ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
  auto git = git_for(fake, repo(write("token", kToken)));
  ASSERT_TRUE(git.has_value()) << git.error().message;
  auto r = run_git(*git, {"ls-remote", "--", git->url});
  ASSERT_FALSE(r.has_value());
  const std::string& m = r.error().message;
  EXPECT_THAT(m, Not(HasSubstr(kToken))) << m;
  EXPECT_THAT(m, HasSubstr("config: 1 http.extraHeader Authorization: Bearer ***")) << m;
  EXPECT_THAT(m, HasSubstr("args: ls-remote -- http://127.0.0.1:9/team/app.git")) << m;
  EXPECT_THAT(m, HasSubstr("http://127.0.0.1:9/team/app.git refused the token in " +
                           git->token_file + ": check that it is current"))
      << m;
}

TEST_F(BotGitTest, AnUnreachableServerSaysSoWithItsUrl) {
  // Port 9 (discard) on loopback: nothing listens there on a test machine.
  auto git = git_for("/usr/bin/git", repo(write("token", kToken)));
  ASSERT_TRUE(git.has_value()) << git.error().message;
  auto r = run_git(*git, {"ls-remote", "--", git->url});
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message,
              HasSubstr("http://127.0.0.1:9/team/app.git cannot be reached: check the URL"))
      << r.error().message;
  EXPECT_THAT(r.error().message, Not(HasSubstr(kToken)));
}

}  // namespace
}  // namespace pantry::orchestrator::pins
