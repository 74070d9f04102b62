// What `pantry pins status` prints and GET /api/v1/pins answers (status.h): the last bump's record
// written whole and read back, the report read from a data dir, its JSON by repository, and a
// pipeline's state as the coordinator's JSON gives it.

#include "pantry/orchestrator/pins/status.h"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class PinsStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "pantry-pins-status-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    cfg_.data_dir = dir_.string();
    config::pins_repository app;
    app.name = "app";
    app.path = "/srv/app";
    app.files = {"requirements.txt"};
    config::pins_repository web;
    web.name = "web";
    web.url = "https://git.example/web.git";
    web.branch = "main";
    web.files = {"Containerfile"};
    cfg_.pins.repositories = {app, web};
    cfg_.pins.schedule = "0 4 * * *";
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  config::config cfg_;
};

TEST_F(PinsStatusTest, TheLastRunIsWrittenWholeAndReadBackEqual) {
  auto none = load_last_run(dir_);
  ASSERT_TRUE(none.has_value()) << none.error().message;
  EXPECT_FALSE(*none);
  last_run run;
  run.started = "2026-12-07T04:00:00Z";
  run.ended = "2026-12-07T04:00:09Z";
  run.status = 2;
  run.checked = 7;
  run.problems = 1;
  run.first_problems = {"app/requirements.txt:3: six: the index at http://x: refused"};
  ASSERT_TRUE(save_last_run(dir_, run).has_value());
  auto back = load_last_run(dir_);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  ASSERT_TRUE(*back);
  EXPECT_EQ(**back, run);
  EXPECT_FALSE(fs::exists(dir_ / "pins" / ("last_run.json.tmp." + std::to_string(::getpid()))));

  std::ofstream(dir_ / "pins" / "last_run.json")
      << R"({"format":"pantry-pins-last-run","started":1})";
  auto bad = load_last_run(dir_);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message,
            (dir_ / "pins" / "last_run.json").string() + ": \"started\" is not a string");
}

TEST_F(PinsStatusTest, TheReportGroupsBranchesAndDeclinedVersionsByRepository) {
  auto records = branch_records::load(dir_);
  ASSERT_TRUE(records.has_value());
  branch_record b;
  b.repository = "app";
  b.branch = "pantry/pins/six-1.17.0";
  b.change = "six 1.16.0 -> 1.17.0";
  b.pipeline = 4;
  b.status = "passed";
  records->put(b);
  b.repository = "gone";
  b.branch = "pantry/pins/attrs-24.1.0";
  records->put(b);
  ASSERT_TRUE(records->save().has_value());
  fs::create_directories(dir_ / "pins");
  std::ofstream(dir_ / "pins" / "declined.tsv")
      << "app\tpantry/pins/six-1.16.1\thttps://forge.example/pr/3\n";
  last_run run;
  run.started = run.ended = "2026-12-07T04:00:00Z";
  ASSERT_TRUE(save_last_run(dir_, run).has_value());

  auto report = read_pins_report(cfg_, std::nullopt);
  ASSERT_TRUE(report.has_value()) << report.error().message;
  ASSERT_EQ(report->branches.size(), 2u);
  ASSERT_EQ(report->declined.size(), 1u);
  EXPECT_EQ(report->declined[0],
            (declined_version{"app", "pantry/pins/six-1.16.1", "https://forge.example/pr/3"}));
  const json::object all = to_json(*report, cfg_.pins, std::nullopt);
  const auto& repos = all.at("repositories").as_array();
  ASSERT_EQ(repos.size(), 3u) << json::serialize(all);
  EXPECT_EQ(repos[0].at("name"), "app");
  EXPECT_EQ(repos[0].at("path"), "/srv/app");
  EXPECT_EQ(repos[0].at("branches").as_array().size(), 1u);
  EXPECT_EQ(repos[0].at("branches").as_array()[0].at("status"), "passed");
  EXPECT_EQ(repos[0].at("declined").as_array()[0].at("url"), "https://forge.example/pr/3");
  EXPECT_EQ(repos[1].at("name"), "web");
  EXPECT_EQ(repos[1].at("url"), "https://git.example/web.git");
  EXPECT_TRUE(repos[1].at("branches").as_array().empty());
  EXPECT_EQ(repos[2].at("name"), "gone");  // only the records name it now
  EXPECT_FALSE(repos[2].as_object().contains("files"));
  EXPECT_EQ(all.at("last_run").at("outcome"), "ok");
  EXPECT_EQ(all.at("schedule"), "0 4 * * *");

  report = read_pins_report(cfg_, std::string("app"));
  ASSERT_TRUE(report.has_value());
  const json::object one = to_json(*report, cfg_.pins, std::string("app"));
  ASSERT_EQ(one.at("repositories").as_array().size(), 1u) << json::serialize(one);

  fs::remove(dir_ / "pins" / "last_run.json");
  report = read_pins_report(cfg_, std::nullopt);
  ASSERT_TRUE(report.has_value());
  EXPECT_TRUE(to_json(*report, cfg_.pins, std::nullopt).at("last_run").is_null());
}

TEST(PinsStatusStateTest, ARunningPipelineIsQueuedUntilAJobStarts) {
  const auto state = [](const char* text) {
    return pipeline_state_of(json::parse(text).as_object());
  };
  EXPECT_EQ(state(R"({"state":"passed","jobs":[]})"), "passed");
  EXPECT_EQ(state(R"({"state":"running","jobs":[{"state":"queued"}]})"), "queued");
  EXPECT_EQ(state(R"({"state":"running","jobs":[{"state":"queued"},{"state":"running"}]})"),
            "running");
  EXPECT_EQ(state(R"({"jobs":[]})"), "");
}

}  // namespace
}  // namespace pantry::orchestrator::pins
