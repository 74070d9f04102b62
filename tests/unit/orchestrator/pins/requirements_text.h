#pragma once

// Requirements text for the pin bot's unit tests: hash-pinned lines in pip-compile's layout whose
// digests are one repeated hex digit, and documents read from them.

#include "pantry/orchestrator/pins/requirements_file.h"

#include <gtest/gtest.h>

#include <string>

namespace pantry::orchestrator::pins::test {

// 64 times `c`: a sha256 hex digest that is easy to tell apart.
inline std::string hex_of(char c) {
  return std::string(64, c);
}

// "NAME==V \" and one --hash line of hex_of(digit).
inline std::string hashed(const std::string& name, const std::string& v, char digit) {
  return name + "==" + v + " \\\n    --hash=sha256:" + hex_of(digit) + "\n";
}

// `text` read as requirements.txt; a failure to read it fails the test.
inline requirements_file doc_of(const std::string& text) {
  auto doc = requirements_file::parse(text, "requirements.txt");
  EXPECT_TRUE(doc.has_value()) << (doc ? "" : doc.error().message);
  return *doc;
}

}  // namespace pantry::orchestrator::pins::test
