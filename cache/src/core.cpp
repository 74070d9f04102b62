#include "core.h"

#include "codec.h"

#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

namespace pantry::cache::detail {
namespace {

// docs/ARCHITECTURE.md, "The cache": a killed process's reader slot pins pages until cleared.
constexpr std::chrono::minutes kReaderCheckInterval{1};
// Bounds how long one group keeps earlier ops of the group waiting for their commit.
constexpr std::size_t kMaxGroupOps = 256;
// How long a group of ops that nobody waits for may wait for more ops to share its sync.
constexpr std::chrono::milliseconds kBatchWindow{2};

// Quota eviction goes this far below the quota so that the next writes do not each evict.
std::uint64_t low_water(std::uint64_t quota) {
  return quota - quota / 20;
}

constexpr std::pair<std::string_view, std::uint64_t counters::*> kCounterKeys[] = {
    {"bytes", &counters::bytes},
    {"pinned_bytes", &counters::pinned_bytes},
    {"pinned_objects", &counters::pinned_objects},
    {"hits", &counters::hits},
    {"misses", &counters::misses},
    {"evictions", &counters::evictions},
    {"evicted_bytes", &counters::evicted_bytes},
};

std::string_view as_chars(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

void sub_clamped(std::uint64_t& v, std::uint64_t d) {
  v = d > v ? 0 : v - d;
}

// The smallest digest greater than `id`; false if `id` is the largest.
bool next_digest(const digest& id, digest& next) {
  std::array<std::byte, digest::kSize> b;
  std::memcpy(b.data(), id.bytes().data(), b.size());
  for (std::size_t i = b.size(); i-- > 0;) {
    b[i] = static_cast<std::byte>(std::to_integer<unsigned>(b[i]) + 1);
    if (b[i] != std::byte{0}) {
      next = digest(b);
      return true;
    }
  }
  return false;
}

}  // namespace

core::core(const options& opt, std::shared_ptr<env_handle> env, int lock_fd, bool locked)
    : opt_(opt),
      env_(std::move(env)),
      lock_fd_(lock_fd),
      max_size_(opt.max_size),
      locked_(locked) {}

std::uint64_t core::max_size_limit() const noexcept {
  // As at open: the map holds at least twice the quota, so that the free pages eviction leaves
  // behind never run it out.
  return std::max(opt_.max_size, opt_.max_size_limit ? opt_.max_size_limit : env_->map_size() / 2);
}

std::uint64_t core::set_max_size(std::uint64_t bytes) noexcept {
  const std::uint64_t quota = std::min(bytes, max_size_limit());
  max_size_.store(quota);
  return quota;
}

core::~core() {
  if (writer_.joinable()) {
    if (on_writer_thread()) {
      writer_.detach();
    } else {
      writer_.join();
    }
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

bool core::on_writer_thread() const noexcept {
  return writer_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

error core::closed_error(std::string_view what) const {
  return error(errc::cancelled, std::string(what) + " failed: the cache at " +
                                    opt_.data_dir.string() + " is closed");
}

error core::read_only_error(std::string_view what) const {
  return error(errc::invalid_argument, std::string(what) + " failed: the cache at " +
                                           opt_.data_dir.string() +
                                           " is open read-only; only the owner (pantry serve) "
                                           "writes to it");
}

result<counters> core::read_counters(MDB_txn* txn) const {
  counters c;
  for (const auto& [name, field] : kCounterKeys) {
    MDB_val k = to_val(name);
    MDB_val v;
    int rc = mdb_get(txn, dbs().meta, &k, &v);
    if (rc == MDB_NOTFOUND) continue;
    if (rc != 0) return env_->lmdb_error(rc, "cache: read counters");
    if (!decode_u64(to_view(v), c.*field)) {
      return error(errc::corrupt, "cache: counter \"" + std::string(name) + "\" in " +
                                      opt_.data_dir.string() +
                                      " is corrupt; run `pantry cache verify`");
    }
  }
  return c;
}

result<void> core::load_counters() {
  auto txn = read_txn::begin(*env_);
  if (!txn) return txn.error();
  auto c = read_counters(txn->get());
  if (!c) return c.error();
  counters_ = *c;
  return {};
}

result<void> core::take_charge() {
  int dead = 0;
  mdb_reader_check(env_->env(), &dead);
  if (auto r = load_counters(); !r) return r;
  // Chunks of a blob whose writer died before its commit. A failure here (a full map) is not
  // fatal: reads still work, and gc() or the next start retries. A successor's own writers are
  // live (their chunks are kept), and none of their chunks is written yet.
  std::vector<write_op> group;
  group.push_back(gc_op(std::make_shared<gc_report>(), false, {}));
  run_group(group);
  return {};
}

result<void> core::start() {
  if (!owner()) return {};
  bool locked;
  {
    std::lock_guard g(lock_mutex_);
    locked = locked_;
  }
  if (locked) {
    if (auto r = take_charge(); !r) return r;
  } else {
    // The predecessor's counters so far (it writes them again before it lets go), and a check
    // that they can be read at all.
    if (auto r = load_counters(); !r) return r;
  }
  {
    std::lock_guard g(queue_mutex_);
    accepting_ = true;
  }
  // The thread keeps the core alive until it has drained the queue, even if close() is called
  // from a callback on the writer thread itself.
  writer_ = std::thread([self = shared_from_this()] { self->writer_main(); });
  return {};
}

bool core::wait_for_lock(std::chrono::milliseconds timeout) {
  std::unique_lock lk(lock_mutex_);
  lock_cv_.wait_for(lk, timeout, [this] { return locked_ || lock_given_up_; });
  return locked_;
}

bool core::acquire_lock() {
  {
    std::lock_guard g(lock_mutex_);
    if (locked_) return true;
  }
  for (;;) {
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) == 0) break;
    std::unique_lock lk(queue_mutex_);
    if (!accepting_) {
      lk.unlock();
      std::lock_guard g(lock_mutex_);
      lock_given_up_ = true;
      lock_cv_.notify_all();
      return false;
    }
    queue_cv_.wait_for(lk, std::chrono::milliseconds(50));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::pwrite(lock_fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid only makes the errc::locked message of a second process more helpful.
  }
  // Counters that cannot be read now (they could at open) stay as start() read them.
  (void)take_charge();
  std::lock_guard g(lock_mutex_);
  locked_ = true;
  lock_cv_.notify_all();
  return true;
}

void core::close() {
  if (closed_.exchange(true)) return;
  {
    std::lock_guard g(queue_mutex_);
    accepting_ = false;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) {
    if (on_writer_thread()) {
      writer_.detach();
      return;  // ~core, on the writer thread, releases the lock file.
    }
    writer_.join();
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
}

void core::submit(write_op op) {
  {
    std::lock_guard g(queue_mutex_);
    if (accepting_) {
      queue_.push_back(std::move(op));
      queue_cv_.notify_one();
      return;
    }
  }
  if (op.done) op.done(closed_error(op.what));
}

result<void> core::submit_and_wait(write_op op) {
  if (on_writer_thread()) {
    return error(errc::invalid_argument,
                 op.what +
                     " failed: called on the cache's writer thread (from a done or progress "
                     "callback), where it would wait for itself; call it from another thread");
  }
  auto p = std::make_shared<std::promise<result<void>>>();
  auto f = p->get_future();
  op.done = [p, user = std::move(op.done)](const result<void>& r) {
    if (user) user(r);
    p->set_value(r);
  };
  submit(std::move(op));
  return f.get();
}

bool core::access_dirty() {
  if (pending_hits_.load() != 0 || pending_misses_.load() != 0) return true;
  std::lock_guard g(access_mutex_);
  return !accesses_.empty();
}

void core::writer_main() {
  writer_id_.store(std::this_thread::get_id());
  if (!acquire_lock()) {
    // Never the writer: what queued fails as after close().
    std::deque<write_op> left;
    {
      std::lock_guard g(queue_mutex_);
      left.swap(queue_);
    }
    for (auto& op : left) {
      if (op.done) op.done(closed_error(op.what));
    }
    return;
  }
  using steady = std::chrono::steady_clock;
  auto interval = std::max(opt_.access_flush_interval, std::chrono::milliseconds(1));
  auto next_flush = steady::now() + interval;
  auto next_check = steady::now() + kReaderCheckInterval;
  std::unique_lock lk(queue_mutex_);
  for (;;) {
    if (queue_.empty() && accepting_) {
      queue_cv_.wait_until(lk, std::min(next_flush, next_check));
    }
    auto now = steady::now();
    if (now >= next_check) {
      next_check = now + kReaderCheckInterval;
      lk.unlock();
      int dead = 0;
      mdb_reader_check(env_->env(), &dead);
      lk.lock();
    }
    if (now >= next_flush) {
      next_flush = now + interval;
      if (access_dirty()) queue_.push_back(flush_op(false, {}));
    }
    if (queue_.empty()) {
      if (!accepting_) break;
      continue;
    }
    std::vector<write_op> group;
    std::size_t bytes = 0;
    bool sync = false;
    bool room = fill_group(group, bytes, sync);
    if (opt_.durable && !sync && room) {
      // Nobody waits for these ops: give the writers a moment to queue more (a commit follows
      // its last chunk within microseconds), so that one sync covers them all.
      auto deadline = steady::now() + kBatchWindow;
      while (room && !sync && accepting_) {
        if (queue_.empty() && queue_cv_.wait_until(lk, deadline) == std::cv_status::timeout &&
            queue_.empty()) {
          break;
        }
        room = fill_group(group, bytes, sync);
      }
    }
    lk.unlock();
    run_group(group);
    group.clear();
    lk.lock();
  }
  lk.unlock();
  final_cleanup();
}

bool core::fill_group(std::vector<write_op>& group, std::size_t& bytes, bool& sync) {
  while (!queue_.empty()) {
    if (group.size() >= kMaxGroupOps) return false;
    write_op& op = queue_.front();
    if (!group.empty() && bytes + op.bytes > opt_.max_txn_bytes) return false;
    bytes += op.bytes;
    sync = sync || op.sync;
    group.push_back(std::move(op));
    queue_.pop_front();
  }
  return bytes < opt_.max_txn_bytes;
}

void core::final_cleanup() {
  std::vector<write_op> group;
  group.push_back(flush_op(true, {}));
  run_group(group);

  // Writers still open when the store closes are aborted: their chunks go now rather than at the
  // next start. A blob_writer used later gets errc::cancelled.
  std::vector<digest> unfinished;
  {
    std::lock_guard g(live_mutex_);
    for (const auto& [id, st] : live_) {
      if (st.writing && st.leases == 0) unfinished.push_back(id);
    }
  }
  if (unfinished.empty()) return;
  write_op op;
  op.what = "cache: delete the chunks of unfinished blobs at close";
  op.apply = [this, unfinished](txn_ctx& ctx) -> result<void> {
    for (const digest& id : unfinished) {
      auto n = delete_chunks(ctx, id, "cache: delete the chunks of unfinished " + id.short_str());
      if (!n) return n.error();
    }
    return {};
  };
  op.done = [](const result<void>&) {};
  group.clear();
  group.push_back(std::move(op));
  run_group(group);
}

void core::run_group(std::vector<write_op>& group) {
  txn_ctx ctx;
  ctx.c = counters_;
  ctx.reserved_total = reserved_total_;
  std::vector<result<void>> results;
  results.reserve(group.size());
  int rc = mdb_txn_begin(env_->env(), nullptr, 0, &ctx.txn);
  if (rc != 0) {
    for (auto& op : group) {
      if (op.done) op.done(env_->lmdb_error(rc, op.what));
    }
    return;
  }
  for (auto& op : group) {
    results.push_back(op.apply(ctx));
    if (ctx.lmdb_rc != 0) break;
  }
  if (ctx.lmdb_rc == 0 && ctx.counters_dirty) (void)write_counters(ctx);
  bool commit_failed = false;
  if (ctx.lmdb_rc == 0) {
    bool sync = std::any_of(group.begin(), group.end(), [](const write_op& op) { return op.sync; });
    rc = commit_txn(ctx, sync);
    if (rc == 0) {
      adopt(ctx);
      end_ctx(ctx);
      for (std::size_t i = 0; i < group.size(); ++i) {
        if (group[i].done) group[i].done(results[i]);
      }
      return;
    }
    commit_failed = true;
  } else {
    mdb_txn_abort(ctx.txn);
    ctx.txn = nullptr;
  }
  end_ctx(ctx);

  if (group.size() == 1) {
    // An LMDB failure in apply already produced this op's error; a failed commit did not.
    error e = !commit_failed && !results.empty() && !results.back()
                  ? results.back().error()
                  : env_->lmdb_error(commit_failed ? rc : ctx.lmdb_rc, group[0].what);
    if (group[0].done) group[0].done(e);
    return;
  }
  // One op made the whole group fail (a full map, say): retry them one per transaction, so that
  // only the ops that cannot fit fail.
  for (auto& op : group) {
    std::vector<write_op> one;
    one.push_back(std::move(op));
    run_group(one);
  }
}

int core::commit_txn(txn_ctx& ctx, bool sync) {
  // MDB_NOMETASYNC still syncs the data pages before the meta page is written, so a crash
  // loses at most these transactions, never consistency; the next synced commit's fdatasync
  // makes them durable too. Only this thread commits, so toggling the flag is safe (LMDB keeps
  // its synchronous meta fd open for exactly this).
  bool relax = opt_.durable && !sync;
  if (relax) mdb_env_set_flags(env_->env(), MDB_NOMETASYNC, 1);
  int rc = mdb_txn_commit(ctx.txn);
  ctx.txn = nullptr;
  if (relax) mdb_env_set_flags(env_->env(), MDB_NOMETASYNC, 0);
  return rc;
}

void core::end_ctx(txn_ctx& ctx) {
  if (ctx.evicting.empty()) return;
  {
    std::lock_guard g(live_mutex_);
    for (const digest& id : ctx.evicting) {
      auto it = live_.find(id);
      if (it == live_.end()) continue;
      it->second.evicting = false;
      if (it->second.idle()) live_.erase(it);
    }
  }
  ctx.evicting.clear();
  live_cv_.notify_all();
}

void core::adopt(txn_ctx& ctx) {
  counters_ = ctx.c;
  reserved_total_ = ctx.reserved_total;
  for (auto& [w, v] : ctx.reservations)
    w->reserved_ = v;
  for (auto& [w, e] : ctx.failed_writers) {
    if (!w->wt_failed_) w->wt_failed_ = e;
  }
}

error core::fail(txn_ctx& ctx, int rc, std::string_view what) {
  if (ctx.lmdb_rc == 0) ctx.lmdb_rc = rc;
  return env_->lmdb_error(rc, what);
}

result<void> core::put(txn_ctx& ctx, MDB_dbi dbi, std::string_view key, std::string_view value,
                       std::string_view what) {
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  if (int rc = mdb_put(ctx.txn, dbi, &k, &v, 0); rc != 0) return fail(ctx, rc, what);
  return {};
}

result<bool> core::del(txn_ctx& ctx, MDB_dbi dbi, std::string_view key, std::string_view what) {
  MDB_val k = to_val(key);
  int rc = mdb_del(ctx.txn, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return fail(ctx, rc, what);
  return true;
}

result<std::optional<std::string_view>> core::get(txn_ctx& ctx, MDB_dbi dbi, std::string_view key,
                                                  std::string_view what) {
  MDB_val k = to_val(key);
  MDB_val v;
  int rc = mdb_get(ctx.txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
  if (rc != 0) return fail(ctx, rc, what);
  return std::optional<std::string_view>(to_view(v));
}

result<void> core::write_counters(txn_ctx& ctx) {
  for (const auto& [name, field] : kCounterKeys) {
    auto r = put(ctx, dbs().meta, name, encode_u64(ctx.c.*field), "cache: write counters");
    if (!r) return r;
  }
  return {};
}

const error* core::failed_in(const txn_ctx& ctx, blob_writer::impl& w) const {
  if (w.wt_failed_) return &*w.wt_failed_;
  for (const auto& [p, e] : ctx.failed_writers) {
    if (p == &w) return &e;
  }
  return nullptr;
}

std::uint64_t core::reserved_of(const txn_ctx& ctx, blob_writer::impl* w) const {
  for (const auto& [p, v] : ctx.reservations) {
    if (p == w) return v;
  }
  return w->reserved_;
}

void core::set_reserved(txn_ctx& ctx, blob_writer::impl* w, std::uint64_t v) {
  std::uint64_t old = reserved_of(ctx, w);
  sub_clamped(ctx.reserved_total, old);
  ctx.reserved_total += v;
  for (auto& [p, pv] : ctx.reservations) {
    if (p == w) {
      pv = v;
      return;
    }
  }
  ctx.reservations.emplace_back(w, v);
}

result<void> core::reserve(txn_ctx& ctx, blob_writer::impl& w, std::uint64_t need) {
  const std::uint64_t quota = max_size();
  if (quota == 0 || w.pinned_) return {};
  std::uint64_t have = reserved_of(ctx, &w);
  if (need <= have) return {};
  if (need > quota) {
    return error(errc::quota_exceeded, "cache: cannot store " + w.id_.short_str() + " (" +
                                           (w.expected_size_ ? "" : "at least ") +
                                           human_size(need) +
                                           "): it is larger than the whole cache quota of " +
                                           human_size(quota) + "; raise cache.max_size");
  }
  auto r = make_room(ctx, need - have,
                     "cache: store " + w.id_.short_str() + " (" +
                         (w.expected_size_ ? "" : "at least ") + human_size(need) + ")");
  if (!r) return r;
  set_reserved(ctx, &w, need);
  return {};
}

result<void> core::make_room(txn_ctx& ctx, std::uint64_t delta, std::string_view what) {
  std::uint64_t quota = max_size();
  std::uint64_t used = ctx.c.bytes + ctx.reserved_total;
  if (quota == 0 || used + delta <= quota) return {};
  std::uint64_t must = used + delta - quota;
  std::uint64_t want = std::max(must, used + delta - std::min(used + delta, low_water(quota)));
  std::uint64_t freed = 0;
  auto victims = collect_victims(ctx, want, freed);
  if (!victims) return victims.error();
  if (freed < must) {
    unmark_evicting(ctx, *victims);
    return error(errc::quota_exceeded,
                 std::string(what) + " failed: no room for " + human_size(delta) +
                     " more: the cache holds " + human_size(ctx.c.bytes) + " plus " +
                     human_size(ctx.reserved_total) + " being written, of a quota of " +
                     human_size(quota) + ", and only " + human_size(freed) +
                     " can be evicted now (blobs being read or written are never evicted); "
                     "raise cache.max_size or retry when readers are done");
  }
  return evict(ctx, *victims, what);
}

result<std::vector<core::victim>> core::collect_victims(txn_ctx& ctx, std::uint64_t want,
                                                        std::uint64_t& freed) {
  std::vector<victim> victims;
  cursor c;
  if (int rc = c.open(ctx.txn, dbs().lru); rc != 0) {
    return fail(ctx, rc, "cache: walk the lru index");
  }
  MDB_val k;
  MDB_val v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0 && freed < want; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    victim vic;
    if (!parse_lru_key(to_view(k), vic.access_ms, vic.id)) continue;
    {
      std::lock_guard g(live_mutex_);
      auto it = live_.find(vic.id);
      if (it != live_.end() && !it->second.idle()) continue;
      live_[vic.id].evicting = true;
    }
    ctx.evicting.push_back(vic.id);
    auto rec = get(ctx, dbs().objects, digest_key(vic.id), "cache: read " + vic.id.short_str());
    if (!rec) return rec.error();
    if (!*rec) {
      vic.stale = true;
    } else {
      auto info = decode_object(vic.id, **rec);
      if (!info || info->pinned || to_ms(info->last_access) != vic.access_ms) {
        vic.stale = true;
      } else {
        vic.size = info->size;
      }
    }
    freed += vic.size;
    victims.push_back(vic);
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return fail(ctx, rc, "cache: walk the lru index");
  return victims;
}

void core::unmark_evicting(txn_ctx& ctx, const std::vector<victim>& victims) {
  {
    std::lock_guard g(live_mutex_);
    for (const victim& v : victims) {
      auto it = live_.find(v.id);
      if (it == live_.end()) continue;
      it->second.evicting = false;
      if (it->second.idle()) live_.erase(it);
      std::erase(ctx.evicting, v.id);
    }
  }
  live_cv_.notify_all();
}

result<void> core::evict(txn_ctx& ctx, const std::vector<victim>& victims, std::string_view what,
                         gc_report* report) {
  std::string w = std::string(what) + ": evict";
  for (const victim& v : victims) {
    if (!v.stale) {
      auto n = delete_chunks(ctx, v.id, w + " " + v.id.short_str());
      if (!n) return n.error();
      auto d = del(ctx, dbs().objects, digest_key(v.id), w + " " + v.id.short_str());
      if (!d) return d.error();
      sub_clamped(ctx.c.bytes, v.size);
      ctx.c.evictions += 1;
      ctx.c.evicted_bytes += v.size;
      ctx.counters_dirty = true;
      if (report != nullptr) {
        report->evicted_blobs += 1;
        report->evicted_bytes += v.size;
      }
    }
    auto d = del(ctx, dbs().lru, lru_key(v.access_ms, v.id), w + " " + v.id.short_str());
    if (!d) return d.error();
  }
  return {};
}

result<std::uint64_t> core::delete_chunks(txn_ctx& ctx, const digest& id, std::string_view what) {
  cursor c;
  if (int rc = c.open(ctx.txn, dbs().blobs); rc != 0) return fail(ctx, rc, what);
  std::string first = chunk_key(id, 0);
  std::uint64_t n = 0;
  for (;;) {
    MDB_val k = to_val(first);
    MDB_val v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) break;
    if (rc != 0) return fail(ctx, rc, what);
    if (k.mv_size < digest::kSize || std::memcmp(k.mv_data, first.data(), digest::kSize) != 0) {
      break;
    }
    if (rc = mdb_cursor_del(c.get(), 0); rc != 0) return fail(ctx, rc, what);
    ++n;
  }
  return n;
}

result<void> core::sweep_orphans(txn_ctx& ctx, gc_report& report) {
  constexpr std::string_view kWhat = "cache: remove orphan chunks";
  cursor c;
  if (int rc = c.open(ctx.txn, dbs().blobs); rc != 0) return fail(ctx, rc, kWhat);
  std::string seek;  // empty: start at the first key
  for (;;) {
    MDB_val k = to_val(seek);
    MDB_val v;
    int rc = mdb_cursor_get(c.get(), &k, &v, seek.empty() ? MDB_FIRST : MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) break;
    if (rc != 0) return fail(ctx, rc, kWhat);
    digest id;
    std::uint32_t index = 0;
    if (!parse_chunk_key(to_view(k), id, index)) {
      // Not a key this code writes: drop it.
      std::string bad(to_view(k));
      auto d = del(ctx, dbs().blobs, bad, kWhat);
      if (!d) return d.error();
      report.orphan_chunks += 1;
      seek = bad;
      continue;
    }
    bool busy;
    {
      std::lock_guard g(live_mutex_);
      auto it = live_.find(id);
      busy = it != live_.end() && !it->second.idle();
    }
    if (!busy) {
      auto rec = get(ctx, dbs().objects, digest_key(id), kWhat);
      if (!rec) return rec.error();
      if (!*rec) {
        auto n = delete_chunks(ctx, id, kWhat);
        if (!n) return n.error();
        report.orphan_blobs += 1;
        report.orphan_chunks += *n;
      }
    }
    digest next;
    if (!next_digest(id, next)) break;
    seek = chunk_key(next, 0);
  }
  return {};
}

result<void> core::claim_writer(const digest& id) {
  std::unique_lock lk(live_mutex_);
  for (;;) {
    live_state& st = live_[id];
    if (st.writing && !st.aborting) {
      return error(errc::already_exists,
                   "cache: " + id.short_str() + " is being written by another writer");
    }
    if (!st.evicting && !st.aborting) {
      st.writing = true;
      // A blob removed while leased had its chunks kept for the readers; they are this
      // digest's bytes, so the new writer simply overwrites them.
      st.doomed = false;
      return {};
    }
    if (on_writer_thread()) {
      return error(errc::invalid_argument,
                   "cache: begin " + id.short_str() +
                       " failed: called on the cache's writer thread while the digest is being "
                       "evicted or discarded; call it from another thread");
    }
    live_cv_.wait(lk);
  }
}

void core::unclaim_writer(const digest& id) {
  {
    std::lock_guard g(live_mutex_);
    auto it = live_.find(id);
    if (it != live_.end()) {
      it->second.writing = false;
      it->second.aborting = false;
      if (it->second.idle()) live_.erase(it);
    }
  }
  live_cv_.notify_all();
}

void core::wait_for_writer(const digest& id) {
  std::unique_lock lk(live_mutex_);
  live_cv_.wait(lk, [&] {
    auto it = live_.find(id);
    return it == live_.end() || !it->second.writing;
  });
}

core::lease_result core::take_lease(const digest& id) {
  std::lock_guard g(live_mutex_);
  live_state& st = live_[id];
  if (st.evicting || st.doomed) return lease_result::busy;
  ++st.leases;
  return lease_result::leased;
}

void core::release_lease(const digest& id) {
  bool delete_now = false;
  {
    std::lock_guard g(live_mutex_);
    auto it = live_.find(id);
    if (it == live_.end() || it->second.leases == 0) return;
    live_state& st = it->second;
    --st.leases;
    if (st.leases == 0 && st.doomed && !st.writing) {
      delete_now = true;
    } else if (st.idle()) {
      live_.erase(it);
    }
  }
  if (delete_now) submit(doomed_op(id));
}

void core::note_access(const digest& id) {
  std::int64_t now = to_ms(clock::now());
  std::lock_guard g(access_mutex_);
  accesses_[id] = now;
}

result<std::optional<object_info>> core::stored_by_another(txn_ctx& ctx, const digest& id,
                                                           std::string_view what) {
  auto rec = get(ctx, dbs().objects, digest_key(id), what);
  if (!rec) return rec.error();
  if (!*rec) return std::optional<object_info>();
  auto info = decode_object(id, **rec);
  if (!info) return info.error();
  return std::optional<object_info>(std::move(*info));
}

write_op core::chunk_op(std::shared_ptr<blob_writer::impl> w, std::uint32_t index,
                        std::shared_ptr<std::vector<std::byte>> bytes) {
  write_op op;
  op.what = "cache: write chunk " + std::to_string(index) + " of " + w->id_.short_str();
  op.bytes = bytes->size() + 64;
  op.sync = false;
  op.apply = [this, w, index, bytes, what = op.what](txn_ctx& ctx) -> result<void> {
    if (w->aborted_.load()) {
      return error(errc::cancelled, what + " skipped: the writer was aborted");
    }
    if (const error* e = failed_in(ctx, *w)) return *e;
    auto stored = stored_by_another(ctx, w->id_, what);
    if (!stored) return stored.error();
    if (*stored) return {};  // its chunks hold these very bytes already: leave them be
    std::uint64_t need = std::max<std::uint64_t>(w->expected_size_.value_or(0),
                                                 std::uint64_t{index + 1} * kChunkSize);
    if (auto r = reserve(ctx, *w, need); !r) {
      if (ctx.lmdb_rc == 0) ctx.failed_writers.emplace_back(w.get(), r.error());
      return r;
    }
    return put(ctx, dbs().blobs, chunk_key(w->id_, index), as_chars(*bytes), what);
  };
  op.done = [w, index, bytes](const result<void>& r) { w->chunk_done(index, r, bytes); };
  return op;
}

write_op core::commit_op(std::shared_ptr<blob_writer::impl> w, std::uint32_t index,
                         std::shared_ptr<std::vector<std::byte>> last, std::uint64_t size,
                         std::function<void(result<object_info>)> done) {
  write_op op;
  op.what = "cache: commit " + w->id_.short_str();
  op.bytes = last->size() + 256;
  auto info = std::make_shared<object_info>();
  op.apply = [this, w, index, last, size, info, what = op.what](txn_ctx& ctx) -> result<void> {
    if (w->aborted_.load()) return error(errc::cancelled, what + " failed: the writer was aborted");
    if (const error* e = failed_in(ctx, *w)) return *e;
    auto stored = stored_by_another(ctx, w->id_, what);
    if (!stored) return stored.error();
    if (*stored) {
      // Committed by the process this one took over from: that record stands, counted once.
      *info = std::move(**stored);
      set_reserved(ctx, w.get(), 0);
      return {};
    }
    if (auto r = reserve(ctx, *w, size); !r) {
      if (ctx.lmdb_rc == 0) ctx.failed_writers.emplace_back(w.get(), r.error());
      return r;
    }
    auto now = from_ms(to_ms(clock::now()));
    info->id = w->id_;
    info->size = size;
    info->media_type = w->media_type_;
    info->chunk_count = chunk_count_for(size);
    info->created = now;
    info->last_access = now;
    info->pinned = w->pinned_;
    if (!last->empty()) {
      auto r = put(ctx, dbs().blobs, chunk_key(w->id_, index), as_chars(*last), what);
      if (!r) return r;
    }
    auto r = put(ctx, dbs().objects, digest_key(w->id_), encode_object(*info), what);
    if (!r) return r;
    if (w->pinned_) {
      ctx.c.pinned_bytes += size;
      ctx.c.pinned_objects += 1;
    } else {
      r = put(ctx, dbs().lru, lru_key(to_ms(now), w->id_), {}, what);
      if (!r) return r;
      ctx.c.bytes += size;
      set_reserved(ctx, w.get(), 0);
    }
    ctx.counters_dirty = true;
    return {};
  };
  op.done = [info, done = std::move(done)](const result<void>& r) {
    if (r) {
      done(*info);
    } else {
      done(r.error());
    }
  };
  return op;
}

write_op core::discard_op(std::shared_ptr<blob_writer::impl> w, std::function<void()> done) {
  {
    std::lock_guard g(live_mutex_);
    live_[w->id_].aborting = true;
  }
  write_op op;
  op.what = "cache: delete the chunks of unfinished " + w->id_.short_str();
  op.bytes = 4096;
  op.sync = false;
  op.apply = [this, w, what = op.what](txn_ctx& ctx) -> result<void> {
    bool leased;
    {
      std::lock_guard g(live_mutex_);
      live_state& st = live_[w->id_];
      // Readers of a blob removed while they read it still use these chunks: leave them to the
      // last lease.
      leased = st.leases > 0;
      if (leased) st.doomed = true;
    }
    if (leased) return {};
    auto stored = stored_by_another(ctx, w->id_, what);
    if (!stored) return stored.error();
    if (*stored) return {};  // the chunks are that complete blob's
    auto n = delete_chunks(ctx, w->id_, what);
    if (!n) return n.error();
    return {};
  };
  op.done = [this, w, done = std::move(done)](const result<void>&) {
    if (on_writer_thread()) {
      sub_clamped(reserved_total_, w->reserved_);
      w->reserved_ = 0;
    }
    unclaim_writer(w->id_);
    if (done) done();
  };
  return op;
}

write_op core::doomed_op(const digest& id) {
  write_op op;
  op.what = "cache: delete the chunks of removed " + id.short_str();
  op.bytes = 4096;
  op.sync = false;
  op.apply = [this, id, what = op.what](txn_ctx& ctx) -> result<void> {
    {
      std::lock_guard g(live_mutex_);
      auto it = live_.find(id);
      if (it == live_.end() || !it->second.doomed || it->second.leases > 0 || it->second.writing) {
        return {};
      }
    }
    auto rec = get(ctx, dbs().objects, digest_key(id), what);
    if (!rec) return rec.error();
    if (*rec) return {};  // stored again since
    auto n = delete_chunks(ctx, id, what);
    if (!n) return n.error();
    return {};
  };
  op.done = [this, id](const result<void>&) {
    std::lock_guard g(live_mutex_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    if (it->second.leases == 0 && !it->second.writing) it->second.doomed = false;
    if (it->second.idle()) live_.erase(it);
  };
  return op;
}

write_op core::flush_op(bool sync, std::function<void(const result<void>&)> done) {
  struct taken_state {
    bool taken = false;
    std::unordered_map<digest, std::int64_t, digest_hash> accesses;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
  };
  auto t = std::make_shared<taken_state>();
  write_op op;
  op.what = "cache: write access times";
  op.bytes = 64 * 1024;
  op.sync = sync;
  op.apply = [this, t, what = op.what](txn_ctx& ctx) -> result<void> {
    if (!t->taken) {
      t->taken = true;
      {
        std::lock_guard g(access_mutex_);
        t->accesses.swap(accesses_);
      }
      t->hits = pending_hits_.exchange(0);
      t->misses = pending_misses_.exchange(0);
    }
    for (const auto& [id, ms] : t->accesses) {
      auto rec = get(ctx, dbs().objects, digest_key(id), what);
      if (!rec) return rec.error();
      if (!*rec) continue;  // evicted or removed since
      auto info = decode_object(id, **rec);
      if (!info) continue;  // verify reports it
      std::int64_t old = to_ms(info->last_access);
      if (ms <= old) continue;
      info->last_access = from_ms(ms);
      if (!info->pinned) {
        auto d = del(ctx, dbs().lru, lru_key(old, id), what);
        if (!d) return d.error();
        auto p = put(ctx, dbs().lru, lru_key(ms, id), {}, what);
        if (!p) return p;
      }
      auto p = put(ctx, dbs().objects, digest_key(id), encode_object(*info), what);
      if (!p) return p;
    }
    if (t->hits != 0 || t->misses != 0) {
      ctx.c.hits += t->hits;
      ctx.c.misses += t->misses;
      ctx.counters_dirty = true;
    }
    return {};
  };
  op.done = [this, t, done = std::move(done)](const result<void>& r) {
    if (!r) {
      // Counts survive a failed flush; the access times only sharpen the LRU order and are
      // dropped.
      pending_hits_.fetch_add(t->hits);
      pending_misses_.fetch_add(t->misses);
    }
    if (done) done(r);
  };
  return op;
}

write_op core::gc_op(std::shared_ptr<gc_report> report, bool evict_to_quota,
                     std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = evict_to_quota ? "cache: gc" : "cache: remove orphan chunks";
  // Runs in a transaction of its own.
  op.bytes = opt_.max_txn_bytes;
  op.apply = [this, report, evict_to_quota, what = op.what](txn_ctx& ctx) -> result<void> {
    *report = {};
    if (auto r = sweep_orphans(ctx, *report); !r) return r;
    if (!evict_to_quota) return {};
    return this->evict_to_quota(ctx, what, report.get());
  };
  op.done = std::move(done);
  return op;
}

write_op core::evict_op(std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = "cache: evict down to the quota";
  // Runs in a transaction of its own.
  op.bytes = opt_.max_txn_bytes;
  op.apply = [this, what = op.what](txn_ctx& ctx) { return evict_to_quota(ctx, what, nullptr); };
  op.done = std::move(done);
  return op;
}

result<void> core::evict_to_quota(txn_ctx& ctx, std::string_view what, gc_report* report) {
  const std::uint64_t quota = max_size();
  const std::uint64_t used = ctx.c.bytes + ctx.reserved_total;
  if (quota == 0 || used <= quota) return {};
  std::uint64_t freed = 0;
  auto victims = collect_victims(ctx, used - low_water(quota), freed);
  if (!victims) return victims.error();
  return evict(ctx, *victims, what, report);
}

write_op core::remove_blob_op(const digest& id, std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = "cache: remove " + id.short_str();
  op.bytes = 4096;
  auto doomed = std::make_shared<bool>(false);
  op.apply = [this, id, doomed, what = op.what](txn_ctx& ctx) -> result<void> {
    auto rec = get(ctx, dbs().objects, digest_key(id), what);
    if (!rec) return rec.error();
    if (!*rec) return error(errc::not_found, what + " failed: it is not in the cache");
    auto info = decode_object(id, **rec);
    if (!info) return info.error();
    {
      std::lock_guard g(live_mutex_);
      auto it = live_.find(id);
      *doomed = it != live_.end() && it->second.leases > 0;
      if (*doomed) it->second.doomed = true;
    }
    auto d = del(ctx, dbs().objects, digest_key(id), what);
    if (!d) return d.error();
    if (info->pinned) {
      sub_clamped(ctx.c.pinned_bytes, info->size);
      sub_clamped(ctx.c.pinned_objects, 1);
    } else {
      d = del(ctx, dbs().lru, lru_key(to_ms(info->last_access), id), what);
      if (!d) return d.error();
      sub_clamped(ctx.c.bytes, info->size);
    }
    ctx.counters_dirty = true;
    if (!*doomed) {
      auto n = delete_chunks(ctx, id, what);
      if (!n) return n.error();
    }
    return {};
  };
  op.done = [this, id, doomed, done = std::move(done)](const result<void>& r) {
    if (!r && *doomed) {
      std::lock_guard g(live_mutex_);
      auto it = live_.find(id);
      if (it != live_.end()) {
        it->second.doomed = false;
        if (it->second.idle()) live_.erase(it);
      }
    }
    if (done) done(r);
  };
  return op;
}

write_op core::set_pinned_op(const digest& id, bool pinned,
                             std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = std::string("cache: ") + (pinned ? "pin " : "unpin ") + id.short_str();
  op.bytes = 4096;
  op.apply = [this, id, pinned, what = op.what](txn_ctx& ctx) -> result<void> {
    auto rec = get(ctx, dbs().objects, digest_key(id), what);
    if (!rec) return rec.error();
    if (!*rec) return error(errc::not_found, what + " failed: it is not in the cache");
    auto info = decode_object(id, **rec);
    if (!info) return info.error();
    if (info->pinned == pinned) return {};
    std::string lru = lru_key(to_ms(info->last_access), id);
    if (pinned) {
      auto d = del(ctx, dbs().lru, lru, what);
      if (!d) return d.error();
      sub_clamped(ctx.c.bytes, info->size);
      ctx.c.pinned_bytes += info->size;
      ctx.c.pinned_objects += 1;
    } else {
      auto p = put(ctx, dbs().lru, lru, {}, what);
      if (!p) return p;
      ctx.c.bytes += info->size;
      sub_clamped(ctx.c.pinned_bytes, info->size);
      sub_clamped(ctx.c.pinned_objects, 1);
    }
    info->pinned = pinned;
    ctx.counters_dirty = true;
    return put(ctx, dbs().objects, digest_key(id), encode_object(*info), what);
  };
  op.done = std::move(done);
  return op;
}

write_op core::put_op(MDB_dbi dbi, std::string what, std::string key, std::string value,
                      std::function<void(const result<void>&)> done) {
  std::vector<std::pair<std::string, std::string>> items;
  items.emplace_back(std::move(key), std::move(value));
  return put_many_op(dbi, std::move(what), std::move(items), std::move(done));
}

write_op core::put_many_op(MDB_dbi dbi, std::string what,
                           std::vector<std::pair<std::string, std::string>> items,
                           std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = std::move(what);
  for (const auto& [k, v] : items)
    op.bytes += k.size() + v.size() + 64;
  op.apply = [this, dbi, items = std::move(items), what = op.what](txn_ctx& ctx) -> result<void> {
    for (const auto& [k, v] : items) {
      if (auto r = put(ctx, dbi, k, v, what); !r) return r;
    }
    return {};
  };
  op.done = std::move(done);
  return op;
}

write_op core::del_op(MDB_dbi dbi, std::string what, std::string key, std::string missing_message,
                      std::function<void(const result<void>&)> done) {
  write_op op;
  op.what = std::move(what);
  op.bytes = 4096;
  op.apply = [this, dbi, key = std::move(key), missing = std::move(missing_message),
              what = op.what](txn_ctx& ctx) -> result<void> {
    auto d = del(ctx, dbi, key, what);
    if (!d) return d.error();
    if (!*d) return error(errc::not_found, missing);
    return {};
  };
  op.done = std::move(done);
  return op;
}

}  // namespace pantry::cache::detail
