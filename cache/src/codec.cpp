#include "codec.h"

#include <cstdio>
#include <cstring>
#include <limits>

namespace pantry::cache::detail {
namespace {

void put_u8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>(v >> shift));
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>(v >> shift));
}

void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

std::uint64_t load_be(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Reads a value front to back. Any read past the end clears ok() and yields zeros, so a decoder
// can read every field and check once at the end.
class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}

  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return ok_ && in_.empty(); }

  std::uint64_t uint(int n) {
    if (!ok_ || in_.size() < static_cast<std::size_t>(n)) return fail();
    std::uint64_t v = load_be(in_.data(), n);
    in_.remove_prefix(n);
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(uint(1)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(uint(4)); }
  std::uint64_t u64() { return uint(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(uint(8)); }

  std::string_view raw(std::size_t n) {
    if (!ok_ || in_.size() < n) {
      fail();
      return {};
    }
    auto v = in_.substr(0, n);
    in_.remove_prefix(n);
    return v;
  }
  std::string str() {
    std::uint32_t n = u32();
    return std::string(raw(n));
  }
  std::size_t remaining() const noexcept { return in_.size(); }

 private:
  std::uint64_t fail() {
    ok_ = false;
    return 0;
  }

  std::string_view in_;
  bool ok_ = true;
};

error corrupt_value(std::string what, std::string why) {
  return error(errc::corrupt, "cache: " + what + " is corrupt (" + why +
                                  "); run `pantry cache verify`, and remove the data dir's cache/ "
                                  "folder if it persists");
}

}  // namespace

std::string chunk_key(const digest& id, std::uint32_t index) {
  std::string key(digest_key(id));
  put_u32(key, index);
  return key;
}

std::array<char, kChunkKeySize> chunk_key_array(const digest& id, std::uint32_t index) {
  std::array<char, kChunkKeySize> key;
  std::memcpy(key.data(), id.bytes().data(), digest::kSize);
  for (int i = 0; i < 4; ++i)
    key[digest::kSize + i] = static_cast<char>(index >> (24 - 8 * i));
  return key;
}

std::string lru_key(std::int64_t access_ms, const digest& id) {
  std::string key;
  key.reserve(kLruKeySize);
  put_u64(key, static_cast<std::uint64_t>(access_ms));
  key.append(digest_key(id));
  return key;
}

std::string_view digest_key(const digest& id) {
  auto b = id.bytes();
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

bool parse_digest_key(std::string_view key, digest& id) {
  if (key.size() != digest::kSize) return false;
  std::array<std::byte, digest::kSize> b;
  std::memcpy(b.data(), key.data(), b.size());
  id = digest(b);
  return true;
}

bool parse_chunk_key(std::string_view key, digest& id, std::uint32_t& index) {
  if (key.size() != kChunkKeySize) return false;
  parse_digest_key(key.substr(0, digest::kSize), id);
  index = static_cast<std::uint32_t>(load_be(key.data() + digest::kSize, 4));
  return true;
}

bool parse_lru_key(std::string_view key, std::int64_t& access_ms, digest& id) {
  if (key.size() != kLruKeySize) return false;
  access_ms = static_cast<std::int64_t>(load_be(key.data(), 8));
  return parse_digest_key(key.substr(8), id);
}

std::uint32_t chunk_count_for(std::uint64_t size) {
  return static_cast<std::uint32_t>((size + kChunkSize - 1) / kChunkSize);
}

std::int64_t to_ms(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

bool ms_in_range(std::int64_t ms) {
  constexpr std::int64_t kMax =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock::duration::max()).count();
  return ms <= kMax && ms >= -kMax;
}

clock::time_point from_ms(std::int64_t ms) {
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(ms)));
}

namespace {

std::int64_t to_ns(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

clock::time_point from_ns(std::int64_t ns) {
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::nanoseconds(ns)));
}

constexpr std::uint8_t kPinnedFlag = 1;

}  // namespace

std::string encode_object(const object_info& info) {
  std::string out;
  out.reserve(48 + info.media_type.size());
  put_u8(out, kFormatVersion);
  put_u64(out, info.size);
  put_u32(out, info.chunk_count);
  put_u64(out, static_cast<std::uint64_t>(to_ms(info.created)));
  put_u64(out, static_cast<std::uint64_t>(to_ms(info.last_access)));
  put_u8(out, info.pinned ? kPinnedFlag : 0);
  put_str(out, info.media_type);
  return out;
}

