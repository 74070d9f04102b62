#pragma once

// Helpers shared by the cache unit tests.

#include "pantry/cache/store.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pantry::cache::testing_util {

// Succeeds iff `r` holds a value; otherwise prints the error's message.
template <class T>
::testing::AssertionResult ok(const result<T>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "failed with " << r.error().code.message() << ": " << r.error().message;
}

// Succeeds iff `r` failed with `e`; otherwise prints what happened instead.
template <class T>
::testing::AssertionResult fails_with(const result<T>& r, errc e) {
  std::string want = make_error_code(e).message();
  if (r) return ::testing::AssertionFailure() << "succeeded, expected \"" << want << "\"";
  if (!r.error().is(e)) {
    return ::testing::AssertionFailure() << "failed with \"" << r.error().code.message() << "\" ("
                                         << r.error().message << "), expected \"" << want << "\"";
  }
  return ::testing::AssertionSuccess();
}

// `n` pseudo-random bytes, the same for the same seed.
inline std::vector<std::byte> make_bytes(std::size_t n, std::uint64_t seed) {
  std::vector<std::byte> out(n);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15 + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x >> 24);
  }
  return out;
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace pantry::cache::testing_util
