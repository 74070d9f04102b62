#pragma once

// Paths inside a root directory, resolved as a process chrooted there would resolve them:
// symbolic links followed, an absolute target and `..` never leaving the root. Shared by COPY's
// source finder (the build context, a materialized stage) and its staging (the stage's file system
// under the step's new files). Private to pantry_builder.

#include "pantry/error.h"

#include <sys/stat.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder::detail {

// The components of a '/'-separated path, without empty and "." ones ("a//./b/" is a, b).
std::vector<std::string> split_path(std::string_view path);

// `dir` + "/" + `name` for paths relative to a root, where "" and "." are the root itself.
std::string join_path(std::string_view dir, std::string_view name);

// The directory part of a relative path: "a/b" -> "a", "a" -> "".
std::string parent_path(std::string_view rel);

// What resolve_in_root() sees of a tree. Paths given to it are relative to the root, with no
// symbolic link above their last component.
struct root_view {
  // The file's lstat, or nullopt when there is none (or it is hidden from this view).
  std::function<result<std::optional<struct stat>>(const std::string& rel)> lstat;
  // The target of the symbolic link at `rel`.
  std::function<result<std::string>(const std::string& rel)> read_link;
};

// `path` (absolute or relative: both start at the root) resolved in `view`: the result is relative
// to the root ("" for the root), cleaned, with no symbolic link in it except the last component
// when `follow_final` is false. Components that do not exist are kept as they are. Errors: the
// view's, and errc::invalid_argument after 40 links (Linux's limit) naming the path.
result<std::string> resolve_in_root(const root_view& view, std::string_view path,
                                    bool follow_final);

// A root_view of the directory `root` on disk.
root_view disk_view(const std::filesystem::path& root);

// The bytes of the regular file `path` (absolute inside `root`, links resolved inside it), or
// nullopt when there is none; at most `limit` bytes (a larger file is errc::invalid_argument).
result<std::optional<std::string>> read_in_root(const std::filesystem::path& root,
                                                std::string_view path, std::size_t limit);

// Reads the file `path` (opened without following a link there) in blocks of `buffer`'s size
// (256 KiB when it is empty), handing each to `fn`; an error of `fn` stops the read and is
// returned, as are the system's (errc::io_error naming the file).
std::optional<error> read_blocks(
    const std::filesystem::path& path, std::vector<std::byte>& buffer,
    const std::function<std::optional<error>(std::span<const std::byte>)>& fn);

// An errc::io_error "WHAT: PATH: strerror(err)".
error io_failure(std::string_view what, const std::filesystem::path& path, int err);

}  // namespace pantry::orchestrator::builder::detail
