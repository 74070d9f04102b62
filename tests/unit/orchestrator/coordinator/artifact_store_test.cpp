#include "pantry/orchestrator/coordinator/artifact_store.h"

#include "cache_fixture.h"
#include "unit/cache/test_util.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using cache::testing_util::fails_with;
using cache::testing_util::make_bytes;
using cache::testing_util::ok;

constexpr std::uint64_t kDay = 86400;

class ArtifactStoreTest : public cache_store_test {
 protected:
  std::shared_ptr<artifact_store> open_artifacts(artifact_limits limits = {}) {
    auto s = artifact_store::open(cache_, limits);
    EXPECT_TRUE(ok(s));
    return s ? *s : nullptr;
  }

  // A file of `size` pseudo-random bytes (stands in for a tar: the store does not look inside).
  std::filesystem::path make_file(std::string name, std::size_t size, std::uint64_t seed) {
    auto path = dir_ / name;
    auto bytes = make_bytes(size, seed);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(size));
    return path;
  }

  static std::vector<std::byte> read_whole(cache::blob_reader& r) {
    std::vector<std::byte> out(r.size());
    auto n = r.read(0, out);
    EXPECT_TRUE(ok(n));
    return out;
  }
};

TEST_F(ArtifactStoreTest, PutThenGetReturnsTheSameBytesAsAPinnedBlob) {
  auto artifacts = open_artifacts();
  auto file = make_file("a.tar", 3 << 20, 1);  // several store chunks
  auto info = artifacts->put(1, file);
  ASSERT_TRUE(ok(info));
  EXPECT_EQ(info->size, 3u << 20);
  auto reader = artifacts->get(1);
  ASSERT_TRUE(ok(reader));
  EXPECT_EQ(read_whole(*reader), make_bytes(3 << 20, 1));
  EXPECT_TRUE(reader->info().pinned) << "never evicted by the cache quota";
  EXPECT_TRUE(fails_with(artifacts->get(2), errc::not_found));

  // Survives a reopen.
  reader = {};
  artifacts.reset();
  reopen_cache();
  auto again = open_artifacts();
  auto kept = again->info(1);
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->id, info->id);
  EXPECT_EQ(again->total_bytes(), 3u << 20);
}

TEST_F(ArtifactStoreTest, FileOverTheLimitIsRefusedNamingBothSizes) {
  artifact_limits limits;
  limits.max_job = 1 << 20;
  auto artifacts = open_artifacts(limits);
  auto r = artifacts->put(1, make_file("big.tar", (1 << 20) + 1, 2));
  ASSERT_TRUE(fails_with(r, errc::quota_exceeded));
  EXPECT_NE(r.error().message.find("over the limit of 1MiB"), std::string::npos)
      << r.error().message;
  EXPECT_FALSE(artifacts->info(1));
  auto stats = cache_->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 0u) << "nothing stored";
  EXPECT_TRUE(ok(artifacts->put(1, make_file("fits.tar", 1 << 20, 3))));
  EXPECT_TRUE(fails_with(artifacts->put(2, dir_ / "missing.tar"), errc::not_found));
}

TEST_F(ArtifactStoreTest, SharedBlobStaysUntilTheLastJobGoes) {
  auto artifacts = open_artifacts();
  auto file = make_file("same.tar", 100000, 4);
  auto a = artifacts->put(1, file);
  auto b = artifacts->put(2, file);
  ASSERT_TRUE(ok(a));
  ASSERT_TRUE(ok(b));
  EXPECT_EQ(a->id, b->id);
  ASSERT_TRUE(ok(artifacts->remove(1)));
  EXPECT_TRUE(ok(artifacts->get(2))) << "job 2 still names the blob";
  ASSERT_TRUE(ok(artifacts->remove(2)));
  EXPECT_TRUE(fails_with(cache_->stat_blob(a->id), errc::not_found));
  EXPECT_TRUE(fails_with(artifacts->remove(2), errc::not_found));
}

TEST_F(ArtifactStoreTest, PruneDropsOldThenOldestOverTheTotal) {
  artifact_limits limits;
  limits.keep_for = std::chrono::seconds(10 * kDay);
  limits.max_total = 250000;
  auto artifacts = open_artifacts(limits);
  for (job_id j = 1; j <= 3; ++j) {
    ASSERT_TRUE(ok(artifacts->put(j, make_file(std::to_string(j) + ".tar", 100000, j))));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto r = artifacts->prune(clock::now());
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{1}));
  EXPECT_EQ(r->bytes, 100000u);
  EXPECT_EQ(artifacts->total_bytes(), 200000u);

  r = artifacts->prune(clock::now() + std::chrono::seconds(11 * kDay));
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->removed, (std::vector<job_id>{2, 3}));
  auto stats = cache_->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 0u) << "the blobs went with their jobs";
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
