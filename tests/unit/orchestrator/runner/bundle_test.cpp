#include "pantry/orchestrator/runner/bundle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <cstdlib>

namespace pantry::orchestrator::runner {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& s : v.as_array())
    out.emplace_back(s.as_string());
  return out;
}

image_config python_image() {
  image_config i;
  i.env = {"PATH=/opt/venv/bin:/usr/bin:/bin", "LANG=C.UTF-8",
           "PIP_INDEX_URL=https://pypi.org/simple"};
  i.cmd = {"python3"};
  return i;
}

bundle_context context() {
  bundle_context c;
  c.rootfs = "/var/lib/pantry/run/job1/rootfs";
  c.hosts_path = "/var/lib/pantry/run/job1/hosts";
  c.hostname_path = "/var/lib/pantry/run/job1/hostname";
  c.resolv_conf_path = "/var/lib/pantry/run/job1/resolv.conf";
  c.cgroups_path = "/pantry/job1";
  c.rlimit_hard = {{"RLIMIT_NOFILE", 20000}};
  c.kernel_release = "6.1.0-18-amd64";
  c.passwd = "root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n";
  c.group = "root:x:0:\napp:x:1000:\nusers:x:100:app\n";
  return c;
}

json::object config_for(const image_config& image, const step_options& step,
                        const bundle_context& ctx = context()) {
  auto c = runtime_config(image, step, ctx);
  EXPECT_TRUE(c) << c.error().message;
  return c ? *c : json::object();
}

const json::object* find_mount(const json::object& config, std::string_view destination) {
  for (const auto& m : config.at("mounts").as_array()) {
    if (m.at("destination").as_string() == destination) return &m.as_object();
  }
  return nullptr;
}

std::vector<std::string> namespace_types(const json::object& config) {
  std::vector<std::string> out;
  for (const auto& ns : config.at("linux").at("namespaces").as_array())
    out.emplace_back(ns.at("type").as_string());
  return out;
}

// --- capabilities, namespaces, paths

TEST(BundleTest, DockerDefaultCapabilitiesExactly) {
  EXPECT_THAT(default_capabilities(),
              ElementsAre("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                          "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                          "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"));
}

TEST(BundleTest, RootGetsBoundingEffectivePermittedAndNothingInheritable) {
  auto c = config_for(python_image(), {});
  const auto& caps = c.at("process").at("capabilities").as_object();
  EXPECT_EQ(caps.size(), 3u) << json::serialize(caps);
  for (const char* set : {"bounding", "effective", "permitted"}) {
    EXPECT_THAT(strings(caps.at(set)), ElementsAreArray(default_capabilities())) << set;
  }
  EXPECT_FALSE(caps.contains("inheritable"));
  EXPECT_FALSE(caps.contains("ambient"));
  EXPECT_EQ(c.at("process").at("noNewPrivileges"), json::value(true));
}

TEST(BundleTest, NonRootGetsTheBoundingSetOnly) {
  step_options s;
  s.user = "app";
  auto c = config_for(python_image(), s);
  const auto& caps = c.at("process").at("capabilities").as_object();
  EXPECT_THAT(strings(caps.at("bounding")), ElementsAreArray(default_capabilities()));
  EXPECT_EQ(caps.size(), 1u) << json::serialize(caps);
  EXPECT_EQ(json::serialize(c.at("process").at("user")),
            R"({"uid":1000,"gid":1000,"additionalGids":[100]})");
}

TEST(BundleTest, NamespacesFollowTheNetworkMode) {
  step_options s;
  EXPECT_THAT(namespace_types(config_for(python_image(), s)),
              ElementsAre("pid", "ipc", "uts", "mount", "network"));
  s.network = network_mode::none;
  EXPECT_THAT(namespace_types(config_for(python_image(), s)),
              ElementsAre("pid", "ipc", "uts", "mount", "network"));
  s.network = network_mode::isolated;
  s.netns_path = "/proc/1234/fd/7";
  auto joined = config_for(python_image(), s);
  EXPECT_EQ(json::serialize(joined.at("linux").at("namespaces").as_array().back()),
            R"({"type":"network","path":"/proc/1234/fd/7"})");
  s.network = network_mode::host;
  EXPECT_THAT(namespace_types(config_for(python_image(), s)),
              ElementsAre("pid", "ipc", "uts", "mount"));
  auto ctx = context();
  ctx.cgroup_namespace = true;
  EXPECT_THAT(namespace_types(config_for(python_image(), s, ctx)),
              ElementsAre("pid", "ipc", "uts", "mount", "cgroup"));
}

