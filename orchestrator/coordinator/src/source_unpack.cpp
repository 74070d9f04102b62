#include "empty_dir.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/runner/fd.h"
#include "pantry/text.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using runner::unique_fd;

constexpr std::size_t kReadBlock = std::size_t{1} << 16;

std::string entry_label(std::string_view path) {
  return "source: archive entry " + quote_for_message(path);
}

error refused(std::string_view path, std::string_view why) {
  return error(errc::invalid_argument, entry_label(path) + ": " + std::string(why) + ": refused");
}

error io_failure(std::string_view path, std::string_view what, int err) {
  return error(err == ENOSPC || err == EDQUOT ? errc::no_space : errc::io_error,
               entry_label(path) + ": " + std::string(what) + ": " + std::strerror(err));
}

// libarchive's ARCHIVE_RETRY (a damaged header it skipped) counts as a failure: a tree is
// unpacked whole or not at all. ARCHIVE_WARN is a name it could not convert, kept as bytes.
bool good(int r) {
  return r == ARCHIVE_OK || r == ARCHIVE_WARN;
}

const char* text_of(const char* locale_form, const char* utf8_form) {
  return locale_form != nullptr ? locale_form : utf8_form;
}

std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    const auto slash = path.find('/');
    const auto part = path.substr(0, slash);
    if (!part.empty() && part != ".") out.push_back(part);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  }
  return out;
}

