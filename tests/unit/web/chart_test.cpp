#include "pantry/web/chart.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace pantry::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int count_of(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1))
    ++n;
  return n;
}

struct xy {
  double x, y;
};

// The polyline's points, as drawn ("x,y x,y …"). (No <regex>: gcc 12 at -O1 warns falsely in
// it, see orchestrator/coordinator/CMakeLists.txt.)
std::vector<xy> polyline_of(const std::string& svg) {
  const std::string key = "class=\"series\"";
  auto at = svg.find(key);
  EXPECT_NE(at, std::string::npos) << svg;
  at = svg.find("points=\"", at);
  EXPECT_NE(at, std::string::npos) << svg;
  std::vector<xy> out;
  if (at == std::string::npos) return out;
  const char* p = svg.c_str() + at + 8;
  while (*p != '"' && *p != '\0') {
    char* end = nullptr;
    const double x = std::strtod(p, &end);
    if (end == p || *end != ',') break;
    const double y = std::strtod(end + 1, &end);
    out.push_back({x, y});
    p = end;
    while (*p == ' ')
      ++p;
  }
  return out;
}

TEST(ChartTest, EmptySeriesSaysNoDataYetWithItsNote) {
  chart_series s{"Time to red", chart_unit::seconds, {}, "no pipeline in the window failed"};
  const auto svg = render_chart_svg(s);
  EXPECT_THAT(svg, HasSubstr("no data yet"));
  EXPECT_THAT(svg, HasSubstr("no pipeline in the window failed"));
  EXPECT_THAT(svg, HasSubstr("data-points=\"0\""));
  EXPECT_THAT(svg, Not(HasSubstr("<polyline")));
  EXPECT_THAT(svg, Not(HasSubstr("class=\"point\"")));
  EXPECT_THAT(svg, HasSubstr("<title>Time to red</title>"));
}

TEST(ChartTest, PointsAreDrawnInTimeOrderInsideThePlot) {
  chart_series s{"CPU", chart_unit::seconds, {}, ""};
  // Out of order on purpose: the polyline must go left to right.
  s.points = {{3000, 30, "c"}, {1000, 10, "a"}, {2000, 40, "b"}};
  chart_size size{640, 220};
  const auto svg = render_chart_svg(s, size);
  EXPECT_EQ(count_of(svg, "<circle class=\"point\""), 3) << svg;
  EXPECT_THAT(svg, HasSubstr("data-points=\"3\""));
  const auto pts = polyline_of(svg);
  ASSERT_EQ(pts.size(), 3u) << svg;
  EXPECT_LT(pts[0].x, pts[1].x);
  EXPECT_LT(pts[1].x, pts[2].x);
  for (const auto& p : pts) {
    EXPECT_GE(p.x, 0) << svg;
    EXPECT_LE(p.x, size.width) << svg;
    EXPECT_GE(p.y, 0) << svg;
    EXPECT_LE(p.y, size.height) << svg;
  }
  // y grows upwards: the largest value (40, the middle point) is highest, i.e. smallest y.
  EXPECT_LT(pts[1].y, pts[0].y);
  EXPECT_LT(pts[1].y, pts[2].y);
  // The tooltips are the notes, in drawing order.
  EXPECT_LT(svg.find("<title>a</title>"), svg.find("<title>b</title>"));
  EXPECT_LT(svg.find("<title>b</title>"), svg.find("<title>c</title>"));
}

TEST(ChartTest, AxisLabelsUseTheUnitAndTheTime) {
  chart_series s{"Flaky rate", chart_unit::ratio, {}, ""};
  s.points = {{1'765'000'000, 0.25, ""}, {1'765'003'600, 0.5, ""}};
  const auto svg = render_chart_svg(s);
  EXPECT_THAT(svg, HasSubstr(">60%</text>")) << svg;  // the tick above 50%
  EXPECT_THAT(svg, HasSubstr(">0%</text>")) << svg;
  // 1'765'000'000 is 2025-12-06 05:46:40 UTC; an hour apart, labelled to the minute.
  EXPECT_THAT(svg, HasSubstr(">12-06 05:46</text>")) << svg;
  EXPECT_THAT(svg, HasSubstr(">12-06 06:46</text>")) << svg;
  // A point without a note gets its value as the tooltip.
  EXPECT_THAT(svg, HasSubstr("<title>25%</title>")) << svg;
}

