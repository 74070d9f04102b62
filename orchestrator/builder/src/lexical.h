#pragma once

// Character classes and UTF-8 decoding shared by the Containerfile parser, the substitution and
// the ignore-file matcher. Private to pantry_builder.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pantry::orchestrator::builder::detail {

// The white space docker's parser splits and trims on (Go's unicode.IsSpace), limited to ASCII:
// space, \t, \n, \v, \f, \r. This differs from pantry::is_ascii_space (HTML's and HTTP's white
// space), which has no \v. Go also counts U+0085 and U+00A0; pantry does not, so a Containerfile
// that separates words with a no-break space reads differently -- never seen in a real one.
inline bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

inline std::string_view trim_left(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  return s;
}

inline std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

inline std::string_view trim(std::string_view s) noexcept {
  return trim_right(trim_left(s));
}

inline bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

inline bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// `s` with a-z made A-Z (instruction keywords and signal names are upper case in messages).
inline std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// One decoded UTF-8 sequence. An invalid byte decodes as U+FFFD of length 1, as Go decodes it.
struct rune {
  char32_t value;
  std::size_t length;
};

inline constexpr char32_t kReplacementChar = 0xFFFD;

inline rune decode_rune(std::string_view s, std::size_t pos) noexcept {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return {b0, 1};
  auto cont = [&](std::size_t i) -> int {
    if (pos + i >= s.size()) return -1;
    const auto b = static_cast<unsigned char>(s[pos + i]);
    return (b & 0xC0) == 0x80 ? (b & 0x3F) : -1;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    const int c1 = cont(1);
    if (c1 >= 0) return {static_cast<char32_t>(((b0 & 0x1F) << 6) | c1), 2};
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    const int c1 = cont(1), c2 = c1 >= 0 ? cont(2) : -1;
    if (c2 >= 0) {
      const char32_t v = ((b0 & 0x0F) << 12) | (c1 << 6) | c2;
      // Overlong forms and UTF-16 surrogates are invalid, as in Go.
      if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) return {v, 3};
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    const int c1 = cont(1), c2 = c1 >= 0 ? cont(2) : -1, c3 = c2 >= 0 ? cont(3) : -1;
    if (c3 >= 0) {
      const char32_t v = ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3;
      if (v >= 0x10000 && v <= 0x10FFFF) return {v, 4};
    }
  }
  return {kReplacementChar, 1};
}

inline void append_rune(std::string& out, char32_t v) {
  if (v < 0x80) {
    out += static_cast<char>(v);
  } else if (v < 0x800) {
    out += static_cast<char>(0xC0 | (v >> 6));
    out += static_cast<char>(0x80 | (v & 0x3F));
  } else if (v < 0x10000) {
    out += static_cast<char>(0xE0 | (v >> 12));
    out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (v & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (v >> 18));
    out += static_cast<char>(0x80 | ((v >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (v & 0x3F));
  }
}

// `s` with every invalid UTF-8 byte replaced by U+FFFD (what Go's JSON decoder does to strings).
inline std::string coerce_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const rune r = decode_rune(s, i);
    if (r.value == kReplacementChar && r.length == 1) {
      append_rune(out, kReplacementChar);
    } else {
      out.append(s.substr(i, r.length));
    }
    i += r.length;
  }
  return out;
}

// An ADD source pantry refuses: anything with a URL scheme ("https://…", "git://…"), and git's
// scp-like form ("git@host:repo").
inline bool is_remote_source(std::string_view s) noexcept {
  if (s.starts_with("git@")) return true;
  const auto scheme_end = s.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) return false;
  for (char c : s.substr(0, scheme_end)) {
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

// What pantry says to an ADD of `source`, a URL.
std::string remote_source_refusal(std::string_view source);

// `s` quoted for a message: "…" with control bytes escaped, cut after 80 bytes.
std::string quote(std::string_view s);

}  // namespace pantry::orchestrator::builder::detail
