#pragma once

// Helpers for the builder's tests that read and write real trees: files with modes and times, and
// layers read back with libarchive (any compression), failing the calling test on errors.

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder::testing_util {

namespace fs = std::filesystem;

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline void write_file(const fs::path& p, std::string_view content, mode_t mode = 0644) {
  std::ofstream(p, std::ios::binary) << content;
  ASSERT_EQ(::chmod(p.c_str(), mode), 0) << p << ": " << std::strerror(errno);
}

inline void set_mtime(const fs::path& p, std::int64_t seconds, long nanoseconds = 0) {
  const timespec times[2] = {{static_cast<time_t>(seconds), nanoseconds},
                             {static_cast<time_t>(seconds), nanoseconds}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << p << ": " << std::strerror(errno);
}

struct tar_entry {
  std::string path;
  mode_t type = 0;
  mode_t perm = 0;
  std::int64_t uid = -1;
  std::int64_t gid = -1;
  std::string uname;  // "" when the entry has none
  std::string gname;
  std::int64_t mtime = -1;
  long mtime_nsec = -1;
  std::int64_t size = -1;
  std::string hardlink;
  std::string symlink;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::map<std::string, std::string> xattrs;
  std::string content;
};

// Reads a layer back with libarchive (any compression).
inline std::vector<tar_entry> read_tar(const fs::path& file) {
  std::vector<tar_entry> out;
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_filename(a, file.c_str(), 1 << 16), ARCHIVE_OK)
      << archive_error_string(a);
  struct archive_entry* e = nullptr;
  int r = 0;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
    tar_entry t;
    t.path = archive_entry_pathname(e);
    t.type = archive_entry_filetype(e);
    t.perm = archive_entry_perm(e);
    t.uid = archive_entry_uid(e);
    t.gid = archive_entry_gid(e);
    t.uname = archive_entry_uname(e) ? archive_entry_uname(e) : "";
    t.gname = archive_entry_gname(e) ? archive_entry_gname(e) : "";
    t.mtime = archive_entry_mtime(e);
    t.mtime_nsec = archive_entry_mtime_nsec(e);
    t.size = archive_entry_size(e);
    t.hardlink = archive_entry_hardlink(e) ? archive_entry_hardlink(e) : "";
    t.symlink = archive_entry_symlink(e) ? archive_entry_symlink(e) : "";
    t.rdev_major = archive_entry_rdevmajor(e);
    t.rdev_minor = archive_entry_rdevminor(e);
    archive_entry_xattr_reset(e);
    const char* name = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
      t.xattrs[name] = std::string(static_cast<const char*>(value), size);
    char buf[4096];
    la_ssize_t n = 0;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
      t.content.append(buf, static_cast<std::size_t>(n));
    out.push_back(std::move(t));
  }
  EXPECT_EQ(r, ARCHIVE_EOF) << archive_error_string(a);
  archive_read_free(a);
  return out;
}

inline std::vector<std::string> paths(const std::vector<tar_entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries)
    out.push_back(e.path);
  return out;
}

inline const tar_entry* find(const std::vector<tar_entry>& entries, std::string_view path) {
  for (const auto& e : entries) {
    if (e.path == path) return &e;
  }
  ADD_FAILURE() << "no entry " << path << " in the layer";
  return nullptr;
}

}  // namespace pantry::orchestrator::builder::testing_util
