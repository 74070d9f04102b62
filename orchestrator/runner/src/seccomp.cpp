#include "pantry/orchestrator/runner/seccomp.h"

#include "pantry/orchestrator/runner/json_read.h"
#include "strings.h"

#include <boost/json/array.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <utility>

namespace pantry::orchestrator::runner {

namespace detail {
// The default profile: the one Debian's golang-github-containers-common ships
// (/usr/share/containers/seccomp.json),
// generated into the build tree by CMakeLists.txt.
extern const char kEmbeddedSeccompProfile[];
extern const std::size_t kEmbeddedSeccompProfileSize;
}  // namespace detail

namespace {

namespace json = boost::json;
using detail::json_reader;
using detail::quoted;
using detail::to_array;

constexpr std::array<std::string_view, 9> kActions = {
    "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};

constexpr std::array<std::string_view, 7> kOperators = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

template <std::size_t N>
bool one_of(const std::array<std::string_view, N>& set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

struct errno_entry {
  std::string_view name;
  std::uint32_t number;
};

// Errno numbers as asm-generic numbers them (x86, arm, arm64, s390, powerpc, riscv, loongarch).
// 1-34 are the same on every Linux architecture; the rest differ on mips, sparc, alpha and parisc,
// where a rule must give `errnoRet` for them.
constexpr std::array<errno_entry, 48> kErrnos = {{
    {"EPERM", 1},          {"ENOENT", 2},        {"ESRCH", 3},
    {"EINTR", 4},          {"EIO", 5},           {"ENXIO", 6},
    {"E2BIG", 7},          {"ENOEXEC", 8},       {"EBADF", 9},
    {"ECHILD", 10},        {"EAGAIN", 11},       {"EWOULDBLOCK", 11},
    {"ENOMEM", 12},        {"EACCES", 13},       {"EFAULT", 14},
    {"ENOTBLK", 15},       {"EBUSY", 16},        {"EEXIST", 17},
    {"EXDEV", 18},         {"ENODEV", 19},       {"ENOTDIR", 20},
    {"EISDIR", 21},        {"EINVAL", 22},       {"ENFILE", 23},
    {"EMFILE", 24},        {"ENOTTY", 25},       {"ETXTBSY", 26},
    {"EFBIG", 27},         {"ENOSPC", 28},       {"ESPIPE", 29},
    {"EROFS", 30},         {"EMLINK", 31},       {"EPIPE", 32},
    {"EDOM", 33},          {"ERANGE", 34},       {"EDEADLK", 35},
    {"ENAMETOOLONG", 36},  {"ENOLCK", 37},       {"ENOSYS", 38},
    {"ENOTEMPTY", 39},     {"ELOOP", 40},        {"EPROTONOSUPPORT", 93},
    {"EOPNOTSUPP", 95},    {"ENOTSUP", 95},      {"EAFNOSUPPORT", 97},
    {"EADDRNOTAVAIL", 99}, {"ENETUNREACH", 101}, {"ECONNREFUSED", 111},
}};
constexpr std::uint32_t kLastPortableErrno = 34;

struct arch_names {
  std::string_view oci;         // GOARCH, as image configs say
  std::string_view libseccomp;  // as profiles' `arches` say
  std::string_view scmp;        // as `archMap` and OCI `architectures` say
  bool generic_errno;           // errno numbers are asm-generic's
};

constexpr std::array<arch_names, 14> kArches = {{
    {"amd64", "amd64", "SCMP_ARCH_X86_64", true},
    {"386", "x86", "SCMP_ARCH_X86", true},
    {"arm64", "arm64", "SCMP_ARCH_AARCH64", true},
    {"arm", "arm", "SCMP_ARCH_ARM", true},
    {"s390x", "s390x", "SCMP_ARCH_S390X", true},
    {"s390", "s390", "SCMP_ARCH_S390", true},
    {"ppc64le", "ppc64le", "SCMP_ARCH_PPC64LE", true},
    {"ppc64", "ppc64", "SCMP_ARCH_PPC64", true},
    {"riscv64", "riscv64", "SCMP_ARCH_RISCV64", true},
    {"loong64", "loong64", "SCMP_ARCH_LOONGARCH64", true},
    {"mips64", "mips64", "SCMP_ARCH_MIPS64", false},
    {"mips64le", "mipsel64", "SCMP_ARCH_MIPSEL64", false},
    {"mips", "mips", "SCMP_ARCH_MIPS", false},
    {"mipsle", "mipsel", "SCMP_ARCH_MIPSEL", false},
}};

const arch_names* find_arch(std::string_view name) {
  for (const auto& a : kArches) {
    if (a.oci == name || a.libseccomp == name) return &a;
  }
  return nullptr;
}

using kernel_version = std::tuple<int, int, int>;

// "6.1.0-18-amd64" -> {6, 1, 0}; "4.8" -> {4, 8, 0}. At least major.minor is required.
std::optional<kernel_version> parse_kernel(std::string_view s) {
  int parts[3] = {0, 0, 0};
  std::size_t i = 0;
  for (int k = 0; k < 3; ++k) {
    const char* begin = s.data() + i;
    const char* end = s.data() + s.size();
    auto [p, ec] = std::from_chars(begin, end, parts[k]);
    if (ec != std::errc() || p == begin) {
      if (k < 2) return std::nullopt;
      break;
    }
    i = static_cast<std::size_t>(p - s.data());
    if (k < 2) {
      if (i >= s.size() || s[i] != '.') {
        if (k == 0) return std::nullopt;
        break;
      }
      ++i;
    }
  }
  return kernel_version{parts[0], parts[1], parts[2]};
}

result<seccomp_condition> read_condition(const json_reader& r, const json::object& rule,
                                         std::string_view key, const std::string& where) {
  seccomp_condition c;
  auto o = r.object_at(rule, key, where + "." + std::string(key));
  if (!o) return o.error();
  if (*o == nullptr) return c;
  const std::string base = where + "." + std::string(key);
  if (auto e = r.read(**o, "caps", base + ".caps", c.caps)) return *e;
  if (auto e = r.read(**o, "arches", base + ".arches", c.arches)) return *e;
  if (auto e = r.read(**o, "minKernel", base + ".minKernel", c.min_kernel)) return *e;
  if (!c.min_kernel.empty() && !parse_kernel(c.min_kernel)) {
    return r.fail(base + ".minKernel", "expected major.minor, got " + quoted(c.min_kernel));
  }
  return c;
}

result<seccomp_rule> read_rule(const json_reader& r, const json::value& v,
                               const std::string& where) {
  if (!v.is_object()) return r.fail(where, "expected an object");
  const auto& o = v.get_object();
  seccomp_rule rule;
  auto name = r.string_at(o, "name", where + ".name");
  if (!name) return name.error();
  auto names = r.strings_at(o, "names", where + ".names");
  if (!names) return names.error();
  if (!name->empty() && !names->empty()) {
    return r.fail(where, "both 'name' and 'names' given; use one");
  }
  rule.names = name->empty() ? std::move(*names) : std::vector<std::string>{std::move(*name)};

  auto action = r.string_at(o, "action", where + ".action");
  if (!action) return action.error();
  if (!one_of(kActions, *action)) {
    return r.fail(where + ".action", "unknown action " + quoted(*action));
  }
  rule.action = std::move(*action);

  if (const auto* args = o.if_contains("args"); args != nullptr && !args->is_null()) {
    if (!args->is_array()) return r.fail(where + ".args", "expected an array");
    std::size_t i = 0;
    for (const auto& a : args->get_array()) {
      const std::string at = where + ".args[" + std::to_string(i++) + "]";
      if (!a.is_object()) return r.fail(at, "expected an object");
      const auto& ao = a.get_object();
      seccomp_arg arg;
      auto index = r.uint_at(ao, "index", at + ".index", 5);
      if (!index) return index.error();
      arg.index = static_cast<std::uint32_t>(index->value_or(0));
      auto value = r.uint_at(ao, "value", at + ".value");
      if (!value) return value.error();
      arg.value = value->value_or(0);
      auto value_two = r.uint_at(ao, "valueTwo", at + ".valueTwo");
      if (!value_two) return value_two.error();
      arg.value_two = value_two->value_or(0);
      auto op = r.string_at(ao, "op", at + ".op");
      if (!op) return op.error();
      if (!one_of(kOperators, *op)) return r.fail(at + ".op", "unknown operator " + quoted(*op));
      arg.op = std::move(*op);
      rule.args.push_back(std::move(arg));
    }
  }

  auto includes = read_condition(r, o, "includes", where);
  if (!includes) return includes.error();
  rule.includes = std::move(*includes);
  auto excludes = read_condition(r, o, "excludes", where);
  if (!excludes) return excludes.error();
  rule.excludes = std::move(*excludes);

  auto errno_ret = r.uint_at(o, "errnoRet", where + ".errnoRet", UINT32_MAX);
  if (!errno_ret) return errno_ret.error();
  if (*errno_ret) rule.errno_ret = static_cast<std::uint32_t>(**errno_ret);
  if (auto e = r.read(o, "errno", where + ".errno", rule.errno_name)) return *e;
  return rule;
}

// The errno a rule or the default action returns: the name when given (resolved for `arch`), else
// the number, else nothing.
result<std::optional<std::uint32_t>> resolve_errno(std::string_view name,
                                                   std::optional<std::uint32_t> number,
                                                   const arch_names& arch, std::string_view where) {
  if (name.empty()) return number;
  // containers/common also accepts a decimal number written as a string.
  std::uint32_t n = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (ec == std::errc() && p == name.data() + name.size()) return std::optional<std::uint32_t>(n);
  for (const auto& e : kErrnos) {
    if (e.name != name) continue;
    if (arch.generic_errno || e.number <= kLastPortableErrno) {
      return std::optional<std::uint32_t>(e.number);
    }
    if (number) return number;
    return error(errc::invalid_argument, "seccomp profile: " + std::string(where) + ": errno " +
                                             quoted(name) +
                                             " has an architecture-specific number on " +
                                             std::string(arch.oci) + "; give errnoRet as well");
  }
  return error(errc::invalid_argument,
               "seccomp profile: " + std::string(where) + ": unknown errno " + quoted(name));
}

}  // namespace

result<seccomp_profile> parse_seccomp_profile(std::string_view text) {
  const json_reader r("seccomp profile");
  auto document = r.parse_object(text);
  if (!document) return document.error();
  const auto& o = *document;

  seccomp_profile p;
  auto default_action = r.string_at(o, "defaultAction", "defaultAction");
  if (!default_action) return default_action.error();
  if (default_action->empty()) return r.fail("defaultAction", "missing");
  if (!one_of(kActions, *default_action)) {
    return r.fail("defaultAction", "unknown action " + quoted(*default_action));
  }
  p.default_action = std::move(*default_action);
  auto default_errno_ret = r.uint_at(o, "defaultErrnoRet", "defaultErrnoRet", UINT32_MAX);
  if (!default_errno_ret) return default_errno_ret.error();
  if (*default_errno_ret) p.default_errno_ret = static_cast<std::uint32_t>(**default_errno_ret);
  if (auto e = r.read(o, "defaultErrno", "defaultErrno", p.default_errno)) return *e;
  if (auto e = r.read(o, "architectures", "architectures", p.architectures)) return *e;
  if (const auto* am = o.if_contains("archMap"); am != nullptr && !am->is_null()) {
    if (!am->is_array()) return r.fail("archMap", "expected an array");
    std::size_t i = 0;
    for (const auto& e : am->get_array()) {
      const std::string at = "archMap[" + std::to_string(i++) + "]";
      if (!e.is_object()) return r.fail(at, "expected an object");
      seccomp_arch_map_entry entry;
      auto arch = r.string_at(e.get_object(), "architecture", at + ".architecture");
      if (!arch) return arch.error();
      if (arch->empty()) return r.fail(at + ".architecture", "missing");
      entry.architecture = std::move(*arch);
      if (auto err = r.read(e.get_object(), "subArchitectures", at + ".subArchitectures",
                            entry.sub_architectures)) {
        return *err;
      }
      p.arch_map.push_back(std::move(entry));
    }
  }
  if (!p.architectures.empty() && !p.arch_map.empty()) {
    return r.fail("archMap", "both 'architectures' and 'archMap' given; use one");
  }

  if (const auto* calls = o.if_contains("syscalls"); calls != nullptr && !calls->is_null()) {
    if (!calls->is_array()) return r.fail("syscalls", "expected an array");
    std::size_t i = 0;
    for (const auto& c : calls->get_array()) {
      auto rule = read_rule(r, c, "syscalls[" + std::to_string(i++) + "]");
      if (!rule) return rule.error();
      p.syscalls.push_back(std::move(*rule));
    }
  }

  if (auto e = r.read(o, "flags", "flags", p.flags)) return *e;
  if (auto e = r.read(o, "listenerPath", "listenerPath", p.listener_path)) return *e;
  if (auto e = r.read(o, "listenerMetadata", "listenerMetadata", p.listener_metadata)) return *e;
  return p;
}

std::string_view default_seccomp_profile_json() noexcept {
  return {detail::kEmbeddedSeccompProfile, detail::kEmbeddedSeccompProfileSize};
}

const seccomp_profile& default_seccomp_profile() {
  static const seccomp_profile profile = [] {
    auto p = parse_seccomp_profile(default_seccomp_profile_json());
    if (!p) {
      // The file is part of the build; a unit test parses it, so this is a broken build.
      std::fprintf(stderr, "pantry: the compiled-in seccomp profile is invalid: %s\n",
                   p.error().message.c_str());
      std::abort();
    }
    return std::move(*p);
  }();
  return profile;
}

result<json::object> to_oci_seccomp(const seccomp_profile& profile, const seccomp_target& target) {
  const arch_names* arch = find_arch(target.arch);
  if (arch == nullptr) {
    return error(errc::invalid_argument,
                 "seccomp: unknown container architecture " + quoted(target.arch));
  }
  std::optional<kernel_version> kernel;
  auto kernel_at_least = [&](const std::string& min, std::string_view where) -> result<bool> {
    if (!kernel) {
      kernel = parse_kernel(target.kernel_release);
      if (!kernel) {
        return error(errc::invalid_argument,
                     "seccomp: " + std::string(where) + " needs the kernel version, but " +
                         quoted(target.kernel_release) + " is no kernel release");
      }
    }
    const auto want = *parse_kernel(min);  // checked when parsed
    return std::tie(std::get<0>(*kernel), std::get<1>(*kernel)) >=
           std::tie(std::get<0>(want), std::get<1>(want));
  };

  json::object out;
  out["defaultAction"] = profile.default_action;
  auto default_errno =
      resolve_errno(profile.default_errno, profile.default_errno_ret, *arch, "defaultErrno");
  if (!default_errno) return default_errno.error();
  if (*default_errno) out["defaultErrnoRet"] = **default_errno;

  std::vector<std::string> architectures = profile.architectures;
  for (const auto& entry : profile.arch_map) {
    if (entry.architecture != arch->scmp) continue;
    architectures.push_back(entry.architecture);
    architectures.insert(architectures.end(), entry.sub_architectures.begin(),
                         entry.sub_architectures.end());
    break;
  }
  // No entry for this architecture: libseccomp then filters the native one only.
  if (!architectures.empty()) out["architectures"] = to_array(architectures);
  if (!profile.flags.empty()) out["flags"] = to_array(profile.flags);
  if (!profile.listener_path.empty()) out["listenerPath"] = profile.listener_path;
  if (!profile.listener_metadata.empty()) out["listenerMetadata"] = profile.listener_metadata;

  json::array syscalls;
  std::size_t index = 0;
  for (const auto& rule : profile.syscalls) {
    const std::string where = "syscalls[" + std::to_string(index++) + "]";
    const auto& inc = rule.includes;
    const auto& exc = rule.excludes;
    if (!exc.arches.empty() && contains(exc.arches, arch->libseccomp)) continue;
    if (std::any_of(exc.caps.begin(), exc.caps.end(),
                    [&](const std::string& c) { return contains(target.capabilities, c); })) {
      continue;
    }
    if (!exc.min_kernel.empty()) {
      auto at_least = kernel_at_least(exc.min_kernel, where + ".excludes.minKernel");
      if (!at_least) return at_least.error();
      if (*at_least) continue;
    }
    if (!inc.arches.empty() && !contains(inc.arches, arch->libseccomp)) continue;
    if (!std::all_of(inc.caps.begin(), inc.caps.end(),
                     [&](const std::string& c) { return contains(target.capabilities, c); })) {
      continue;
    }
    if (!inc.min_kernel.empty()) {
      auto at_least = kernel_at_least(inc.min_kernel, where + ".includes.minKernel");
      if (!at_least) return at_least.error();
      if (!*at_least) continue;
    }
    if (rule.names.empty()) continue;

    auto errno_ret = resolve_errno(rule.errno_name, rule.errno_ret, *arch, where + ".errno");
    if (!errno_ret) return errno_ret.error();
    json::object call;
    call["names"] = to_array(rule.names);
    call["action"] = rule.action;
    if (*errno_ret) call["errnoRet"] = **errno_ret;
    if (!rule.args.empty()) {
      json::array args;
      for (const auto& a : rule.args) {
        args.push_back(json::object{
            {"index", a.index}, {"value", a.value}, {"valueTwo", a.value_two}, {"op", a.op}});
      }
      call["args"] = std::move(args);
    }
    syscalls.push_back(std::move(call));
  }
  out["syscalls"] = std::move(syscalls);
  return out;
}

}  // namespace pantry::orchestrator::runner
