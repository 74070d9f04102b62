#include "pantry/orchestrator/runner/cgroup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// This machine's table (Debian 12 on a hybrid host: one hierarchy per controller).
constexpr std::string_view kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";

// systemd's hybrid layout: cpu and cpuacct co-mounted, optional fields before the separator.
constexpr std::string_view kSystemdHybridMountinfo =
    "25 21 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 "
    "cgroup2 rw,nsdelegate\n"
    "27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup "
    "cgroup rw,xattr,name=systemd\n"
    "31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup "
    "cgroup rw,cpu,cpuacct\n"
    "32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup "
    "cgroup rw,memory\n";

constexpr std::string_view kV2Mountinfo =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

TEST(CgroupLayoutTest, HybridFromMountinfo) {
  auto l = layout_from_mountinfo(kHybridMountinfo);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->version, cgroup_version::v1);
  EXPECT_TRUE(l->hybrid());
  EXPECT_EQ(l->v1.at("memory"), "/sys/fs/cgroup/memory");
  EXPECT_EQ(l->v1.at("cpuacct"), "/sys/fs/cgroup/cpuacct");
  EXPECT_EQ(l->v1.at("name=systemd"), "/sys/fs/cgroup/systemd");
  EXPECT_EQ(l->unified, "/sys/fs/cgroup/unified");
  EXPECT_THAT(l->hierarchies(), ElementsAre("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct",
                                            "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                                            "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"));
}

TEST(CgroupLayoutTest, CoMountedControllersShareAHierarchy) {
  auto l = layout_from_mountinfo(kSystemdHybridMountinfo);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->v1.at("cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(l->v1.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_FALSE(l->v1.contains("xattr"));
  EXPECT_FALSE(l->v1.contains("rw"));
  EXPECT_EQ(l->hierarchies().size(), 4u);  // cpu,cpuacct once
}

TEST(CgroupLayoutTest, UnifiedFromMountinfo) {
  auto l = layout_from_mountinfo(kV2Mountinfo);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->version, cgroup_version::v2);
  EXPECT_FALSE(l->hybrid());
  EXPECT_THAT(l->v1, IsEmpty());
  EXPECT_EQ(l->unified, "/sys/fs/cgroup");
}

TEST(CgroupLayoutTest, MountPointsAreUnescaped) {
  auto l = layout_from_mountinfo("26 22 0:23 / /tmp/my\\040cgroups rw - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->unified, "/tmp/my cgroups");
}

TEST(CgroupLayoutTest, NoCgroupMounted) {
  auto l = layout_from_mountinfo("22 1 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage\n\n");
  ASSERT_FALSE(l);
  EXPECT_TRUE(l.error().is(errc::not_found));
}

TEST(CgroupPathTest, ContainerUnderParent) {
  EXPECT_EQ(*cgroups_path("pantry", "job-1.a_b"), "/pantry/job-1.a_b");
  EXPECT_EQ(*cgroups_path("/system.slice/pantry/", "j"), "/system.slice/pantry/j");
  for (auto [parent, id] :
       std::vector<std::pair<std::string, std::string>>{{"", "j"},
                                                        {"pantry", ""},
                                                        {"pantry", ".."},
                                                        {"pantry", "a/b"},
                                                        {"../x", "j"},
                                                        {"pantry", std::string(129, 'a')},
                                                        {"a//b", "j"},
                                                        {"pantry", "j k"}}) {
    auto p = cgroups_path(parent, id);
    EXPECT_FALSE(p) << parent << " " << id;
    if (!p) {
      EXPECT_TRUE(p.error().is(errc::invalid_argument));
    }
  }
}

class FakeCgroupfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "pantry-cgroup-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void write(const fs::path& rel, std::string_view text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel, std::ios::binary) << text;
  }

  // A hybrid tree as on these machines with a finished container at /pantry/job1, plus
  // systemd's co-mounted cpu,cpuacct with its two symlinks.
  void make_v1_tree() {
    for (const char* h : {"memory", "cpu,cpuacct", "pids", "systemd"})
      write(fs::path(h) / "cgroup.procs", "");
    fs::create_directory_symlink("cpu,cpuacct", root_ / "cpu");
    fs::create_directory_symlink("cpu,cpuacct", root_ / "cpuacct");
    write("unified/cgroup.controllers", "");
    write("memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
    write("memory/pantry/job1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    write("memory/pantry/job1/memory.max_usage_in_bytes", "16777216\n");
    write("cpu,cpuacct/pantry/job1/cpuacct.usage", "39284690\n");
    write("pids/pantry/job1/pids.events", "max 0\n");
  }

  void make_v2_tree() {
    write("cgroup.controllers", "cpuset cpu io memory pids\n");
    write("pantry/job1/memory.events",
          "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 0\n");
    write("pantry/job1/memory.peak", "123456789\n");
    write("pantry/job1/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n");
    write("pantry/job1/pids.events", "max 3\n");
  }

  fs::path root_;
};

TEST_F(FakeCgroupfsTest, V1LayoutFromDirectory) {
  make_v1_tree();
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->version, cgroup_version::v1);
  EXPECT_TRUE(l->hybrid());
  EXPECT_EQ(l->v1.at("cpu"), root_ / "cpu,cpuacct");
  EXPECT_EQ(l->v1.at("cpuacct"), root_ / "cpu,cpuacct");
  EXPECT_EQ(l->v1.at("name=systemd"), root_ / "systemd");
  EXPECT_EQ(l->unified, root_ / "unified");
  EXPECT_THAT(cgroup_dirs(*l, "/pantry/job1"),
              ElementsAre(root_ / "cpu,cpuacct/pantry/job1", root_ / "memory/pantry/job1",
                          root_ / "pids/pantry/job1", root_ / "systemd/pantry/job1",
                          root_ / "unified/pantry/job1"));
}

TEST_F(FakeCgroupfsTest, V2LayoutFromDirectory) {
  make_v2_tree();
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->version, cgroup_version::v2);
  EXPECT_EQ(l->unified, root_);
  EXPECT_THAT(cgroup_dirs(*l, "/pantry/job1"), ElementsAre(root_ / "pantry/job1"));
}

