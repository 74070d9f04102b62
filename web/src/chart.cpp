#include "pantry/web/chart.h"

#include "pantry/text.h"
#include "utc.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace pantry::web {
namespace {

// Room for the y labels on the left and the x labels below the plot.
constexpr double kLeft = 64, kRight = 22, kTop = 14, kBottom = 32;
// More ticks than this means a caller's bad count; the axis stays readable without them.
constexpr int kMaxTicks = 50;

// `v` with at most `decimals` decimals and no trailing zeros ("2.50" -> "2.5", "3.0" -> "3").
std::string trimmed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0')
      s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

// A coordinate in the SVG: one decimal is finer than a pixel.
std::string coord(double v) {
  return trimmed(v, 1);
}

void text_element(std::string& out, double x, double y, std::string_view anchor,
                  std::string_view text, std::string_view extra = {}) {
  out += "<text x=\"" + coord(x) + "\" y=\"" + coord(y) + "\" text-anchor=\"";
  out += anchor;
  out += "\" font-size=\"13\" fill=\"#57606a\"";
  out += extra;
  out += '>';
  append_html_escaped(out, text);
  out += "</text>";
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int count) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0, 1};
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo <= 0) hi = lo + (lo == 0 ? 1 : std::fabs(lo));
  count = std::clamp(count, 1, kMaxTicks);
  const double raw = (hi - lo) / count;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const double first = std::floor(lo / step + 1e-9) * step;
  const double last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0; i <= 2 * kMaxTicks; ++i) {
    const double t = first + i * step;
    if (t > last + step * 1e-6) break;
    // Multiples of the step, without the floating-point dust of repeated addition.
    ticks.push_back(std::round(t / step) * step);
  }
  return ticks;
}

std::string format_value(double v, chart_unit unit) {
  if (unit == chart_unit::ratio) {
    const double pct = v * 100;
    return trimmed(pct, std::fabs(pct) < 10 ? 1 : 0) + "%";
  }
  const double a = std::fabs(v);
  if (a < 90) return trimmed(v, a < 10 ? 1 : 0) + " s";
  if (a < 5400) return trimmed(v / 60, 1) + " min";
  return trimmed(v / 3600, 1) + " h";
}

std::string format_time_label(double x, double span) {
  const auto t = std::chrono::system_clock::from_time_t(static_cast<std::time_t>(std::floor(x)));
  const char* format = span < 3600 ? "%H:%M:%S" : span < 2 * 86400 ? "%m-%d %H:%M" : "%Y-%m-%d";
  return detail::utc_text(t, format);
}

std::string render_chart_svg(const chart_series& series, const chart_size& size) {
  const double w = std::max(size.width, 200);
  const double h = std::max(size.height, 120);
  const double plot_w = w - kLeft - kRight;
  const double plot_h = h - kTop - kBottom;
  std::vector<chart_point> points;
  for (const auto& p : series.points) {
    if (std::isfinite(p.x) && std::isfinite(p.y)) points.push_back(p);
  }
  std::stable_sort(points.begin(), points.end(),
                   [](const chart_point& a, const chart_point& b) { return a.x < b.x; });

  std::string out;
  out.reserve(2048 + points.size() * 160);
  out += "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + coord(w) +
         " " + coord(h) + "\" role=\"img\" data-points=\"" + std::to_string(points.size()) +
         "\"><title>";
  append_html_escaped(out, series.title);
  out += "</title>";
  out += "<rect x=\"" + coord(kLeft) + "\" y=\"" + coord(kTop) + "\" width=\"" + coord(plot_w) +
         "\" height=\"" + coord(plot_h) + "\" fill=\"#fbfcfd\" stroke=\"#d0d7de\"/>";
  if (points.empty()) {
    text_element(out, kLeft + plot_w / 2, kTop + plot_h / 2 - 4, "middle", "no data yet",
                 " class=\"empty\" font-weight=\"600\"");
    if (!series.empty_note.empty()) {
      text_element(out, kLeft + plot_w / 2, kTop + plot_h / 2 + 14, "middle", series.empty_note);
    }
    out += "</svg>";
    return out;
  }

  double y_lo = 0, y_hi = 0;
  for (const auto& p : points) {
    y_lo = std::min(y_lo, p.y);
    y_hi = std::max(y_hi, p.y);
  }
  const auto y_ticks = nice_ticks(y_lo, y_hi, 4);
  y_lo = y_ticks.front();
  y_hi = y_ticks.back();
  double x_lo = points.front().x, x_hi = points.back().x;
  const bool one_time = x_hi <= x_lo;
  if (one_time) {  // one instant: put it in the middle of an hour
    x_lo -= 1800;
    x_hi += 1800;
  }
  const auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  const auto py = [&](double y) { return kTop + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h; };

  out += "<g class=\"y-axis\">";
  for (double t : y_ticks) {
    const double y = py(t);
    out += "<line x1=\"" + coord(kLeft) + "\" y1=\"" + coord(y) + "\" x2=\"" +
           coord(kLeft + plot_w) + "\" y2=\"" + coord(y) + "\" stroke=\"#eaeef2\"/>";
    text_element(out, kLeft - 6, y + 4, "end", format_value(t, series.unit));
  }
  out += "</g><g class=\"x-axis\">";
  const int x_labels = one_time ? 1 : 4;
  for (int i = 0; i < x_labels; ++i) {
    const double x = one_time ? points.front().x : x_lo + (x_hi - x_lo) * i / (x_labels - 1);
    const char* anchor = one_time            ? "middle"
                         : i == 0            ? "start"
                         : i == x_labels - 1 ? "end"
                                             : "middle";
    text_element(out, px(x), kTop + plot_h + 20, anchor, format_time_label(x, x_hi - x_lo));
  }
  out +=
      "</g><polyline class=\"series\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" "
      "points=\"";
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (i) out += ' ';
    out += coord(px(points[i].x)) + "," + coord(py(points[i].y));
  }
  out += "\"/>";
  for (const auto& p : points) {
    out += "<circle class=\"point\" cx=\"" + coord(px(p.x)) + "\" cy=\"" + coord(py(p.y)) +
           "\" r=\"3.5\" fill=\"#0969da\"><title>";
    append_html_escaped(out, p.note.empty() ? format_value(p.y, series.unit) : p.note);
    out += "</title></circle>";
  }
  out += "</svg>";
  return out;
}

}  // namespace pantry::web
