#pragma once

// sha256 digests: the identity of every blob in the cache.

#include "pantry/error.h"

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace pantry::cache {

class digest {
 public:
  static constexpr std::size_t kSize = 32;

  digest() = default;
  explicit digest(const std::array<std::byte, kSize>& bytes) : bytes_(bytes) {}

  // Parses "sha256:<64 lowercase hex>" (OCI form). Any other algorithm, a wrong length or a
  // non-hex character is errc::invalid_argument, with a message that quotes the input.
  static result<digest> parse(std::string_view text);
  // Parses 64 hex digits with no prefix (the `#sha256=` fragment form; either case).
  static result<digest> parse_hex(std::string_view hex);
  // The digest of `bytes`.
  static digest of(std::span<const std::byte> bytes);
  static digest of(std::string_view bytes);

  std::span<const std::byte, kSize> bytes() const noexcept { return bytes_; }
  std::string hex() const;
  // "sha256:<hex>"
  std::string str() const;
  // "sha256:<first 12 hex>…" for log lines and messages.
  std::string short_str() const;

  friend auto operator<=>(const digest&, const digest&) = default;

 private:
  std::array<std::byte, kSize> bytes_{};
};

struct digest_hash {
  std::size_t operator()(const digest& d) const noexcept;
};

// Incremental sha256 (OpenSSL EVP).
class hasher {
 public:
  hasher();
  ~hasher();
  hasher(hasher&&) noexcept;
  hasher& operator=(hasher&&) noexcept;

  void update(std::span<const std::byte> bytes);
  void update(std::string_view bytes);
  // Returns the digest of everything updated so far; the hasher is then reset.
  digest finish();

 private:
  struct state;
  std::unique_ptr<state> state_;
};

}  // namespace pantry::cache
