#include "pantry/orchestrator/runner/cgroup.h"

#include "pantry/text.h"
#include "strings.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;

// The v1 controllers the kernel knows; other super options of a cgroup mount (rw, relatime,
// clone_children, xattr, release_agent=…) are not controllers.
constexpr std::array<std::string_view, 14> kControllers = {
    "cpuset",  "cpu",        "cpuacct",  "blkio",   "memory", "devices", "freezer",
    "net_cls", "perf_event", "net_prio", "hugetlb", "pids",   "rdma",    "misc"};

bool is_controller(std::string_view s) {
  return std::find(kControllers.begin(), kControllers.end(), s) != kControllers.end();
}

using detail::split;
using detail::unescape_octal;

bool valid_component(std::string_view c) {
  if (c.empty() || c == "." || c == ".." || c.size() > 128) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
  });
}

// "/a/b" -> "a/b"; nullopt unless absolute with valid components.
std::optional<std::string> relative_cgroup(std::string_view cgroups_path) {
  if (cgroups_path.size() < 2 || cgroups_path.front() != '/') return std::nullopt;
  std::string_view rel = cgroups_path.substr(1);
  for (auto c : split(rel, '/')) {
    if (!valid_component(c)) return std::nullopt;
  }
  return std::string(rel);
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// The contents of a small file; nullopt when it does not exist.
result<std::optional<std::string>> read_optional(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::optional<std::string>();
  std::ifstream in(p, std::ios::binary);
  if (!in) return error(errc::io_error, "cgroup: cannot open " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return error(errc::io_error, "cgroup: cannot read " + p.string());
  return std::optional<std::string>(s.str());
}

error not_a_number(const fs::path& p, std::string_view text) {
  std::string shown(text.substr(0, 64));
  return error(errc::io_error, "cgroup: " + p.string() + " holds \"" + shown + "\", not a number");
}

result<std::uint64_t> parse_number(const fs::path& p, std::string_view text) {
  std::string_view t = trim_ascii_space(text);
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
  if (ec != std::errc() || end != t.data() + t.size() || t.empty()) return not_a_number(p, text);
  return n;
}

// The value of `key` in a flat keyed file ("key value" lines); nullopt when the key is absent
// (e.g. oom_kill before Linux 4.13).
result<std::optional<std::uint64_t>> keyed_value(const fs::path& p, std::string_view text,
                                                 std::string_view key) {
  for (auto line : split(text, '\n')) {
    auto space = line.find(' ');
    if (space == std::string_view::npos || line.substr(0, space) != key) continue;
    auto n = parse_number(p, line.substr(space + 1));
    if (!n) return n.error();
    return std::optional<std::uint64_t>(*n);
  }
  return std::optional<std::uint64_t>();
}

// Reads `key` of the keyed file `p` (or the whole file as one number when key is empty) into
// `out`; a missing file or key goes to acc.missing.
result<std::optional<std::uint64_t>> read_value(const fs::path& p, std::string_view key,
                                                cgroup_accounting& acc) {
  auto text = read_optional(p);
  if (!text) return text.error();
  if (!*text) {
    acc.missing.push_back(p.string());
    return std::optional<std::uint64_t>();
  }
  if (key.empty()) {
    auto n = parse_number(p, **text);
    if (!n) return n.error();
    return std::optional<std::uint64_t>(*n);
  }
  auto v = keyed_value(p, **text, key);
  if (!v) return v.error();
  if (!*v) acc.missing.push_back(p.string() + " " + std::string(key));
  return v;
}

}  // namespace

std::vector<fs::path> cgroup_layout::hierarchies() const {
  std::set<fs::path> all;
  for (const auto& [name, path] : v1)
    all.insert(path);
  if (!unified.empty()) all.insert(unified);
  return {all.begin(), all.end()};
}

result<cgroup_layout> layout_from_mountinfo(std::string_view mountinfo) {
  cgroup_layout layout;
  for (auto line : split(mountinfo, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS
    auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    auto head = split(line.substr(0, dash), ' ');
    auto tail = split(line.substr(dash + 3), ' ');
    if (head.size() < 6 || tail.size() < 3) continue;
    const fs::path mount_point = unescape_octal(head[4]);
    if (tail[0] == "cgroup2") {
      if (layout.unified.empty()) layout.unified = mount_point;
    } else if (tail[0] == "cgroup") {
      for (auto opt : split(tail[2], ',')) {
        if (is_controller(opt) || opt.starts_with("name=")) {
          layout.v1.emplace(std::string(opt), mount_point);
        }
      }
    }
  }
  if (layout.v1.empty() && layout.unified.empty()) {
    return error(errc::not_found, "cgroup: no cgroup file system is mounted (mountinfo)");
  }
  layout.version = layout.v1.empty() ? cgroup_version::v2 : cgroup_version::v1;
  return layout;
}

result<cgroup_layout> layout_from_directory(const fs::path& root) {
  cgroup_layout layout;
  if (is_file(root / "cgroup.controllers")) {
    layout.version = cgroup_version::v2;
    layout.unified = root;
    return layout;
  }
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) {
    return error(errc::not_found, "cgroup: cannot list " + root.string() + ": " + ec.message());
  }
  std::set<fs::path> seen;
  std::vector<fs::path> dirs;
  for (const auto& entry : it) {
    if (entry.is_directory(ec)) dirs.push_back(entry.path());
  }
  // Real directories before the symlinks pointing at them, so "cpu,cpuacct" names the hierarchy.
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    std::error_code e;
    const bool la = fs::is_symlink(a, e);
    const bool lb = fs::is_symlink(b, e);
    return la != lb ? !la : a < b;
  });
  for (const auto& dir : dirs) {
    const std::string name = dir.filename().string();
    if (name == "unified" && is_file(dir / "cgroup.controllers")) {
      layout.unified = dir;
      continue;
    }
    if (!is_file(dir / "cgroup.procs")) continue;
    const fs::path canonical = fs::weakly_canonical(dir, ec);
    if (!seen.insert(ec ? dir : canonical).second) continue;
    for (auto part : split(name, ',')) {
      layout.v1.emplace(is_controller(part) ? std::string(part) : "name=" + std::string(part), dir);
    }
  }
  if (layout.v1.empty()) {
    if (!layout.unified.empty()) return layout;  // only a cgroup2 mount below: v2 there
    return error(errc::not_found,
                 "cgroup: " + root.string() + " shows neither a cgroup v2 nor v1 hierarchy");
  }
  layout.version = cgroup_version::v1;
  return layout;
}

