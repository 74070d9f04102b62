#include "pantry/orchestrator/runner/seccomp.h"

#include "pantry/orchestrator/runner/bundle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace pantry::orchestrator::runner {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The actions of the converted rules that name `syscall`, in order.
std::vector<std::string> actions_for(const json::object& oci, std::string_view syscall) {
  std::vector<std::string> out;
  for (const auto& call : oci.at("syscalls").as_array()) {
    const auto& names = call.at("names").as_array();
    if (std::any_of(names.begin(), names.end(),
                    [&](const json::value& n) { return n.as_string() == syscall; })) {
      out.emplace_back(call.at("action").as_string());
    }
  }
  return out;
}

json::object convert(const seccomp_profile& p, seccomp_target t) {
  auto oci = to_oci_seccomp(p, t);
  EXPECT_TRUE(oci) << oci.error().message;
  return oci ? *oci : json::object();
}

seccomp_target docker_default(std::string arch = "amd64") {
  seccomp_target t;
  t.arch = std::move(arch);
  t.capabilities = default_capabilities();
  t.kernel_release = "6.1.0-18-amd64";
  return t;
}

TEST(SeccompTest, EmbeddedProfileIsTheBuildTimeFile) {
  std::ifstream in(PANTRY_SECCOMP_JSON, std::ios::binary);
  ASSERT_TRUE(in) << PANTRY_SECCOMP_JSON;
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_EQ(default_seccomp_profile_json(), s.str());
}

