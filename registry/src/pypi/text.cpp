#include "text.h"

#include <array>
#include <cstdint>

namespace pantry::registry::pypi::detail {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// HTML5 maps numeric references in 0x80-0x9F to windows-1252 (0 = keep the value).
constexpr std::array<char32_t, 32> kWindows1252 = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

struct named_entity {
  std::string_view name;
  char32_t cp;
  bool legacy;  // recognized without a trailing ';'
};

constexpr std::array<named_entity, 6> kNamed = {{
    {"amp", U'&', true},
    {"lt", U'<', true},
    {"gt", U'>', true},
    {"quot", U'"', true},
    {"apos", U'\'', false},
    {"nbsp", 0xA0, true},
}};

bool is_alnum(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the numeric reference after "&#" at s[i]; returns false (nothing consumed) if no digits.
bool decode_numeric(std::string_view s, std::size_t& i, std::string& out) {
  std::size_t j = i;
  bool hex = false;
  if (j < s.size() && (s[j] == 'x' || s[j] == 'X')) {
    hex = true;
    ++j;
  }
  const std::size_t digits_start = j;
  std::uint32_t value = 0;
  bool overflow = false;
  while (j < s.size()) {
    const int d = hex ? hex_value(s[j]) : (s[j] >= '0' && s[j] <= '9' ? s[j] - '0' : -1);
    if (d < 0) break;
    value = value * (hex ? 16 : 10) + static_cast<std::uint32_t>(d);
    if (value > 0x10FFFF) {
      overflow = true;
      value = 0x110000;  // keep it out of range without wrapping around
    }
    ++j;
  }
  if (j == digits_start) return false;
  if (j < s.size() && s[j] == ';') ++j;
  char32_t cp = value;
  if (overflow || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    cp = kReplacement;
  } else if (cp >= 0x80 && cp <= 0x9F && kWindows1252[cp - 0x80] != 0) {
    cp = kWindows1252[cp - 0x80];
  }
  append_utf8(out, cp);
  i = j;
  return true;
}

// The length of the valid UTF-8 sequence at s[i] (s[i] >= 0x80), or 0 when it is invalid; then
// `skip` is how many bytes make up the invalid prefix (replaced by one U+FFFD).
std::size_t utf8_sequence(std::string_view s, std::size_t i, std::size_t& skip) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
    min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  }
  skip = 1;
  if (len == 0) return 0;
  for (std::size_t n = 1; n < len; ++n) {
    if (i + n >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + n]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
    skip = n + 1;
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacement;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t skip = 0;
    const std::size_t len = utf8_sequence(s, i, skip);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out.push_back(s[i]);
      ++i;
      continue;
    }
    std::size_t skip = 0;
    if (const std::size_t len = utf8_sequence(s, i, skip); len != 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      append_utf8(out, kReplacement);
      i += skip;
    }
  }
  return out;
}

std::string decode_entities(std::string_view s, bool in_attribute) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t amp = s.find('&', i);
    if (amp == std::string_view::npos) {
      out.append(s.substr(i));
      break;
    }
    out.append(s.substr(i, amp - i));
    i = amp + 1;
    if (i < s.size() && s[i] == '#') {
      std::size_t j = i + 1;
      if (decode_numeric(s, j, out)) {
        i = j;
        continue;
      }
      out.push_back('&');
      continue;
    }
    std::size_t j = i;
    while (j < s.size() && is_alnum(s[j]) && j - i < 8)
      ++j;
    const std::string_view name = s.substr(i, j - i);
    const bool semicolon = j < s.size() && s[j] == ';';
    bool done = false;
    for (const auto& e : kNamed) {
      if (name != e.name) continue;
      if (semicolon) {
        append_utf8(out, e.cp);
        i = j + 1;
        done = true;
      } else if (e.legacy && !(in_attribute && j < s.size() && (is_alnum(s[j]) || s[j] == '='))) {
        append_utf8(out, e.cp);
        i = j;
        done = true;
      }
      break;
    }
    if (!done) out.push_back('&');
  }
  return out;
}

void append_json_string(std::string& out, std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  // Invalid UTF-8 would make the whole document invalid JSON; repair it (rarely needed).
  std::string repaired;
  std::string_view s = raw;
  if (!is_valid_utf8(raw)) {
    repaired = valid_utf8(raw);
    s = repaired;
  }
  out.push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace pantry::registry::pypi::detail
