#include "layer_unpack.h"

#include "pantry/orchestrator/runner/fd.h"
#include "pantry/orchestrator/runner/overlay.h"
#include "strings.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace pantry::orchestrator::runner::detail {
namespace {

// How many compressed bytes are asked of the source at a time.
constexpr std::size_t kSourceChunk = 1 << 20;

// Every path below the layer's root is resolved with these: RESOLVE_IN_ROOT treats the layer as
// "/" (nothing can name a file outside it), RESOLVE_NO_SYMLINKS refuses any symlink on the way,
// so an entry can never be written through a symlink an earlier entry made.
constexpr std::uint64_t kResolve =
    RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;

constexpr const char* kOpaqueXattr = "trusted.overlay.opaque";

// glibc 2.36 has no openat2 wrapper.
int openat2_fd(int dir_fd, const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = kResolve;
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
    // EAGAIN: a rename elsewhere on the system raced with RESOLVE_IN_ROOT's check; retry.
    if (fd >= 0 || errno != EAGAIN || attempt == 8) return static_cast<int>(fd);
  }
}

error io_failure(std::string what, int err) {
  const errc code = err == ENOSPC || err == EDQUOT ? errc::no_space : errc::io_error;
  return error(code, std::move(what) + ": " + std::strerror(err));
}

std::string entry_label(std::string_view path) {
  return "layer entry " + detail::quoted(path);
}

// libarchive's ARCHIVE_RETRY (a damaged header it skipped) counts as a failure here: a layer is
// unpacked whole or not at all. ARCHIVE_WARN is a name it could not convert, kept as bytes.
bool good(int r) {
  return r == ARCHIVE_OK || r == ARCHIVE_WARN;
}

// An entry's path, link target or symlink target as bytes. In pantry's "C" locale libarchive
// cannot convert pax's UTF-8 names: it says ARCHIVE_WARN and keeps their bytes in the locale
// form, which is what the file system wants. The _utf8 form is the fallback when that is unset.
const char* text_of(const char* locale_form, const char* utf8_form) {
  return locale_form != nullptr ? locale_form : utf8_form;
}

bool is_whiteout_at(int dir_fd, const std::string& name) {
  struct stat st {};
  return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) &&
         st.st_rdev == makedev(0, 0);
}

std::pair<std::string_view, std::string_view> split_last(std::string_view path) {
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// "/proc/self/fd/<dir_fd>/<name>": the l*xattr calls have no *at form. The kernel resolves the
// fd link to the directory itself, and `name` is one component, not followed if a symlink.
std::string fd_path(int dir_fd, std::string_view name) {
  std::string out = "/proc/self/fd/" + std::to_string(dir_fd);
  if (!name.empty()) {
    out += '/';
    out += name;
  }
  return out;
}

// The names in directory `dir_fd`, "." and ".." excepted.
result<std::vector<std::string>> list_dir(int dir_fd) {
  int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return io_failure("dup", errno);
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int err = errno;
    ::close(dup);
    return io_failure("fdopendir", err);
  }
  ::rewinddir(d);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return io_failure("readdir", err);
  return names;
}

// Removes `name` in `dir_fd` and everything under it, following no symlink.
result<void> remove_tree_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return io_failure("stat " + detail::quoted(name), errno);
  }
  if (S_ISDIR(st.st_mode)) {
    unique_fd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return io_failure("open " + detail::quoted(name), errno);
    auto names = list_dir(sub.get());
    if (!names) return names.error();
    for (const auto& n : *names) {
      if (auto r = remove_tree_at(sub.get(), n); !r) return r;
    }
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) {
      return io_failure("rmdir " + detail::quoted(name), errno);
    }
    return {};
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0)
    return io_failure("unlink " + detail::quoted(name), errno);
  return {};
}

struct inode_id {
  dev_t dev;
  ino_t ino;
  bool operator==(const inode_id&) const = default;
};
struct inode_hash {
  std::size_t operator()(const inode_id& i) const noexcept {
    return std::hash<ino_t>()(i.ino) ^ (std::hash<dev_t>()(i.dev) << 1);
  }
};

