#pragma once

// Unpacking one layer tarball into a directory, for the layer store (layer_store.h says what an
// unpacked layer holds and what is refused). Private to pantry_runner.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/runner/layer_store.h"

#include <cstdint>
#include <string_view>

namespace pantry::orchestrator::runner::detail {

// True iff `media_type` names a tar layer this store unpacks (OCI or docker; gzip, zstd or none).
bool is_tar_layer_media_type(std::string_view media_type) noexcept;

struct unpack_report {
  std::uint64_t tar_bytes = 0;  // the uncompressed stream, all of it hashed
  std::uint64_t entries = 0;
};

// Decompresses what `source` yields, verifies that its sha256 is `diff_id` and unpacks the tar
// into the empty directory `dir_fd` (an O_RDONLY | O_DIRECTORY descriptor). Thread-safe; blocks.
// On error the directory may hold part of the layer: the caller removes it. Error messages name
// the entry or the digests but not the layer (the caller prefixes it).
result<unpack_report> unpack_layer(int dir_fd, const cache::digest& diff_id,
                                   const layer_source& source);

// The bytes on disk of the tree under `dir_fd` (the directory included), each inode counted once
// however many hard links it has.
result<std::uint64_t> disk_usage(int dir_fd);

}  // namespace pantry::orchestrator::runner::detail
