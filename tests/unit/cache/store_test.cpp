#include "pantry/cache/store.h"
#include "pantry/cache/succession.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pantry::cache {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing_util::as_bytes;
using testing_util::fails_with;
using testing_util::make_bytes;
using testing_util::ok;

constexpr std::string_view kMedia = "application/octet-stream";

// Direct access to the LMDB file, for the states a store never produces by itself (a corrupt
// chunk) and for checks below the store's API (chunks left behind). Only while no store of this
// process has the dir open: LMDB forbids two handles on one environment in a process.
class raw_lmdb {
 public:
  explicit raw_lmdb(const fs::path& data_dir) {
    EXPECT_EQ(mdb_env_create(&env_), 0);
    mdb_env_set_maxdbs(env_, 8);
    int rc = mdb_env_open(env_, (data_dir / "cache").c_str(), MDB_NOTLS, 0644);
    EXPECT_EQ(rc, 0) << mdb_strerror(rc);
    rc = mdb_txn_begin(env_, nullptr, 0, &txn_);
    EXPECT_EQ(rc, 0) << mdb_strerror(rc);
  }
  ~raw_lmdb() {
    if (txn_ != nullptr) mdb_txn_commit(txn_);
    mdb_env_close(env_);
  }

  MDB_dbi db(const char* name) {
    MDB_dbi dbi = 0;
    int rc = mdb_dbi_open(txn_, name, 0, &dbi);
    EXPECT_EQ(rc, 0) << name << ": " << mdb_strerror(rc);
    return dbi;
  }

  std::size_t count(const char* name) {
    MDB_stat st{};
    mdb_stat(txn_, db(name), &st);
    return st.ms_entries;
  }

  static std::string chunk_key(const digest& id, std::uint32_t index) {
    std::string key(reinterpret_cast<const char*>(id.bytes().data()), digest::kSize);
    for (int shift = 24; shift >= 0; shift -= 8)
      key.push_back(static_cast<char>(index >> shift));
    return key;
  }

  // The chunk's bytes, or nullopt.
  std::optional<std::string> get_chunk(const digest& id, std::uint32_t index) {
    std::string key = chunk_key(id, index);
    MDB_val k{key.size(), key.data()};
    MDB_val v;
    if (mdb_get(txn_, db("blobs"), &k, &v) != 0) return std::nullopt;
    return std::string(static_cast<const char*>(v.mv_data), v.mv_size);
  }

  void put(const char* name, std::string key, std::string value) {
    MDB_val k{key.size(), key.data()};
    MDB_val v{value.size(), value.data()};
    int rc = mdb_put(txn_, db(name), &k, &v, 0);
    EXPECT_EQ(rc, 0) << mdb_strerror(rc);
  }

  void del(const char* name, std::string key) {
    MDB_val k{key.size(), key.data()};
    int rc = mdb_del(txn_, db(name), &k, nullptr);
    EXPECT_EQ(rc, 0) << mdb_strerror(rc);
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
};

// Runs `child` in a forked process and returns its exit status. Fork before any store of this
// process is open: a child must not inherit an open LMDB environment.
int run_child(const std::function<int()>& child, int ready_fd = -1) {
  pid_t pid = fork();
  if (pid == 0) {
    if (ready_fd >= 0) {
      char c;
      if (read(ready_fd, &c, 1) != 1) _exit(90);
    }
    _exit(child());
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pantry-cache-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  options opts(std::uint64_t max_size = 0) const {
    options o;
    o.data_dir = dir_;
    o.max_size = max_size;
    o.durable = false;
    // Tests flush access times explicitly, so that the LRU order they check is deterministic.
    o.access_flush_interval = std::chrono::hours(1);
    return o;
  }

  std::shared_ptr<store> open(const options& o) {
    auto s = store::open(o);
    EXPECT_TRUE(ok(s));
    return s ? *s : nullptr;
  }

  // Writes `bytes` through a blob_writer in pieces of `piece` bytes.
  static result<object_info> write_blob(store& s, std::span<const std::byte> bytes,
                                        std::size_t piece = 100000,
                                        std::optional<std::uint64_t> expected = std::nullopt,
                                        bool pinned = false) {
    digest id = digest::of(bytes);
    auto w = s.begin_blob(id, std::string(kMedia), expected, pinned);
    if (!w) return w.error();
    for (std::size_t pos = 0; pos < bytes.size(); pos += piece) {
      auto r = w->write(bytes.subspan(pos, std::min(piece, bytes.size() - pos)));
      if (!r) return r.error();
    }
    return w->commit();
  }

  static std::vector<std::byte> read_all(blob_reader& r) {
    std::vector<std::byte> out;
    auto n = r.visit(0, r.size(), [&](std::span<const std::byte> piece) {
      out.insert(out.end(), piece.begin(), piece.end());
      return piece.size();
    });
    EXPECT_TRUE(ok(n));
    return out;
  }

  // Reads blob `id` whole; empty optional if it cannot be opened.
  static std::optional<std::vector<std::byte>> read_blob(store& s, const digest& id) {
    auto r = s.open_blob(id);
    if (!r) return std::nullopt;
    return read_all(*r);
  }

  fs::path dir_;
};

TEST_F(CacheTest, WritesAndReadsBlobsOfEverySize) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  const std::size_t sizes[] = {
      0, 1, 1000, kChunkSize - 1, kChunkSize, kChunkSize + 1, 3 * kChunkSize + 12345};
  std::uint64_t seed = 1;
  for (std::size_t size : sizes) {
    auto bytes = make_bytes(size, seed++);
    auto info = write_blob(*s, bytes, 77777, size);
    ASSERT_TRUE(ok(info)) << "size " << size;
    EXPECT_EQ(info->id, digest::of(bytes));
    EXPECT_EQ(info->size, size);
    EXPECT_EQ(info->media_type, kMedia);
    EXPECT_EQ(info->chunk_count, (size + kChunkSize - 1) / kChunkSize) << "size " << size;
    EXPECT_FALSE(info->pinned);

    auto r = s->open_blob(info->id);
    ASSERT_TRUE(ok(r)) << "size " << size;
    EXPECT_EQ(r->size(), size);
    EXPECT_EQ(r->info().chunk_count, info->chunk_count);
    EXPECT_TRUE(read_all(*r) == bytes) << "size " << size;

    auto st = s->stat_blob(info->id);
    ASSERT_TRUE(ok(st));
    EXPECT_EQ(st->size, size);
  }
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, std::size(sizes));
}

TEST_F(CacheTest, PutBlobStoresOnceAndReturnsTheDigest) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  std::string_view manifest = R"({"schemaVersion":2})";
  auto d = s->put_blob(as_bytes(manifest), "application/vnd.oci.image.manifest.v1+json");
  ASSERT_TRUE(ok(d));
  EXPECT_EQ(*d, digest::of(manifest));
  auto again = s->put_blob(as_bytes(manifest), "application/vnd.oci.image.manifest.v1+json");
  ASSERT_TRUE(ok(again));
  EXPECT_EQ(*again, *d);
  auto info = s->stat_blob(*d);
  ASSERT_TRUE(ok(info));
  EXPECT_EQ(info->media_type, "application/vnd.oci.image.manifest.v1+json");
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 1u);
  EXPECT_EQ(stats->bytes, manifest.size());
}

