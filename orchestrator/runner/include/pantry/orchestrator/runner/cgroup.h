#pragma once

// A model of the host's cgroup hierarchies, v1 (one hierarchy per controller, as on these
// machines, with a cgroup2 mount beside them: "hybrid") and v2 (one unified hierarchy: stock
// Debian 12, Kubernetes nodes), given where they are mounted, so that tests run over a fake
// cgroupfs tree in a temporary directory.
//
// What the runner needs of it: the cgroupsPath to give runc for a container under pantry's parent
// cgroup; every directory runc makes for that path (runc makes one in each v1 hierarchy, named
// ones and the hybrid cgroup2 mount included), to remove after a crash; the accounting to read
// before `runc delete` removes the cgroup (plain `runc run` deletes it on exit, and OOM kills are
// lost with it); and the containers' cgroups left under the parent, for the start-up sweep.
//
// layout_from_mountinfo and cgroups_path are pure; the other functions read the file system under
// the layout's mount points, never write it, and may block briefly (run them off I/O threads).

#include "pantry/error.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

enum class cgroup_version { v1, v2 };

struct cgroup_layout {
  // v1 when any v1 controller hierarchy is mounted (hybrid hosts too: runc then uses v1).
  cgroup_version version = cgroup_version::v2;
  // v1: each controller's hierarchy by name ("memory", "cpuacct", "pids"…; co-mounted controllers
  // such as "cpu,cpuacct" appear under each name; named hierarchies as "name=systemd").
  std::map<std::string, std::filesystem::path> v1;
  // The cgroup2 mount: the whole hierarchy on v2, the controller-less one of a hybrid host, else
  // empty.
  std::filesystem::path unified;

  bool hybrid() const noexcept { return version == cgroup_version::v1 && !unified.empty(); }
  // Every distinct hierarchy's mount point (v1 ones and the cgroup2 one), sorted.
  std::vector<std::filesystem::path> hierarchies() const;
};

// The layout a /proc/self/mountinfo text shows (fstype "cgroup" with controllers among its super
// options, and "cgroup2"). Mount points are unescaped (\040 is a space). Error
// errc::not_found when no cgroup file system is mounted.
result<cgroup_layout> layout_from_mountinfo(std::string_view mountinfo);

// The layout a directory shows, for a host whose mount table is not to be trusted and for tests:
// `root/cgroup.controllers` makes it v2; otherwise every subdirectory holding `cgroup.procs` is a
// v1 hierarchy named by its controllers ("cpu,cpuacct" gives both; a symlink such as cpu ->
// cpu,cpuacct adds nothing new), and `root/unified` holding `cgroup.controllers` is the hybrid
// cgroup2 mount. Error errc::not_found when `root` shows neither.
result<cgroup_layout> layout_from_directory(const std::filesystem::path& root);

// The container's linux.cgroupsPath: "/<parent>/<container_id>". `parent` is one or more path
// components ("pantry", "system.slice/pantry"), `container_id` one ([A-Za-z0-9_.-], at most 128
// bytes, not "." or ".."). runc joins an absolute cgroupsPath to the root of every v1 hierarchy,
// and to the cgroup2 root (of pantry's cgroup namespace) on v2. errc::invalid_argument otherwise.
result<std::string> cgroups_path(std::string_view parent, std::string_view container_id);

// The directories runc makes for `cgroups_path` (one per hierarchy), whether they exist or not.
std::vector<std::filesystem::path> cgroup_dirs(const cgroup_layout& layout,
                                               std::string_view cgroups_path);

// What the kernel recorded for a finished container, read before its cgroup is removed.
struct cgroup_accounting {
  // The OOM killer killed a process in the cgroup or below it (a shell whose child was killed
  // can still exit 0). v1: memory.oom_control oom_kill > 0; v2: memory.events oom_kill > 0.
  bool oom_killed = false;
  // Bytes. v1: memory.max_usage_in_bytes; v2: memory.peak (Linux 5.19 and later; nullopt before).
  std::optional<std::uint64_t> peak_memory;
  // User + system. v1: cpuacct.usage (ns); v2: cpu.stat usage_usec.
  std::optional<double> cpu_seconds;
  // A fork failed at the pids limit: pids.events max > 0.
  bool pids_limit_hit = false;
  // The files that were absent (an older kernel, a controller not mounted), by path, for the
  // step's log; what they would have said is left at its default above.
  std::vector<std::string> missing;
};

// Reads the accounting of the cgroup at `cgroups_path`. Missing files are listed in `missing`;
// errors: errc::not_found when the cgroup itself does not exist (in the memory hierarchy on v1,
// the unified one on v2), errc::io_error when a file cannot be read or holds no number where one
// belongs (the message names the file and quotes what it holds).
result<cgroup_accounting> read_accounting(const cgroup_layout& layout,
                                          std::string_view cgroups_path);

// The names of the cgroups directly under `parent` (a cgroups path such as "/pantry") in any
// hierarchy, sorted and without duplicates: containers a crashed pantry left behind. An absent
// parent has none.
result<std::vector<std::string>> list_children(const cgroup_layout& layout,
                                               std::string_view parent);

// Whether the kernel accounts swap for cgroups, so that a memory+swap limit can be set (runc fails
// the container when it writes a limit whose file is absent). v1: memory.memsw.limit_in_bytes at
// the memory hierarchy's root; v2: memory.swap.max in `parent` (the root cgroup has none).
bool swap_accounting(const cgroup_layout& layout, std::string_view parent);

}  // namespace pantry::orchestrator::runner
