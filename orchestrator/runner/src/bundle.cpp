#include "pantry/orchestrator/runner/bundle.h"

#include "pantry/orchestrator/runner/json_read.h"
#include "strings.h"

#include <boost/json/array.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <utility>

namespace pantry::orchestrator::runner {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kMinMemory = 6 << 20;  // docker's minimum for --memory
constexpr std::int64_t kCpuPeriodUs = 100000;  // docker's --cpus period
constexpr std::int64_t kMinCpuQuotaUs = 1000;  // the kernel refuses shorter quotas

constexpr std::array<std::string_view, 16> kRlimitTypes = {
    "RLIMIT_AS",     "RLIMIT_CORE",   "RLIMIT_CPU",        "RLIMIT_DATA",
    "RLIMIT_FSIZE",  "RLIMIT_LOCKS",  "RLIMIT_MEMLOCK",    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",   "RLIMIT_NOFILE", "RLIMIT_NPROC",      "RLIMIT_RSS",
    "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK"};

using detail::invalid;
using detail::quoted;
using detail::to_array;

std::string_view env_key(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

// An ordered environment in which setting a key again keeps its first position (docker's
// ReplaceOrAppendEnvValues).
class environment {
 public:
  void set(std::string_view key, std::string_view value) {
    std::string entry = std::string(key) + "=" + std::string(value);
    for (auto& e : entries_) {
      if (env_key(e) == key) {
        e = std::move(entry);
        return;
      }
    }
    entries_.push_back(std::move(entry));
  }
  void set(std::string_view entry) {
    auto eq = entry.find('=');
    set(entry.substr(0, eq), entry.substr(eq + 1));
  }
  bool has(std::string_view key) const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [&](const std::string& e) { return env_key(e) == key; });
  }
  std::vector<std::string> take() && { return std::move(entries_); }

 private:
  std::vector<std::string> entries_;
};