result<std::string> cgroups_path(std::string_view parent, std::string_view container_id) {
  std::string_view p = parent;
  while (!p.empty() && p.front() == '/')
    p.remove_prefix(1);
  while (!p.empty() && p.back() == '/')
    p.remove_suffix(1);
  const auto components = split(p, '/');
  if (p.empty() || !std::all_of(components.begin(), components.end(),
                                [](std::string_view c) { return valid_component(c); })) {
    return error(errc::invalid_argument,
                 "cgroup parent \"" + std::string(parent) +
                     "\" is not a relative path of [A-Za-z0-9_.-] components");
  }
  if (!valid_component(container_id)) {
    return error(errc::invalid_argument,
                 "container id \"" + std::string(container_id) +
                     "\" is not 1 to 128 of [A-Za-z0-9_.-] (and not . or ..)");
  }
  return "/" + std::string(p) + "/" + std::string(container_id);
}

std::vector<fs::path> cgroup_dirs(const cgroup_layout& layout, std::string_view path) {
  std::string rel(path);
  while (!rel.empty() && rel.front() == '/')
    rel.erase(0, 1);
  std::vector<fs::path> out;
  for (const auto& h : layout.hierarchies())
    out.push_back(h / rel);
  return out;
}

result<cgroup_accounting> read_accounting(const cgroup_layout& layout, std::string_view path) {
  auto rel = relative_cgroup(path);
  if (!rel) {
    return error(errc::invalid_argument,
                 "cgroup: \"" + std::string(path) + "\" is not an absolute cgroups path");
  }
  cgroup_accounting acc;
  auto set_flag = [](const result<std::optional<std::uint64_t>>& v, bool& flag) {
    if (*v) flag = **v > 0;
  };
  if (layout.version == cgroup_version::v2) {
    const fs::path dir = layout.unified / *rel;
    if (!is_dir(dir)) return error(errc::not_found, "cgroup: " + dir.string() + " does not exist");
    auto oom = read_value(dir / "memory.events", "oom_kill", acc);
    if (!oom) return oom.error();
    set_flag(oom, acc.oom_killed);
    auto peak = read_value(dir / "memory.peak", "", acc);
    if (!peak) return peak.error();
    acc.peak_memory = *peak;
    auto usec = read_value(dir / "cpu.stat", "usage_usec", acc);
    if (!usec) return usec.error();
    if (*usec) acc.cpu_seconds = static_cast<double>(**usec) / 1e6;
    auto pids = read_value(dir / "pids.events", "max", acc);
    if (!pids) return pids.error();
    set_flag(pids, acc.pids_limit_hit);
    return acc;
  }

  auto hierarchy = [&](const char* controller) -> std::optional<fs::path> {
    auto it = layout.v1.find(controller);
    if (it == layout.v1.end()) {
      acc.missing.push_back(std::string("the ") + controller + " hierarchy");
      return std::nullopt;
    }
    return it->second / *rel;
  };
  auto memory = hierarchy("memory");
  if (memory) {
    if (!is_dir(*memory)) {
      return error(errc::not_found, "cgroup: " + memory->string() + " does not exist");
    }
    auto oom = read_value(*memory / "memory.oom_control", "oom_kill", acc);
    if (!oom) return oom.error();
    set_flag(oom, acc.oom_killed);
    auto peak = read_value(*memory / "memory.max_usage_in_bytes", "", acc);
    if (!peak) return peak.error();
    acc.peak_memory = *peak;
  }
  if (auto cpuacct = hierarchy("cpuacct")) {
    auto ns = read_value(*cpuacct / "cpuacct.usage", "", acc);
    if (!ns) return ns.error();
    if (*ns) acc.cpu_seconds = static_cast<double>(**ns) / 1e9;
  }
  if (auto pids_dir = hierarchy("pids")) {
    auto pids = read_value(*pids_dir / "pids.events", "max", acc);
    if (!pids) return pids.error();
    set_flag(pids, acc.pids_limit_hit);
  }
  return acc;
}

