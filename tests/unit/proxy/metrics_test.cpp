#include "pantry/proxy/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace pantry::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CounterStartsAtZeroAndAdds) {
  metrics_registry m;
  EXPECT_EQ(m.counter("requests_total", {{"route", "/a/"}}), 0u);
  m.add("requests_total", {{"route", "/a/"}});
  m.add("requests_total", {{"route", "/a/"}}, 4);
  m.add("requests_total", {{"route", "/b/"}}, 2);
  EXPECT_EQ(m.counter("requests_total", {{"route", "/a/"}}), 5u);
  EXPECT_EQ(m.counter("requests_total", {{"route", "/b/"}}), 2u);
  EXPECT_EQ(m.counter("requests_total", {{"route", "/c/"}}), 0u);
}

TEST(MetricsTest, RendersHelpTypeAndSeriesInTextFormat) {
  metrics_registry m;
  m.add("pantry_requests_total", {{"route", "/a/"}, {"status", "200"}}, 3, "Requests served");
  m.add("pantry_requests_total", {{"route", "/a/"}, {"status", "404"}}, 1);
  m.set("pantry_cache_bytes", {}, 1.5, "Bytes in the cache");
  EXPECT_EQ(m.render(),
            "# HELP pantry_cache_bytes Bytes in the cache\n"
            "# TYPE pantry_cache_bytes gauge\n"
            "pantry_cache_bytes 1.5\n"
            "# HELP pantry_requests_total Requests served\n"
            "# TYPE pantry_requests_total counter\n"
            "pantry_requests_total{route=\"/a/\",status=\"200\"} 3\n"
            "pantry_requests_total{route=\"/a/\",status=\"404\"} 1\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  metrics_registry m;
  m.add("x_total", {{"path", "a\\b\"c\nd"}}, 1, "line one\nback\\slash \"quoted\"");
  std::string out = m.render();
  EXPECT_THAT(out, HasSubstr("# HELP x_total line one\\nback\\\\slash \"quoted\"\n"));
  EXPECT_THAT(out, HasSubstr("x_total{path=\"a\\\\b\\\"c\\nd\"} 1\n"));
}

TEST(MetricsTest, GaugeSetReplacesTheValue) {
  metrics_registry m;
  m.set("temp", {{"room", "a"}}, 20);
  m.set("temp", {{"room", "a"}}, -3.25);
  EXPECT_THAT(m.render(), HasSubstr("temp{room=\"a\"} -3.25\n"));
}

TEST(MetricsTest, GaugeFunctionIsReadAtRenderTime) {
  metrics_registry m;
  int calls = 0;
  m.gauge_fn("in_flight", "Requests being served", [&] { return static_cast<double>(++calls); });
  m.add("a_total", {}, 7);
  EXPECT_THAT(m.render(), HasSubstr("# TYPE in_flight gauge\nin_flight 1\n"));
  EXPECT_THAT(m.render(), HasSubstr("in_flight 2\n"));
  // The function may use the registry itself: it is called without the lock.
  m.gauge_fn("self", "", [&] { return static_cast<double>(m.counter("a_total")); });
  EXPECT_THAT(m.render(), HasSubstr("self 7\n"));
}

TEST(MetricsTest, SpecialValuesUsePrometheusSpelling) {
  metrics_registry m;
  m.set("g", {{"k", "nan"}}, std::nan(""));
  m.set("g", {{"k", "pinf"}}, HUGE_VAL);
  m.set("g", {{"k", "ninf"}}, -HUGE_VAL);
  std::string out = m.render();
  EXPECT_THAT(out, HasSubstr("g{k=\"nan\"} NaN\n"));
  EXPECT_THAT(out, HasSubstr("g{k=\"pinf\"} +Inf\n"));
  EXPECT_THAT(out, HasSubstr("g{k=\"ninf\"} -Inf\n"));
}

TEST(MetricsTest, CounterRefIsTheSameCellAsAdd) {
  metrics_registry m;
  auto& cell = m.counter_ref("hits_total", {{"route", "/x/"}}, "Hits");
  cell.fetch_add(10, std::memory_order_relaxed);
  m.add("hits_total", {{"route", "/x/"}}, 5);
  EXPECT_EQ(cell.load(), 15u);
  EXPECT_EQ(m.counter("hits_total", {{"route", "/x/"}}), 15u);
  EXPECT_EQ(&m.counter_ref("hits_total", {{"route", "/x/"}}), &cell);
  EXPECT_THAT(m.render(), HasSubstr("hits_total{route=\"/x/\"} 15\n"));
}

TEST(MetricsTest, TheFirstUseOfANameDecidesItsKind) {
  metrics_registry m;
  m.set("g", {}, 2);
  m.add("g", {}, 5);  // ignored: g is a gauge
  m.counter_ref("g", {}).fetch_add(1);
  EXPECT_EQ(m.counter("g"), 0u);
  std::string out = m.render();
  EXPECT_THAT(out, HasSubstr("# TYPE g gauge\ng 2\n"));
  EXPECT_THAT(out, Not(HasSubstr("counter")));
}

TEST(MetricsTest, ConcurrentAddsAreAllCounted) {
  metrics_registry m;
  constexpr int kThreads = 4;
  constexpr int kAdds = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      auto& cell = m.counter_ref("fast_total", {{"t", "all"}});
      for (int i = 0; i < kAdds; ++i) {
        m.add("slow_total", {{"t", std::to_string(t % 2)}});
        cell.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(m.counter("slow_total", {{"t", "0"}}) + m.counter("slow_total", {{"t", "1"}}),
            static_cast<std::uint64_t>(kThreads * kAdds));
  EXPECT_EQ(m.counter("fast_total", {{"t", "all"}}), static_cast<std::uint64_t>(kThreads * kAdds));
}

}  // namespace
}  // namespace pantry::proxy

namespace pantry::proxy {
namespace {

TEST(MetricsTest, CounterSumAddsEverySeriesWithTheGivenLabels) {
  metrics_registry m;
  m.add("req", {{"route", "a"}, {"outcome", "hit"}}, 3);
  m.add("req", {{"route", "b"}, {"outcome", "hit"}}, 4);
  m.add("req", {{"route", "b"}, {"outcome", "miss"}}, 5);
  m.set("gauge", {{"outcome", "hit"}}, 100);
  EXPECT_EQ(m.counter_sum("req", {{"outcome", "hit"}}), 7u);
  EXPECT_EQ(m.counter_sum("req", {{"outcome", "miss"}, {"route", "b"}}), 5u);
  EXPECT_EQ(m.counter_sum("req", {}), 12u);
  EXPECT_EQ(m.counter_sum("req", {{"outcome", "stale"}}), 0u);
  EXPECT_EQ(m.counter_sum("gauge", {{"outcome", "hit"}}), 0u) << "a gauge is not a counter";
  EXPECT_EQ(m.counter_sum("none", {}), 0u);
}

}  // namespace
}  // namespace pantry::proxy
