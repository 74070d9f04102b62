// The runner: section: the built-in runner's runc, its places on the host (derived from data_dir
// unless set), its layer store, and what a step gets when it does not say.

#include "chars.h"
#include "emit.h"
#include "message.h"
#include "section.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <system_error>

namespace pantry::config {
namespace {

constexpr std::size_t kIdHexDigits = 12;

// Where the derived places live: /run is a tmpfs on every systemd machine and in containers, and
// runc's own default root (/run/runc) is under it too.
constexpr std::string_view kPlacesParent = "/run/pantry/";
constexpr std::string_view kCgroupPrefix = "pantry-";

std::string derived_runc_root(const std::string& id) {
  return std::string(kPlacesParent) + id + "/runc";
}
std::string derived_state_dir(const std::string& id) {
  return std::string(kPlacesParent) + id + "/containers";
}
std::string derived_cgroup_parent(const std::string& id) {
  return std::string(kCgroupPrefix) + id;
}

// `path` made absolute and lexically normal, without a trailing '/' (except for "/" itself).
std::filesystem::path absolute_normal(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path.empty() ? "." : path, ec);
  // Without a current directory (it was removed) the path is used as written.
  if (ec) p = path;
  p = p.lexically_normal();
  if (p.has_relative_path() && !p.has_filename()) p = p.parent_path();
  return p;
}

}  // namespace

std::string data_dir_id(std::string_view data_dir) {
  const std::string path = absolute_normal(std::filesystem::path(data_dir)).string();
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(path.data(), path.size(), md.data(), &len, EVP_sha256(), nullptr);
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string id;
  for (std::size_t i = 0; i < kIdHexDigits / 2; ++i) {
    id += kHex[md[i] >> 4];
    id += kHex[md[i] & 0xF];
  }
  return id;
}

runner_places runner_places_for(const config& c) {
  const runner_config& r = c.runner;
  const std::string id = data_dir_id(c.data_dir);
  std::filesystem::path layers(r.layers.dir);
  if (layers.is_relative()) layers = std::filesystem::path(c.data_dir) / layers;
  return {
      .runc_root = r.runc_root.value_or(derived_runc_root(id)),
      .state_dir = r.state_dir.value_or(derived_state_dir(id)),
      .cgroup_parent = r.cgroup_parent.value_or(derived_cgroup_parent(id)),
      .layers_dir = absolute_normal(layers).string(),
  };
}

namespace detail {
namespace {

constexpr std::array<std::string_view, 9> kRunnerKeys = {"enabled",   "runc",          "runc_root",
                                                         "state_dir", "cgroup_parent", "layers",
                                                         "job_port",  "max_line",      "defaults"};
constexpr std::array<std::string_view, 2> kLayersKeys = {"dir", "max_size"};
constexpr std::array<std::string_view, 5> kDefaultsKeys = {"memory", "cpus", "pids_limit",
                                                           "timeout", "tmpfs_size"};

// Docker's minimum: below it runc's own start-up does not fit.
constexpr std::uint64_t kMinMemory = std::uint64_t{6} << 20;
// Linux takes a tmpfs of size 0 as one without a limit.
constexpr std::uint64_t kMinTmpfsSize = std::uint64_t{1} << 20;
// A cut line must still show something readable: a timestamp prefix plus a screen line.
constexpr std::uint64_t kMinMaxLine = 80;
// A line is held in memory until it ends or reaches this length.
constexpr std::uint64_t kMaxMaxLine = std::uint64_t{16} << 20;
// A cgroup's CPU quota is whole microseconds of a 100ms period: 0.01 CPU is 1ms.
constexpr double kMinCpus = 0.01;
constexpr double kMaxCpus = 4096;
// The kernel's PID_MAX_LIMIT on 64-bit machines.
constexpr unsigned kMaxPids = 4194304;

// Why `path` cannot be one of the places the runner empties at start, or nullopt.
std::optional<std::string> place_problem(const std::string& path, std::string_view example) {
  const std::string hint = "; use a directory of pantry's own, e.g. " + std::string(example);
  if (!path.starts_with('/')) return quote(path) + " is not an absolute path" + hint;
  const std::filesystem::path normal = absolute_normal(path);
  if (std::distance(normal.begin(), normal.end()) < 3) {
    return quote(path) +
           " is the root or a top-level directory, and the runner removes whatever it finds in "
           "this directory when it starts" +
           hint;
  }
  if (normal == "/run/runc") {
    return quote(path) +
           " is runc's default root, which other tools share, and the runner "
           "removes every container in it when it starts" +
           hint;
  }
  return std::nullopt;
}

std::optional<std::string> cgroup_parent_problem(std::string_view name) {
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char ch) {
    return is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '.' || ch == '-';
  });
  if (!chars_ok || name == "." || name == "..") {
    return quote(name) +
           " is not one cgroup name; use letters, digits, '_', '.' and '-', e.g. pantry-ci";
  }
  return std::nullopt;
}

