#pragma once

// Helpers of the decision tests (decide_test.cpp, index_fallback_test.cpp) beside
// requirements_text.h's: a plan's reasons as text.

#include "pantry/orchestrator/pins/decide.h"

#include <string>

namespace pantry::orchestrator::pins::test {

// The plan's reasons, one a line.
inline std::string reasons_of(const pin_plan& p) {
  std::string out;
  for (const auto& r : p.reasons)
    out += r + "\n";
  return out;
}

}  // namespace pantry::orchestrator::pins::test
