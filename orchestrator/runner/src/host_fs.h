#pragma once

// The host-side file system work of the runner: files written and read, mounts made and undone,
// cgroup directories emptied and removed. Private to pantry_runner; every call blocks.

#include "pantry/error.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner::detail {

// Writes `data` to a new file `path` (O_EXCL, no symlink followed) with `mode`, owned by
// `owner` (uid, gid) when given.
std::optional<error> write_new_file(const std::filesystem::path& path, std::string_view data,
                                    mode_t mode,
                                    std::optional<std::pair<uid_t, gid_t>> owner = std::nullopt);

// The contents of a regular file, at most `max_size` bytes (errc::invalid_argument beyond).
result<std::string> read_file(const std::filesystem::path& path, std::size_t max_size);

// The contents of `relative` inside `root`, resolved as if `root` were "/" (openat2
// RESOLVE_IN_ROOT: an image's absolute symlink such as /etc/passwd -> /host/x stays inside the
// image); nullopt when it does not exist or is not a regular file.
result<std::optional<std::string>> read_in_root(const std::filesystem::path& root,
                                                std::string_view relative, std::size_t max_size);

// True when `relative` inside `root` (resolved as read_in_root does) is a regular file with an
// execute bit.
bool is_executable_in_root(const std::filesystem::path& root, std::string_view relative);
// Mounts a tmpfs of `size_bytes` at `dir` (nosuid, nodev, mode 0755).
std::optional<error> mount_tmpfs(const std::filesystem::path& dir, std::uint64_t size_bytes);

// Mounts overlayfs at `dir`: `layers` (base first) under `upper`/`work`, through short links in
// `link_dir` (overlay.h's overlay_options).
std::optional<error> mount_overlay(const std::filesystem::path& dir,
                                   const std::vector<std::filesystem::path>& layers,
                                   const std::filesystem::path& link_dir,
                                   const std::filesystem::path& upper,
                                   const std::filesystem::path& work);

// Unmounts `dir` (lazily when it is busy); success when nothing is mounted there.
std::optional<error> unmount(const std::filesystem::path& dir);

// /proc/self/mountinfo.
result<std::string> read_mountinfo();

// Kills (SIGKILL) every process in the cgroup directory `dir` and below, and removes the
// directories bottom-up, retrying until `deadline` while processes die. Success when `dir` is
// absent.
std::optional<error> remove_cgroup(const std::filesystem::path& dir,
                                   std::chrono::steady_clock::time_point deadline);

}  // namespace pantry::orchestrator::runner::detail
