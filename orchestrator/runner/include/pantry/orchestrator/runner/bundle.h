#pragma once

// The OCI runtime config (a bundle's config.json) for one step, from the image's config and the
// step's options, with docker's defaults where docker has one: namespaces, capabilities, masked
// and read-only paths, default mounts, the seccomp profile, /etc/hosts, /etc/hostname and
// /etc/resolv.conf bind-mounted from files the runner writes. Nothing of the host's environment
// reaches the step.
//
// Pure: the runner does the I/O (unpacking layers, mounting the root, writing the /etc files and
// secrets, reading host limits) and passes the results in a bundle_context.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/seccomp.h"
#include "pantry/orchestrator/runner/user.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

// docker's default capability set (moby's oci/caps DefaultCapabilities): CAP_CHOWN,
// CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID, CAP_SETUID,
// CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE.
const std::vector<std::string>& default_capabilities();
// docker 20.10's masked paths: /proc/asound, /proc/acpi, /proc/kcore, /proc/keys,
// /proc/latency_stats, /proc/timer_list, /proc/timer_stats, /proc/sched_debug, /proc/scsi,
// /sys/firmware.
const std::vector<std::string>& default_masked_paths();
// docker 20.10's read-only paths: /proc/bus, /proc/fs, /proc/irq, /proc/sys, /proc/sysrq-trigger.
const std::vector<std::string>& default_readonly_paths();

// PATH when the image's Env has none (docker's default).
inline constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// Where the project is mounted.
inline constexpr std::string_view kWorkspace = "/workspace";
// Where declared secrets appear, one file per secret.
inline constexpr std::string_view kSecretsDir = "/run/secrets";

// The parts of an OCI image config a step uses.
struct image_config {
  std::string architecture = "amd64";  // GOARCH, the config's top-level "architecture"
  std::vector<std::string> env;        // "KEY=VALUE", in order
  std::string working_dir;             // "" when the image sets none
  std::string user;                    // "" when the image sets none (root)
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
};

// Reads an image config blob (application/vnd.oci.image.config.v1+json or docker's
// equivalent): the top-level "architecture" and config.Env, WorkingDir, User, Entrypoint, Cmd.
// Errors are errc::invalid_argument naming the member: "image config: config.Env: expected an
// array of strings".
result<image_config> parse_image_config(std::string_view json);

// isolated: a network namespace of the job's own in which pantry listens (lo only); none: an
// empty network namespace; host: the host's network.
enum class network_mode { isolated, none, host };
// "isolated", "none" or "host"; anything else is errc::invalid_argument.
result<network_mode> parse_network_mode(std::string_view s);
std::string_view to_string(network_mode mode) noexcept;

struct rlimit_spec {
  std::string type;  // "RLIMIT_NOFILE"…
  std::uint64_t soft = 0;
  std::uint64_t hard = 0;  // UINT64_MAX is unlimited
};

// The step's rlimits with every hard limit lowered to the host's (`host_hard`, by type; a type
// missing there is kept as asked) and every soft limit to its hard limit: root here lacks
// CAP_SYS_RESOURCE, and runc fails the whole container with EPERM when a limit exceeds the host's.
// Errors: an unknown type, a type given twice, soft above hard.
result<std::vector<rlimit_spec>> cap_rlimits(const std::vector<rlimit_spec>& wanted,
                                             const std::map<std::string, std::uint64_t>& host_hard);

struct bind_mount {
  std::string source;       // absolute host path
  std::string destination;  // absolute container path
  bool read_only = false;
};

// Mounted nosuid,nodev with mode 1777; where the image has the directory, runc gives the mount
// that directory's mode instead (as docker does).
struct tmpfs_mount {
  std::string destination;
  std::uint64_t size_bytes = 0;  // required: a tmpfs counts against the job's memory limit
};

struct secret_file {
  std::string name;  // the file's name under /run/secrets: [A-Za-z0-9._-]+, not "." or ".."
  // Absolute host path of a file holding the value. The runner writes it mode 0400 and owned by
  // the step's uid (resolve_user()): the bind mount keeps the host file's owner and mode.
  std::string source;
  // The value itself, for a secret given by value (`pantry run` sends the file's contents to the
  // server); used when `source` is empty. The runtime writes it to `source` as above.
  std::string value;
};

struct step_options {
  // The command. Non-empty argv replaces the image's Cmd; a set entrypoint replaces the image's
  // Entrypoint and drops its Cmd (as `docker run --entrypoint` does). The process runs
  // entrypoint + cmd.
  std::vector<std::string> argv;
  std::optional<std::vector<std::string>> entrypoint;
  // "KEY=VALUE", applied after the image's Env, in order; a key given again replaces the value.
  std::vector<std::string> env;
  std::optional<std::string> user;         // replaces the image's User
  std::optional<std::string> working_dir;  // replaces the image's WorkingDir; absolute
  std::string hostname = "pantry";

  network_mode network = network_mode::isolated;
  // isolated and none: join this network namespace (e.g. /proc/<pid>/fd/<n>, made by the runner)
  // instead of letting runc make a new one. Ignored for host.
  std::string netns_path;
  // pantry's simple index as the job reaches it ("http://127.0.0.1:8585/simple/"), set as
  // PIP_INDEX_URL, UV_DEFAULT_INDEX, UV_INDEX_URL and PDM_PYPI_URL; "" sets none of them.
  std::string index_url;

