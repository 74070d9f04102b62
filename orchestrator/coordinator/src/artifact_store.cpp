#include "pantry/orchestrator/coordinator/artifact_store.h"

#include "keys.h"
#include "meta.h"
#include "pantry/config/config.h"
#include "retention.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTarMedia = "application/x-tar";
constexpr std::size_t kReadBytes = 1 << 20;

std::string job_name(job_id job) {
  return "ci: artifacts of job " + std::to_string(job);
}

// A file read front to back in pieces, closed on destruction.
class input_file {
 public:
  static result<input_file> open(const fs::path& path, const std::string& what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      return error(e == ENOENT ? errc::not_found : errc::io_error,
                   what + ": cannot open " + path.string() + ": " + std::strerror(e));
    }
    return input_file(fd, path, what);
  }
  input_file(input_file&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), path_(o.path_), what_(o.what_) {}
  input_file& operator=(input_file&&) = delete;
  ~input_file() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Calls `fn` with each piece until the end; stops early with fn's error.
  result<void> each(const std::function<result<void>(std::span<const std::byte>)>& fn) {
    if (::lseek(fd_, 0, SEEK_SET) < 0) return failed("seek");
    std::vector<std::byte> buf(kReadBytes);
    for (;;) {
      ssize_t n = ::read(fd_, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return failed("read");
      }
      if (n == 0) return {};
      if (auto r = fn(std::span(buf.data(), static_cast<std::size_t>(n))); !r) return r;
    }
  }

 private:
  input_file(int fd, fs::path path, std::string what)
      : fd_(fd), path_(std::move(path)), what_(std::move(what)) {}
  error failed(std::string_view op) const {
    return error(errc::io_error, what_ + ": cannot " + std::string(op) + " " + path_.string() +
                                     ": " + std::strerror(errno));
  }
  int fd_ = -1;
  fs::path path_;
  std::string what_;
};

class artifact_store_impl final : public artifact_store {
 public:
  artifact_store_impl(std::shared_ptr<cache::store> store, artifact_limits limits)
      : store_(std::move(store)), limits_(limits) {}

  result<void> load() {
    std::optional<error> failure;
    auto walked = store_->for_each_entry(
        keys::kArtifactPrefix, [&](std::string_view key, const cache::entry& e) {
          auto job = keys::job_of(key, keys::kArtifactPrefix);
          if (!job) return true;
          detail::attribute_reader r(key, e);
          artifact_info info;
          info.size = r.number("size");
          info.created = detail::from_ms(static_cast<std::int64_t>(r.number("created")));
          if (r.failed() || !e.target) {
            failure = r.failed()
                          ? r.problem()
                          : error(errc::corrupt, "ci: entry " + std::string(key) + " has no blob");
            return false;
          }
          info.id = *e.target;
          ++refs_[info.id];
          total_ += info.size;
          items_.emplace(*job, info);
          return true;
        });
    if (!walked) return walked.error();
    if (failure) return *failure;
    return {};
  }

  result<artifact_info> put(job_id job, const fs::path& tar_file) override {
    std::string what = job_name(job);
    auto too_big = [&](std::uint64_t size) {
      return error(errc::quota_exceeded, what + ": " + tar_file.string() + " is " +
                                             config::format_size(size) + ", over the limit of " +
                                             config::format_size(limits_.max_job) +
                                             " (ci.artifacts.max_job)");
    };
    auto file = input_file::open(tar_file, what);
    if (!file) return file.error();

    // First pass: the digest, and the size check before anything is stored.
    cache::hasher h;
    std::uint64_t size = 0;
    auto hashed = file->each([&](std::span<const std::byte> piece) -> result<void> {
      size += piece.size();
      if (size > limits_.max_job) return too_big(size);
      h.update(piece);
      return {};
    });
    if (!hashed) return hashed.error();
    artifact_info info{h.finish(), size, clock::now()};

    // Holding a reference from here on keeps a remove of another job's identical tar from
    // deleting the blob under this one.
    {
      std::lock_guard blobs(blob_mutex_);
      std::lock_guard g(mutex_);
      ++refs_[info.id];
    }
    auto stored = store_blob(*file, info, what);
    if (stored) {
      cache::entry e;
      e.target = info.id;
      e.content_type = kTarMedia;
      e.fetched_at = info.created;
      e.expires_at = info.created;
      e.attributes = {{"size", std::to_string(info.size)},
                      {"created", std::to_string(detail::to_ms(info.created))}};
      if (auto r = store_->put_entry(keys::artifact(job), e); !r) stored = r.error();
    }
    std::optional<artifact_info> replaced;
    {
      std::lock_guard g(mutex_);
      if (stored) {
        auto [it, added] = items_.try_emplace(job, info);
        if (!added) {
          replaced = it->second;
          total_ -= std::min(total_, replaced->size);
          it->second = info;
        }
        total_ += info.size;
      }
    }
    if (!stored) {
      release(info.id);
      return stored.error();
    }
    if (replaced) release(replaced->id);
    return info;
  }

