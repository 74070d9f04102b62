#include "pantry/cache/store.h"

#include "codec.h"
#include "core.h"
#include "lmdb_env.h"
#include "pantry/cache/compress.h"
#include "pantry/cache/succession.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

namespace pantry::cache {
namespace {

using detail::core;
using detail::human_size;
using detail::read_txn;
using detail::to_val;
using detail::to_view;

// A writer queues at most this many chunks (~8 MiB) before write() waits for the writer thread:
// the bound on a writer's memory when the disk is slower than its source.
constexpr unsigned kMaxQueuedChunks = 8;

error not_in_cache(const digest& id) {
  return error(errc::not_found, "cache: " + id.short_str() + " is not in the cache");
}

// The data dir's lock file, open; `locked` unless it is held by the process this one succeeds.
struct data_dir_lock {
  int fd = -1;
  bool locked = false;
};

// Takes the data dir's lock file and writes this process's pid into it. The lock is an flock on
// an open file description, so it also keeps a second store of this process out. When the
// holder's pid is `successor_of` (not 0), the file is returned open but not locked.
result<data_dir_lock> lock_data_dir(const std::filesystem::path& data_dir, long successor_of) {
  std::filesystem::path path = data_dir / "pantry.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    return error(errc::io_error, "cache: cannot open the lock file " + path.string() + ": " +
                                     std::strerror(e) + "; check the data dir's permissions");
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e != EWOULDBLOCK) {
      ::close(fd);
      return error(errc::io_error, "cache: cannot lock " + path.string() + ": " + std::strerror(e));
    }
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    if (successor_of != 0 && pid == successor_of) return data_dir_lock{fd, false};
    ::close(fd);
    std::string who = pid > 0 ? "process " + std::to_string(pid) : "another process";
    return error(errc::locked, "cache: data dir " + data_dir.string() + " is in use by " + who +
                                   " (it holds " + path.string() +
                                   "); stop that pantry or use another data dir");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid only makes the errc::locked message of a second process more helpful.
  }
  return data_dir_lock{fd, true};
}

template <class What>
result<void> check_key(const core& c, std::string_view key, const What& what) {
  if (key.empty()) return error(errc::invalid_argument, what() + ": the key is empty");
  auto max = static_cast<std::size_t>(mdb_env_get_maxkeysize(c.env().env()));
  if (key.size() > max) {
    return error(errc::invalid_argument, what() + ": the key is " + std::to_string(key.size()) +
                                             " bytes long, more than the limit of " +
                                             std::to_string(max) + " bytes");
  }
  return {};
}

std::string quoted(std::string_view key) {
  constexpr std::size_t kMax = 200;
  std::string out = "\"";
  out.append(key.substr(0, kMax));
  if (key.size() > kMax) out += "…";
  out += '"';
  return out;
}

// Offers bytes [offset, offset + length) of a blob's chunks to `sink`. `limit` is how many bytes
// are readable; `blob_size` is the full size when the blob is complete (its last chunk may be
// short), else 0 and every chunk must be full. `missing` makes the error for an absent chunk.
result<std::uint64_t> visit_chunks(core& c, const digest& id, std::uint64_t limit,
                                   std::optional<std::uint64_t> blob_size, std::uint64_t offset,
                                   std::uint64_t length, const sink_fn& sink,
                                   const std::function<error(std::uint32_t, read_txn&)>& missing) {
  if (offset > limit || length > limit - offset) {
    return error(errc::invalid_argument,
                 "cache: read " + id.short_str() + " bytes [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + "): outside the " +
                     (blob_size ? "blob's " : "committed ") + std::to_string(limit) + " bytes");
  }
  if (length == 0) return std::uint64_t{0};
  auto index = static_cast<std::uint32_t>(offset / kChunkSize);
  std::size_t within = static_cast<std::size_t>(offset % kChunkSize);
  std::uint64_t done = 0;
  while (done < length) {
    // One short transaction per chunk: a reader pins old pages only while it copies one chunk,
    // so the pages that eviction frees are reused sooner. Chunks of a leased or unfinished blob
    // never change, so the pieces still form one consistent blob.
    auto txn = read_txn::begin(c.env());
    if (!txn) return txn.error();
    auto key = detail::chunk_key_array(id, index);
    MDB_val k{key.size(), key.data()};
    MDB_val v;
    int rc = mdb_get(txn->get(), c.dbs().blobs, &k, &v);
    if (rc == MDB_NOTFOUND) return missing(index, *txn);
    if (rc != 0) return c.env().lmdb_error(rc, "cache: read " + id.short_str());
    std::uint64_t start = std::uint64_t{index} * kChunkSize;
    std::uint64_t expect = blob_size ? std::min<std::uint64_t>(kChunkSize, *blob_size - start)
                                     : std::uint64_t{kChunkSize};
    if (v.mv_size != expect) {
      return error(errc::corrupt, "cache: chunk " + std::to_string(index) + " of " +
                                      id.short_str() + " has " + std::to_string(v.mv_size) +
                                      " bytes, expected " + std::to_string(expect) +
                                      "; run `pantry cache verify`");
    }
    std::size_t piece =
        static_cast<std::size_t>(std::min<std::uint64_t>(expect - within, length - done));
    std::size_t n =
        sink(std::span<const std::byte>(static_cast<const std::byte*>(v.mv_data) + within, piece));
    n = std::min(n, piece);
    done += n;
    if (n < piece) break;
    ++index;
    within = 0;
  }
  return done;
}

