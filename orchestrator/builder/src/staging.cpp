// COPY and ADD staging: the tree a step's layer holds, written over the stage's file system as
// BuildKit's copy writes into it. See copy.h.

#include "c_locale.h"
#include "lexical.h"
#include "pantry/orchestrator/builder/copy.h"
#include "pantry/orchestrator/runner/fd.h"
#include "root_path.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using detail::io_failure;
using detail::join_path;
using detail::parent_path;
using detail::quote;

constexpr std::size_t kCopyBlock = std::size_t{256} << 10;

struct archive_deleter {
  void operator()(struct archive* a) const noexcept { archive_read_free(a); }
};
using archive_ptr = std::unique_ptr<struct archive, archive_deleter>;

// A tar reader of any compression libarchive knows (docker's: gzip, bzip2, xz, zstd, none).
result<archive_ptr> open_tar(const std::filesystem::path& file) {
  archive_ptr a(archive_read_new());
  if (!a) return error(errc::io_error, "libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK) {
    return error(errc::io_error,
                 "cannot read " + quote(file.string()) + ": " + archive_error_string(a.get()));
  }
  return a;
}

// True iff `file` is a tar archive (compressed or not) with at least one entry, the test docker
// applies to ADD's sources (a tar header must read).
bool is_archive(const std::filesystem::path& file) {
  auto a = open_tar(file);
  if (!a) return false;
  struct archive_entry* e = nullptr;
  const int r = archive_read_next_header(a->get(), &e);
  return r == ARCHIVE_OK || r == ARCHIVE_WARN;
}

// A name of an archive entry: as stored (raw bytes, under the C locale), else its UTF-8 form (a pax
// name libarchive could not convert to the C locale), which on Linux is the name's bytes too.
const char* name_of(const char* raw, const char* utf8) {
  return raw != nullptr ? raw : utf8;
}

// "/rel" for messages.
std::string in_image(const std::string& rel) {
  return quote("/" + rel);
}

// What to write at one path of the staging tree.
struct new_file {
  file_type type = file_type::regular;
  std::uint32_t mode = 0;  // permission bits
  owner own;
  std::string link_target;  // symlink
  std::uint32_t device_major = 0;
  std::uint32_t device_minor = 0;
  std::string what;  // the source, for messages
};

// Writes a regular file's bytes to `fd`.
using content_writer = std::function<std::optional<error>(int fd)>;

class stager {
 public:
  stager(const copy_destination& destination, const std::filesystem::path& lower,
         const std::filesystem::path& staging)
      : destination_(destination),
        lower_(lower),
        staging_(staging),
        staged_(detail::disk_view(staging)) {
    if (!lower_.empty()) below_ = detail::disk_view(lower_);
    view_.lstat = [this](const std::string& rel) { return lstat(rel); };
    view_.read_link = [this](const std::string& rel) -> result<std::string> {
      auto st = staged_.lstat(rel);
      if (!st) return st.error();
      if (*st || lower_.empty()) return staged_.read_link(rel);
      return below_.read_link(rel);
    };
  }

  std::optional<error> copy(const copy_sources& sources) {
    if (sources.items.size() > 1 && !destination_.directory) {
      return error(errc::invalid_argument,
                   "with more than one source file (" + std::to_string(sources.items.size()) +
                       "), the destination must be a directory and end with a / (" +
                       quote(destination_.path) + " does not)");
    }
    auto dest = detail::resolve_in_root(view_, destination_.path, true);
    if (!dest) return dest.error();
    for (const auto& item : sources.items) {
      if (auto e = copy_item(item, *dest)) return e;
    }
    return std::nullopt;
  }

 private:
  // The file at `rel` as the step sees it: the files staged so far over the stage's own.
  result<std::optional<struct stat>> lstat(const std::string& rel) const {
    auto st = staged_.lstat(rel);
    if (!st || *st || lower_.empty()) return st;
    // A file staged where `rel` has a parent hides the stage's `rel`.
    const std::filesystem::path p = staging_ / rel;
    struct stat ignored {};
    if (::lstat(p.c_str(), &ignored) != 0 && errno == ENOTDIR) return std::optional<struct stat>();
    return below_.lstat(rel);
  }

  bool staged(const std::string& rel) const {
    struct stat st {};
    return ::lstat(disk(rel).c_str(), &st) == 0;
  }

  std::filesystem::path disk(const std::string& rel) const {
    return rel.empty() ? staging_ : staging_ / rel;
  }

