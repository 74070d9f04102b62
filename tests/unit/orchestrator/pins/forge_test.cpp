// The forges' pull request requests and answers, per forge, checked byte for byte against what
// the GitHub, GitLab and Gitea REST documentation describes.

#include "pantry/orchestrator/pins/forge.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

using config::pins_forge_kind;

forge_api api_of(pins_forge_kind kind, std::string repository) {
  config::pins_forge f;
  f.kind = kind;
  f.api = "http://127.0.0.1:1";
  f.repository = std::move(repository);
  f.token_file = "/etc/pantry/forge-token";
  auto api = forge_api::create(f);
  EXPECT_TRUE(api.has_value()) << (api ? "" : api.error().message);
  return std::move(*api);
}

void expect_request(const forge_request& got, const forge_request& want) {
  EXPECT_EQ(got.method, want.method) << got.path;
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.body, want.body) << got.path;
}

TEST(PinsForgeTest, GithubRequestsFollowItsRestDocs) {
  const forge_api api = api_of(pins_forge_kind::github, "octo/app");
  EXPECT_EQ(api.auth_header("t0k"),
            std::make_pair(std::string("Authorization"), std::string("Bearer t0k")));
  expect_request(api.open_request("pantry/pins/lib-1.1", "main", "lib 1.0 -> 1.1", "why\n\"q\""),
                 {"POST", "/repos/octo/app/pulls",
                  R"({"title":"lib 1.0 -> 1.1","head":"pantry/pins/lib-1.1","base":"main",)"
                  R"("body":"why\n\"q\""})"});
  expect_request(api.list_request(pr_state::open, "pantry/pins/lib-1.1", 1),
                 {"GET",
                  "/repos/octo/app/pulls?state=open&head=octo%3Apantry%2Fpins%2Flib-1.1"
                  "&per_page=50&page=1",
                  ""});
  expect_request(api.list_request(pr_state::closed, "", 3),
                 {"GET", "/repos/octo/app/pulls?state=closed&per_page=50&page=3", ""});
  expect_request(api.update_request(7, "t", "b"),
                 {"PATCH", "/repos/octo/app/pulls/7", R"({"title":"t","body":"b"})"});
  expect_request(api.close_request(7),
                 {"PATCH", "/repos/octo/app/pulls/7", R"({"state":"closed"})"});
}

TEST(PinsForgeTest, GitlabRequestsUseTheEncodedProjectPathAndMergeRequestFields) {
  const forge_api api = api_of(pins_forge_kind::gitlab, "group/sub/app");
  EXPECT_EQ(api.auth_header("t0k"),
            std::make_pair(std::string("PRIVATE-TOKEN"), std::string("t0k")));
  expect_request(api.open_request("pantry/pins/lib-1.1", "main", "title", "text"),
                 {"POST", "/projects/group%2Fsub%2Fapp/merge_requests",
                  R"({"source_branch":"pantry/pins/lib-1.1","target_branch":"main",)"
                  R"("title":"title","description":"text"})"});
  expect_request(api.list_request(pr_state::open, "pantry/pins/x", 2),
                 {"GET",
                  "/projects/group%2Fsub%2Fapp/merge_requests?state=opened"
                  "&source_branch=pantry%2Fpins%2Fx&per_page=50&page=2",
                  ""});
  expect_request(
      api.list_request(pr_state::closed, "", 1),
      {"GET", "/projects/group%2Fsub%2Fapp/merge_requests?state=closed&per_page=50&page=1", ""});
  expect_request(api.update_request(4, "t", "b"),
                 {"PUT", "/projects/group%2Fsub%2Fapp/merge_requests/4",
                  R"({"title":"t","description":"b"})"});
  expect_request(api.close_request(4), {"PUT", "/projects/group%2Fsub%2Fapp/merge_requests/4",
                                        R"({"state_event":"close"})"});
}

TEST(PinsForgeTest, GiteaRequestsUseTokenAuthAndLimitPaging) {
  const forge_api api = api_of(pins_forge_kind::gitea, "team/app");
  EXPECT_EQ(api.auth_header("t0k"),
            std::make_pair(std::string("Authorization"), std::string("token t0k")));
  expect_request(
      api.open_request("b", "main", "t", "x"),
      {"POST", "/repos/team/app/pulls", R"({"title":"t","head":"b","base":"main","body":"x"})"});
  // Gitea has no head filter: the client filters the listing itself.
  expect_request(api.list_request(pr_state::open, "b", 1),
                 {"GET", "/repos/team/app/pulls?state=open&limit=50&page=1", ""});
  expect_request(api.close_request(9),
                 {"PATCH", "/repos/team/app/pulls/9", R"({"state":"closed"})"});
}

