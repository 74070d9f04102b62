#pragma once

// Seccomp profiles in docker's format (the format of containers/common's seccomp.json: one
// `archMap` for every architecture, rules with `includes`/`excludes` conditions) and their
// conversion to the OCI runtime-spec `linux.seccomp` object that runc reads.
//
// runc silently accepts the unconverted file: it ignores `archMap`, `includes` and `excludes`, so
// every conditional rule applies at once and the filter is not the one intended. The conversion
// here evaluates the conditions the way containers/common's pkg/seccomp does: the `archMap` entry
// of the container's architecture becomes `architectures`; a rule is kept iff every capability in
// `includes.caps` is in the container's bounding set, none in `excludes.caps` is, the container's
// architecture is in `includes.arches` (when given) and not in `excludes.arches`. Like docker, a
// rule is also kept only when the host kernel is at least `includes.minKernel` and below
// `excludes.minKernel` (containers/common has no minKernel). Errno names (`errno`,
// `defaultErrno`) win over numbers (`errnoRet`, `defaultErrnoRet`), as there.
//
// Pure: no I/O. The profile pantry uses by default is compiled in (default_seccomp_profile()).

#include "pantry/error.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

// One argument comparison of a rule (`args[]`), copied to the OCI form unchanged.
struct seccomp_arg {
  std::uint32_t index = 0;  // argument position, 0-5
  std::uint64_t value = 0;
  std::uint64_t value_two = 0;
  std::string op;  // SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT or _MASKED_EQ
};

// A rule's `includes` or `excludes` condition; empty members do not constrain.
struct seccomp_condition {
  std::vector<std::string> caps;    // "CAP_SYS_ADMIN"…
  std::vector<std::string> arches;  // libseccomp names: "amd64", "x86", "x32", "arm64", "arm"…
  std::string min_kernel;           // "4.8": major.minor
};

struct seccomp_rule {
  std::vector<std::string> names;  // `names`, or `name` alone
  std::string action;              // SCMP_ACT_*
  std::vector<seccomp_arg> args;
  seccomp_condition includes;
  seccomp_condition excludes;
  std::optional<std::uint32_t> errno_ret;  // `errnoRet`
  std::string errno_name;                  // `errno`, e.g. "EPERM"; wins over errno_ret
};

struct seccomp_arch_map_entry {
  std::string architecture;                    // "SCMP_ARCH_X86_64"
  std::vector<std::string> sub_architectures;  // "SCMP_ARCH_X86", "SCMP_ARCH_X32"
};

// A profile in docker's format, as parsed. Unknown members (`comment`…) are ignored.
struct seccomp_profile {
  std::string default_action;
  std::optional<std::uint32_t> default_errno_ret;  // `defaultErrnoRet`
  std::string default_errno;                       // `defaultErrno`; wins over default_errno_ret
  std::vector<std::string> architectures;          // the older form; never together with arch_map
  std::vector<seccomp_arch_map_entry> arch_map;
  std::vector<seccomp_rule> syscalls;
  std::vector<std::string> flags;
  std::string listener_path;
  std::string listener_metadata;
};

// Parses a profile in docker's format. Errors are errc::invalid_argument naming the member, e.g.
// "seccomp profile: syscalls[3].args[0].op: unknown operator \"SCMP_CMP_XX\"". Refused: a rule with
// both `name` and `names`, a profile with both `architectures` and `archMap`, unknown actions and
// operators, a missing `defaultAction`.
result<seccomp_profile> parse_seccomp_profile(std::string_view json);

// The profile pantry applies unless a step says otherwise: containers/common v0.50.1's default
// (orchestrator/runner/data/seccomp.json, the file Debian 12 ships as
// /usr/share/containers/seccomp.json), compiled in. Parsed on first use; thread-safe.
const seccomp_profile& default_seccomp_profile();
// The compiled-in text of that profile.
std::string_view default_seccomp_profile_json() noexcept;

// What the conditions of a profile are evaluated against.
struct seccomp_target {
  // The container's architecture as OCI image configs name it (Go's GOARCH: amd64, arm64, 386,
  // arm, s390x, ppc64le, riscv64, mips64le…); libseccomp's names (x86, mipsel64…) are accepted too.
  std::string arch = "amd64";
  // The container's bounding capability set, "CAP_…" names (bundle.h's default_capabilities()).
  std::vector<std::string> capabilities;
  // The host kernel's release as uname -r prints it ("6.1.0-18-amd64"); needed only when a rule
  // has a `minKernel` (an error then if it does not parse).
  std::string kernel_release;
};

// The OCI runtime-spec `linux.seccomp` object for `profile` applied to `target`: members
// defaultAction, defaultErrnoRet, architectures, flags, listenerPath, listenerMetadata (each only
// when set) and syscalls (names, action, errnoRet when set, args when any). Errors
// (errc::invalid_argument): an unknown architecture, an unknown errno name, an unparsable kernel
// release or minKernel.
result<boost::json::object> to_oci_seccomp(const seccomp_profile& profile,
                                           const seccomp_target& target);

}  // namespace pantry::orchestrator::runner
