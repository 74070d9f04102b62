#pragma once

// What the config tests parse with: parse() of a document that must read, or the message of one
// that must not, both under the source name "test.yaml".

#include "pantry/config/config.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pantry::config {

inline config parse_ok(std::string_view yaml) {
  auto r = parse(yaml, "test.yaml");
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? *r : config{};
}

// The error message for YAML that must not parse.
inline std::string error_of(std::string_view yaml) {
  auto r = parse(yaml, "test.yaml");
  if (r) return "<parsed without error>\n" + to_yaml(*r);
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().message;
  return r.error().message;
}

}  // namespace pantry::config