TEST(BundleTest, DockerMaskedAndReadonlyPaths) {
  step_options s;
  s.readonly_paths = {"/etc/ssl", "/proc/sys"};
  auto c = config_for(python_image(), s);
  EXPECT_THAT(strings(c.at("linux").at("maskedPaths")),
              ElementsAre("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                          "/proc/sched_debug", "/proc/scsi", "/sys/firmware"));
  EXPECT_THAT(strings(c.at("linux").at("readonlyPaths")),
              ElementsAre("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
                          "/etc/ssl"));
  s.readonly_paths = {"etc"};
  auto bad = runtime_config(python_image(), s, context());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("\"etc\""));
}

// --- mounts

TEST(BundleTest, DefaultMountsAsDocker) {
  auto c = config_for(python_image(), {});
  std::vector<std::string> destinations;
  for (const auto& m : c.at("mounts").as_array())
    destinations.emplace_back(m.at("destination").as_string());
  EXPECT_THAT(destinations,
              ElementsAre("/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
                          "/dev/shm", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"));
  EXPECT_EQ(
      json::serialize(*find_mount(c, "/sys")),
      R"({"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]})");
  EXPECT_EQ(
      json::serialize(*find_mount(c, "/sys/fs/cgroup")),
      R"({"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid","noexec","nodev"]})");
  EXPECT_THAT(strings(find_mount(c, "/dev/shm")->at("options")),
              ElementsAre("nosuid", "noexec", "nodev", "mode=1777", "size=67108864"));
  EXPECT_EQ(
      json::serialize(*find_mount(c, "/etc/resolv.conf")),
      R"({"destination":"/etc/resolv.conf","type":"bind","source":"/var/lib/pantry/run/job1/resolv.conf","options":["rbind","rprivate"]})");
  EXPECT_EQ(json::serialize(c.at("root")),
            R"({"path":"/var/lib/pantry/run/job1/rootfs","readonly":false})");
  EXPECT_EQ(c.at("hostname").as_string(), "pantry");
}

TEST(BundleTest, ProjectVolumesTmpfsAndSecrets) {
  step_options s;
  s.project_dir = "/home/ci/project";
  s.volumes = {{"/srv/cache", "/root/.cache", false}, {"/srv/data", "/data", true}};
  s.tmpfs = {{"/tmp", 512u << 20}};
  s.secrets = {{"pypi_token", "/var/lib/pantry/run/job1/secrets/pypi_token", ""}};
  auto c = config_for(python_image(), s);
  EXPECT_EQ(
      json::serialize(*find_mount(c, "/workspace")),
      R"({"destination":"/workspace","type":"bind","source":"/home/ci/project","options":["rbind","rprivate"]})");
  EXPECT_THAT(strings(find_mount(c, "/root/.cache")->at("options")),
              ElementsAre("rbind", "rprivate"));
  EXPECT_THAT(strings(find_mount(c, "/data")->at("options")),
              ElementsAre("rbind", "rprivate", "ro"));
  EXPECT_EQ(
      json::serialize(*find_mount(c, "/tmp")),
      R"({"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","mode=1777","size=536870912"]})");
  const auto* secret = find_mount(c, "/run/secrets/pypi_token");
  ASSERT_NE(secret, nullptr);
  EXPECT_EQ(secret->at("source").as_string(), "/var/lib/pantry/run/job1/secrets/pypi_token");
  EXPECT_THAT(strings(secret->at("options")),
              ElementsAre("rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"));
  // Secrets are files, never environment.
  for (const auto& e : c.at("process").at("env").as_array()) {
    EXPECT_THAT(std::string(e.as_string()), ::testing::Not(HasSubstr("pypi_token")));
  }
}

TEST(BundleTest, RefusesBadMounts) {
  struct bad_case {
    step_options step;
    const char* message;
  };
  std::vector<bad_case> cases;
  auto add = [&](auto mutate, const char* message) {
    step_options s;
    mutate(s);
    cases.push_back({std::move(s), message});
  };
  add(
      [](step_options& s) {
        s.volumes = {{"/a", "data", false}};
      },
      "volume destination \"data\" is not a clean absolute path");
  add([](step_options& s) { s.volumes = {{"/a", "/", false}}; }, "volume destination \"/\"");
  add([](step_options& s) { s.volumes = {{"/a", "/x/../etc", false}}; }, "\"/x/../etc\"");
  add([](step_options& s) { s.volumes = {{"/a", "/x//y", false}}; }, "\"/x//y\"");
  add([](step_options& s) { s.volumes = {{"/a", "/proc/sys", false}}; }, "is under /proc");
  add([](step_options& s) { s.volumes = {{"/a", "/dev", false}}; }, "is under /dev");
  add(
      [](step_options& s) {
        s.volumes = {{"relative", "/x", false}};
      },
      "volume source \"relative\" is not an absolute host path");
  add([](step_options& s) { s.volumes = {{"/a", "/etc/hosts", false}}; }, "is already mounted");
  add(
      [](step_options& s) {
        s.volumes = {{"/a", "/x", false}, {"/b", "/x", true}};
      },
      "volume destination \"/x\" is already mounted");
  add(
      [](step_options& s) {
        s.project_dir = "/p";
        s.tmpfs = {{"/workspace", 1 << 20}};
      },
      "tmpfs destination \"/workspace\" is already mounted");
  add([](step_options& s) { s.tmpfs = {{"/tmp", 0}}; }, "tmpfs \"/tmp\" has no size");
  add(
      [](step_options& s) {
        s.secrets = {{"../etc/passwd", "/s", ""}};
      },
      "secret name \"../etc/passwd\"");
  add(
      [](step_options& s) {
        s.secrets = {{"a", "/s", ""}, {"a", "/t", ""}};
      },
      "secret a destination \"/run/secrets/a\" is already mounted");
  for (auto& c : cases) {
    auto r = runtime_config(python_image(), c.step, context());
    ASSERT_FALSE(r) << c.message;
    EXPECT_THAT(r.error().message, HasSubstr(c.message));
    EXPECT_TRUE(r.error().is(errc::invalid_argument));
  }
}

// --- environment

TEST(BundleTest, EnvironmentMergeRules) {
  ::setenv("PANTRY_HOST_ONLY", "leak", 1);
  step_options s;
  s.env = {"LANG=en_US.UTF-8", "EXTRA=1=2"};
  s.index_url = "http://127.0.0.1:8585/simple/";
  auto env = step_environment(python_image(), s, exec_user{0, 0, {}, "root", "/root"});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_THAT(*env,
              ElementsAre("PATH=/opt/venv/bin:/usr/bin:/bin", "HOSTNAME=pantry", "LANG=en_US.UTF-8",
                          // the image's own index is replaced: the job could not reach it
                          "PIP_INDEX_URL=http://127.0.0.1:8585/simple/",
                          "UV_DEFAULT_INDEX=http://127.0.0.1:8585/simple/",
                          "UV_INDEX_URL=http://127.0.0.1:8585/simple/",
                          "PDM_PYPI_URL=http://127.0.0.1:8585/simple/", "PIP_NO_CACHE_DIR=1",
                          "PYTHONUNBUFFERED=1", "EXTRA=1=2", "HOME=/root"));
  for (const auto& e : *env)
    EXPECT_THAT(e, ::testing::Not(HasSubstr("PANTRY_HOST_ONLY")));
  ::unsetenv("PANTRY_HOST_ONLY");
}

TEST(BundleTest, StepWinsOverPantryDefaults) {
  step_options s;
  s.index_url = "http://127.0.0.1:8585/simple/";
  s.env = {"PIP_INDEX_URL=http://mirror/simple/", "PYTHONUNBUFFERED=0", "HOME=/tmp",
           "UV_INDEX_URL=http://other/"};
  auto env = step_environment(image_config{}, s, exec_user{});
  ASSERT_TRUE(env);
  EXPECT_THAT(*env, ElementsAre(std::string("PATH=") + std::string(kDefaultPath), "HOSTNAME=pantry",
                                "UV_DEFAULT_INDEX=http://127.0.0.1:8585/simple/",
                                "PDM_PYPI_URL=http://127.0.0.1:8585/simple/", "PIP_NO_CACHE_DIR=1",
                                "PIP_INDEX_URL=http://mirror/simple/", "PYTHONUNBUFFERED=0",
                                "HOME=/tmp", "UV_INDEX_URL=http://other/"));
}

TEST(BundleTest, NoIndexUrlSetsNoIndexVariables) {
  image_config image;
  image.env = {"NOVALUE", "=x", "A=1"};  // entries without a key or value are dropped
  auto env = step_environment(image, {}, exec_user{1000, 1000, {}, "app", "/home/app"});
  ASSERT_TRUE(env);
  EXPECT_THAT(
      *env, ElementsAre(std::string("PATH=") + std::string(kDefaultPath), "HOSTNAME=pantry", "A=1",
                        "PIP_NO_CACHE_DIR=1", "PYTHONUNBUFFERED=1", "HOME=/home/app"));
}

TEST(BundleTest, StepEnvMustCarryValues) {
  for (const char* bad : {"HOME", "=x", ""}) {
    step_options s;
    s.env = {bad};
    auto env = step_environment(image_config{}, s, exec_user{});
    ASSERT_FALSE(env) << bad;
    EXPECT_THAT(env.error().message, HasSubstr("is not KEY=VALUE"));
  }
}

TEST(BundleTest, ConfigCarriesTheEnvironmentAndHomeOfTheUser) {
  step_options s;
  s.user = "1000";
  auto c = config_for(python_image(), s);
  auto env = strings(c.at("process").at("env"));
  EXPECT_EQ(env.back(), "HOME=/home/app");
}

// --- command and working directory

TEST(BundleTest, CommandRules) {
  image_config image;
  image.entrypoint = {"/entry.sh"};
  image.cmd = {"serve", "--port=80"};
  EXPECT_THAT(*step_command(image, {}), ElementsAre("/entry.sh", "serve", "--port=80"));
  step_options argv;
  argv.argv = {"pytest", "-x"};
  EXPECT_THAT(*step_command(image, argv), ElementsAre("/entry.sh", "pytest", "-x"));
  step_options ep;
  ep.entrypoint = std::vector<std::string>{"/bin/sh", "-c"};
  EXPECT_THAT(*step_command(image, ep),
              ElementsAre("/bin/sh", "-c"));  // the image's Cmd is dropped
  ep.argv = {"echo hi"};
  EXPECT_THAT(*step_command(image, ep), ElementsAre("/bin/sh", "-c", "echo hi"));
  step_options clear;
  clear.entrypoint = std::vector<std::string>{};
  clear.argv = {"true"};
  EXPECT_THAT(*step_command(image, clear), ElementsAre("true"));

  auto none = step_command(image_config{}, {});
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message, HasSubstr("no command"));
}

