// The order of a test job's tests and its shards (test_order.h).

#include "pantry/orchestrator/coordinator/test_order.h"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

constexpr std::array<std::pair<order_group, std::string_view>, 4> kGroups = {{
    {order_group::failed, "failed"},
    {order_group::changed, "changed"},
    {order_group::new_test, "new"},
    {order_group::rest, "rest"},
}};

std::optional<order_group> parse_group(std::string_view text) {
  for (const auto& [g, name] : kGroups) {
    if (name == text) return g;
  }
  return std::nullopt;
}

std::string_view file_of(std::string_view id) {
  const auto sep = id.find("::");
  return sep == std::string_view::npos ? std::string_view{} : id.substr(0, sep);
}

// Fastest first, unknown durations last, then by id.
bool faster(const order_entry& a, const order_entry& b) {
  if (a.seconds.has_value() != b.seconds.has_value()) return a.seconds.has_value();
  if (a.seconds && *a.seconds != *b.seconds) return *a.seconds < *b.seconds;
  return a.id < b.id;
}

error bad_file(const std::string& why) {
  return error(errc::invalid_argument, "test order: " + why);
}

}  // namespace

std::string_view to_string(order_group g) noexcept {
  for (const auto& [group, name] : kGroups) {
    if (group == g) return name;
  }
  return "unknown";
}