result<object_info> decode_object(const digest& id, std::string_view bytes) {
  std::string what = "object record of " + id.short_str();
  reader r(bytes);
  std::uint8_t version = r.u8();
  if (r.ok() && version != kFormatVersion) {
    return corrupt_value(what, "format version " + std::to_string(version) + ", expected " +
                                   std::to_string(kFormatVersion));
  }
  object_info info;
  info.id = id;
  info.size = r.u64();
  info.chunk_count = r.u32();
  std::int64_t created = r.i64();
  std::int64_t last_access = r.i64();
  if (!ms_in_range(created) || !ms_in_range(last_access)) {
    return corrupt_value(what, "time stamp out of range");
  }
  info.created = from_ms(created);
  info.last_access = from_ms(last_access);
  std::uint8_t flags = r.u8();
  info.pinned = (flags & kPinnedFlag) != 0;
  info.media_type = r.str();
  if (!r.at_end()) {
    return corrupt_value(what, std::to_string(bytes.size()) + " bytes do not decode");
  }
  if (info.chunk_count != chunk_count_for(info.size)) {
    return corrupt_value(what, "size " + std::to_string(info.size) + " needs " +
                                   std::to_string(chunk_count_for(info.size)) +
                                   " chunks, record says " + std::to_string(info.chunk_count));
  }
  return info;
}

std::string encode_entry(const entry& e) {
  std::string out;
  out.reserve(64 + e.content_type.size() + e.etag.size() + e.last_modified.size());
  put_u8(out, kFormatVersion);
  put_u8(out, e.target ? 1 : 0);
  if (e.target) out.append(digest_key(*e.target));
  put_u32(out, static_cast<std::uint32_t>(e.status));
  put_u64(out, static_cast<std::uint64_t>(to_ns(e.fetched_at)));
  put_u64(out, static_cast<std::uint64_t>(to_ns(e.expires_at)));
  put_str(out, e.content_type);
  put_str(out, e.etag);
  put_str(out, e.last_modified);
  put_u32(out, static_cast<std::uint32_t>(e.attributes.size()));
  for (const auto& [k, v] : e.attributes) {
    put_str(out, k);
    put_str(out, v);
  }
  return out;
}

result<entry> decode_entry(std::string_view key, std::string_view bytes) {
  std::string what = "entry \"" + std::string(key) + "\"";
  reader r(bytes);
  std::uint8_t version = r.u8();
  if (r.ok() && version != kFormatVersion) {
    return corrupt_value(what, "format version " + std::to_string(version) + ", expected " +
                                   std::to_string(kFormatVersion));
  }
  entry e;
  std::uint8_t has_target = r.u8();
  if (has_target > 1) return corrupt_value(what, "bad target flag");
  if (has_target == 1) {
    digest d;
    if (parse_digest_key(r.raw(digest::kSize), d)) e.target = d;
  }
  e.status = static_cast<int>(static_cast<std::int32_t>(r.u32()));
  e.fetched_at = from_ns(r.i64());
  e.expires_at = from_ns(r.i64());
  e.content_type = r.str();
  e.etag = r.str();
  e.last_modified = r.str();
  std::uint32_t n = r.u32();
  // Each attribute takes at least two length words: a count beyond that is garbage, and must not
  // become a huge reserve().
  if (r.ok() && n > r.remaining() / 8) return corrupt_value(what, "bad attribute count");
  e.attributes.reserve(n);
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    std::string k = r.str();
    std::string v = r.str();
    e.attributes.emplace_back(std::move(k), std::move(v));
  }
  if (!r.at_end()) {
    return corrupt_value(what, std::to_string(bytes.size()) + " bytes do not decode");
  }
  return e;
}

std::string encode_u64(std::uint64_t v) {
  std::string out;
  put_u64(out, v);
  return out;
}

bool decode_u64(std::string_view bytes, std::uint64_t& v) {
  if (bytes.size() != 8) return false;
  v = load_be(bytes.data(), 8);
  return true;
}

std::string human_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<std::uint64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

}  // namespace pantry::cache::detail
