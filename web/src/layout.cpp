#include "pantry/web/layout.h"

#include "pantry/text.h"

namespace pantry::web {
namespace {

// Small enough to inline in every page; system fonts, so nothing is fetched.
constexpr std::string_view kStyle = R"css(
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9;line-height:1.45}
header{background:#24303f;color:#fff;padding:.6rem 1.5rem;display:flex;gap:2rem;align-items:baseline}
header .brand{font-weight:700;font-size:1.25rem}
header nav a{color:#cfd8e3;margin-right:1rem;text-decoration:none}
header nav a[aria-current=page]{color:#fff;border-bottom:2px solid #7fb3ff}
main{max-width:72rem;margin:0 auto;padding:1rem 1.5rem 3rem}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.5rem 1.25rem 1rem;margin:1rem 0}
h2{font-size:1.15rem;margin:.6rem 0}
h3{font-size:1rem;margin:.9rem 0 .3rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eceef1;vertical-align:top}
pre{background:#f0f2f5;padding:.6rem .8rem;border-radius:4px;overflow-x:auto;margin:.3rem 0}
code{font-family:ui-monospace,monospace;font-size:.9em}
.ok{color:#17733a}.bad{color:#b3261e}.muted{color:#6a737d}
.st{font-weight:600}.st-passed{color:#17733a}.st-failed{color:#b3261e}.st-running{color:#0969da}
.st-queued,.st-skipped,.st-cancelled{color:#6a737d}
form.filters{display:flex;gap:.6rem;flex-wrap:wrap;align-items:end;margin:.5rem 0}
form.filters label{display:flex;flex-direction:column;font-size:.85rem}
pre.log{max-height:70vh;overflow:auto;font-size:.82rem;line-height:1.35}
pre.log .e{color:#b3261e}pre.log .r,pre.log .p{color:#6a737d}
pre.log .step{color:#0550ae;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:1rem}
.charts figure{margin:0}.charts figcaption{font-weight:600;margin:.3rem 0}
svg.chart{width:100%;height:auto}
)css";

}  // namespace

std::string html_document(std::string_view title, std::string_view current_path,
                          std::string_view body_html, std::string_view script) {
  std::string out;
  out.reserve(body_html.size() + 2048);
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  append_html_escaped(out, title);
  out += " · pantry</title>\n<style>";
  out += kStyle;
  out += "</style>\n";
  if (!script.empty()) {
    out += "<script src=\"";
    append_html_escaped(out, script);
    out += "\" defer></script>\n";
  }
  out += "</head>\n<body>\n<header><span class=\"brand\">pantry</span><nav>";
  for (const auto& p : kPages) {
    out += "<a href=\"";
    append_html_escaped(out, p.path);
    out += '"';
    if (p.path == current_path) out += " aria-current=\"page\"";
    out += '>';
    append_html_escaped(out, p.title);
    out += "</a>";
  }
  out += "</nav></header>\n<main>\n";
  out += body_html;
  out += "</main>\n</body>\n</html>\n";
  return out;
}

}  // namespace pantry::web
