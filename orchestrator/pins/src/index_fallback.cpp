#include "pantry/orchestrator/pins/index_fallback.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <map>
#include <optional>
#include <string>

namespace pantry::orchestrator::pins {
namespace {

namespace json = boost::json;
namespace pypi = registry::pypi;

// What a JSON API file object says that a page may lack.
struct json_api_facts {
  std::optional<std::string> upload_time;
  bool yanked = false;
  std::string yank_reason;
  std::optional<std::string> requires_python;
};

std::optional<std::string> string_at(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string() || v->get_string().empty()) return std::nullopt;
  return std::string(v->get_string());
}

// Reads the file objects of `files` (an array) into `out` by filename; other values are skipped.
void read_files(const json::array& files, std::map<std::string, json_api_facts>& out) {
  for (const auto& v : files) {
    const auto* o = v.if_object();
    if (!o) continue;
    const auto filename = string_at(*o, "filename");
    if (!filename) continue;
    json_api_facts facts;
    facts.upload_time = string_at(*o, "upload_time_iso_8601");
    if (const auto* y = o->if_contains("yanked"); y && y->is_bool()) facts.yanked = y->get_bool();
    facts.yank_reason = string_at(*o, "yanked_reason").value_or("");
    facts.requires_python = string_at(*o, "requires_python");
    out.emplace(*filename, std::move(facts));
  }
}

}  // namespace

bool needs_json_api(const pypi::project_page& page) {
  for (const auto& f : page.files) {
    if (!f.upload_time) return true;
  }
  return false;
}

result<std::size_t> merge_json_api(pypi::project_page& page, std::string_view body) {
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec) return error(errc::invalid_argument, "the JSON API answer is not JSON: " + ec.message());
  const auto* root = doc.if_object();
  if (!root) return error(errc::invalid_argument, "the JSON API answer is not a JSON object");
  std::map<std::string, json_api_facts> facts;
  if (const auto* releases = root->if_contains("releases")) {
    if (!releases->is_object())
      return error(errc::invalid_argument, "the JSON API answer's \"releases\" is not an object");
    for (const auto& [version, files] : releases->get_object()) {
      if (!files.is_array())
        return error(errc::invalid_argument, "the JSON API answer's \"releases\".\"" +
                                                 std::string(version) + "\" is not an array");
      read_files(files.get_array(), facts);
    }
  }
  if (const auto* urls = root->if_contains("urls")) {
    if (!urls->is_array())
      return error(errc::invalid_argument, "the JSON API answer's \"urls\" is not an array");
    read_files(urls->get_array(), facts);
  }
  std::size_t gained = 0;
  for (auto& f : page.files) {
    const auto it = facts.find(f.filename);
    if (it == facts.end()) continue;
    const json_api_facts& known = it->second;
    bool changed = false;
    if (!f.upload_time && known.upload_time) {
      f.upload_time = known.upload_time;
      changed = true;
    }
    if (!f.yanked && known.yanked) {
      f.yanked = known.yank_reason;
      changed = true;
    }
    if (!f.requires_python && known.requires_python) {
      f.requires_python = known.requires_python;
      changed = true;
    }
    if (changed) ++gained;
  }
  return gained;
}

}  // namespace pantry::orchestrator::pins
