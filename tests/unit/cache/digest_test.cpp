#include "pantry/cache/digest.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <string>
#include <unordered_set>

namespace pantry::cache {
namespace {

using testing_util::fails_with;
using testing_util::ok;

constexpr std::string_view kEmptyHex =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr std::string_view kAbcHex =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(CacheDigestTest, OfKnownInputs) {
  EXPECT_EQ(digest::of(std::string_view()).hex(), kEmptyHex);
  EXPECT_EQ(digest::of(std::string_view("abc")).hex(), kAbcHex);
}

TEST(CacheDigestTest, ParseRoundTrips) {
  auto d = digest::parse("sha256:" + std::string(kAbcHex));
  ASSERT_TRUE(ok(d));
  EXPECT_EQ(d->str(), "sha256:" + std::string(kAbcHex));
  EXPECT_EQ(*d, digest::of(std::string_view("abc")));
  EXPECT_EQ(d->short_str(), "sha256:ba7816bf8f01…");
}

TEST(CacheDigestTest, ParseHexAcceptsEitherCase) {
  std::string upper(kAbcHex);
  for (char& c : upper)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto a = digest::parse_hex(upper);
  auto b = digest::parse_hex(kAbcHex);
  ASSERT_TRUE(ok(a));
  ASSERT_TRUE(ok(b));
  EXPECT_EQ(*a, *b);
}

TEST(CacheDigestTest, ParseRejectsUppercaseInOciForm) {
  std::string upper(kAbcHex);
  upper[0] = 'B';
  auto d = digest::parse("sha256:" + upper);
  ASSERT_TRUE(fails_with(d, errc::invalid_argument));
  EXPECT_NE(d.error().message.find("lowercase"), std::string::npos) << d.error().message;
}

TEST(CacheDigestTest, ParseRejectsOtherAlgorithms) {
  auto d = digest::parse("sha512:" + std::string(kAbcHex));
  ASSERT_TRUE(fails_with(d, errc::invalid_argument));
  EXPECT_NE(d.error().message.find("sha512"), std::string::npos) << d.error().message;
}

TEST(CacheDigestTest, ParseRejectsMissingPrefix) {
  EXPECT_TRUE(fails_with(digest::parse(kAbcHex), errc::invalid_argument));
  EXPECT_TRUE(fails_with(digest::parse(""), errc::invalid_argument));
}

TEST(CacheDigestTest, ParseRejectsWrongLength) {
  auto d = digest::parse("sha256:" + std::string(kAbcHex.substr(1)));
  ASSERT_TRUE(fails_with(d, errc::invalid_argument));
  EXPECT_NE(d.error().message.find("63"), std::string::npos) << d.error().message;
  EXPECT_TRUE(
      fails_with(digest::parse("sha256:" + std::string(kAbcHex) + "0"), errc::invalid_argument));
}

TEST(CacheDigestTest, ParseRejectsNonHex) {
  std::string bad(kAbcHex);
  bad[10] = 'g';
  auto d = digest::parse("sha256:" + bad);
  ASSERT_TRUE(fails_with(d, errc::invalid_argument));
  EXPECT_NE(d.error().message.find(bad), std::string::npos)
      << "the message should quote the input: " << d.error().message;
}

TEST(CacheDigestTest, HasherMatchesOneShotAndResets) {
  auto bytes = testing_util::make_bytes(100000, 7);
  hasher h;
  h.update(std::span(bytes).first(1));
  h.update(std::span(bytes).subspan(1, 50000));
  h.update(std::span(bytes).subspan(50001));
  EXPECT_EQ(h.finish(), digest::of(bytes));
  EXPECT_EQ(h.finish().hex(), kEmptyHex) << "finish() must reset the hasher";
}

TEST(CacheDigestTest, HashSpreadsDigests) {
  std::unordered_set<digest, digest_hash> set;
  for (int i = 0; i < 100; ++i)
    set.insert(digest::of(std::to_string(i)));
  EXPECT_EQ(set.size(), 100u);
}

}  // namespace
}  // namespace pantry::cache