  std::optional<std::uint64_t> memory_bytes;       // at least 6 MiB, as docker requires
  std::optional<std::uint64_t> memory_swap_bytes;  // memory + swap, at least memory_bytes; only
                                                   // where the host accounts swap (cgroup.h)
  std::optional<double> cpus;                      // CPU time per period, e.g. 1.5; at least 0.01
  std::optional<std::int64_t> pids_limit;          // at least 1
  // Default: RLIMIT_NOFILE 1048576 (what dockerd passes on), capped by cap_rlimits().
  std::vector<rlimit_spec> rlimits = {{"RLIMIT_NOFILE", 1048576, 1048576}};

  std::string project_dir;  // host directory mounted read-write at /workspace; "" for none
  std::vector<bind_mount> volumes;
  std::vector<tmpfs_mount> tmpfs;
  std::vector<secret_file> secrets;                        // read-only at /run/secrets/<name>
  std::vector<std::string> readonly_paths;                 // added to docker's
  std::uint64_t shm_size_bytes = std::uint64_t{64} << 20;  // /dev/shm, docker's default

  // The seccomp profile (docker's format), converted for the step's capabilities and the
  // image's architecture; null is default_seccomp_profile(). `seccomp_unconfined` runs without.
  std::shared_ptr<const seccomp_profile> seccomp;
  bool seccomp_unconfined = false;
};

// What the runner prepared on the host for this step.
struct bundle_context {
  std::string rootfs;  // root.path: the overlay mount point (absolute, or relative to the bundle)
  // Host paths of the files the runner wrote (hosts_file() etc.), bind-mounted over the image's.
  std::string hosts_path;
  std::string hostname_path;
  std::string resolv_conf_path;
  std::string cgroups_path;  // linux.cgroupsPath, from cgroup.h's cgroups_path()
  // The host's hard limits (getrlimit) by type, "RLIMIT_NOFILE"…; a missing type is not capped.
  std::map<std::string, std::uint64_t> rlimit_hard;
  std::string kernel_release;     // uname -r, for the seccomp profile's minKernel
  std::string passwd;             // the image's /etc/passwd ("" when it has none)
  std::string group;              // the image's /etc/group ("" when it has none)
  bool cgroup_namespace = false;  // a private cgroup namespace (docker's default on cgroup v2)
};

// The step's environment, in order: PATH (the image's or kDefaultPath) and HOSTNAME first, then
// the image's Env, then pantry's defaults, then the step's env, then HOME (the user's home) when
// no one set it. A key set again keeps its first position and takes the new value. pantry's
// defaults — the four index variables (when index_url is set), PIP_NO_CACHE_DIR=1 and
// PYTHONUNBUFFERED=1 — replace the image's values (an image built elsewhere may name an index the
// job cannot reach) but never the step's. Errors: a step entry without '=' or with an empty key
// (`docker run -e KEY` would take the host's value; nothing of the host is inherited).
result<std::vector<std::string>> step_environment(const image_config& image,
                                                  const step_options& step, const exec_user& user);

// The process's argv: entrypoint + cmd after the step's overrides (see step_options). Error when
// it is empty.
result<std::vector<std::string>> step_command(const image_config& image, const step_options& step);

// The contents of the generated /etc files. hosts: localhost entries as docker writes them plus
// "127.0.1.1 <hostname>". resolv.conf: the host's own for `host`; for isolated and none (no DNS
// is reachable) a comment only, so that lookups fail at once instead of timing out.
std::string hosts_file(std::string_view hostname);
std::string hostname_file(std::string_view hostname);
std::string resolv_conf(network_mode mode, std::string_view host_resolv_conf);

// The runtime-spec config.json for the step (ociVersion 1.0.2, what runc 1.1 reads):
// - process: args, env and cwd as above; the user resolved with resolve_user(); docker's
//   capabilities in bounding, effective and permitted for uid 0 and in bounding only otherwise
//   (docker ≥ 20.10.14: nothing inheritable or ambient); rlimits through cap_rlimits();
//   noNewPrivileges.
// - mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys (ro), /sys/fs/cgroup (ro)
//   as docker makes them; /etc/hosts, /etc/hostname, /etc/resolv.conf; the project at /workspace;
//   volumes; tmpfs mounts; secrets read-only under /run/secrets.
// - linux: pid, ipc, uts and mount namespaces, network unless host (joining netns_path when
//   set), cgroup when asked; cgroupsPath; memory, cpu and pids limits; devices denied but runc's
//   defaults; docker's masked paths; docker's read-only paths and the step's; seccomp.
// Errors (errc::invalid_argument) name the bad option and value: mount destinations that are
// relative, contain "." or ".." components, are "/", lie under /proc, /sys or /dev, or repeat
// another mount's; relative sources; bad secret names; limits below their minimum; an invalid
// hostname; a user not in the image's passwd or group; an empty command.
result<boost::json::object> runtime_config(const image_config& image, const step_options& step,
                                           const bundle_context& context);

}  // namespace pantry::orchestrator::runner