TEST_F(CacheTest, VisitsRangesAcrossChunkBoundaries) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(2 * kChunkSize + 100, 5);
  auto info = write_blob(*s, bytes);
  ASSERT_TRUE(ok(info));
  auto r = s->open_blob(info->id);
  ASSERT_TRUE(ok(r));

  struct range {
    std::uint64_t offset, length;
  } const ranges[] = {{0, 1},
                      {kChunkSize - 10, 20},
                      {kChunkSize, kChunkSize},
                      {kChunkSize - 1, kChunkSize + 2},
                      {2 * kChunkSize + 99, 1},
                      {5, 2 * kChunkSize + 95},
                      {bytes.size(), 0}};
  for (const auto& [offset, length] : ranges) {
    std::vector<std::byte> got;
    int pieces = 0;
    auto n = r->visit(offset, length, [&](std::span<const std::byte> piece) {
      ++pieces;
      got.insert(got.end(), piece.begin(), piece.end());
      return piece.size();
    });
    ASSERT_TRUE(ok(n)) << "offset " << offset << " length " << length;
    EXPECT_EQ(*n, length) << "offset " << offset;
    ASSERT_EQ(got.size(), length) << "offset " << offset;
    EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes.begin() + static_cast<long>(offset)))
        << "offset " << offset << " length " << length;
    EXPECT_LE(pieces, 3) << "pieces come whole from the chunks";
  }

  std::vector<std::byte> buf(50);
  auto got = r->read(kChunkSize - 25, buf);
  ASSERT_TRUE(ok(got));
  EXPECT_EQ(*got, 50u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), bytes.begin() + kChunkSize - 25));
  got = r->read(bytes.size() - 10, buf);
  ASSERT_TRUE(ok(got));
  EXPECT_EQ(*got, 10u);
  got = r->read(bytes.size() + 10, buf);
  ASSERT_TRUE(ok(got));
  EXPECT_EQ(*got, 0u);
}

TEST_F(CacheTest, VisitStopsWhenTheSinkTakesLess) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(2 * kChunkSize, 6);
  auto info = write_blob(*s, bytes);
  ASSERT_TRUE(ok(info));
  auto r = s->open_blob(info->id);
  ASSERT_TRUE(ok(r));
  int calls = 0;
  auto n = r->visit(100, bytes.size() - 100, [&](std::span<const std::byte> piece) {
    ++calls;
    EXPECT_EQ(piece.size(), kChunkSize - 100);
    return std::size_t{1234};
  });
  ASSERT_TRUE(ok(n));
  EXPECT_EQ(*n, 1234u);
  EXPECT_EQ(calls, 1);

  n = r->visit(0, bytes.size(), [&](std::span<const std::byte> piece) { return piece.size() + 5; });
  ASSERT_TRUE(ok(n));
  EXPECT_EQ(*n, bytes.size()) << "a sink cannot consume more than it was offered";
}

TEST_F(CacheTest, VisitOutsideTheBlobIsInvalid) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto info = write_blob(*s, make_bytes(1000, 1));
  ASSERT_TRUE(ok(info));
  auto r = s->open_blob(info->id);
  ASSERT_TRUE(ok(r));
  auto sink = [](std::span<const std::byte> p) { return p.size(); };
  EXPECT_TRUE(fails_with(r->visit(1001, 0, sink), errc::invalid_argument));
  EXPECT_TRUE(fails_with(r->visit(500, 501, sink), errc::invalid_argument));
  EXPECT_TRUE(fails_with(r->visit(1, ~std::uint64_t{0}, sink), errc::invalid_argument));
}

TEST_F(CacheTest, ReadOfIncompleteBlobIsNotFound) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(2 * kChunkSize + 5, 8);
  digest id = digest::of(bytes);
  auto w = s->begin_blob(id, std::string(kMedia), bytes.size());
  ASSERT_TRUE(ok(w));
  ASSERT_TRUE(ok(w->write(bytes)));
  ASSERT_TRUE(ok(s->flush()));  // the queued chunks are committed before the flush
  EXPECT_EQ(w->written(), bytes.size());
  EXPECT_EQ(w->committed(), 2 * kChunkSize);

  EXPECT_TRUE(fails_with(s->open_blob(id), errc::not_found));
  EXPECT_TRUE(fails_with(s->stat_blob(id), errc::not_found));
  EXPECT_TRUE(
      fails_with(s->begin_blob(id, std::string(kMedia), bytes.size()), errc::already_exists))
      << "a second writer of the same digest";

  ASSERT_TRUE(ok(w->commit()));
  EXPECT_EQ(w->committed(), bytes.size());
  auto got = read_blob(*s, id);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == bytes);
  EXPECT_TRUE(
      fails_with(s->begin_blob(id, std::string(kMedia), bytes.size()), errc::already_exists));
}

TEST_F(CacheTest, CommitWithWrongDigestStoresNothing) {
  auto bytes = make_bytes(3 * kChunkSize + 10, 9);
  digest wrong = digest::of(std::string_view("something else"));
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    auto w = s->begin_blob(wrong, std::string(kMedia), bytes.size());
    ASSERT_TRUE(ok(w));
    ASSERT_TRUE(ok(w->write(bytes)));
    auto c = w->commit();
    ASSERT_TRUE(fails_with(c, errc::digest_mismatch));
    EXPECT_NE(c.error().message.find(digest::of(bytes).str()), std::string::npos)
        << "the message names what the bytes hash to: " << c.error().message;
    EXPECT_TRUE(fails_with(w->commit(), errc::digest_mismatch)) << "commit twice: same result";
    EXPECT_TRUE(fails_with(s->open_blob(wrong), errc::not_found));
    EXPECT_TRUE(fails_with(s->open_blob(digest::of(bytes)), errc::not_found));
    // The digest is free again.
    auto again = write_blob(*s, bytes);
    ASSERT_TRUE(ok(again));
    ASSERT_TRUE(ok(s->remove_blob(again->id)));
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 0u);
  EXPECT_EQ(raw.count("objects"), 0u);
  EXPECT_EQ(raw.count("lru"), 0u);
}

TEST_F(CacheTest, CommitWithWrongSizeStoresNothing) {
  auto bytes = make_bytes(kChunkSize + 10, 10);
  digest id = digest::of(bytes);
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    auto w = s->begin_blob(id, std::string(kMedia), bytes.size() + 1);
    ASSERT_TRUE(ok(w));
    ASSERT_TRUE(ok(w->write(bytes)));
    auto c = w->commit();
    ASSERT_TRUE(fails_with(c, errc::size_mismatch));
    EXPECT_NE(c.error().message.find(std::to_string(bytes.size() + 1)), std::string::npos)
        << c.error().message;

    auto w2 = s->begin_blob(id, std::string(kMedia), bytes.size() - 1);
    ASSERT_TRUE(ok(w2));
    EXPECT_TRUE(fails_with(w2->write(bytes), errc::size_mismatch))
        << "more bytes than expected fail at once";
    EXPECT_TRUE(fails_with(w2->commit(), errc::size_mismatch));
    EXPECT_TRUE(fails_with(s->open_blob(id), errc::not_found));
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 0u);
  EXPECT_EQ(raw.count("objects"), 0u);
}

TEST_F(CacheTest, AbortRemovesChunks) {
  auto bytes = make_bytes(3 * kChunkSize + 1, 11);
  digest id = digest::of(bytes);
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    {
      auto w = s->begin_blob(id, std::string(kMedia), std::nullopt);
      ASSERT_TRUE(ok(w));
      ASSERT_TRUE(ok(w->write(bytes)));
      ASSERT_TRUE(ok(s->flush()));
      EXPECT_EQ(w->committed(), 3 * kChunkSize);
      w->abort();
      w->abort();
      EXPECT_TRUE(fails_with(w->commit(), errc::cancelled));
      EXPECT_TRUE(fails_with(w->write(bytes), errc::invalid_argument));
    }
    {
      // Dropping a writer without commit aborts too.
      auto w = s->begin_blob(id, std::string(kMedia), std::nullopt);
      ASSERT_TRUE(ok(w)) << "the digest is free once the abort is done";
      ASSERT_TRUE(ok(w->write(bytes)));
    }
    ASSERT_TRUE(ok(s->flush()));
    EXPECT_TRUE(fails_with(s->open_blob(id), errc::not_found));
    // Moving a writer over another aborts the one overwritten.
    auto a = s->begin_blob(id, std::string(kMedia), std::nullopt);
    ASSERT_TRUE(ok(a));
    ASSERT_TRUE(ok(a->write(bytes)));
    *a = blob_writer();
    auto b = s->begin_blob(id, std::string(kMedia), std::nullopt);
    EXPECT_TRUE(ok(b));
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 0u);
}

