#pragma once

// The shared state behind a store and the readers and writers it hands out: the environment,
// the single writer thread with its queue of write operations (group commit), the in-memory
// state of digests in use (leases, writers, evictions), batched access times and counters.

#include "lmdb_env.h"
#include "pantry/cache/store.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace pantry::cache::detail {

// Persisted in `meta`, one u64 per key.
struct counters {
  std::uint64_t bytes = 0;  // complete unpinned blobs: what the quota limits
  std::uint64_t pinned_bytes = 0;
  std::uint64_t pinned_objects = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;
  std::uint64_t evicted_bytes = 0;
};

class core;

// One write transaction of the writer thread, and the in-memory changes that take effect only
// if it commits.
struct txn_ctx {
  MDB_txn* txn = nullptr;
  counters c;
  bool counters_dirty = false;
  std::uint64_t reserved_total = 0;
  std::vector<std::pair<blob_writer::impl*, std::uint64_t>> reservations;
  std::vector<std::pair<blob_writer::impl*, error>> failed_writers;
  // Digests marked `evicting` by this transaction; unmarked when it ends either way.
  std::vector<digest> evicting;
  // Set by the first LMDB failure: the transaction can no longer commit.
  int lmdb_rc = 0;
};

// One queued write. `apply` stages it in the group's transaction: a logical failure (not found,
// quota) must happen before it writes anything, so that it fails only this op; an LMDB failure
// sets ctx.lmdb_rc and the group is retried one op per transaction. `done` runs on the writer
// thread once the outcome is final (or at once, with errc::cancelled, if the store is closing).
struct write_op {
  std::string what;       // "put chunk 3 of sha256:ab12…", for messages
  std::size_t bytes = 0;  // dirty bytes the op adds to a transaction, roughly
  // Whether a caller relies on the op being on disk once done (durable mode). Ops that nobody
  // waits for (chunks, whose blob is synced by its commit; timed access-time flushes; deletes of
  // unfinished blobs) skip the meta-page sync and may wait a moment to share a transaction.
  bool sync = true;
  std::function<result<void>(txn_ctx&)> apply;
  std::function<void(const result<void>&)> done;
};

// What this process knows about one digest beyond the database.
struct live_state {
  std::uint32_t leases = 0;  // open blob_readers: never evict
  bool writing = false;      // a blob_writer owns its chunks
  bool aborting = false;     // ... and is deleting them
  bool evicting = false;     // the writer thread is deleting it in an uncommitted transaction
  bool doomed = false;       // removed while leased: delete the chunks when the last lease ends
  bool idle() const noexcept {
    return leases == 0 && !writing && !aborting && !evicting && !doomed;
  }
};

class core : public std::enable_shared_from_this<core> {
 public:
  // `locked`: lock_fd holds the data dir's lock. Else (open_as_successor,
  // pantry/cache/succession.h) the writer thread takes it before its first write.
  core(const options& opt, std::shared_ptr<env_handle> env, int lock_fd, bool locked = true);
  ~core();

  // Owner: reclaims dead readers, loads counters, removes orphan chunks, starts the writer. A
  // successor leaves all but the last to the writer thread, once it holds the lock.
  result<void> start();
  // Waits up to `timeout` until the writer holds the data dir's lock; false if it does not.
  bool wait_for_lock(std::chrono::milliseconds timeout);
  // Drains the queue, writes access times and counters, deletes unfinished writers' chunks and
  // stops the writer; releases the data dir lock. Readers keep working on the environment.
  void close();

  // The options the store was opened with; the quota is max_size() instead.
  const options& opts() const noexcept { return opt_; }
  // The quota now (0: none).
  std::uint64_t max_size() const noexcept { return max_size_.load(); }
  // The largest quota set_max_size() takes: options::max_size_limit, or half the map.
  std::uint64_t max_size_limit() const noexcept;
  // Sets the quota to `bytes` capped at max_size_limit(); returns the quota set. Eviction down to
  // a lower one is evict_op()'s.
  std::uint64_t set_max_size(std::uint64_t bytes) noexcept;
  env_handle& env() const noexcept { return *env_; }
  const databases& dbs() const noexcept { return env_->dbs(); }
  bool owner() const noexcept { return opt_.mode == open_mode::owner; }
  bool on_writer_thread() const noexcept;
  error closed_error(std::string_view what) const;
  error read_only_error(std::string_view what) const;

  // Queues `op`; never blocks. If the store is closing, calls op.done with errc::cancelled.
  void submit(write_op op);
  // Queues `op` and waits for its outcome. Refused on the writer thread (it would deadlock).
  result<void> submit_and_wait(write_op op);