class store_impl final : public store {
 public:
  explicit store_impl(std::shared_ptr<core> c) : core_(std::move(c)) {}
  store_impl(const store_impl&) = delete;
  store_impl& operator=(const store_impl&) = delete;
  ~store_impl() override { core_->close(); }

  bool wait_for_lock(std::chrono::milliseconds timeout) {
    return core_->owner() && core_->wait_for_lock(timeout);
  }

  result<blob_reader> open_blob(const digest& id) override {
    bool leased = false;
    if (core_->owner()) {
      if (core_->take_lease(id) == core::lease_result::busy) {
        core_->count_miss();
        return not_in_cache(id);
      }
      leased = true;
    }
    auto info = read_record(id);
    if (!info) {
      if (leased) core_->release_lease(id);
      if (core_->owner() && info.error().is(errc::not_found)) core_->count_miss();
      return info.error();
    }
    if (core_->owner()) {
      core_->count_hit();
      core_->note_access(id);
    }
    return blob_reader(std::make_shared<blob_reader::impl>(core_, std::move(*info), leased));
  }

  result<object_info> stat_blob(const digest& id) override { return read_record(id); }

  result<blob_writer> begin_blob(const digest& id, std::string media_type,
                                 std::optional<std::uint64_t> expected_size, bool pinned) override {
    std::string what = "cache: begin " + id.short_str();
    if (!core_->owner()) return core_->read_only_error(what);
    std::uint64_t quota = core_->max_size();
    if (!pinned && quota != 0 && expected_size && *expected_size > quota) {
      return error(errc::quota_exceeded, "cache: cannot store " + id.short_str() + " (" +
                                             human_size(*expected_size) +
                                             "): it is larger than the whole cache quota of " +
                                             human_size(quota) + "; raise cache.max_size");
    }
    if (auto r = core_->claim_writer(id); !r) return r.error();
    auto existing = read_record(id);
    if (existing || !existing.error().is(errc::not_found)) {
      core_->unclaim_writer(id);
      if (!existing) return existing.error();
      return error(errc::already_exists, "cache: " + id.short_str() + " is already in the cache");
    }
    return blob_writer(std::make_shared<blob_writer::impl>(core_, id, std::move(media_type),
                                                           expected_size, pinned));
  }