TEST_F(CacheTest, CommitAsyncAndProgress) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(3 * kChunkSize + 7, 12);
  auto w = s->begin_blob(digest::of(bytes), std::string(kMedia), std::nullopt);
  ASSERT_TRUE(ok(w));
  std::mutex m;
  std::vector<std::uint64_t> seen;
  w->on_progress([&](std::uint64_t c) {
    std::lock_guard g(m);
    seen.push_back(c);
  });
  ASSERT_TRUE(ok(w->write(bytes)));
  std::promise<result<object_info>> p;
  w->commit_async([&](result<object_info> r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(r->size, bytes.size());
  std::lock_guard g(m);
  std::vector<std::uint64_t> want = {kChunkSize, 2 * kChunkSize, 3 * kChunkSize, bytes.size()};
  EXPECT_EQ(seen, want);
}

TEST_F(CacheTest, ReadersStreamTheCommittedPartWhileAWriterWrites) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(6 * kChunkSize + 333, 13);
  digest id = digest::of(bytes);
  auto w = s->begin_blob(id, std::string(kMedia), bytes.size());
  ASSERT_TRUE(ok(w));

  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<std::uint64_t> max_seen{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        std::uint64_t c = w->committed();
        if (c % kChunkSize != 0 && c != bytes.size()) ++bad;
        std::uint64_t offset = c == 0 ? 0 : (c * (t + 1) / 7) % c;
        std::uint64_t pos = offset;
        auto n = w->visit_committed(offset, c - offset, [&](std::span<const std::byte> piece) {
          if (!std::equal(piece.begin(), piece.end(), bytes.begin() + static_cast<long>(pos))) {
            ++bad;
          }
          pos += piece.size();
          return piece.size();
        });
        if (!n || *n != c - offset) ++bad;
        std::uint64_t prev = max_seen.load();
        while (c > prev && !max_seen.compare_exchange_weak(prev, c)) {
        }
        std::this_thread::yield();
      }
      // After the commit, the whole blob through a reader.
      auto got = read_blob(*s, id);
      if (!got || *got != bytes) ++bad;
    });
  }
  for (std::size_t pos = 0; pos < bytes.size(); pos += 65536) {
    ASSERT_TRUE(ok(
        w->write(std::span(bytes).subspan(pos, std::min<std::size_t>(65536, bytes.size() - pos)))));
    if (pos % (2 * kChunkSize) < 65536) std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(ok(w->commit()));
  std::this_thread::sleep_for(5ms);
  done = true;
  for (auto& t : readers)
    t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GE(max_seen.load(), 3 * kChunkSize) << "readers should have seen the blob grow";
  EXPECT_TRUE(fails_with(w->visit_committed(0, bytes.size() + 1,
                                            [](std::span<const std::byte> p) { return p.size(); }),
                         errc::invalid_argument));
}

TEST_F(CacheTest, EvictsLeastRecentlyUsedFirst) {
  constexpr std::size_t kBlob = 300000;
  auto s = open(opts(1000000));
  ASSERT_TRUE(s);
  std::vector<digest> ids;
  for (int i = 0; i < 3; ++i) {
    auto info = write_blob(*s, make_bytes(kBlob, 100 + i), 100000, kBlob);
    ASSERT_TRUE(ok(info)) << "blob " << i;
    ids.push_back(info->id);
    std::this_thread::sleep_for(3ms);  // distinct access times (ms)
  }
  // Reading the oldest makes it the newest once access times are flushed.
  ASSERT_TRUE(ok(s->open_blob(ids[0])));
  std::this_thread::sleep_for(3ms);
  ASSERT_TRUE(ok(s->flush()));

  auto d = write_blob(*s, make_bytes(kBlob, 103), 100000, kBlob);
  ASSERT_TRUE(ok(d));
  EXPECT_TRUE(fails_with(s->stat_blob(ids[1]), errc::not_found)) << "blob 1 was the LRU one";
  EXPECT_TRUE(ok(s->stat_blob(ids[0])));
  EXPECT_TRUE(ok(s->stat_blob(ids[2])));

  auto e = write_blob(*s, make_bytes(kBlob, 104), 100000, kBlob);
  ASSERT_TRUE(ok(e));
  EXPECT_TRUE(fails_with(s->stat_blob(ids[2]), errc::not_found)) << "then blob 2";
  EXPECT_TRUE(ok(s->stat_blob(ids[0])));

  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->evictions, 2u);
  EXPECT_EQ(stats->evicted_bytes, 2 * kBlob);
  EXPECT_EQ(stats->objects, 3u);
  EXPECT_EQ(stats->bytes, 3 * kBlob);
  EXPECT_LE(stats->bytes, stats->quota);
  EXPECT_EQ(stats->hits, 1u);
}

TEST_F(CacheTest, StreamedBlobsEvictToStayUnderQuota) {
  // No expected size: the writer reserves quota chunk by chunk.
  auto s = open(opts(5 * kChunkSize));
  ASSERT_TRUE(s);
  std::vector<digest> ids;
  for (int i = 0; i < 4; ++i) {
    auto bytes = make_bytes(2 * kChunkSize + 10, 200 + i);
    auto info = write_blob(*s, bytes, 300000);
    ASSERT_TRUE(ok(info)) << "blob " << i;
    ids.push_back(info->id);
    auto stats = s->get_stats();
    ASSERT_TRUE(ok(stats));
    EXPECT_LE(stats->bytes, stats->quota) << "after blob " << i;
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_TRUE(fails_with(s->stat_blob(ids[0]), errc::not_found));
  EXPECT_TRUE(ok(s->stat_blob(ids[3])));
}

TEST_F(CacheTest, BlobLargerThanQuotaIsRefused) {
  auto s = open(opts(100000));
  ASSERT_TRUE(s);
  auto bytes = make_bytes(200000, 14);
  auto w = s->begin_blob(digest::of(bytes), std::string(kMedia), bytes.size());
  ASSERT_TRUE(fails_with(w, errc::quota_exceeded));
  EXPECT_NE(w.error().message.find(digest::of(bytes).short_str()), std::string::npos)
      << w.error().message;

  // Without an expected size it fails at commit, and nothing is stored.
  auto info = write_blob(*s, bytes);
  ASSERT_TRUE(fails_with(info, errc::quota_exceeded));
  EXPECT_NE(info.error().message.find("quota"), std::string::npos) << info.error().message;
  EXPECT_TRUE(fails_with(s->open_blob(digest::of(bytes)), errc::not_found));
}

TEST_F(CacheTest, StreamLargerThanQuotaFailsMidway) {
  auto bytes = make_bytes(4 * kChunkSize, 15);
  {
    auto s = open(opts(kChunkSize + 1000));
    ASSERT_TRUE(s);
    auto info = write_blob(*s, bytes, 200000);
    ASSERT_TRUE(fails_with(info, errc::quota_exceeded));
    EXPECT_TRUE(fails_with(s->open_blob(digest::of(bytes)), errc::not_found));
    auto small = write_blob(*s, make_bytes(1000, 1));
    EXPECT_TRUE(ok(small)) << "the failed writer's reservation is released";
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 1u) << "only the small blob's chunk is left";
}

TEST_F(CacheTest, BlobBeingReadIsNotEvicted) {
  constexpr std::size_t kBlob = 300000;
  auto s = open(opts(1000000));
  ASSERT_TRUE(s);
  std::vector<digest> ids;
  std::vector<std::vector<std::byte>> data;
  for (int i = 0; i < 3; ++i) {
    data.push_back(make_bytes(kBlob, 300 + i));
    auto info = write_blob(*s, data.back(), 100000, kBlob);
    ASSERT_TRUE(ok(info));
    ids.push_back(info->id);
    std::this_thread::sleep_for(3ms);
  }
  auto reader = s->open_blob(ids[0]);  // the oldest; its access is not flushed
  ASSERT_TRUE(ok(reader));
  ASSERT_TRUE(ok(write_blob(*s, make_bytes(kBlob, 303), 100000, kBlob)));
  EXPECT_TRUE(ok(s->stat_blob(ids[0]))) << "leased: skipped";
  EXPECT_TRUE(fails_with(s->stat_blob(ids[1]), errc::not_found));
  EXPECT_TRUE(read_all(*reader) == data[0]);

  // With every blob in use there is no room.
  auto r2 = s->open_blob(ids[2]);
  auto r3 = s->open_blob(write_blob(*s, make_bytes(1, 1))->id);
  auto all = s->open_blob(digest::of(make_bytes(kBlob, 303)));
  ASSERT_TRUE(ok(r2));
  ASSERT_TRUE(ok(all));
  auto full = write_blob(*s, make_bytes(kBlob, 304), 100000, kBlob);
  ASSERT_TRUE(fails_with(full, errc::quota_exceeded));
  EXPECT_NE(full.error().message.find("being read"), std::string::npos) << full.error().message;

  *reader = blob_reader();
  EXPECT_TRUE(ok(write_blob(*s, make_bytes(kBlob, 304), 100000, kBlob))) << "once released";
  EXPECT_TRUE(fails_with(s->stat_blob(ids[0]), errc::not_found));
}

TEST_F(CacheTest, PinnedBlobsAreNeitherEvictedNorCounted) {
  constexpr std::size_t kBlob = 300000;
  auto s = open(opts(1000000));
  ASSERT_TRUE(s);
  auto pinned = make_bytes(600000, 400);
  auto p = s->put_blob(pinned, std::string(kMedia), true);
  ASSERT_TRUE(ok(p));
  std::this_thread::sleep_for(3ms);
  std::vector<digest> ids;
  for (int i = 0; i < 4; ++i) {
    auto info = write_blob(*s, make_bytes(kBlob, 401 + i), 100000, kBlob);
    ASSERT_TRUE(ok(info)) << "blob " << i;
    ids.push_back(info->id);
    std::this_thread::sleep_for(3ms);
  }
  auto info = s->stat_blob(*p);
  ASSERT_TRUE(ok(info)) << "pinned blob evicted";
  EXPECT_TRUE(info->pinned);
  EXPECT_TRUE(fails_with(s->stat_blob(ids[0]), errc::not_found));
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 4u);
  EXPECT_EQ(stats->pinned_objects, 1u);
  EXPECT_EQ(stats->pinned_bytes, pinned.size());
  EXPECT_EQ(stats->bytes, 3 * kBlob + pinned.size());

  // Unpinned, it joins the quota; pinned again, it leaves it.
  ASSERT_TRUE(ok(s->set_pinned(*p, false)));
  stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->pinned_objects, 0u);
  EXPECT_EQ(stats->pinned_bytes, 0u);
  ASSERT_TRUE(ok(s->set_pinned(*p, true)));
  EXPECT_TRUE(
      fails_with(s->set_pinned(digest::of(std::string_view("nope")), true), errc::not_found));
  // Storing existing bytes with pinned=true pins them.
  ASSERT_TRUE(ok(s->put_blob(make_bytes(kBlob, 404), std::string(kMedia), true)));
  auto pinned_again = s->stat_blob(ids[3]);
  ASSERT_TRUE(ok(pinned_again));
  EXPECT_TRUE(pinned_again->pinned);
}