TEST(SeccompTest, DefaultProfileParses) {
  const auto& p = default_seccomp_profile();
  EXPECT_EQ(p.default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(p.default_errno, "ENOSYS");
  EXPECT_EQ(p.arch_map.size(), 7u);
  EXPECT_GT(p.syscalls.size(), 30u);
}

TEST(SeccompTest, DefaultProfileBecomesErrnoEnosysByDefault) {
  auto oci = convert(default_seccomp_profile(), docker_default());
  EXPECT_EQ(oci.at("defaultAction").as_string(), "SCMP_ACT_ERRNO");
  EXPECT_EQ(oci.at("defaultErrnoRet").to_number<int>(), 38)
      << json::serialize(oci.at("defaultErrnoRet"));
  EXPECT_THAT(actions_for(oci, "read"), ElementsAre("SCMP_ACT_ALLOW"));
  // A syscall no rule names falls to the default action (ENOSYS).
  EXPECT_TRUE(actions_for(oci, "no_such_syscall").empty());
}

TEST(SeccompTest, SysAdminOnlySyscallFollowsTheCapability) {
  // bpf is allowed only with CAP_SYS_ADMIN, and explicitly EPERM without it.
  auto without = convert(default_seccomp_profile(), docker_default());
  EXPECT_THAT(actions_for(without, "bpf"), ElementsAre("SCMP_ACT_ERRNO"));
  for (const auto& call : without.at("syscalls").as_array()) {
    if (call.at("action").as_string() == "SCMP_ACT_ERRNO" &&
        json::serialize(call.at("names")).find("\"bpf\"") != std::string::npos) {
      EXPECT_EQ(call.at("errnoRet").to_number<int>(), 1) << json::serialize(call);  // EPERM
    }
  }

  auto t = docker_default();
  t.capabilities.push_back("CAP_SYS_ADMIN");
  auto with = convert(default_seccomp_profile(), t);
  EXPECT_THAT(actions_for(with, "bpf"), ElementsAre("SCMP_ACT_ALLOW"));
  // Granting SYS_ADMIN touches no rule of another capability.
  EXPECT_EQ(actions_for(with, "chroot"), actions_for(without, "chroot"));
}

TEST(SeccompTest, DefaultCapabilitiesUnlockChrootButNotModules) {
  auto oci = convert(default_seccomp_profile(), docker_default());
  EXPECT_THAT(actions_for(oci, "chroot"), ElementsAre("SCMP_ACT_ALLOW"));  // CAP_SYS_CHROOT
  EXPECT_THAT(actions_for(oci, "init_module"), ElementsAre("SCMP_ACT_ERRNO"));
  // CAP_AUDIT_WRITE is in docker's set: socket is allowed without argument filters.
  auto socket_rules = actions_for(oci, "socket");
  EXPECT_THAT(socket_rules, ElementsAre("SCMP_ACT_ALLOW"));

  auto t = docker_default();
  t.capabilities.erase(std::find(t.capabilities.begin(), t.capabilities.end(), "CAP_AUDIT_WRITE"));
  auto no_audit = convert(default_seccomp_profile(), t);
  // Without it, the netlink-audit socket returns EINVAL and every other socket is allowed by
  // argument filters.
  EXPECT_THAT(actions_for(no_audit, "socket"),
              ElementsAre("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_ACT_ALLOW", "SCMP_ACT_ALLOW"));
}

TEST(SeccompTest, ArchMapIsFlattenedForTheContainerArchitecture) {
  auto amd64 = convert(default_seccomp_profile(), docker_default("amd64"));
  EXPECT_EQ(json::serialize(amd64.at("architectures")),
            R"(["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"])");
  auto arm64 = convert(default_seccomp_profile(), docker_default("arm64"));
  EXPECT_EQ(json::serialize(arm64.at("architectures")), R"(["SCMP_ARCH_AARCH64","SCMP_ARCH_ARM"])");
  // No archMap entry: libseccomp's native architecture only, as containers/common leaves it.
  auto ppc = convert(default_seccomp_profile(), docker_default("ppc64le"));
  EXPECT_FALSE(ppc.contains("architectures"));
  EXPECT_FALSE(amd64.contains("archMap"));
}

TEST(SeccompTest, ArchConditionsFollowTheContainerArchitecture) {
  auto amd64 = convert(default_seccomp_profile(), docker_default("amd64"));
  auto arm64 = convert(default_seccomp_profile(), docker_default("arm64"));
  EXPECT_THAT(actions_for(amd64, "arch_prctl"), ElementsAre("SCMP_ACT_ALLOW"));
  EXPECT_TRUE(actions_for(arm64, "arch_prctl").empty());
  EXPECT_THAT(actions_for(arm64, "arm_fadvise64_64"), ElementsAre("SCMP_ACT_ALLOW"));
  EXPECT_TRUE(actions_for(amd64, "arm_fadvise64_64").empty());
  // 386 images are "x86" to libseccomp: modify_ldt names amd64, x32 and x86.
  EXPECT_THAT(actions_for(convert(default_seccomp_profile(), docker_default("386")), "modify_ldt"),
              ElementsAre("SCMP_ACT_ALLOW"));
}

constexpr std::string_view kPtraceProfile = R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [
    {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
    {"name": "old_thing", "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.4"}}
  ]
})";

TEST(SeccompTest, MinKernelComparesTheHostKernel) {
  auto p = parse_seccomp_profile(kPtraceProfile);
  ASSERT_TRUE(p) << p.error().message;
  auto t = docker_default();
  t.kernel_release = "4.4.0-210-generic";
  auto old = convert(*p, t);
  EXPECT_TRUE(actions_for(old, "ptrace").empty());
  EXPECT_THAT(actions_for(old, "old_thing"), ElementsAre("SCMP_ACT_ALLOW"));
  for (const char* release : {"4.8", "4.8.0", "4.19.0-26-amd64", "6.18.44-fc-v1252"}) {
    t.kernel_release = release;
    EXPECT_THAT(actions_for(convert(*p, t), "ptrace"), ElementsAre("SCMP_ACT_ALLOW")) << release;
  }
  t.kernel_release = "5.4";
  EXPECT_TRUE(actions_for(convert(*p, t), "old_thing").empty());
  t.kernel_release = "4.7.10";
  EXPECT_TRUE(actions_for(convert(*p, t), "ptrace").empty());
}