  result<digest> put_blob(std::span<const std::byte> bytes, std::string media_type,
                          bool pinned) override {
    digest id = digest::of(bytes);
    // Another writer of the same bytes may be finishing, or the blob may be evicted between
    // the checks: a few rounds settle it.
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto w = begin_blob(id, media_type, bytes.size(), pinned);
      if (w) {
        if (auto r = w->write(bytes); !r) return r.error();
        auto c = w->commit();
        if (!c) return c.error();
        return id;
      }
      if (!w.error().is(errc::already_exists)) return w.error();
      auto info = stat_blob(id);
      if (info) {
        if (!pinned || info->pinned) return id;
        auto p = set_pinned(id, true);
        if (p) return id;
        if (!p.error().is(errc::not_found)) return p.error();
      } else if (!info.error().is(errc::not_found)) {
        return info.error();
      } else {
        core_->wait_for_writer(id);
      }
    }
    return error(errc::storage_error, "cache: put " + id.short_str() +
                                          " failed: it kept being written and evicted by others");
  }

  result<void> set_pinned(const digest& id, bool pinned) override {
    std::string what = std::string("cache: ") + (pinned ? "pin " : "unpin ") + id.short_str();
    if (!core_->owner()) return core_->read_only_error(what);
    return core_->submit_and_wait(core_->set_pinned_op(id, pinned, {}));
  }

  result<void> remove_blob(const digest& id) override {
    if (!core_->owner()) return core_->read_only_error("cache: remove " + id.short_str());
    return core_->submit_and_wait(core_->remove_blob_op(id, {}));
  }

  result<entry> get_entry(std::string_view key) override {
    auto what = [&] { return "cache: get entry " + quoted(key); };
    if (auto r = check_key(*core_, key, what); !r) return r.error();
    auto txn = read_txn::begin(core_->env());
    if (!txn) return txn.error();
    auto v = txn->find(core_->dbs().entries, key, what);
    if (!v) return v.error();
    if (!*v) return error(errc::not_found, "cache: no entry " + quoted(key));
    return detail::decode_entry(key, **v);
  }

  result<void> put_entry(std::string_view key, const entry& e) override {
    std::string what = "cache: put entry " + quoted(key);
    if (!core_->owner()) return core_->read_only_error(what);
    if (auto r = check_key(*core_, key, [&] { return what; }); !r) return r;
    return core_->submit_and_wait(
        core_->put_op(core_->dbs().entries, what, std::string(key), detail::encode_entry(e), {}));
  }

  result<void> put_entries(std::span<const std::pair<std::string, entry>> items) override {
    std::string what = "cache: put " + std::to_string(items.size()) + " entries";
    if (!core_->owner()) return core_->read_only_error(what);
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(items.size());
    for (const auto& item : items) {
      const std::string& key = item.first;
      if (auto r = check_key(*core_, key,
                             [&] { return what + " (" + quoted(std::string_view(key)) + ")"; });
          !r) {
        return r;
      }
      encoded.emplace_back(key, detail::encode_entry(item.second));
    }
    return core_->submit_and_wait(
        core_->put_many_op(core_->dbs().entries, what, std::move(encoded), {}));
  }

  result<void> remove_entry(std::string_view key) override {
    std::string what = "cache: remove entry " + quoted(key);
    if (!core_->owner()) return core_->read_only_error(what);
    if (auto r = check_key(*core_, key, [&] { return what; }); !r) return r;
    return core_->submit_and_wait(core_->del_op(core_->dbs().entries, what, std::string(key),
                                                "cache: no entry " + quoted(key), {}));
  }

  result<void> for_each_entry(
      std::string_view prefix,
      const std::function<bool(std::string_view, const entry&)>& fn) override {
    std::string what = "cache: list entries under " + quoted(prefix);
    auto txn = read_txn::begin(core_->env());
    if (!txn) return txn.error();
    detail::cursor c;
    if (int rc = c.open(txn->get(), core_->dbs().entries); rc != 0) {
      return core_->env().lmdb_error(rc, what);
    }
    MDB_val k = to_val(prefix);
    MDB_val v;
    int rc = mdb_cursor_get(c.get(), &k, &v, prefix.empty() ? MDB_FIRST : MDB_SET_RANGE);
    for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      std::string_view key = to_view(k);
      if (!key.starts_with(prefix)) break;
      auto e = detail::decode_entry(key, to_view(v));
      if (!e) return e.error();
      if (!fn(key, *e)) return {};
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return core_->env().lmdb_error(rc, what);
    return {};
  }

  result<void> put_record(std::string_view key, std::span<const std::byte> value) override {
    std::string what = "cache: put record " + quoted(key);
    if (!core_->owner()) return core_->read_only_error(what);
    if (auto r = check_key(*core_, key, [&] { return what; }); !r) return r;
    auto frame = zstd_compress(value);
    return core_->submit_and_wait(
        core_->put_op(core_->dbs().records, what, std::string(key),
                      std::string(reinterpret_cast<const char*>(frame.data()), frame.size()), {}));
  }

  result<std::vector<std::byte>> get_record(std::string_view key) override {
    auto what = [&] { return "cache: get record " + quoted(key); };
    if (auto r = check_key(*core_, key, what); !r) return r.error();
    auto txn = read_txn::begin(core_->env());
    if (!txn) return txn.error();
    auto v = txn->find(core_->dbs().records, key, what);
    if (!v) return v.error();
    if (!*v) return error(errc::not_found, "cache: no record " + quoted(key));
    auto out = zstd_decompress(std::as_bytes(std::span((*v)->data(), (*v)->size())));
    if (!out) return error(out.error().code, what() + ": " + out.error().message);
    return out;
  }

  result<void> remove_record(std::string_view key) override {
    std::string what = "cache: remove record " + quoted(key);
    if (!core_->owner()) return core_->read_only_error(what);
    if (auto r = check_key(*core_, key, [&] { return what; }); !r) return r;
    return core_->submit_and_wait(core_->del_op(core_->dbs().records, what, std::string(key),
                                                "cache: no record " + quoted(key), {}));
  }

  result<stats> get_stats() override {
    stats s;
    auto& env = core_->env();
    {
      auto txn = read_txn::begin(env);
      if (!txn) return txn.error();
      auto count = [&](MDB_dbi dbi) -> std::uint64_t {
        MDB_stat st{};
        mdb_stat(txn->get(), dbi, &st);
        return st.ms_entries;
      };
      s.objects = count(core_->dbs().objects);
      s.entries = count(core_->dbs().entries);
      s.records = count(core_->dbs().records);
      auto c = core_->read_counters(txn->get());
      if (!c) return c.error();
      s.bytes = c->bytes + c->pinned_bytes;
      s.pinned_objects = c->pinned_objects;
      s.pinned_bytes = c->pinned_bytes;
      s.hits = c->hits;
      s.misses = c->misses;
      s.evictions = c->evictions;
      s.evicted_bytes = c->evicted_bytes;
    }
    s.hits += core_->pending_hits();
    s.misses += core_->pending_misses();
    s.quota = core_->max_size();
    s.quota_limit = core_->max_size_limit();
    MDB_envinfo info{};
    mdb_env_info(env.env(), &info);
    MDB_stat est{};
    mdb_env_stat(env.env(), &est);
    s.map_size = info.me_mapsize;
    s.page_size = est.ms_psize;
    s.used_bytes = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * est.ms_psize;
    s.max_readers = info.me_maxreaders;
    std::uint64_t slots = 0;
    mdb_reader_list(
        env.env(),
        [](const char* line, void* ctx) -> int {
          // One line per slot in use, after a header line ("pid thread txnid").
          while (*line == ' ')
            ++line;
          if (*line >= '0' && *line <= '9') ++*static_cast<std::uint64_t*>(ctx);
          return 0;
        },
        &slots);
    s.readers_in_use = slots;
    return s;
  }

  result<verify_report> verify(
      const std::function<void(std::uint64_t, std::uint64_t)>& progress) override {
    verify_report report;
    std::uint64_t total = 0;
    std::string after;  // last digest key checked
    bool first = true;
    for (;;) {
      // Digests are listed in batches so that no read transaction lasts the whole run.
      std::vector<digest> batch;
      {
        auto txn = read_txn::begin(core_->env());
        if (!txn) return txn.error();
        if (first) {
          MDB_stat st{};
          mdb_stat(txn->get(), core_->dbs().objects, &st);
          total = st.ms_entries;
        }
        detail::cursor c;
        if (int rc = c.open(txn->get(), core_->dbs().objects); rc != 0) {
          return core_->env().lmdb_error(rc, "cache: verify");
        }
        MDB_val k = to_val(after);
        MDB_val v;
        int rc = mdb_cursor_get(c.get(), &k, &v, first ? MDB_FIRST : MDB_SET_RANGE);
        if (rc == 0 && !first && to_view(k) == after)
          rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
        for (; rc == 0 && batch.size() < 256; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
          digest id;
          if (!detail::parse_digest_key(to_view(k), id)) {
            report.problems.push_back({digest(), "object key of " + std::to_string(k.mv_size) +
                                                     " bytes is not a digest"});
            continue;
          }
          batch.push_back(id);
        }
        if (rc != 0 && rc != MDB_NOTFOUND) return core_->env().lmdb_error(rc, "cache: verify");
      }
      first = false;
      if (batch.empty()) break;
      for (const digest& id : batch) {
        auto r = verify_blob(id, report);
        if (!r) return r.error();
        if (progress) progress(report.checked, std::max(total, report.checked));
      }
      after = std::string(detail::digest_key(batch.back()));
    }
    return report;
  }

  result<gc_report> gc() override {
    if (!core_->owner()) return core_->read_only_error("cache: gc");
    auto report = std::make_shared<gc_report>();
    auto r = core_->submit_and_wait(core_->gc_op(report, true, {}));
    if (!r) return r.error();
    return *report;
  }

  result<std::uint64_t> set_max_size(std::uint64_t bytes) override {
    if (!core_->owner()) return core_->read_only_error("cache: set the quota");
    if (bytes == 0) {
      return error(errc::invalid_argument,
                   "cache: a quota of 0 bytes would cache nothing; set a positive size");
    }
    const std::uint64_t before = core_->max_size();
    const std::uint64_t quota = core_->set_max_size(bytes);
    if (before == 0 || quota < before) {
      // A failure is not fatal: the next write evicts as it makes room, and reports it.
      core_->submit(core_->evict_op([](const result<void>&) {}));
    }
    return quota;
  }

  result<int> reclaim_readers() override {
    if (!core_->owner()) return core_->read_only_error("cache: reclaim reader slots");
    int dead = 0;
    if (int rc = mdb_reader_check(core_->env().env(), &dead); rc != 0) {
      return core_->env().lmdb_error(rc, "cache: reclaim reader slots");
    }
    return dead;
  }

  result<void> flush() override {
    if (!core_->owner()) return {};
    return core_->submit_and_wait(core_->flush_op(true, {}));
  }

  const options& opts() const noexcept override { return core_->opts(); }

 private:
  result<object_info> read_record(const digest& id) {
    auto txn = read_txn::begin(core_->env());
    if (!txn) return txn.error();
    auto v = txn->find(core_->dbs().objects, detail::digest_key(id),
                       [&] { return "cache: read " + id.short_str(); });
    if (!v) return v.error();
    if (!*v) return not_in_cache(id);
    return detail::decode_object(id, **v);
  }

  // Re-hashes one blob in one read transaction.
  result<void> verify_blob(const digest& id, verify_report& report) {
    auto txn = read_txn::begin(core_->env());
    if (!txn) return txn.error();
    auto v = txn->find(core_->dbs().objects, detail::digest_key(id),
                       [&] { return "cache: verify " + id.short_str(); });
    if (!v) return v.error();
    if (!*v) return {};  // evicted since it was listed
    auto info = detail::decode_object(id, **v);
    if (!info) {
      report.problems.push_back({id, info.error().message});
      return {};
    }
    report.checked += 1;
    report.bytes += info->size;
    hasher h;
    std::string n_of = " of " + std::to_string(info->chunk_count);
    for (std::uint32_t i = 0; i < info->chunk_count; ++i) {
      std::string key = detail::chunk_key(id, i);
      MDB_val k = to_val(key);
      MDB_val c;
      int rc = mdb_get(txn->get(), core_->dbs().blobs, &k, &c);
      if (rc == MDB_NOTFOUND) {
        report.problems.push_back({id, "chunk " + std::to_string(i) + n_of + " missing"});
        return {};
      }
      if (rc != 0) return core_->env().lmdb_error(rc, "cache: verify " + id.short_str());
      std::uint64_t expect =
          std::min<std::uint64_t>(kChunkSize, info->size - std::uint64_t{i} * kChunkSize);
      if (c.mv_size != expect) {
        report.problems.push_back({id, "chunk " + std::to_string(i) + n_of + " has " +
                                           std::to_string(c.mv_size) + " bytes, expected " +
                                           std::to_string(expect)});
        return {};
      }
      h.update(std::span(static_cast<const std::byte*>(c.mv_data), c.mv_size));
    }
    std::string extra = detail::chunk_key(id, info->chunk_count);
    MDB_val k = to_val(extra);
    MDB_val c;
    if (mdb_get(txn->get(), core_->dbs().blobs, &k, &c) == 0) {
      report.problems.push_back(
          {id, "extra chunk " + std::to_string(info->chunk_count) + " beyond the" + n_of});
    }
    digest got = h.finish();
    if (got != id) {
      report.problems.push_back({id, "sha256 of stored bytes is " + got.str()});
    }
    return {};
  }

  const std::shared_ptr<core> core_;
};

