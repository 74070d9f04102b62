#include "reader.h"

#include "chars.h"
#include "message.h"
#include "pantry/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>

namespace pantry::config::yaml {

using detail::all_digits;
using detail::first_invalid_utf8;
using detail::is_control;
namespace {

// Past this many problems the rest are usually consequences of the first ones.
constexpr std::size_t kMaxErrors = 20;

// Why `s` cannot be a name or path string in the config, or nullopt.
std::optional<std::string> text_problem(std::string_view s) {
  if (first_invalid_utf8(s) != std::string_view::npos) {
    return "is not valid UTF-8; write the text in UTF-8";
  }
  if (std::any_of(s.begin(), s.end(), [](char c) { return is_control(c); })) {
    return "contains a control character; remove it";
  }
  return std::nullopt;
}

}  // namespace

std::optional<unique_values::first_use> unique_values::add(const std::string& value,
                                                           std::size_t index, int line) {
  auto [pos, inserted] = first_.emplace(value, first_use{index, line});
  if (inserted) return std::nullopt;
  return pos->second;
}

reader::reader(std::string_view source, std::span<const key_set> maps)
    : source_(source), maps_(maps) {}

std::string reader::location(const YAML::Mark& m) const {
  return std::string(source_) + ":" + std::to_string(std::max(m.line, 0) + 1) + ":" +
         std::to_string(std::max(m.column, 0) + 1);
}

void reader::fail(const YAML::Mark& m, std::string_view path, std::string message) {
  if (errors_.size() >= kMaxErrors) {
    ++dropped_errors_;
    return;
  }
  errors_.push_back(location(m) + ": " + std::string(path) + ": " + message);
}

std::string reader::report() const {
  std::string out;
  for (const std::string& e : errors_) {
    if (!out.empty()) out += '\n';
    out += e;
  }
  if (dropped_errors_ > 0) {
    out += "\n" + std::string(source_) + ": " + std::to_string(dropped_errors_) +
           " more errors not shown";
  }
  return out;
}

void reader::fail(const entry& e, std::string message) {
  fail(e.mark(), e.path, std::move(message));
}

void reader::note(std::string path, const YAML::Mark& m) {
  noted_.insert_or_assign(std::move(path), m);
}

std::optional<YAML::Mark> reader::noted(std::string_view path) const {
  const auto it = noted_.find(path);
  if (it == noted_.end()) return std::nullopt;
  return it->second;
}

void reader::for_each_name(const YAML::Node& map, const std::string& path,
                           const key_handler& handle) {
  std::map<std::string, int, std::less<>> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;
    const YAML::Node v = it->second;
    if (!k.IsScalar()) {
      fail(k.Mark(), path.empty() ? "(top level)" : path,
           describe(k) + " is " + kind_of(k) + ", not a key name; write key: value");
      continue;
    }
    // Scalar() refers into the node, which the entry holds: the view stays valid with it.
    const std::string& key = k.Scalar();
    const std::string key_path = (path.empty() ? "" : path + ".") + printable(key);
    if (auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1); !inserted) {
      fail(k.Mark(), key_path,
           quote(key) + " is set twice (first on line " + std::to_string(pos->second) +
               "); remove one of them");
      continue;
    }
    handle(entry{key, k, v, key_path});
  }
}

void reader::for_each_key(const YAML::Node& map, const std::string& path,
                          std::span<const std::string_view> known, const key_handler& handle) {
  for_each_name(map, path, [&](const entry& e) {
    const auto known_key = std::find(known.begin(), known.end(), e.key);
    if (known_key == known.end()) {
      fail(e.key_node.Mark(), e.path,
           quote(e.key) + " is not a known key; " + suggest_key(e.key, path, known, maps_));
      return;
    }
    handle(entry{*known_key, e.key_node, e.value, e.path});
  });
}

void reader::read_named_map(const entry& e, std::string_view example, const key_handler& handle) {
  if (e.value.IsMap()) {
    for_each_name(e.value, e.path, handle);
  } else if (!e.value.IsNull()) {
    fail(e, describe(e.value) + " is " + kind_of(e.value) + ", expected a map, e.g. " +
                std::string(example));
  }
}

void reader::read_map(const entry& e, std::span<const std::string_view> known,
                      const key_handler& handle) {
  if (e.value.IsMap()) {
    for_each_key(e.value, e.path, known, handle);
  } else if (!e.value.IsNull()) {
    fail(e, describe(e.value) + " is " + kind_of(e.value) +
                ", expected a map; put its keys on the lines below, indented");
  }
}

