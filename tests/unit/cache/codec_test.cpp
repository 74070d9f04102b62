// The on-disk encodings: round trips, and garbage that must decode to errc::corrupt, never crash.

#include "codec.h"

#include "test_util.h"

#include <gtest/gtest.h>

namespace pantry::cache::detail {
namespace {

using testing_util::fails_with;
using testing_util::ok;

object_info sample_object() {
  object_info info;
  info.id = digest::of(std::string_view("blob"));
  info.size = 3 * kChunkSize + 17;
  info.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  info.chunk_count = 4;
  info.created = from_ms(1700000000123);
  info.last_access = from_ms(1700000999456);
  info.pinned = true;
  return info;
}

entry sample_entry() {
  entry e;
  e.target = digest::of(std::string_view("index"));
  e.content_type = "application/vnd.pypi.simple.v1+json";
  e.etag = "\"abc\"";
  e.last_modified = "Tue, 15 Nov 1994 12:45:26 GMT";
  e.fetched_at = clock::time_point(std::chrono::nanoseconds(1700000000123456789));
  e.expires_at = e.fetched_at + std::chrono::minutes(10);
  e.status = 200;
  e.attributes = {{"media-type", "application/vnd.oci.image.index.v1+json"}, {"", ""}};
  return e;
}

TEST(CacheCodecTest, ObjectRoundTrips) {
  object_info in = sample_object();
  auto out = decode_object(in.id, encode_object(in));
  ASSERT_TRUE(ok(out));
  EXPECT_EQ(out->id, in.id);
  EXPECT_EQ(out->size, in.size);
  EXPECT_EQ(out->media_type, in.media_type);
  EXPECT_EQ(out->chunk_count, in.chunk_count);
  EXPECT_EQ(out->created, in.created);
  EXPECT_EQ(out->last_access, in.last_access);
  EXPECT_EQ(out->pinned, in.pinned);
}

TEST(CacheCodecTest, EntryRoundTrips) {
  entry in = sample_entry();
  auto out = decode_entry("k", encode_entry(in));
  ASSERT_TRUE(ok(out));
  EXPECT_EQ(out->target, in.target);
  EXPECT_EQ(out->content_type, in.content_type);
  EXPECT_EQ(out->etag, in.etag);
  EXPECT_EQ(out->last_modified, in.last_modified);
  EXPECT_EQ(out->fetched_at, in.fetched_at);
  EXPECT_EQ(out->expires_at, in.expires_at);
  EXPECT_EQ(out->status, in.status);
  EXPECT_EQ(out->attributes, in.attributes);

  entry negative;
  negative.status = 404;
  auto n = decode_entry("k", encode_entry(negative));
  ASSERT_TRUE(ok(n));
  EXPECT_FALSE(n->target.has_value());
  EXPECT_EQ(n->status, 404);
}

TEST(CacheCodecTest, EveryTruncationIsCorrupt) {
  std::string obj = encode_object(sample_object());
  for (std::size_t n = 0; n < obj.size(); ++n) {
    EXPECT_TRUE(fails_with(decode_object(sample_object().id, obj.substr(0, n)), errc::corrupt))
        << "object truncated to " << n << " of " << obj.size() << " bytes";
  }
  std::string ent = encode_entry(sample_entry());
  for (std::size_t n = 0; n < ent.size(); ++n) {
    EXPECT_TRUE(fails_with(decode_entry("k", ent.substr(0, n)), errc::corrupt))
        << "entry truncated to " << n << " of " << ent.size() << " bytes";
  }
}

TEST(CacheCodecTest, TrailingBytesAndBadVersionAreCorrupt) {
  object_info info = sample_object();
  EXPECT_TRUE(fails_with(decode_object(info.id, encode_object(info) + "x"), errc::corrupt));
  std::string v2 = encode_object(info);
  v2[0] = 2;
  auto r = decode_object(info.id, v2);
  ASSERT_TRUE(fails_with(r, errc::corrupt));
  EXPECT_NE(r.error().message.find("version 2"), std::string::npos) << r.error().message;
}

TEST(CacheCodecTest, InconsistentChunkCountIsCorrupt) {
  object_info info = sample_object();
  info.chunk_count = 3;
  EXPECT_TRUE(fails_with(decode_object(info.id, encode_object(info)), errc::corrupt));
}

TEST(CacheCodecTest, RandomGarbageNeverCrashes) {
  digest id = digest::of(std::string_view("x"));
  for (std::uint64_t seed = 1; seed < 2000; ++seed) {
    auto bytes = testing_util::make_bytes(seed % 97, seed);
    std::string s(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (!s.empty()) s[0] = static_cast<char>(kFormatVersion);
    auto o = decode_object(id, s);
    if (!o) {
      EXPECT_TRUE(fails_with(o, errc::corrupt));
    }
    auto e = decode_entry("k", s);
    if (!e) {
      EXPECT_TRUE(fails_with(e, errc::corrupt));
    }
  }
  // A huge attribute count must not become a huge allocation.
  std::string ent = encode_entry(entry{});
  ent.replace(ent.size() - 4, 4, "\xff\xff\xff\xff");
  EXPECT_TRUE(fails_with(decode_entry("k", ent), errc::corrupt));
}

TEST(CacheCodecTest, KeysSortByAccessTimeThenDigest) {
  digest a = digest::of(std::string_view("a"));
  digest b = digest::of(std::string_view("b"));
  EXPECT_LT(lru_key(1, b), lru_key(2, a));
  EXPECT_LT(lru_key(256, a), lru_key(257, a));
  EXPECT_LT(chunk_key(a, 255), chunk_key(a, 256));
  std::int64_t ms = 0;
  digest back;
  ASSERT_TRUE(parse_lru_key(lru_key(1700000000123, a), ms, back));
  EXPECT_EQ(ms, 1700000000123);
  EXPECT_EQ(back, a);
  std::uint32_t index = 0;
  ASSERT_TRUE(parse_chunk_key(chunk_key(b, 70000), back, index));
  EXPECT_EQ(index, 70000u);
  EXPECT_EQ(back, b);
  EXPECT_FALSE(parse_chunk_key("short", back, index));
}

TEST(CacheCodecTest, ChunkCounts) {
  EXPECT_EQ(chunk_count_for(0), 0u);
  EXPECT_EQ(chunk_count_for(1), 1u);
  EXPECT_EQ(chunk_count_for(kChunkSize), 1u);
  EXPECT_EQ(chunk_count_for(kChunkSize + 1), 2u);
}

TEST(CacheCodecTest, HumanSizes) {
  EXPECT_EQ(human_size(17), "17 bytes");
  EXPECT_EQ(human_size(2048), "2 KiB");
  EXPECT_EQ(human_size(std::uint64_t{8} << 30), "8 GiB");
  EXPECT_EQ(human_size(1536 * 1024), "1.5 MiB");
}

}  // namespace
}  // namespace pantry::cache::detail
