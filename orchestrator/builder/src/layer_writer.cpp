#include "pantry/orchestrator/builder/layer_writer.h"

#include "c_locale.h"
#include "lexical.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using detail::c_locale_scope;
using detail::quote;

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kOpaqueXattr = "trusted.overlay.opaque";
// Large enough that a big file costs few read(2) calls, small enough to live on the heap once.
constexpr std::size_t kReadBlock = std::size_t{256} << 10;

// Whether an extended attribute goes into the layer (see the header for why these do not).
bool keep_xattr(std::string_view name) {
  return !name.starts_with("trusted.overlay.") && name != "security.selinux";
}

struct archive_deleter {
  void operator()(struct archive* a) const noexcept { archive_write_free(a); }
};
using archive_ptr = std::unique_ptr<struct archive, archive_deleter>;

struct entry_deleter {
  void operator()(struct archive_entry* e) const noexcept { archive_entry_free(e); }
};
using entry_ptr = std::unique_ptr<struct archive_entry, entry_deleter>;

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

// The tar archive, the compressor behind it and the hashes of both streams. libarchive's tar
// writer hands the tar's bytes to on_tar, which hashes them (the diff ID) and feeds them to a
// second archive of the "raw" format (no framing, one entry) whose filter compresses them and
// hands the result to on_blob (the digest, the size, the sink).
class layer_stream {
 public:
  layer_stream(const layer_options& options, const layer_sink& sink)
      : options_(options), sink_(sink) {}

  layer_stream(const layer_stream&) = delete;
  layer_stream& operator=(const layer_stream&) = delete;

  ~layer_stream() {
    // Freeing an archive that was not closed closes it, which would write its trailer: an
    // abandoned layer must not reach the sink.
    abandoned_ = true;
  }

  std::optional<error> open() {
    if (options_.compression != layer_compression::none) {
      blob_.reset(archive_write_new());
      if (!blob_) return error(errc::io_error, "layer: libarchive: out of memory");
      archive_write_set_format_raw(blob_.get());
      const bool gzip = options_.compression == layer_compression::gzip;
      const char* filter = gzip ? "gzip" : "zstd";
      int r = gzip ? archive_write_add_filter_gzip(blob_.get())
                   : archive_write_add_filter_zstd(blob_.get());
      // No timestamp: the gzip header's mtime is 0, not the time of the build.
      if (r == ARCHIVE_OK && gzip) {
        r = archive_write_set_filter_option(blob_.get(), "gzip", "timestamp", nullptr);
      }
      if (r == ARCHIVE_OK && options_.compression_level != 0) {
        const std::string level = std::to_string(options_.compression_level);
        r = archive_write_set_filter_option(blob_.get(), filter, "compression-level",
                                            level.c_str());
      }
      // Unblocked: no padding after the compressed stream.
      if (r == ARCHIVE_OK) r = archive_write_set_bytes_per_block(blob_.get(), 0);
      if (r == ARCHIVE_OK) r = archive_write_open(blob_.get(), this, nullptr, on_blob, nullptr);
      if (r != ARCHIVE_OK) return failure(blob_.get(), "setting up the compressor");
      entry_ptr raw(archive_entry_new());
      archive_entry_set_pathname(raw.get(), "layer.tar");
      archive_entry_set_filetype(raw.get(), AE_IFREG);
      if (archive_write_header(blob_.get(), raw.get()) != ARCHIVE_OK) {
        return failure(blob_.get(), "setting up the compressor");
      }
    }
    tar_.reset(archive_write_new());
    if (!tar_) return error(errc::io_error, "layer: libarchive: out of memory");
    int r = archive_write_set_format_pax_restricted(tar_.get());
    // Go's archive/tar (docker, containerd, umoci) reads SCHILY.xattr records only; libarchive
    // would also write each attribute again as LIBARCHIVE.xattr.
    if (r == ARCHIVE_OK) {
      r = archive_write_set_format_option(tar_.get(), "pax", "xattrheader", "SCHILY");
    }
    // Unblocked: the tar ends after its two zero blocks, as Go's writer ends it, not padded to
    // 10 KiB.
    if (r == ARCHIVE_OK) r = archive_write_set_bytes_per_block(tar_.get(), 0);
    if (r == ARCHIVE_OK) r = archive_write_open(tar_.get(), this, nullptr, on_tar, nullptr);
    if (r != ARCHIVE_OK) return failure(tar_.get(), "setting up the tar writer");
    return std::nullopt;
  }