TEST_F(CacheTest, RemoveBlob) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(2 * kChunkSize + 3, 16);
  auto info = write_blob(*s, bytes);
  ASSERT_TRUE(ok(info));
  auto reader = s->open_blob(info->id);
  ASSERT_TRUE(ok(reader));
  ASSERT_TRUE(ok(s->remove_blob(info->id)));
  EXPECT_TRUE(fails_with(s->stat_blob(info->id), errc::not_found));
  EXPECT_TRUE(fails_with(s->open_blob(info->id), errc::not_found));
  EXPECT_TRUE(fails_with(s->remove_blob(info->id), errc::not_found));
  EXPECT_TRUE(read_all(*reader) == bytes) << "a reader that was open keeps its bytes";
  *reader = blob_reader();
  ASSERT_TRUE(ok(s->flush()));
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 0u);
  EXPECT_EQ(stats->bytes, 0u);
  s.reset();
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 0u) << "chunks go with the last reader";
  EXPECT_EQ(raw.count("lru"), 0u);
}

TEST_F(CacheTest, BlobRemovedWhileReadCanBeStoredAgain) {
  auto bytes = make_bytes(3 * kChunkSize + 9, 33);
  digest id = digest::of(bytes);
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    ASSERT_TRUE(ok(write_blob(*s, bytes)));
    auto reader = s->open_blob(id);
    ASSERT_TRUE(ok(reader));
    ASSERT_TRUE(ok(s->remove_blob(id)));
    ASSERT_TRUE(ok(s->put_blob(bytes, std::string(kMedia))));
    EXPECT_TRUE(read_all(*reader) == bytes);
    *reader =
        blob_reader();  // the last lease of the removed blob must not take the new one's chunks
    ASSERT_TRUE(ok(s->flush()));
    EXPECT_TRUE(read_blob(*s, id) == bytes);
    auto report = s->verify();
    ASSERT_TRUE(ok(report));
    EXPECT_EQ(report->checked, 1u);
    EXPECT_TRUE(report->problems.empty()) << report->problems.front().what;
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 4u);
}

TEST_F(CacheTest, EntriesRoundTripWithTtl) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto now = clock::now();
  entry e;
  e.target = digest::of(std::string_view("page"));
  e.content_type = "text/html";
  e.etag = "W/\"1\"";
  e.last_modified = "Tue, 15 Nov 1994 12:45:26 GMT";
  e.fetched_at = now;
  e.expires_at = now + 10min;
  e.attributes = {{"representation", "gzip"}};
  ASSERT_TRUE(ok(s->put_entry("pypi/main/requests", e)));
  auto got = s->get_entry("pypi/main/requests");
  ASSERT_TRUE(ok(got));
  EXPECT_EQ(got->target, e.target);
  EXPECT_EQ(got->content_type, e.content_type);
  EXPECT_EQ(got->etag, e.etag);
  EXPECT_EQ(got->last_modified, e.last_modified);
  EXPECT_EQ(got->fetched_at, e.fetched_at);
  EXPECT_EQ(got->expires_at, e.expires_at);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->attributes, e.attributes);
  EXPECT_FALSE(got->expired(now));
  EXPECT_FALSE(got->expired(now + 9min));
  EXPECT_TRUE(got->expired(now + 10min));

  entry negative;
  negative.status = 404;
  negative.expires_at = now - 1s;
  ASSERT_TRUE(ok(s->put_entry("pypi/main/no-such-project", negative)));
  auto n = s->get_entry("pypi/main/no-such-project");
  ASSERT_TRUE(ok(n));
  EXPECT_FALSE(n->target.has_value());
  EXPECT_EQ(n->status, 404);
  EXPECT_TRUE(n->expired());

  e.etag = "W/\"2\"";
  ASSERT_TRUE(ok(s->put_entry("pypi/main/requests", e)));
  EXPECT_EQ(s->get_entry("pypi/main/requests")->etag, "W/\"2\"") << "put replaces";

  ASSERT_TRUE(ok(s->remove_entry("pypi/main/requests")));
  EXPECT_TRUE(fails_with(s->get_entry("pypi/main/requests"), errc::not_found));
  EXPECT_TRUE(fails_with(s->remove_entry("pypi/main/requests"), errc::not_found));
  EXPECT_TRUE(fails_with(s->get_entry(""), errc::invalid_argument));
  EXPECT_TRUE(fails_with(s->put_entry(std::string(600, 'k'), e), errc::invalid_argument));
}