TEST(BundleTest, WorkingDirectoryRules) {
  auto cwd = [](const image_config& i, const step_options& s) {
    return std::string(config_for(i, s).at("process").at("cwd").as_string());
  };
  image_config image = python_image();
  step_options s;
  EXPECT_EQ(cwd(image, s), "/");
  s.project_dir = "/home/ci/project";
  EXPECT_EQ(cwd(image, s), "/workspace");
  image.working_dir = "/app";
  EXPECT_EQ(cwd(image, s), "/app");
  s.working_dir = "/workspace/sub";
  EXPECT_EQ(cwd(image, s), "/workspace/sub");
  s.working_dir = "sub";
  auto bad = runtime_config(image, s, context());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("working directory \"sub\""));
}

TEST(BundleTest, ImageUserIsHonouredAndStepUserWins) {
  image_config image = python_image();
  image.user = "app";
  auto c = config_for(image, {});
  EXPECT_EQ(c.at("process").at("user").at("uid").to_number<int>(), 1000);
  step_options s;
  s.user = "0:0";
  EXPECT_EQ(config_for(image, s).at("process").at("user").at("uid").to_number<int>(), 0);
  image.user = "ghost";
  auto bad = runtime_config(image, {}, context());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("\"ghost\""));
}

// --- limits