  owner created_owner() const { return destination_.chown.value_or(owner{}); }

  // Sets the owner (only when it differs, so that an unprivileged caller can stage its own files)
  // and then the mode (chown clears setuid and setgid bits) of the staged `rel`.
  std::optional<error> set_metadata(const std::string& rel, owner own, std::uint32_t mode,
                                    bool link) {
    const std::filesystem::path p = disk(rel);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return io_failure("cannot stat", p, errno);
    if ((st.st_uid != own.uid || st.st_gid != own.gid) &&
        ::lchown(p.c_str(), own.uid, own.gid) != 0) {
      return io_failure(
          "cannot set the owner " + std::to_string(own.uid) + ":" + std::to_string(own.gid) + " of",
          p, errno);
    }
    if (!link && ::chmod(p.c_str(), mode & 07777) != 0) {
      return io_failure("cannot set the mode of", p, errno);
    }
    return std::nullopt;
  }

  // BuildKit's MkdirAll: every directory of `rel` (a resolved path) staged, the existing ones
  // with their metadata in the stage, missing ones 0755 owned by `made` (the --chown owner).
  std::optional<error> ensure_dir(const std::string& rel) {
    return ensure_dir(rel, created_owner());
  }

  std::optional<error> ensure_dir(const std::string& rel, owner made) {
    std::string current;
    for (const auto& c : detail::split_path(rel)) {
      current = join_path(current, c);
      auto here = staged_.lstat(current);
      if (!here) return here.error();
      if (*here) {
        if (!S_ISDIR((*here)->st_mode)) {
          return error(errc::invalid_argument, "cannot make the directory " + in_image(current) +
                                                   ": this step copies a file there");
        }
        continue;
      }
      std::optional<struct stat> existing;
      if (!lower_.empty()) {
        auto st = below_.lstat(current);
        if (!st) return st.error();
        existing = *st;
      }
      if (existing && !S_ISDIR(existing->st_mode)) {
        return error(errc::invalid_argument,
                     "cannot make the directory " + in_image(current) +
                         ": it is a file in the image (a parent of the destination)");
      }
      if (::mkdir(disk(current).c_str(), 0700) != 0) {
        return io_failure("cannot make the directory", disk(current), errno);
      }
      const owner own = existing ? owner{existing->st_uid, existing->st_gid} : made;
      const std::uint32_t mode = existing ? (existing->st_mode & 07777) : 0755;
      if (auto e = set_metadata(current, own, mode, false)) return e;
    }
    return std::nullopt;
  }

  // Writes `f` at `rel`, whose parent is staged: a directory over a directory keeps what is
  // staged below it; anything else replaces a staged or stage file, never a directory.
  std::optional<error> place(const std::string& rel, const new_file& f,
                             const content_writer& content) {
    auto existing = lstat(rel);
    if (!existing) return existing.error();
    const bool is_dir = f.type == file_type::directory;
    if (*existing && is_dir != S_ISDIR((*existing)->st_mode)) {
      return error(errc::invalid_argument,
                   "cannot copy " + quote(f.what) + " to " + in_image(rel) + ": " +
                       (is_dir ? "a file is there, not a directory"
                               : "a directory is there (a file cannot replace it)"));
    }
    const std::filesystem::path p = disk(rel);
    if (is_dir) {
      if (!staged(rel) && ::mkdir(p.c_str(), 0700) != 0) {
        return io_failure("cannot make the directory", p, errno);
      }
      return set_metadata(rel, f.own, f.mode, false);
    }
    if (staged(rel) && ::unlink(p.c_str()) != 0) return io_failure("cannot replace", p, errno);
    switch (f.type) {
      case file_type::regular: {
        runner::unique_fd out(
            ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!out) return io_failure("cannot create", p, errno);
        if (auto e = content(out.get())) return e;
        break;
      }
      case file_type::symlink:
        if (::symlink(f.link_target.c_str(), p.c_str()) != 0) {
          return io_failure("cannot make the link", p, errno);
        }
        return set_metadata(rel, f.own, 0, true);
      case file_type::fifo:
        if (::mkfifo(p.c_str(), 0600) != 0) return io_failure("cannot make the FIFO", p, errno);
        break;
      case file_type::char_device:
      case file_type::block_device: {
        const mode_t kind = f.type == file_type::char_device ? S_IFCHR : S_IFBLK;
        if (::mknod(p.c_str(), kind | 0600, makedev(f.device_major, f.device_minor)) != 0) {
          return io_failure("cannot make the device", p, errno);
        }
        break;
      }
      default:
        return error(errc::invalid_argument,
                     "cannot copy " + quote(f.what) + ": a socket or hard link is no file to copy");
    }
    return set_metadata(rel, f.own, f.mode, false);
  }

