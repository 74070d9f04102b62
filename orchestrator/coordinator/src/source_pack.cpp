#include "git_run.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/coordinator/ticket.h"
#include "pantry/orchestrator/runner/fd.h"
#include "pantry/text.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using runner::unique_fd;

// Large enough that a big file costs few read(2) calls.
constexpr std::size_t kReadBlock = std::size_t{256} << 10;
// `git ls-files -z` of a very large tree (a million paths of 200 bytes) still fits.
constexpr std::size_t kMaxFileList = std::size_t{256} << 20;
constexpr std::chrono::milliseconds kGitTimeout = std::chrono::minutes(5);
// zstd's default: fast, and part of what the bytes depend on (keep it fixed).
constexpr const char* kZstdLevel = "3";

std::string label(const std::filesystem::path& dir) {
  return "source: pack of " + quote_for_message(dir.string());
}

error io_failure(const std::filesystem::path& dir, std::string_view rel, std::string_view what,
                 int err) {
  return error(err == ENOSPC ? errc::no_space : errc::io_error,
               label(dir) + ": " + quote_for_message(rel) + ": " + std::string(what) + ": " +
                   std::strerror(err));
}

struct archive_deleter {
  void operator()(struct archive* a) const noexcept { archive_write_free(a); }
};
struct entry_deleter {
  void operator()(struct archive_entry* e) const noexcept { archive_entry_free(e); }
};
using entry_ptr = std::unique_ptr<struct archive_entry, entry_deleter>;

// The paths of the tree, relative to it, with what lstat said, sorted bytewise (a parent's path
// is a prefix of its children's, so it always comes first).
using tree_listing = std::map<std::string, struct stat>;

class lister {
 public:
  lister(std::filesystem::path dir, std::string excluded, tree_stats& stats)
      : dir_(std::move(dir)), excluded_(std::move(excluded)), stats_(stats) {}

  // Adds `rel` (and its parents) when it exists and is of a kind an archive holds.
  std::optional<error> add(const std::string& rel) {
    if (rel.empty() || rel == excluded_ || listing_.contains(rel)) return std::nullopt;
    struct stat st {};
    if (::lstat((dir_ / rel).c_str(), &st) != 0) {
      if (errno == ENOENT) return std::nullopt;  // in git's index, deleted from the work tree
      return io_failure(dir_, rel, "cannot stat it", errno);
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
      ++stats_.skipped;
      return std::nullopt;
    }
    if (auto slash = rel.rfind('/'); slash != std::string::npos) {
      if (auto e = add(rel.substr(0, slash))) return e;
    }
    listing_.emplace(rel, st);
    return std::nullopt;
  }

  // Every file and directory below `rel` ("" for the root), .git excepted.
  std::optional<error> walk(const std::string& rel) {
    const std::filesystem::path path = rel.empty() ? dir_ : dir_ / rel;
    std::vector<std::string> names;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(path, ec), last; !ec && it != last;
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name != ".git") names.push_back(std::move(name));
    }
    if (ec) return io_failure(dir_, rel.empty() ? "." : rel, "cannot list it", ec.value());
    for (const auto& name : names) {
      const std::string child = rel.empty() ? name : rel + "/" + name;
      if (auto e = add(child)) return e;
      auto it = listing_.find(child);
      if (it != listing_.end() && S_ISDIR(it->second.st_mode)) {
        if (auto e = walk(child)) return e;
      }
    }
    return std::nullopt;
  }

  tree_listing take() { return std::move(listing_); }

 private:
  std::filesystem::path dir_;
  std::string excluded_;
  tree_stats& stats_;
  tree_listing listing_;
};

// The files git would put in a commit of `dir` (see source.h), or nullopt when `dir` is not in a
// git work tree.
result<std::optional<std::vector<std::string>>> git_file_list(const std::filesystem::path& dir,
                                                              const std::filesystem::path& git) {
  using list = std::optional<std::vector<std::string>>;
  if (git.empty()) return list();  // asked not to consult git: every file
  const auto env = detail::caller_git_environment();
  auto probe = detail::run_git(git, {"-C", dir.string(), "rev-parse", "--is-inside-work-tree"}, env,
                               kGitTimeout);
  if (!probe) {
    if (probe.error().is(errc::not_found)) return list();  // no git: no work tree to ask about
    return probe.error();
  }
  if (!probe->status.success() || trim_ascii_space(probe->out) != "true") return list();
  auto files = detail::run_git(
      git, {"-C", dir.string(), "ls-files", "-z", "--cached", "--others", "--exclude-standard"},
      env, kGitTimeout, kMaxFileList);
  if (!files) return files.error();
  if (!files->status.success() || files->truncated || files->timed_out) {
    return error(errc::io_error,
                 label(dir) + ": git ls-files failed: " + detail::git_failure(*files, kGitTimeout));
  }
  std::vector<std::string> out;
  std::string_view rest = files->out;
  while (!rest.empty()) {
    const auto end = rest.find('\0');
    std::string_view path = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    // A nested repository shows as "name/".
    while (path.ends_with('/'))
      path.remove_suffix(1);
    if (!path.empty()) out.emplace_back(path);
  }
  return list(std::move(out));
}

