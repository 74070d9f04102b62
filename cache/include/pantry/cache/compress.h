#pragma once

// zstd for pantry's own bulky records (job logs, history) — never for bodies a client receives.

#include "pantry/error.h"

#include <cstddef>
#include <span>
#include <vector>

namespace pantry::cache {

// Compresses `bytes` into one zstd frame (the frame records the content size).
std::vector<std::byte> zstd_compress(std::span<const std::byte> bytes, int level = 3);

// Decompresses one zstd frame. errc::corrupt if `frame` is not a valid frame, or if it would
// decompress to more than `max_size` bytes (a guard against decompression bombs).
result<std::vector<std::byte>> zstd_decompress(std::span<const std::byte> frame,
                                               std::size_t max_size = std::size_t{1} << 32);

}  // namespace pantry::cache