  struct archive* tar() const noexcept {
    return tar_.get();
  }

  // The error of the last failed libarchive call on `a`: the sink's own when it failed.
  error failure(struct archive* a, std::string_view what) const {
    if (sink_failure_) return *sink_failure_;
    const char* reason = a != nullptr ? archive_error_string(a) : nullptr;
    return error(errc::io_error, "layer: " + std::string(what) +
                                     ": libarchive: " + (reason ? reason : "unknown error"));
  }

  // Finishes both streams and returns what was written.
  result<layer_info> close(std::uint64_t entries) {
    if (archive_write_close(tar_.get()) != ARCHIVE_OK) return failure(tar_.get(), "ending the tar");
    if (blob_ && archive_write_close(blob_.get()) != ARCHIVE_OK) {
      return failure(blob_.get(), "ending the compressed stream");
    }
    layer_info info;
    info.diff_id = diff_.finish();
    info.digest = blob_hash_.finish();
    info.size = size_;
    info.tar_size = tar_size_;
    info.entries = entries;
    info.media_type = std::string(layer_media_type(options_.compression));
    return info;
  }

 private:
  static la_ssize_t on_tar(struct archive*, void* self, const void* buffer, size_t n) {
    auto* s = static_cast<layer_stream*>(self);
    if (s->abandoned_) return -1;
    const std::span<const std::byte> bytes(static_cast<const std::byte*>(buffer), n);
    s->diff_.update(bytes);
    s->tar_size_ += n;
    if (!s->blob_) return s->deliver(bytes) ? static_cast<la_ssize_t>(n) : -1;
    const la_ssize_t written = archive_write_data(s->blob_.get(), buffer, n);
    return written == static_cast<la_ssize_t>(n) ? written : -1;
  }

  static la_ssize_t on_blob(struct archive*, void* self, const void* buffer, size_t n) {
    auto* s = static_cast<layer_stream*>(self);
    if (s->abandoned_) return -1;
    return s->deliver({static_cast<const std::byte*>(buffer), n}) ? static_cast<la_ssize_t>(n) : -1;
  }

  bool deliver(std::span<const std::byte> bytes) {
    blob_hash_.update(bytes);
    size_ += bytes.size();
    auto r = sink_(bytes);
    if (!r) {
      sink_failure_ = r.error();
      return false;
    }
    return true;
  }

  const layer_options& options_;
  const layer_sink& sink_;
  // Declared before the archives: freeing an archive may still call back into this object.
  cache::hasher diff_;
  cache::hasher blob_hash_;
  std::uint64_t tar_size_ = 0;
  std::uint64_t size_ = 0;
  std::optional<error> sink_failure_;
  bool abandoned_ = false;
  archive_ptr blob_;  // null without compression
  archive_ptr tar_;   // freed first (declared last): its close may write into blob_
};

struct xattr {
  std::string name;
  std::string value;
};

// What a file's extended attributes say.
struct attributes {
  std::vector<xattr> kept;  // those that go into the layer, sorted by name
  bool opaque = false;      // overlayfs's trusted.overlay.opaque="y"
};

// One file of a directory, as the tar will name it.
struct child {
  std::string name;      // on disk
  std::string tar_name;  // in the layer: the name, or .wh.NAME for a whiteout
  int rank = 2;          // 1 for whiteouts, 2 for the rest (the opaque marker is 0)
  struct stat st {};
};

