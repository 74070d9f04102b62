#pragma once

// The LMDB environment under <data_dir>/cache/, its named databases, read transactions, and the
// mapping of LMDB return codes to pantry errors.

#include "pantry/cache/store.h"

#include <lmdb.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::cache::detail {

struct databases {
  MDB_dbi blobs = 0;
  MDB_dbi objects = 0;
  MDB_dbi lru = 0;
  MDB_dbi entries = 0;
  MDB_dbi records = 0;
  MDB_dbi meta = 0;
};

inline MDB_val to_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view to_view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// One open LMDB environment. LMDB forbids opening an environment twice in one process (closing
// either handle drops the other's fcntl locks), so every store of this process that opens the
// same dir shares one env_handle.
class env_handle {
 public:
  // Opens (in owner mode, creating) the environment in opt.data_dir/cache, or returns the one
  // this process has open already. An env first opened read-only cannot be shared by an owner.
  static result<std::shared_ptr<env_handle>> open(const options& opt);

  env_handle(const env_handle&) = delete;
  env_handle& operator=(const env_handle&) = delete;
  ~env_handle();

  MDB_env* env() const noexcept { return env_; }
  const databases& dbs() const noexcept { return dbs_; }
  bool read_only() const noexcept { return read_only_; }
  const std::filesystem::path& data_dir() const noexcept { return data_dir_; }
  std::uint64_t map_size() const noexcept;

  // Turns an LMDB return code into an error whose message starts with `what` (e.g.
  // "cache: put chunk 3 of sha256:ab12…") and says what to do.
  error lmdb_error(int rc, std::string_view what) const;

  // Read transactions come from a small pool of reset handles (mdb_txn_renew is much cheaper
  // than mdb_txn_begin). Used through read_txn.
  result<MDB_txn*> acquire_read(std::shared_lock<std::shared_mutex>& remap_lock);
  void release_read(MDB_txn* txn) noexcept;

 private:
  env_handle() = default;
  result<void> open_env(const options& opt, const std::filesystem::path& dir);
  void remap();

  MDB_env* env_ = nullptr;
  databases dbs_;
  bool read_only_ = false;
  std::filesystem::path data_dir_;

  // A read-only process must remap when a restarted owner grew the map (MDB_MAP_RESIZED), and
  // mdb_env_set_mapsize requires that no transaction of this process is active: read-only
  // readers hold this shared for the life of each transaction, the remap holds it exclusively.
  std::shared_mutex remap_mutex_;

  std::mutex pool_mutex_;
  std::vector<MDB_txn*> pool_;  // guarded by pool_mutex_; reset read transactions
};

// A read transaction that ends (returns to the pool) when it goes out of scope.
class read_txn {
 public:
  static result<read_txn> begin(env_handle& env);

  read_txn(read_txn&& o) noexcept
      : env_(o.env_), txn_(std::exchange(o.txn_, nullptr)), remap_lock_(std::move(o.remap_lock_)) {}
  read_txn& operator=(read_txn&&) = delete;
  ~read_txn() { end(); }

  MDB_txn* get() const noexcept { return txn_; }
  const databases& dbs() const noexcept { return env_->dbs(); }

  // The value under `key`, or nullopt. The view is valid until the transaction ends. `what()`
  // names the operation in an error message; it is called only on failure.
  template <class What>
  result<std::optional<std::string_view>> find(MDB_dbi dbi, std::string_view key,
                                               const What& what) const {
    MDB_val k = to_val(key);
    MDB_val v;
    int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
    if (rc != 0) return env_->lmdb_error(rc, what());
    return std::optional<std::string_view>(to_view(v));
  }
  void end() noexcept;

 private:
  read_txn(env_handle* env, MDB_txn* txn, std::shared_lock<std::shared_mutex> lock)
      : env_(env), txn_(txn), remap_lock_(std::move(lock)) {}

  env_handle* env_;
  MDB_txn* txn_;
  std::shared_lock<std::shared_mutex> remap_lock_;
};

// An open cursor, closed at scope exit.
class cursor {
 public:
  cursor() = default;
  cursor(const cursor&) = delete;
  cursor& operator=(const cursor&) = delete;
  ~cursor() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  int open(MDB_txn* txn, MDB_dbi dbi) { return mdb_cursor_open(txn, dbi, &c_); }
  MDB_cursor* get() const noexcept { return c_; }

 private:
  MDB_cursor* c_ = nullptr;
};

}  // namespace pantry::cache::detail