TEST_F(CacheTest, PutEntriesStoresAllOfThemTogether) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  std::vector<std::pair<std::string, entry>> items;
  for (int i = 0; i < 50; ++i) {
    entry e;
    e.etag = "e" + std::to_string(i);
    items.emplace_back("pypi/file/main/host/p" + std::to_string(i), e);
  }
  ASSERT_TRUE(ok(s->put_entries(items)));
  for (const auto& [key, e] : items) {
    auto got = s->get_entry(key);
    ASSERT_TRUE(ok(got)) << key;
    EXPECT_EQ(got->etag, e.etag) << key;
  }
  // One bad key refuses the whole batch before anything is written.
  std::vector<std::pair<std::string, entry>> bad = {{"pypi/ok", entry{}}, {"", entry{}}};
  auto r = s->put_entries(bad);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  EXPECT_FALSE(s->get_entry("pypi/ok"));
}

TEST_F(CacheTest, ForEachEntryWalksAPrefixInOrder) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  for (std::string key :
       {"oci/docker.io/library/busybox/tag/latest", "oci/docker.io/library/busybox/tag/1.36",
        "oci/ghcr.io/x/tag/1", "pypi/main/flask", "oci/docker.io/library/alpine/tag/3"}) {
    entry e;
    e.etag = key;
    ASSERT_TRUE(ok(s->put_entry(key, e)));
  }
  std::vector<std::string> keys;
  ASSERT_TRUE(ok(s->for_each_entry("oci/docker.io/", [&](std::string_view k, const entry& e) {
    EXPECT_EQ(e.etag, k);
    keys.emplace_back(k);
    return true;
  })));
  std::vector<std::string> want = {"oci/docker.io/library/alpine/tag/3",
                                   "oci/docker.io/library/busybox/tag/1.36",
                                   "oci/docker.io/library/busybox/tag/latest"};
  EXPECT_EQ(keys, want);

  keys.clear();
  ASSERT_TRUE(ok(s->for_each_entry("", [&](std::string_view k, const entry&) {
    keys.emplace_back(k);
    return keys.size() < 2;
  })));
  EXPECT_EQ(keys.size(), 2u) << "stops when fn returns false";

  keys.clear();
  ASSERT_TRUE(ok(s->for_each_entry("zzz", [&](std::string_view k, const entry&) {
    keys.emplace_back(k);
    return true;
  })));
  EXPECT_TRUE(keys.empty());
}

TEST_F(CacheTest, RecordsRoundTripCompressed) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  std::string log;
  for (int i = 0; i < 20000; ++i)
    log += "line " + std::to_string(i % 100) + ": ok\n";
  ASSERT_TRUE(ok(s->put_record("job/1/log", as_bytes(log))));
  ASSERT_TRUE(ok(s->put_record("job/1/empty", {})));
  auto got = s->get_record("job/1/log");
  ASSERT_TRUE(ok(got));
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(got->data()), got->size()), log);
  auto empty = s->get_record("job/1/empty");
  ASSERT_TRUE(ok(empty));
  EXPECT_TRUE(empty->empty());
  EXPECT_TRUE(fails_with(s->get_record("job/2/log"), errc::not_found));
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->records, 2u);
  EXPECT_LT(stats->used_bytes, log.size()) << "stored compressed";
}

TEST_F(CacheTest, RemovedRecordIsGoneAndOthersStay) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  ASSERT_TRUE(ok(s->put_record("ci/log/1/0", as_bytes("first"))));
  ASSERT_TRUE(ok(s->put_record("ci/log/1/1", as_bytes("second"))));
  ASSERT_TRUE(ok(s->remove_record("ci/log/1/0")));
  EXPECT_TRUE(fails_with(s->get_record("ci/log/1/0"), errc::not_found));
  EXPECT_TRUE(fails_with(s->remove_record("ci/log/1/0"), errc::not_found));
  auto kept = s->get_record("ci/log/1/1");
  ASSERT_TRUE(ok(kept));
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(kept->data()), kept->size()), "second");
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->records, 1u);
}

TEST_F(CacheTest, MapFullFailsOnlyTheWriteThatDoesNotFit) {
  options o = opts();
  o.map_size = 2 << 20;
  auto s = open(o);
  ASSERT_TRUE(s);
  std::vector<std::vector<std::byte>> stored;
  result<object_info> last = error(errc::storage_error, "nothing written");
  for (int i = 0; i < 20; ++i) {
    auto bytes = make_bytes(300000, 500 + i);
    last = write_blob(*s, bytes);
    if (!last) break;
    stored.push_back(std::move(bytes));
  }
  ASSERT_TRUE(fails_with(last, errc::map_full));
  EXPECT_NE(last.error().message.find("MDB_MAP_FULL"), std::string::npos) << last.error().message;
  EXPECT_NE(last.error().message.find("2 MiB"), std::string::npos) << last.error().message;
  EXPECT_GE(stored.size(), 2u);

  // A streamed blob fails in its chunk writes.
  auto big = make_bytes(3 * kChunkSize, 600);
  EXPECT_TRUE(fails_with(write_blob(*s, big, 500000), errc::map_full));

  for (const auto& bytes : stored) {
    auto got = read_blob(*s, digest::of(bytes));
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(*got == bytes);
  }
  auto report = s->verify();
  ASSERT_TRUE(ok(report));
  EXPECT_EQ(report->checked, stored.size());
  EXPECT_TRUE(report->problems.empty());
}

TEST_F(CacheTest, MapFullSparesTheSmallWritesQueuedBesideIt) {
  options o = opts();
  o.map_size = 2 << 20;
  o.max_txn_bytes = 64 << 20;  // let the writer group everything queued into one transaction
  auto s = open(o);
  ASSERT_TRUE(s);
  auto big = make_bytes(5 * kChunkSize, 601);
  auto w = s->begin_blob(digest::of(big), std::string(kMedia), big.size());
  ASSERT_TRUE(ok(w));
  // Queues 4 chunks; the map holds 1. The error may show here already or at commit.
  auto first = w->write(std::span(big).first(4 * kChunkSize + 1));
  entry e;
  e.etag = "small";
  ASSERT_TRUE(ok(s->put_entry("beside", e))) << "a small write queued with chunks that fail";
  result<object_info> c = first ? result<object_info>(error()) : first.error();
  if (first) {
    auto rest = w->write(std::span(big).subspan(4 * kChunkSize + 1));
    c = rest ? w->commit() : result<object_info>(rest.error());
  }
  ASSERT_TRUE(fails_with(c, errc::map_full));
  EXPECT_NE(c.error().message.find(digest::of(big).short_str()), std::string::npos)
      << c.error().message;
  EXPECT_EQ(s->get_entry("beside")->etag, "small");
  EXPECT_TRUE(ok(s->put_entry("after", e))) << "the map has room again once the chunks are gone";
}

TEST_F(CacheTest, ReadOnlyProcessFollowsTheMapOfARestartedOwner) {
  auto small = make_bytes(1000, 30);
  auto big = make_bytes(3 * kChunkSize, 31);
  {
    options o = opts();
    o.map_size = 2 << 20;
    auto s = open(o);
    ASSERT_TRUE(s);
    ASSERT_TRUE(ok(write_blob(*s, small)));
  }
  int to_child[2];
  int to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = run_child([&]() -> int {
    options o = opts();
    o.mode = open_mode::read_only;
    auto s = store::open(o);
    if (!s) return 1;
    auto got = read_blob(**s, digest::of(small));
    if (!got || *got != small) return 2;
    if (write(to_parent[1], "r", 1) != 1) return 3;
    char c;
    if (read(to_child[0], &c, 1) != 1) return 4;
    // The owner now has a larger map and data beyond this process's mapping.
    auto again = read_blob(**s, digest::of(big));
    if (!again) return 5;
    if (*again != big) return 6;
    return 0;
  });
  char c;
  ASSERT_EQ(read(to_parent[0], &c, 1), 1);
  {
    options o = opts();
    o.map_size = 16 << 20;
    auto s = open(o);
    ASSERT_TRUE(s);
    ASSERT_TRUE(ok(write_blob(*s, big)));
    ASSERT_EQ(write(to_child[1], "g", 1), 1);
    EXPECT_EQ(wait_child(pid), 0);
  }
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
    close(fd);
}

