#include "pantry/orchestrator/pins/status.h"

#include "declined.h"

#include "pantry/text_file.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <ctime>
#include <map>
#include <system_error>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kLastRunFormat = "pantry-pins-last-run";
constexpr std::int64_t kLastRunVersion = 1;

fs::path last_run_file(const fs::path& data_dir) {
  return data_dir / "pins" / "last_run.json";
}

json::array strings(const std::vector<std::string>& list) {
  json::array out;
  for (const auto& s : list)
    out.emplace_back(s);
  return out;
}

json::object to_json(const last_run& r) {
  json::object o;
  o["started"] = r.started;
  o["ended"] = r.ended;
  o["outcome"] = outcome_name(r.status);
  o["status"] = r.status;
  o["checked"] = r.checked;
  o["problems"] = r.problems;
  o["first_problems"] = strings(r.first_problems);
  return o;
}

}  // namespace

std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string_view outcome_name(int status) noexcept {
  switch (status) {
    case 0:
      return "ok";
    case 1:
      return "outdated";
    default:
      return "errors";
  }
}

result<std::optional<last_run>> load_last_run(const fs::path& data_dir) {
  const fs::path file = last_run_file(data_dir);
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::optional<last_run>();
  auto text = read_text_file(file.string());
  if (!text) return text.error();
  const auto bad = [&](const std::string& what) {
    return error(errc::invalid_argument, file.string() + ": " + what);
  };
  boost::system::error_code jec;
  const json::value v = json::parse(*text, jec);
  if (jec || !v.is_object()) return bad("not a JSON object");
  const json::object& o = v.get_object();
  const auto* format = o.if_contains("format");
  if (!format || !format->is_string() || format->get_string() != kLastRunFormat)
    return bad("\"format\" is not \"" + std::string(kLastRunFormat) + "\"");
  last_run r;
  for (auto [key, slot] :
       {std::pair<std::string_view, std::string*>{"started", &r.started}, {"ended", &r.ended}}) {
    const auto* m = o.if_contains(key);
    if (!m || !m->is_string()) return bad("\"" + std::string(key) + "\" is not a string");
    *slot = m->get_string();
  }
  for (auto [key, slot] : {std::pair<std::string_view, std::size_t*>{"checked", &r.checked},
                           {"problems", &r.problems}}) {
    const auto* m = o.if_contains(key);
    if (!m || !m->is_int64() || m->get_int64() < 0)
      return bad("\"" + std::string(key) + "\" is not a count");
    *slot = static_cast<std::size_t>(m->get_int64());
  }
  const auto* status = o.if_contains("status");
  if (!status || !status->is_int64()) return bad("\"status\" is not a number");
  r.status = static_cast<int>(status->get_int64());
  if (const auto* first = o.if_contains("first_problems"); first && first->is_array()) {
    for (const auto& p : first->get_array()) {
      if (p.is_string()) r.first_problems.emplace_back(p.get_string());
    }
  }
  return std::optional<last_run>(std::move(r));
}

result<void> save_last_run(const fs::path& data_dir, const last_run& run) {
  json::object o = to_json(run);
  o.erase("outcome");
  o["format"] = kLastRunFormat;
  o["version"] = kLastRunVersion;
  return write_text_file_atomically(last_run_file(data_dir).string(), json::serialize(o) + "\n");
}

result<pins_report> read_pins_report(const config::config& cfg,
                                     const std::optional<std::string>& repo) {
  pins_report report;
  auto records = branch_records::load(cfg.data_dir);
  if (!records) return records.error();
  for (const auto& r : records->all()) {
    if (!repo || r.repository == *repo) report.branches.push_back(r);
  }
  auto declined = declined_record::load(fs::path(cfg.data_dir) / "pins" / "declined.tsv");
  if (!declined) return declined.error();
  for (const auto& [key, url] : declined->entries()) {
    if (!repo || key.first == *repo) report.declined.push_back({key.first, key.second, url});
  }
  auto last = load_last_run(cfg.data_dir);
  if (!last) return last.error();
  report.last = std::move(*last);
  return report;
}

std::string pipeline_state_of(const json::object& pipeline) {
  const json::value* state = pipeline.if_contains("state");
  if (!state || !state->is_string()) return "";
  std::string s(state->get_string());
  if (s != "running") return s;
  // A pipeline runs from its submission on; "queued" until one of its jobs has started.
  if (const json::value* jobs = pipeline.if_contains("jobs"); jobs && jobs->is_array()) {
    for (const auto& j : jobs->get_array()) {
      const json::value* js = j.is_object() ? j.get_object().if_contains("state") : nullptr;
      if (js && js->is_string() && js->get_string() != "queued") return s;
    }
  }
  return "queued";
}

json::object to_json(const pins_report& report, const config::pins_config& pins,
                     const std::optional<std::string>& repo) {
  // Repository name -> its object, in the order they are shown.
  std::vector<std::pair<std::string, json::object>> repos;
  const auto slot = [&](const std::string& name) -> json::object& {
    for (auto& [n, o] : repos) {
      if (n == name) return o;
    }
    json::object o;
    o["name"] = name;
    o["branches"] = json::array();
    o["declined"] = json::array();
    repos.emplace_back(name, std::move(o));
    return repos.back().second;
  };
  for (const auto& r : pins.repositories) {
    if (repo && r.name != *repo) continue;
    json::object& o = slot(r.name);
    o["path"] = r.path;
    o["url"] = r.url;
    o["branch"] = r.branch;
    o["files"] = strings(r.files);
  }
  for (const auto& b : report.branches)
    slot(b.repository)["branches"].as_array().push_back(pins::to_json(b));
  for (const auto& d : report.declined) {
    json::object one;
    one["branch"] = d.branch;
    one["url"] = d.url;
    slot(d.repository)["declined"].as_array().push_back(std::move(one));
  }
  json::object out;
  out["enabled"] = pins.enabled;
  out["schedule"] = pins.schedule;
  json::array list;
  for (auto& [name, o] : repos)
    list.push_back(std::move(o));
  out["repositories"] = std::move(list);
  if (report.last) {
    out["last_run"] = to_json(*report.last);
  } else {
    out["last_run"] = nullptr;
  }
  return out;
}

}  // namespace pantry::orchestrator::pins
