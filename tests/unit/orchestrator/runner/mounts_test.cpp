#include "pantry/orchestrator/runner/container.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr std::string_view kMountinfo =
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "90 22 0:50 / /var/lib/pantry/state/job1/scratch rw,nosuid,nodev - tmpfs tmpfs rw,size=1024k\n"
    "91 22 0:51 / /var/lib/pantry/state/job1/rootfs rw - overlay overlay rw,lowerdir=a:b\n"
    "92 22 0:52 / /var/lib/pantry/state/job\\0402/rootfs rw - overlay overlay rw,lowerdir=a\n"
    "93 22 0:53 / /var/lib/pantry/state-other/x rw - tmpfs tmpfs rw\n"
    "94 91 0:54 / /var/lib/pantry/state/job1/rootfs/proc rw - proc proc rw\n"
    "95 22 0:55 / /var/lib/pantry/state/job1/rootfs rw - tmpfs tmpfs rw\n";

TEST(MountsTest, MountsUnderADirectoryComeDeepestFirst) {
  auto m = mounts_under(kMountinfo, "/var/lib/pantry/state");
  // Longer paths first (a mount inside another is longer than it), and of mounts stacked on one
  // path the later (upper) one first.
  EXPECT_THAT(m,
              ElementsAre("/var/lib/pantry/state/job1/rootfs/proc",
                          "/var/lib/pantry/state/job 2/rootfs",  // \040 is a space
                          "/var/lib/pantry/state/job1/scratch", "/var/lib/pantry/state/job1/rootfs",
                          "/var/lib/pantry/state/job1/rootfs"));
}

TEST(MountsTest, APrefixOfANameIsNotADirectory) {
  auto m = mounts_under(kMountinfo, "/var/lib/pantry/state-other");
  EXPECT_THAT(m, ElementsAre("/var/lib/pantry/state-other/x"));
  EXPECT_THAT(mounts_under(kMountinfo, "/var/lib/pantry/stat"), IsEmpty());
}

TEST(MountsTest, TheDirectoryItselfCounts) {
  EXPECT_THAT(mounts_under(kMountinfo, "/var/lib/pantry/state/job1/scratch"),
              ElementsAre("/var/lib/pantry/state/job1/scratch"));
  EXPECT_THAT(mounts_under(kMountinfo, "/var/lib/pantry/state/job1/scratch/"),
              ElementsAre("/var/lib/pantry/state/job1/scratch"));
}

TEST(MountsTest, MalformedLinesAreSkipped) {
  EXPECT_THAT(mounts_under("garbage\n\n1 2 3\n", "/"), IsEmpty());
}

}  // namespace
}  // namespace pantry::orchestrator::runner
