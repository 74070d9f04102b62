#include "lmdb_env.h"

#include "codec.h"

#include <cerrno>
#include <condition_variable>
#include <map>
#include <system_error>

namespace pantry::cache::detail {
namespace {

// A pooled read transaction keeps its reader slot, so the pool stays small next to max_readers.
constexpr std::size_t kReadPoolMax = 32;
constexpr unsigned kMaxDbs = 8;
constexpr std::string_view kFormatKey = "format";
constexpr std::uint64_t kLayoutVersion = 1;

// Environments open in this process, by canonical path. An entry whose env_handle is being
// destroyed stays until mdb_env_close has returned, so that no new handle on the same file
// exists while the old one still holds the lock file open.
struct registry {
  std::mutex mutex;
  std::condition_variable closed;
  std::map<std::string, std::weak_ptr<env_handle>> envs;  // guarded by mutex
};

registry& envs() {
  static registry r;
  return r;
}

std::uint64_t default_map_size(const options& opt) {
  constexpr std::uint64_t kMinMap = std::uint64_t{1} << 30;
  if (opt.map_size != 0) return opt.map_size;
  return std::max(2 * opt.max_size, kMinMap);
}

}  // namespace

std::uint64_t env_handle::map_size() const noexcept {
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  return info.me_mapsize;
}

error env_handle::lmdb_error(int rc, std::string_view what) const {
  std::string msg(what);
  msg += " failed: ";
  std::string dir = data_dir_.string();
  switch (rc) {
    case MDB_MAP_FULL:
      return error(errc::map_full,
                   msg + "MDB_MAP_FULL (map size " + human_size(map_size()) + ", data dir " + dir +
                       "); raise cache.map_size, or lower cache.max_size so that eviction keeps "
                       "the cache well below the map size");
    case ENOSPC:
      return error(errc::no_space, msg + "no space left on the device of " + dir +
                                       "; free disk space there or lower cache.max_size");
    case MDB_READERS_FULL:
      return error(errc::storage_error,
                   msg + "all reader slots are in use (MDB_READERS_FULL); raise cache.max_readers");
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return error(errc::corrupt, msg + mdb_strerror(rc) + "; the LMDB file " + dir +
                                      "/cache/data.mdb is damaged: stop pantry, remove " + dir +
                                      "/cache and let pantry refill it");
    case EIO:
      return error(errc::io_error, msg + "I/O error on " + dir + "/cache/data.mdb; check the disk");
    case EACCES:
    case EPERM:
    case EROFS:
      return error(errc::io_error, msg + mdb_strerror(rc) + " (" + dir +
                                       "/cache); check the permissions of the data dir");
    default:
      return error(errc::storage_error,
                   msg + mdb_strerror(rc) + " (LMDB code " + std::to_string(rc) + ", " + dir + ")");
  }
}

result<std::shared_ptr<env_handle>> env_handle::open(const options& opt) {
  namespace fs = std::filesystem;
  bool owner = opt.mode == open_mode::owner;
  fs::path dir = opt.data_dir / "cache";
  std::error_code ec;
  if (owner) {
    fs::create_directories(dir, ec);
    if (ec) {
      return error(errc::io_error, "cache: cannot create " + dir.string() + ": " + ec.message() +
                                       "; check the data dir and its permissions");
    }
  } else if (!fs::exists(dir / "data.mdb", ec)) {
    return error(errc::not_found, "no cache at " + opt.data_dir.string() +
                                      "; start pantry serve with this data dir first");
  }
  fs::path canon = fs::weakly_canonical(dir, ec);
  if (ec) canon = fs::absolute(dir);

  registry& reg = envs();
  std::unique_lock lk(reg.mutex);
  std::shared_ptr<env_handle> existing;
  for (;;) {
    auto it = reg.envs.find(canon.string());
    if (it == reg.envs.end()) break;
    if ((existing = it->second.lock())) break;
    reg.closed.wait(lk);
  }
  if (existing) {
    // The last reference may drop at any time, and its deleter takes the registry lock.
    lk.unlock();
    if (owner && existing->read_only()) {
      return error(errc::storage_error,
                   "cache: " + dir.string() +
                       " is open read-only in this process; close that store before opening it "
                       "as owner");
    }
    return existing;
  }

  std::string key = canon.string();
  std::shared_ptr<env_handle> handle(new env_handle(), [key](env_handle* h) {
    registry& r = envs();
    std::lock_guard g(r.mutex);
    delete h;
    // Only this handle's own entry: it is expired now, a newer handle's is not.
    if (auto it = r.envs.find(key); it != r.envs.end() && it->second.expired()) r.envs.erase(it);
    r.closed.notify_all();
  });
  handle->read_only_ = !owner;
  handle->data_dir_ = opt.data_dir;
  if (auto r = handle->open_env(opt, dir); !r) {
    // The deleter takes the registry lock.
    lk.unlock();
    handle.reset();
    return r.error();
  }
  reg.envs[key] = handle;
  return handle;
}

result<void> env_handle::open_env(const options& opt, const std::filesystem::path& dir) {
  bool owner = !read_only_;
  if (int rc = mdb_env_create(&env_); rc != 0) return lmdb_error(rc, "cache: create environment");
  mdb_env_set_maxdbs(env_, kMaxDbs);
  if (int rc = mdb_env_set_maxreaders(env_, opt.max_readers); rc != 0) {
    return lmdb_error(rc, "cache: set max_readers to " + std::to_string(opt.max_readers));
  }
  // A read-only process takes the map size the owner recorded in the file.
  if (owner) {
    std::uint64_t map = default_map_size(opt);
    if (int rc = mdb_env_set_mapsize(env_, map); rc != 0) {
      return lmdb_error(rc, "cache: set map size to " + human_size(map));
    }
  }
  // MDB_NOTLS: read transactions are not tied to threads (coroutines move between threads, and
  // the read pool hands a transaction to any thread). Never MDB_WRITEMAP: it turns a full disk
  // into SIGBUS instead of an error.
  unsigned flags = MDB_NOTLS;
  if (!owner) flags |= MDB_RDONLY;
  if (owner && !opt.durable) flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env_, dir.c_str(), flags, 0644); rc != 0) {
    if (rc == ENOENT && !owner) {
      return error(errc::not_found, "no cache at " + opt.data_dir.string() +
                                        "; start pantry serve with this data dir first");
    }
    return lmdb_error(rc, "cache: open " + dir.string());
  }

  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, owner ? 0 : MDB_RDONLY, &txn); rc != 0) {
    return lmdb_error(rc, "cache: open " + dir.string());
  }
  struct names {
    const char* name;
    MDB_dbi* dbi;
  } const all[] = {{"blobs", &dbs_.blobs},     {"objects", &dbs_.objects}, {"lru", &dbs_.lru},
                   {"entries", &dbs_.entries}, {"records", &dbs_.records}, {"meta", &dbs_.meta}};
  auto fail = [&](error e) {
    mdb_txn_abort(txn);
    return e;
  };
  for (const auto& n : all) {
    int rc = mdb_dbi_open(txn, n.name, owner ? MDB_CREATE : 0, n.dbi);
    if (rc == MDB_NOTFOUND) {
      return fail(error(errc::not_found, "no cache at " + opt.data_dir.string() + " (database \"" +
                                             n.name +
                                             "\" missing); start pantry serve with this data "
                                             "dir first"));
    }
    if (rc != 0) return fail(lmdb_error(rc, std::string("cache: open database ") + n.name));
  }
  MDB_val k = to_val(kFormatKey);
  MDB_val v;
  int rc = mdb_get(txn, dbs_.meta, &k, &v);
  if (rc == 0) {
    std::uint64_t version = 0;
    if (!decode_u64(to_view(v), version) || version != kLayoutVersion) {
      return fail(error(errc::corrupt, "cache: " + dir.string() + " has layout version " +
                                           std::to_string(version) +
                                           "; this pantry reads version " +
                                           std::to_string(kLayoutVersion) +
                                           ": use a matching pantry or another data dir"));
    }
  } else if (rc == MDB_NOTFOUND && owner) {
    std::string enc = encode_u64(kLayoutVersion);
    MDB_val ev = to_val(enc);
    if (rc = mdb_put(txn, dbs_.meta, &k, &ev, 0); rc != 0) {
      return fail(lmdb_error(rc, "cache: initialise " + dir.string()));
    }
  } else if (rc != MDB_NOTFOUND) {
    return fail(lmdb_error(rc, "cache: open " + dir.string()));
  }
  // Committing (even a read-only transaction) makes the database handles usable by every later
  // transaction.
  if (rc = mdb_txn_commit(txn); rc != 0) return lmdb_error(rc, "cache: open " + dir.string());
  return {};
}