TEST(ChartTest, OnePointOrAllZerosStillDraws) {
  chart_series one{"Green", chart_unit::seconds, {{1000, 12, "p1"}}, ""};
  const auto svg = render_chart_svg(one);
  EXPECT_EQ(count_of(svg, "<circle class=\"point\""), 1);
  const auto pts = polyline_of(svg);
  ASSERT_EQ(pts.size(), 1u);
  EXPECT_NEAR(pts[0].x, 64 + (640 - 64 - 22) / 2.0, 0.1) << svg;  // in the middle of the plot
  chart_series zeros{"Saved", chart_unit::seconds, {{1000, 0, ""}, {2000, 0, ""}}, ""};
  const auto z = render_chart_svg(zeros);
  EXPECT_EQ(count_of(z, "<circle class=\"point\""), 2) << z;
  EXPECT_THAT(z, Not(HasSubstr("nan"))) << z;
  EXPECT_THAT(z, Not(HasSubstr("inf"))) << z;
}

TEST(ChartTest, NonFiniteValuesAreDropped) {
  chart_series s{"x", chart_unit::seconds, {}, "why"};
  s.points = {{1000, std::numeric_limits<double>::quiet_NaN(), ""},
              {std::numeric_limits<double>::infinity(), 1, ""},
              {2000, 5, ""}};
  const auto svg = render_chart_svg(s);
  EXPECT_EQ(count_of(svg, "<circle class=\"point\""), 1) << svg;
  chart_series none{"x", chart_unit::seconds, {{1000, std::nan(""), ""}}, "why"};
  EXPECT_THAT(render_chart_svg(none), HasSubstr("no data yet"));
}

TEST(ChartTest, TextIsEscaped) {
  chart_series s{"<b>title</b>", chart_unit::seconds, {{1000, 1, "<script>x</script>"}}, ""};
  const auto svg = render_chart_svg(s);
  EXPECT_THAT(svg, Not(HasSubstr("<script>")));
  EXPECT_THAT(svg, Not(HasSubstr("<b>")));
  EXPECT_THAT(svg, HasSubstr("&lt;script&gt;x&lt;/script&gt;"));
  chart_series e{"t", chart_unit::seconds, {}, "a & <b>"};
  EXPECT_THAT(render_chart_svg(e), HasSubstr("a &amp; &lt;b&gt;"));
}

TEST(ChartTest, NiceTicksCoverTheRangeWithRoundSteps) {
  EXPECT_EQ(nice_ticks(0, 37, 4), (std::vector<double>{0, 10, 20, 30, 40}));
  EXPECT_EQ(nice_ticks(0, 1, 4), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(nice_ticks(0, 0, 4), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(nice_ticks(0, 950, 5), (std::vector<double>{0, 200, 400, 600, 800, 1000}));
  const auto neg = nice_ticks(-3, 7, 5);
  ASSERT_FALSE(neg.empty());
  EXPECT_LE(neg.front(), -3);
  EXPECT_GE(neg.back(), 7);
  EXPECT_LE(neg.size(), 12u);
  EXPECT_EQ(nice_ticks(std::nan(""), 1, 4), (std::vector<double>{0, 1}));
}

TEST(ChartTest, ValuesAreFormattedForPeople) {
  EXPECT_EQ(format_value(0, chart_unit::seconds), "0 s");
  EXPECT_EQ(format_value(2.5, chart_unit::seconds), "2.5 s");
  EXPECT_EQ(format_value(45, chart_unit::seconds), "45 s");
  EXPECT_EQ(format_value(150, chart_unit::seconds), "2.5 min");
  EXPECT_EQ(format_value(4320, chart_unit::seconds), "72 min");
  EXPECT_EQ(format_value(7200, chart_unit::seconds), "2 h");
  EXPECT_EQ(format_value(0.4, chart_unit::ratio), "40%");
  EXPECT_EQ(format_value(0.055, chart_unit::ratio), "5.5%");
  EXPECT_EQ(format_time_label(0), "01-01 00:00");
  EXPECT_EQ(format_time_label(1'765'000'000, 600), "05:46:40");
  EXPECT_EQ(format_time_label(1'765'000'000, 30 * 86400), "2025-12-06");
}

}  // namespace
}  // namespace pantry::web
