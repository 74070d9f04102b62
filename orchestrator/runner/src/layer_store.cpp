#include "pantry/orchestrator/runner/layer_store.h"

#include "layer_unpack.h"
#include "pantry/cache/store.h"
#include "pantry/orchestrator/runner/fd.h"
#include "strings.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace fs = std::filesystem;

namespace pantry::orchestrator::runner {
namespace detail {

// What a lease tells the store when its last copy goes.
class lease_owner {
 public:
  virtual void release(const cache::digest& id) noexcept = 0;

 protected:
  ~lease_owner() = default;
};

}  // namespace detail

class layer_lease::state {
 public:
  state(std::shared_ptr<detail::lease_owner> owner, const cache::digest& id, fs::path dir,
        std::uint64_t size)
      : owner_(std::move(owner)), id_(id), dir_(std::move(dir)), size_(size) {}
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() { owner_->release(id_); }

  std::shared_ptr<detail::lease_owner> owner_;
  cache::digest id_;
  fs::path dir_;
  std::uint64_t size_;
};

const cache::digest& layer_lease::diff_id() const noexcept {
  return state_->id_;
}
const fs::path& layer_lease::dir() const noexcept {
  return state_->dir_;
}
std::uint64_t layer_lease::size() const noexcept {
  return state_->size_;
}

layer_source blob_source(cache::blob_reader blob) {
  struct cursor {
    cache::blob_reader reader;
    std::uint64_t offset = 0;
  };
  auto c = std::make_shared<cursor>(cursor{std::move(blob), 0});
  return [c](std::span<std::byte> buffer) -> result<std::size_t> {
    auto n = c->reader.read(c->offset, buffer);
    if (!n) return n.error();
    c->offset += *n;
    return *n;
  };
}

namespace {

// Names inside the store's root (layer_store.h draws the layout).
constexpr const char* kTmpDir = "tmp";
constexpr const char* kLockFile = "lock";
constexpr const char* kDiffDir = "diff";
constexpr const char* kSizeFile = "size";

error io_failure(std::string what, int err) {
  const errc code = err == ENOSPC || err == EDQUOT ? errc::no_space : errc::io_error;
  return error(code, std::move(what) + ": " + std::strerror(err));
}

bool is_layer_name(std::string_view name) {
  return name.size() == 64 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string size_path(const std::string& hex) {
  return hex + "/" + kSizeFile;
}

class store_impl final : public layer_store,
                         public detail::lease_owner,
                         public std::enable_shared_from_this<store_impl> {
 public:
  store_impl(layer_store_options opt, unique_fd lock, unique_fd root, unique_fd tmp)
      : opt_(std::move(opt)),
        lock_(std::move(lock)),
        root_fd_(std::move(root)),
        tmp_fd_(std::move(tmp)) {}

  ~store_impl() override {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    doomed_cv_.notify_all();
    // What is still queued stays under tmp/, which the next open empties.
    if (remover_.joinable()) remover_.join();
  }

  // Empties tmp/, adopts the layers on disk (oldest use first), evicts down to the limit and
  // starts the thread that deletes evicted layers.
  result<void> load() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(opt_.root / kTmpDir, ec)) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
      if (rm)
        return error(errc::io_error, "layer store: cannot remove " + e.path().string() +
                                         " left by a crash: " + rm.message());
    }
    if (ec)
      return error(errc::io_error, "layer store: cannot list " + (opt_.root / kTmpDir).string() +
                                       ": " + ec.message());

