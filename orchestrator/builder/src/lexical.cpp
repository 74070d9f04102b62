#include "lexical.h"

namespace pantry::orchestrator::builder::detail {

std::string quote(std::string_view s) {
  constexpr std::size_t kMax = 80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s.substr(0, kMax)) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    } else {
      out += c;
    }
  }
  if (s.size() > kMax) out += "…";
  return out + "\"";
}

std::string remote_source_refusal(std::string_view source) {
  return quote(source) +
         " is a URL; pantry's ADD takes local files and archives only: download it in a RUN "
         "--network=host step, or put it in the build context";
}

}  // namespace pantry::orchestrator::builder::detail
