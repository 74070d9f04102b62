#pragma once

// The on-disk forms of keys and values in the cache's LMDB databases. Every value starts with a
// version byte; integers are big-endian so that keys sort numerically.

#include "pantry/cache/store.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace pantry::cache::detail {

inline constexpr std::uint8_t kFormatVersion = 1;

// `blobs` key: 32 digest bytes + chunk index (u32 BE).
inline constexpr std::size_t kChunkKeySize = digest::kSize + 4;
// `lru` key: last access in ms since the epoch (u64 BE) + 32 digest bytes.
inline constexpr std::size_t kLruKeySize = 8 + digest::kSize;

std::string chunk_key(const digest& id, std::uint32_t index);
// The same key without a heap allocation, for the read path.
std::array<char, kChunkKeySize> chunk_key_array(const digest& id, std::uint32_t index);
std::string lru_key(std::int64_t access_ms, const digest& id);
std::string_view digest_key(const digest& id);

// Splits a `blobs` key; false if `key` does not have the chunk key form.
bool parse_chunk_key(std::string_view key, digest& id, std::uint32_t& index);
// Splits an `lru` key; false if `key` does not have the lru key form.
bool parse_lru_key(std::string_view key, std::int64_t& access_ms, digest& id);
// Reads a 32-byte `objects` key; false if it has another length.
bool parse_digest_key(std::string_view key, digest& id);

// Number of chunks a blob of `size` bytes is stored in.
std::uint32_t chunk_count_for(std::uint64_t size);

std::int64_t to_ms(clock::time_point t);
// True iff `ms` is representable as a clock::time_point.
bool ms_in_range(std::int64_t ms);
clock::time_point from_ms(std::int64_t ms);

// `objects` values. The digest is the key and is not repeated; decode fills `info.id` from `id`.
std::string encode_object(const object_info& info);
result<object_info> decode_object(const digest& id, std::string_view bytes);

// `entries` values.
std::string encode_entry(const entry& e);
result<entry> decode_entry(std::string_view key, std::string_view bytes);

// `meta` counters: one u64 BE per key.
std::string encode_u64(std::uint64_t v);
bool decode_u64(std::string_view bytes, std::uint64_t& v);

// "1.5 GiB", "512 KiB", "17 bytes" for messages.
std::string human_size(std::uint64_t bytes);

}  // namespace pantry::cache::detail