  result<cache::blob_reader> get(job_id job) override {
    auto i = info(job);
    if (!i) return error(errc::not_found, job_name(job) + " do not exist");
    return store_->open_blob(i->id);
  }

  std::optional<artifact_info> info(job_id job) const override {
    std::lock_guard g(mutex_);
    auto it = items_.find(job);
    if (it == items_.end()) return std::nullopt;
    return it->second;
  }

  std::uint64_t total_bytes() const override {
    std::lock_guard g(mutex_);
    return total_;
  }

  result<prune_report> prune(clock::time_point now) override {
    std::vector<std::pair<clock::time_point, job_id>> candidates;
    std::uint64_t total = 0;
    {
      std::lock_guard g(mutex_);
      for (const auto& [job, item] : items_)
        candidates.emplace_back(item.created, job);
      total = total_;
    }
    return detail::prune_oldest(std::move(candidates), total, now, limits_.keep_for,
                                limits_.max_total, [&](job_id job) { return remove_item(job); });
  }

  result<void> remove(job_id job) override {
    auto r = remove_item(job);
    if (!r) return r.error();
    return {};
  }

 private:
  // Streams the file into a pinned blob, or pins the blob if it is stored already.
  result<void> store_blob(input_file& file, const artifact_info& info, const std::string& what) {
    auto w = store_->begin_blob(info.id, std::string(kTarMedia), info.size, /*pinned=*/true);
    if (!w) {
      if (!w.error().is(errc::already_exists)) return w.error();
      return store_->set_pinned(info.id, true);
    }
    auto written = file.each([&](std::span<const std::byte> piece) { return w->write(piece); });
    if (!written) return written.error();
    auto committed = w->commit();
    if (!committed) {
      return error(committed.error().code,
                   what + ": " + committed.error().message + " (did the file change?)");
    }
    return {};
  }

  // Drops one reference to blob `id`, deleting the blob when it was the last.
  void release(const cache::digest& id) {
    std::lock_guard blobs(blob_mutex_);
    {
      std::lock_guard g(mutex_);
      auto it = refs_.find(id);
      if (it != refs_.end() && --it->second > 0) return;
      if (it != refs_.end()) refs_.erase(it);
    }
    // Not found is fine: an earlier remove may have failed half-way.
    (void)store_->remove_blob(id);
  }

  result<std::uint64_t> remove_item(job_id job) {
    std::optional<artifact_info> item = info(job);
    if (!item) return error(errc::not_found, job_name(job) + " do not exist");
    if (auto r = store_->remove_entry(keys::artifact(job)); !r && !r.error().is(errc::not_found)) {
      return r.error();
    }
    {
      std::lock_guard g(mutex_);
      auto it = items_.find(job);
      // A put for the same job may have replaced it meanwhile: that put releases the old blob.
      if (it == items_.end() || it->second.id != item->id) {
        return error(errc::not_found, job_name(job) + " changed while being removed");
      }
      items_.erase(it);
      total_ -= std::min(total_, item->size);
    }
    release(item->id);
    return item->size;
  }

  const std::shared_ptr<cache::store> store_;
  const artifact_limits limits_;
  // Orders taking a new reference to a blob against deleting a blob whose last reference went,
  // so that a put never pins a blob that a remove is deleting.
  std::mutex blob_mutex_;
  mutable std::mutex mutex_;
  std::map<job_id, artifact_info> items_;                            // guarded by mutex_
  std::unordered_map<cache::digest, int, cache::digest_hash> refs_;  // guarded by mutex_
  std::uint64_t total_ = 0;                                          // guarded by mutex_
};

}  // namespace

result<std::shared_ptr<artifact_store>> artifact_store::open(std::shared_ptr<cache::store> store,
                                                             artifact_limits limits) {
  auto s = std::make_shared<artifact_store_impl>(std::move(store), limits);
  if (auto r = s->load(); !r) return r.error();
  return std::shared_ptr<artifact_store>(std::move(s));
}

}  // namespace pantry::orchestrator::coordinator