bool is_whiteout(const struct stat& st) noexcept {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

class tree_writer {
 public:
  tree_writer(std::filesystem::path root, const layer_options& options, layer_stream& stream)
      : root_(std::move(root)), options_(options), stream_(stream) {}

  std::optional<error> write() {
    struct stat st {};
    if (::lstat(root_.c_str(), &st) != 0) return io_failure("", "cannot read it", errno);
    if (!S_ISDIR(st.st_mode)) {
      return error(errc::invalid_argument,
                   "layer of " + quote(root_.string()) + ": not a directory");
    }
    auto attrs = read_xattrs("");
    if (!attrs) return attrs.error();
    if (attrs->opaque) {
      if (auto e = write_marker(std::string(kOpaqueMarker), st, st.st_mode & 0777)) return e;
    }
    return write_children("");
  }

  std::uint64_t entries() const noexcept { return entries_; }

 private:
  std::string disk_path(const std::string& rel) const {
    return rel.empty() ? root_.string() : (root_ / rel).string();
  }

  error io_failure(const std::string& rel, std::string_view what, int err) const {
    return error(errc::io_error, "layer of " + quote(root_.string()) + ": " +
                                     (rel.empty() ? std::string("the directory") : quote(rel)) +
                                     ": " + std::string(what) + ": " + std::strerror(err));
  }

  std::int64_t clamp(const struct stat& st) const noexcept {
    return std::min<std::int64_t>(st.st_mtim.tv_sec, options_.source_date_epoch);
  }

  // The directory's children in the layer's order. `rel` and the children's paths are the names
  // on disk; only whiteouts are renamed.
  result<std::vector<child>> list(const std::string& rel) const {
    const std::string path = disk_path(rel);
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return io_failure(rel, "cannot open the directory", errno);
    std::vector<child> out;
    int read_error = 0;
    for (;;) {
      errno = 0;  // readdir's end and its failure both return null
      const dirent* e = ::readdir(d);
      if (e == nullptr) {
        read_error = errno;
        break;
      }
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      child c;
      c.name = name;
      out.push_back(std::move(c));
    }
    ::closedir(d);
    if (read_error != 0) return io_failure(rel, "cannot read the directory", read_error);

    std::vector<child> kept;
    kept.reserve(out.size());
    for (auto& c : out) {
      const std::string child_rel = rel.empty() ? c.name : rel + "/" + c.name;
      if (::lstat((path + "/" + c.name).c_str(), &c.st) != 0) {
        return io_failure(child_rel, "cannot stat it", errno);
      }
      if (S_ISSOCK(c.st.st_mode)) continue;
      if (c.name.starts_with(kWhiteoutPrefix)) {
        return error(errc::invalid_argument,
                     "layer of " + quote(root_.string()) + ": " + quote(child_rel) +
                         ": a name starting with .wh. cannot be in a layer (it means a deletion "
                         "there): rename or remove the file");
      }
      if (is_whiteout(c.st)) {
        c.tar_name = std::string(kWhiteoutPrefix) + c.name;
        c.rank = 1;
      } else {
        c.tar_name = c.name;
      }
      kept.push_back(std::move(c));
    }
    std::sort(kept.begin(), kept.end(), [](const child& a, const child& b) {
      return a.rank != b.rank ? a.rank < b.rank : a.tar_name < b.tar_name;
    });
    return kept;
  }

  std::optional<error> write_children(const std::string& rel) {
    auto children = list(rel);
    if (!children) return children.error();
    for (const child& c : *children) {
      const std::string child_rel = rel.empty() ? c.tar_name : rel + "/" + c.tar_name;
      if (c.rank == 1) {
        if (auto e = write_marker(child_rel, c.st, 0600)) return e;
        continue;
      }
      auto attrs = read_xattrs(child_rel);
      if (!attrs) return attrs.error();
      if (auto e = write_entry(child_rel, c.st, attrs->kept)) return e;
      if (S_ISDIR(c.st.st_mode)) {
        if (attrs->opaque) {
          if (auto e = write_marker(child_rel + "/" + std::string(kOpaqueMarker), c.st,
                                    c.st.st_mode & 0777)) {
            return e;
          }
        }
        if (auto e = write_children(child_rel)) return e;
      }
    }
    return std::nullopt;
  }

  // The extended attributes of `rel`, the kept ones sorted by name (the file system lists them
  // in any order).
  result<attributes> read_xattrs(const std::string& rel) const {
    const std::string path = disk_path(rel);
    attributes out;
    std::string names;
    for (;;) {
      const ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
      if (size < 0) {
        if (errno == ENOTSUP) return out;
        return io_failure(rel, "cannot list its extended attributes", errno);
      }
      names.resize(static_cast<std::size_t>(size));
      const ssize_t got = ::llistxattr(path.c_str(), names.data(), names.size());
      if (got >= 0) {
        names.resize(static_cast<std::size_t>(got));
        break;
      }
      if (errno != ERANGE) return io_failure(rel, "cannot list its extended attributes", errno);
    }
    for (std::size_t start = 0; start < names.size();) {
      const std::size_t end = names.find('\0', start);
      const std::string name = names.substr(start, end - start);
      start = end == std::string::npos ? names.size() : end + 1;
      const bool opaque_mark = name == kOpaqueXattr;
      if (name.empty() || (!keep_xattr(name) && !opaque_mark)) continue;
      std::string value;
      for (;;) {
        const ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
        if (size < 0) {
          if (errno == ENODATA) break;
          return io_failure(rel, "cannot read its extended attribute " + name, errno);
        }
        value.resize(static_cast<std::size_t>(size));
        const ssize_t got = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
        if (got >= 0) {
          value.resize(static_cast<std::size_t>(got));
          break;
        }
        if (errno != ERANGE) {
          return io_failure(rel, "cannot read its extended attribute " + name, errno);
        }
      }
      if (opaque_mark) {
        out.opaque = value == "y";
      } else {
        out.kept.push_back({name, std::move(value)});
      }
    }
    std::sort(out.kept.begin(), out.kept.end(),
              [](const xattr& a, const xattr& b) { return a.name < b.name; });
    return out;
  }

  std::optional<error> write_header(const std::string& rel, struct archive_entry* e) {
    // ARCHIVE_WARN: a name the C locale cannot convert went out as bytes (hdrcharset=BINARY),
    // which is what this writer wants.
    if (archive_write_header(stream_.tar(), e) < ARCHIVE_WARN) {
      return stream_.failure(stream_.tar(), "writing " + quote(rel));
    }
    ++entries_;
    return std::nullopt;
  }

  // An empty regular file that only marks something: a whiteout or an opaque directory.
  std::optional<error> write_marker(const std::string& rel, const struct stat& st,
                                    mode_t permissions) {
    entry_ptr e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), rel.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), permissions);
    archive_entry_set_uid(e.get(), st.st_uid);
    archive_entry_set_gid(e.get(), st.st_gid);
    archive_entry_set_mtime(e.get(), clamp(st), 0);
    archive_entry_set_size(e.get(), 0);
    return write_header(rel, e.get());
  }

  std::optional<error> write_entry(const std::string& rel, const struct stat& st,
                                   const std::vector<xattr>& attrs) {
    entry_ptr e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), rel.c_str());
    archive_entry_set_mode(e.get(), (st.st_mode & S_IFMT) | (st.st_mode & 07777));
    archive_entry_set_uid(e.get(), st.st_uid);
    archive_entry_set_gid(e.get(), st.st_gid);
    archive_entry_set_mtime(e.get(), clamp(st), 0);
    archive_entry_set_size(e.get(), 0);

    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      const auto [it, first] = links_.try_emplace({st.st_dev, st.st_ino}, rel);
      if (!first) {
        archive_entry_copy_hardlink(e.get(), it->second.c_str());
        return write_header(rel, e.get());
      }
    }
    if (S_ISLNK(st.st_mode)) {
      auto target = read_link(rel, st);
      if (!target) return target.error();
      archive_entry_copy_symlink(e.get(), target->c_str());
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      archive_entry_set_rdevmajor(e.get(), major(st.st_rdev));
      archive_entry_set_rdevminor(e.get(), minor(st.st_rdev));
    } else if (S_ISREG(st.st_mode)) {
      archive_entry_set_size(e.get(), st.st_size);
    }
    for (const auto& a : attrs)
      archive_entry_xattr_add_entry(e.get(), a.name.c_str(), a.value.data(), a.value.size());
    if (auto err = write_header(rel, e.get())) return err;
    if (S_ISREG(st.st_mode)) return write_data(rel, st);
    return std::nullopt;
  }

  result<std::string> read_link(const std::string& rel, const struct stat& st) const {
    std::string target(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 255) + 1, '\0');
    for (;;) {
      const ssize_t n = ::readlink(disk_path(rel).c_str(), target.data(), target.size());
      if (n < 0) return io_failure(rel, "cannot read the link", errno);
      if (static_cast<std::size_t>(n) < target.size()) {
        target.resize(static_cast<std::size_t>(n));
        return target;
      }
      target.resize(target.size() * 2);
    }
  }

  std::optional<error> write_data(const std::string& rel, const struct stat& st) {
    fd_closer file{::open(disk_path(rel).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
    if (file.fd < 0) return io_failure(rel, "cannot open it", errno);
    if (buffer_.empty()) buffer_.resize(kReadBlock);
    auto remaining = static_cast<std::uint64_t>(st.st_size);
    for (;;) {
      // One byte more than expected, to notice a file that grew.
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(remaining + 1, buffer_.size()));
      const ssize_t n = ::read(file.fd, buffer_.data(), want);
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_failure(rel, "cannot read it", errno);
      }
      if (n == 0) break;
      if (static_cast<std::uint64_t>(n) > remaining) {
        return error(errc::io_error, "layer of " + quote(root_.string()) + ": " + quote(rel) +
                                         ": the file grew while it was written");
      }
      remaining -= static_cast<std::uint64_t>(n);
      const auto size = static_cast<std::size_t>(n);
      if (archive_write_data(stream_.tar(), buffer_.data(), size) !=
          static_cast<la_ssize_t>(size)) {
        return stream_.failure(stream_.tar(), "writing " + quote(rel));
      }
    }
    if (remaining != 0) {
      return error(errc::io_error, "layer of " + quote(root_.string()) + ": " + quote(rel) +
                                       ": the file shrank while it was written");
    }
    return std::nullopt;
  }

  std::filesystem::path root_;
  const layer_options& options_;
  layer_stream& stream_;
  std::uint64_t entries_ = 0;
  // The first name of each file with several names, by device and inode.
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
  std::vector<char> buffer_;
};

