#include "pantry/orchestrator/coordinator/test_order.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

clock::time_point at(int minute) {
  return clock::time_point(std::chrono::minutes(minute));
}

test_stat stat_of(std::string id, std::optional<double> seconds) {
  test_stat s;
  s.file = id.substr(0, id.find("::"));
  s.id = std::move(id);
  s.seconds = seconds;
  s.runs = 1;
  return s;
}

test_stat failed_at(std::string id, int minute, double seconds) {
  test_stat s = stat_of(std::move(id), seconds);
  s.last_failed = at(minute);
  s.failed_recently = true;
  return s;
}

std::vector<std::string> ids_of(const test_order& o) {
  std::vector<std::string> out;
  for (const auto& e : o.tests)
    out.push_back(e.id);
  return out;
}

TEST(TestOrderTest, FailuresThenChangedThenNewThenFastestFirst) {
  std::vector<test_stat> stats = {
      stat_of("a.py::slow", 5),
      stat_of("a.py::fast", 0.1),
      failed_at("b.py::failed_long_ago", 1, 1),
      failed_at("b.py::failed_lately", 9, 2),
      stat_of("changed.py::slow", 3),
      stat_of("changed.py::fast", 1),
      stat_of("a.py::no_time", std::nullopt),
  };
  stats[2].failed_recently = false;  // failed once, long ago: not first any more
  order_request request;
  request.changed_files = {"changed.py"};
  request.known_ids = std::vector<std::string>{
      "a.py::slow",          "a.py::fast",       "b.py::failed_long_ago", "b.py::failed_lately",
      "changed.py::slow",    "changed.py::fast", "a.py::no_time",         "z.py::brand_new",
      "changed.py::new_one", "a.py::fast"};
  auto order = plan_test_order(stats, request);
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_THAT(ids_of(*order),
              ElementsAre("b.py::failed_lately", "changed.py::fast", "changed.py::slow",
                          "changed.py::new_one", "z.py::brand_new", "a.py::fast",
                          "b.py::failed_long_ago", "a.py::slow", "a.py::no_time"));
  EXPECT_EQ(order->tests[0].group, order_group::failed);
  EXPECT_EQ(order->tests[1].group, order_group::changed);
  EXPECT_EQ(order->tests[3].group, order_group::changed) << "a new test in a changed file";
  EXPECT_EQ(order->tests[4].group, order_group::new_test);
  EXPECT_EQ(order->tests[5].group, order_group::rest);
}

TEST(TestOrderTest, WithoutKnownIdsEveryTestOfTheHistoryIsOrdered) {
  std::vector<test_stat> stats = {stat_of("x::b", 2), failed_at("x::a", 3, 1)};
  auto order = plan_test_order(stats, {});
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_THAT(ids_of(*order), ElementsAre("x::a", "x::b"));
  EXPECT_EQ(order->shards, 1);
  for (const auto& e : order->tests)
    EXPECT_EQ(e.shard, 1);
}

TEST(TestOrderTest, ShardCountsOutOfRangeAreRefused) {
  order_request request;
  request.shards = 0;
  auto order = plan_test_order({}, request);
  ASSERT_FALSE(order);
  EXPECT_THAT(order.error().message, HasSubstr("0 shards; use 1 to 100"));
  request.shards = 101;
  EXPECT_FALSE(plan_test_order({}, request));
}