TEST(BundleTest, RlimitsAreCappedAtTheHostsHardLimits) {
  auto capped = cap_rlimits({{"RLIMIT_NOFILE", 1048576, 1048576},
                             {"RLIMIT_NPROC", 100, 200},
                             {"RLIMIT_CORE", 0, UINT64_MAX}},
                            {{"RLIMIT_NOFILE", 20000}, {"RLIMIT_NPROC", 150}});
  ASSERT_TRUE(capped) << capped.error().message;
  ASSERT_EQ(capped->size(), 3u);
  EXPECT_EQ((*capped)[0].soft, 20000u);
  EXPECT_EQ((*capped)[0].hard, 20000u);
  EXPECT_EQ((*capped)[1].soft, 100u);  // already below the host's
  EXPECT_EQ((*capped)[1].hard, 150u);
  EXPECT_EQ((*capped)[2].hard, UINT64_MAX);  // the host's is unknown: kept

  auto c = config_for(python_image(), {});
  EXPECT_EQ(json::serialize(c.at("process").at("rlimits")),
            R"([{"type":"RLIMIT_NOFILE","hard":20000,"soft":20000}])");

  for (const auto& [wanted, message] :
       std::vector<std::pair<std::vector<rlimit_spec>, std::string>>{
           {{{"RLIMIT_FILES", 1, 1}}, "\"RLIMIT_FILES\" is not a Linux rlimit"},
           {{{"RLIMIT_NOFILE", 1, 1}, {"RLIMIT_NOFILE", 2, 2}}, "RLIMIT_NOFILE is given twice"},
           {{{"RLIMIT_NOFILE", 5, 4}}, "soft limit 5 is above the hard limit 4"},
       }) {
    auto r = cap_rlimits(wanted, {});
    ASSERT_FALSE(r) << message;
    EXPECT_THAT(r.error().message, HasSubstr(message));
  }
}