std::optional<error> check(const layer_options& options) {
  if (options.source_date_epoch < 0 || options.source_date_epoch > kMaxSourceDateEpoch) {
    return error(errc::invalid_argument,
                 "layer: SOURCE_DATE_EPOCH " + std::to_string(options.source_date_epoch) +
                     " is out of range (0 to " + std::to_string(kMaxSourceDateEpoch) + ")");
  }
  const int level = options.compression_level;
  const auto bad_level = [&](std::string_view range) {
    return error(errc::invalid_argument, "layer: compression level " + std::to_string(level) +
                                             " is out of range: " + std::string(range));
  };
  switch (options.compression) {
    case layer_compression::none:
      if (level != 0) return bad_level("an uncompressed layer takes none (0)");
      break;
    case layer_compression::gzip:
      if (level < 0 || level > 9) return bad_level("gzip takes 1 to 9, or 0 for its default");
      break;
    case layer_compression::zstd:
      if (level < 0 || level > 19) return bad_level("zstd takes 1 to 19, or 0 for its default");
      break;
  }
  return std::nullopt;
}

}  // namespace

result<layer_info> write_layer(const std::filesystem::path& dir, const layer_options& options,
                               const layer_sink& sink) {
  if (auto e = check(options)) return *e;
  const c_locale_scope locale;
  if (!locale.ok()) return error(errc::io_error, "layer: cannot create the C locale");
  layer_stream stream(options, sink);
  if (auto e = stream.open()) return *e;
  tree_writer tree(dir, options, stream);
  if (auto e = tree.write()) return *e;
  return stream.close(tree.entries());
}

result<layer_info> write_layer_file(const std::filesystem::path& dir,
                                    const std::filesystem::path& out,
                                    const layer_options& options) {
  fd_closer file{::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (file.fd < 0) {
    return error(errc::io_error,
                 "layer: cannot create " + quote(out.string()) + ": " + std::strerror(errno));
  }
  const layer_sink sink = [&](std::span<const std::byte> piece) -> result<void> {
    while (!piece.empty()) {
      const ssize_t n = ::write(file.fd, piece.data(), piece.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return error(errc::io_error,
                     "layer: cannot write " + quote(out.string()) + ": " + std::strerror(errno));
      }
      piece = piece.subspan(static_cast<std::size_t>(n));
    }
    return {};
  };
  auto info = write_layer(dir, options, sink);
  int close_error = 0;
  if (::close(file.fd) != 0) close_error = errno;
  file.fd = -1;
  if (info && close_error != 0) {
    info = error(errc::io_error,
                 "layer: cannot write " + quote(out.string()) + ": " + std::strerror(close_error));
  }
  if (!info) ::unlink(out.c_str());
  return info;
}

}  // namespace pantry::orchestrator::builder