TEST_F(CacheTest, WaitingCallsOnTheWriterThreadFailInsteadOfDeadlocking) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(2 * kChunkSize + 1, 32);
  auto w = s->begin_blob(digest::of(bytes), std::string(kMedia), std::nullopt);
  ASSERT_TRUE(ok(w));
  std::vector<result<void>> inside;
  w->on_progress([&](std::uint64_t) {
    entry e;
    inside.push_back(s->put_entry("k", e));
  });
  ASSERT_TRUE(ok(w->write(bytes)));
  ASSERT_TRUE(ok(w->commit()));
  ASSERT_FALSE(inside.empty());
  for (const auto& r : inside) {
    EXPECT_TRUE(fails_with(r, errc::invalid_argument));
  }
  EXPECT_NE(inside[0].error().message.find("writer thread"), std::string::npos)
      << inside[0].error().message;
}

TEST_F(CacheTest, ReopenKeepsEverything) {
  auto bytes = make_bytes(2 * kChunkSize + 1, 17);
  std::string_view small = "small";
  digest big_id;
  {
    options o = opts();
    o.durable = true;
    auto s = open(o);
    ASSERT_TRUE(s);
    auto info = write_blob(*s, bytes);
    ASSERT_TRUE(ok(info));
    big_id = info->id;
    ASSERT_TRUE(ok(s->put_blob(as_bytes(small), "text/plain", true)));
    entry e;
    e.etag = "x";
    ASSERT_TRUE(ok(s->put_entry("k", e)));
    ASSERT_TRUE(ok(s->put_record("r", as_bytes("record"))));
    ASSERT_TRUE(ok(s->open_blob(big_id)));
    EXPECT_TRUE(fails_with(s->open_blob(digest::of(std::string_view("x"))), errc::not_found));
  }
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto got = read_blob(*s, big_id);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == bytes);
  auto pinned = s->stat_blob(digest::of(small));
  ASSERT_TRUE(ok(pinned));
  EXPECT_TRUE(pinned->pinned);
  EXPECT_EQ(pinned->media_type, "text/plain");
  EXPECT_EQ(s->get_entry("k")->etag, "x");
  auto rec = s->get_record("r");
  ASSERT_TRUE(ok(rec));
  EXPECT_EQ(rec->size(), 6u);
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 2u);
  EXPECT_EQ(stats->bytes, bytes.size() + small.size());
  EXPECT_EQ(stats->pinned_bytes, small.size());
  EXPECT_EQ(stats->hits, 2u) << "one before the reopen, one after";
  EXPECT_EQ(stats->misses, 1u);
}

TEST_F(CacheTest, ReadOnlyOpenOfMissingCacheIsNotFound) {
  options o = opts();
  o.mode = open_mode::read_only;
  auto s = store::open(o);
  ASSERT_TRUE(fails_with(s, errc::not_found));
  EXPECT_NE(s.error().message.find("no cache at " + dir_.string()), std::string::npos)
      << s.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "cache")) << "read-only never creates";
}

TEST_F(CacheTest, ReadOnlyInProcessBesideOwner) {
  auto owner = open(opts());
  ASSERT_TRUE(owner);
  auto bytes = make_bytes(kChunkSize + 5, 18);
  ASSERT_TRUE(ok(write_blob(*owner, bytes)));
  options o = opts();
  o.mode = open_mode::read_only;
  auto ro = open(o);
  ASSERT_TRUE(ro);
  auto got = read_blob(*ro, digest::of(bytes));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == bytes);
  EXPECT_TRUE(fails_with(ro->put_blob(bytes, "x"), errc::invalid_argument));
  EXPECT_TRUE(fails_with(ro->put_entry("k", entry{}), errc::invalid_argument));
  EXPECT_TRUE(fails_with(ro->gc(), errc::invalid_argument));
  EXPECT_TRUE(fails_with(ro->set_max_size(1 << 20), errc::invalid_argument));
  auto stats = ro->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->objects, 1u);
  ro.reset();
  // The owner keeps working after the read-only store closes.
  ASSERT_TRUE(ok(owner->put_blob(as_bytes("more"), "text/plain")));
}

TEST_F(CacheTest, ReadOnlyProcessBesideOwnerSeesCommittedBlobs) {
  auto bytes = make_bytes(2 * kChunkSize + 9, 19);
  digest id = digest::of(bytes);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = run_child(
      [&]() -> int {
        options o = opts();
        o.mode = open_mode::read_only;
        auto s = store::open(o);
        if (!s) return 1;
        auto got = read_blob(**s, id);
        if (!got) return 2;
        if (*got != bytes) return 3;
        if ((*s)->put_entry("k", entry{})) return 4;
        auto report = (*s)->verify();
        if (!report || report->checked != 1 || !report->problems.empty()) return 5;
        // A second owner is refused while the parent holds the lock.
        auto second = store::open(opts());
        if (second || !second.error().is(errc::locked)) return 6;
        if (second.error().message.find(std::to_string(getppid())) == std::string::npos) return 7;
        return 0;
      },
      fds[0]);
  auto owner = open(opts());
  ASSERT_TRUE(owner);
  ASSERT_TRUE(ok(write_blob(*owner, bytes)));
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  EXPECT_EQ(wait_child(pid), 0);
  close(fds[0]);
  close(fds[1]);
}

TEST_F(CacheTest, SecondOwnerIsLocked) {
  auto owner = open(opts());
  ASSERT_TRUE(owner);
  auto second = store::open(opts());
  ASSERT_TRUE(fails_with(second, errc::locked));
  EXPECT_NE(second.error().message.find(std::to_string(getpid())), std::string::npos)
      << "the message names the pid holding the lock: " << second.error().message;
  owner.reset();
  EXPECT_TRUE(ok(store::open(opts()))) << "free again once the owner is closed";
}

TEST_F(CacheTest, OrphanChunksOfACrashedWriterAreRemovedAtOpen) {
  auto bytes = make_bytes(3 * kChunkSize + 100, 20);
  digest id = digest::of(bytes);
  pid_t pid = run_child([&]() -> int {
    auto s = store::open(opts());
    if (!s) return 1;
    auto w = (*s)->begin_blob(id, std::string(kMedia), bytes.size());
    if (!w || !w->write(bytes)) return 2;
    if (!(*s)->flush()) return 3;
    if (w->committed() != 3 * kChunkSize) return 4;
    _exit(0);  // a crash: no commit, no abort, no close
  });
  ASSERT_EQ(wait_child(pid), 0);
  {
    raw_lmdb raw(dir_);
    EXPECT_EQ(raw.count("blobs"), 3u) << "the crash left three orphan chunks";
  }
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    EXPECT_TRUE(fails_with(s->open_blob(id), errc::not_found));
    auto stats = s->get_stats();
    ASSERT_TRUE(ok(stats));
    EXPECT_EQ(stats->objects, 0u);
  }
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 0u);
}