TEST(BundleTest, ResourceLimits) {
  step_options s;
  s.memory_bytes = 2ull << 30;
  s.memory_swap_bytes = 2ull << 30;
  s.cpus = 1.5;
  s.pids_limit = 512;
  auto c = config_for(python_image(), s);
  const auto& r = c.at("linux").at("resources").as_object();
  EXPECT_EQ(json::serialize(r.at("memory")), R"({"limit":2147483648,"swap":2147483648})");
  EXPECT_EQ(json::serialize(r.at("cpu")), R"({"quota":150000,"period":100000})");
  EXPECT_EQ(json::serialize(r.at("pids")), R"({"limit":512})");
  EXPECT_EQ(json::serialize(r.at("devices").as_array().front()),
            R"({"allow":false,"access":"rwm"})");
  EXPECT_EQ(c.at("linux").at("cgroupsPath").as_string(), "/pantry/job1");

  auto unlimited = config_for(python_image(), {});
  const auto& u = unlimited.at("linux").at("resources").as_object();
  EXPECT_FALSE(u.contains("memory"));
  EXPECT_FALSE(u.contains("cpu"));
  EXPECT_FALSE(u.contains("pids"));

  struct bad_case {
    step_options step;
    const char* message;
  };
  std::vector<bad_case> cases(5);
  cases[0].step.memory_bytes = 1 << 20;
  cases[0].message = "below the minimum of 6 MiB";
  cases[1].step.memory_bytes = 64 << 20;
  cases[1].step.memory_swap_bytes = 32 << 20;
  cases[1].message = "memory+swap limit 33554432 bytes is below the memory limit 67108864";
  cases[2].step.cpus = 0.001;
  cases[2].message = "cpus 0.001000 is out of range";
  cases[3].step.pids_limit = 0;
  cases[3].message = "pids limit 0 is below 1";
  cases[4].step.memory_swap_bytes = 64 << 20;
  cases[4].message = "needs a memory limit";
  for (auto& c : cases) {
    auto r = runtime_config(python_image(), c.step, context());
    ASSERT_FALSE(r) << c.message;
    EXPECT_THAT(r.error().message, HasSubstr(c.message));
  }
}

// --- seccomp and the rest