// The tar and its zstd filter, writing to `fd` and hashing what they write.
class archive_file {
 public:
  archive_file(int fd, std::filesystem::path dir) : fd_(fd), dir_(std::move(dir)) {}

  std::optional<error> open() {
    a_.reset(archive_write_new());
    if (!a_) return error(errc::io_error, label(dir_) + ": libarchive: out of memory");
    int r = archive_write_set_format_pax_restricted(a_.get());
    if (r == ARCHIVE_OK) r = archive_write_add_filter_zstd(a_.get());
    if (r == ARCHIVE_OK) {
      r = archive_write_set_filter_option(a_.get(), "zstd", "compression-level", kZstdLevel);
    }
    // Unblocked: no padding after the compressed stream.
    if (r == ARCHIVE_OK) r = archive_write_set_bytes_per_block(a_.get(), 0);
    if (r == ARCHIVE_OK) r = archive_write_open(a_.get(), this, nullptr, on_write, nullptr);
    if (r != ARCHIVE_OK) return failure("setting up the archive");
    return std::nullopt;
  }

  struct archive* get() const noexcept {
    return a_.get();
  }

  error failure(std::string_view what) const {
    if (write_error_) return *write_error_;
    const char* reason = archive_error_string(a_.get());
    return error(errc::io_error, label(dir_) + ": " + std::string(what) +
                                     ": libarchive: " + (reason ? reason : "unknown error"));
  }

  std::optional<error> close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK) return failure("ending the archive");
    return std::nullopt;
  }

  cache::digest digest() { return hash_.finish(); }
  std::uint64_t size() const noexcept { return size_; }

 private:
  static la_ssize_t on_write(struct archive*, void* self_ptr, const void* buffer, size_t n) {
    auto* self = static_cast<archive_file*>(self_ptr);
    const auto* bytes = static_cast<const char*>(buffer);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = ::write(self->fd_, bytes + done, n - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        self->write_error_ =
            error(errno == ENOSPC ? errc::no_space : errc::io_error,
                  label(self->dir_) + ": cannot write the archive: " + std::strerror(errno));
        return -1;
      }
      done += static_cast<std::size_t>(w);
    }
    self->hash_.update(std::string_view(bytes, n));
    self->size_ += n;
    return static_cast<la_ssize_t>(n);
  }

  int fd_;
  std::filesystem::path dir_;
  cache::hasher hash_;
  std::uint64_t size_ = 0;
  std::optional<error> write_error_;
  // Freed first (declared last): freeing an archive may still call on_write.
  std::unique_ptr<struct archive, archive_deleter> a_;
};

class tree_writer {
 public:
  tree_writer(std::filesystem::path dir, archive_file& out, tree_stats& stats)
      : dir_(std::move(dir)), out_(out), stats_(stats) {}