// store::open, and open_as_successor with `successor_of`.
result<std::shared_ptr<store>> open_store(const options& opt, long successor_of) {
  if (opt.data_dir.empty()) {
    return error(errc::invalid_argument, "cache: open failed: no data dir given");
  }
  if (opt.max_readers == 0) {
    return error(errc::invalid_argument, "cache: open " + opt.data_dir.string() +
                                             " failed: max_readers is 0; it must exceed the "
                                             "number of concurrent readers");
  }
  int fd = -1;
  bool locked = true;
  if (opt.mode == open_mode::owner) {
    std::error_code ec;
    std::filesystem::create_directories(opt.data_dir, ec);
    if (ec) {
      return error(errc::io_error, "cache: cannot create the data dir " + opt.data_dir.string() +
                                       ": " + ec.message());
    }
    auto lock = lock_data_dir(opt.data_dir, successor_of);
    if (!lock) return lock.error();
    fd = lock->fd;
    locked = lock->locked;
  }
  auto env = detail::env_handle::open(opt);
  if (!env) {
    if (fd >= 0) ::close(fd);
    return env.error();
  }
  auto c = std::make_shared<core>(opt, std::move(*env), fd, locked);
  if (auto r = c->start(); !r) {
    c->close();
    return r.error();
  }
  return std::shared_ptr<store>(std::make_shared<store_impl>(std::move(c)));
}

}  // namespace