TEST(TestOrderTest, UnknownTestsGoToTheSharedHashShard) {
  // FNV-1a 64 test vectors: "" and "a".
  EXPECT_EQ(fnv1a64(""), 14695981039346656037ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(unknown_test_shard("a", 3), 1 + static_cast<int>(0xaf63dc4c8601ec8cull % 3));
  // The plugin's tests check the same value for this id (pantry_pytest_test.py).
  EXPECT_EQ(fnv1a64("tests/test_a.py::test_x[1]"), 0x88af7101348335c6ull);

  order_request request;
  request.shards = 4;
  request.known_ids = std::vector<std::string>{};
  for (int i = 0; i < 400; ++i)
    request.known_ids->push_back("t.py::new_" + std::to_string(i));
  auto order = plan_test_order({}, request);
  ASSERT_TRUE(order) << order.error().message;
  std::vector<int> counts(4, 0);
  for (const auto& e : order->tests) {
    EXPECT_EQ(e.shard, unknown_test_shard(e.id, 4)) << e.id;
    ++counts[static_cast<std::size_t>(e.shard - 1)];
  }
  for (int c : counts)
    EXPECT_GT(c, 60) << ::testing::PrintToString(counts) << ": the hash spreads 400 ids unevenly";
}

// Durations like a real suite's: most tests take milliseconds, some a second, a few many seconds
// (log-normal), 200 of them, as the issue's end-to-end project.
std::vector<test_stat> realistic_suite(unsigned seed, int n) {
  std::mt19937 random(seed);
  std::lognormal_distribution<double> duration(-3.0, 1.6);
  std::vector<test_stat> stats;
  for (int i = 0; i < n; ++i) {
    stats.push_back(stat_of("tests/test_" + std::to_string(i % 17) + ".py::t" + std::to_string(i),
                            std::min(duration(random), 20.0)));
  }
  // a few deliberately slow tests
  stats.push_back(stat_of("tests/test_slow.py::a", 4));
  stats.push_back(stat_of("tests/test_slow.py::b", 3));
  stats.push_back(stat_of("tests/test_slow.py::c", 2.5));
  return stats;
}

double slowest_over_mean(const test_order& order) {
  const auto& s = order.shard_seconds;
  const double mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(s.size());
  return *std::max_element(s.begin(), s.end()) / mean;
}

TEST(TestOrderTest, ShardsAreBalancedByDuration) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    for (int shards : {2, 3, 4}) {
      auto stats = realistic_suite(seed, 200);
      order_request request;
      request.shards = shards;
      auto order = plan_test_order(stats, request);
      ASSERT_TRUE(order) << order.error().message;
      // Sum again from the entries: shard_seconds must be what the tests add up to.
      std::vector<double> sums(static_cast<std::size_t>(shards), 0.0);
      for (const auto& e : order->tests)
        sums[static_cast<std::size_t>(e.shard - 1)] += e.seconds.value_or(0);
      for (int i = 0; i < shards; ++i) {
        EXPECT_NEAR(sums[static_cast<std::size_t>(i)],
                    order->shard_seconds[static_cast<std::size_t>(i)], 1e-9);
      }
      EXPECT_LE(slowest_over_mean(*order), 1.05)
          << "seed " << seed << ", " << shards
          << " shards: " << ::testing::PrintToString(order->shard_seconds);
    }
  }
}

TEST(TestOrderTest, BalanceHoldsWithUnknownTestsMixedIn) {
  auto stats = realistic_suite(7, 150);
  order_request request;
  request.shards = 3;
  request.known_ids = std::vector<std::string>{};
  for (const auto& s : stats)
    request.known_ids->push_back(s.id);
  for (int i = 0; i < 50; ++i)
    request.known_ids->push_back("tests/test_new.py::n" + std::to_string(i));
  auto order = plan_test_order(stats, request);
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_LE(slowest_over_mean(*order), 1.1) << ::testing::PrintToString(order->shard_seconds);
}

TEST(TestOrderTest, EachShardRunsInTheJobsOrder) {
  std::vector<test_stat> stats = {failed_at("f::a", 5, 3), stat_of("r::b", 1), stat_of("r::c", 2),
                                  stat_of("r::d", 2.5), failed_at("f::e", 6, 0.5)};
  order_request request;
  request.shards = 2;
  auto order = plan_test_order(stats, request);
  ASSERT_TRUE(order) << order.error().message;
  for (int shard = 1; shard <= 2; ++shard) {
    auto mine = shard_tests(*order, shard);
    std::vector<std::string> expected;
    for (const auto& e : order->tests) {
      if (e.shard == shard) expected.push_back(e.id);
    }
    EXPECT_EQ(mine, expected);
    ASSERT_FALSE(mine.empty());
  }
  EXPECT_EQ(order->tests[0].id, "f::e");
  EXPECT_EQ(order->tests[1].id, "f::a");
}

TEST(TestOrderTest, OrderFileRoundTripsAndIsDocumentedJson) {
  std::vector<test_stat> stats = {failed_at("tests/a.py::x[1]", 5, 3), stat_of("r::b", 1)};
  order_request request;
  request.shards = 2;
  request.changed_files = {"tests/c.py"};
  request.known_ids = std::vector<std::string>{"tests/a.py::x[1]", "r::b", "n::new"};
  auto order = plan_test_order(stats, request);
  ASSERT_TRUE(order);
  EXPECT_THAT(to_order_file(*order), Not(HasSubstr("quarantined"))) << "absent when none";
  order->quarantined = {"r::b", "tests/q.py::t[a b]"};
  const std::string text = to_order_file(*order);
  EXPECT_THAT(text, HasSubstr(R"("format":"pantry-test-order","version":2,"shards":2,)"));
  EXPECT_THAT(text, HasSubstr(R"("groups":["failed","changed","new","rest"])"));
  EXPECT_THAT(text, HasSubstr(R"("changed_files":["tests/c.py"])"));
  EXPECT_THAT(text, HasSubstr(R"("quarantined":["r::b","tests/q.py::t[a b]"])"));
  EXPECT_THAT(text, HasSubstr(R"({"id":"tests/a.py::x[1]","shard":)"));
  EXPECT_THAT(text, HasSubstr(R"("group":"new"})")) << "no seconds for a new test";
  auto back = parse_order_file(text);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->shards, 2);
  EXPECT_EQ(back->changed_files, order->changed_files);
  EXPECT_EQ(back->quarantined, order->quarantined);
  ASSERT_EQ(back->tests.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back->tests[i].id, order->tests[i].id);
    EXPECT_EQ(back->tests[i].shard, order->tests[i].shard);
    EXPECT_EQ(back->tests[i].group, order->tests[i].group);
    EXPECT_EQ(back->tests[i].seconds, order->tests[i].seconds);
  }
  EXPECT_EQ(to_order_file(*back), text);
}

