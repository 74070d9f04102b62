#pragma once

// The core metadata file of a wheel (PEP 658: served as `<file url>.metadata`).

#include "pantry/error.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The largest METADATA extracted; a larger one (or a zip bomb claiming to be one) is an error.
inline constexpr std::size_t kMaxMetadataSize = 16 * 1024 * 1024;

// Random access to a wheel's bytes, e.g. straight from the cache's chunks. `read_at` copies up to
// `out.size()` bytes from `offset` into `out` and returns how many it copied (fewer only at the
// end); it is called only with offset < size.
struct byte_source {
  std::uint64_t size = 0;
  std::function<result<std::size_t>(std::uint64_t offset, std::span<std::byte> out)> read_at;
};

// Returns the bytes of `<name>-<version>.dist-info/METADATA` of the wheel `filename`. The zip's
// central directory is read first, so only it and METADATA's own bytes are read. The dist-info
// directory is the one whose name matches the file name's project and version (compared in
// normalized form); failing that, the only top-level *.dist-info directory with a METADATA.
// Fails with errc::invalid_argument naming `filename` when the bytes are not a zip, no or several
// candidates exist, METADATA is larger than kMaxMetadataSize or cannot be decompressed; a failure
// of `source.read_at` is passed on as it is.
result<std::string> extract_wheel_metadata(const byte_source& source, std::string_view filename);

// The same, from bytes in memory (no copy of them is made).
result<std::string> extract_wheel_metadata(std::span<const std::byte> wheel,
                                           std::string_view filename);

}  // namespace pantry::registry::pypi
