#pragma once

// The LMDB store under a data dir: content-addressed blobs kept in fixed-size chunks, protocol
// entries with TTL metadata, pantry's own zstd-compressed records, and an LRU size quota.
// See docs/ARCHITECTURE.md, "The cache" and "Key formats".
//
// Thread safety: a `store` and the readers and writers it hands out may be used from any thread;
// one `blob_reader` or `blob_writer` object is used by one thread at a time. No call holds an
// LMDB transaction after it returns, so none of them pins pages while a caller waits on a socket.

#include "pantry/cache/digest.h"
#include "pantry/error.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::cache {

using clock = std::chrono::system_clock;

// Every chunk but a blob's last holds exactly this many bytes: 256 pages of 4096 bytes minus
// LMDB's 16-byte overflow page header, so that one chunk fills exactly 256 overflow pages and
// the run of pages a freed chunk leaves behind fits the next one.
inline constexpr std::size_t kChunkSize = 256 * 4096 - 16;

enum class open_mode {
  // Takes the data dir's lock (fails with errc::locked if another process holds it), reclaims
  // dead readers' slots, removes orphan chunks, and may write and evict. One process at a time.
  owner,
  // Read-only: never writes, never evicts, safe beside a running owner. Fails with
  // errc::not_found if the data dir holds no cache.
  read_only,
};

struct options {
  std::filesystem::path data_dir;
  open_mode mode = open_mode::owner;
  // Size quota for cached (unpinned) blob bytes. Least-recently-used complete blobs are evicted
  // to stay under it. 0 means no quota. store::set_max_size() changes it later.
  std::uint64_t max_size = 0;
  // LMDB map size, fixed at open. 0 picks max(2 × max_size, 1 GiB): at least twice the quota, so
  // that the free pages eviction leaves behind never run the map out (docs/ARCHITECTURE.md,
  // "The cache").
  std::uint64_t map_size = 0;
  // The largest quota store::set_max_size() may set later, for the same reason: 0 takes half the
  // map size. Set it when map_size also makes room for something else (the CI's logs and
  // artifacts). Never below max_size.
  std::uint64_t max_size_limit = 0;
  // Reader slots; must exceed the number of concurrent readers (connections) plus a margin.
  unsigned max_readers = 4096;
  // Upper bound of dirty bytes in one write transaction (group commit): LMDB keeps dirty pages in
  // memory until commit, so this bounds the writer's memory.
  std::size_t max_txn_bytes = 4 << 20;
  // How often batched access times are written. The LRU order is exact only to this precision.
  std::chrono::milliseconds access_flush_interval{1000};
  // Sync to disk at each commit. Off loses the last transactions on power loss, never consistency.
  bool durable = true;
};

// What the `objects` database records about one complete blob.
struct object_info {
  digest id;
  std::uint64_t size = 0;
  std::string media_type;
  std::uint32_t chunk_count = 0;
  clock::time_point created;
  clock::time_point last_access;
  // Pinned blobs (hosted content) are never evicted and do not count against the quota.
  bool pinned = false;
};

// A protocol entry (`pypi/page/<upstream>/<project>`, `oci/tag/<upstream>/<repo>:<tag>`, …): a
// mutable name that points at a blob, with the HTTP metadata needed to serve and revalidate it.
// Every key format is named in one header per protocol: registry/src/pypi/keys.h and
// registry/src/oci/keys.h.
struct entry {
  std::optional<digest> target;  // empty for a remembered negative answer (404/410)
  std::string content_type;
  std::string etag;
  std::string last_modified;
  clock::time_point fetched_at;
  clock::time_point expires_at;
  int status = 200;  // upstream's status, e.g. 404 for a negative entry
  // Free-form key/value pairs a protocol needs (e.g. the media type a tag resolved to).
  std::vector<std::pair<std::string, std::string>> attributes;

  // The value of attribute `name`, or "" when the entry has none.
  std::string_view attribute(std::string_view name) const noexcept {
    for (const auto& [k, v] : attributes) {
      if (k == name) return v;
    }
    return {};
  }

  // True iff the entry is past its TTL at `now`.
  bool expired(clock::time_point now = clock::now()) const noexcept { return now >= expires_at; }
};

struct stats {
  std::uint64_t objects = 0;         // complete blobs
  std::uint64_t bytes = 0;           // their total size
  std::uint64_t pinned_objects = 0;  // of which pinned
  std::uint64_t pinned_bytes = 0;
  std::uint64_t entries = 0;
  std::uint64_t records = 0;
  std::uint64_t quota = 0;        // the opening process's quota now (0: none)
  std::uint64_t quota_limit = 0;  // the largest quota store::set_max_size() takes
  std::uint64_t map_size = 0;
  std::uint64_t used_bytes = 0;  // LMDB's last used page × page size: the real footprint
  std::uint64_t page_size = 0;
  std::uint64_t readers_in_use = 0;  // reader slots in use, all processes
  std::uint64_t max_readers = 0;
  // Counters kept by the owner process and persisted with its writes.
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t evicted_bytes = 0;
};