TEST(PinsForgeTest, BadRepositoriesAndForgeNoneAreRefusedByName) {
  config::pins_forge f;
  f.kind = pins_forge_kind::github;
  for (const std::string repo : {"", "app", "/app", "o/", "o//a", "o/a/b", "o/a b", "o/a?x"}) {
    f.repository = repo;
    auto api = forge_api::create(f);
    ASSERT_FALSE(api.has_value()) << "accepted " << repo;
    EXPECT_NE(api.error().message.find("\"" + repo + "\""), std::string::npos)
        << api.error().message;
  }
  f.kind = pins_forge_kind::gitlab;
  f.repository = "g/s/a";
  EXPECT_TRUE(forge_api::create(f).has_value());
  f.kind = pins_forge_kind::none;
  auto none = forge_api::create(f);
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().message.find("kind none"), std::string::npos) << none.error().message;
}

TEST(PinsForgeTest, GithubAnswersAreReadWithMergedFromMergedAt) {
  const forge_api api = api_of(pins_forge_kind::github, "octo/app");
  auto one = api.parse_one(
      R"({"number":12,"html_url":"https://github.com/octo/app/pull/12","state":"open",)"
      R"("title":"t","body":null,"head":{"ref":"pantry/pins/a-1","sha":"ab"},"merged_at":null})");
  ASSERT_TRUE(one.has_value()) << one.error().message;
  EXPECT_EQ(*one, (pull_request{12, "https://github.com/octo/app/pull/12", "pantry/pins/a-1", "t",
                                "", true, false}));
  auto list =
      api.parse_list(R"([{"number":1,"html_url":"u1","state":"closed","title":"a","body":"x",)"
                     R"("head":{"ref":"b1"},"merged_at":"2026-01-02T03:04:05Z"},)"
                     R"({"number":2,"html_url":"u2","state":"closed","title":"b","body":"y",)"
                     R"("head":{"ref":"b2"},"merged_at":null}])");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].merged);
  EXPECT_FALSE((*list)[0].open);
  EXPECT_FALSE((*list)[1].merged);
  EXPECT_EQ((*list)[1].head, "b2");
}

TEST(PinsForgeTest, GitlabAndGiteaStatesAreRead) {
  const forge_api gl = api_of(pins_forge_kind::gitlab, "g/a");
  auto mrs = gl.parse_list(
      R"([{"iid":3,"web_url":"w3","state":"opened","title":"t","description":null,"source_branch":"s"},)"
      R"({"iid":4,"web_url":"w4","state":"merged","title":"t","description":"d","source_branch":"s"},)"
      R"({"iid":5,"web_url":"w5","state":"closed","title":"t","description":"d","source_branch":"s"}])");
  ASSERT_TRUE(mrs.has_value()) << mrs.error().message;
  ASSERT_EQ(mrs->size(), 3u);
  EXPECT_EQ((*mrs)[0], (pull_request{3, "w3", "s", "t", "", true, false}));
  EXPECT_TRUE((*mrs)[1].merged);
  EXPECT_FALSE((*mrs)[2].merged);
  EXPECT_FALSE((*mrs)[2].open);
  const forge_api gt = api_of(pins_forge_kind::gitea, "o/a");
  auto pr = gt.parse_one(
      R"({"number":9,"html_url":"h","state":"closed","merged":true,"title":"t","body":"",)"
      R"("head":{"ref":"r"}})");
  ASSERT_TRUE(pr.has_value()) << pr.error().message;
  EXPECT_TRUE(pr->merged);
}

TEST(PinsForgeTest, MalformedAnswersNameTheForgeAndTheField) {
  const forge_api api = api_of(pins_forge_kind::github, "octo/app");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "not JSON"},
      {"[]", "not a JSON object"},
      {R"({"html_url":"u"})", "\"number\""},
      {R"({"number":1,"html_url":"u","state":"open","title":"t","body":""})", "\"head\""},
      {R"({"number":1,"html_url":"u","state":"draft","title":"t","body":"","head":{"ref":"r"}})",
       "\"draft\""},
      {R"({"number":-1})", "\"number\""},
  };
  for (const auto& [text, want] : cases) {
    auto pr = api.parse_one(text);
    ASSERT_FALSE(pr.has_value()) << "accepted " << text;
    EXPECT_NE(pr.error().message.find("github octo/app"), std::string::npos) << pr.error().message;
    EXPECT_NE(pr.error().message.find(want), std::string::npos)
        << "for " << text << ": " << pr.error().message;
  }
  auto list = api.parse_list("{}");
  ASSERT_FALSE(list.has_value());
  EXPECT_NE(list.error().message.find("not a JSON array"), std::string::npos)
      << list.error().message;
}

