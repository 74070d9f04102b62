#pragma once

// Small string helpers shared by pantry_runner's sources (the general ones live in pantry/text.h).
// Private to pantry_runner.

#include "pantry/error.h"

#include <algorithm>
#include <cstring>
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

// An errc::io_error error: `what` and the reason errno `err` gives, "cannot mkdir /x: Permission
// denied".
inline error errno_error(std::string what, int err) {
  return error(errc::io_error, std::move(what) + ": " + std::strerror(err));
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

// A path field of /proc/self/mountinfo decoded: the kernel writes space, tab, newline and
// backslash as \ooo.
inline std::string unescape_octal(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() &&
        std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                    s.begin() + static_cast<std::ptrdiff_t>(i) + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace pantry::orchestrator::runner::detail
