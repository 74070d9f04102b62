#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/wheel.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace pantry::registry::pypi {
namespace {

template <class T>
::testing::AssertionResult ok(const result<T>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << r.error().message;
}

template <class T>
::testing::AssertionResult fails_mentioning(const result<T>& r, std::string_view what) {
  if (r) return ::testing::AssertionFailure() << "succeeded; expected an error about " << what;
  if (r.error().message.find(what) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message \"" << r.error().message << "\" does not mention \"" << what << "\"";
  }
  return ::testing::AssertionSuccess();
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// A zip made in memory with libarchive: entries in order, deflated unless `stored`.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                     bool stored = false) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  if (stored) archive_write_set_format_option(a, "zip", "compression", "store");
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](struct archive*, void* data, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& [name, content] : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A byte_source over `data` that counts what it hands out.
struct counting_source {
  const std::string& data;
  std::uint64_t bytes_read = 0;
  int calls = 0;

  byte_source source() {
    return byte_source{data.size(), [this](std::uint64_t offset, std::span<std::byte> out) {
                         ++calls;
                         const std::size_t n =
                             std::min<std::size_t>(out.size(), data.size() - offset);
                         std::memcpy(out.data(), data.data() + offset, n);
                         bytes_read += n;
                         return result<std::size_t>(n);
                       }};
  }
};

constexpr std::string_view kMetadata =
    "Metadata-Version: 2.1\nName: Foo.Bar\nVersion: 1.0\nRequires-Dist: six\n\nA description.\n";

TEST(PypiWheelTest, ExtractsMetadataOfRealWheels) {
  const std::filesystem::path dir = "/usr/share/python-wheels";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) GTEST_SKIP() << dir << " is absent";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string filename = entry.path().filename().string();
    const auto dist = parse_dist_filename(filename, "");
    if (!dist || !dist->wheel) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string wheel((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(wheel.empty()) << entry.path();

    auto from_memory = extract_wheel_metadata(bytes_of(wheel), filename);
    ASSERT_TRUE(ok(from_memory)) << filename;
    EXPECT_EQ(from_memory->rfind("Metadata-Version: ", 0), 0u) << filename << ":\n" << *from_memory;
    EXPECT_NE(from_memory->find("\nName: " + dist->project + "\n"), std::string::npos)
        << filename << ":\n"
        << from_memory->substr(0, 300);
    EXPECT_NE(from_memory->find("\nVersion: " + dist->version + "\n"), std::string::npos)
        << filename;

    counting_source counter{wheel};
    auto from_source = extract_wheel_metadata(counter.source(), filename);
    ASSERT_TRUE(ok(from_source)) << filename;
    EXPECT_EQ(*from_source, *from_memory) << filename;
    // No byte is read twice over (the central directory once, then entries in order).
    EXPECT_LE(counter.bytes_read, wheel.size() + 64 * 1024)
        << filename << ": " << counter.calls << " reads";
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no wheels in " << dir;
}

TEST(PypiWheelTest, ReadsOnlyWhatItNeedsPastBigEntries) {
  std::string big(8 * 1024 * 1024, '\0');
  std::mt19937_64 rng(42);
  for (char& c : big)
    c = static_cast<char>(rng());
  const std::string zip = make_zip({{"foo_bar/big.bin", big},
                                    {"foo_bar/__init__.py", ""},
                                    {"foo_bar-1.0.dist-info/METADATA", std::string(kMetadata)},
                                    {"foo_bar-1.0.dist-info/RECORD", "x"}},
                                   /*stored=*/true);
  counting_source counter{zip};
  auto md = extract_wheel_metadata(counter.source(), "Foo.Bar-1.0-py3-none-any.whl");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(*md, kMetadata);
  EXPECT_LT(counter.bytes_read, 512u * 1024) << counter.calls << " reads of " << zip.size();
}

TEST(PypiWheelTest, MatchesTheDistInfoNamedByTheFile) {
  const std::string zip = make_zip({{"other-2.0.dist-info/METADATA", "Name: other\n"},
                                    {"foo_bar-1.0.dist-info/METADATA", std::string(kMetadata)},
                                    {"nested/x-1.0.dist-info/METADATA", "Name: nested\n"}});
  auto md = extract_wheel_metadata(bytes_of(zip), "foo_bar-1.0-py3-none-any.whl");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(*md, kMetadata);
  // Case and separators do not matter.
  md = extract_wheel_metadata(bytes_of(zip), "Foo.Bar-1.0-1-py3-none-any.whl");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(*md, kMetadata);
}

TEST(PypiWheelTest, FallsBackToTheOnlyDistInfo) {
  const std::string zip = make_zip({{"pkg/__init__.py", ""},
                                    {"Foo_Bar-1.0.0.dist-info/METADATA", std::string(kMetadata)},
                                    {"Foo_Bar-1.0.0.dist-info/WHEEL", "Wheel-Version: 1.0\n"}});
  auto md = extract_wheel_metadata(bytes_of(zip), "foo_bar-1.0-py3-none-any.whl");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(*md, kMetadata);
  md = extract_wheel_metadata(bytes_of(zip), "not-a-wheel-name.zip");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(*md, kMetadata);
}

TEST(PypiWheelTest, RefusesAmbiguousOrMissingMetadata) {
  const std::string two = make_zip(
      {{"a-1.0.dist-info/METADATA", "Name: a\n"}, {"b-1.0.dist-info/METADATA", "Name: b\n"}});
  auto md = extract_wheel_metadata(bytes_of(two), "c-1.0-py3-none-any.whl");
  EXPECT_TRUE(fails_mentioning(md, "several dist-info directories"));
  EXPECT_TRUE(fails_mentioning(md, "c-1.0-py3-none-any.whl"));

  const std::string none = make_zip({{"a/METADATA", "x"}, {"a-1.0.dist-info/RECORD", "x"}});
  EXPECT_TRUE(fails_mentioning(extract_wheel_metadata(bytes_of(none), "a-1.0-py3-none-any.whl"),
                               "no top-level *.dist-info/METADATA"));
}

TEST(PypiWheelTest, RefusesAZipBomb) {
  const std::string bomb =
      make_zip({{"a-1.0.dist-info/METADATA", std::string(kMaxMetadataSize + 1, 'A')}});
  ASSERT_LT(bomb.size(), 100u * 1024) << "deflate should squeeze this";
  auto md = extract_wheel_metadata(bytes_of(bomb), "a-1.0-py3-none-any.whl");
  EXPECT_TRUE(fails_mentioning(md, "limit of 16777216"));
  EXPECT_TRUE(md.error().is(errc::invalid_argument)) << md.error().message;

  const std::string at_limit =
      make_zip({{"a-1.0.dist-info/METADATA", std::string(kMaxMetadataSize, 'A')}});
  md = extract_wheel_metadata(bytes_of(at_limit), "a-1.0-py3-none-any.whl");
  ASSERT_TRUE(ok(md));
  EXPECT_EQ(md->size(), kMaxMetadataSize);
}

TEST(PypiWheelTest, RefusesGarbage) {
  const std::string empty;
  EXPECT_TRUE(fails_mentioning(extract_wheel_metadata(bytes_of(empty), "x-1.0-py3-none-any.whl"),
                               "x-1.0-py3-none-any.whl"));
  std::string garbage(100000, '\0');
  std::mt19937_64 rng(7);
  for (char& c : garbage)
    c = static_cast<char>(rng());
  auto md = extract_wheel_metadata(bytes_of(garbage), "x-1.0-py3-none-any.whl");
  ASSERT_FALSE(md);
  EXPECT_TRUE(md.error().is(errc::invalid_argument)) << md.error().message;
  EXPECT_TRUE(fails_mentioning(md, "cannot extract METADATA from wheel x-1.0-py3-none-any.whl"));

  // A wheel cut short loses its central directory.
  const std::string zip = make_zip({{"x-1.0.dist-info/METADATA", std::string(kMetadata)}});
  const std::string half = zip.substr(0, zip.size() / 2);
  EXPECT_FALSE(extract_wheel_metadata(bytes_of(half), "x-1.0-py3-none-any.whl"));

  // A METADATA whose bytes are damaged fails its CRC or its inflate.
  std::string big_md(20000, 'x');
  for (std::size_t i = 0; i < big_md.size(); i += 7)
    big_md[i] = static_cast<char>('a' + i % 26);
  std::string damaged = make_zip({{"x-1.0.dist-info/METADATA", big_md}});
  for (std::size_t i = 60; i < 200; ++i)
    damaged[i] = static_cast<char>(damaged[i] ^ 0x5a);
  EXPECT_FALSE(extract_wheel_metadata(bytes_of(damaged), "x-1.0-py3-none-any.whl"));
}

TEST(PypiWheelTest, PassesOnTheSourcesError) {
  const std::string zip = make_zip({{"x-1.0.dist-info/METADATA", std::string(kMetadata)}});
  byte_source failing{zip.size(), [](std::uint64_t offset, std::span<std::byte>) {
                        return result<std::size_t>(pantry::error(
                            errc::io_error, "cache: chunk " + std::to_string(offset) + " gone"));
                      }};
  auto md = extract_wheel_metadata(failing, "x-1.0-py3-none-any.whl");
  ASSERT_FALSE(md);
  EXPECT_TRUE(md.error().is(errc::io_error)) << md.error().message;
  EXPECT_NE(md.error().message.find("cache: chunk"), std::string::npos) << md.error().message;

  byte_source short_reads{
      zip.size() + 10, [&](std::uint64_t offset, std::span<std::byte> out) {
        const std::size_t n =
            offset >= zip.size() ? 0 : std::min<std::size_t>(out.size(), zip.size() - offset);
        std::memcpy(out.data(), zip.data() + offset, n);
        return result<std::size_t>(n);
      }};
  md = extract_wheel_metadata(short_reads, "x-1.0-py3-none-any.whl");
  ASSERT_FALSE(md);
  EXPECT_TRUE(md.error().is(errc::io_error)) << md.error().message;

  EXPECT_FALSE(extract_wheel_metadata(byte_source{}, "x-1.0-py3-none-any.whl"));
}

}  // namespace
}  // namespace pantry::registry::pypi
