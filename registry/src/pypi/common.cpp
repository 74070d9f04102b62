#include "common.h"

#include "text.h"

#include <array>

namespace pantry::registry::pypi::detail {

result<void> check_api_version(std::string_view version, std::string_view where) {
  std::size_t digits = 0;
  while (digits < version.size() && version[digits] >= '0' && version[digits] <= '9')
    ++digits;
  const std::string_view major = version.substr(0, digits);
  // Leading zeros aside, the major must be exactly 1 (PEP 629: fail on a greater major).
  std::string_view trimmed = major;
  while (trimmed.size() > 1 && trimmed.front() == '0')
    trimmed.remove_prefix(1);
  if (trimmed != "1" || (digits < version.size() && version[digits] != '.')) {
    return pantry::error(errc::invalid_argument,
                         "pypi: " + std::string(where) + " declares API version \"" +
                             std::string(version) + "\"; pantry understands 1.x only");
  }
  return {};
}

bool is_hash_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool is_hex(std::string_view hex) noexcept {
  if (hex.empty()) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::map<std::string, std::string> hashes_from_fragment(std::string_view fragment) {
  std::map<std::string, std::string> out;
  while (!fragment.empty()) {
    const std::size_t amp = fragment.find('&');
    const std::string_view part = fragment.substr(0, amp);
    fragment = amp == std::string_view::npos ? std::string_view() : fragment.substr(amp + 1);
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    std::string name = ascii_lower(part.substr(0, eq));
    const std::string_view value = part.substr(eq + 1);
    if (is_hash_name(name) && is_hex(value)) out.emplace(std::move(name), ascii_lower(value));
  }
  return out;
}

const std::pair<const std::string, std::string>* preferred_hash(
    const std::map<std::string, std::string>& hashes) {
  static constexpr std::array<std::string_view, 6> kOrder = {"sha256", "sha512", "sha384",
                                                             "sha224", "sha1",   "md5"};
  for (auto name : kOrder) {
    if (auto it = hashes.find(std::string(name)); it != hashes.end()) return &*it;
  }
  return hashes.empty() ? nullptr : &*hashes.begin();
}

std::string metadata_attribute(const std::map<std::string, std::string>& hashes) {
  const auto* h = preferred_hash(hashes);
  if (h == nullptr) return "true";
  return h->first + "=" + h->second;
}

}  // namespace pantry::registry::pypi::detail
