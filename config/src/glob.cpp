// glob_match: fnmatch-style globs as pypi.routes apply them (config.h has the contract).

#include "pantry/config/config.h"

namespace pantry::config {
namespace {

// The length of the "[...]" set that starts at pattern[i] == '[', or 0 if no ']' closes it.
// `last_close` is pattern.rfind(']'), so an unclosed '[' costs no scan.
std::size_t set_length(std::string_view pattern, std::size_t i, std::size_t last_close) {
  std::size_t body = i + 1;
  if (body < pattern.size() && pattern[body] == '!') ++body;
  // A ']' first in the set is a member, not its end.
  const std::size_t search_from = body + 1;
  if (last_close == std::string_view::npos || last_close < search_from) return 0;
  return pattern.find(']', search_from) - i + 1;
}

// Whether `c` is in `set`, a whole "[...]" or "[!...]" as set_length() measured it.
bool set_contains(std::string_view set, char c) {
  set = set.substr(1, set.size() - 2);
  const bool negated = set.starts_with('!');
  if (negated) set.remove_prefix(1);
  const auto u = [](char x) { return static_cast<unsigned char>(x); };
  bool found = false;
  for (std::size_t k = 0; k < set.size() && !found;) {
    if (k + 2 < set.size() && set[k + 1] == '-') {
      found = u(set[k]) <= u(c) && u(c) <= u(set[k + 2]);
      k += 3;
    } else {
      found = set[k] == c;
      ++k;
    }
  }
  return found != negated;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view name) {
  const std::size_t last_close = pattern.rfind(']');
  std::size_t p = 0;
  std::size_t n = 0;
  // Where to resume after the last '*' seen: the pattern after it, and the name position it
  // has consumed up to. Each '?' or set consumes exactly one byte, so retrying only from the last
  // '*' finds a match if there is one.
  std::size_t star_p = std::string_view::npos;
  std::size_t star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size()) {
      const char pc = pattern[p];
      if (pc == '*') {
        star_p = ++p;
        star_n = n;
        continue;
      }
      std::size_t step = 1;
      bool matched = false;
      if (pc == '?') {
        matched = true;
      } else if (pc == '[' && (step = set_length(pattern, p, last_close)) != 0) {
        matched = set_contains(pattern.substr(p, step), name[n]);
      } else {
        step = 1;
        matched = pc == name[n];
      }
      if (matched) {
        p += step;
        ++n;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

}  // namespace pantry::config