TEST(TestOrderTest, ThePlanOfAShardInOneLine) {
  std::vector<test_stat> stats = {failed_at("f::a", 5, 3), stat_of("r::b", 1), stat_of("r::c", 2),
                                  stat_of("r::d", 2.5), failed_at("f::e", 6, 0.5)};
  order_request request;
  request.shards = 2;
  auto planned = plan_test_order(stats, request);
  ASSERT_TRUE(planned);
  // As the job reads it: the file's seconds are the listed tests' durations.
  auto order = parse_order_file(to_order_file(*planned));
  ASSERT_TRUE(order) << order.error().message;
  // LPT: f::a 3 -> 1, r::d 2.5 -> 2, r::c 2 -> 2 (4.5), r::b 1 -> 1 (4), f::e 0.5 -> 1 (4.5).
  EXPECT_EQ(describe_plan(*order, 1),
            "shard 1 of 2: 3 tests in pantry's order (2 failed recently, 0 in changed files), "
            "4.500 s by their past durations; tests it does not list run after them");
  EXPECT_EQ(describe_plan(*order, 2),
            "shard 2 of 2: 2 tests in pantry's order (0 failed recently, 0 in changed files), "
            "4.500 s by their past durations; tests it does not list run after them");
  // Not sharded: no shard in the line, whatever shard the job has (none, so 0).
  request.shards = 1;
  auto one = plan_test_order(stats, request);
  ASSERT_TRUE(one);
  EXPECT_THAT(describe_plan(*one, 0), ::testing::StartsWith("5 tests in pantry's order (2 failed"));
  test_order empty;
  EXPECT_EQ(describe_plan(empty, 1),
            "no test in pantry's order (no history yet); they run in the runner's own order");
}

TEST(TestOrderTest, BadOrderFilesNameTheProblem) {
  auto error_of = [](std::string_view text) {
    auto r = parse_order_file(text);
    return r ? std::string("(parsed)") : r.error().message;
  };
  EXPECT_THAT(error_of("{"), HasSubstr("test order: not JSON"));
  EXPECT_THAT(error_of("[]"), HasSubstr("not a JSON object"));
  EXPECT_THAT(error_of(R"({"format":"x","version":2})"), HasSubstr("format: expected"));
  EXPECT_THAT(error_of(R"({"format":"pantry-test-order","version":1})"),
              HasSubstr("version: expected 2"));
  constexpr std::string_view head = R"({"format":"pantry-test-order","version":2,)";
  EXPECT_THAT(error_of(std::string(head) + R"("shards":0,"tests":[]})"),
              HasSubstr("shards: expected a whole number from 1 to 100"));
  EXPECT_THAT(
      error_of(std::string(head) + R"("shards":2,"tests":[{"id":"a","shard":3,"group":"rest"}]})"),
      HasSubstr("tests[0].shard: expected a whole number from 1 to 2"));
  EXPECT_THAT(
      error_of(std::string(head) + R"("shards":2,"tests":[{"id":"a","shard":1,"group":"x"}]})"),
      HasSubstr("tests[0].group: expected one of"));
  EXPECT_THAT(error_of(std::string(head) + R"("shards":2,"tests":[{"shard":1,"group":"rest"}]})"),
              HasSubstr("tests[0].id: expected a test id"));
  EXPECT_THAT(error_of(std::string(head) +
                       R"("shards":1,"tests":[{"id":"a","shard":1,"group":"rest","seconds":-1}]})"),
              HasSubstr("tests[0].seconds: expected a number of at least 0"));
  EXPECT_THAT(error_of(std::string(head) + R"("shards":1,"changed_files":[1],"tests":[]})"),
              HasSubstr("changed_files: expected an array of paths"));
  EXPECT_THAT(error_of(std::string(head) + R"("shards":1,"quarantined":[""],"tests":[]})"),
              HasSubstr("quarantined: expected an array of test ids"));
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