result<std::shared_ptr<store>> store::open(const options& opt) {
  return open_store(opt, 0);
}

result<std::shared_ptr<store>> open_as_successor(const options& opt, long predecessor) {
  if (opt.mode != open_mode::owner) {
    return error(errc::invalid_argument,
                 "cache: open " + opt.data_dir.string() + " as a successor: not in owner mode");
  }
  return open_store(opt, predecessor);
}

bool wait_for_lock(store& s, std::chrono::milliseconds timeout) {
  auto* impl = dynamic_cast<store_impl*>(&s);
  return impl != nullptr && impl->wait_for_lock(timeout);
}

// blob_reader

blob_reader::blob_reader(std::shared_ptr<impl> p) : impl_(std::move(p)) {}

blob_reader::~blob_reader() = default;

const object_info& blob_reader::info() const noexcept {
  static const object_info kEmpty;
  return impl_ ? impl_->info_ : kEmpty;
}

std::uint64_t blob_reader::size() const noexcept {
  return impl_ ? impl_->info_.size : 0;
}

result<std::uint64_t> blob_reader::visit(std::uint64_t offset, std::uint64_t length,
                                         const sink_fn& sink) {
  if (!impl_) return error(errc::invalid_argument, "cache: visit on an empty blob_reader");
  const object_info& info = impl_->info_;
  core& c = *impl_->core_;
  return visit_chunks(c, info.id, info.size, info.size, offset, length, sink,
                      [&](std::uint32_t index, read_txn& txn) -> error {
                        auto rec = txn.find(c.dbs().objects, detail::digest_key(info.id),
                                            [&] { return "cache: read " + info.id.short_str(); });
                        if (rec && !*rec) {
                          return error(errc::not_found, "cache: " + info.id.short_str() +
                                                            " was evicted or removed while "
                                                            "being read");
                        }
                        return error(errc::corrupt, "cache: chunk " + std::to_string(index) +
                                                        " of " + std::to_string(info.chunk_count) +
                                                        " of " + info.id.short_str() +
                                                        " is missing; run `pantry cache verify`");
                      });
}

