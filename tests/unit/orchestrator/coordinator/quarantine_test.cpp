// Quarantined tests: the stored changes across a restart, the merge with the config's list, and
// when a test has passed enough runs in a row to leave.

#include "pantry/orchestrator/coordinator/quarantine.h"

#include "cache_fixture.h"
#include "keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using ::testing::HasSubstr;

clock::time_point at(int minute) {
  return clock::time_point(std::chrono::minutes(minute) + std::chrono::hours(24 * 20000));
}

std::vector<std::string> ids_of(const std::vector<quarantined_test>& list) {
  std::vector<std::string> out;
  for (const auto& q : list)
    out.push_back(q.id + (q.from_config ? " (config)" : " (api)"));
  return out;
}

test_run run_with(job_id job, int minute, std::string id, test_outcome outcome,
                  std::optional<test_outcome> rerun = std::nullopt) {
  test_run r;
  r.project = "app";
  r.job = job;
  r.job_name = job % 2 ? "test" : "lint";  // any job of the project counts
  r.time = at(minute);
  test_result t;
  t.id = std::move(id);
  t.outcome = outcome;
  t.rerun = rerun;
  r.results.push_back(std::move(t));
  return r;
}

class QuarantineTest : public cache_store_test {};

TEST_F(QuarantineTest, KeyFormatIsStable) {
  EXPECT_EQ(keys::quarantine("team/app"), "ci/quarantine/team/app");
}

TEST_F(QuarantineTest, ApiChangesSurviveARestartAndMergeWithTheConfig) {
  auto store = quarantine_store::open(cache_);
  const std::vector<std::string> config = {"t.py::cfg_a", "t.py::cfg_b"};
  auto added = store->add("app", "t.py::api[x y]", false, "dev", at(3));
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_TRUE(*added);
  auto again = store->add("app", "t.py::api[x y]", false, "other", at(4));
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "already quarantined";
  auto released = store->remove("app", "t.py::cfg_a", true);
  ASSERT_TRUE(released);
  EXPECT_TRUE(*released);
  auto absent = store->remove("app", "t.py::never", false);
  ASSERT_TRUE(absent);
  EXPECT_FALSE(*absent);

  store.reset();
  reopen_cache();
  store = quarantine_store::open(cache_);
  auto changes = store->changes("app");
  ASSERT_TRUE(changes) << changes.error().message;
  auto merged = merge_quarantine(config, *changes);
  EXPECT_EQ(ids_of(merged),
            (std::vector<std::string>{"t.py::cfg_b (config)", "t.py::api[x y] (api)"}));
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[1].by, "dev");
  EXPECT_EQ(merged[1].since, at(3));
  EXPECT_FALSE(merged[0].since.has_value());

  // A PUT of a released config test brings it back without adding a copy.
  auto back = store->add("app", "t.py::cfg_a", true, "dev", at(5));
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back);
  changes = store->changes("app");
  ASSERT_TRUE(changes);
  EXPECT_TRUE(changes->released.empty());
  EXPECT_EQ(ids_of(merge_quarantine(config, *changes)),
            (std::vector<std::string>{"t.py::cfg_a (config)", "t.py::cfg_b (config)",
                                      "t.py::api[x y] (api)"}));
  // Other projects are apart.
  auto other = store->changes("app2");
  ASSERT_TRUE(other);
  EXPECT_TRUE(other->added.empty() && other->released.empty());
  // Emptied, the entry goes.
  ASSERT_TRUE(store->remove("app", "t.py::api[x y]", false));
  EXPECT_FALSE(cache_->get_entry(keys::quarantine("app")).has_value());
}

TEST_F(QuarantineTest, BadIdsAndProjectsAreRefusedByName) {
  auto store = quarantine_store::open(cache_);
  auto empty = store->add("app", "", false, "dev", at(1));
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message, HasSubstr("\"\" is not a test id"));
  auto two_lines = store->add("app", "a\nb", false, "dev", at(1));
  ASSERT_FALSE(two_lines);
  EXPECT_EQ(two_lines.error().code, errc::invalid_argument);
  auto long_id = store->add("app", std::string(kMaxQuarantinedId + 1, 'x'), false, "dev", at(1));
  EXPECT_FALSE(long_id);
  auto project = store->remove("a b", "t", false);
  ASSERT_FALSE(project);
  EXPECT_THAT(project.error().message,
              HasSubstr("project \"a b\" holds a space or a control character"));
}

TEST_F(QuarantineTest, UnreadableStoredChangesAreCorruptNamingTheKey) {
  cache::entry e;
  e.attributes = {{"changes", "{\"v\":1,\"added\":[{\"id\":3}],\"released\":[]}"}};
  ASSERT_TRUE(cache_->put_entry(keys::quarantine("app"), e));
  auto store = quarantine_store::open(cache_);
  auto c = store->changes("app");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, errc::corrupt);
  EXPECT_THAT(c.error().message, HasSubstr("ci/quarantine/app"));
}

TEST(QuarantineQueriesTest, PassesInARowCountBackFromTheNewestRun) {
  std::vector<test_run> runs = {
      run_with(1, 1, "t::q", test_outcome::passed),
      run_with(2, 2, "t::q", test_outcome::failed, test_outcome::passed),
      run_with(3, 3, "t::q", test_outcome::passed),
      run_with(4, 4, "t::q", test_outcome::skipped),
      run_with(5, 5, "t::other", test_outcome::failed),
      run_with(6, 6, "t::q", test_outcome::passed),
  };
  EXPECT_EQ(passes_in_a_row(runs, "t::q", std::nullopt), 2u)
      << "a failure that passed its re-run ends the count; a skip does not";
  EXPECT_EQ(passes_in_a_row(runs, "t::q", at(4)), 1u) << "only runs since it was quarantined";
  EXPECT_EQ(passes_in_a_row(runs, "t::other", std::nullopt), 0u);
  EXPECT_EQ(passes_in_a_row(runs, "t::absent", std::nullopt), 0u);
  // The finish time orders the runs, not the job id.
  std::vector<test_run> late = {run_with(9, 1, "t::q", test_outcome::failed),
                                run_with(8, 2, "t::q", test_outcome::passed)};
  EXPECT_EQ(passes_in_a_row(late, "t::q", std::nullopt), 1u);
}

TEST(QuarantineQueriesTest, ApiFormSaysWhereATestCameFrom) {
  quarantined_test cfg;
  cfg.id = "t::a";
  cfg.from_config = true;
  EXPECT_EQ(boost::json::serialize(to_json(cfg)),
            R"({"id":"t::a","source":"config","since":null})");
  quarantined_test api;
  api.id = "t::b";
  api.by = "dev";
  api.since = clock::time_point(std::chrono::milliseconds(1500));
  EXPECT_EQ(boost::json::serialize(to_json(api)),
            R"({"id":"t::b","source":"api","by":"dev","since":1500})");
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