struct gc_report {
  std::uint64_t orphan_blobs = 0;  // distinct digests whose chunks had no complete record
  std::uint64_t orphan_chunks = 0;
  std::uint64_t evicted_blobs = 0;
  std::uint64_t evicted_bytes = 0;
};

struct verify_problem {
  digest id;
  std::string what;  // e.g. "sha256 of stored bytes is sha256:…", "chunk 3 of 9 missing"
};

struct verify_report {
  std::uint64_t checked = 0;
  std::uint64_t bytes = 0;
  std::vector<verify_problem> problems;  // empty iff every complete blob is intact
};

// Receives consecutive pieces of a blob straight from the memory map. Returns how many bytes of
// `piece` it consumed; consuming fewer than offered ends the read (e.g. a socket that would
// block). The span is valid only during the call.
using sink_fn = std::function<std::size_t(std::span<const std::byte> piece)>;

class blob_reader;
class blob_writer;

class store {
 public:
  // Opens (creating in owner mode) the store under `opt.data_dir`.
  static result<std::shared_ptr<store>> open(const options& opt);

  virtual ~store() = default;

  // Opens a complete blob for reading. errc::not_found if it does not exist or is not complete.
  // While the reader lives the blob is never evicted. Counts a hit or a miss and records the
  // access time (batched).
  virtual result<blob_reader> open_blob(const digest& id) = 0;

  // Returns the record of a complete blob, or errc::not_found. Does not count as an access.
  virtual result<object_info> stat_blob(const digest& id) = 0;

  // Starts writing blob `id`. `expected_size`, when known, reserves quota up front and is checked
  // at commit. Bytes are streamed in with blob_writer::write; the blob becomes visible only when
  // blob_writer::commit has checked size and sha256 and written the object record in the same
  // transaction as the last chunk. If `id` is already complete, returns errc::already_exists.
  // Two writers of the same digest at once: the second gets errc::already_exists too (the proxy's
  // single flight prevents that; hosted uploads just re-check).
  virtual result<blob_writer> begin_blob(const digest& id, std::string media_type,
                                         std::optional<std::uint64_t> expected_size,
                                         bool pinned = false) = 0;

  // Stores a small blob held in memory in one call (index pages, manifests). Blocks until
  // committed. Returns the digest. Storing a blob that exists already succeeds.
  virtual result<digest> put_blob(std::span<const std::byte> bytes, std::string media_type,
                                  bool pinned = false) = 0;

  // Marks a complete blob pinned or not (hosted content is pinned). Blocks until committed.
  virtual result<void> set_pinned(const digest& id, bool pinned) = 0;

  // Deletes a complete blob now (hosted garbage collection). errc::not_found if absent.
  virtual result<void> remove_blob(const digest& id) = 0;

  // Entries. put/remove block until committed.
  virtual result<entry> get_entry(std::string_view key) = 0;
  virtual result<void> put_entry(std::string_view key, const entry& e) = 0;
  // Puts every entry in one transaction: a reader sees all of them or none. Blocks until
  // committed.
  virtual result<void> put_entries(std::span<const std::pair<std::string, entry>> items) = 0;
  // errc::not_found if there is no entry under `key`.
  virtual result<void> remove_entry(std::string_view key) = 0;
  // Calls `fn` for each entry whose key starts with `prefix`, in key order, until it returns
  // false. Holds one read transaction for the whole walk: keep `fn` short and never wait in it.
  virtual result<void> for_each_entry(
      std::string_view prefix, const std::function<bool(std::string_view, const entry&)>& fn) = 0;

  // pantry's own bulky records (job logs, test history), stored zstd-compressed.
  virtual result<void> put_record(std::string_view key, std::span<const std::byte> value) = 0;
  virtual result<std::vector<std::byte>> get_record(std::string_view key) = 0;
  // Deletes the record under `key`; errc::not_found if there is none. Blocks until committed.
  virtual result<void> remove_record(std::string_view key) = 0;

  // Counts and sizes. Safe in read_only mode beside a running owner.
  virtual result<stats> get_stats() = 0;

  // Re-hashes every complete blob and checks its chunks. Read-only; safe beside an owner.
  // `progress`, if set, is called after each blob with (blobs done, blobs total).
  virtual result<verify_report> verify(
      const std::function<void(std::uint64_t, std::uint64_t)>& progress = {}) = 0;