result<void> add_usage(int dir_fd, std::uint64_t& total,
                       std::unordered_set<inode_id, inode_hash>& linked) {
  auto names = list_dir(dir_fd);
  if (!names) return names.error();
  for (const auto& n : *names) {
    struct stat st {};
    if (::fstatat(dir_fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return io_failure("stat " + detail::quoted(n), errno);
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked.insert({st.st_dev, st.st_ino}).second) {
      continue;
    }
    total += static_cast<std::uint64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode)) {
      unique_fd sub(::openat(dir_fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) return io_failure("open " + detail::quoted(n), errno);
      if (auto r = add_usage(sub.get(), total, linked); !r) return r;
    }
  }
  return {};
}

// The uncompressed tar stream, read through two libarchive readers. The first ("raw" format,
// gzip and zstd filters) only decompresses what the source yields; the second (tar format, no
// filter) reads its output through read_tar, which hashes every byte on the way. libarchive does
// all the decompression, and the bytes hashed are exactly the bytes the tar reader parses. What
// follows the tar's end-of-archive blocks is hashed by drain() so that the digest covers the
// whole stream, as a diff ID does.
class tar_stream {
 public:
  explicit tar_stream(const layer_source& source) : source_(source), chunk_(kSourceChunk) {}
  ~tar_stream() {
    if (tar_ != nullptr) archive_read_free(tar_);
    if (raw_ != nullptr) archive_read_free(raw_);
  }
  tar_stream(const tar_stream&) = delete;
  tar_stream& operator=(const tar_stream&) = delete;

  // Opens both readers: reads the first bytes to recognise the compression and the tar format.
  result<archive*> open() {
    raw_ = archive_read_new();
    tar_ = archive_read_new();
    if (raw_ == nullptr || tar_ == nullptr) return error(errc::io_error, "archive_read_new failed");
    archive_read_support_filter_gzip(raw_);
    archive_read_support_filter_zstd(raw_);
    archive_read_support_format_raw(raw_);
    if (archive_read_open(raw_, this, nullptr, &tar_stream::read_compressed, nullptr) !=
        ARCHIVE_OK) {
      return failure(raw_, "cannot read the layer");
    }
    archive_entry* only = nullptr;
    int r = archive_read_next_header(raw_, &only);
    if (r == ARCHIVE_EOF) return error(errc::invalid_argument, "the layer is empty, not a tar");
    if (!good(r)) return failure(raw_, "cannot decompress the layer");

    archive_read_support_format_tar(tar_);
    if (archive_read_open(tar_, this, nullptr, &tar_stream::read_tar, nullptr) != ARCHIVE_OK) {
      return failure(tar_, "not a tar archive");
    }
    return tar_;
  }

  // An error for a failed call on reader `a`: the source's own error if it failed, else
  // libarchive's message after `what`.
  error failure(archive* a, std::string_view what) {
    if (source_error_) return *source_error_;
    const char* msg = archive_error_string(a);
    if (a == tar_ && raw_failed_) msg = archive_error_string(raw_);
    return error(errc::invalid_argument,
                 std::string(what) + ": " + (msg != nullptr ? msg : "unknown libarchive error"));
  }

