#include "pantry/orchestrator/pins/branches.h"

#include "pantry/text_file.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <unistd.h>

#include <fstream>
#include <system_error>
#include <tuple>

namespace pantry::orchestrator::pins {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kFormat = "pantry-pins-branches";
constexpr std::int64_t kVersion = 1;

// Reads `r`'s members from `o`; the first problem names the member.
result<branch_record> record_from_json(const json::value& v, std::size_t index) {
  const std::string where = "branches[" + std::to_string(index) + "]";
  if (!v.is_object()) return error(errc::invalid_argument, where + ": not an object");
  const json::object& o = v.get_object();
  branch_record r;
  for (auto [key, slot] : {std::pair<std::string_view, std::string*>{"repository", &r.repository},
                           {"branch", &r.branch},
                           {"change", &r.change},
                           {"commit", &r.commit},
                           {"base", &r.base},
                           {"pipeline_url", &r.pipeline_url},
                           {"status", &r.status},
                           {"note", &r.note},
                           {"pr_url", &r.pr_url},
                           {"title", &r.title},
                           {"body", &r.body},
                           {"superseded_by", &r.superseded_by},
                           {"left_alone", &r.left_alone}}) {
    const json::value* m = o.if_contains(key);
    if (!m) continue;
    if (!m->is_string())
      return error(errc::invalid_argument, where + "." + std::string(key) + ": not a string");
    *slot = std::string(m->get_string());
  }
  for (auto [key, slot, what] : {std::tuple<std::string_view, std::uint64_t*, std::string_view>{
                                     "pipeline", &r.pipeline, "a pipeline id"},
                                 {"rebuilds", &r.rebuilds, "a count"}}) {
    const json::value* m = o.if_contains(key);
    if (!m) continue;
    if (m->is_uint64()) {
      *slot = m->get_uint64();
    } else if (m->is_int64() && m->get_int64() >= 0) {
      *slot = static_cast<std::uint64_t>(m->get_int64());
    } else {
      return error(errc::invalid_argument,
                   where + "." + std::string(key) + ": not " + std::string(what));
    }
  }
  if (const json::value* m = o.if_contains("declined")) {
    if (!m->is_bool()) return error(errc::invalid_argument, where + ".declined: not a boolean");
    r.declined = m->get_bool();
  }
  if (r.repository.empty() || r.branch.empty())
    return error(errc::invalid_argument, where + ": repository or branch missing");
  return r;
}

}  // namespace

bool pipeline_ended(const std::string& status) noexcept {
  return status == "passed" || status == "failed" || status == "cancelled";
}

json::object to_json(const branch_record& r) {
  json::object o;
  o["repository"] = r.repository;
  o["branch"] = r.branch;
  o["change"] = r.change;
  o["commit"] = r.commit;
  o["base"] = r.base;
  o["pipeline"] = r.pipeline;
  o["pipeline_url"] = r.pipeline_url;
  o["status"] = r.status;
  o["note"] = r.note;
  o["pr_url"] = r.pr_url;
  o["declined"] = r.declined;
  o["title"] = r.title;
  o["body"] = r.body;
  o["superseded_by"] = r.superseded_by;
  o["rebuilds"] = r.rebuilds;
  o["left_alone"] = r.left_alone;
  return o;
}

result<branch_records> branch_records::load(const fs::path& data_dir) {
  branch_records b;
  b.file_ = data_dir / "pins" / "branches.json";
  std::error_code ec;
  if (!fs::exists(b.file_, ec)) return b;
  auto text = read_text_file(b.file_);
  if (!text) return text.error();
  const auto bad = [&](const std::string& what) {
    return error(errc::invalid_argument, b.file_.string() + ": " + what +
                                             " (a file pins bump writes; remove it to start anew)");
  };
  boost::system::error_code jec;
  auto v = json::parse(*text, jec);
  if (jec) return bad("not JSON: " + jec.message());
  if (!v.is_object()) return bad("not a JSON object");
  const json::object& o = v.get_object();
  const json::value* format = o.if_contains("format");
  const json::value* version = o.if_contains("version");
  if (!format || !format->is_string() || format->get_string() != kFormat)
    return bad("format is not \"" + std::string(kFormat) + "\"");
  if (!version || !version->is_int64() || version->get_int64() != kVersion)
    return bad("version is not " + std::to_string(kVersion));
  const json::value* list = o.if_contains("branches");
  if (!list || !list->is_array()) return bad("branches is not a list");
  std::size_t i = 0;
  for (const auto& item : list->get_array()) {
    auto r = record_from_json(item, i++);
    if (!r) return bad(r.error().message);
    b.records_.push_back(std::move(*r));
  }
  return b;
}

branch_record* branch_records::find(const std::string& repository, const std::string& branch) {
  for (auto& r : records_) {
    if (r.repository == repository && r.branch == branch) return &r;
  }
  return nullptr;
}

branch_record& branch_records::put(branch_record r) {
  if (auto* found = find(r.repository, r.branch)) {
    *found = std::move(r);
    return *found;
  }
  records_.push_back(std::move(r));
  return records_.back();
}

json::object branch_records::to_json() const {
  json::array list;
  for (const auto& r : records_)
    list.emplace_back(pins::to_json(r));
  json::object o;
  o["format"] = kFormat;
  o["version"] = kVersion;
  o["branches"] = std::move(list);
  return o;
}

result<void> branch_records::save() const {
  return write_text_file_atomically(file_.string(), json::serialize(to_json()) + "\n");
}

}  // namespace pantry::orchestrator::pins
