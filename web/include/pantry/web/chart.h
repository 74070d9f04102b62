#pragma once

// Line charts as inline SVG, drawn on the server: the dashboard's charts need no script and no
// chart library, so they read the same with JavaScript off and under the pages' strict
// Content-Security-Policy (layout.h). Pure: values in, markup out.
//
// A chart is one series of points over time: the axes (y from 0, or from the smallest value when
// it is negative; x over the points' time span), about five labelled ticks on each, a polyline
// through the points in time order and a circle per point (class "point") whose <title> is the
// point's note, shown by the browser on hover. A series without points draws the frame with
// "no data yet" and the series' own note on why.

#include <string>
#include <string_view>
#include <vector>

namespace pantry::web {

enum class chart_unit {
  seconds,  // labelled "45 s", "2.5 min", "1.2 h"
  ratio,    // 0..1, labelled as a percentage
};

struct chart_point {
  double x = 0;      // seconds since the Unix epoch (UTC)
  double y = 0;      // in the series' unit
  std::string note;  // the point's tooltip ("pipeline 12: 41 s"), escaped when drawn
};

struct chart_series {
  std::string title;  // the chart's accessible name (its <title>)
  chart_unit unit = chart_unit::seconds;
  std::vector<chart_point> points;  // any order; drawn sorted by x
  std::string empty_note;           // shown under "no data yet" when there are no points
};

struct chart_size {
  int width = 640;  // the SVG's viewBox; it scales to its container's width
  int height = 220;
};

// The chart as one <svg> element (role="img"), every text escaped. Non-finite values are
// dropped, as if the point were not there.
std::string render_chart_svg(const chart_series& series, const chart_size& size = {});

// About `count` round tick values ("nice" steps of 1, 2 or 5 × 10^k) covering [lo, hi], first
// at or below lo and last at or above hi. A span of zero gets ticks around the value.
std::vector<double> nice_ticks(double lo, double hi, int count = 5);

// A value in `unit` as an axis or tooltip label: "0 s", "45 s", "2.5 min", "1.2 h", "40%".
std::string format_value(double v, chart_unit unit);

// Seconds since the epoch as a UTC label as fine as `span` (the axis' seconds) needs: "HH:MM:SS"
// under an hour, "MM-DD HH:MM" under two days, else "YYYY-MM-DD".
std::string format_time_label(double x, double span = 86400);

}  // namespace pantry::web