result<std::vector<std::string>> list_children(const cgroup_layout& layout,
                                               std::string_view parent) {
  auto rel = relative_cgroup(parent);
  if (!rel) {
    return error(errc::invalid_argument,
                 "cgroup: \"" + std::string(parent) + "\" is not an absolute cgroups path");
  }
  std::set<std::string> names;
  for (const auto& h : layout.hierarchies()) {
    const fs::path dir = h / *rel;
    std::error_code ec;
    if (!fs::exists(dir, ec)) continue;
    fs::directory_iterator it(dir, ec);
    if (ec)
      return error(errc::io_error, "cgroup: cannot list " + dir.string() + ": " + ec.message());
    for (const auto& entry : it) {
      if (entry.is_directory(ec) && !entry.is_symlink(ec)) {
        names.insert(entry.path().filename().string());
      }
    }
  }
  return std::vector<std::string>(names.begin(), names.end());
}

bool swap_accounting(const cgroup_layout& layout, std::string_view parent) {
  if (layout.version == cgroup_version::v1) {
    auto it = layout.v1.find("memory");
    return it != layout.v1.end() && is_file(it->second / "memory.memsw.limit_in_bytes");
  }
  auto rel = relative_cgroup(parent);
  return rel && is_file(layout.unified / *rel / "memory.swap.max");
}

}  // namespace pantry::orchestrator::runner