TEST(PinsForgeTest, AnExistingPullRequestIsRecognizedPerForge) {
  const std::string gh422 =
      R"({"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom",)"
      R"("message":"A pull request already exists for octo:pantry/pins/a-1."}]})";
  const forge_api gh = api_of(pins_forge_kind::github, "octo/app");
  EXPECT_TRUE(gh.already_exists(422, gh422));
  EXPECT_FALSE(gh.already_exists(422, R"({"message":"Validation Failed","errors":[]})"));
  EXPECT_FALSE(gh.already_exists(401, gh422));
  const forge_api gl = api_of(pins_forge_kind::gitlab, "g/a");
  EXPECT_TRUE(
      gl.already_exists(409, R"({"message":["Another open merge request already exists"]})"));
  EXPECT_FALSE(gl.already_exists(422, ""));
  const forge_api gt = api_of(pins_forge_kind::gitea, "o/a");
  EXPECT_TRUE(gt.already_exists(409, "{}"));
  EXPECT_TRUE(
      gt.already_exists(422, R"({"message":"pull request already exists for these targets"})"));
}

TEST(PinsForgeTest, ACommentOnASupersededPullRequestFollowsEachForgesDocs) {
  // GitHub and Gitea comment on a pull request through the issues API; GitLab through notes.
  expect_request(api_of(pins_forge_kind::github, "octo/app").comment_request(7, "by \"b\"\n"),
                 {"POST", "/repos/octo/app/issues/7/comments", R"({"body":"by \"b\"\n"})"});
  expect_request(api_of(pins_forge_kind::gitea, "team/app").comment_request(9, "x"),
                 {"POST", "/repos/team/app/issues/9/comments", R"({"body":"x"})"});
  expect_request(api_of(pins_forge_kind::gitlab, "group/sub/app").comment_request(4, "x"),
                 {"POST", "/projects/group%2Fsub%2Fapp/merge_requests/4/notes", R"({"body":"x"})"});
}

TEST(PinsForgeTest, ACommentsAnswerGivesItsIdOrNamesWhatIsMissing) {
  const forge_api gl = api_of(pins_forge_kind::gitlab, "g/a");
  auto id = gl.parse_comment(R"({"id":302,"body":"x","noteable_iid":4,"system":false})");
  ASSERT_TRUE(id.has_value()) << id.error().message;
  EXPECT_EQ(*id, 302u);
  for (const std::string text : {"[]", R"({"body":"x"})", R"({"id":0})", "nope"}) {
    auto bad = gl.parse_comment(text);
    ASSERT_FALSE(bad.has_value()) << "accepted " << text;
    EXPECT_NE(bad.error().message.find("gitlab g/a"), std::string::npos) << bad.error().message;
  }
}

TEST(PinsForgeTest, AMissingOrEmptyTokenFileIsNamedBeforeAnyRequest) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "pins-forge-token";
  std::filesystem::create_directories(dir);
  config::pins_forge f;
  f.kind = pins_forge_kind::gitea;
  f.api = "http://127.0.0.1:1";
  f.repository = "o/a";
  f.token_file = (dir / "absent").string();
  auto missing = forge_client::create(f);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find(f.token_file + " cannot be opened"), std::string::npos)
      << missing.error().message;
  f.token_file = (dir / "empty").string();
  std::ofstream(f.token_file) << " \n";
  auto empty = forge_client::create(f);
  ASSERT_FALSE(empty.has_value());
  EXPECT_NE(empty.error().message.find(f.token_file + " is empty"), std::string::npos)
      << empty.error().message;
  f.token_file = (dir / "good").string();
  std::ofstream(f.token_file) << "t0k\n";
  auto good = forge_client::create(f);
  EXPECT_TRUE(good.has_value()) << (good ? "" : good.error().message);
}

}  // namespace
}  // namespace pantry::orchestrator::pins
