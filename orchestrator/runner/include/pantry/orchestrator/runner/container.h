#pragma once

// Running one step in a container with runc: the I/O half of the runner.
//
// A runtime owns three places on the host, all pantry's own and nothing else's: a runc state
// directory (`runc --root`), a parent cgroup in every hierarchy, and a state directory holding one
// bundle per container (config.json, the generated /etc files, secrets, the overlay root and its
// scratch tmpfs). create() prepares a container there: mounts its root file system, makes its
// network namespace, writes its bundle. run() starts it with `runc run --detach`, streams its
// output through the secret masker and the line splitter (log_lines.h) to the caller's sink,
// enforces the timeout, reaps the step's init for its exit status, reads the cgroup's accounting
// before the container is deleted (OOM kills are recorded only there), then removes everything it
// made. sweep(), at start-up, removes what a crashed pantry left in those three places (a
// SIGKILLed pantry leaves its containers running).
//
// Why detached: in the foreground runc copies the step's stdout and stderr through two pipes of
// its own, one goroutine each, and their order is lost; detached, it hands the step pantry's pipe
// as it is. The step's init then outlives runc, and the kernel reparents it to the nearest child
// subreaper: runtime::open() makes this process one, so that run() can reap the init and read its
// exit status (and kill it through a pidfd, with no pid reuse race).
//
// Every call blocks (processes, mounts, file system): call them from a blocking pool, never from an
// I/O thread. A runtime may be used by many threads at once; a container by one thread at a time,
// except cancel(), which any thread may call while the container exists.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/cgroup.h"
#include "pantry/orchestrator/runner/log_lines.h"
#include "pantry/orchestrator/runner/netns.h"
#include "pantry/orchestrator/runner/process.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

struct runtime_options {
  std::filesystem::path runc = "/usr/sbin/runc";
  // `runc --root`: pantry's own (never runc's default /run/runc, which other tools share). sweep()
  // deletes every container in it. Absolute; created if missing.
  std::filesystem::path runc_root;
  // One directory per container (its bundle); sweep() unmounts and removes everything under it.
  // Absolute; created if missing. Not on overlayfs when roots are overlays with disk scratch
  // (an upper directory cannot be on an overlay). Best on a tmpfs, as runc's root is (/run): a
  // container makes and removes a few directories, and rmdir on ext4 mounted with `discard`
  // takes milliseconds each.
  std::filesystem::path state_dir;
  // The containers' cgroups are <cgroup_parent>/<id> in every hierarchy (cgroup.h's
  // cgroups_path); sweep() removes every cgroup under it.
  std::string cgroup_parent = "pantry";
  // The host's cgroup hierarchies; nullopt reads /proc/self/mountinfo.
  std::optional<cgroup_layout> cgroups;
  // Copied into containers on network `host`.
  std::filesystem::path host_resolv_conf = "/etc/resolv.conf";
  // After the step is killed (timeout, cancel), how long its output may take to end, and its
  // init to be reaped, before run() stops waiting; also how long removing a cgroup retries.
  std::chrono::milliseconds kill_grace = std::chrono::seconds(2);
};

// A container's root file system: either `directory`, used as it is (the step writes into it), or
// `layers` stacked with overlayfs under an upper directory that takes the step's writes.
struct root_filesystem {
  std::filesystem::path directory;
  // Unpacked layer directories, base layer first, read-only (absolute).
  std::vector<std::filesystem::path> layers;
  // With layers: the size of the tmpfs holding the upper and work directories. Files the step
  // writes there count against its memory limit (the kernel charges tmpfs pages to the writer's
  // cgroup). 0 puts them on disk, in the container's state directory.
  std::uint64_t tmpfs_size_bytes = 0;
  // With layers on disk (tmpfs_size_bytes 0): where the step's upper directory (what it wrote,
  // with overlayfs whiteouts) is moved once the container is unmounted, for the builder to
  // write as a layer; an absent path on the state directory's file system, owned by the caller
  // afterwards. Empty: the upper directory is removed with the container.
  std::filesystem::path keep_upper;
};

struct container_spec {
  // [A-Za-z0-9_.-], at most 128 bytes, unused in the runtime; "" picks a random one.
  std::string id;
  root_filesystem root;
  image_config image;
  // step.netns_path: for network isolated, "" makes a namespace (network()) with lo up; for none,
  // "" lets runc make an empty one (runc brings its lo up, as docker's `none` has it).
  // step.secrets: the sources (at most 1 MiB each) are read and copied into the container's
  // state directory (mode 0400, owned by the step's user); their values, without a final
  // newline, are masked in the output.
  step_options step;
  std::chrono::milliseconds timeout{0};  // 0: none; counted from the start of runc
  output_mode output = output_mode::merged;
  std::size_t max_line = kDefaultMaxLine;  // line_splitter's limit
};

// A line of the step's output: masked, timestamped, cut at max_line.
struct output_line {
  output_stream stream = output_stream::out;  // always out with output_mode::merged
  log_line line;
};
using output_sink = std::function<void(const output_line&)>;