  // Hashes the rest of the uncompressed stream and returns the digest of all of it. Then reads
  // the source to its end: the decompressor may stop at the end of its stream without asking for
  // what follows, and a source that verifies what it hands out (the puller checks the blob's
  // digest) must see every byte. Bytes after the compressed stream are ignored, as docker does.
  result<cache::digest> drain() {
    while (true) {
      const void* block = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(raw_, &block, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (!good(r)) return failure(raw_, "cannot decompress the layer");
      hash_.update(std::span(static_cast<const std::byte*>(block), size));
      tar_bytes_ += size;
    }
    // The decompressor may also have swallowed a source error while looking for another gzip
    // member after the first.
    if (source_error_) return *source_error_;
    while (true) {
      auto n = source_(std::span(chunk_));
      if (!n) return n.error();
      if (*n == 0) break;
    }
    return hash_.finish();
  }

  std::uint64_t tar_bytes() const noexcept { return tar_bytes_; }
  // The source's error, if it failed: whatever libarchive then said is a consequence.
  const std::optional<error>& source_error() const noexcept { return source_error_; }

 private:
  static la_ssize_t read_compressed(archive* a, void* self_ptr, const void** out) {
    auto* self = static_cast<tar_stream*>(self_ptr);
    auto n = self->source_(std::span(self->chunk_));
    if (!n) {
      self->source_error_ = n.error();
      archive_set_error(a, EIO, "%s", n.error().message.c_str());
      return -1;
    }
    *out = self->chunk_.data();
    return static_cast<la_ssize_t>(*n);
  }

  static la_ssize_t read_tar(archive* a, void* self_ptr, const void** out) {
    auto* self = static_cast<tar_stream*>(self_ptr);
    while (true) {
      const void* block = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(self->raw_, &block, &size, &offset);
      if (r == ARCHIVE_EOF) return 0;
      if (!good(r)) {
        self->raw_failed_ = true;
        const char* msg = archive_error_string(self->raw_);
        archive_set_error(a, EIO, "decompression failed: %s", msg != nullptr ? msg : "?");
        return -1;
      }
      if (size == 0) continue;
      self->hash_.update(std::span(static_cast<const std::byte*>(block), size));
      self->tar_bytes_ += size;
      *out = block;  // valid until the next archive_read_data_block, i.e. the next callback
      return static_cast<la_ssize_t>(size);
    }
  }

  const layer_source& source_;
  std::vector<std::byte> chunk_;
  archive* raw_ = nullptr;
  archive* tar_ = nullptr;
  cache::hasher hash_;
  std::uint64_t tar_bytes_ = 0;
  std::optional<error> source_error_;
  bool raw_failed_ = false;
};

// What a tar entry says about the inode it makes.
struct inode_meta {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;  // permission bits, set-id and sticky bits
  std::array<timespec, 2> times{};
  std::vector<std::pair<std::string, std::string>> xattrs;  // trusted.overlay.* already dropped
};

inode_meta meta_of(archive_entry* e) {
  inode_meta m;
  // Numeric owners only: the host's user database means nothing inside an image.
  m.uid = static_cast<uid_t>(archive_entry_uid(e));
  m.gid = static_cast<gid_t>(archive_entry_gid(e));
  m.mode = archive_entry_perm(e) & 07777;
  timespec mtime{};
  if (archive_entry_mtime_is_set(e)) {
    mtime = {static_cast<time_t>(archive_entry_mtime(e)), archive_entry_mtime_nsec(e)};
  }
  timespec atime = mtime;
  if (archive_entry_atime_is_set(e)) {
    atime = {static_cast<time_t>(archive_entry_atime(e)), archive_entry_atime_nsec(e)};
  }
  m.times = {atime, mtime};
  archive_entry_xattr_reset(e);
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (name == nullptr || !keep_xattr(name)) continue;
    m.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
  }
  return m;
}

// Writes the entries of one layer below `root_fd`, each through openat2 (kResolve).
class layer_writer {
 public:
  explicit layer_writer(int root_fd) : root_fd_(root_fd) {}