TEST_F(FakeCgroupfsTest, EmptyDirectoryIsNoLayout) {
  auto l = layout_from_directory(root_);
  ASSERT_FALSE(l);
  EXPECT_TRUE(l.error().is(errc::not_found));
  EXPECT_FALSE(layout_from_directory(root_ / "absent"));
}

TEST_F(FakeCgroupfsTest, V1Accounting) {
  make_v1_tree();
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l);
  auto a = read_accounting(*l, "/pantry/job1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_TRUE(a->oom_killed);
  EXPECT_EQ(a->peak_memory, 16777216u);
  ASSERT_TRUE(a->cpu_seconds);
  EXPECT_DOUBLE_EQ(*a->cpu_seconds, 0.03928469);
  EXPECT_FALSE(a->pids_limit_hit);
  EXPECT_THAT(a->missing, IsEmpty());
}

TEST_F(FakeCgroupfsTest, V2Accounting) {
  make_v2_tree();
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l);
  auto a = read_accounting(*l, "/pantry/job1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_TRUE(a->oom_killed);
  EXPECT_EQ(a->peak_memory, 123456789u);
  ASSERT_TRUE(a->cpu_seconds);
  EXPECT_DOUBLE_EQ(*a->cpu_seconds, 2.5);
  EXPECT_TRUE(a->pids_limit_hit);
  EXPECT_THAT(a->missing, IsEmpty());
}