  // Leases and the other per-digest states.
  enum class lease_result { leased, busy };
  lease_result take_lease(const digest& id);
  void release_lease(const digest& id);
  // Claims `id` for a new writer. Waits while the digest is being evicted or its previous writer's
  // chunks are being deleted; errc::already_exists if another writer has it.
  result<void> claim_writer(const digest& id);
  // Ends a writer's claim.
  void unclaim_writer(const digest& id);
  // Waits until no writer has `id`.
  void wait_for_writer(const digest& id);
  void note_access(const digest& id);
  void count_hit() noexcept { pending_hits_.fetch_add(1, std::memory_order_relaxed); }
  void count_miss() noexcept { pending_misses_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t pending_hits() const noexcept { return pending_hits_.load(); }
  std::uint64_t pending_misses() const noexcept { return pending_misses_.load(); }

  // Ops for the queue.
  write_op chunk_op(std::shared_ptr<blob_writer::impl> w, std::uint32_t index,
                    std::shared_ptr<std::vector<std::byte>> bytes);
  write_op commit_op(std::shared_ptr<blob_writer::impl> w, std::uint32_t index,
                     std::shared_ptr<std::vector<std::byte>> last, std::uint64_t size,
                     std::function<void(result<object_info>)> done);
  // Deletes an unfinished writer's chunks (abort or failed commit) and ends its claim.
  write_op discard_op(std::shared_ptr<blob_writer::impl> w, std::function<void()> done);
  write_op flush_op(bool sync, std::function<void(const result<void>&)> done);
  // Removes orphan chunks and, if `evict`, evicts until the cached bytes fit the quota.
  write_op gc_op(std::shared_ptr<gc_report> report, bool evict,
                 std::function<void(const result<void>&)> done);
  // Evicts until the cached bytes fit the quota (after set_max_size() lowered it).
  write_op evict_op(std::function<void(const result<void>&)> done);
  // Deletes the chunks of a blob removed while leased, once the last lease has ended.
  write_op doomed_op(const digest& id);
  write_op remove_blob_op(const digest& id, std::function<void(const result<void>&)> done);
  write_op set_pinned_op(const digest& id, bool pinned,
                         std::function<void(const result<void>&)> done);
  write_op put_op(MDB_dbi dbi, std::string what, std::string key, std::string value,
                  std::function<void(const result<void>&)> done);
  // Puts every pair in one transaction: all of them become visible together, or none.
  write_op put_many_op(MDB_dbi dbi, std::string what,
                       std::vector<std::pair<std::string, std::string>> items,
                       std::function<void(const result<void>&)> done);
  write_op del_op(MDB_dbi dbi, std::string what, std::string key, std::string missing_message,
                  std::function<void(const result<void>&)> done);

  // Reads counters from `meta` in `txn`.
  result<counters> read_counters(MDB_txn* txn) const;

 private:
  void writer_main();
  void run_group(std::vector<write_op>& group);
  // Commits ctx.txn; without `sync`, in durable mode, skips the sync of the meta page.
  int commit_txn(txn_ctx& ctx, bool sync);
  // Moves ops from the queue into `group` while they fit in one transaction. Returns false
  // once the group is full.
  bool fill_group(std::vector<write_op>& group, std::size_t& bytes, bool& sync);
  void end_ctx(txn_ctx& ctx);
  void adopt(txn_ctx& ctx);
  void final_cleanup();
  bool access_dirty();
  const error* failed_in(const txn_ctx& ctx, blob_writer::impl& w) const;

  // Transaction helpers: an LMDB failure sets ctx.lmdb_rc and returns an error naming `what`.
  result<void> put(txn_ctx& ctx, MDB_dbi dbi, std::string_view key, std::string_view value,
                   std::string_view what);
  result<bool> del(txn_ctx& ctx, MDB_dbi dbi, std::string_view key, std::string_view what);
  result<std::optional<std::string_view>> get(txn_ctx& ctx, MDB_dbi dbi, std::string_view key,
                                              std::string_view what);
  error fail(txn_ctx& ctx, int rc, std::string_view what);
  result<void> write_counters(txn_ctx& ctx);

  std::uint64_t reserved_of(const txn_ctx& ctx, blob_writer::impl* w) const;
  void set_reserved(txn_ctx& ctx, blob_writer::impl* w, std::uint64_t v);
  // Raises w's reservation to `need` bytes, evicting if the quota requires it.
  result<void> reserve(txn_ctx& ctx, blob_writer::impl& w, std::uint64_t need);

  struct victim {
    digest id;
    std::int64_t access_ms = 0;
    std::uint64_t size = 0;
    bool stale = false;  // an lru key without a matching unpinned record: drop just the key
  };
  // Walks `lru` from the oldest access, marking evictable blobs `evicting`, until `want` bytes
  // are collected.
  result<std::vector<victim>> collect_victims(txn_ctx& ctx, std::uint64_t want,
                                              std::uint64_t& freed);
  result<void> evict(txn_ctx& ctx, const std::vector<victim>& victims, std::string_view what,
                     gc_report* report = nullptr);
  void unmark_evicting(txn_ctx& ctx, const std::vector<victim>& victims);
  // Makes room for `delta` more bytes under the quota, evicting down to the low-water mark.
  result<void> make_room(txn_ctx& ctx, std::uint64_t delta, std::string_view what);
  // When the cached and reserved bytes exceed the quota, evicts down to the low-water mark.
  result<void> evict_to_quota(txn_ctx& ctx, std::string_view what, gc_report* report);
  // The record of `id` when it is already complete. Within this process a writer's claim rules
  // that out; a process handing the data dir over (open_as_successor, pantry/cache/succession.h)
  // may have committed the same blob after this one's writer began, and then its chunks hold the
  // same bytes.
  result<std::optional<object_info>> stored_by_another(txn_ctx& ctx, const digest& id,
                                                       std::string_view what);
  // Deletes every chunk of `id`. Returns how many.
  result<std::uint64_t> delete_chunks(txn_ctx& ctx, const digest& id, std::string_view what);
  // Removes chunks whose digest has neither a record nor a live state.
  result<void> sweep_orphans(txn_ctx& ctx, gc_report& report);

  // The owner's work at open: reclaims dead readers' slots, loads the counters, removes orphan
  // chunks. In start() for a store that holds the lock, on the writer thread for a successor.
  result<void> take_charge();
  // Reads the persisted counters into counters_.
  result<void> load_counters();
  // Successor, on the writer thread: waits (polling the lock every 50 ms while ops queue) until
  // the predecessor releases the lock, then takes it and take_charge(). False if the store closed
  // first: the queued ops then fail with closed_error.
  bool acquire_lock();

  const options opt_;
  const std::shared_ptr<env_handle> env_;
  int lock_fd_;
  std::atomic<std::uint64_t> max_size_;  // the quota: read by any thread, set by set_max_size()

  std::mutex lock_mutex_;
  std::condition_variable lock_cv_;
  bool locked_;                 // guarded by lock_mutex_
  bool lock_given_up_ = false;  // guarded by lock_mutex_: closed before the lock was taken

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<write_op> queue_;  // guarded by queue_mutex_
  bool accepting_ = false;      // guarded by queue_mutex_; from start() until close()
  std::thread writer_;
  std::atomic<std::thread::id> writer_id_{};
  std::atomic<bool> closed_{false};

  // Writer thread only.
  counters counters_;
  std::uint64_t reserved_total_ = 0;

  mutable std::mutex live_mutex_;
  std::condition_variable live_cv_;  // signalled when a digest stops evicting or aborting
  std::unordered_map<digest, live_state, digest_hash> live_;  // guarded by live_mutex_

  std::mutex access_mutex_;
  std::unordered_map<digest, std::int64_t, digest_hash> accesses_;  // guarded by access_mutex_
  std::atomic<std::uint64_t> pending_hits_{0};
  std::atomic<std::uint64_t> pending_misses_{0};
};

}  // namespace pantry::cache::detail