  result<void> write(archive* tar, archive_entry* e) {
    const char* raw_path = text_of(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
    if (raw_path == nullptr) return invalid("an entry has no path: refused");
    auto classified = classify_entry(raw_path);
    if (!classified) return classified.error();
    const std::string& path = classified->path;
    if (path.size() >= PATH_MAX) {
      return invalid(entry_label(raw_path) + " is longer than PATH_MAX (" +
                     std::to_string(PATH_MAX) + " bytes): refused");
    }
    switch (classified->kind) {
      case entry_kind::ignored:
        return {};
      case entry_kind::whiteout:
        return whiteout(path);
      case entry_kind::opaque:
        return opaque(path);
      case entry_kind::regular:
        break;
    }
    const char* link = text_of(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e));
    const auto type = archive_entry_filetype(e);
    if (path.empty() && (link != nullptr || type != AE_IFDIR)) {
      return invalid(entry_label(raw_path) + " is the layer's root but not a directory: refused");
    }
    if (link != nullptr) return hard_link(path, link);
    switch (type) {
      case AE_IFDIR:
        return directory(path, meta_of(e));
      case AE_IFREG:
        return regular_file(path, tar, e);
      case AE_IFLNK:
        return symlink(path, e);
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
        return special_file(path, e);
      default:
        return invalid(entry_label(raw_path) + " has a file type tar layers do not hold (0" +
                       to_octal(type) + "): refused");
    }
  }

  // Sets the directories' modes and times, which writing their children would have changed.
  result<void> finish() {
    for (const auto& d : deferred_) {
      unique_fd fd = d.path.empty()
                         ? dup_root()
                         : unique_fd(openat2_fd(root_fd_, d.path.c_str(), O_RDONLY | O_DIRECTORY));
      // A later entry replaced the directory with something else: nothing left to set.
      if (!fd) continue;
      if (::fchmod(fd.get(), d.mode) != 0)
        return io_failure(entry_label(d.path) + ": chmod", errno);
      if (::futimens(fd.get(), d.times.data()) != 0) {
        return io_failure(entry_label(d.path) + ": set times", errno);
      }
    }
    return {};
  }

 private:
  struct deferred_dir {
    std::string path;
    mode_t mode;
    std::array<timespec, 2> times;
  };

  static std::string to_octal(unsigned v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%o", v);
    return buf;
  }

