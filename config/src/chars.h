#pragma once

// Character classes and UTF-8 checks the config readers share. ASCII only, like pantry/text.h:
// a config means the same whatever the locale.

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace pantry::config::detail {

inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
inline bool is_lower_alpha(char c) {
  return c >= 'a' && c <= 'z';
}
inline bool is_alpha(char c) {
  return is_lower_alpha(c) || (c >= 'A' && c <= 'Z');
}
inline bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7F;
}

// True iff `s` is one or more ASCII digits.
inline bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// Length of the UTF-8 sequence starting at s[i], or 0 if it is not valid UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF included). Requires i < s.size().
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

// Offset of the first byte of `s` that is not valid UTF-8, or npos.
std::size_t first_invalid_utf8(std::string_view s);

}  // namespace pantry::config::detail