// The entry's path without "." and empty components; an error for an absolute path or "..".
result<std::string> clean_path(std::string_view raw) {
  if (raw.starts_with('/')) return refused(raw, "an absolute path");
  std::string out;
  for (auto part : components(raw)) {
    if (part == "..") return refused(raw, "a path with \"..\"");
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

// Whether symlink `path` -> `target` stays inside the tree when read as written (other symlinks
// on the way are checked after unpacking, when they all exist).
bool stays_inside(std::string_view path, std::string_view target) {
  if (target.starts_with('/')) return false;
  long depth = static_cast<long>(components(path).size()) - 1;  // the link's directory
  for (auto part : components(target)) {
    depth += part == ".." ? -1 : 1;
    if (depth < 0) return false;
  }
  return true;
}

struct reader_deleter {
  void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};

class tree_unpacker {
 public:
  explicit tree_unpacker(int root_fd) : root_fd_(root_fd) {}

  result<void> write(struct archive* a, struct archive_entry* e) {
    const char* raw = text_of(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
    if (raw == nullptr || *raw == '\0') return refused("", "an entry without a path");
    auto path = clean_path(raw);
    if (!path) return path.error();
    const auto type = archive_entry_filetype(e);
    if (path->empty()) {
      if (type == AE_IFDIR) return {};  // the root itself ("./")
      return refused(raw, "the root but not a directory");
    }
    if (archive_entry_hardlink(e) != nullptr || archive_entry_hardlink_utf8(e) != nullptr) {
      return refused(*path, "a hard link (a source archive holds none)");
    }
    if (!seen_.insert(*path).second) return refused(*path, "it appears twice in the archive");
    const mode_t perm = archive_entry_perm(e) & 0777;
    switch (type) {
      case AE_IFDIR:
        return directory(*path, perm);
      case AE_IFREG:
        return regular_file(*path, perm, a, e);
      case AE_IFLNK:
        return symlink(*path, e);
      case AE_IFCHR:
      case AE_IFBLK:
        return refused(*path, "a device");
      default:
        return refused(*path, "a FIFO, socket or other file type a source tree does not hold");
    }
  }

  // Checks every symlink now that all exist, and gives the directories their modes (a
  // read-only one would have refused its own children).
  result<void> finish() {
    for (const auto& path : symlinks_) {
      open_how how{};
      how.flags = O_PATH | O_CLOEXEC;
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
      const long fd = ::syscall(SYS_openat2, root_fd_, path.c_str(), &how, sizeof how);
      if (fd >= 0) {
        ::close(static_cast<int>(fd));
      } else if (errno == EXDEV) {
        return refused(path, "a symlink that leads out of the directory through other symlinks");
      }
      // ENOENT (dangling) and ELOOP (a loop) stay inside: nothing to refuse.
    }
    for (const auto& [path, mode] : directories_) {
      auto fd = open_dir(path, false, path);
      if (!fd) return fd.error();
      if (::fchmod(fd->get(), mode) != 0) return io_failure(path, "chmod", errno);
    }
    return {};
  }

  tree_stats stats() const { return stats_; }

 private:
  // The directory `path` below the root, each component opened without following a symlink;
  // missing ones are made when `create`. Errors name `entry`.
  result<unique_fd> open_dir(std::string_view path, bool create, std::string_view entry) {
    unique_fd cur(::fcntl(root_fd_, F_DUPFD_CLOEXEC, 0));
    if (!cur) return io_failure(entry, "dup", errno);
    std::string so_far;
    for (auto part : components(path)) {
      if (!so_far.empty()) so_far += '/';
      so_far += part;
      const std::string name(part);
      if (create && ::mkdirat(cur.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
        return io_failure(entry, "mkdir " + quote_for_message(so_far), errno);
      }
      unique_fd next(
          ::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next) {
        const int err = errno;
        struct stat st {};
        if (::fstatat(cur.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode)) {
          return refused(entry, quote_for_message(so_far) +
                                    " is a symlink, and unpacking never writes through one");
        }
        if (err == ENOTDIR)
          return refused(entry, quote_for_message(so_far) + " is not a directory");
        return io_failure(entry, "open " + quote_for_message(so_far), err);
      }
      cur = std::move(next);
    }
    return cur;
  }

  struct place {
    unique_fd dir;
    std::string name;
  };

  result<place> locate(const std::string& path) {
    const auto slash = path.rfind('/');
    const std::string_view parent =
        slash == std::string::npos ? std::string_view() : std::string_view(path).substr(0, slash);
    auto dir = open_dir(parent, true, path);
    if (!dir) return dir.error();
    return place{std::move(*dir), slash == std::string::npos ? path : path.substr(slash + 1)};
  }

  result<void> directory(const std::string& path, mode_t perm) {
    auto p = locate(path);
    if (!p) return p.error();
    if (::mkdirat(p->dir.get(), p->name.c_str(), 0700) != 0) {
      if (errno != EEXIST) return io_failure(path, "mkdir", errno);
      // Made as the parent of an earlier entry (an archive not in tree order): fine if it is a
      // directory, which open_dir checks.
      if (auto fd = open_dir(path, false, path); !fd) return fd.error();
    }
    directories_.emplace_back(path, perm);
    ++stats_.directories;
    return {};
  }

  result<void> regular_file(const std::string& path, mode_t perm, struct archive* a,
                            struct archive_entry* e) {
    auto p = locate(path);
    if (!p) return p.error();
    unique_fd fd(::openat(p->dir.get(), p->name.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {
      if (errno == EEXIST) return refused(path, "its name is taken by an earlier entry");
      return io_failure(path, "create", errno);
    }
    std::uint64_t end = 0;
    for (;;) {
      const void* block = nullptr;
      std::size_t size = 0;
      la_int64_t offset = 0;
      const int r = archive_read_data_block(a, &block, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (!good(r)) {
        const char* msg = archive_error_string(a);
        return error(errc::invalid_argument, entry_label(path) + ": cannot read its data: " +
                                                 (msg != nullptr ? msg : "libarchive error"));
      }
      const auto* bytes = static_cast<const char*>(block);
      std::size_t done = 0;
      while (done < size) {
        const ssize_t n = ::pwrite(fd.get(), bytes + done, size - done,
                                   static_cast<off_t>(offset + static_cast<la_int64_t>(done)));
        if (n < 0) {
          if (errno == EINTR) continue;
          return io_failure(path, "write", errno);
        }
        done += static_cast<std::size_t>(n);
      }
      end = std::max<std::uint64_t>(end, static_cast<std::uint64_t>(offset) + size);
      stats_.bytes += size;
    }
    // A sparse file may end in a hole.
    const auto size = static_cast<std::uint64_t>(archive_entry_size(e));
    if (end < size && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
      return io_failure(path, "truncate", errno);
    }
    if (::fchmod(fd.get(), perm) != 0) return io_failure(path, "chmod", errno);
    ++stats_.files;
    return {};
  }

  result<void> symlink(const std::string& path, struct archive_entry* e) {
    const char* target = text_of(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
    if (target == nullptr || *target == '\0') return refused(path, "a symlink without a target");
    if (!stays_inside(path, target)) {
      return refused(
          path, "a symlink to " + quote_for_message(target) + ", which is outside the directory");
    }
    auto p = locate(path);
    if (!p) return p.error();
    if (::symlinkat(target, p->dir.get(), p->name.c_str()) != 0) {
      if (errno == EEXIST) return refused(path, "its name is taken by an earlier entry");
      return io_failure(path, "symlink", errno);
    }
    symlinks_.push_back(path);
    ++stats_.symlinks;
    return {};
  }

  int root_fd_;
  std::unordered_set<std::string> seen_;
  std::vector<std::string> symlinks_;
  std::vector<std::pair<std::string, mode_t>> directories_;
  tree_stats stats_;
};

}  // namespace

result<tree_stats> unpack_tree(const std::filesystem::path& archive,
                               const std::filesystem::path& dir) {
  auto root = detail::open_empty_dir(dir, "source: unpack into " + quote_for_message(dir.string()));
  if (!root) return root.error();
  std::unique_ptr<struct archive, reader_deleter> a(archive_read_new());
  if (!a) return error(errc::io_error, "source: libarchive: out of memory");
  archive_read_support_filter_zstd(a.get());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_format_tar(a.get());
  const std::string label = "source: archive " + quote_for_message(archive.string());
  if (archive_read_open_filename(a.get(), archive.c_str(), kReadBlock) != ARCHIVE_OK) {
    const int err = archive_errno(a.get());
    return error(err == ENOENT ? errc::not_found : errc::invalid_argument,
                 label + ": " + archive_error_string(a.get()));
  }
  tree_unpacker unpacker(root->get());
  for (;;) {
    struct archive_entry* e = nullptr;
    const int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (!good(r)) {
      return error(errc::invalid_argument,
                   label + ": not a valid tar: " + archive_error_string(a.get()));
    }
    if (auto w = unpacker.write(a.get(), e); !w) return w.error();
  }
  if (auto f = unpacker.finish(); !f) return f.error();
  return unpacker.stats();
}

}  // namespace pantry::orchestrator::coordinator
