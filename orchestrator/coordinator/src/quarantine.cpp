// Quarantined tests: the stored changes and the merged list (quarantine.h).

#include "pantry/orchestrator/coordinator/quarantine.h"

#include "keys.h"
#include "meta.h"

#include <boost/json.hpp>

#include <algorithm>
#include <mutex>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

constexpr std::int64_t kVersion = 1;
constexpr std::string_view kAttribute = "changes";

std::optional<error> check_project(std::string_view project) {
  auto why = keys::project_key_problem(project);
  if (!why) return std::nullopt;
  return error(errc::invalid_argument, "quarantine: project \"" +
                                           std::string(project.substr(0, 200)) + "\" " + *why +
                                           "; use a project name as `pantry submit` takes it");
}

std::string encode(const quarantine_changes& c) {
  json::array added;
  for (const quarantined_test& q : c.added) {
    json::object o;
    o["id"] = q.id;
    o["by"] = q.by;
    o["since"] = q.since ? detail::to_ms(*q.since) : 0;
    added.emplace_back(std::move(o));
  }
  json::array released;
  for (const std::string& id : c.released)
    released.emplace_back(json::string(id));
  json::object o;
  o["v"] = kVersion;
  o["added"] = std::move(added);
  o["released"] = std::move(released);
  return json::serialize(o);
}

result<quarantine_changes> decode(const std::string& key, std::string_view text) {
  auto bad = [&](std::string_view why) {
    return error(errc::corrupt, "quarantine: entry " + key + ": " + std::string(why) +
                                    "; remove it with DELETE of each test, or PUT them again");
  };
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return bad("not JSON");
  const json::object* o = v.if_object();
  if (!o) return bad("not a JSON object");
  const json::value* version = o->if_contains("v");
  if (!version || !version->is_int64() || version->get_int64() != kVersion) {
    return bad("not a version 1 entry");
  }
  const json::value* added = o->if_contains("added");
  const json::value* released = o->if_contains("released");
  if (!added || !added->is_array() || !released || !released->is_array()) {
    return bad("added or released is missing");
  }
  quarantine_changes c;
  for (const json::value& a : added->get_array()) {
    const json::object* t = a.if_object();
    const json::value* id = t ? t->if_contains("id") : nullptr;
    const json::value* by = t ? t->if_contains("by") : nullptr;
    const json::value* since = t ? t->if_contains("since") : nullptr;
    if (!id || !id->is_string() || !by || !by->is_string() || !since || !since->is_int64()) {
      return bad("an added test lacks its id, by or since");
    }
    quarantined_test q;
    q.id = id->get_string();
    q.by = by->get_string();
    q.since = detail::from_ms(since->get_int64());
    c.added.push_back(std::move(q));
  }
  for (const json::value& r : released->get_array()) {
    if (!r.is_string()) return bad("a released id is not a string");
    c.released.emplace_back(r.get_string());
  }
  return c;
}

class store_impl final : public quarantine_store {
 public:
  explicit store_impl(std::shared_ptr<cache::store> store) : store_(std::move(store)) {}

  result<quarantine_changes> changes(std::string_view project) override {
    if (auto e = check_project(project)) return *e;
    return read(keys::quarantine(project));
  }

  result<bool> add(std::string_view project, std::string_view id, bool in_config,
                   std::string_view by, clock::time_point now) override {
    return update(project, id, [&](quarantine_changes& c) {
      bool changed = std::erase(c.released, id) > 0;
      const bool listed = std::any_of(c.added.begin(), c.added.end(),
                                      [&](const quarantined_test& q) { return q.id == id; });
      if (!in_config && !listed) {
        quarantined_test q;
        q.id = std::string(id);
        q.by = std::string(by);
        q.since = now;
        c.added.push_back(std::move(q));
        changed = true;
      }
      return changed;
    });
  }

  result<bool> remove(std::string_view project, std::string_view id, bool in_config) override {
    return update(project, id, [&](quarantine_changes& c) {
      bool changed =
          std::erase_if(c.added, [&](const quarantined_test& q) { return q.id == id; }) > 0;
      if (in_config && std::find(c.released.begin(), c.released.end(), id) == c.released.end()) {
        c.released.emplace_back(id);
        changed = true;
      }
      return changed;
    });
  }

 private:
  // Reads the project's changes, lets `change` edit them (true: it changed something) and
  // writes them back, under the lock. True iff `change` changed something.
  template <class Change>
  result<bool> update(std::string_view project, std::string_view id, Change&& change) {
    if (auto e = check_project(project)) return *e;
    if (auto e = check_test_id(id)) return *e;
    std::lock_guard lock(mutex_);
    const std::string key = keys::quarantine(project);
    auto c = read(key);
    if (!c) return c.error();
    if (!change(*c)) return false;
    if (auto w = write(key, *c); !w) return w.error();
    return true;
  }

  result<quarantine_changes> read(const std::string& key) {
    auto e = store_->get_entry(key);
    if (!e) {
      if (e.error().is(errc::not_found)) return quarantine_changes{};
      return e.error();
    }
    return decode(key, e->attribute(kAttribute));
  }

  result<void> write(const std::string& key, const quarantine_changes& c) {
    if (c.added.empty() && c.released.empty()) {
      auto removed = store_->remove_entry(key);
      if (!removed && !removed.error().is(errc::not_found)) return removed.error();
      return {};
    }
    cache::entry e;
    e.fetched_at = clock::now();
    e.expires_at = e.fetched_at;
    e.attributes = {{std::string(kAttribute), encode(c)}};
    return store_->put_entry(key, e);
  }

  std::shared_ptr<cache::store> store_;
  std::mutex mutex_;  // one read-modify-write at a time
};

}  // namespace

std::vector<quarantined_test> merge_quarantine(std::span<const std::string> config_ids,
                                               const quarantine_changes& changes) {
  std::vector<quarantined_test> out;
  auto listed = [&](std::string_view id) {
    return std::any_of(out.begin(), out.end(),
                       [&](const quarantined_test& q) { return q.id == id; });
  };
  for (const std::string& id : config_ids) {
    if (listed(id) ||
        std::find(changes.released.begin(), changes.released.end(), id) != changes.released.end()) {
      continue;
    }
    quarantined_test q;
    q.id = id;
    q.from_config = true;
    out.push_back(std::move(q));
  }
  for (const quarantined_test& q : changes.added) {
    if (!listed(q.id)) out.push_back(q);
  }
  return out;
}

std::optional<error> check_test_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxQuarantinedId ||
      id.find_first_of("\r\n") != std::string_view::npos) {
    return error(errc::invalid_argument,
                 "quarantine: \"" + std::string(id.substr(0, 80)) +
                     "\" is not a test id; give one line of at most 4096 bytes as `pantry tests` "
                     "shows it, e.g. tests/test_a.py::test_b");
  }
  return std::nullopt;
}

std::unique_ptr<quarantine_store> quarantine_store::open(std::shared_ptr<cache::store> store) {
  return std::make_unique<store_impl>(std::move(store));
}

boost::json::object to_json(const quarantined_test& q) {
  json::object o;
  o["id"] = q.id;
  o["source"] = q.from_config ? "config" : "api";
  if (!q.from_config) o["by"] = q.by;
  o["since"] = q.since ? json::value(detail::to_ms(*q.since)) : json::value(nullptr);
  return o;
}

}  // namespace pantry::orchestrator::coordinator