namespace pantry::cache {

class blob_reader::impl {
 public:
  impl(std::shared_ptr<detail::core> c, object_info info, bool leased)
      : core_(std::move(c)), info_(std::move(info)), leased_(leased) {}
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() {
    if (leased_) core_->release_lease(info_.id);
  }

  const std::shared_ptr<detail::core> core_;
  const object_info info_;
  const bool leased_;
};

class blob_writer::impl : public std::enable_shared_from_this<blob_writer::impl> {
 public:
  impl(std::shared_ptr<detail::core> c, const digest& id, std::string media_type,
       std::optional<std::uint64_t> expected_size, bool pinned)
      : core_(std::move(c)),
        id_(id),
        media_type_(std::move(media_type)),
        expected_size_(expected_size),
        pinned_(pinned) {}
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  result<void> write(std::span<const std::byte> bytes);
  result<std::uint64_t> visit_committed(std::uint64_t offset, std::uint64_t length,
                                        const sink_fn& sink);
  void commit_async(std::function<void(result<object_info>)> done);
  void abort();

  // Writer-thread callbacks.
  void chunk_done(std::uint32_t index, const result<void>& r,
                  std::shared_ptr<std::vector<std::byte>> buffer);
  void finish(result<object_info> r);

  const std::shared_ptr<detail::core> core_;
  const digest id_;
  const std::string media_type_;
  const std::optional<std::uint64_t> expected_size_;
  const bool pinned_;

  // Used by the one thread that writes.
  hasher hasher_;
  std::vector<std::byte> buf_;
  std::uint32_t next_chunk_ = 0;
  std::atomic<std::uint64_t> written_{0};

  std::atomic<std::uint64_t> committed_{0};
  // Tells the writer thread to skip this writer's queued chunks.
  std::atomic<bool> aborted_{false};

  enum class phase { open, committing, done };
  std::mutex mutex_;
  std::condition_variable cv_;
  phase phase_ = phase::open;                                      // guarded by mutex_
  unsigned in_flight_ = 0;                                         // guarded by mutex_
  std::optional<error> failed_;                                    // guarded by mutex_
  std::optional<result<object_info>> final_;                       // guarded by mutex_
  std::vector<std::function<void(result<object_info>)>> waiters_;  // guarded by mutex_
  std::function<void(std::uint64_t)> progress_;                    // guarded by mutex_
  std::vector<std::vector<std::byte>> spare_;                      // guarded by mutex_

  // Writer thread only: quota bytes held for this writer, and its final failure.
  std::uint64_t reserved_ = 0;
  std::optional<error> wt_failed_;
};

}  // namespace pantry::cache
