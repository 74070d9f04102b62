// The pieces of test intelligence together, with real pytest (Debian's python3-pytest) and the
// compiled-in plugin: a first run's JUnit reports into the history, the order and shards planned
// from it into an order file, and the plugin running each shard by that file.

#include "pantry/orchestrator/coordinator/junit.h"
#include "pantry/orchestrator/coordinator/pytest_plugin.h"
#include "pantry/orchestrator/coordinator/test_history.h"
#include "pantry/orchestrator/coordinator/test_order.h"

#include "cache_fixture.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

constexpr int kTests = 60;

// The sleep of test_<i>, in milliseconds: mostly short, a few long, as real suites are.
int sleep_ms(int i) {
  return i % 10 == 0 ? 60 + i : (i * 7) % 13;
}

// stdout and stderr of `command` (run by sh) and its exit status.
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::array<char, 4096> buffer{};
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), p))
    out.append(buffer.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class TestsRoundTripTest : public cache_store_test {
 protected:
  void SetUp() override {
    cache_store_test::SetUp();
    project_ = dir_ / "project";
    plugin_ = dir_ / "plugin";
    std::filesystem::create_directories(project_ / "tests");
    std::filesystem::create_directories(plugin_);
    ASSERT_TRUE(write_pytest_plugin(plugin_));
    // The failing test is last in pytest's own order.
    std::ofstream suite(project_ / "tests" / "test_suite.py");
    suite << "import time\n";
    for (int i = 0; i < kTests; ++i) {
      suite << "def test_" << i << "():\n    time.sleep(" << sleep_ms(i) / 1000.0 << ")\n";
    }
    suite << "def test_zz_fails():\n    assert 6 * 7 == 43\n";
  }

  // Runs pytest in the project with the plugin and `env` ("NAME=value ...").
  std::pair<int, std::string> pytest(const std::string& env) {
    return run("cd " + project_.string() + " && env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=" +
               plugin_.string() + " PYTEST_PLUGINS=" + std::string(kPytestPluginModule) + " " +
               env + " /usr/bin/python3 -m pytest -p no:cacheprovider -v tests");
  }

  std::filesystem::path project_, plugin_;
};

TEST_F(TestsRoundTripTest, SecondRunPutsTheFailureFirstAndShardsBalance) {
  // First run: pytest's own order, the report into the history.
  const auto junit1 = project_ / "junit1";
  auto [status, out] = pytest("PANTRY_JUNIT=" + junit1.string());
  ASSERT_EQ(status, 1) << out;
  junit_report first = read_junit_dir(junit1);
  ASSERT_TRUE(first.problems.empty()) << ::testing::PrintToString(first.problems);
  ASSERT_EQ(first.results.size(), static_cast<std::size_t>(kTests + 1)) << out;
  const std::string failing = "tests/test_suite.py::test_zz_fails";
  auto it = std::find_if(first.results.begin(), first.results.end(),
                         [&](const test_result& r) { return r.id == failing; });
  ASSERT_NE(it, first.results.end());
  EXPECT_EQ(it->outcome, test_outcome::failed);
  EXPECT_EQ(it->rerun, test_outcome::failed);
  EXPECT_EQ(it->message, "assert (6 * 7) == 43");

  auto history = test_history::open(cache_);
  pipeline_record p;
  p.id = 1;
  p.project = "acme";
  p.commit = "c1";
  job_record j;
  j.id = 1;
  j.spec_name = "test";
  j.finished_at = clock::now();
  ASSERT_TRUE(history->record(make_test_run(p, j, first.results)));

  // The plan for `parallel: 3`, written where the plugin reads it.
  auto runs = history->runs("acme");
  ASSERT_TRUE(runs) << runs.error().message;
  order_request request;
  request.shards = 3;
  auto order = plan_test_order(summarize(*runs, {}), request);
  ASSERT_TRUE(order) << order.error().message;
  ASSERT_EQ(order->tests.front().id, failing);
  const auto order_file = project_ / "order.json";
  std::ofstream(order_file) << to_order_file(*order);

  // Second run, three shards.
  const auto junit2 = project_ / "junit2";
  std::vector<double> shard_seconds;
  std::size_t ran = 0;
  for (int shard = 1; shard <= 3; ++shard) {
    auto [shard_status, shard_out] =
        pytest("PANTRY_JUNIT=" + junit2.string() + " PANTRY_TEST_ORDER=" + order_file.string() +
               " PANTRY_SHARDS=3 PANTRY_SHARD=" + std::to_string(shard));
    const auto mine = shard_tests(*order, shard);
    const bool has_failure = std::find(mine.begin(), mine.end(), failing) != mine.end();
    EXPECT_EQ(shard_status, has_failure ? 1 : 0) << shard_out;
    // The test lines in the order they ran: the shard's part of the plan, exactly.
    std::vector<std::string> lines;
    std::size_t at = 0;
    while ((at = shard_out.find("tests/test_suite.py::", at)) != std::string::npos) {
      const std::size_t end = shard_out.find(' ', at);
      const std::string id = shard_out.substr(at, end - at);
      if (std::find(lines.begin(), lines.end(), id) == lines.end()) lines.push_back(id);
      at = end;
    }
    EXPECT_EQ(lines, mine) << shard_out;

    auto report = read_junit_xml(
        [&] {
          std::ifstream in(junit2 / ("pytest-shard-" + std::to_string(shard) + ".xml"));
          return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }(),
        "shard " + std::to_string(shard));
    ASSERT_TRUE(report) << report.error().message;
    ran += report->size();
    double seconds = 0;
    for (const auto& r : *report)
      seconds += r.seconds;
    shard_seconds.push_back(seconds);
  }
  EXPECT_EQ(ran, static_cast<std::size_t>(kTests + 1));
  const double mean = std::accumulate(shard_seconds.begin(), shard_seconds.end(), 0.0) / 3;
  const double slowest = *std::max_element(shard_seconds.begin(), shard_seconds.end());
  // The bound for shards of a real suite; the plan itself is within 5 % of the mean.
  EXPECT_LE(slowest, 1.3 * mean) << ::testing::PrintToString(shard_seconds) << " planned "
                                 << ::testing::PrintToString(order->shard_seconds);
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
