#pragma once

// The check the tests of pantry's argument parsers share.

#include "pantry/error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::cli {

// Succeeds iff `r`, what the parser made of `args`, is errc::invalid_argument with a message
// holding each of `parts` (the argument, the bad value); otherwise says what came back instead.
template <class T>
::testing::AssertionResult usage_error(const result<T>& r, const std::vector<std::string>& args,
                                       const std::vector<std::string>& parts) {
  std::string shown;
  for (const auto& a : args)
    shown += " " + a;
  if (r) return ::testing::AssertionFailure() << "accepted:" << shown;
  if (!r.error().is(errc::invalid_argument)) {
    return ::testing::AssertionFailure() << "failed with " << r.error().code.message() << " ("
                                         << r.error().message << ") for" << shown;
  }
  for (const auto& p : parts) {
    if (r.error().message.find(p) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << r.error().message << "\" lacks \"" << p << "\", for" << shown;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pantry::cli