result<std::size_t> blob_reader::read(std::uint64_t offset, std::span<std::byte> out) {
  if (!impl_) return error(errc::invalid_argument, "cache: read on an empty blob_reader");
  std::uint64_t size = impl_->info_.size;
  if (offset >= size || out.empty()) return std::size_t{0};
  std::uint64_t length = std::min<std::uint64_t>(out.size(), size - offset);
  std::size_t pos = 0;
  auto r = visit(offset, length, [&](std::span<const std::byte> piece) {
    std::memcpy(out.data() + pos, piece.data(), piece.size());
    pos += piece.size();
    return piece.size();
  });
  if (!r) return r.error();
  return static_cast<std::size_t>(*r);
}

// blob_writer

blob_writer::blob_writer(std::shared_ptr<impl> p) : impl_(std::move(p)) {}

blob_writer& blob_writer::operator=(blob_writer&& o) noexcept {
  if (this != &o) {
    if (impl_) impl_->abort();
    impl_ = std::move(o.impl_);
  }
  return *this;
}

blob_writer::~blob_writer() {
  if (impl_) impl_->abort();
}

result<void> blob_writer::write(std::span<const std::byte> bytes) {
  if (!impl_) return error(errc::invalid_argument, "cache: write to an empty blob_writer");
  return impl_->write(bytes);
}

