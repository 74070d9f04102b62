#pragma once

// Small string helpers shared by pantry_runner's sources (the general ones live in pantry/text.h).
// Private to pantry_runner.

#include "pantry/error.h"

#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner::detail {

// `s` in double quotes, as error messages show values.
inline std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// An errc::invalid_argument error with `message`.
inline error invalid(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

// The pieces of `s` between `sep` bytes, empty ones included ("a::b" gives "a", "", "b").
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

}  // namespace pantry::orchestrator::runner::detail