TEST(SeccompTest, MinKernelNeedsAKernelRelease) {
  auto p = parse_seccomp_profile(kPtraceProfile);
  ASSERT_TRUE(p);
  auto t = docker_default();
  t.kernel_release = "";
  auto oci = to_oci_seccomp(*p, t);
  ASSERT_FALSE(oci);
  EXPECT_THAT(oci.error().message, HasSubstr("syscalls[1].includes.minKernel"));
  // A profile without minKernel needs none.
  EXPECT_TRUE(to_oci_seccomp(default_seccomp_profile(), t));
}

// Checks the object against the runtime-spec's schema for linux.seccomp (config-linux.md).
void expect_oci_shape(const json::object& oci) {
  static const std::set<std::string> kTop = {"defaultAction", "defaultErrnoRet", "architectures",
                                             "flags",         "listenerPath",    "listenerMetadata",
                                             "syscalls"};
  static const std::set<std::string> kCall = {"names", "action", "errnoRet", "args"};
  static const std::set<std::string> kArg = {"index", "value", "valueTwo", "op"};
  for (const auto& kv : oci) {
    EXPECT_TRUE(kTop.count(kv.key())) << "unexpected member " << kv.key();
  }
  ASSERT_TRUE(oci.at("defaultAction").is_string());
  for (const auto& a : oci.at("architectures").as_array()) {
    EXPECT_TRUE(a.as_string().starts_with("SCMP_ARCH_")) << a;
  }
  for (const auto& v : oci.at("syscalls").as_array()) {
    const auto& call = v.as_object();
    for (const auto& kv : call) {
      EXPECT_TRUE(kCall.count(kv.key())) << "unexpected member " << kv.key() << " in " << v;
    }
    ASSERT_FALSE(call.at("names").as_array().empty()) << v;
    for (const auto& n : call.at("names").as_array()) {
      EXPECT_TRUE(n.is_string() && !n.as_string().empty()) << v;
    }
    EXPECT_TRUE(call.at("action").as_string().starts_with("SCMP_ACT_")) << v;
    if (call.contains("errnoRet")) {
      EXPECT_TRUE(call.at("errnoRet").is_number()) << v;
    }
    if (call.contains("args")) {
      for (const auto& a : call.at("args").as_array()) {
        for (const auto& kv : a.as_object()) {
          EXPECT_TRUE(kArg.count(kv.key())) << "unexpected member " << kv.key() << " in " << v;
        }
        EXPECT_LE(a.at("index").to_number<int>(), 5) << v;
        EXPECT_TRUE(a.at("value").is_number()) << v;
        EXPECT_TRUE(a.at("op").as_string().starts_with("SCMP_CMP_")) << v;
      }
    }
  }
}

TEST(SeccompTest, OutputHasTheOciShape) {
  for (const char* arch : {"amd64", "arm64", "s390x"}) {
    SCOPED_TRACE(arch);
    auto oci = convert(default_seccomp_profile(), docker_default(arch));
    expect_oci_shape(oci);
    // Round-trips through text (what config.json holds).
    auto again = json::parse(json::serialize(oci));
    EXPECT_EQ(again.as_object(), oci);
  }
}

TEST(SeccompTest, ArgumentsAreCopied) {
  auto oci = convert(default_seccomp_profile(), docker_default());
  int personality_rules = 0;
  for (const auto& call : oci.at("syscalls").as_array()) {
    if (call.at("names").as_array().front().as_string() != "personality") continue;
    ++personality_rules;
    const auto& arg = call.at("args").as_array().front();
    EXPECT_EQ(arg.at("index").to_number<int>(), 0);
    EXPECT_EQ(arg.at("op").as_string(), "SCMP_CMP_EQ");
  }
  EXPECT_EQ(personality_rules, 5);
}