    struct found {
      timespec used;
      std::string hex;
      std::uint64_t size;
    };
    std::vector<found> on_disk;
    for (const auto& e : fs::directory_iterator(opt_.root, ec)) {
      const std::string name = e.path().filename().string();
      if (!is_layer_name(name)) continue;  // tmp/, lock, or not ours
      auto size = read_size(name);
      struct stat st {};
      std::error_code type_ec;
      if (!size || ::fstatat(root_fd_.get(), size_path(name).c_str(), &st, 0) != 0 ||
          !fs::is_directory(fs::symlink_status(e.path() / kDiffDir, type_ec))) {
        // Not something this store made (it renames only complete layers into place).
        std::error_code rm;
        fs::remove_all(e.path(), rm);
        continue;
      }
      on_disk.push_back({st.st_mtim, name, *size});
    }
    if (ec)
      return error(errc::io_error,
                   "layer store: cannot list " + opt_.root.string() + ": " + ec.message());
    std::sort(on_disk.begin(), on_disk.end(), [](const found& a, const found& b) {
      return std::tie(a.used.tv_sec, a.used.tv_nsec, a.hex) <
             std::tie(b.used.tv_sec, b.used.tv_nsec, b.hex);
    });

    std::lock_guard lk(mu_);
    for (const auto& f : on_disk) {
      auto id = cache::digest::parse_hex(f.hex);
      if (!id) continue;
      layers_[*id] = record{f.size, ++tick_, 0};
      bytes_ += f.size;
    }
    evict_locked();
    remover_ = std::thread([this] { remove_doomed(); });
    return {};
  }

  result<layer_lease> unpack(const cache::digest& diff_id, std::string_view media_type,
                             const layer_source& source) override {
    if (!detail::is_tar_layer_media_type(media_type)) {
      return error(errc::invalid_argument, "layer " + diff_id.short_str() + ": media type " +
                                               detail::quoted(media_type) +
                                               " is not a tar layer this runner unpacks");
    }
    {
      std::unique_lock lk(mu_);
      bool waited = false;
      while (true) {
        if (auto it = layers_.find(diff_id); it != layers_.end()) return lease_locked(it);
        if (unpacking_.insert(diff_id).second) break;  // this call unpacks it
        if (!waited) {
          ++joined_;
          waited = true;
        }
        flight_cv_.wait(lk);
      }
    }
    auto staged = stage(diff_id, source);
    std::unique_lock lk(mu_);
    unpacking_.erase(diff_id);
    // Waiters take the layer, or one of them retries with its own source.
    flight_cv_.notify_all();
    if (!staged) return staged.error();
    return publish_locked(diff_id, *staged);
  }

  result<layer_lease> acquire(const cache::digest& diff_id) override {
    std::lock_guard lk(mu_);
    auto it = layers_.find(diff_id);
    if (it == layers_.end()) {
      return error(errc::not_found,
                   "layer " + diff_id.short_str() + " is not unpacked in " + opt_.root.string());
    }
    return lease_locked(it);
  }

  layer_store_stats stats() const override {
    std::lock_guard lk(mu_);
    layer_store_stats s;
    s.layers = layers_.size();
    s.bytes = bytes_;
    for (const auto& [id, r] : layers_) {
      if (r.leases > 0) ++s.in_use;
    }
    s.unpacked = unpacked_;
    s.joined = joined_;
    s.evicted = evicted_;
    s.evicted_bytes = evicted_bytes_;
    return s;
  }

  const layer_store_options& opts() const noexcept override { return opt_; }

  void release(const cache::digest& id) noexcept override {
    std::lock_guard lk(mu_);
    auto it = layers_.find(id);
    if (it == layers_.end()) return;
    --it->second.leases;
    it->second.last_use = ++tick_;
    touch(id.hex());
    evict_locked();
  }

 private:
  struct record {
    std::uint64_t size = 0;      // bytes on disk
    std::uint64_t last_use = 0;  // tick_ at the last lease or release: the eviction order
    std::size_t leases = 0;
  };

  struct staged_layer {
    std::string name;  // under tmp/
    std::uint64_t size = 0;
  };