std::uint64_t blob_writer::written() const noexcept {
  return impl_ ? impl_->written_.load() : 0;
}

std::uint64_t blob_writer::committed() const noexcept {
  return impl_ ? impl_->committed_.load() : 0;
}

void blob_writer::on_progress(std::function<void(std::uint64_t committed)> fn) {
  if (!impl_) return;
  std::lock_guard g(impl_->mutex_);
  impl_->progress_ = std::move(fn);
}

result<std::uint64_t> blob_writer::visit_committed(std::uint64_t offset, std::uint64_t length,
                                                   const sink_fn& sink) {
  if (!impl_) return error(errc::invalid_argument, "cache: visit on an empty blob_writer");
  return impl_->visit_committed(offset, length, sink);
}

result<object_info> blob_writer::commit() {
  if (!impl_) return error(errc::invalid_argument, "cache: commit of an empty blob_writer");
  if (impl_->core_->on_writer_thread()) {
    return error(errc::invalid_argument,
                 "cache: commit " + impl_->id_.short_str() +
                     " failed: called on the cache's writer thread, where it would wait for "
                     "itself; use commit_async");
  }
  auto p = std::make_shared<std::promise<result<object_info>>>();
  auto f = p->get_future();
  impl_->commit_async([p](result<object_info> r) { p->set_value(std::move(r)); });
  return f.get();
}

void blob_writer::commit_async(std::function<void(result<object_info>)> done) {
  if (!impl_) {
    done(error(errc::invalid_argument, "cache: commit of an empty blob_writer"));
    return;
  }
  impl_->commit_async(std::move(done));
}

void blob_writer::abort() {
  if (impl_) impl_->abort();
}

result<void> blob_writer::impl::write(std::span<const std::byte> bytes) {
  {
    std::lock_guard g(mutex_);
    if (phase_ != phase::open) {
      return error(errc::invalid_argument,
                   "cache: write to " + id_.short_str() + " after commit or abort");
    }
    if (failed_) return *failed_;
  }
  std::uint64_t written = written_.load();
  if (expected_size_ && written + bytes.size() > *expected_size_) {
    error e(errc::size_mismatch,
            "cache: write to " + id_.short_str() + ": " + std::to_string(written + bytes.size()) +
                " bytes arrived, more than the expected " + std::to_string(*expected_size_));
    std::lock_guard g(mutex_);
    failed_ = e;
    return e;
  }
  if (bytes.empty()) return {};
  hasher_.update(bytes);
  if (buf_.capacity() == 0) {
    buf_.reserve(std::min<std::uint64_t>(kChunkSize, expected_size_.value_or(bytes.size())));
  }
  while (!bytes.empty()) {
    // A full buffer goes to the writer thread only once more bytes arrive: the last chunk is
    // held back for commit(), which writes it in the same transaction as the object record.
    if (buf_.size() == kChunkSize) {
      std::vector<std::byte> next;
      {
        std::unique_lock lk(mutex_);
        if (!core_->on_writer_thread()) {
          cv_.wait(lk, [&] { return in_flight_ < kMaxQueuedChunks || failed_; });
        }
        if (failed_) return *failed_;
        ++in_flight_;
        if (!spare_.empty()) {
          next = std::move(spare_.back());
          spare_.pop_back();
        }
      }
      next.clear();
      next.reserve(kChunkSize);
      auto data = std::make_shared<std::vector<std::byte>>(std::move(buf_));
      buf_ = std::move(next);
      core_->submit(core_->chunk_op(shared_from_this(), next_chunk_++, std::move(data)));
    }
    std::size_t take = std::min(bytes.size(), kChunkSize - buf_.size());
    buf_.insert(buf_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(take));
    bytes = bytes.subspan(take);
    written_.fetch_add(take);
  }
  return {};
}

