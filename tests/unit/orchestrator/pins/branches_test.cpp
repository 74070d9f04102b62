// The pin bot's record of the branches it made (branches.h): written whole and read back equal,
// absent means empty, and a malformed file is refused naming the file and what is wrong.

#include "pantry/orchestrator/pins/branches.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;

class BranchRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "pantry-branches-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& text) {
    fs::create_directories(dir_ / "pins");
    std::ofstream(dir_ / "pins" / "branches.json") << text;
  }

  fs::path dir_;
};

TEST_F(BranchRecordsTest, AnAbsentFileIsAnEmptyRecord) {
  auto r = branch_records::load(dir_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->all().empty());
  EXPECT_EQ(r->file(), dir_ / "pins" / "branches.json");
}

TEST_F(BranchRecordsTest, SavedRecordsReadBackEqualAndPutReplacesByRepositoryAndBranch) {
  auto r = branch_records::load(dir_);
  ASSERT_TRUE(r) << r.error().message;
  branch_record a;
  a.repository = "app";
  a.branch = "pantry/pins/requests-2.32.3";
  a.change = "requests 2.31.0 -> 2.32.3";
  a.commit = std::string(40, 'a');
  a.base = std::string(40, 'b');
  a.pipeline = 12;
  a.pipeline_url = "http://127.0.0.1:8585/api/v1/pipelines/12";
  a.status = "queued";
  a.title = "pins: requests 2.31.0 -> 2.32.3";
  a.body = "2.32.3 is the newest release that qualifies\n\"quoted\"";
  a.rebuilds = 2;
  a.left_alone = "has commits by Ada <ada@example.org>; not rebased";
  branch_record b;
  b.repository = "app";
  b.branch = "pantry/pins/idna-3.7";
  b.note = "no CI run: the branch has no .pantry.yml";
  b.declined = true;
  b.pr_url = "https://git.example/app/pull/3";
  b.superseded_by = "pantry/pins/idna-3.8";
  r->put(a);
  r->put(b);
  a.status = "passed";
  r->put(a);
  ASSERT_EQ(r->all().size(), 2u);
  ASSERT_TRUE(r->save()) << r->file();
  auto back = branch_records::load(dir_);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->all().size(), 2u);
  EXPECT_EQ(back->all()[0], a);
  EXPECT_EQ(back->all()[1], b);
  ASSERT_NE(back->find("app", "pantry/pins/idna-3.7"), nullptr);
  EXPECT_EQ(back->find("other", "pantry/pins/idna-3.7"), nullptr);
  EXPECT_TRUE(pipeline_ended("passed"));
  EXPECT_TRUE(pipeline_ended("cancelled"));
  EXPECT_FALSE(pipeline_ended("queued"));
  EXPECT_FALSE(pipeline_ended("none"));
}

TEST_F(BranchRecordsTest, AMalformedFileIsRefusedNamingItAndTheProblem) {
  const std::string file = (dir_ / "pins" / "branches.json").string();
  const auto refused = [&](const std::string& text, const std::string& problem) {
    write(text);
    auto r = branch_records::load(dir_);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().message,
              file + ": " + problem + " (a file pins bump writes; remove it to start anew)")
        << text;
  };
  refused("{", "not JSON: incomplete JSON");
  refused("[]", "not a JSON object");
  refused(R"({"format": "x", "version": 1, "branches": []})",
          "format is not \"pantry-pins-branches\"");
  refused(R"({"format": "pantry-pins-branches", "version": 2, "branches": []})",
          "version is not 1");
  refused(R"({"format": "pantry-pins-branches", "version": 1, "branches": [{"repository": 1}]})",
          "branches[0].repository: not a string");
  refused(R"({"format": "pantry-pins-branches", "version": 1, "branches": [{"repository": "a",
              "branch": "b", "pipeline": -3}]})",
          "branches[0].pipeline: not a pipeline id");
  refused(R"({"format": "pantry-pins-branches", "version": 1, "branches": [{"repository": "a",
              "branch": "b", "rebuilds": "2"}]})",
          "branches[0].rebuilds: not a count");
  refused(R"({"format": "pantry-pins-branches", "version": 1, "branches": [{"repository": "a",
              "branch": "b", "superseded_by": true}]})",
          "branches[0].superseded_by: not a string");
  refused(R"({"format": "pantry-pins-branches", "version": 1, "branches": [{"branch": "b"}]})",
          "branches[0]: repository or branch missing");
}

}  // namespace
}  // namespace pantry::orchestrator::pins