std::optional<std::string> reader::as_scalar(const entry& e, std::string_view expected) {
  if (e.value.IsScalar()) return e.value.Scalar();
  if (e.value.IsNull()) {
    fail(e, "\"\" has no value; set " + std::string(expected) +
                ", or remove the key to keep the default");
  } else {
    fail(e, describe(e.value) + " is " + kind_of(e.value) + ", expected " + std::string(expected) +
                "; write the value on the same line as the key");
  }
  return std::nullopt;
}

std::optional<std::string> reader::as_text(const entry& e, std::string_view expected) {
  auto s = as_scalar(e, expected);
  if (!s) return std::nullopt;
  if (s->empty()) {
    fail(e, "\"\" is empty; set " + std::string(expected));
    return std::nullopt;
  }
  if (auto why = text_problem(*s)) {
    fail(e, quote(*s) + " " + *why);
    return std::nullopt;
  }
  return s;
}

std::optional<std::uint64_t> reader::read_size(const entry& e, std::string_view example) {
  auto s = as_scalar(e, "a size, e.g. " + std::string(example));
  if (!s) return std::nullopt;
  auto size = parse_size(*s);
  if (!size) {
    fail(e, size.error().message);
    return std::nullopt;
  }
  return *size;
}

std::optional<std::chrono::seconds> reader::read_duration(const entry& e) {
  auto s = as_scalar(e, "a duration, e.g. 10m");
  if (!s) return std::nullopt;
  auto d = parse_duration(*s);
  if (!d) {
    fail(e, d.error().message);
    return std::nullopt;
  }
  return *d;
}

std::optional<std::chrono::seconds> reader::read_positive_duration(const entry& e,
                                                                   std::string_view zero_means,
                                                                   std::string_view example) {
  auto d = read_duration(e);
  if (!d) return std::nullopt;
  if (d->count() == 0) {
    fail(e, quote(e.value.Scalar()) + " is zero, which " + std::string(zero_means) +
                "; set a positive duration, e.g. " + std::string(example));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> reader::read_bool(const entry& e) {
  auto s = as_scalar(e, "true or false");
  if (!s) return std::nullopt;
  if (*s == "true" || *s == "True" || *s == "TRUE") return true;
  if (*s == "false" || *s == "False" || *s == "FALSE") return false;
  fail(e, quote(*s) + " is not a boolean; use true or false");
  return std::nullopt;
}

std::optional<unsigned> reader::read_count(const entry& e, unsigned low, unsigned high,
                                           std::string_view range) {
  auto s = as_scalar(e, "a whole number");
  if (!s) return std::nullopt;
  if (s->starts_with('-') && all_digits(std::string_view(*s).substr(1))) {
    fail(e, quote(*s) + " is negative; " + std::string(range));
    return std::nullopt;
  }
  if (!all_digits(*s)) {
    fail(e, quote(*s) + " is not a whole number; " + std::string(range));
    return std::nullopt;
  }
  std::uint64_t n = 0;
  for (char c : *s) {
    n = n * 10 + static_cast<unsigned>(c - '0');
    if (n > high) break;
  }
  if (n < low || n > high) {
    fail(e, quote(*s) + " is out of range; " + std::string(range));
    return std::nullopt;
  }
  return static_cast<unsigned>(n);
}

void reader::for_each_item(const entry& e, std::string_view not_a_list, std::string_view not_a_map,
                           const std::optional<std::string>& if_empty,
                           const std::function<void(const list_item&)>& read_item) {
  if (!e.value.IsSequence()) {
    const std::string what =
        e.value.IsNull() ? "\"\" has no value" : describe(e.value) + " is " + kind_of(e.value);
    fail(e, what + std::string(not_a_list));
    return;
  }
  if (e.value.size() == 0 && if_empty) {
    fail(e, *if_empty);
    return;
  }
  const std::size_t problems_before = problems();
  std::size_t index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    list_item item{*it, e.path + "[" + std::to_string(index) + "]", index, problems_before};
    if (!item.node.IsMap()) {
      // An empty item ("-" alone) has no position of its own either.
      fail(item.node.IsNull() ? e.key_node.Mark() : item.node.Mark(), item.path,
           (item.node.IsNull() ? std::string("\"\"") : describe(item.node)) + " is " +
               kind_of(item.node) + std::string(not_a_map));
      continue;
    }
    read_item(item);
  }
}

void reader::require_keys(const list_item& item, std::span<const required_key> required,
                          const std::vector<std::string_view>& present) {
  for (const required_key& r : required) {
    if (std::find(present.begin(), present.end(), r.key) != present.end()) continue;
    fail(item.node.Mark(), item.path + "." + std::string(r.key),
         describe(item.node) + " has no " + std::string(r.key) + "; add " + std::string(r.key) +
             ": followed by " + std::string(r.followed_by));
  }
}

}  // namespace pantry::config::yaml