  // Owner only: removes orphan chunks and evicts least-recently-used blobs until the cached bytes
  // fit the quota. Blobs being read or written are skipped.
  virtual result<gc_report> gc() = 0;

  // Owner only: the quota (options::max_size) for the room writes reserve from now on, capped at
  // options::max_size_limit; returns the quota set. Blobs being written keep what they reserved.
  // A lower quota also queues an eviction down to it, which this does not wait for (blobs being
  // read or written are skipped, as always). errc::invalid_argument for 0.
  virtual result<std::uint64_t> set_max_size(std::uint64_t bytes) = 0;

  // Owner only: frees the reader slots of dead processes (mdb_reader_check). Returns how many.
  // The owner also does this at open and every minute on its own.
  virtual result<int> reclaim_readers() = 0;

  // Writes batched access times and counters now (the writer does it every
  // access_flush_interval on its own).
  virtual result<void> flush() = 0;

  virtual const options& opts() const noexcept = 0;
};

// A read handle on one complete blob. Movable, not copyable. Holds no transaction between calls.
class blob_reader {
 public:
  class impl;
  blob_reader() = default;
  explicit blob_reader(std::shared_ptr<impl> p);
  blob_reader(blob_reader&&) noexcept = default;
  blob_reader& operator=(blob_reader&&) noexcept = default;
  ~blob_reader();

  const object_info& info() const noexcept;
  std::uint64_t size() const noexcept;

  // Offers bytes [offset, offset + length) to `sink` piece by piece straight from the memory
  // map, one short read transaction per chunk, ending when the range is done or the sink
  // consumes less than offered. Returns the number of bytes consumed. errc::invalid_argument if
  // the range is outside the blob; errc::corrupt if a chunk is missing or has the wrong size;
  // errc::not_found if the blob was removed meanwhile (only a read-only process can see that:
  // the owner never evicts a blob while a reader of its own has it open).
  result<std::uint64_t> visit(std::uint64_t offset, std::uint64_t length, const sink_fn& sink);

  // Copies up to out.size() bytes starting at `offset` into `out`. Returns bytes copied
  // (0 at or past the end).
  result<std::size_t> read(std::uint64_t offset, std::span<std::byte> out);

 private:
  std::shared_ptr<impl> impl_;
};

// A write handle on one blob being streamed into the store. Movable, not copyable.
// Dropping it without commit() aborts: its chunks are removed and nothing becomes visible.
class blob_writer {
 public:
  class impl;
  blob_writer() = default;
  explicit blob_writer(std::shared_ptr<impl> p);
  blob_writer(blob_writer&&) noexcept = default;
  // Aborts the blob this writer held, as the destructor does, then takes `other`'s.
  blob_writer& operator=(blob_writer&& other) noexcept;
  ~blob_writer();

  // Appends bytes. Never blocks on disk: each full chunk is queued to the store's writer thread.
  // Only while 8 chunks (~8 MiB) of this writer are still queued does it wait for the oldest to
  // commit: that bounds a writer's memory when the disk is slower than its source.
  // Returns the first error of any earlier chunk write (e.g. errc::map_full, errc::quota_exceeded),
  // or errc::size_mismatch as soon as more bytes than the expected size arrive.
  result<void> write(std::span<const std::byte> bytes);

  // Bytes written so far (queued or committed).
  std::uint64_t written() const noexcept;

  // Bytes from offset 0 that are committed to the map and readable with read_committed.
  // Always a multiple of kChunkSize until commit() succeeds.
  std::uint64_t committed() const noexcept;

  // Called on the writer thread with the new committed() after each chunk commit. Lets the
  // proxy drop the in-memory tail it keeps for clients that join late. It must return quickly;
  // store calls that wait for the writer thread fail there with errc::invalid_argument.
  void on_progress(std::function<void(std::uint64_t committed)> fn);

  // Like blob_reader::visit, for the committed part [0, committed()) of this unfinished blob.
  result<std::uint64_t> visit_committed(std::uint64_t offset, std::uint64_t length,
                                        const sink_fn& sink);

  // Checks the size (against expected_size, if given) and the sha256 of everything written,
  // then writes the last chunk and the object record in one transaction. On any mismatch
  // nothing becomes visible and the chunks are removed. Blocks until done. Calling it twice
  // returns the first result.
  result<object_info> commit();

  // Commits asynchronously; `done` is called on the writer thread (on the calling thread if the
  // outcome is known already or the store is closed), under the same rules as on_progress.
  void commit_async(std::function<void(result<object_info>)> done);

  // Abandons the blob: queued and committed chunks are removed. Idempotent.
  void abort();

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace pantry::cache
