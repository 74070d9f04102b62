#include "message.h"

#include "chars.h"

#include <yaml-cpp/yaml.h>

namespace pantry::config::yaml {

using detail::is_control;
using detail::utf8_sequence_length;
namespace {

// Quoted values in messages are cut here so one bad line cannot flood a terminal.
constexpr std::size_t kMaxQuotedBytes = 80;

// Appends a short flow-style rendering of `n` to `out`, stopping at the quoting limit. The limit
// also ends recursion through anchors that refer to themselves (`&a [*a]`).
void render(const YAML::Node& n, std::string& out) {
  if (out.size() > kMaxQuotedBytes) return;
  if (n.IsScalar()) {
    out += n.Scalar();
  } else if (n.IsMap()) {
    out += '{';
    bool first = true;
    for (auto it = n.begin(); it != n.end() && out.size() <= kMaxQuotedBytes; ++it) {
      if (!first) out += ", ";
      first = false;
      render(it->first, out);
      out += ": ";
      render(it->second, out);
    }
    out += '}';
  } else if (n.IsSequence()) {
    out += '[';
    bool first = true;
    for (auto it = n.begin(); it != n.end() && out.size() <= kMaxQuotedBytes; ++it) {
      if (!first) out += ", ";
      first = false;
      render(*it, out);
    }
    out += ']';
  }
}

}  // namespace

std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (out.size() >= kMaxQuotedBytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_sequence_length(s, i);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (is_control(c) || n == 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

std::string quote(std::string_view s) {
  return "\"" + printable(s) + "\"";
}

std::string describe_char(std::string_view ch) {
  const bool plain = ch.size() > 1 || (!is_control(static_cast<unsigned char>(ch[0])) &&
                                       static_cast<unsigned char>(ch[0]) < 0x80);
  return plain ? "'" + std::string(ch) + "'" : quote(ch);
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (std::string_view s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

std::string kind_of(const YAML::Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "empty";
  return "a single value";
}

std::string describe(const YAML::Node& n) {
  std::string text;
  render(n, text);
  return quote(text);
}

}  // namespace pantry::config::yaml