TEST_F(CacheTest, VerifyDetectsCorruptAndMissingChunks) {
  auto a = make_bytes(2 * kChunkSize + 50, 21);
  auto b = make_bytes(kChunkSize + 50, 22);
  auto c = make_bytes(1000, 23);
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    for (const auto* bytes : {&a, &b, &c})
      ASSERT_TRUE(ok(write_blob(*s, *bytes)));
    auto report = s->verify();
    ASSERT_TRUE(ok(report));
    EXPECT_EQ(report->checked, 3u);
    EXPECT_EQ(report->bytes, a.size() + b.size() + c.size());
    EXPECT_TRUE(report->problems.empty()) << report->problems.front().what;
  }
  {
    raw_lmdb raw(dir_);
    auto chunk = raw.get_chunk(digest::of(a), 1);
    ASSERT_TRUE(chunk.has_value());
    (*chunk)[1000] ^= 1;
    raw.put("blobs", raw_lmdb::chunk_key(digest::of(a), 1), *chunk);
    raw.del("blobs", raw_lmdb::chunk_key(digest::of(b), 0));
  }
  options o = opts();
  o.mode = open_mode::read_only;
  auto s = open(o);
  ASSERT_TRUE(s);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;
  auto report = s->verify(
      [&](std::uint64_t done, std::uint64_t total) { progress.emplace_back(done, total); });
  ASSERT_TRUE(ok(report));
  EXPECT_EQ(report->checked, 3u);
  ASSERT_EQ(report->problems.size(), 2u);
  for (const auto& p : report->problems) {
    if (p.id == digest::of(a)) {
      EXPECT_NE(p.what.find("sha256 of stored bytes is sha256:"), std::string::npos) << p.what;
    } else {
      EXPECT_EQ(p.id, digest::of(b));
      EXPECT_EQ(p.what, "chunk 0 of 2 missing");
    }
  }
  ASSERT_EQ(progress.size(), 3u);
  EXPECT_EQ(progress.back(), std::make_pair(std::uint64_t{3}, std::uint64_t{3}));

  // Reading the damaged blobs: missing chunk is corrupt; reading good ones still works.
  auto rb = s->open_blob(digest::of(b));
  ASSERT_TRUE(ok(rb));
  auto n = rb->visit(0, b.size(), [](std::span<const std::byte> p) { return p.size(); });
  EXPECT_TRUE(fails_with(n, errc::corrupt));
  EXPECT_TRUE(read_blob(*s, digest::of(c)) == c);
}

TEST_F(CacheTest, CorruptRecordsAreReportedNotFatal) {
  digest id = digest::of(std::string_view("x"));
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
  }
  {
    raw_lmdb raw(dir_);
    raw.put("entries", "bad", "\x01garbage");
    raw.put("objects", std::string(reinterpret_cast<const char*>(id.bytes().data()), 32), "\x07");
    raw.put("records", "rec", "not zstd");
  }
  auto s = open(opts());
  ASSERT_TRUE(s);
  EXPECT_TRUE(fails_with(s->get_entry("bad"), errc::corrupt));
  EXPECT_TRUE(fails_with(s->open_blob(id), errc::corrupt));
  EXPECT_TRUE(fails_with(s->get_record("rec"), errc::corrupt));
  auto walk = s->for_each_entry("", [](std::string_view, const entry&) { return true; });
  EXPECT_TRUE(fails_with(walk, errc::corrupt));
  auto report = s->verify();
  ASSERT_TRUE(ok(report));
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].what.find("corrupt"), std::string::npos)
      << report->problems[0].what;
}

TEST_F(CacheTest, GcEvictsToANewQuota) {
  constexpr std::size_t kBlob = 300000;
  {
    auto s = open(opts());
    ASSERT_TRUE(s);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(ok(write_blob(*s, make_bytes(kBlob, 700 + i))));
      std::this_thread::sleep_for(2ms);
    }
  }
  auto s = open(opts(1000000));
  ASSERT_TRUE(s);
  auto report = s->gc();
  ASSERT_TRUE(ok(report));
  EXPECT_EQ(report->orphan_blobs, 0u);
  EXPECT_EQ(report->evicted_blobs, 2u);
  EXPECT_EQ(report->evicted_bytes, 2 * kBlob);
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->bytes, 3 * kBlob);
  EXPECT_TRUE(fails_with(s->stat_blob(digest::of(make_bytes(kBlob, 700))), errc::not_found));
  EXPECT_TRUE(ok(s->stat_blob(digest::of(make_bytes(kBlob, 704)))));
}

TEST_F(CacheTest, ALowerQuotaEvictsDownToItWhileServing) {
  constexpr std::size_t kBlob = 300000;
  auto s = open(opts(2000000));
  ASSERT_TRUE(s);
  std::vector<digest> ids;
  for (int i = 0; i < 5; ++i) {
    auto info = write_blob(*s, make_bytes(kBlob, 800 + i), 100000, kBlob);
    ASSERT_TRUE(ok(info)) << "blob " << i;
    ids.push_back(info->id);
    std::this_thread::sleep_for(3ms);  // distinct access times (ms)
  }
  auto held = s->open_blob(ids[0]);  // the oldest, being read: never evicted
  ASSERT_TRUE(ok(held));

  auto set = s->set_max_size(1000000);
  ASSERT_TRUE(ok(set));
  EXPECT_EQ(*set, 1000000u);
  // The eviction was queued before this flush, and the writer runs its queue in order.
  ASSERT_TRUE(ok(s->flush()));
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->quota, 1000000u);
  EXPECT_EQ(stats->bytes, 3 * kBlob);
  EXPECT_EQ(stats->evictions, 2u);
  EXPECT_TRUE(ok(s->stat_blob(ids[0])));
  EXPECT_TRUE(fails_with(s->stat_blob(ids[1]), errc::not_found));
  EXPECT_TRUE(fails_with(s->stat_blob(ids[2]), errc::not_found));
  EXPECT_TRUE(ok(s->stat_blob(ids[3])));
  EXPECT_TRUE(ok(s->stat_blob(ids[4])));
  // Writes after it reserve under the new quota.
  EXPECT_TRUE(
      fails_with(write_blob(*s, make_bytes(1100000, 805), 100000, 1100000), errc::quota_exceeded));
}

TEST_F(CacheTest, AHigherQuotaIsCappedAtWhatTheMapHolds) {
  {
    // The default map: max(2 × quota, 1 GiB), so half of 1 GiB.
    auto s = open(opts(1 << 20));
    ASSERT_TRUE(s);
    auto stats = s->get_stats();
    ASSERT_TRUE(ok(stats));
    EXPECT_EQ(stats->quota_limit, std::uint64_t{512} << 20);
    auto set = s->set_max_size(std::uint64_t{4} << 30);
    ASSERT_TRUE(ok(set));
    EXPECT_EQ(*set, std::uint64_t{512} << 20);
    set = s->set_max_size(std::uint64_t{100} << 20);
    ASSERT_TRUE(ok(set));
    EXPECT_EQ(*set, std::uint64_t{100} << 20);
    stats = s->get_stats();
    ASSERT_TRUE(ok(stats));
    EXPECT_EQ(stats->quota, std::uint64_t{100} << 20);
    auto zero = s->set_max_size(0);
    ASSERT_TRUE(fails_with(zero, errc::invalid_argument));
    EXPECT_NE(zero.error().message.find("0 bytes"), std::string::npos) << zero.error().message;
  }
  // A map that holds more than the cache (the CI's logs): the limit the opener gave.
  options o = opts(1 << 20);
  o.max_size_limit = 3 << 20;
  auto s = open(o);
  ASSERT_TRUE(s);
  auto set = s->set_max_size(10 << 20);
  ASSERT_TRUE(ok(set));
  EXPECT_EQ(*set, 3u << 20);
}

TEST_F(CacheTest, StatsDescribeTheEnvironment) {
  options o = opts(1 << 30);
  o.max_readers = 100;
  auto s = open(o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(ok(write_blob(*s, make_bytes(1000, 1))));
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->quota, std::uint64_t{1} << 30);
  EXPECT_EQ(stats->map_size, std::uint64_t{2} << 30) << "2 × quota";
  EXPECT_EQ(stats->page_size, 4096u);
  EXPECT_GT(stats->used_bytes, 1000u);
  EXPECT_LT(stats->used_bytes, 1u << 20);
  EXPECT_GE(stats->max_readers, 100u) << "LMDB rounds the reader table up to whole pages";
  EXPECT_GE(stats->readers_in_use, 1u) << "this process's pooled read transaction";
  EXPECT_TRUE(ok(s->reclaim_readers()));
}

TEST_F(CacheTest, ManyThreadsPutAndReadAtOnce) {
  auto s = open(opts(8 << 20));
  ASSERT_TRUE(s);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto bytes = make_bytes(1000 + 5000 * i, 1000 + t * 100 + i % 7);
        auto d = s->put_blob(bytes, std::string(kMedia));
        if (!d) {
          ++bad;
          continue;
        }
        auto got = read_blob(*s, *d);
        // Another thread's writes may have evicted it, never damaged it.
        if (got && *got != bytes) ++bad;
        entry e;
        e.etag = std::to_string(i);
        if (!s->put_entry("k/" + std::to_string(t), e)) ++bad;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(bad.load(), 0);
  auto stats = s->get_stats();
  ASSERT_TRUE(ok(stats));
  EXPECT_EQ(stats->entries, 6u);
  EXPECT_LE(stats->bytes, stats->quota);
}