TEST(SeccompTest, ErrnoNameWinsOverNumber) {
  auto p = parse_seccomp_profile(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "defaultErrno": "ENOSYS",
    "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "errno": "EPERM"},
                 {"names": ["b"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                 {"names": ["c"], "action": "SCMP_ACT_ERRNO", "errno": "5"}]})");
  ASSERT_TRUE(p) << p.error().message;
  auto oci = convert(*p, docker_default());
  EXPECT_EQ(oci.at("defaultErrnoRet").to_number<int>(), 38);
  const auto& calls = oci.at("syscalls").as_array();
  EXPECT_EQ(calls.at(0).at("errnoRet").to_number<int>(), 1);
  EXPECT_EQ(calls.at(1).at("errnoRet").to_number<int>(), 13);
  EXPECT_EQ(calls.at(2).at("errnoRet").to_number<int>(), 5);

  // ENOSYS is 89 on mips: the name alone cannot be trusted there, the number is.
  auto mips = to_oci_seccomp(*p, docker_default("mips64le"));
  ASSERT_TRUE(mips) << mips.error().message;
  EXPECT_EQ(mips->at("defaultErrnoRet").to_number<int>(), 1);
  auto p2 =
      parse_seccomp_profile(R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS"})");
  ASSERT_TRUE(p2);
  auto bad = to_oci_seccomp(*p2, docker_default("mips64le"));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("ENOSYS"));
}

TEST(SeccompTest, RefusesMalformedProfiles) {
  struct bad_case {
    const char* json;
    const char* message;
  };
  for (const auto& c : std::vector<bad_case>{
           {"[", "not JSON"},
           {"[]", "expected a JSON object"},
           {R"({"syscalls": []})", "defaultAction: missing"},
           {R"({"defaultAction": "SCMP_ACT_MAYBE"})", "unknown action \"SCMP_ACT_MAYBE\""},
           {R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})",
            "both 'architectures' and 'archMap'"},
           {R"({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]})",
            "syscalls[0]: both 'name' and 'names'"},
           {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"],
               "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}]})",
            "syscalls[0].args[0].op: unknown operator \"SCMP_CMP_XX\""},
           {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"],
               "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]})",
            "syscalls[0].args[0].index: value 6 is out of range"},
           {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "a",
               "action": "SCMP_ACT_ALLOW"}]})",
            "syscalls[0].names: expected an array of strings"},
           {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"],
               "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]})",
            "syscalls[0].includes.minKernel: expected major.minor"},
       }) {
    auto p = parse_seccomp_profile(c.json);
    ASSERT_FALSE(p) << c.json;
    EXPECT_THAT(p.error().message, HasSubstr(c.message)) << c.json;
    EXPECT_THAT(p.error().message, ::testing::StartsWith("seccomp profile: "));
    EXPECT_TRUE(p.error().is(errc::invalid_argument));
  }
}

TEST(SeccompTest, RefusesUnknownArchitecturesAndErrnos) {
  auto arch = to_oci_seccomp(default_seccomp_profile(), docker_default("vax"));
  ASSERT_FALSE(arch);
  EXPECT_THAT(arch.error().message, HasSubstr("\"vax\""));
  auto p = parse_seccomp_profile(
      R"({"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "errno": "EWHATEVER"}]})");
  ASSERT_TRUE(p);
  auto e = to_oci_seccomp(*p, docker_default());
  ASSERT_FALSE(e);
  EXPECT_THAT(e.error().message, HasSubstr("syscalls[0].errno: unknown errno \"EWHATEVER\""));
}

TEST(SeccompTest, SingleNameAndEmptyRules) {
  auto p = parse_seccomp_profile(
      R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
      "syscalls": [{"name": "one", "action": "SCMP_ACT_KILL"},
                   {"names": [], "action": "SCMP_ACT_ALLOW"}]})");
  ASSERT_TRUE(p) << p.error().message;
  auto oci = convert(*p, docker_default());
  EXPECT_EQ(json::serialize(oci),
            R"({"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],)"
            R"("syscalls":[{"names":["one"],"action":"SCMP_ACT_KILL"}]})");
}

}  // namespace
}  // namespace pantry::orchestrator::runner