// "1.5", "2", "0": a decimal number of CPUs, or nullopt.
std::optional<double> parse_cpus(std::string_view s) {
  const std::size_t dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  const std::string_view fraction =
      dot == std::string_view::npos ? std::string_view("0") : s.substr(dot + 1);
  if (!all_digits(whole) || !all_digits(fraction)) return std::nullopt;
  double value = 0;
  const auto [end, ec] =
      std::from_chars(s.data(), s.data() + s.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// The shortest text that parse_cpus() reads back as `cpus`.
std::string format_cpus(double cpus) {
  std::array<char, 64> buf{};
  const auto [end, ec] =
      std::to_chars(buf.data(), buf.data() + buf.size(), cpus, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buf.data(), end) : std::to_string(cpus);
}

// An absolute path of the runner's that it empties at start; notes where it was set.
std::optional<std::string> read_place(reader& r, const entry& e, std::string_view example) {
  auto s = r.as_text(e, "an absolute path, e.g. " + std::string(example));
  if (!s) return std::nullopt;
  if (auto why = place_problem(*s, example)) {
    r.fail(e, *why);
    return std::nullopt;
  }
  r.note(e.path, e.mark());
  return s;
}

void read_layers(reader& r, const entry& e, runner_layers& layers) {
  r.read_map(e, kLayersKeys, [&](const entry& f) {
    if (f.key == "dir") {
      if (auto s =
              r.as_text(f, "a directory, e.g. layers (under data_dir) or /srv/pantry/layers")) {
        layers.dir = std::move(*s);
        r.note(f.path, f.mark());
      }
    } else if (f.key == "max_size") {
      if (auto n = r.read_size(f, "20GiB")) layers.max_size = *n;
    }
  });
}

// A size of at least `min` bytes; `why` says what a smaller one would mean.
std::optional<std::uint64_t> read_size_at_least(reader& r, const entry& e, std::uint64_t min,
                                                std::string_view why, std::string_view example) {
  auto n = r.read_size(e, example);
  if (n && *n < min) {
    r.fail(e, quote(e.value.Scalar()) + " is less than " + format_size(min) + std::string(why) +
                  "; set e.g. " + std::string(example));
    return std::nullopt;
  }
  return n;
}

void read_step_defaults(reader& r, const entry& e, runner_step_defaults& d) {
  r.read_map(e, kDefaultsKeys, [&](const entry& f) {
    if (f.key == "memory") {
      if (auto n = read_size_at_least(r, f, kMinMemory, ", the least a container can start with",
                                      "2GiB")) {
        d.memory = *n;
      }
    } else if (f.key == "cpus") {
      auto s = r.as_scalar(f, "a number of CPUs, e.g. 1.5");
      if (!s) return;
      const std::string range = "use 0 for no limit, or a number of CPUs from " +
                                format_cpus(kMinCpus) + " to " + format_cpus(kMaxCpus) +
                                ", e.g. 1.5";
      const std::optional<double> cpus = parse_cpus(*s);
      if (!cpus) {
        r.fail(f, quote(*s) + " is not a number of CPUs; " + range);
        return;
      }
      if ((*cpus != 0 && *cpus < kMinCpus) || *cpus > kMaxCpus) {
        r.fail(f, quote(*s) + " is out of range; " + range);
        return;
      }
      d.cpus = *cpus;
    } else if (f.key == "pids_limit") {
      const std::string range =
          "use a number of processes from 1 to " + std::to_string(kMaxPids) + ", e.g. 4096";
      if (auto n = r.read_count(f, 1, kMaxPids, range)) d.pids_limit = *n;
    } else if (f.key == "timeout") {
      if (auto t = r.read_duration(f)) d.timeout = *t;
    } else if (f.key == "tmpfs_size") {
      if (auto n = read_size_at_least(r, f, kMinTmpfsSize,
                                      " (and 0 would be a tmpfs without a limit)", "1GiB")) {
        d.tmpfs_size = *n;
      }
    }
  });
}

void read_runner(reader& r, const entry& e, config& c) {
  runner_config& rc = c.runner;
  r.read_map(e, kRunnerKeys, [&](const entry& f) {
    if (f.key == "enabled") {
      if (auto b = r.read_bool(f)) rc.enabled = *b;
    } else if (f.key == "runc") {
      auto s = r.as_text(f, "the absolute path of runc, e.g. /usr/sbin/runc");
      if (!s) return;
      if (!s->starts_with('/')) {
        r.fail(f, quote(*s) + " is not an absolute path; give runc's, e.g. /usr/sbin/runc");
        return;
      }
      rc.runc = std::move(*s);
    } else if (f.key == "runc_root") {
      if (auto s = read_place(r, f, "/run/pantry/ci/runc")) rc.runc_root = std::move(*s);
    } else if (f.key == "state_dir") {
      if (auto s = read_place(r, f, "/run/pantry/ci/containers")) rc.state_dir = std::move(*s);
    } else if (f.key == "cgroup_parent") {
      auto s = r.as_text(f, "a cgroup name, e.g. pantry-ci");
      if (!s) return;
      if (auto why = cgroup_parent_problem(*s)) {
        r.fail(f, *why);
        return;
      }
      rc.cgroup_parent = std::move(*s);
    } else if (f.key == "layers") {
      read_layers(r, f, rc.layers);
    } else if (f.key == "job_port") {
      if (auto n = r.read_count(f, 1, 65535, "use a port from 1 to 65535, e.g. 8585")) {
        rc.job_port = static_cast<std::uint16_t>(*n);
      }
    } else if (f.key == "max_line") {
      auto n = r.read_size(f, "16KiB");
      if (!n) return;
      if (*n < kMinMaxLine || *n > kMaxMaxLine) {
        r.fail(f, quote(f.value.Scalar()) + " is out of range; use a size from " +
                      format_size(kMinMaxLine) + " to " + format_size(kMaxMaxLine) +
                      ", e.g. 16KiB");
        return;
      }
      rc.max_line = *n;
    } else if (f.key == "defaults") {
      read_step_defaults(r, f, rc.defaults);
    }
  });
}

// A place set to exactly what it would be derived as is the derived one (see runner_config).
void settle_runner(config& c) {
  runner_config& rc = c.runner;
  const std::string id = data_dir_id(c.data_dir);
  if (rc.runc_root == derived_runc_root(id)) rc.runc_root.reset();
  if (rc.state_dir == derived_state_dir(id)) rc.state_dir.reset();
  if (rc.cgroup_parent == derived_cgroup_parent(id)) rc.cgroup_parent.reset();
}

// Whether `inner` is `outer` or under it (both absolute and lexically normal).
bool same_or_under(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  const auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end();
}

// The runner empties runc_root and state_dir at start and evicts in layers.dir: no one of them
// may hold another.
void check_runner(reader& r, const config& c) {
  const runner_places p = runner_places_for(c);
  struct place {
    std::string_view path;  // the key
    std::filesystem::path dir;
  };
  const std::array<place, 3> places = {{
      {"runner.runc_root", absolute_normal(p.runc_root)},
      {"runner.state_dir", absolute_normal(p.state_dir)},
      {"runner.layers.dir", absolute_normal(p.layers_dir)},
  }};
  for (std::size_t i = 0; i < places.size(); ++i) {
    for (std::size_t j = 0; j < places.size(); ++j) {
      if (i == j || !same_or_under(places[j].dir, places[i].dir)) continue;
      // Reported once per pair, at whichever of the two (or data_dir) this document set.
      if (j < i && same_or_under(places[i].dir, places[j].dir)) continue;
      std::optional<YAML::Mark> mark = r.noted(places[j].path);
      std::string_view at = places[j].path;
      if (!mark) {
        mark = r.noted(places[i].path);
        at = places[i].path;
      }
      if (!mark) {
        mark = r.noted("data_dir");
        at = "data_dir";
      }
      if (!mark) continue;
      const std::string relation = places[i].dir == places[j].dir ? " is " : " is inside ";
      r.fail(*mark, at,
             quote(places[j].dir.string()) + " (" + std::string(places[j].path) + ")" + relation +
                 quote(places[i].dir.string()) + " (" + std::string(places[i].path) +
                 "), and the runner empties or evicts in each of them on its own; give each its "
                 "own directory");
    }
  }
}

// A place the runner derived is written with its value, so that `pantry config show` says where
// it is, and a comment, so that it is clear the value follows data_dir.
void emit_place(YAML::Emitter& out, std::string_view key, const std::optional<std::string>& set,
                const std::string& resolved) {
  emit_key(out, key, resolved);
  if (!set) out << YAML::Comment("derived from data_dir");
}

void emit_runner(YAML::Emitter& out, const config& c, secrets) {
  const runner_config& rc = c.runner;
  const runner_places p = runner_places_for(c);
  out << YAML::BeginMap;
  emit_key(out, "enabled", rc.enabled);
  emit_key(out, "runc", rc.runc);
  emit_place(out, "runc_root", rc.runc_root, p.runc_root);
  emit_place(out, "state_dir", rc.state_dir, p.state_dir);
  emit_place(out, "cgroup_parent", rc.cgroup_parent, p.cgroup_parent);
  out << YAML::Key << "layers" << YAML::Value << YAML::BeginMap;
  emit_key(out, "dir", rc.layers.dir);
  if (!rc.layers.dir.starts_with('/')) {
    out << YAML::Comment("relative to data_dir: " + p.layers_dir);
  } else if (rc.layers.dir != p.layers_dir) {
    out << YAML::Comment(p.layers_dir);
  }
  emit_key(out, "max_size", format_size(rc.layers.max_size));
  out << YAML::EndMap;
  emit_key(out, "job_port", rc.job_port);
  emit_key(out, "max_line", format_size(rc.max_line));
  out << YAML::Key << "defaults" << YAML::Value << YAML::BeginMap;
  emit_key(out, "memory", format_size(rc.defaults.memory));
  emit_key(out, "cpus", format_cpus(rc.defaults.cpus));
  emit_key(out, "pids_limit", rc.defaults.pids_limit);
  emit_key(out, "timeout", format_duration(rc.defaults.timeout));
  emit_key(out, "tmpfs_size", format_size(rc.defaults.tmpfs_size));
  out << YAML::EndMap;
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 1> kKeys = {{{"runner", read_runner, emit_runner}}};
constexpr std::array<key_set, 3> kMaps = {{
    {"runner", kRunnerKeys},
    {"runner.layers", kLayersKeys},
    {"runner.defaults", kDefaultsKeys},
}};

}  // namespace

constinit const section runner_section = {
    .keys = kKeys, .maps = kMaps, .check = check_runner, .settle = settle_runner};

}  // namespace detail
}  // namespace pantry::config