void blob_writer::impl::chunk_done(std::uint32_t index, const result<void>& r,
                                   std::shared_ptr<std::vector<std::byte>> buffer) {
  std::function<void(std::uint64_t)> progress;
  std::uint64_t committed = 0;
  {
    std::lock_guard g(mutex_);
    --in_flight_;
    if (r) {
      committed = std::uint64_t{index + 1} * kChunkSize;
      if (committed > committed_.load()) committed_.store(committed);
      progress = progress_;
    } else if (!failed_) {
      failed_ = r.error();
    }
    if (spare_.size() < 2 && buffer->capacity() >= kChunkSize) {
      spare_.push_back(std::move(*buffer));
    }
  }
  cv_.notify_all();
  if (!r && core_->on_writer_thread() && !wt_failed_) wt_failed_ = r.error();
  if (progress) progress(committed);
}

void blob_writer::impl::commit_async(std::function<void(result<object_info>)> done) {
  std::optional<error> early;
  {
    std::unique_lock lk(mutex_);
    if (final_) {
      auto r = *final_;
      lk.unlock();
      done(std::move(r));
      return;
    }
    waiters_.push_back(std::move(done));
    if (phase_ == phase::committing) return;
    phase_ = phase::committing;
    if (failed_) early = failed_;
  }
  std::uint64_t size = written_.load();
  if (!early && expected_size_ && size != *expected_size_) {
    early =
        error(errc::size_mismatch, "cache: commit " + id_.short_str() + " failed: received " +
                                       std::to_string(size) + " bytes, expected " +
                                       std::to_string(*expected_size_) + "; nothing was stored");
  }
  if (!early) {
    digest got = hasher_.finish();
    if (got != id_) {
      early = error(errc::digest_mismatch, "cache: commit " + id_.short_str() + " failed: the " +
                                               std::to_string(size) + " bytes received hash to " +
                                               got.str() + "; nothing was stored");
    }
  }
  auto self = shared_from_this();
  if (early) {
    aborted_.store(true);
    core_->submit(core_->discard_op(self, [self, e = *early] { self->finish(e); }));
    return;
  }
  auto last = std::make_shared<std::vector<std::byte>>(std::move(buf_));
  core_->submit(
      core_->commit_op(self, next_chunk_, std::move(last), size, [self](result<object_info> r) {
        if (r) {
          self->core_->unclaim_writer(self->id_);
          self->finish(std::move(r));
          return;
        }
        error e = r.error();
        self->core_->submit(self->core_->discard_op(self, [self, e] { self->finish(e); }));
      }));
}

void blob_writer::impl::finish(result<object_info> r) {
  std::vector<std::function<void(result<object_info>)>> waiters;
  std::function<void(std::uint64_t)> progress;
  std::uint64_t size = 0;
  {
    std::lock_guard g(mutex_);
    final_ = r;
    phase_ = phase::done;
    waiters.swap(waiters_);
    if (r) {
      size = r->size;
      committed_.store(size);
      progress = progress_;
    }
    // Nothing is called or buffered after the outcome; dropping these also breaks any cycle
    // through a callback that holds the writer.
    progress_ = nullptr;
    spare_.clear();
    spare_.shrink_to_fit();
  }
  cv_.notify_all();
  if (progress) progress(size);
  for (auto& w : waiters)
    w(r);
}

void blob_writer::impl::abort() {
  {
    std::lock_guard g(mutex_);
    // A commit in flight decides the outcome; a finished writer has nothing to abort.
    if (phase_ != phase::open) return;
    phase_ = phase::done;
    final_ = error(errc::cancelled, "cache: write of " + id_.short_str() + " was aborted");
  }
  aborted_.store(true);
  cv_.notify_all();
  core_->submit(core_->discard_op(shared_from_this(), {}));
}

result<std::uint64_t> blob_writer::impl::visit_committed(std::uint64_t offset, std::uint64_t length,
                                                         const sink_fn& sink) {
  std::uint64_t limit;
  bool complete;
  {
    std::lock_guard g(mutex_);
    limit = committed_.load();
    complete = final_ && final_->has_value();
  }
  return visit_chunks(
      *core_, id_, limit, complete ? std::optional<std::uint64_t>(limit) : std::nullopt, offset,
      length, sink, [&](std::uint32_t index, read_txn&) -> error {
        std::lock_guard g(mutex_);
        if (failed_) return *failed_;
        if (final_ && !final_->has_value()) return final_->error();
        return error(errc::not_found, "cache: chunk " + std::to_string(index) + " of " +
                                          id_.short_str() +
                                          " is gone: the blob was evicted or removed");
      });
}

}  // namespace pantry::cache
