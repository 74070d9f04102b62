// libFuzzer target for pantry's config parsers: none may crash, throw or hang, and whatever
// parses must survive the round trips the header promises.

#include "pantry/config/config.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace {

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "config_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace cfg = pantry::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto c = cfg::parse(text, "fuzz.yaml")) {
    const std::string yaml = cfg::to_yaml(*c, cfg::secrets::shown);
    auto again = cfg::parse(yaml, "to_yaml");
    check(again && *again == *c, "parse(to_yaml(c)) == c", text);
  }
  if (auto n = cfg::parse_size(text)) {
    check(cfg::parse_size(cfg::format_size(*n)).value() == *n, "size round trip", text);
  }
  if (auto d = cfg::parse_duration(text)) {
    check(cfg::parse_duration(cfg::format_duration(*d)).value() == *d, "duration round trip", text);
  }
  if (auto l = cfg::parse_listen(text)) {
    check(cfg::parse_listen(l->str()).value() == *l, "listen round trip", text);
  }
  // glob_match must stay bounded (no backtracking blow-up) for any pattern and name.
  if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    (void)cfg::glob_match(text.substr(0, nl), text.substr(nl + 1));
  }
  return 0;
}
