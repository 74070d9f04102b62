#pragma once

// Hosted content received into a file (an OCI blob push, a Python package upload) is written
// there and goes into the cache the same way: as a pinned blob, copied from the file once its
// digest is checked.

#include "pantry/cache/store.h"
#include "pantry/error.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace pantry::registry::detail {

// The piece of an upload's body read at a time (and written to its file).
inline constexpr std::size_t kUploadBuffer = 256 * 1024;

// Writes all of `bytes` to the file `fd` (retrying short writes and EINTR); 0, or the errno of
// the write that failed. Blocks: call it on the blocking pool.
int write_all(int fd, std::span<const std::byte> bytes);

// How long storing hosted bytes waits for another write of the same blob to finish.
inline constexpr std::chrono::seconds kConcurrentWriteWait{60};

// Stores the first `size` bytes of the file open at `fd` (`path`, for messages) as the pinned
// blob `id` of `media_type`. The caller has checked that the bytes hash to `id` (commit checks
// again). Bytes the cache holds already (proxied, or hosted elsewhere) are pinned where they are.
// Two writes of one blob at once (two builds pushing a shared base layer): the second finds the
// first still writing it (already_exists, not yet visible) and waits for that write to commit,
// or to fail and leave the blob to it, up to kConcurrentWriteWait; then errc::io_error, telling
// the client to send it again. Blocks: call it on the blocking pool.
result<void> store_pinned_file(cache::store& store, const cache::digest& id,
                               const std::string& media_type, int fd, std::uint64_t size,
                               const std::filesystem::path& path);

}  // namespace pantry::registry::detail