std::uint64_t fnv1a64(std::string_view text) noexcept {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

int unknown_test_shard(std::string_view id, int shards) noexcept {
  return 1 + static_cast<int>(fnv1a64(id) % static_cast<std::uint64_t>(shards));
}

result<test_order> plan_test_order(std::span<const test_stat> stats, const order_request& request) {
  if (request.shards < 1 || request.shards > kMaxShards) {
    return error(errc::invalid_argument, "test order: " + std::to_string(request.shards) +
                                             " shards; use 1 to " + std::to_string(kMaxShards));
  }
  std::unordered_map<std::string_view, const test_stat*> by_id;
  by_id.reserve(stats.size());
  for (const test_stat& s : stats)
    by_id.emplace(s.id, &s);
  const std::unordered_set<std::string_view> changed(request.changed_files.begin(),
                                                     request.changed_files.end());

  std::vector<order_entry> failed, in_changed, fresh, rest;
  std::unordered_map<std::string_view, clock::time_point> failed_at;
  auto place = [&](std::string_view id, const test_stat* s) {
    order_entry e;
    e.id = std::string(id);
    if (s != nullptr) e.seconds = s->seconds;
    const std::string_view file = s != nullptr && !s->file.empty() ? s->file : file_of(id);
    if (s != nullptr && s->failed_recently && s->last_failed) {
      e.group = order_group::failed;
      failed_at.emplace(s->id, *s->last_failed);
      failed.push_back(std::move(e));
    } else if (!file.empty() && changed.contains(file)) {
      e.group = order_group::changed;
      in_changed.push_back(std::move(e));
    } else if (s == nullptr) {
      e.group = order_group::new_test;
      fresh.push_back(std::move(e));
    } else {
      e.group = order_group::rest;
      rest.push_back(std::move(e));
    }
  };
  if (request.known_ids) {
    std::unordered_set<std::string_view> done;
    for (const std::string& id : *request.known_ids) {
      if (!done.insert(id).second) continue;
      auto it = by_id.find(id);
      place(id, it == by_id.end() ? nullptr : it->second);
    }
  } else {
    for (const test_stat& s : stats)
      place(s.id, &s);
  }
  std::sort(failed.begin(), failed.end(), [&](const order_entry& a, const order_entry& b) {
    const auto ta = failed_at.at(a.id), tb = failed_at.at(b.id);
    if (ta != tb) return ta > tb;
    return a.id < b.id;
  });
  std::sort(in_changed.begin(), in_changed.end(), faster);
  std::sort(fresh.begin(), fresh.end(),
            [](const order_entry& a, const order_entry& b) { return a.id < b.id; });
  std::sort(rest.begin(), rest.end(), faster);

  test_order order;
  order.shards = request.shards;
  order.changed_files = request.changed_files;
  order.tests.reserve(failed.size() + in_changed.size() + fresh.size() + rest.size());
  for (auto* group : {&failed, &in_changed, &fresh, &rest}) {
    for (order_entry& e : *group)
      order.tests.push_back(std::move(e));
  }

  // Shards. A test without a duration counts as the median of the known ones: the plugin
  // spreads the tests it finds new by the same hash, so their count evens out, not their time.
  std::vector<double> known;
  for (const order_entry& e : order.tests) {
    if (e.seconds) known.push_back(*e.seconds);
  }
  double typical = 0;
  if (!known.empty()) {
    std::nth_element(known.begin(), known.begin() + known.size() / 2, known.end());
    typical = known[known.size() / 2];
  }
  order.shard_seconds.assign(static_cast<std::size_t>(order.shards), 0.0);
  std::vector<std::size_t> timed;
  for (std::size_t i = 0; i < order.tests.size(); ++i) {
    order_entry& e = order.tests[i];
    if (e.seconds) {
      timed.push_back(i);
    } else {
      e.shard = unknown_test_shard(e.id, order.shards);
      order.shard_seconds[static_cast<std::size_t>(e.shard - 1)] += typical;
    }
  }
  std::sort(timed.begin(), timed.end(), [&](std::size_t a, std::size_t b) {
    const order_entry& x = order.tests[a];
    const order_entry& y = order.tests[b];
    if (*x.seconds != *y.seconds) return *x.seconds > *y.seconds;
    return x.id < y.id;
  });
  for (std::size_t i : timed) {
    auto least = std::min_element(order.shard_seconds.begin(), order.shard_seconds.end());
    order.tests[i].shard = static_cast<int>(least - order.shard_seconds.begin()) + 1;
    *least += *order.tests[i].seconds;
  }
  return order;
}

std::string to_order_file(const test_order& order) {
  json::object o;
  o["format"] = kOrderFormat;
  o["version"] = kOrderVersion;
  o["shards"] = order.shards;
  json::array groups;
  for (const auto& [g, name] : kGroups)
    groups.emplace_back(name);
  o["groups"] = std::move(groups);
  json::array changed;
  for (const std::string& f : order.changed_files)
    changed.emplace_back(f);
  o["changed_files"] = std::move(changed);
  if (!order.quarantined.empty()) {
    json::array quarantined;
    for (const std::string& id : order.quarantined)
      quarantined.emplace_back(id);
    o["quarantined"] = std::move(quarantined);
  }
  json::array tests;
  tests.reserve(order.tests.size());
  for (const order_entry& e : order.tests) {
    json::object t;
    t["id"] = e.id;
    t["shard"] = e.shard;
    t["group"] = to_string(e.group);
    if (e.seconds) t["seconds"] = *e.seconds;
    tests.emplace_back(std::move(t));
  }
  o["tests"] = std::move(tests);
  std::string text = json::serialize(o);
  text += '\n';
  return text;
}

result<test_order> parse_order_file(std::string_view text) {
  json::parse_options opt;
  opt.allow_invalid_utf8 = true;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opt);
  if (ec) return bad_file("not JSON (" + ec.message() + ")");
  const json::object* o = v.if_object();
  if (o == nullptr) return bad_file("not a JSON object");
  const json::value* format = o->if_contains("format");
  if (format == nullptr || !format->is_string() || format->get_string() != kOrderFormat) {
    return bad_file("format: expected \"" + std::string(kOrderFormat) + "\"");
  }
  const json::value* version = o->if_contains("version");
  if (version == nullptr || !version->is_int64() || version->get_int64() != kOrderVersion) {
    return bad_file("version: expected " + std::to_string(kOrderVersion) +
                    "; write the file with this pantry's version");
  }
  test_order order;
  const json::value* shards = o->if_contains("shards");
  if (shards == nullptr || !shards->is_int64() || shards->get_int64() < 1 ||
      shards->get_int64() > kMaxShards) {
    return bad_file("shards: expected a whole number from 1 to " + std::to_string(kMaxShards));
  }
  order.shards = static_cast<int>(shards->get_int64());
  if (const json::value* changed = o->if_contains("changed_files")) {
    if (!changed->is_array()) return bad_file("changed_files: expected an array of paths");
    for (const json::value& f : changed->get_array()) {
      if (!f.is_string()) return bad_file("changed_files: expected an array of paths");
      order.changed_files.emplace_back(f.get_string());
    }
  }
  if (const json::value* quarantined = o->if_contains("quarantined")) {
    if (!quarantined->is_array()) return bad_file("quarantined: expected an array of test ids");
    for (const json::value& id : quarantined->get_array()) {
      if (!id.is_string() || id.get_string().empty()) {
        return bad_file("quarantined: expected an array of test ids");
      }
      order.quarantined.emplace_back(id.get_string());
    }
  }
  const json::value* tests = o->if_contains("tests");
  if (tests == nullptr || !tests->is_array()) return bad_file("tests: expected an array");
  order.shard_seconds.assign(static_cast<std::size_t>(order.shards), 0.0);
  const json::array& array = tests->get_array();
  order.tests.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    const std::string at = "tests[" + std::to_string(i) + "]";
    const json::object* t = array[i].if_object();
    if (t == nullptr) return bad_file(at + ": expected an object");
    const json::value* id = t->if_contains("id");
    const json::value* shard = t->if_contains("shard");
    const json::value* group = t->if_contains("group");
    if (id == nullptr || !id->is_string() || id->get_string().empty()) {
      return bad_file(at + ".id: expected a test id");
    }
    if (shard == nullptr || !shard->is_int64() || shard->get_int64() < 1 ||
        shard->get_int64() > order.shards) {
      return bad_file(at + ".shard: expected a whole number from 1 to " +
                      std::to_string(order.shards));
    }
    std::optional<order_group> g;
    if (group != nullptr && group->is_string()) g = parse_group(group->get_string());
    if (!g) return bad_file(at + ".group: expected one of failed, changed, new, rest");
    order_entry e;
    e.id = std::string(id->get_string());
    e.shard = static_cast<int>(shard->get_int64());
    e.group = *g;
    if (const json::value* seconds = t->if_contains("seconds")) {
      if (!seconds->is_number() || seconds->to_number<double>() < 0) {
        return bad_file(at + ".seconds: expected a number of at least 0");
      }
      e.seconds = seconds->to_number<double>();
      order.shard_seconds[static_cast<std::size_t>(e.shard - 1)] += *e.seconds;
    }
    order.tests.push_back(std::move(e));
  }
  return order;
}