  unique_fd dup_root() const { return unique_fd(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0)); }

  // The directory at `rel` below the root ("" is the root), its missing components made as
  // directories 0755 owned by root when `create` (a layer may list a file before, or without,
  // its directory). Refuses a symlink or a non-directory on the way, naming it.
  result<unique_fd> open_dir(std::string_view rel, bool create, const std::string& label) {
    if (rel.empty()) {
      unique_fd fd = dup_root();
      if (!fd) return io_failure("dup", errno);
      return fd;
    }
    const std::string rel_str(rel);
    unique_fd fd(openat2_fd(root_fd_, rel_str.c_str(), O_RDONLY | O_DIRECTORY));
    if (fd) return fd;
    // Walk it one component at a time, to create what is missing and name what is in the way.
    unique_fd cur = dup_root();
    if (!cur) return io_failure("dup", errno);
    std::string so_far;
    for (auto part : split(rel, '/')) {
      if (!so_far.empty()) so_far += '/';
      so_far += part;
      const std::string name(part);
      bool made = false;
      if (create) {
        // This layer's own whiteout of the name (".wh.a" before "a/f") hides only the layers
        // below: the directory replaces it, as a directory entry would.
        if (is_whiteout_at(cur.get(), name)) ::unlinkat(cur.get(), name.c_str(), 0);
        if (::mkdirat(cur.get(), name.c_str(), 0755) == 0) {
          made = true;
        } else if (errno != EEXIST) {
          return io_failure(label + ": mkdir " + detail::quoted(so_far), errno);
        }
      }
      unique_fd next(openat2_fd(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY));
      if (!next) {
        const int err = errno;
        if (err == ELOOP) {
          return invalid(label + ": " + detail::quoted(so_far) +
                         " is a symlink, and unpacking never follows one: refused");
        }
        if (err == ENOTDIR) {
          return invalid(label + ": " + detail::quoted(so_far) + " is not a directory: refused");
        }
        return io_failure(label + ": open " + detail::quoted(so_far), err);
      }
      // The process umask may have narrowed the mode mkdirat got.
      if (made && ::fchmod(next.get(), 0755) != 0) {
        return io_failure(label + ": chmod " + detail::quoted(so_far), errno);
      }
      cur = std::move(next);
    }
    return cur;
  }

  struct place {
    unique_fd dir;
    std::string name;  // one component
  };

  result<place> locate(const std::string& path) {
    auto [parent, name] = split_last(path);
    auto dir = open_dir(parent, true, entry_label(path));
    if (!dir) return dir.error();
    return place{std::move(*dir), std::string(name)};
  }

  // Makes room for a new entry at `p`: a later tar entry replaces an earlier one of the same
  // name, as tar does. Returns true iff a directory is there and `keep_dir` asked to keep it.
  result<bool> clear(const place& p, bool keep_dir, std::string_view path) {
    struct stat st {};
    if (::fstatat(p.dir.get(), p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return false;
      return io_failure(entry_label(path) + ": stat", errno);
    }
    if (S_ISDIR(st.st_mode)) {
      if (keep_dir) return true;
      if (auto r = remove_tree_at(p.dir.get(), p.name); !r) {
        return error(r.error().code, entry_label(path) + ": " + r.error().message);
      }
      return false;
    }
    if (::unlinkat(p.dir.get(), p.name.c_str(), 0) != 0) {
      return io_failure(entry_label(path) + ": unlink", errno);
    }
    return false;
  }

  // Owner, then mode (chown clears set-id bits), then xattrs (chown clears security.capability),
  // on an open regular file or directory.
  result<void> apply_to_fd(int fd, const inode_meta& m, bool with_mode, std::string_view path) {
    if (::fchown(fd, m.uid, m.gid) != 0) return io_failure(entry_label(path) + ": chown", errno);
    if (with_mode && ::fchmod(fd, m.mode) != 0) {
      return io_failure(entry_label(path) + ": chmod", errno);
    }
    for (const auto& [name, value] : m.xattrs) {
      if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0 && errno != ENOTSUP) {
        return io_failure(entry_label(path) + ": set xattr " + detail::quoted(name), errno);
      }
    }
    return {};
  }

  // The same for an inode that is not opened (symlinks, devices, fifos): by name in its
  // directory, never following it. Symlinks have no mode of their own.
  result<void> apply_at(const place& p, const inode_meta& m, bool is_symlink,
                        std::string_view path) {
    const char* name = p.name.c_str();
    if (::fchownat(p.dir.get(), name, m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return io_failure(entry_label(path) + ": chown", errno);
    }
    if (!is_symlink && ::fchmodat(p.dir.get(), name, m.mode, 0) != 0) {
      return io_failure(entry_label(path) + ": chmod", errno);
    }
    if (!m.xattrs.empty()) {
      const std::string full = fd_path(p.dir.get(), p.name);
      for (const auto& [xname, value] : m.xattrs) {
        if (::lsetxattr(full.c_str(), xname.c_str(), value.data(), value.size(), 0) != 0 &&
            errno != ENOTSUP) {
          return io_failure(entry_label(path) + ": set xattr " + detail::quoted(xname), errno);
        }
      }
    }
    if (::utimensat(p.dir.get(), name, m.times.data(), AT_SYMLINK_NOFOLLOW) != 0) {
      return io_failure(entry_label(path) + ": set times", errno);
    }
    return {};
  }

  result<void> directory(const std::string& path, inode_meta m) {
    unique_fd fd;
    if (path.empty()) {
      fd = dup_root();
    } else {
      auto p = locate(path);
      if (!p) return p.error();
      auto kept = clear(*p, true, path);
      if (!kept) return kept.error();
      if (!*kept && ::mkdirat(p->dir.get(), p->name.c_str(), 0700) != 0) {
        return io_failure(entry_label(path) + ": mkdir", errno);
      }
      fd.reset(
          ::openat(p->dir.get(), p->name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!fd) return io_failure(entry_label(path) + ": open", errno);
    if (auto r = apply_to_fd(fd.get(), m, false, path); !r) return r;
    deferred_.push_back({path, m.mode, m.times});
    return {};
  }

  result<void> regular_file(const std::string& path, archive* tar, archive_entry* e) {
    auto p = locate(path);
    if (!p) return p.error();
    if (auto r = clear(*p, false, path); !r) return r.error();
    unique_fd fd(::openat(p->dir.get(), p->name.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return io_failure(entry_label(path) + ": create", errno);
    std::uint64_t end = 0;
    while (true) {
      const void* block = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(tar, &block, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (!good(r)) {
        const char* msg = archive_error_string(tar);
        return error(errc::invalid_argument, entry_label(path) + ": cannot read its data: " +
                                                 (msg != nullptr ? msg : "libarchive error"));
      }
      // Sparse files come as blocks at offsets with holes between them.
      const auto* bytes = static_cast<const char*>(block);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n = ::pwrite(fd.get(), bytes + done, size - done, offset + done);
        if (n < 0) {
          if (errno == EINTR) continue;
          return io_failure(entry_label(path) + ": write", errno);
        }
        done += static_cast<std::size_t>(n);
      }
      end = std::max<std::uint64_t>(end, static_cast<std::uint64_t>(offset) + size);
    }
    const auto size = static_cast<std::uint64_t>(archive_entry_size(e));
    if (end < size && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
      return io_failure(entry_label(path) + ": truncate", errno);
    }
    const inode_meta m = meta_of(e);
    if (auto r = apply_to_fd(fd.get(), m, true, path); !r) return r;
    if (::futimens(fd.get(), m.times.data()) != 0) {
      return io_failure(entry_label(path) + ": set times", errno);
    }
    return {};
  }

  result<void> symlink(const std::string& path, archive_entry* e) {
    // Kept whatever it points at, absolute targets included: it is only ever followed inside
    // the container, whose root it then resolves against.
    const char* target = text_of(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
    if (target == nullptr || *target == '\0') {
      return invalid(entry_label(path) + " is a symlink without a target: refused");
    }
    auto p = locate(path);
    if (!p) return p.error();
    if (auto r = clear(*p, false, path); !r) return r.error();
    if (::symlinkat(target, p->dir.get(), p->name.c_str()) != 0) {
      return io_failure(entry_label(path) + ": symlink", errno);
    }
    return apply_at(*p, meta_of(e), true, path);
  }

  result<void> special_file(const std::string& path, archive_entry* e) {
    auto p = locate(path);
    if (!p) return p.error();
    if (auto r = clear(*p, false, path); !r) return r.error();
    const auto type = archive_entry_filetype(e);
    const dev_t dev =
        type == AE_IFIFO ? 0 : makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (::mknodat(p->dir.get(), p->name.c_str(), static_cast<mode_t>(type) | 0600, dev) != 0) {
      return io_failure(entry_label(path) + ": mknod", errno);
    }
    return apply_at(*p, meta_of(e), false, path);
  }

  result<void> hard_link(const std::string& path, const char* link_name) {
    auto target = hard_link_target(link_name);
    if (!target) {
      return invalid(entry_label(path) + ": " + target.error().message);
    }
    if (*target == path) return {};  // a link to itself: the file is there already
    auto [target_parent, target_name] = split_last(*target);
    const std::string label = entry_label(path) + ": hard link target " + detail::quoted(*target);
    auto from = open_dir(target_parent, false, label);
    if (!from) {
      if (from.error().is(errc::io_error)) return invalid(label + " is not in the layer: refused");
      return from.error();
    }
    const std::string from_name(target_name);
    struct stat st {};
    if (::fstatat(from->get(), from_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return invalid(entry_label(path) + ": hard link target " + detail::quoted(*target) +
                     " is not in the layer: refused");
    }
    if (S_ISDIR(st.st_mode)) {
      return invalid(entry_label(path) + ": hard link target " + detail::quoted(*target) +
                     " is a directory: refused");
    }
    auto p = locate(path);
    if (!p) return p.error();
    if (auto r = clear(*p, false, path); !r) return r.error();
    // Flags 0: a symlink target is linked itself, never followed.
    if (::linkat(from->get(), from_name.c_str(), p->dir.get(), p->name.c_str(), 0) != 0) {
      return io_failure(entry_label(path) + ": link to " + detail::quoted(*target), errno);
    }
    return {};
  }

  result<void> whiteout(const std::string& path) {
    auto p = locate(path);
    if (!p) return p.error();
    struct stat st {};
    // A whiteout hides the layers below only: an entry of this layer with the name stays.
    if (::fstatat(p->dir.get(), p->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return {};
    if (::mknodat(p->dir.get(), p->name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return io_failure(entry_label(path) + ": mknod of the whiteout", errno);
    }
    return {};
  }

  result<void> opaque(const std::string& path) {
    auto dir = open_dir(path, true, entry_label(path));
    if (!dir) return dir.error();
    if (::fsetxattr(dir->get(), kOpaqueXattr, "y", 1, 0) != 0) {
      return io_failure(entry_label(path) + ": set " + std::string(kOpaqueXattr) +
                            " (the store needs a file system with trusted xattrs, and "
                            "CAP_SYS_ADMIN)",
                        errno);
    }
    return {};
  }

  int root_fd_;
  std::vector<deferred_dir> deferred_;
};

}  // namespace

bool is_tar_layer_media_type(std::string_view media_type) noexcept {
  constexpr std::string_view kTypes[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
      "application/vnd.docker.image.rootfs.foreign.diff.tar",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  for (auto t : kTypes) {
    if (media_type == t) return true;
  }
  return false;
}

result<unpack_report> unpack_layer(int dir_fd, const cache::digest& diff_id,
                                   const layer_source& source) {
  tar_stream stream(source);
  auto tar = stream.open();
  if (!tar) return tar.error();
  layer_writer writer(dir_fd);
  unpack_report report;
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(*tar, &e);
    if (r == ARCHIVE_EOF) break;
    if (!good(r)) return stream.failure(*tar, "malformed tar");
    if (auto w = writer.write(*tar, e); !w) {
      if (stream.source_error()) return *stream.source_error();  // it failed mid-entry
      return w.error();
    }
    ++report.entries;
  }
  auto actual = stream.drain();
  if (!actual) return actual.error();
  report.tar_bytes = stream.tar_bytes();
  if (*actual != diff_id) {
    return error(errc::digest_mismatch, "the uncompressed tar's sha256 is " + actual->str() +
                                            ", not its diff ID " + diff_id.str() +
                                            " (the image config's): refused");
  }
  if (auto f = writer.finish(); !f) return f.error();
  return report;
}

result<std::uint64_t> disk_usage(int dir_fd) {
  struct stat st {};
  if (::fstat(dir_fd, &st) != 0) return io_failure("stat", errno);
  std::uint64_t total = static_cast<std::uint64_t>(st.st_blocks) * 512;
  std::unordered_set<inode_id, inode_hash> linked;
  if (auto r = add_usage(dir_fd, total, linked); !r) return r.error();
  return total;
}

}  // namespace pantry::orchestrator::runner::detail

namespace pantry::orchestrator::runner {

std::optional<std::string> layer_media_type_refusal(std::string_view media_type) {
  const std::string named = "media type " + detail::quoted(media_type);
  if (media_type.find("nondistributable") != std::string_view::npos ||
      media_type.find("foreign") != std::string_view::npos) {
    return named +
           " is a non-distributable (foreign) layer: registries do not serve it, so pantry cannot "
           "run the image";
  }
  if (media_type.ends_with("+encrypted")) {
    return named + " is an encrypted layer: pantry does not decrypt layers";
  }
  if (!detail::is_tar_layer_media_type(media_type)) {
    return named + " is not an image layer (OCI or docker tar: uncompressed, gzip or zstd)";
  }
  return std::nullopt;
}

}  // namespace pantry::orchestrator::runner