  result<std::uint64_t> read_size(const std::string& hex) {
    unique_fd fd(::openat(root_fd_.get(), size_path(hex).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return io_failure("open " + size_path(hex), errno);
    char buf[32] = {};
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    std::uint64_t v = 0;
    if (n <= 0 || std::from_chars(buf, buf + n, v).ec != std::errc()) {
      return error(errc::corrupt, "bad size record " + size_path(hex));
    }
    return v;
  }

  // Records a use in the size file's mtime, so that the eviction order survives a restart. An
  // explicit time, not UTIME_NOW: the file system clock is coarse and would make ties.
  void touch(const std::string& hex) noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const timespec times[2] = {now, now};
    ::utimensat(root_fd_.get(), size_path(hex).c_str(), times, 0);  // a hint: failure is harmless
  }

  // Unpacks into tmp/<hex>.<pid>.<n>/diff and writes its size record there. Removes it all on
  // failure.
  result<staged_layer> stage(const cache::digest& id, const layer_source& source) {
    const std::string hex = id.hex();
    staged_layer out;
    out.name = hex + "." + std::to_string(::getpid()) + "." + std::to_string(++seq_);
    auto fail = [&](error e) {
      std::error_code ec;
      fs::remove_all(opt_.root / kTmpDir / out.name, ec);
      return error(e.code, "layer " + id.short_str() + ": " + e.message);
    };
    if (::mkdirat(tmp_fd_.get(), out.name.c_str(), 0700) != 0) {
      return fail(io_failure("mkdir under " + (opt_.root / kTmpDir).string(), errno));
    }
    unique_fd work(
        ::openat(tmp_fd_.get(), out.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!work) return fail(io_failure("open " + out.name, errno));
    if (::mkdirat(work.get(), kDiffDir, 0755) != 0) return fail(io_failure("mkdir diff", errno));
    unique_fd diff(::openat(work.get(), kDiffDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!diff) return fail(io_failure("open diff", errno));
    // The root's mode when the tar has no "./" entry; mkdirat's is narrowed by the umask.
    if (::fchmod(diff.get(), 0755) != 0) return fail(io_failure("chmod diff", errno));

    auto report = detail::unpack_layer(diff.get(), id, source);
    if (!report) return fail(report.error());
    auto size = detail::disk_usage(diff.get());
    if (!size) return fail(size.error());
    out.size = *size;

    unique_fd record(::openat(work.get(), kSizeFile,
                              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!record) return fail(io_failure("create the size record", errno));
    const std::string text = std::to_string(out.size) + "\n";
    if (::write(record.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return fail(io_failure("write the size record", errno));
    }
    if (opt_.durable && ::syncfs(diff.get()) != 0) return fail(io_failure("syncfs", errno));
    return out;
  }

  // Renames a staged layer into place and leases it to the caller.
  result<layer_lease> publish_locked(const cache::digest& id, const staged_layer& staged) {
    const std::string hex = id.hex();
    if (::renameat2(tmp_fd_.get(), staged.name.c_str(), root_fd_.get(), hex.c_str(),
                    RENAME_NOREPLACE) != 0) {
      auto e = io_failure("layer " + id.short_str() + ": rename into " + opt_.root.string(), errno);
      doom(opt_.root / kTmpDir / staged.name);
      return e;
    }
    if (opt_.durable) ::fsync(root_fd_.get());
    auto it = layers_.emplace(id, record{staged.size, 0, 0}).first;
    bytes_ += staged.size;
    ++unpacked_;
    layer_lease lease = lease_locked(it);
    evict_locked();
    return lease;
  }

  layer_lease lease_locked(
      std::unordered_map<cache::digest, record, cache::digest_hash>::iterator it) {
    ++it->second.leases;
    it->second.last_use = ++tick_;
    return layer_lease(std::make_shared<const layer_lease::state>(
        std::static_pointer_cast<detail::lease_owner>(shared_from_this()), it->first,
        opt_.root / it->first.hex() / kDiffDir, it->second.size));
  }

  // Evicts unused layers, least recently used first, until the store fits its limit. Each goes
  // out of sight with one rename (no one can lease it after that, and a crash leaves it under
  // tmp/ only); the remover thread deletes it, off the caller's thread, which may be one that
  // must not block (a lease can end anywhere).
  void evict_locked() {
    if (opt_.max_size == 0) return;
    while (bytes_ > opt_.max_size) {
      auto victim = layers_.end();
      for (auto it = layers_.begin(); it != layers_.end(); ++it) {
        if (it->second.leases == 0 &&
            (victim == layers_.end() || it->second.last_use < victim->second.last_use)) {
          victim = it;
        }
      }
      if (victim == layers_.end()) return;  // all in use
      const std::string hex = victim->first.hex();
      const std::string doomed = "evicted." + hex + "." + std::to_string(++seq_);
      if (::renameat(root_fd_.get(), hex.c_str(), tmp_fd_.get(), doomed.c_str()) != 0) return;
      doom(opt_.root / kTmpDir / doomed);
      bytes_ -= victim->second.size;
      ++evicted_;
      evicted_bytes_ += victim->second.size;
      layers_.erase(victim);
    }
  }

  void doom(fs::path p) {
    doomed_.push_back(std::move(p));
    doomed_cv_.notify_one();
  }

  void remove_doomed() {
    std::unique_lock lk(mu_);
    while (true) {
      doomed_cv_.wait(lk, [this] { return stopping_ || !doomed_.empty(); });
      if (stopping_) return;
      fs::path p = std::move(doomed_.front());
      doomed_.pop_front();
      lk.unlock();
      std::error_code ec;
      fs::remove_all(p, ec);  // what fails stays under tmp/ until the next open
      lk.lock();
    }
  }

  const layer_store_options opt_;
  const unique_fd lock_;  // flock()ed for the store's life
  const unique_fd root_fd_;
  const unique_fd tmp_fd_;

  mutable std::mutex mu_;
  // Guarded by mu_.
  std::unordered_map<cache::digest, record, cache::digest_hash> layers_;
  std::unordered_set<cache::digest, cache::digest_hash> unpacking_;  // single flight
  std::condition_variable flight_cv_;                                // an unpack ended
  std::deque<fs::path> doomed_;
  std::condition_variable doomed_cv_;
  bool stopping_ = false;
  std::uint64_t tick_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t seq_ = 0;
  std::uint64_t unpacked_ = 0;
  std::uint64_t joined_ = 0;
  std::uint64_t evicted_ = 0;
  std::uint64_t evicted_bytes_ = 0;

  std::thread remover_;
};

}  // namespace

result<std::shared_ptr<layer_store>> layer_store::open(const layer_store_options& opt) {
  if (opt.root.empty()) return error(errc::invalid_argument, "layer store: no root directory");
  layer_store_options o = opt;
  std::error_code ec;
  o.root = fs::absolute(opt.root, ec).lexically_normal();
  if (!o.root.has_filename()) o.root = o.root.parent_path();  // "/a/b/" names "/a/b"
  fs::create_directories(o.root / kTmpDir, ec);
  if (ec) {
    return error(errc::io_error,
                 "layer store: cannot create " + (o.root / kTmpDir).string() + ": " + ec.message());
  }
  unique_fd lock(::open((o.root / kLockFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return io_failure("layer store: open " + (o.root / kLockFile).string(), errno);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return error(errc::locked, "layer store " + o.root.string() + " is open elsewhere (" +
                                     (o.root / kLockFile).string() + " is locked)");
    }
    return io_failure("layer store: lock " + (o.root / kLockFile).string(), errno);
  }
  unique_fd root(::open(o.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return io_failure("layer store: open " + o.root.string(), errno);
  unique_fd tmp(::openat(root.get(), kTmpDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!tmp) return io_failure("layer store: open " + (o.root / kTmpDir).string(), errno);

  auto store =
      std::make_shared<store_impl>(std::move(o), std::move(lock), std::move(root), std::move(tmp));
  if (auto r = store->load(); !r) return r.error();
  return store;
}

}  // namespace pantry::orchestrator::runner
