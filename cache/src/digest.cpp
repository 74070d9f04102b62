#include "pantry/cache/digest.h"

#include <openssl/evp.h>

#include <cstring>
#include <stdexcept>

namespace pantry::cache {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quoted(std::string_view s) {
  constexpr std::size_t kMax = 80;
  std::string out = "\"";
  out.append(s.substr(0, kMax));
  if (s.size() > kMax) out += "…";
  out += '"';
  return out;
}

}  // namespace

result<digest> digest::parse_hex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return error(errc::invalid_argument, "digest " + quoted(hex) +
                                             ": expected 64 hex digits, got " +
                                             std::to_string(hex.size()) + " characters");
  }
  std::array<std::byte, kSize> bytes;
  for (std::size_t i = 0; i < kSize; ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return error(errc::invalid_argument, "digest " + quoted(hex) + ": character " +
                                               std::to_string(2 * i + (hi < 0 ? 0 : 1)) +
                                               " is not a hex digit");
    }
    bytes[i] = static_cast<std::byte>(hi * 16 + lo);
  }
  return digest(bytes);
}

result<digest> digest::parse(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (!text.starts_with(kPrefix)) {
    auto colon = text.find(':');
    std::string algo = colon == std::string_view::npos ? "" : std::string(text.substr(0, colon));
    return error(errc::invalid_argument,
                 "digest " + quoted(text) +
                     (algo.empty() ? ": expected the form sha256:<64 hex digits>"
                                   : ": algorithm \"" + algo + "\" is not supported, use sha256"));
  }
  auto hex = text.substr(kPrefix.size());
  for (char c : hex) {
    if (c >= 'A' && c <= 'F') {
      return error(errc::invalid_argument,
                   "digest " + quoted(text) + ": hex digits must be lowercase");
    }
  }
  return parse_hex(hex);
}

digest digest::of(std::span<const std::byte> bytes) {
  hasher h;
  h.update(bytes);
  return h.finish();
}

digest digest::of(std::string_view bytes) {
  return of(std::as_bytes(std::span(bytes)));
}

std::string digest::hex() const {
  std::string out(2 * kSize, '0');
  for (std::size_t i = 0; i < kSize; ++i) {
    auto b = std::to_integer<unsigned>(bytes_[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 15];
  }
  return out;
}

std::string digest::str() const {
  return "sha256:" + hex();
}

std::string digest::short_str() const {
  return "sha256:" + hex().substr(0, 12) + "…";
}

std::size_t digest_hash::operator()(const digest& d) const noexcept {
  std::size_t h;
  std::memcpy(&h, d.bytes().data(), sizeof h);
  return h;
}

struct hasher::state {
  EVP_MD_CTX* ctx = nullptr;
  ~state() { EVP_MD_CTX_free(ctx); }
};

hasher::hasher() : state_(std::make_unique<state>()) {
  state_->ctx = EVP_MD_CTX_new();
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL: cannot initialise sha256");  // broken invariant
  }
}

hasher::~hasher() = default;
hasher::hasher(hasher&&) noexcept = default;
hasher& hasher::operator=(hasher&&) noexcept = default;

void hasher::update(std::span<const std::byte> bytes) {
  EVP_DigestUpdate(state_->ctx, bytes.data(), bytes.size());
}

void hasher::update(std::string_view bytes) {
  update(std::as_bytes(std::span(bytes)));
}

digest hasher::finish() {
  std::array<std::byte, digest::kSize> out;
  unsigned len = 0;
  EVP_DigestFinal_ex(state_->ctx, reinterpret_cast<unsigned char*>(out.data()), &len);
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
  return digest(out);
}

}  // namespace pantry::cache