struct step_result {
  // The step's exit code; 128+N when signal N killed it (as shells report it); -1 when it never
  // ran (runc_error says why) or its status is unknown (notes say why).
  int exit_code = -1;
  int signal = 0;                         // N when signal N killed the step, else 0
  std::chrono::nanoseconds wall_time{0};  // from starting runc to the step's end
  std::optional<std::uint64_t> peak_memory_bytes;
  std::optional<double> cpu_seconds;  // user + system of every process of the step
  // The OOM killer killed a process of the step, whatever the exit code (a shell whose child was
  // killed may exit 0).
  bool oom_killed = false;
  bool pids_limit_hit = false;  // a fork failed at the pids limit
  bool timed_out = false;       // killed at the spec's timeout
  bool cancelled = false;       // killed (or never started) by cancel()
  // runc's own error (e.g. "… exec: \"foo\": executable file not found in $PATH") when it could
  // not start or run the step; "" otherwise.
  std::string runc_error;
  // What the result could not tell, for the step's log: accounting files missing, secrets too
  // short to mask.
  std::vector<std::string> notes;
  // Removing the container, its mounts, cgroups or files failed after the step ran (the next
  // sweep() retries); the rest of the result stands.
  std::optional<error> cleanup_error;
};

class container {
 public:
  // Removes whatever remains of the container (as remove()).
  virtual ~container() = default;

  virtual const std::string& id() const noexcept = 0;
  virtual const std::filesystem::path& bundle_dir() const noexcept = 0;
  // The network namespace pantry made (network isolated, and none when asked), for a listener
  // inside it (netns.h); null otherwise. Valid until run() returns or remove().
  virtual const network_namespace* network() const noexcept = 0;
  // The step's environment as its process gets it ("KEY=VALUE", step_environment()).
  virtual const std::vector<std::string>& environment() const noexcept = 0;
  // True when `name` is an executable regular file in a directory of the step's PATH inside the
  // container's root (resolved there: the image's symlinks never lead out). Before run() only.
  virtual bool has_executable(std::string_view name) const = 0;
  // The values of the step's secrets as the output masks them (a final newline dropped), in the
  // order of step.secrets; for masking them in what the runner logs and reports.
  virtual const std::vector<std::string>& secret_values() const noexcept = 0;

  // Runs the step to its end (the end of its init, whatever its output does), calling `sink` for
  // each output line on this thread, then removes the container. Once per container. Errors:
  // runc could not be started or the output read (errc::io_error; the container is removed all
  // the same), a second call (errc::invalid_argument). runc failing to start the step is no
  // error: see step_result::runc_error.
  virtual result<step_result> run(const output_sink& sink) = 0;

  // Any thread: kills the step as a timeout does (run() returns as soon as its processes are
  // gone, with cancelled set), or keeps it from starting when run() has not begun. Idempotent.
  virtual void cancel() noexcept = 0;

  // Kills the container if it runs, deletes it from runc, removes its cgroups, unmounts its root
  // and removes its state directory. Idempotent. Errors: the first step that failed.
  virtual result<void> remove() = 0;
};

// What sweep() removed.
struct sweep_report {
  std::vector<std::string> containers;  // ids deleted from runc's state
  std::vector<std::string> cgroups;     // cgroup directories removed
  std::vector<std::string> mounts;      // mount points unmounted
  std::vector<std::string> entries;     // entries of the state directory removed
};

class runtime {
 public:
  // Checks the options, creates the two directories, reads the cgroup layout and the host's
  // facts (kernel release, hard rlimits), and makes this process a child subreaper (see the top
  // of this file: orphaned descendants of any of its children are then reparented to it, so
  // nothing else in the process may reap children it did not start, e.g. with waitpid(-1), and
  // SIGCHLD must not be ignored). Errors: errc::invalid_argument for relative paths and a bad
  // cgroup parent, errc::not_found when runc is missing, errc::io_error when a directory cannot
  // be made.
  static result<std::unique_ptr<runtime>> open(runtime_options options);

  // Removes the parent cgroup in every hierarchy where it is empty (its containers gone).
  virtual ~runtime() = default;

  // Prepares a container (see container_spec): its state directory, root mount, network
  // namespace, secrets and bundle. Nothing is left behind on error. Errors: a bad spec
  // (errc::invalid_argument, as runtime_config() words it), an id in use
  // (errc::already_exists), a failed mount or write (errc::io_error).
  virtual result<std::unique_ptr<container>> create(container_spec spec) = 0;

  // Kills and removes every container in the runc root, every cgroup under the parent, every
  // mount under the state directory and every entry in it. Only at start-up: it also removes the
  // containers of this runtime that are running now. Errors: what could not be removed (the
  // report says what was).
  virtual result<sweep_report> sweep() = 0;

  virtual const runtime_options& options() const noexcept = 0;
  virtual const cgroup_layout& cgroups() const noexcept = 0;
};

// 16 lowercase hex digits from the kernel's random source: names of containers and scratch
// directories that must not collide.
std::string random_hex16();

// The mount points in a /proc/self/mountinfo text that are `dir` or below it, deepest first (the
// order to unmount them in). `dir` must be canonical, as mountinfo shows paths.
std::vector<std::filesystem::path> mounts_under(std::string_view mountinfo,
                                                const std::filesystem::path& dir);

}  // namespace pantry::orchestrator::runner