env_handle::~env_handle() {
  for (MDB_txn* t : pool_)
    mdb_txn_abort(t);
  if (env_ != nullptr) mdb_env_close(env_);
}

result<MDB_txn*> env_handle::acquire_read(std::shared_lock<std::shared_mutex>& remap_lock) {
  for (int attempt = 0;; ++attempt) {
    if (read_only_) remap_lock = std::shared_lock(remap_mutex_);
    MDB_txn* txn = nullptr;
    {
      std::lock_guard g(pool_mutex_);
      if (!pool_.empty()) {
        txn = pool_.back();
        pool_.pop_back();
      }
    }
    int rc;
    if (txn != nullptr) {
      rc = mdb_txn_renew(txn);
      if (rc != 0) mdb_txn_abort(txn);
    } else {
      rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    }
    if (rc == 0) return txn;
    if (rc == MDB_MAP_RESIZED && read_only_ && attempt < 3) {
      remap_lock = {};
      remap();
      continue;
    }
    return lmdb_error(rc, "cache: begin a read transaction");
  }
}

void env_handle::release_read(MDB_txn* txn) noexcept {
  mdb_txn_reset(txn);
  {
    std::lock_guard g(pool_mutex_);
    if (pool_.size() < kReadPoolMax) {
      pool_.push_back(txn);
      return;
    }
  }
  mdb_txn_abort(txn);
}

void env_handle::remap() {
  std::unique_lock lk(remap_mutex_);
  {
    std::lock_guard g(pool_mutex_);
    for (MDB_txn* t : pool_)
      mdb_txn_abort(t);
    pool_.clear();
  }
  // Size 0 adopts the size the owner recorded in the file.
  mdb_env_set_mapsize(env_, 0);
}

result<read_txn> read_txn::begin(env_handle& env) {
  std::shared_lock<std::shared_mutex> lock;
  auto txn = env.acquire_read(lock);
  if (!txn) return txn.error();
  return read_txn(&env, *txn, std::move(lock));
}

void read_txn::end() noexcept {
  if (txn_ != nullptr) {
    env_->release_read(std::exchange(txn_, nullptr));
  }
  if (remap_lock_.owns_lock()) remap_lock_.unlock();
}

}  // namespace pantry::cache::detail