TEST(BundleTest, SeccompIsTheConvertedDefaultProfile) {
  auto c = config_for(python_image(), {});
  const auto& seccomp = c.at("linux").at("seccomp").as_object();
  EXPECT_EQ(seccomp.at("defaultAction").as_string(), "SCMP_ACT_ERRNO");
  EXPECT_EQ(json::serialize(seccomp.at("architectures")),
            R"(["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"])");
  EXPECT_FALSE(seccomp.contains("archMap"));

  image_config arm = python_image();
  arm.architecture = "arm64";
  EXPECT_EQ(json::serialize(config_for(arm, {}).at("linux").at("seccomp").at("architectures")),
            R"(["SCMP_ARCH_AARCH64","SCMP_ARCH_ARM"])");

  step_options unconfined;
  unconfined.seccomp_unconfined = true;
  EXPECT_FALSE(config_for(python_image(), unconfined).at("linux").as_object().contains("seccomp"));

  step_options custom;
  auto profile = parse_seccomp_profile(R"({"defaultAction": "SCMP_ACT_LOG"})");
  ASSERT_TRUE(profile);
  custom.seccomp = std::make_shared<seccomp_profile>(*profile);
  EXPECT_EQ(config_for(python_image(), custom).at("linux").at("seccomp").at("defaultAction"),
            json::value("SCMP_ACT_LOG"));
}

TEST(BundleTest, TopLevelShape) {
  auto c = config_for(python_image(), {});
  std::vector<std::string> keys;
  for (const auto& kv : c)
    keys.emplace_back(kv.key());
  EXPECT_THAT(keys, ElementsAre("ociVersion", "process", "root", "hostname", "mounts", "linux"));
  EXPECT_EQ(c.at("ociVersion").as_string(), "1.0.2");
  EXPECT_EQ(c.at("process").at("terminal"), json::value(false));
  EXPECT_THAT(strings(c.at("process").at("args")), ElementsAre("python3"));
}

TEST(BundleTest, HostnameIsValidated) {
  step_options s;
  s.hostname = "ci-job.example";
  EXPECT_EQ(config_for(python_image(), s).at("hostname").as_string(), "ci-job.example");
  for (const char* bad : {"", "-x", "a_b", "a..b", "x y"}) {
    s.hostname = bad;
    auto r = runtime_config(python_image(), s, context());
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("is not a valid host name"));
  }
  auto ctx = context();
  ctx.rootfs.clear();
  EXPECT_FALSE(runtime_config(python_image(), {}, ctx));
}

TEST(BundleTest, EtcFiles) {
  EXPECT_EQ(hosts_file("pantry"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
            "ff02::2\tip6-allrouters\n127.0.1.1\tpantry\n");
  EXPECT_EQ(hostname_file("pantry"), "pantry\n");
  EXPECT_EQ(resolv_conf(network_mode::host, "nameserver 10.0.0.2"), "nameserver 10.0.0.2\n");
  const std::string isolated = resolv_conf(network_mode::isolated, "nameserver 10.0.0.2\n");
  EXPECT_THAT(isolated, ::testing::Not(HasSubstr("nameserver")));
  EXPECT_THAT(isolated, HasSubstr("isolated"));
}

TEST(BundleTest, NetworkModeNames) {
  for (auto mode : {network_mode::isolated, network_mode::none, network_mode::host}) {
    auto parsed = parse_network_mode(to_string(mode));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, mode);
  }
  auto bad = parse_network_mode("bridge");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "network \"bridge\" is not one of isolated, none, host");
}

TEST(BundleTest, ParsesImageConfigs) {
  auto c = parse_image_config(R"({"architecture": "arm64", "os": "linux",
    "config": {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "WorkingDir": "/app", "User": "app:app",
               "Entrypoint": ["/init"], "Cmd": ["python3", "-m", "app"], "Labels": {"a": "b"}},
    "rootfs": {"type": "layers", "diff_ids": []}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->architecture, "arm64");
  EXPECT_THAT(c->env, ElementsAre("PATH=/usr/bin", "LANG=C.UTF-8"));
  EXPECT_EQ(c->working_dir, "/app");
  EXPECT_EQ(c->user, "app:app");
  EXPECT_THAT(c->entrypoint, ElementsAre("/init"));
  EXPECT_THAT(c->cmd, ElementsAre("python3", "-m", "app"));

  // Docker writes null for unset lists; an image may have no config at all.
  auto nulls = parse_image_config(
      R"({"architecture": "amd64", "config": {"Entrypoint": null, "Cmd": null}})");
  ASSERT_TRUE(nulls) << nulls.error().message;
  EXPECT_THAT(nulls->entrypoint, IsEmpty());
  auto bare = parse_image_config(R"({})");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->architecture, "amd64");

  auto bad = parse_image_config(R"({"config": {"Env": "PATH=/bin"}})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "image config: config.Env: expected an array of strings");
  EXPECT_FALSE(parse_image_config("{"));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
