#include "dashboard_routes.h"

#include "pantry/web/dashboard.h"
#include "pantry/web/layout.h"

#include <boost/url/parse.hpp>

#include <charconv>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pantry::web {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using coordinator::coordinator_service;
using proxy::exchange;

// The pipelines the list shows, and that the projects page groups by project.
constexpr std::size_t kPipelinesShown = 100;
constexpr std::size_t kProjectsFrom = 1000;
// A log page shows at most this many lines; the raw download has the rest.
constexpr std::size_t kLogPageLines = 5000;
// A charts page's window unless its query says otherwise: a month of pipelines, more than the
// API's default week, since a chart is about the trend.
constexpr std::size_t kChartPipelines = 200;
constexpr std::uint64_t kChartDays = 30;

// A request target's path segments (percent-decoded) and query parameters (decoded; the last of
// a repeated name wins).
struct target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

std::optional<target> parse_target(std::string_view t) {
  auto url = boost::urls::parse_origin_form(t);
  if (!url) return std::nullopt;
  target out;
  for (auto seg : url->segments()) {
    if (!seg.empty()) out.segments.push_back(std::string(seg));
  }
  for (auto p : url->params())
    out.query[std::string(p.key)] = std::string(p.value);
  return out;
}

std::optional<std::uint64_t> parse_number(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string query_value(const target& t, const std::string& name) {
  auto it = t.query.find(name);
  return it == t.query.end() ? std::string() : it->second;
}

asio::awaitable<void> send_page(exchange& ex, http::status status, std::string html) {
  http::response<http::string_body> res{status, ex.request().version()};
  res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set("Content-Security-Policy", kContentSecurityPolicy);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  if (status == http::status::unauthorized) {
    res.set(http::field::www_authenticate, "Basic realm=\"pantry CI\", charset=\"UTF-8\"");
  }
  if (status == http::status::method_not_allowed) res.set(http::field::allow, "GET, HEAD");
  res.body() = std::move(html);
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> not_found(exchange& ex, std::string what, std::string hint) {
  co_await send_page(ex, http::status::not_found, render_not_found_page(what, hint));
}

class dashboard : public std::enable_shared_from_this<dashboard> {
 public:
  explicit dashboard(std::shared_ptr<coordinator_service> ci) : ci_(std::move(ci)) {}

  asio::awaitable<void> handle(exchange& ex) {
    ex.set_route("dashboard");
    const auto method = ex.request().method();
    if (method != http::verb::get && method != http::verb::head) {
      const std::string message = std::string(ex.request().method_string()) +
                                  " is not allowed: the dashboard's pages answer GET and HEAD";
      co_await send_page(ex, http::status::method_not_allowed,
                         render_error_page("Method not allowed", message));
      co_return;
    }
    auto t = parse_target(ex.request().target());
    if (!t || t->segments.empty()) {
      co_await not_found(ex, "such page", "The pipelines are at /pipelines.");
      co_return;
    }
    if (!ci_) {
      co_await not_found(ex, "CI coordinator on this pantry",
                         "Its pipelines, logs, tests and charts are on the pantry that runs the "
                         "coordinator (ci.enabled: true, no ci.runner_of).");
      co_return;
    }
    if (!ci_->may_read(ex)) {
      co_await send_page(ex, http::status::unauthorized, render_sign_in_page());
      co_return;
    }
    const std::string& area = t->segments[0];
    if (area == "pipelines") {
      co_await pipelines(ex, *t);
    } else if (area == "jobs") {
      co_await jobs(ex, *t);
    } else if (area == "projects") {
      co_await projects(ex, *t);
    } else {
      co_await not_found(ex, "page " + std::string(ex.request().target()),
                         "The pipelines are at /pipelines, the projects at /projects.");
    }
  }

 private:
  asio::awaitable<void> pipelines(exchange& ex, const target& t) {
    const auto now = coordinator::clock::now();
    if (t.segments.size() == 1) {
      const std::string project = query_value(t, "project");
      auto list = co_await ci_->recent_pipelines(project, kPipelinesShown);
      co_await send_page(ex, http::status::ok, render_pipelines_page(list, project, now));
      co_return;
    }
    // Not `cond ? co_await … : std::nullopt`: gcc 12 may destroy such a temporary twice
    // (CONTRIBUTING.md, "Traps").
    auto id = parse_number(t.segments[1]);
    std::optional<coordinator::pipeline_record> p;
    if (id && t.segments.size() == 2) p = co_await ci_->find_pipeline(*id);
    if (!p) {
      co_await not_found(ex, "pipeline " + t.segments[1],
                         "The pipelines pantry holds are listed at /pipelines.");
      co_return;
    }
    co_await send_page(ex, http::status::ok, render_pipeline_page(*p, now));
  }

  asio::awaitable<void> jobs(exchange& ex, const target& t) {
    auto id = t.segments.size() >= 2 ? parse_number(t.segments[1]) : std::nullopt;
    const bool log = t.segments.size() == 3 && t.segments[2] == "log";
    const bool raw = t.segments.size() == 4 && t.segments[2] == "log" && t.segments[3] == "raw";
    if (!id || (!log && !raw)) {
      co_await not_found(ex, "page " + std::string(ex.request().target()),
                         "A job's log is /jobs/<id>/log, its raw download /jobs/<id>/log/raw.");
      co_return;
    }
    auto p = co_await ci_->pipeline_of_job(*id);
    if (!p) {
      co_await not_found(ex, "job " + t.segments[1],
                         "The jobs pantry holds are those of the pipelines at /pipelines.");
      co_return;
    }
    coordinator::log_query q;
    q.step = query_value(t, "step");
    q.grep = query_value(t, "grep");
    if (auto f = t.query.find("from"); f != t.query.end()) {
      auto from = parse_number(f->second);
      if (!from) {
        co_await send_page(ex, http::status::bad_request,
                           render_error_page("Bad request", "from: \"" + f->second.substr(0, 40) +
                                                                "\" is not a line's seq (a "
                                                                "number, 0 for the first line)"));
        co_return;
      }
      q.from = *from;
    }
    if (raw) {
      q.attachment = "job-" + std::to_string(*id) +
                     (q.step.empty() && q.grep.empty() ? "" : "-filtered") + ".log";
      co_await ci_->stream_log(ex, *id, std::move(q));
      co_return;
    }
    // The script's follow: the coordinator's stream, as the API answers it.
    q.follow = t.query.count("follow") && t.query.at("follow") != "0";
    q.ndjson = query_value(t, "format") == "ndjson";
    if (q.follow || q.ndjson) {
      co_await ci_->stream_log(ex, *id, std::move(q));
      co_return;
    }
    co_await log_page(ex, *p, *id, std::move(q));
  }

  asio::awaitable<void> log_page(exchange& ex, const coordinator::pipeline_record& p,
                                 coordinator::job_id id, coordinator::log_query q) {
    log_view v;
    v.pipeline = &p;
    v.job = id;
    v.step = q.step;
    v.grep = q.grep;
    bool job_ended = false;
    for (const auto& j : p.jobs) {
      if (j.id == id) job_ended = coordinator::finished(j.state);
    }
    for (;;) {
      auto page = co_await ci_->read_log(id, q, kLogPageLines - v.entries.size());
      if (!page) {
        v.error = page.error().message;
        break;
      }
      const bool advanced = page->next != q.from;
      for (auto& e : page->entries)
        v.entries.push_back(std::move(e));
      q.from = page->next;
      v.next = page->next;
      if (page->done) {
        v.done = true;
        break;
      }
      if (v.entries.size() >= kLogPageLines) {
        v.more = true;
        break;
      }
      // A page that ended before the log did reads on; one that did not move is the live end.
      if (!advanced) {
        // A job that ended without a closed log (cancelled before it ran) has nothing to follow.
        v.done = job_ended;
        break;
      }
    }
    const auto status = v.error.empty() ? http::status::ok : http::status::bad_request;
    co_await send_page(ex, status, render_log_page(v));
  }

  asio::awaitable<void> projects(exchange& ex, const target& t) {
    if (t.segments.size() == 1) {
      auto recent = co_await ci_->recent_pipelines("", kProjectsFrom);
      co_await send_page(ex, http::status::ok, render_projects_page(recent));
      co_return;
    }
    const std::string& what = t.segments.back();
    if (t.segments.size() < 3 || (what != "tests" && what != "charts")) {
      co_await not_found(ex, "page " + std::string(ex.request().target()),
                         "A project's tests are /projects/<project>/tests, its charts "
                         "/projects/<project>/charts; the projects are listed at /projects.");
      co_return;
    }
    std::string project;
    for (std::size_t i = 1; i + 1 < t.segments.size(); ++i)
      project += (i > 1 ? "/" : "") + t.segments[i];
    const auto latest = co_await ci_->recent_pipelines(project, 1);
    const bool known = !latest.empty();
    if (what == "tests") {
      auto tests = co_await ci_->tests_of(project);
      if (!tests) {
        co_await send_page(ex, http::status::service_unavailable,
                           render_error_page("Tests of " + project, tests.error().message));
        co_return;
      }
      if (!known && tests->runs == 0) {
        co_await not_found(ex, "project \"" + project + "\"",
                           "It has no pipeline held in memory and no test results kept; the "
                           "projects are listed at /projects.");
        co_return;
      }
      co_await send_page(ex, http::status::ok, render_tests_page(*tests));
      co_return;
    }
    if (!known) {
      co_await not_found(ex, "project \"" + project + "\"",
                         "It has no pipeline held in memory; the projects are listed at "
                         "/projects.");
      co_return;
    }
    chart_window window{kChartPipelines, static_cast<int>(kChartDays)};
    if (auto bad = read_count(t, "pipelines", 1000, window.pipelines)) {
      co_await send_page(ex, http::status::bad_request, render_error_page("Bad request", *bad));
      co_return;
    }
    std::size_t days = kChartDays;
    if (auto bad = read_count(t, "days", 3650, days)) {
      co_await send_page(ex, http::status::bad_request, render_error_page("Bad request", *bad));
      co_return;
    }
    window.days = static_cast<int>(days);
    auto m = co_await ci_->measures_of(project, window.pipelines, window.days);
    if (!m) {
      co_await send_page(ex, http::status::service_unavailable,
                         render_error_page("Charts of " + project, m.error().message));
      co_return;
    }
    co_await send_page(ex, http::status::ok, render_charts_page(project, *m, window));
  }

  // The query's count `name` (1 to `max`) into `out` when given; the message for a bad one.
  static std::optional<std::string> read_count(const target& t, const std::string& name,
                                               std::uint64_t max, std::size_t& out) {
    auto it = t.query.find(name);
    if (it == t.query.end()) return std::nullopt;
    auto v = parse_number(it->second);
    if (!v || *v == 0 || *v > max) {
      return name + ": \"" + it->second.substr(0, 40) + "\" is not a count from 1 to " +
             std::to_string(max) + "; give ?" + name + "=N";
    }
    out = static_cast<std::size_t>(*v);
    return std::nullopt;
  }

  const std::shared_ptr<coordinator_service> ci_;
};

asio::awaitable<void> script(exchange& ex) {
  ex.set_route("dashboard_script");
  const auto method = ex.request().method();
  http::response<http::string_body> res{method == http::verb::get || method == http::verb::head
                                            ? http::status::ok
                                            : http::status::method_not_allowed,
                                        ex.request().version()};
  res.set(http::field::content_type, "text/javascript; charset=utf-8");
  // Revalidated each time: a new pantry may serve a new script.
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  if (res.result() == http::status::ok) {
    res.body() = std::string(dashboard_script());
  } else {
    res.set(http::field::allow, "GET, HEAD");
  }
  co_await ex.respond(std::move(res));
}

// pantry has no icon: 204 tells a browser so without the 404 it would log as an error on every
// page; for a day, so that it asks once.
asio::awaitable<void> no_icon(exchange& ex) {
  ex.set_route("favicon");
  http::response<http::string_body> res{http::status::no_content, ex.request().version()};
  res.set(http::field::cache_control, "max-age=86400");
  co_await ex.respond(std::move(res));
}

}  // namespace

void install_dashboard(proxy::server& srv, std::shared_ptr<coordinator_service> ci) {
  auto d = std::make_shared<dashboard>(std::move(ci));
  for (const char* prefix : {"/pipelines", "/jobs/", "/projects"}) {
    srv.route(prefix, [d](exchange& ex) { return d->handle(ex); });
  }
  srv.route(std::string(kDashboardScriptPath), [](exchange& ex) { return script(ex); });
  srv.route("/favicon.ico", [](exchange& ex) { return no_icon(ex); });
}

}  // namespace pantry::web
