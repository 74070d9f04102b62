#pragma once

// Helpers of the decision tests (decide_test.cpp, index_fallback_test.cpp): digests, documents
// and a plan's reasons as text.

#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/requirements_file.h"

#include <gtest/gtest.h>

#include <string>

namespace pantry::orchestrator::pins::test_helpers {

// 64 times `c`: a sha256 in hex that names its file at a glance.
inline std::string hex_of(char c) {
  return std::string(64, c);
}

// `text` as requirements.txt; a parse error fails the test.
inline requirements_file doc_of(const std::string& text) {
  auto doc = requirements_file::parse(text, "requirements.txt");
  EXPECT_TRUE(doc.has_value()) << (doc ? "" : doc.error().message);
  return *doc;
}

// The plan's reasons, one a line.
inline std::string reasons_of(const pin_plan& p) {
  std::string out;
  for (const auto& r : p.reasons)
    out += r + "\n";
  return out;
}

}  // namespace pantry::orchestrator::pins::test_helpers