  std::optional<error> write(const std::string& rel, const struct stat& st) {
    entry_ptr e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), rel.c_str());
    // Set-id and sticky bits are dropped: a CI workspace has no use for them.
    archive_entry_set_mode(e.get(), (st.st_mode & S_IFMT) | (st.st_mode & 0777));
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_mtime(e.get(), 0, 0);
    archive_entry_set_size(e.get(), S_ISREG(st.st_mode) ? st.st_size : 0);
    if (S_ISLNK(st.st_mode)) {
      auto target = read_link(rel, st);
      if (!target) return target.error();
      archive_entry_copy_symlink(e.get(), target->c_str());
      ++stats_.symlinks;
    } else if (S_ISDIR(st.st_mode)) {
      ++stats_.directories;
    } else {
      ++stats_.files;
      stats_.bytes += static_cast<std::uint64_t>(st.st_size);
    }
    // ARCHIVE_WARN: a name the C locale cannot convert went out as bytes (hdrcharset=BINARY).
    if (archive_write_header(out_.get(), e.get()) < ARCHIVE_WARN) {
      return out_.failure("writing " + quote_for_message(rel));
    }
    if (S_ISREG(st.st_mode)) return write_data(rel, st);
    return std::nullopt;
  }

 private:
  result<std::string> read_link(const std::string& rel, const struct stat& st) const {
    std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 255) + 1, '\0');
    for (;;) {
      const ssize_t n = ::readlink((dir_ / rel).c_str(), target.data(), target.size());
      if (n < 0) return io_failure(dir_, rel, "cannot read the link", errno);
      if (static_cast<std::size_t>(n) < target.size()) {
        target.resize(static_cast<std::size_t>(n));
        return target;
      }
      target.resize(target.size() * 2);
    }
  }

  std::optional<error> write_data(const std::string& rel, const struct stat& st) {
    unique_fd file(::open((dir_ / rel).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!file) return io_failure(dir_, rel, "cannot open it", errno);
    if (buffer_.empty()) buffer_.resize(kReadBlock);
    auto remaining = static_cast<std::uint64_t>(st.st_size);
    for (;;) {
      // One byte more than expected, to notice a file that grew.
      const auto want =
          static_cast<std::size_t>(std::min<std::uint64_t>(remaining + 1, buffer_.size()));
      const ssize_t n = ::read(file.get(), buffer_.data(), want);
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_failure(dir_, rel, "cannot read it", errno);
      }
      if (n == 0) break;
      if (static_cast<std::uint64_t>(n) > remaining) {
        return error(errc::io_error, label(dir_) + ": " + quote_for_message(rel) +
                                         ": the file grew while it was packed");
      }
      remaining -= static_cast<std::uint64_t>(n);
      const auto size = static_cast<std::size_t>(n);
      if (archive_write_data(out_.get(), buffer_.data(), size) != static_cast<la_ssize_t>(size)) {
        return out_.failure("writing " + quote_for_message(rel));
      }
    }
    if (remaining != 0) {
      return error(errc::io_error, label(dir_) + ": " + quote_for_message(rel) +
                                       ": the file shrank while it was packed");
    }
    return std::nullopt;
  }

  std::filesystem::path dir_;
  archive_file& out_;
  tree_stats& stats_;
  std::vector<char> buffer_;
};

result<packed_tree> pack_into(int fd, const std::filesystem::path& dir,
                              const std::filesystem::path& out_file,
                              const std::filesystem::path& git) {
  // The archive may be written inside the tree it holds; it never holds itself.
  std::error_code ec;
  const auto canonical_dir = std::filesystem::canonical(dir, ec);
  if (ec) return error(errc::io_error, label(dir) + ": " + ec.message());
  const auto canonical_out = std::filesystem::weakly_canonical(out_file, ec);
  std::string excluded;
  if (!ec) {
    const auto rel = canonical_out.lexically_relative(canonical_dir);
    if (!rel.empty() && *rel.begin() != "..") excluded = rel.generic_string();
  }

  packed_tree packed;
  lister list(canonical_dir, excluded, packed.stats);
  auto files = git_file_list(canonical_dir, git);
  if (!files) return files.error();
  if (*files) {
    for (const auto& rel : **files) {
      if (auto e = list.add(rel)) return *e;
    }
  } else if (auto e = list.walk("")) {
    return *e;
  }
  const tree_listing listing = list.take();

  archive_file archive(fd, dir);
  if (auto e = archive.open()) return *e;
  tree_writer writer(canonical_dir, archive, packed.stats);
  for (const auto& [rel, st] : listing) {
    if (auto e = writer.write(rel, st)) return *e;
  }
  if (auto e = archive.close()) return *e;
  packed.file = out_file;
  packed.sha256 = archive.digest();
  packed.size = archive.size();
  return packed;
}

}  // namespace

result<packed_tree> pack_tree(const std::filesystem::path& dir,
                              const std::filesystem::path& out_file,
                              const std::filesystem::path& git) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return error(errc::invalid_argument, label(dir) + ": not a directory");
  }
  unique_fd fd(::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) {
    return error(errc::io_error, label(dir) + ": cannot create " +
                                     quote_for_message(out_file.string()) + ": " +
                                     std::strerror(errno));
  }
  auto packed = pack_into(fd.get(), dir, out_file, git);
  if (packed && ::close(fd.release()) != 0) {
    packed = error(errc::io_error, label(dir) + ": cannot write " +
                                       quote_for_message(out_file.string()) + ": " +
                                       std::strerror(errno));
  }
  if (!packed) ::unlink(out_file.c_str());
  return packed;
}

std::optional<std::string> head_commit(const std::filesystem::path& dir,
                                       const std::filesystem::path& git) {
  auto out = detail::run_git(git, {"-C", dir.string(), "rev-parse", "--verify", "-q", "HEAD"},
                             detail::caller_git_environment(), kGitTimeout);
  if (!out || !out->status.success()) return std::nullopt;
  std::string sha(trim_ascii_space(out->out));
  if (!is_commit_id(sha)) return std::nullopt;
  return sha;
}

}  // namespace pantry::orchestrator::coordinator