TEST_F(CacheTest, ConcurrentStreamsUnderQuotaKeepEverythingConsistent) {
  const std::uint64_t quota = 6 * kChunkSize;
  std::vector<std::vector<std::byte>> blobs;
  for (int i = 0; i < 12; ++i)
    blobs.push_back(make_bytes(kChunkSize + 200000 * i, 900 + i));
  {
    auto s = open(opts(quota));
    ASSERT_TRUE(s);
    std::mutex m;
    std::vector<digest> done;  // guarded by m
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t) {
      readers.emplace_back([&] {
        std::size_t i = 0;
        while (!stop.load()) {
          digest id;
          {
            std::lock_guard g(m);
            if (done.empty()) continue;
            id = done[i++ % done.size()];
          }
          auto r = s->open_blob(id);
          if (!r) {
            if (!r.error().is(errc::not_found)) ++bad;  // evicted is fine, anything else is not
            continue;
          }
          auto got = read_all(*r);
          if (digest::of(got) != id) ++bad;
        }
      });
    }
    std::vector<std::thread> writers;
    for (int t = 0; t < 3; ++t) {
      writers.emplace_back([&, t] {
        for (int i = t; i < 12; i += 3) {
          const auto& bytes = blobs[i];
          auto info =
              write_blob(*s, bytes, 50000 + 10000 * t,
                         t == 0 ? std::optional<std::uint64_t>(bytes.size()) : std::nullopt);
          if (info) {
            std::lock_guard g(m);
            done.push_back(info->id);
          } else if (!info.error().is(errc::quota_exceeded)) {
            ++bad;
          }
        }
      });
    }
    for (auto& t : writers)
      t.join();
    stop = true;
    for (auto& t : readers)
      t.join();
    EXPECT_EQ(bad.load(), 0);
    auto stats = s->get_stats();
    ASSERT_TRUE(ok(stats));
    EXPECT_LE(stats->bytes, quota);
    EXPECT_GE(stats->objects, 1u);
    auto report = s->verify();
    ASSERT_TRUE(ok(report));
    EXPECT_TRUE(report->problems.empty()) << report->problems.front().what;
  }
  // Every chunk left belongs to a complete blob: no orphans from aborted or evicted writers.
  raw_lmdb raw(dir_);
  std::size_t chunks = 0;
  std::size_t objects = 0;
  for (const auto& bytes : blobs) {
    digest id = digest::of(bytes);
    std::size_t n = 0;
    while (raw.get_chunk(id, static_cast<std::uint32_t>(n)))
      ++n;
    if (n > 0) {
      EXPECT_EQ(n, (bytes.size() + kChunkSize - 1) / kChunkSize);
      ++objects;
    }
    chunks += n;
  }
  EXPECT_EQ(raw.count("blobs"), chunks);
  EXPECT_EQ(raw.count("objects"), objects);
  EXPECT_EQ(raw.count("lru"), objects);
}

TEST_F(CacheTest, ReadersAndWritersOutliveTheStore) {
  auto s = open(opts());
  ASSERT_TRUE(s);
  auto bytes = make_bytes(kChunkSize + 10, 24);
  auto info = write_blob(*s, bytes);
  ASSERT_TRUE(ok(info));
  auto reader = s->open_blob(info->id);
  ASSERT_TRUE(ok(reader));
  auto other = make_bytes(3 * kChunkSize, 25);
  auto w = s->begin_blob(digest::of(other), std::string(kMedia), std::nullopt);
  ASSERT_TRUE(ok(w));
  ASSERT_TRUE(ok(w->write(other)));
  s.reset();
  EXPECT_TRUE(read_all(*reader) == bytes) << "a reader keeps working after the store closes";
  EXPECT_TRUE(fails_with(w->commit(), errc::cancelled));
  *w = blob_writer();
  *reader = blob_reader();
  auto again = open(opts());
  ASSERT_TRUE(again);
  EXPECT_TRUE(fails_with(again->open_blob(digest::of(other)), errc::not_found));
  again.reset();
  raw_lmdb raw(dir_);
  EXPECT_EQ(raw.count("blobs"), 2u) << "only the committed blob's chunks";
}

// An upgrade's hand-over (open_as_successor): the successor reads at once while the
// predecessor holds the lock, its writes wait and go once the predecessor closes, and a blob both
// began is counted once.
TEST_F(CacheTest, SuccessorReadsAtOnceAndWritesAfterThePredecessorLetsGo) {
  auto x = make_bytes(kChunkSize + 10, 31);
  auto y = make_bytes(2 * kChunkSize + 10, 32);
  const digest y_id = digest::of(y);
  int up[2], go[2];
  ASSERT_EQ(pipe(up), 0);
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = run_child([&]() -> int {
    auto s = store::open(opts());
    if (!s) return 1;
    if (!write_blob(**s, x)) return 2;
    if (!(*s)->put_entry("before", entry{})) return 3;
    if (write(up[1], "r", 1) != 1) return 4;
    char c;
    if (read(go[0], &c, 1) != 1) return 5;
    if (!(*s)->put_blob(y, std::string(kMedia))) return 6;
    if (!(*s)->put_entry("late", entry{})) return 7;
    return 0;  // the store closes: the lock goes
  });
  char c;
  ASSERT_EQ(read(up[0], &c, 1), 1);

  auto refused = open_as_successor(opts(), pid + 1);
  ASSERT_TRUE(fails_with(refused, errc::locked)) << "the lock holder is not the predecessor named";

  auto opened = open_as_successor(opts(), pid);
  ASSERT_TRUE(ok(opened));
  auto s = *opened;
  EXPECT_FALSE(wait_for_lock(*s, std::chrono::milliseconds(0)));
  auto got_x = read_blob(*s, digest::of(x));
  ASSERT_TRUE(got_x) << "reads work while the predecessor holds the lock";
  EXPECT_TRUE(*got_x == x);
  EXPECT_TRUE(ok(s->get_entry("before")));

  // Y begun here before the predecessor commits it too; an entry queued.
  auto w = s->begin_blob(y_id, std::string(kMedia), y.size(), false);
  ASSERT_TRUE(ok(w));
  ASSERT_TRUE(ok(w->write(y)));
  auto put = std::async(std::launch::async, [&] { return s->put_entry("new", entry{}); });
  auto commit = std::async(std::launch::async, [&] { return w->commit(); });
  ASSERT_EQ(write(go[1], "g", 1), 1);
  EXPECT_EQ(wait_child(pid), 0);

  EXPECT_TRUE(ok(put.get()));
  auto committed = commit.get();
  ASSERT_TRUE(ok(committed));
  EXPECT_EQ(committed->size, y.size());
  EXPECT_TRUE(wait_for_lock(*s, std::chrono::seconds(10)));
  EXPECT_TRUE(ok(s->get_entry("late"))) << "the predecessor's last writes are there";
  EXPECT_TRUE(ok(s->get_entry("new")));
  auto got_y = read_blob(*s, y_id);
  ASSERT_TRUE(got_y);
  EXPECT_TRUE(*got_y == y);
  auto st = s->get_stats();
  ASSERT_TRUE(ok(st));
  EXPECT_EQ(st->objects, 2u);
  EXPECT_EQ(st->bytes, x.size() + y.size()) << "Y, committed by both processes, counts once";
  auto second = store::open(opts());
  ASSERT_TRUE(fails_with(second, errc::locked));
  EXPECT_NE(second.error().message.find(std::to_string(getpid())), std::string::npos)
      << "the successor holds the lock now: " << second.error().message;
  for (int fd : {up[0], up[1], go[0], go[1]})
    close(fd);
}

}  // namespace
}  // namespace pantry::cache
