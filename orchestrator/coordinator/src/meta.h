#pragma once

// The metadata entries of logs and artifacts: times as milliseconds, numbers and flags as
// decimal attributes, read back with errors that name the entry and the attribute.

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator::detail {

inline std::int64_t to_ms(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

inline clock::time_point from_ms(std::int64_t ms) {
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(ms)));
}

// Reads attributes of one entry; the first problem is kept and later reads return 0.
class attribute_reader {
 public:
  attribute_reader(std::string_view key, const cache::entry& e) : key_(key), entry_(e) {}

  std::uint64_t number(std::string_view name) {
    std::string_view v = entry_.attribute(name);
    auto n = parse(v);
    if (!n) fail(name, "is not a number: \"" + std::string(v) + "\"");
    return n.value_or(0);
  }

  bool flag(std::string_view name) {
    std::string_view v = entry_.attribute(name);
    if (v != "0" && v != "1") fail(name, "is not 0 or 1: \"" + std::string(v) + "\"");
    return v == "1";
  }

  // Numbers separated by single spaces; "" is none.
  std::vector<std::uint64_t> numbers(std::string_view name) {
    std::vector<std::uint64_t> out;
    std::string_view v = entry_.attribute(name);
    while (!v.empty()) {
      auto space = v.find(' ');
      auto n = parse(v.substr(0, space));
      if (!n) {
        fail(name, "holds a word that is not a number");
        return {};
      }
      out.push_back(*n);
      v.remove_prefix(space == std::string_view::npos ? v.size() : space + 1);
    }
    return out;
  }

  bool failed() const noexcept { return problem_.has_value(); }
  const error& problem() const { return *problem_; }

 private:
  static std::optional<std::uint64_t> parse(std::string_view v) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return std::nullopt;
    return n;
  }

  void fail(std::string_view name, const std::string& why) {
    if (!problem_) {
      problem_ = error(errc::corrupt, "ci: entry " + std::string(key_) + ": attribute " +
                                          std::string(name) + " " + why);
    }
  }

  std::string_view key_;
  const cache::entry& entry_;
  std::optional<error> problem_;
};

}  // namespace pantry::orchestrator::coordinator::detail
