#include "pantry/registry/pypi/simple.h"

namespace pantry::registry::pypi {

std::optional<cache::digest> file_entry::sha256() const {
  const auto it = hashes.find("sha256");
  if (it == hashes.end()) return std::nullopt;
  auto d = cache::digest::parse_hex(it->second);
  if (!d) return std::nullopt;
  return *d;
}

}  // namespace pantry::registry::pypi
