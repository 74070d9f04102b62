#include "root_path.h"

#include "lexical.h"
#include "pantry/orchestrator/runner/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>

namespace pantry::orchestrator::builder::detail {
namespace {

// Linux's MAXSYMLINKS: how many links one path may pass through before ELOOP.
constexpr int kMaxLinks = 40;
// Large enough that a big file costs few read(2) calls, small enough to live on the heap once.
constexpr std::size_t kReadBlock = std::size_t{256} << 10;

}  // namespace

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    const std::string_view c = path.substr(start, end - start);
    if (!c.empty() && c != ".") out.emplace_back(c);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

std::string join_path(std::string_view dir, std::string_view name) {
  if (dir.empty() || dir == ".") return std::string(name);
  if (name.empty() || name == ".") return std::string(dir);
  std::string out(dir);
  out += '/';
  out += name;
  return out;
}

std::string parent_path(std::string_view rel) {
  const auto slash = rel.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(rel.substr(0, slash));
}

error io_failure(std::string_view what, const std::filesystem::path& path, int err) {
  return error(errc::io_error,
               std::string(what) + ": " + quote(path.string()) + ": " + std::strerror(err));
}

result<std::string> resolve_in_root(const root_view& view, std::string_view path,
                                    bool follow_final) {
  std::vector<std::string> done;
  std::deque<std::string> todo;
  for (auto& c : split_path(path))
    todo.push_back(std::move(c));
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    std::string candidate;
    for (const auto& d : done)
      candidate = join_path(candidate, d);
    candidate = join_path(candidate, c);
    if (!todo.empty() || follow_final) {
      auto st = view.lstat(candidate);
      if (!st) return st.error();
      if (*st && S_ISLNK((*st)->st_mode)) {
        if (++links > kMaxLinks) {
          return error(errc::invalid_argument,
                       quote(path) + ": too many levels of symbolic links (more than " +
                           std::to_string(kMaxLinks) + ")");
        }
        auto target = view.read_link(candidate);
        if (!target) return target.error();
        if (target->starts_with('/')) done.clear();
        auto parts = split_path(*target);
        todo.insert(todo.begin(), parts.begin(), parts.end());
        continue;
      }
    }
    done.push_back(std::move(c));
  }
  std::string out;
  for (const auto& d : done)
    out = join_path(out, d);
  return out;
}

root_view disk_view(const std::filesystem::path& root) {
  root_view view;
  view.lstat = [root](const std::string& rel) -> result<std::optional<struct stat>> {
    const std::filesystem::path p = rel.empty() ? root : root / rel;
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0) return std::optional<struct stat>(st);
    if (errno == ENOENT || errno == ENOTDIR) return std::optional<struct stat>();
    return io_failure("cannot stat", p, errno);
  };
  view.read_link = [root](const std::string& rel) -> result<std::string> {
    const std::filesystem::path p = root / rel;
    std::string target(256, '\0');
    for (;;) {
      const ssize_t n = ::readlink(p.c_str(), target.data(), target.size());
      if (n < 0) return io_failure("cannot read the link", p, errno);
      if (static_cast<std::size_t>(n) < target.size()) {
        target.resize(static_cast<std::size_t>(n));
        return target;
      }
      target.resize(target.size() * 2);
    }
  };
  return view;
}

result<std::optional<std::string>> read_in_root(const std::filesystem::path& root,
                                                std::string_view path, std::size_t limit) {
  const root_view disk = disk_view(root);
  auto rel = resolve_in_root(disk, path, true);
  if (!rel) return rel.error();
  auto st = disk.lstat(*rel);
  if (!st) return st.error();
  if (!*st || !S_ISREG((*st)->st_mode)) return std::optional<std::string>();
  if (static_cast<std::uint64_t>((*st)->st_size) > limit) {
    return error(errc::invalid_argument,
                 quote(path) + " is larger than " + std::to_string(limit) + " bytes");
  }
  std::string out;
  std::vector<std::byte> buffer;
  auto append = [&](std::span<const std::byte> block) -> std::optional<error> {
    if (out.size() + block.size() > limit) {
      return error(errc::invalid_argument,
                   quote(path) + " is larger than " + std::to_string(limit) + " bytes");
    }
    out.append(reinterpret_cast<const char*>(block.data()), block.size());
    return std::nullopt;
  };
  if (auto e = read_blocks(root / *rel, buffer, append)) return *e;
  return std::optional<std::string>(std::move(out));
}

std::optional<error> read_blocks(
    const std::filesystem::path& path, std::vector<std::byte>& buffer,
    const std::function<std::optional<error>(std::span<const std::byte>)>& fn) {
  runner::unique_fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return io_failure("cannot open", path, errno);
  if (buffer.empty()) buffer.resize(kReadBlock);
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_failure("cannot read", path, errno);
    }
    if (n == 0) return std::nullopt;
    if (auto e = fn(std::span<const std::byte>(buffer.data(), static_cast<std::size_t>(n)))) {
      return e;
    }
  }
}

}  // namespace pantry::orchestrator::builder::detail
