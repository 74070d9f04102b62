#include "pantry/web/dashboard.h"

#include "pantry/text.h"
#include "pantry/web/layout.h"
#include "utc.h"

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

namespace pantry::web {

namespace detail {
// web/static/dashboard.js, compiled in by web/CMakeLists.txt.
extern const char kEmbeddedDashboardScript[];
extern const std::size_t kEmbeddedDashboardScriptSize;
}  // namespace detail

namespace {

using coordinator::clock;
using coordinator::job_record;
using coordinator::job_state;
using coordinator::pipeline_record;
using coordinator::pipeline_state;

std::string esc(std::string_view s) {
  std::string out;
  append_html_escaped(out, s);
  return out;
}

// One query value or path segment, percent-encoded.
std::string enc(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

// A project's path under /projects/: each of its '/'-separated segments encoded.
std::string project_path(std::string_view project) {
  std::string out = "/projects/";
  std::size_t start = 0;
  for (;;) {
    const auto slash = project.find('/', start);
    out += enc(project.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

std::string state_badge(std::string_view state) {
  return "<span class=\"st st-" + std::string(state) + "\">" + esc(state) + "</span>";
}

std::string short_commit(std::string_view commit) {
  return commit.empty() ? "—" : esc(commit.substr(0, 12));
}

double seconds_between(clock::time_point a, clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double unix_seconds(clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// "3 passed, 1 running" for a pipeline's jobs, in job_state order.
std::string job_counts(const pipeline_record& p) {
  std::map<job_state, int> counts;
  for (const auto& j : p.jobs)
    ++counts[j.state];
  std::string out;
  for (const auto& [state, n] : counts) {
    if (!out.empty()) out += ", ";
    out += std::to_string(n) + " " + std::string(coordinator::to_string(state));
  }
  return out.empty() ? "no jobs" : out;
}

// How long a pipeline has run (to its end, or to `now` while it runs).
std::string pipeline_duration(const pipeline_record& p, clock::time_point now) {
  if (p.created_at == clock::time_point{}) return "—";
  const auto end = p.state == pipeline_state::running || p.finished_at == clock::time_point{}
                       ? now
                       : p.finished_at;
  return format_duration(std::max(0.0, seconds_between(p.created_at, end)));
}

std::string job_duration(const job_record& j, clock::time_point now) {
  if (j.started_at == clock::time_point{}) return "—";
  const auto end = coordinator::finished(j.state) ? j.finished_at : now;
  if (end == clock::time_point{}) return "—";
  return format_duration(std::max(0.0, seconds_between(j.started_at, end)));
}

std::string pipeline_link(coordinator::pipeline_id id) {
  const auto n = std::to_string(id);
  return "<a href=\"/pipelines/" + n + "\">" + n + "</a>";
}

std::string project_link(std::string_view project) {
  return "<a href=\"/pipelines?project=" + enc(project) + "\">" + esc(project) + "</a>";
}

// The query string of a log page's filters ("?step=S&grep=RE", "" without filters).
std::string filter_query(std::string_view step, std::string_view grep, std::string_view extra) {
  std::string q;
  const auto add = [&q](std::string_view kv) {
    q += q.empty() ? '?' : '&';
    q += kv;
  };
  if (!extra.empty()) add(extra);
  if (!step.empty()) add("step=" + enc(step));
  if (!grep.empty()) add("grep=" + enc(grep));
  return q;
}

constexpr std::string_view kStreamClass[] = {"r", "o", "e", "p"};

std::string_view stream_class(coordinator::log_stream s) {
  switch (s) {
    case coordinator::log_stream::report:
      return kStreamClass[0];
    case coordinator::log_stream::out:
      return kStreamClass[1];
    case coordinator::log_stream::err:
      return kStreamClass[2];
    case coordinator::log_stream::pantry:
      return kStreamClass[3];
  }
  return kStreamClass[1];
}

std::string table(std::string_view head_html, const std::string& rows_html,
                  std::string_view empty) {
  if (rows_html.empty()) return "<p class=\"muted\">" + esc(empty) + "</p>\n";
  return "<table>\n<thead><tr>" + std::string(head_html) + "</tr></thead>\n<tbody>\n" + rows_html +
         "</tbody>\n</table>\n";
}

std::string optional_value(const std::optional<double>& v, chart_unit unit) {
  return v ? esc(format_value(*v, unit)) : "<span class=\"muted\">—</span>";
}

}  // namespace

std::string_view dashboard_script() {
  return {detail::kEmbeddedDashboardScript, detail::kEmbeddedDashboardScriptSize};
}

std::string format_utc(clock::time_point t) {
  if (t == clock::time_point{}) return "—";
  return detail::utc_text(t, "%Y-%m-%d %H:%M:%S UTC");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "—";
  char buf[48];
  if (seconds < 1) {
    std::snprintf(buf, sizeof buf, "%.0f ms", seconds * 1000);
  } else if (seconds < 60) {
    std::snprintf(buf, sizeof buf, seconds < 10 ? "%.1f s" : "%.0f s", seconds);
  } else if (seconds < 3600) {
    const auto s = static_cast<long long>(seconds);
    std::snprintf(buf, sizeof buf, "%lld min %lld s", s / 60, s % 60);
  } else {
    const auto m = static_cast<long long>(seconds / 60);
    std::snprintf(buf, sizeof buf, "%lld h %lld min", m / 60, m % 60);
  }
  return buf;
}

std::string render_pipelines_page(std::span<const pipeline_record> pipelines,
                                  std::string_view project, clock::time_point now) {
  std::string rows;
  for (const auto& p : pipelines) {
    rows += "<tr data-pipeline=\"" + std::to_string(p.id) + "\"><td>" + pipeline_link(p.id) +
            "</td><td>" + project_link(p.project) + "</td><td>" + esc(p.patch) + "</td><td><code>" +
            short_commit(p.commit) + "</code></td><td>" +
            state_badge(coordinator::to_string(p.state)) + "</td><td>" + esc(job_counts(p)) +
            "</td><td>" + esc(format_utc(p.created_at)) + "</td><td>" +
            esc(pipeline_duration(p, now)) + "</td></tr>\n";
  }
  std::string body;
  body += "<h1>Pipelines";
  if (!project.empty()) body += " of " + esc(project);
  body += "</h1>\n";
  if (!project.empty()) {
    body += "<p><a href=\"/pipelines\">All projects</a> · <a href=\"" + project_path(project) +
            "/tests\">Tests</a> · <a href=\"" + project_path(project) +
            "/charts\">Charts</a></p>\n";
  }
  // The list is live whatever it shows: a new pipeline can appear at any time.
  body += "<section id=\"live\" data-refresh=\"" + std::to_string(kRefreshMillis) + "\">\n";
  body += table(
      "<th>Pipeline</th><th>Project</th><th>Patch</th><th>Commit</th><th>State</th><th>Jobs</th>"
      "<th>Submitted</th><th>Duration</th>",
      rows,
      project.empty() ? "No pipelines yet: `pantry submit` runs one."
                      : "No pipelines of this project are held in memory.");
  body += "</section>\n";
  return html_document(project.empty() ? "Pipelines" : "Pipelines of " + std::string(project),
                       "/pipelines", body, kDashboardScriptPath);
}

std::string render_pipeline_page(const pipeline_record& p, clock::time_point now) {
  const bool running = p.state == pipeline_state::running;
  std::string body = "<h1>Pipeline " + std::to_string(p.id) + " " +
                     state_badge(coordinator::to_string(p.state)) + "</h1>\n";
  // Live while it runs; the last refresh brings a section without data-refresh, which ends them.
  body += "<section id=\"live\"";
  if (running) body += " data-refresh=\"" + std::to_string(kRefreshMillis) + "\"";
  body += ">\n<table>\n<tbody>\n";
  body += "<tr><th>Project</th><td>" + project_link(p.project) + " · <a href=\"" +
          project_path(p.project) + "/tests\">tests</a> · <a href=\"" + project_path(p.project) +
          "/charts\">charts</a></td></tr>\n";
  body += "<tr><th>Patch</th><td>" + (p.patch.empty() ? "—" : esc(p.patch)) + "</td></tr>\n";
  body += "<tr><th>Commit</th><td><code>" + (p.commit.empty() ? "—" : esc(p.commit)) +
          "</code></td></tr>\n";
  body += "<tr><th>Submitted</th><td>" + esc(format_utc(p.created_at)) + "</td></tr>\n";
  body += "<tr><th>Finished</th><td>" + esc(format_utc(p.finished_at)) + "</td></tr>\n";
  body += "<tr><th>Duration</th><td>" + esc(pipeline_duration(p, now)) + "</td></tr>\n";
  if (!p.reason.empty()) body += "<tr><th>Why</th><td>" + esc(p.reason) + "</td></tr>\n";
  if (p.superseded_by != 0) {
    body += "<tr><th>Superseded by</th><td>" + pipeline_link(p.superseded_by) + "</td></tr>\n";
  }
  body += "</tbody>\n</table>\n<h2>Jobs</h2>\n";
  std::string rows;
  for (const auto& j : p.jobs) {
    const auto id = std::to_string(j.id);
    rows += "<tr data-job=\"" + id + "\"><td>" + id + "</td><td><a href=\"/jobs/" + id + "/log\">" +
            esc(j.name) + "</a></td><td>" + state_badge(coordinator::to_string(j.state)) +
            "</td><td>" + esc(j.reason) + "</td><td>" + esc(j.runner) + "</td><td>" +
            esc(job_duration(j, now)) + "</td><td>" +
            (j.cpu_seconds > 0 ? esc(format_duration(j.cpu_seconds)) : "—") + "</td></tr>\n";
  }
  body += table(
      "<th>Job</th><th>Name</th><th>State</th><th>Why</th><th>Runner</th><th>Ran</th>"
      "<th>CPU</th>",
      rows, "This pipeline has no jobs.");
  body += "</section>\n";
  return html_document("Pipeline " + std::to_string(p.id), "/pipelines", body,
                       kDashboardScriptPath);
}

std::string render_log_page(const log_view& v) {
  const job_record* job = nullptr;
  for (const auto& j : v.pipeline->jobs) {
    if (j.id == v.job) job = &j;
  }
  const std::string id = std::to_string(v.job);
  const std::string base = "/jobs/" + id + "/log";
  std::string body = "<h1>Log of job " + id;
  if (job) body += " · " + esc(job->name) + " " + state_badge(coordinator::to_string(job->state));
  body += "</h1>\n<p>Pipeline " + pipeline_link(v.pipeline->id) + " of " +
          project_link(v.pipeline->project) + " · <a href=\"" + base + "/raw" +
          esc(filter_query(v.step, v.grep, "")) + "\" download>Download raw" +
          (v.step.empty() && v.grep.empty() ? "" : " (filtered)") + "</a>";
  if (!v.step.empty() || !v.grep.empty()) {
    body += " · <a href=\"" + base + "/raw\" download>Download the whole log</a>";
  }
  body += "</p>\n";

  // The steps seen on this page, offered in the step filter.
  std::vector<std::string> steps;
  for (const auto& e : v.entries) {
    if (!e.step.empty() && std::find(steps.begin(), steps.end(), e.step) == steps.end()) {
      steps.push_back(e.step);
    }
  }
  body += "<form class=\"filters\" method=\"get\" action=\"" + base +
          "\">\n<label>Step <input name=\"step\" list=\"steps\" value=\"" + esc(v.step) +
          "\" placeholder=\"every step\"></label>\n<datalist id=\"steps\">";
  for (const auto& s : steps)
    body += "<option value=\"" + esc(s) + "\">";
  body += "</datalist>\n<label>Pattern (regular expression) <input name=\"grep\" value=\"" +
          esc(v.grep) +
          "\" placeholder=\"every line\"></label>\n<button type=\"submit\">Filter</button>\n";
  if (!v.step.empty() || !v.grep.empty()) body += "<a href=\"" + base + "\">Clear</a>\n";
  body += "</form>\n";

  if (!v.error.empty()) {
    body += "<p class=\"bad\">" + esc(v.error) + "</p>\n";
    return html_document("Log of job " + id, "/pipelines", body);
  }
  const bool live = !v.done && !v.more;
  body += "<pre class=\"log\" id=\"log\"";
  if (live) {
    body += " data-follow=\"" +
            esc(base + filter_query(v.step, v.grep,
                                    "follow=1&format=ndjson&from=" + std::to_string(v.next))) +
            "\"";
  }
  std::string last_step;
  bool first = true;
  std::string lines;
  for (const auto& e : v.entries) {
    if (first || e.step != last_step) {
      // A line of its own, so that the log's text (a copy, a search) keeps every line whole.
      lines += "<span class=\"step\">";
      lines += e.step.empty() ? std::string("(outside any step)") : "step " + esc(e.step);
      lines += "\n</span>";
      last_step = e.step;
      first = false;
    }
    lines += "<span class=\"";
    lines += stream_class(e.stream);
    lines += "\">";
    append_html_escaped(lines, e.text);
    lines += "\n</span>";
  }
  if (!first) body += " data-step=\"" + esc(last_step) + "\"";
  body += ">" + lines + "</pre>\n";
  if (v.entries.empty()) {
    body += "<p class=\"muted\" id=\"log-empty\">No lines" +
            std::string(v.step.empty() && v.grep.empty() ? "" : " match the filters") +
            (v.done ? "." : " yet.") + "</p>\n";
  }
  if (v.more) {
    body += "<p>This page shows the first " + std::to_string(v.entries.size()) +
            " lines; the raw download has them all.</p>\n";
  } else if (!v.done) {
    body += "<p id=\"follow-status\">The job is still running: this is its log so far. <a href=\"" +
            base + esc(filter_query(v.step, v.grep, "")) + "\">Refresh</a></p>\n";
  } else {
    body += "<p class=\"muted\">End of the log.</p>\n";
  }
  return html_document("Log of job " + id, "/pipelines", body, kDashboardScriptPath);
}

std::string render_projects_page(std::span<const pipeline_record> recent) {
  struct row {
    const pipeline_record* latest = nullptr;
    std::size_t count = 0;
  };
  std::map<std::string, row> projects;
  for (const auto& p : recent) {
    auto& r = projects[p.project];
    if (!r.latest) r.latest = &p;  // newest first
    ++r.count;
  }
  std::string rows;
  for (const auto& [name, r] : projects) {
    const auto path = project_path(name);
    rows += "<tr><td>" + project_link(name) + "</td><td>" + pipeline_link(r.latest->id) + " " +
            state_badge(coordinator::to_string(r.latest->state)) + "</td><td>" +
            esc(format_utc(r.latest->created_at)) + "</td><td>" + std::to_string(r.count) +
            "</td><td><a href=\"" + path + "/tests\">tests</a> · <a href=\"" + path +
            "/charts\">charts</a></td></tr>\n";
  }
  std::string body = "<h1>Projects</h1>\n<section>\n" +
                     table(
                         "<th>Project</th><th>Latest pipeline</th><th>Submitted</th>"
                         "<th>Recent pipelines</th><th>See</th>",
                         rows, "No projects yet: `pantry submit` runs a pipeline.") +
                     "</section>\n";
  return html_document("Projects", "/projects", body);
}

std::string render_tests_page(const coordinator::project_tests& t) {
  const auto path = project_path(t.project);
  std::string body = "<h1>Tests of " + esc(t.project) + "</h1>\n<p>" + std::to_string(t.runs) +
                     " job runs with test results kept · " + project_link(t.project) +
                     " · <a href=\"" + path + "/charts\">charts</a></p>\n";

  std::string rows;
  for (const auto& s : coordinator::slowest(t.tests, 20)) {
    rows += "<tr><td><code>" + esc(s.id) + "</code></td><td>" +
            (s.seconds ? esc(format_duration(*s.seconds)) : "—") + "</td><td>" +
            std::to_string(s.runs) + "</td><td>" +
            state_badge(coordinator::to_string(s.last_outcome)) + "</td></tr>\n";
  }
  body += "<section id=\"slowest\">\n<h2>Slowest</h2>\n" +
          table("<th>Test</th><th>Usual duration</th><th>Runs</th><th>Last outcome</th>", rows,
                "No test results recorded yet.") +
          "</section>\n";

  rows.clear();
  for (const auto& f : t.recent_failures) {
    std::string message = f.message.substr(0, 300);
    rows += "<tr><td><code>" + esc(f.id) + "</code></td><td>" +
            state_badge(coordinator::to_string(f.outcome)) +
            (f.rerun ? " (re-run " + esc(coordinator::to_string(*f.rerun)) + ")" : "") +
            "</td><td>" + pipeline_link(f.pipeline) + "</td><td><a href=\"/jobs/" +
            std::to_string(f.job) + "/log\">job " + std::to_string(f.job) + "</a></td><td>" +
            esc(format_utc(f.time)) + "</td><td><code>" + esc(message) + "</code></td></tr>\n";
  }
  body += "<section id=\"failing\">\n<h2>Failing</h2>\n" +
          table(
              "<th>Test</th><th>Outcome</th><th>Pipeline</th><th>Job</th><th>When</th>"
              "<th>Message</th>",
              rows, "No test failed in the kept runs.") +
          "</section>\n";

  rows.clear();
  for (const auto& f : t.flaky) {
    std::string commits;
    for (std::size_t i = 0; i < f.commits.size() && i < 3; ++i)
      commits += (i ? ", " : "") + short_commit(f.commits[i]);
    rows += "<tr><td><code>" + esc(f.id) + "</code></td><td>" +
            esc(format_value(f.rate, chart_unit::ratio)) + "</td><td>" + std::to_string(f.flakes) +
            " of " + std::to_string(f.runs) + "</td><td>" + esc(format_utc(f.last_flaked)) +
            "</td><td><code>" + commits + "</code></td></tr>\n";
  }
  body += "<section id=\"flaky\">\n<h2>Flaky</h2>\n" +
          table(
              "<th>Test</th><th>Flake rate</th><th>Flakes</th><th>Last flaked</th>"
              "<th>Commits</th>",
              rows, "No flaky test: none both passed and failed on one commit.") +
          "</section>\n";

  rows.clear();
  for (const auto& q : t.quarantined) {
    rows += "<tr><td><code>" + esc(q.id) + "</code></td><td>" +
            (q.from_config ? std::string("config (ci.quarantine)") : "API by " + esc(q.by)) +
            "</td><td>" + (q.since ? esc(format_utc(*q.since)) : "—") + "</td></tr>\n";
  }
  body += "<section id=\"quarantined\">\n<h2>Quarantined</h2>\n" +
          table("<th>Test</th><th>Listed in</th><th>Since</th>", rows, "No quarantined test.") +
          "</section>\n";
  return html_document("Tests of " + t.project, "/projects", body);
}

std::vector<chart_series> measure_charts(std::span<const coordinator::pipeline_measures> each) {
  std::vector<const coordinator::pipeline_measures*> sorted;
  for (const auto& m : each)
    sorted.push_back(&m);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto* a, const auto* b) { return a->submitted < b->submitted; });
  const auto note = [](const coordinator::pipeline_measures& m, const std::string& what) {
    return "pipeline " + std::to_string(m.pipeline) + " (" + format_utc(m.submitted) + "): " + what;
  };
  chart_series red{"Time to red", chart_unit::seconds, {}, "no pipeline in the window failed"};
  chart_series green{"Time to green", chart_unit::seconds, {}, "no pipeline in the window passed"};
  chart_series flaky{"Flaky rate", chart_unit::ratio, {}, "no pipeline in the window failed"};
  chart_series cpu{"CPU-seconds", chart_unit::seconds, {}, "no ended pipeline in the window"};
  chart_series saved{
      "Runner-seconds saved", chart_unit::seconds, {}, "no ended pipeline in the window"};
  chart_series cache{"Cache hit ratio",
                     chart_unit::ratio,
                     {},
                     "no job in the window made a request through pantry's cache"};
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const auto& m = *sorted[i];
    const double x = unix_seconds(m.submitted);
    if (m.time_to_red) {
      red.points.push_back(
          {x, *m.time_to_red, note(m, format_value(*m.time_to_red, chart_unit::seconds))});
    }
    if (m.time_to_green) {
      green.points.push_back(
          {x, *m.time_to_green, note(m, format_value(*m.time_to_green, chart_unit::seconds))});
    }
    cpu.points.push_back(
        {x, m.cpu_seconds, note(m, format_value(m.cpu_seconds, chart_unit::seconds))});
    const double s = m.saved_by_supersede + m.saved_by_stopping_early;
    saved.points.push_back(
        {x, s,
         note(m, format_value(s, chart_unit::seconds) + " (superseding " +
                     format_value(m.saved_by_supersede, chart_unit::seconds) + ", stopping early " +
                     format_value(m.saved_by_stopping_early, chart_unit::seconds) + ")")});
    std::size_t failed = 0, red_only_flaky = 0;
    for (std::size_t k = i + 1 > kFlakyWindow ? i + 1 - kFlakyWindow : 0; k <= i; ++k) {
      if (sorted[k]->state != pipeline_state::failed) continue;
      ++failed;
      if (sorted[k]->red_only_flaky) ++red_only_flaky;
    }
    if (failed > 0) {
      const double rate = static_cast<double>(red_only_flaky) / static_cast<double>(failed);
      flaky.points.push_back(
          {x, rate,
           note(m, std::to_string(red_only_flaky) + " of " + std::to_string(failed) +
                       " failed pipelines red only because of flaky tests")});
    }
    // The pipeline's jobs' requests served from the cache, of all their cache traffic.
    if (const auto ratio = coordinator::hit_ratio(m.cache); ratio.requests) {
      cache.points.push_back(
          {x, *ratio.requests,
           note(m, format_value(*ratio.requests, chart_unit::ratio) + " of requests, " +
                       (ratio.bytes ? format_value(*ratio.bytes, chart_unit::ratio) : "—") +
                       " of bytes")});
    }
  }
  return {red, green, flaky, cpu, saved, cache};
}

std::string render_charts_page(std::string_view project, const coordinator::measured_window& m,
                               const chart_window& window) {
  const auto& a = m.first;
  const auto path = project_path(project);
  std::string body = "<h1>Charts of " + esc(project) + "</h1>\n<p>Its newest " +
                     std::to_string(window.pipelines) + " ended pipelines of the last " +
                     std::to_string(window.days) +
                     " days held in memory: " + std::to_string(a.pipelines) + " (" +
                     std::to_string(a.passed) + " passed, " + std::to_string(a.failed) +
                     " failed, " + std::to_string(a.cancelled) + " cancelled) · " +
                     project_link(project) + " · <a href=\"" + path + "/tests\">tests</a></p>\n";
  body += "<section>\n<table>\n<tbody>\n";
  body += "<tr><th>Median time to red</th><td>" +
          optional_value(a.median_time_to_red, chart_unit::seconds) + "</td></tr>\n";
  body += "<tr><th>Median time to green</th><td>" +
          optional_value(a.median_time_to_green, chart_unit::seconds) + "</td></tr>\n";
  body += "<tr><th>Median queue wait</th><td>" +
          optional_value(a.median_queue_wait, chart_unit::seconds) + "</td></tr>\n";
  body += "<tr><th>Flaky tests</th><td>" + std::to_string(a.flaky_tests) + " of " +
          std::to_string(a.tests) + " (" + optional_value(a.flaky_test_rate, chart_unit::ratio) +
          ")</td></tr>\n";
  body += "<tr><th>Red only because of flaky tests</th><td>" + std::to_string(a.red_only_flaky) +
          " of " + std::to_string(a.failed) + " failed (" +
          optional_value(a.red_only_flaky_rate, chart_unit::ratio) + ")</td></tr>\n";
  body += "<tr><th>CPU-seconds</th><td>" + esc(format_value(a.cpu_seconds, chart_unit::seconds)) +
          "</td></tr>\n";
  body += "<tr><th>Saved</th><td>" + esc(format_value(a.saved_by_supersede, chart_unit::seconds)) +
          " by superseding, " + esc(format_value(a.saved_by_stopping_early, chart_unit::seconds)) +
          " by stopping early</td></tr>\n";
  body += "</tbody>\n</table>\n</section>\n<section class=\"charts\">\n";
  for (const auto& series : measure_charts(m.second)) {
    body += "<figure><figcaption>" + esc(series.title) + "</figcaption>" +
            render_chart_svg(series) + "</figure>\n";
  }
  body += "</section>\n";
  return html_document("Charts of " + std::string(project), "/projects", body);
}

std::string render_not_found_page(std::string_view what, std::string_view hint) {
  std::string body = "<h1>Not found</h1>\n<section>\n<p>No " + esc(what) + ".</p>\n";
  if (!hint.empty()) body += "<p>" + esc(hint) + "</p>\n";
  body += "</section>\n";
  return html_document("Not found", "", body);
}

std::string render_sign_in_page() {
  return html_document(
      "Sign in", "",
      "<h1>Sign in</h1>\n<section>\n<p>The CI pages need a token of this pantry's "
      "<code>ci.tokens</code> with role read or submit. Sign in with any user name and the token "
      "as the password.</p>\n</section>\n");
}

std::string render_error_page(std::string_view title, std::string_view message) {
  return html_document(title, "",
                       "<h1>" + esc(title) + "</h1>\n<section>\n<p class=\"bad\">" + esc(message) +
                           "</p>\n</section>\n");
}

}  // namespace pantry::web