  new_file describe(const source_entry& e) const {
    new_file f;
    f.type = e.file.type;
    f.mode = e.file.type == file_type::symlink ? 0 : destination_.chmod.value_or(e.file.mode);
    f.own = destination_.chown.value_or(owner{e.file.uid, e.file.gid});
    f.link_target = e.file.link_target;
    f.device_major = e.file.device_major;
    f.device_minor = e.file.device_minor;
    f.what = e.file.path;
    return f;
  }

  // Copies the file `e` into `fd`, checking that it still has the bytes it was keyed with.
  std::optional<error> copy_bytes(const source_entry& e, int fd) {
    cache::hasher h;
    auto copy = [&](std::span<const std::byte> block) {
      h.update(block);
      return write_all(fd, block.data(), block.size(), e.real);
    };
    if (auto err = detail::read_blocks(e.real, buffer_, copy)) return err;
    if (h.finish() != e.file.content) {
      return error(errc::corrupt, quote(e.file.path) +
                                      " changed while the build read it: build again once it "
                                      "stays the same");
    }
    return std::nullopt;
  }

  static std::optional<error> write_all(int fd, const void* data, std::size_t size,
                                        const std::filesystem::path& what) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_failure("cannot write the copy of", what, errno);
      }
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return std::nullopt;
  }

  std::optional<error> copy_item(const source_item& item, const std::string& dest) {
    const source_entry& top = item.entries.front();
    if (top.file.type == file_type::directory) {
      // The directory's contents go into the destination. Written as a directory ("dir/"), it is
      // made first (0755, as MkdirAll makes it); else a missing one takes the source's metadata.
      if (destination_.directory) {
        if (auto e = ensure_dir(dest)) return e;
      }
      auto existing = lstat(dest);
      if (!existing) return existing.error();
      if (*existing) {
        if (!S_ISDIR((*existing)->st_mode)) {
          return error(errc::invalid_argument, "cannot copy the directory " + quote(item.named) +
                                                   " to " + in_image(dest) +
                                                   ": a file is there, not a directory");
        }
        if (auto e = ensure_dir(dest)) return e;
      } else {
        if (auto e = ensure_dir(parent_path(dest))) return e;
        if (auto e = place(dest, describe(top), {})) return e;
      }
      for (std::size_t i = 1; i < item.entries.size(); ++i) {
        const source_entry& e = item.entries[i];
        const content_writer bytes = [&](int fd) { return copy_bytes(e, fd); };
        if (auto err = place(join_path(dest, e.rel), describe(e), bytes)) return err;
      }
      return std::nullopt;
    }
    if (destination_.unpack && top.file.type == file_type::regular && is_archive(top.real)) {
      if (auto e = ensure_dir(dest)) return e;
      return unpack(top, dest);
    }
    std::string target = dest;
    bool into = destination_.directory;
    if (!into) {
      auto existing = lstat(dest);
      if (!existing) return existing.error();
      into = *existing && S_ISDIR((*existing)->st_mode);
    }
    if (into) {
      if (auto e = ensure_dir(dest)) return e;
      target = join_path(dest, item.name);
    } else if (auto e = ensure_dir(parent_path(dest))) {
      return e;
    }
    const content_writer bytes = [&](int fd) { return copy_bytes(top, fd); };
    return place(target, describe(top), bytes);
  }

  // ADD of an archive: its entries below `dest`.
  std::optional<error> unpack(const source_entry& archive_file, const std::string& dest) {
    const detail::c_locale_scope locale;
    auto a = open_tar(archive_file.real);
    if (!a) return a.error();
    const std::string& name = archive_file.file.path;
    auto bad = [&](const std::string& why) {
      return error(errc::invalid_argument, "archive " + quote(name) + ": " + why);
    };
    struct archive_entry* entry = nullptr;
    for (;;) {
      const int r = archive_read_next_header(a->get(), &entry);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        return bad(std::string("cannot read it: ") + archive_error_string(a->get()));
      }
      const char* raw = name_of(archive_entry_pathname(entry), archive_entry_pathname_utf8(entry));
      if (raw == nullptr) return bad("an entry has no name");
      auto rel = entry_path(raw);
      if (!rel) return bad(quote(raw) + " leaves the destination (a .. path)");
      if (rel->empty()) continue;  // the archive's root: the destination keeps its metadata
      auto parent = detail::resolve_in_root(view_, join_path(dest, parent_path(*rel)), true);
      if (!parent) return parent.error();
      // Parents the archive lacks are made root's, as docker's untar makes them.
      if (auto e = ensure_dir(*parent, owner{})) return e;
      const std::string base = detail::split_path(*rel).back();
      const std::string target = join_path(*parent, base);

      if (const char* link =
              name_of(archive_entry_hardlink(entry), archive_entry_hardlink_utf8(entry));
          link != nullptr) {
        auto to = entry_path(link);
        if (!to || to->empty()) return bad(quote(raw) + ": a hard link out of the archive");
        auto linked = detail::resolve_in_root(view_, join_path(dest, *to), false);
        if (!linked) return linked.error();
        if (!staged(*linked)) {
          return bad(quote(raw) + ": a hard link to " + quote(link) +
                     ", which the archive does not hold before it");
        }
        if (staged(target) && ::unlink(disk(target).c_str()) != 0) {
          return io_failure("cannot replace", disk(target), errno);
        }
        if (::link(disk(*linked).c_str(), disk(target).c_str()) != 0) {
          return io_failure("cannot make the hard link", disk(target), errno);
        }
        continue;
      }
      new_file f;
      const mode_t type = archive_entry_filetype(entry);
      switch (type) {
        case AE_IFDIR:
          f.type = file_type::directory;
          break;
        case AE_IFLNK:
          f.type = file_type::symlink;
          break;
        case AE_IFIFO:
          f.type = file_type::fifo;
          break;
        case AE_IFCHR:
          f.type = file_type::char_device;
          break;
        case AE_IFBLK:
          f.type = file_type::block_device;
          break;
        case AE_IFREG:
          f.type = file_type::regular;
          break;
        default:
          return bad(quote(raw) + ": an entry of a type that cannot be unpacked");
      }
      // --chmod is not applied to what an archive holds (BuildKit passes no mode to untar).
      f.mode = f.type == file_type::symlink ? 0 : (archive_entry_perm(entry) & 07777);
      f.own =
          destination_.chown.value_or(owner{static_cast<std::uint32_t>(archive_entry_uid(entry)),
                                            static_cast<std::uint32_t>(archive_entry_gid(entry))});
      if (const char* s =
              name_of(archive_entry_symlink(entry), archive_entry_symlink_utf8(entry))) {
        f.link_target = s;
      }
      f.device_major = archive_entry_rdevmajor(entry);
      f.device_minor = archive_entry_rdevminor(entry);
      f.what = name + ":" + raw;
      const content_writer bytes = [&](int fd) -> std::optional<error> {
        if (buffer_.empty()) buffer_.resize(kCopyBlock);
        for (;;) {
          const la_ssize_t n = archive_read_data(a->get(), buffer_.data(), buffer_.size());
          if (n < 0) return bad(std::string("cannot read it: ") + archive_error_string(a->get()));
          if (n == 0) return std::nullopt;
          if (auto e = write_all(fd, buffer_.data(), static_cast<std::size_t>(n), disk(target))) {
            return e;
          }
        }
      };
      if (auto e = place(target, f, bytes)) return e;
    }
    return std::nullopt;
  }

  // An entry's name as a path below the destination ("" for the archive's root), or nullopt when
  // it leaves it. A leading '/' is dropped, as docker drops it.
  static std::optional<std::string> entry_path(std::string_view raw) {
    std::string cleaned = clean_path(raw);
    while (cleaned.starts_with('/'))
      cleaned.erase(0, 1);
    if (cleaned == ".." || cleaned.starts_with("../")) return std::nullopt;
    if (cleaned == "." || cleaned.empty()) return std::string();
    return cleaned;
  }

  const copy_destination& destination_;
  std::filesystem::path lower_;
  std::filesystem::path staging_;
  detail::root_view staged_;
  detail::root_view below_;
  detail::root_view view_;
  std::vector<std::byte> buffer_;
};

}  // namespace

result<void> stage_copy(const copy_sources& sources, const copy_destination& destination,
                        const std::filesystem::path& lower, const std::filesystem::path& staging) {
  stager s(destination, lower, staging);
  if (auto e = s.copy(sources)) return *e;
  return {};
}

}  // namespace pantry::orchestrator::builder