// An absolute path without ".", ".." or empty components, and not "/".
bool clean_absolute(std::string_view p) {
  if (p.size() < 2 || p.front() != '/' || p.back() == '/') return false;
  std::size_t start = 1;
  while (start <= p.size()) {
    auto slash = p.find('/', start);
    std::string_view part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return p.find('\0') == std::string_view::npos;
}

bool under(std::string_view path, std::string_view dir) {
  return path == dir ||
         (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

bool valid_hostname(std::string_view h) {
  // RFC 1123 labels, within HOST_NAME_MAX (64).
  if (h.empty() || h.size() > 64) return false;
  std::size_t start = 0;
  while (true) {
    auto dot = h.find('.', start);
    std::string_view label = h.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-')) {
        return false;
      }
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool valid_secret_name(std::string_view n) {
  if (n.empty() || n == "." || n == ".." || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

json::object mount(std::string_view destination, std::string_view type, std::string_view source,
                   std::vector<std::string> options) {
  return json::object{{"destination", destination},
                      {"type", type},
                      {"source", source},
                      {"options", to_array(options)}};
}

// The mounts every container gets, as docker 20.10 makes them (moby oci/defaults.go plus the
// daemon's /dev/shm size).
json::array default_mounts(std::uint64_t shm_size) {
  json::array m;
  m.push_back(mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  m.push_back(
      mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  m.push_back(mount("/dev/pts", "devpts", "devpts",
                    {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  m.push_back(mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
  m.push_back(mount("/sys/fs/cgroup", "cgroup", "cgroup", {"ro", "nosuid", "noexec", "nodev"}));
  m.push_back(mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  m.push_back(
      mount("/dev/shm", "tmpfs", "shm",
            {"nosuid", "noexec", "nodev", "mode=1777", "size=" + std::to_string(shm_size)}));
  return m;
}

json::object device_rule(bool allow, std::string_view type, std::int64_t major,
                         std::int64_t minor) {
  json::object r{{"allow", allow}, {"type", type}, {"access", "rwm"}};
  if (major >= 0) r["major"] = major;
  if (minor >= 0) r["minor"] = minor;
  return r;
}

// Deny every device but those docker allows (runc appends its own defaults after these: null,
// zero, full, random, urandom, tty, ptmx, pts).
json::array device_rules() {
  json::array d;
  d.push_back(json::object{{"allow", false}, {"access", "rwm"}});
  for (auto [major, minor] : {std::pair{1, 5}, {1, 3}, {1, 9}, {1, 8}, {5, 0}, {5, 1}}) {
    d.push_back(device_rule(true, "c", major, minor));
  }
  d.push_back(device_rule(false, "c", 10, 229));  // /dev/fuse
  return d;
}

}  // namespace

const std::vector<std::string>& default_capabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE"};
  return caps;
}

const std::vector<std::string>& default_masked_paths() {
  static const std::vector<std::string> paths = {
      "/proc/asound",        "/proc/acpi",       "/proc/kcore",       "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/proc/scsi",          "/sys/firmware"};
  return paths;
}

const std::vector<std::string>& default_readonly_paths() {
  static const std::vector<std::string> paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                 "/proc/sysrq-trigger"};
  return paths;
}

result<image_config> parse_image_config(std::string_view text) {
  const detail::json_reader r("image config");
  auto document = r.parse_object(text);
  if (!document) return document.error();
  const auto& o = *document;
  image_config out;
  if (auto e = r.read(o, "architecture", "architecture", out.architecture)) return *e;
  if (out.architecture.empty()) out.architecture = image_config().architecture;
  auto config = r.object_at(o, "config", "config");
  if (!config) return config.error();
  if (*config == nullptr) return out;
  const auto& c = **config;
  if (auto e = r.read(c, "Env", "config.Env", out.env)) return *e;
  if (auto e = r.read(c, "WorkingDir", "config.WorkingDir", out.working_dir)) return *e;
  if (auto e = r.read(c, "User", "config.User", out.user)) return *e;
  if (auto e = r.read(c, "Entrypoint", "config.Entrypoint", out.entrypoint)) return *e;
  if (auto e = r.read(c, "Cmd", "config.Cmd", out.cmd)) return *e;
  return out;
}

result<network_mode> parse_network_mode(std::string_view s) {
  if (s == "isolated") return network_mode::isolated;
  if (s == "none") return network_mode::none;
  if (s == "host") return network_mode::host;
  return invalid("network " + quoted(s) + " is not one of isolated, none, host");
}

std::string_view to_string(network_mode mode) noexcept {
  switch (mode) {
    case network_mode::isolated:
      return "isolated";
    case network_mode::none:
      return "none";
    case network_mode::host:
      return "host";
  }
  return "?";
}

result<std::vector<rlimit_spec>> cap_rlimits(
    const std::vector<rlimit_spec>& wanted, const std::map<std::string, std::uint64_t>& host_hard) {
  std::vector<rlimit_spec> out;
  std::set<std::string> seen;
  for (const auto& w : wanted) {
    if (std::find(kRlimitTypes.begin(), kRlimitTypes.end(), w.type) == kRlimitTypes.end()) {
      return invalid("rlimit " + quoted(w.type) + " is not a Linux rlimit (RLIMIT_NOFILE…)");
    }
    if (!seen.insert(w.type).second) return invalid("rlimit " + w.type + " is given twice");
    if (w.soft > w.hard) {
      return invalid("rlimit " + w.type + ": soft limit " + std::to_string(w.soft) +
                     " is above the hard limit " + std::to_string(w.hard));
    }
    rlimit_spec r = w;
    if (auto host = host_hard.find(w.type); host != host_hard.end()) {
      r.hard = std::min(r.hard, host->second);
      r.soft = std::min(r.soft, r.hard);
    }
    out.push_back(std::move(r));
  }
  return out;
}

result<std::vector<std::string>> step_environment(const image_config& image,
                                                  const step_options& step, const exec_user& user) {
  environment env;
  env.set("PATH", kDefaultPath);
  env.set("HOSTNAME", step.hostname);
  for (const auto& e : image.env) {
    // An image's entry without '=' has no value to give; docker's runtime drops it too.
    if (e.find('=') == std::string::npos || env_key(e).empty()) continue;
    env.set(e);
  }
  environment step_env;
  for (const auto& e : step.env) {
    if (e.find('=') == std::string::npos || env_key(e).empty() ||
        e.find('\0') != std::string::npos) {
      return invalid("step environment entry " + quoted(e) +
                     " is not KEY=VALUE (nothing is taken from the host's environment)");
    }
    step_env.set(e);
  }
  auto pantry_default = [&](std::string_view key, std::string_view value) {
    if (!step_env.has(key)) env.set(key, value);
  };
  if (!step.index_url.empty()) {
    for (std::string_view key :
         {"PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "PDM_PYPI_URL"}) {
      pantry_default(key, step.index_url);
    }
  }
  pantry_default("PIP_NO_CACHE_DIR", "1");
  pantry_default("PYTHONUNBUFFERED", "1");
  for (const auto& e : step.env)
    env.set(e);
  if (!env.has("HOME")) env.set("HOME", user.home);
  return std::move(env).take();
}

result<std::vector<std::string>> step_command(const image_config& image, const step_options& step) {
  std::vector<std::string> args = step.entrypoint ? *step.entrypoint : image.entrypoint;
  if (!step.argv.empty()) {
    args.insert(args.end(), step.argv.begin(), step.argv.end());
  } else if (!step.entrypoint) {
    args.insert(args.end(), image.cmd.begin(), image.cmd.end());
  }
  if (args.empty()) {
    return invalid("no command: the image has no Entrypoint or Cmd and the step gives none");
  }
  return args;
}

std::string hosts_file(std::string_view hostname) {
  return "127.0.0.1\tlocalhost\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\n"
         "ff00::0\tip6-mcastprefix\n"
         "ff02::1\tip6-allnodes\n"
         "ff02::2\tip6-allrouters\n"
         "127.0.1.1\t" +
         std::string(hostname) + "\n";
}

std::string hostname_file(std::string_view hostname) {
  return std::string(hostname) + "\n";
}

std::string resolv_conf(network_mode mode, std::string_view host_resolv_conf) {
  if (mode == network_mode::host) {
    std::string out(host_resolv_conf);
    if (!out.empty() && out.back() != '\n') out += '\n';
    return out;
  }
  return "# Written by pantry: the job's network (" + std::string(to_string(mode)) +
         ") reaches no name server.\n";
}

result<json::object> runtime_config(const image_config& image, const step_options& step,
                                    const bundle_context& context) {
  if (context.rootfs.empty()) return invalid("the bundle has no root file system path");
  if (!valid_hostname(step.hostname)) {
    return invalid("hostname " + quoted(step.hostname) + " is not a valid host name");
  }
  auto args = step_command(image, step);
  if (!args) return args.error();
  auto user = resolve_user(step.user ? *step.user : image.user, context.passwd, context.group);
  if (!user) return user.error();
  auto env = step_environment(image, step, *user);
  if (!env) return env.error();

  std::string cwd;
  if (step.working_dir) {
    cwd = *step.working_dir;
  } else if (!image.working_dir.empty()) {
    cwd = image.working_dir;
  } else {
    // The image does not say: a CI step runs in its project, else at the root (docker's default).
    cwd = step.project_dir.empty() ? "/" : std::string(kWorkspace);
  }
  if (cwd != "/" && !clean_absolute(cwd)) {
    return invalid("working directory " + quoted(cwd) + " is not a clean absolute path");
  }

  auto rlimits = cap_rlimits(step.rlimits, context.rlimit_hard);
  if (!rlimits) return rlimits.error();

  // --- process
  json::object process;
  process["terminal"] = false;
  json::object juser{{"uid", user->uid}, {"gid", user->gid}};
  if (!user->additional_gids.empty()) {
    json::array gids;
    for (auto g : user->additional_gids)
      gids.emplace_back(g);
    juser["additionalGids"] = std::move(gids);
  }
  process["user"] = std::move(juser);
  process["args"] = to_array(*args);
  process["env"] = to_array(*env);
  process["cwd"] = cwd;
  const auto& caps = default_capabilities();
  // As docker does since 20.10.14: a non-root process gets its capabilities only through the
  // bounding set (file capabilities, setuid binaries), as execve would give them.
  if (user->uid == 0) {
    process["capabilities"] = json::object{
        {"bounding", to_array(caps)}, {"effective", to_array(caps)}, {"permitted", to_array(caps)}};
  } else {
    process["capabilities"] = json::object{{"bounding", to_array(caps)}};
  }
  json::array jrlimits;
  for (const auto& r : *rlimits) {
    jrlimits.push_back(json::object{{"type", r.type}, {"hard", r.hard}, {"soft", r.soft}});
  }
  process["rlimits"] = std::move(jrlimits);
  process["noNewPrivileges"] = true;

  // --- mounts
  json::array mounts = default_mounts(step.shm_size_bytes);
  std::vector<std::string> destinations;
  for (const auto& m : mounts)
    destinations.emplace_back(m.at("destination").as_string());
  auto add_mount = [&](std::string_view what, const std::string& destination,
                       json::object m) -> std::optional<error> {
    if (!clean_absolute(destination)) {
      return invalid(std::string(what) + " destination " + quoted(destination) +
                     " is not a clean absolute path other than /");
    }
    for (std::string_view reserved : {"/proc", "/sys", "/dev"}) {
      if (under(destination, reserved)) {
        return invalid(std::string(what) + " destination " + quoted(destination) + " is under " +
                       std::string(reserved) + ", which the runtime owns");
      }
    }
    if (std::find(destinations.begin(), destinations.end(), destination) != destinations.end()) {
      return invalid(std::string(what) + " destination " + quoted(destination) +
                     " is already mounted");
    }
    destinations.push_back(destination);
    mounts.push_back(std::move(m));
    return std::nullopt;
  };
  auto bind = [&](std::string_view what, const std::string& source, const std::string& destination,
                  std::vector<std::string> options) -> std::optional<error> {
    if (source.empty() || source.front() != '/') {
      return invalid(std::string(what) + " source " + quoted(source) +
                     " is not an absolute host path");
    }
    return add_mount(what, destination, mount(destination, "bind", source, std::move(options)));
  };
  // docker bind-mounts these three over the image's own, rprivate so that nothing mounted under
  // them on the host propagates in.
  if (auto e = bind("/etc/hosts", context.hosts_path, "/etc/hosts", {"rbind", "rprivate"}))
    return *e;
  if (auto e =
          bind("/etc/hostname", context.hostname_path, "/etc/hostname", {"rbind", "rprivate"})) {
    return *e;
  }
  if (auto e = bind("/etc/resolv.conf", context.resolv_conf_path, "/etc/resolv.conf",
                    {"rbind", "rprivate"})) {
    return *e;
  }
  if (!step.project_dir.empty()) {
    if (auto e =
            bind("project", step.project_dir, std::string(kWorkspace), {"rbind", "rprivate"})) {
      return *e;
    }
  }
  for (const auto& v : step.volumes) {
    std::vector<std::string> options = {"rbind", "rprivate"};
    if (v.read_only) options.push_back("ro");
    if (auto e = bind("volume", v.source, v.destination, std::move(options))) return *e;
  }
  for (const auto& t : step.tmpfs) {
    if (t.size_bytes == 0) {
      return invalid("tmpfs " + quoted(t.destination) +
                     " has no size (it counts against the job's memory: give one)");
    }
    if (auto e = add_mount(
            "tmpfs", t.destination,
            mount(t.destination, "tmpfs", "tmpfs",
                  {"nosuid", "nodev", "mode=1777", "size=" + std::to_string(t.size_bytes)}))) {
      return *e;
    }
  }
  for (const auto& s : step.secrets) {
    if (!valid_secret_name(s.name)) {
      return invalid("secret name " + quoted(s.name) +
                     " is not a file name of letters, digits, '.', '_' and '-'");
    }
    if (auto e = bind("secret " + s.name, s.source, std::string(kSecretsDir) + "/" + s.name,
                      {"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"})) {
      return *e;
    }
  }

  // --- linux
  json::object linux;
  json::array namespaces;
  for (std::string_view ns : {"pid", "ipc", "uts", "mount"}) {
    namespaces.push_back(json::object{{"type", ns}});
  }
  if (step.network != network_mode::host) {
    json::object net{{"type", "network"}};
    if (!step.netns_path.empty()) net["path"] = step.netns_path;
    namespaces.push_back(std::move(net));
  }
  if (context.cgroup_namespace) namespaces.push_back(json::object{{"type", "cgroup"}});
  linux["namespaces"] = std::move(namespaces);
  if (!context.cgroups_path.empty()) linux["cgroupsPath"] = context.cgroups_path;

  json::object resources;
  resources["devices"] = device_rules();
  if (step.memory_bytes) {
    if (*step.memory_bytes < kMinMemory) {
      return invalid("memory limit " + std::to_string(*step.memory_bytes) +
                     " bytes is below the minimum of 6 MiB");
    }
    json::object memory{{"limit", static_cast<std::int64_t>(*step.memory_bytes)}};
    if (step.memory_swap_bytes) {
      if (*step.memory_swap_bytes < *step.memory_bytes) {
        return invalid("memory+swap limit " + std::to_string(*step.memory_swap_bytes) +
                       " bytes is below the memory limit " + std::to_string(*step.memory_bytes));
      }
      memory["swap"] = static_cast<std::int64_t>(*step.memory_swap_bytes);
    }
    resources["memory"] = std::move(memory);
  } else if (step.memory_swap_bytes) {
    return invalid("a memory+swap limit needs a memory limit");
  }
  if (step.cpus) {
    const double quota = std::round(*step.cpus * static_cast<double>(kCpuPeriodUs));
    if (!(quota >= static_cast<double>(kMinCpuQuotaUs)) || quota > 1e12) {
      return invalid("cpus " + std::to_string(*step.cpus) + " is out of range (0.01 or more)");
    }
    resources["cpu"] = json::object{{"quota", static_cast<std::int64_t>(quota)},
                                    {"period", static_cast<std::uint64_t>(kCpuPeriodUs)}};
  }
  if (step.pids_limit) {
    if (*step.pids_limit < 1) {
      return invalid("pids limit " + std::to_string(*step.pids_limit) + " is below 1");
    }
    resources["pids"] = json::object{{"limit", *step.pids_limit}};
  }
  linux["resources"] = std::move(resources);
  linux["maskedPaths"] = to_array(default_masked_paths());
  std::vector<std::string> readonly = default_readonly_paths();
  for (const auto& p : step.readonly_paths) {
    if (!clean_absolute(p)) return invalid("read-only path " + quoted(p) + " is not absolute");
    if (std::find(readonly.begin(), readonly.end(), p) == readonly.end()) readonly.push_back(p);
  }
  linux["readonlyPaths"] = to_array(readonly);
  if (!step.seccomp_unconfined) {
    const seccomp_profile& profile = step.seccomp ? *step.seccomp : default_seccomp_profile();
    seccomp_target target{image.architecture, caps, context.kernel_release};
    auto seccomp = to_oci_seccomp(profile, target);
    if (!seccomp) return seccomp.error();
    linux["seccomp"] = std::move(*seccomp);
  }

  json::object config;
  config["ociVersion"] = "1.0.2";
  config["process"] = std::move(process);
  config["root"] = json::object{{"path", context.rootfs}, {"readonly", false}};
  config["hostname"] = step.hostname;
  config["mounts"] = std::move(mounts);
  config["linux"] = std::move(linux);
  return config;
}

}  // namespace pantry::orchestrator::runner