std::vector<std::string> shard_tests(const test_order& order, int shard) {
  std::vector<std::string> out;
  for (const order_entry& e : order.tests) {
    if (e.shard == shard) out.push_back(e.id);
  }
  return out;
}

std::string describe_plan(const test_order& order, int shard) {
  if (order.shards <= 1) shard = 1;
  std::size_t listed = 0, failed = 0, changed = 0;
  for (const order_entry& e : order.tests) {
    if (e.shard != shard) continue;
    ++listed;
    if (e.group == order_group::failed) ++failed;
    if (e.group == order_group::changed) ++changed;
  }
  std::string s = order.shards > 1 ? "shard " + std::to_string(shard) + " of " +
                                         std::to_string(order.shards) + ": "
                                   : std::string();
  if (listed == 0) {
    return s + "no test in pantry's order (no history yet); they run in the runner's own order";
  }
  double seconds = 0;
  if (shard >= 1 && static_cast<std::size_t>(shard) <= order.shard_seconds.size()) {
    seconds = order.shard_seconds[static_cast<std::size_t>(shard - 1)];
  }
  char planned[32];
  std::snprintf(planned, sizeof planned, "%.3f", seconds);
  return s + std::to_string(listed) + " tests in pantry's order (" + std::to_string(failed) +
         " failed recently, " + std::to_string(changed) + " in changed files), " + planned +
         " s by their past durations; tests it does not list run after them";
}

}  // namespace pantry::orchestrator::coordinator
