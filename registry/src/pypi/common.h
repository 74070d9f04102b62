#pragma once

// Pieces shared by the HTML and JSON sides of the simple API.

#include "pantry/error.h"

#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace pantry::registry::pypi::detail {

// Fails unless `version` (a PEP 629 "Major.Minor") has major version 1; `where` names the page.
result<void> check_api_version(std::string_view version, std::string_view where);

// True iff `name` (lowercase) looks like a hashlib algorithm name and `hex` is hex digits.
bool is_hash_name(std::string_view name) noexcept;
bool is_hex(std::string_view hex) noexcept;

// The hashes of a URL fragment ("sha256=<hex>", several joined by '&'); names lowercased,
// values lowercased, anything else ignored.
std::map<std::string, std::string> hashes_from_fragment(std::string_view fragment);

// The hash to put in an HTML fragment or attribute: sha256 first, then other secure ones, then
// whatever comes first; nullptr when `hashes` is empty.
const std::pair<const std::string, std::string>* preferred_hash(
    const std::map<std::string, std::string>& hashes);

// The metadata attribute value of a PEP 658 core_metadata map: "true" or "<algo>=<hex>".
std::string metadata_attribute(const std::map<std::string, std::string>& hashes);

}  // namespace pantry::registry::pypi::detail