TEST_F(FakeCgroupfsTest, NoOomIsNotOom) {
  make_v2_tree();
  write("pantry/job1/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
  auto a = read_accounting(*layout_from_directory(root_), "/pantry/job1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_FALSE(a->oom_killed);
}

TEST_F(FakeCgroupfsTest, OlderKernelsMissingFilesAreListedNotFatal) {
  make_v2_tree();
  fs::remove(root_ / "pantry/job1/memory.peak");  // before Linux 5.19
  fs::remove(root_ / "pantry/job1/pids.events");  // pids controller not enabled
  auto a = read_accounting(*layout_from_directory(root_), "/pantry/job1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->peak_memory, std::nullopt);
  EXPECT_TRUE(a->oom_killed);
  EXPECT_FALSE(a->pids_limit_hit);
  EXPECT_THAT(a->missing, ElementsAre((root_ / "pantry/job1/memory.peak").string(),
                                      (root_ / "pantry/job1/pids.events").string()));
}

TEST_F(FakeCgroupfsTest, V1BeforeOomKillCounterAndWithoutPids) {
  make_v1_tree();
  // Before Linux 4.13 memory.oom_control has no oom_kill line.
  write("memory/pantry/job1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
  fs::remove_all(root_ / "pids");
  auto a = read_accounting(*layout_from_directory(root_), "/pantry/job1");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_FALSE(a->oom_killed);
  EXPECT_EQ(a->peak_memory, 16777216u);
  EXPECT_THAT(a->missing,
              ElementsAre((root_ / "memory/pantry/job1/memory.oom_control").string() + " oom_kill",
                          "the pids hierarchy"));
}

TEST_F(FakeCgroupfsTest, MissingCgroupIsNotFoundAndGarbageIsAnError) {
  make_v1_tree();
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l);
  auto gone = read_accounting(*l, "/pantry/job2");
  ASSERT_FALSE(gone);
  EXPECT_TRUE(gone.error().is(errc::not_found));
  EXPECT_THAT(gone.error().message, HasSubstr("memory/pantry/job2 does not exist"));

  write("memory/pantry/job1/memory.max_usage_in_bytes", "lots\n");
  auto bad = read_accounting(*l, "/pantry/job1");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::io_error));
  EXPECT_THAT(bad.error().message,
              HasSubstr("memory.max_usage_in_bytes holds \"lots\n\", not a number"));

  EXPECT_FALSE(read_accounting(*l, "pantry/job1"));
  EXPECT_FALSE(read_accounting(*l, "/pantry/../job1"));
}

TEST_F(FakeCgroupfsTest, StaleContainersUnderTheParent) {
  make_v1_tree();
  write("pids/pantry/job3/pids.events", "max 0\n");   // left in one hierarchy only
  write("memory/pantry/notes.txt", "");               // a file is no cgroup
  write("memory/other/job9/memory.oom_control", "");  // not under pantry's parent
  auto l = layout_from_directory(root_);
  ASSERT_TRUE(l);
  auto stale = list_children(*l, "/pantry");
  ASSERT_TRUE(stale) << stale.error().message;
  EXPECT_THAT(*stale, ElementsAre("job1", "job3"));
  auto none = list_children(*l, "/nothing-here");
  ASSERT_TRUE(none);
  EXPECT_THAT(*none, IsEmpty());

  fs::remove_all(root_);
  fs::create_directories(root_);
  make_v2_tree();
  auto v2 = list_children(*layout_from_directory(root_), "/pantry");
  ASSERT_TRUE(v2);
  EXPECT_THAT(*v2, ElementsAre("job1"));
}

TEST_F(FakeCgroupfsTest, SwapAccounting) {
  make_v1_tree();
  EXPECT_TRUE(swap_accounting(*layout_from_directory(root_), "/pantry"));
  fs::remove(root_ / "memory/memory.memsw.limit_in_bytes");
  EXPECT_FALSE(swap_accounting(*layout_from_directory(root_), "/pantry"));

  fs::remove_all(root_);
  fs::create_directories(root_);
  make_v2_tree();
  EXPECT_FALSE(swap_accounting(*layout_from_directory(root_), "/pantry"));
  write("pantry/memory.swap.max", "max\n");
  EXPECT_TRUE(swap_accounting(*layout_from_directory(root_), "/pantry"));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
