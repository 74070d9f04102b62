#include "host_fs.h"

#include "pantry/orchestrator/runner/container.h"
#include "pantry/orchestrator/runner/fd.h"
#include "pantry/orchestrator/runner/overlay.h"
#include "strings.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

namespace pantry::orchestrator::runner {
namespace detail {
namespace {

namespace fs = std::filesystem;

// Reads all of `fd` (at most max_size bytes).
result<std::string> read_all(int fd, const std::string& name, std::size_t max_size) {
  std::string out;
  char buffer[65536];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot read " + name, errno);
    if (n == 0) return out;
    if (out.size() + static_cast<std::size_t>(n) > max_size) {
      return error(errc::invalid_argument,
                   name + " is larger than " + std::to_string(max_size) + " bytes");
    }
    out.append(buffer, static_cast<std::size_t>(n));
  }
}

// The pids in a cgroup.procs file.
std::vector<pid_t> cgroup_pids(const fs::path& dir) {
  std::vector<pid_t> pids;
  unique_fd fd(::open((dir / "cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return pids;
  auto text = read_all(fd.get(), "cgroup.procs", std::size_t{16} << 20);
  if (!text) return pids;
  for (auto line : split(*text, '\n')) {
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
    if (ec == std::errc() && pid > 0) pids.push_back(pid);
  }
  return pids;
}

// The directories under `dir` (itself included), deepest first.
std::vector<fs::path> cgroup_tree(const fs::path& dir) {
  std::vector<fs::path> out{dir};
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return a.native().size() > b.native().size();
  });
  return out;
}

}  // namespace

std::optional<error> write_new_file(const fs::path& path, std::string_view data, mode_t mode,
                                    std::optional<std::pair<uid_t, gid_t>> owner) {
  unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return errno_error("cannot create " + path.string(), errno);
  while (!data.empty()) {
    const ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot write " + path.string(), errno);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (owner && ::fchown(fd.get(), owner->first, owner->second) != 0) {
    return errno_error("cannot chown " + path.string(), errno);
  }
  // The umask may have taken bits off.
  if (::fchmod(fd.get(), mode) != 0) return errno_error("cannot chmod " + path.string(), errno);
  return std::nullopt;
}

result<std::string> read_file(const fs::path& path, std::size_t max_size) {
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int e = errno;
    return error(e == ENOENT ? errc::not_found : errc::io_error,
                 "cannot open " + path.string() + ": " + std::strerror(e));
  }
  return read_all(fd.get(), path.string(), max_size);
}

result<std::optional<std::string>> read_in_root(const fs::path& root, std::string_view relative,
                                                std::size_t max_size) {
  unique_fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno_error("cannot open " + root.string(), errno);
  open_how how{};
  // O_NONBLOCK: an image's FIFO at that path must not hang the runner.
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const std::string rel(relative);
  unique_fd fd(static_cast<int>(::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof how)));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return std::optional<std::string>();
    return errno_error("cannot open " + rel + " in " + root.string(), errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat " + rel, errno);
  if (!S_ISREG(st.st_mode)) return std::optional<std::string>();
  auto text = read_all(fd.get(), rel + " in " + root.string(), max_size);
  if (!text) return text.error();
  return std::optional<std::string>(std::move(*text));
}

bool is_executable_in_root(const fs::path& root, std::string_view relative) {
  unique_fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return false;
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const std::string rel(relative);
  unique_fd fd(static_cast<int>(::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof how)));
  if (!fd) return false;
  struct stat st {};
  return ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

std::optional<error> mount_tmpfs(const fs::path& dir, std::uint64_t size_bytes) {
  const std::string data = "size=" + std::to_string(size_bytes) + ",mode=0755";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    return errno_error("cannot mount a tmpfs (" + data + ") at " + dir.string(), errno);
  }
  return std::nullopt;
}

std::optional<error> mount_overlay(const fs::path& dir, const std::vector<fs::path>& layers,
                                   const fs::path& link_dir, const fs::path& upper,
                                   const fs::path& work) {
  unique_fd links(::open(link_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!links) return errno_error("cannot open " + link_dir.string(), errno);
  overlay_request request;
  for (const auto& l : layers)
    request.layers.push_back(l.string());
  request.link_prefix = "/proc/self/fd/" + std::to_string(links.get()) + "/";
  request.upper_dir = upper.string();
  request.work_dir = work.string();
  auto m = overlay_options(request);
  if (!m) return m.error();
  for (const auto& [name, target] : m->links) {
    if (::symlinkat(target.c_str(), links.get(), name.c_str()) != 0) {
      return errno_error("cannot link " + (link_dir / name).string() + " to " + target, errno);
    }
  }
  if (::mount("overlay", dir.c_str(), "overlay", 0, m->options.c_str()) != 0) {
    return errno_error(
        "cannot mount overlayfs of " + std::to_string(layers.size()) + " layers at " + dir.string(),
        errno);
  }
  return std::nullopt;
}

std::optional<error> unmount(const fs::path& dir) {
  if (::umount2(dir.c_str(), UMOUNT_NOFOLLOW) == 0) return std::nullopt;
  if (errno == EINVAL || errno == ENOENT) return std::nullopt;  // not a mount point
  if (errno == EBUSY && ::umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
    return std::nullopt;
  }
  return errno_error("cannot unmount " + dir.string(), errno);
}

result<std::string> read_mountinfo() {
  return read_file("/proc/self/mountinfo", std::size_t{64} << 20);
}

std::optional<error> remove_cgroup(const fs::path& dir,
                                   std::chrono::steady_clock::time_point deadline) {
  std::error_code ec;
  while (true) {
    if (!fs::exists(dir, ec)) return std::nullopt;
    int last_errno = 0;
    fs::path last;
    for (const auto& d : cgroup_tree(dir)) {
      for (pid_t pid : cgroup_pids(d))
        ::kill(pid, SIGKILL);
      if (::rmdir(d.c_str()) != 0 && errno != ENOENT) {
        last_errno = errno;
        last = d;
      }
    }
    if (last_errno == 0) return std::nullopt;
    // EBUSY while killed processes are still exiting.
    if (std::chrono::steady_clock::now() >= deadline) {
      return errno_error("cannot remove cgroup " + last.string(), last_errno);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace detail

std::vector<std::filesystem::path> mounts_under(std::string_view mountinfo,
                                                const std::filesystem::path& dir) {
  std::string_view base = dir.native();
  while (base.size() > 1 && base.back() == '/')
    base.remove_suffix(1);
  const std::string prefix = std::string(base) + (base.ends_with('/') ? "" : "/");
  std::vector<std::filesystem::path> out;
  for (auto line : detail::split(mountinfo, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT …
    auto fields = detail::split(line, ' ');
    if (fields.size() < 5) continue;
    std::string point = detail::unescape_octal(fields[4]);
    if (point == base || point.starts_with(prefix)) out.emplace_back(std::move(point));
  }
  // Deeper first, and of mounts stacked on one path the later (upper) first.
  std::reverse(out.begin(), out.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const std::filesystem::path& a, const std::filesystem::path& b) {
                     return a.native().size() > b.native().size();
                   });
  return out;
}

}  // namespace pantry::orchestrator::runner
