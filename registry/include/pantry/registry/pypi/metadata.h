#pragma once

// Core metadata (a wheel's METADATA, an sdist's PKG-INFO, PEP 658's `<file>.metadata`): RFC 822
// style headers up to the first empty line, field names in any case, continuation lines joined.
// Pure functions; the one reader of these headers in pantry (hosted.h's metadata_field reads the
// first field through it).

#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// The values of every `field` header, in order, each trimmed, empty ones left out (a
// multiple-use field such as Requires-Dist or Provides-Extra has one per line).
std::vector<std::string> metadata_fields(std::string_view metadata, std::string_view field);

}  // namespace pantry::registry::pypi
