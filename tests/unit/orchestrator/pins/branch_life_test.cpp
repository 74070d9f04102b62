// The life of a pin branch (branch_life.h): the bot's commits told from anyone else's, an existing
// branch kept, rebuilt or left, and the older upgrades a newer one supersedes.

#include "pantry/orchestrator/pins/branch_life.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

using registry::pypi::version;

const std::string kBot = "pantry <pantry@localhost>";
const std::string kBase(40, 'b');

version v(std::string_view text) {
  auto parsed = version::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return *parsed;
}

branch_commit bot_commit(char id) {
  return {std::string(40, id), kBot, kBot, true};
}

TEST(BranchLifeTest, TheBranchOfAnUpgradeNamesTheNormalizedVersion) {
  EXPECT_EQ(upgrade_branch("pantry-demo-lib", v("1.1")), "pantry/pins/pantry-demo-lib-1.1");
  EXPECT_EQ(upgrade_branch("a", v("2.0-1")), "pantry/pins/a-2.0.post1");
}

TEST(BranchLifeTest, TheTrailerIsTheMessagesLastParagraph) {
  EXPECT_EQ(with_bot_trailer("pins: a 1 -> 2\n\nwhy\n\n", "pantry/pins/a-2"),
            "pins: a 1 -> 2\n\nwhy\n\nPantry-Pins: pantry/pins/a-2\n");
}

TEST(BranchLifeTest, GitLogRecordsAreReadWithTheirTrailer) {
  const std::string log = std::string(40, 'a') + "\x1f" + kBot + "\x1f" + kBot +
                          "\x1fpantry/pins/a-2\x1e\n" + std::string(40, 'c') +
                          "\x1f"
                          "Ada <ada@example.org>\x1f" +
                          kBot + "\x1f\x1e\n";
  auto commits = parse_commit_log(log);
  ASSERT_TRUE(commits.has_value()) << commits.error().message;
  ASSERT_EQ(commits->size(), 2u);
  EXPECT_EQ((*commits)[0], bot_commit('a'));
  EXPECT_EQ((*commits)[1],
            (branch_commit{std::string(40, 'c'), "Ada <ada@example.org>", kBot, false}));
  auto empty = parse_commit_log("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  auto bad = parse_commit_log("abc\x1fme\x1e");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("2 fields, not 4"), std::string::npos) << bad.error().message;
}

TEST(BranchLifeTest, ACommitIsTheBotsOnlyWithItsIdentityAndTheTrailer) {
  EXPECT_TRUE(made_by_bot(bot_commit('a')));
  const std::string ada = "Ada <ada@example.org>";
  // Amended or rebased by Ada: she is its committer.
  const branch_commit amended{std::string(40, '1'), kBot, ada, true};
  // Committed by the bot's identity for someone else.
  const branch_commit authored{std::string(40, '2'), "Bo <bo@example.org>", kBot, true};
  // The bot's name without the trailer: another tool or person under the same identity.
  const branch_commit bare{std::string(40, '3'), kBot, kBot, false};
  for (const auto& c : {amended, authored, bare})
    EXPECT_FALSE(made_by_bot(c)) << c.author << " / " << c.committer;
  EXPECT_EQ(
      other_committers({bot_commit('a'), amended, authored, bare, amended}),
      (std::vector<std::string>{ada, "Bo <bo@example.org>",
                                "pantry <pantry@localhost> (without the Pantry-Pins trailer)"}));
  EXPECT_TRUE(other_committers({bot_commit('a'), bot_commit('b')}).empty());
}

TEST(BranchLifeTest, AnExistingBranchIsKeptOnlyWhenItIsWhatBumpWritesOnTheBase) {
  const existing_branch current{{bot_commit('a')}, kBase, "tree-new"};
  EXPECT_EQ(judge_existing(current, kBase, "tree-new"),
            (branch_verdict{branch_verdict::fate::keep, ""}));

  // The base branch moved: the bot's one commit is made again on it.
  EXPECT_EQ(judge_existing(current, std::string(40, 'n'), "tree-new"),
            (branch_verdict{branch_verdict::fate::rebuild, "its base branch moved"}));
  // Same base, different files (new hashes or co-upgrades).
  EXPECT_EQ(judge_existing(current, kBase, "tree-newer"),
            (branch_verdict{branch_verdict::fate::rebuild,
                            "its files differ from what bump writes now"}));
  // Two commits of the bot's: made again as one.
  const existing_branch two{{bot_commit('a'), bot_commit('c')}, std::string(40, 'c'), "tree-new"};
  EXPECT_EQ(judge_existing(two, kBase, "tree-new").what, branch_verdict::fate::rebuild);
  // Its commits are in the base already (no commit beyond the merge base): nothing of anyone's
  // is lost by making it again.
  const existing_branch merged{{}, std::string(40, 'p'), "tree-old"};
  EXPECT_EQ(judge_existing(merged, kBase, "tree-new").what, branch_verdict::fate::rebuild);
}

TEST(BranchLifeTest, ABranchWithSomeoneElsesCommitIsLeftNamingThem) {
  const branch_commit human{std::string(40, 'h'), "Ada <ada@example.org>", "Ada <ada@example.org>",
                            false};
  const existing_branch b{{human, bot_commit('a')}, std::string(40, 'a'), "tree"};
  // Whatever the base and the files: a person's commit is never overwritten.
  for (const std::string& base : {kBase, std::string(40, 'a')}) {
    EXPECT_EQ(
        judge_existing(b, base, "tree"),
        (branch_verdict{branch_verdict::fate::leave, "has commits by Ada <ada@example.org>"}));
  }
}

TEST(BranchLifeTest, HeadsAreReadFromLsRemoteUnderAPrefix) {
  const std::string listed = std::string(40, '1') + "\trefs/heads/main\n" + std::string(40, '2') +
                             "\trefs/heads/pantry/pins/a-1.0\n" + std::string(40, '3') +
                             "\trefs/tags/pantry/pins/x\n";
  EXPECT_EQ(parse_heads(listed, "pantry/pins/"), (std::vector<std::pair<std::string, std::string>>{
                                                     {"pantry/pins/a-1.0", std::string(40, '2')}}));
  EXPECT_EQ(parse_heads(listed, "").size(), 2u);
  EXPECT_TRUE(parse_heads("", "pantry/pins/").empty());
}

TEST(BranchLifeTest, OnlyOlderUpgradesOfTheSameProjectAreSuperseded) {
  const std::vector<std::string> heads = {
      "pantry/pins/lib-1.0",        // older: superseded
      "pantry/pins/lib-1.1rc1",     // an older pre-release: superseded
      "pantry/pins/lib-1.2",        // the new one itself: not older
      "pantry/pins/lib-2.0",        // newer: left
      "pantry/pins/lib-extra-1.0",  // another project, lib-extra
      "pantry/pins/lib-1-0",        // not written the way bump writes 1.post0
      "pantry/pins/libx-1.0",       // another project
      "pantry/pins/org-lib-1.0",    // an image branch of org/lib
      "main",
  };
  EXPECT_EQ(older_upgrades(heads, "lib", v("1.2")),
            (std::vector<std::string>{"pantry/pins/lib-1.0", "pantry/pins/lib-1.1rc1"}));
  EXPECT_EQ(older_upgrades(heads, "lib-extra", v("1.1")),
            (std::vector<std::string>{"pantry/pins/lib-extra-1.0"}));
  EXPECT_TRUE(older_upgrades(heads, "lib", v("0.9")).empty());
}

TEST(BranchLifeTest, OtherGroupBranchesAreTheGroupsOwnButTheProposedOne) {
  const std::vector<std::string> heads = {
      "pantry/pins/group/pytest-0123456789ab",      // the group's older set
      "pantry/pins/group/pytest-ba9876543210",      // the one proposed now
      "pantry/pins/group/pytest-extra-0123456789",  // group pytest-extra's
      "pantry/pins/group/pytest-0123456789abc",     // not a hash of 12
      "pantry/pins/group/pytest-0123456789AB",      // not lower-case hex
      "pantry/pins/pytest-8.0",
      // Project group-pytest's CalVer 202312011234: twelve hex digits, a project's branch all the
      // same (a group's is under pantry/pins/group/, which no project's can be).
      "pantry/pins/group-pytest-202312011234",
      "main",
  };
  EXPECT_EQ(other_group_branches(heads, "pytest", "pantry/pins/group/pytest-ba9876543210"),
            (std::vector<std::string>{"pantry/pins/group/pytest-0123456789ab"}));
  EXPECT_EQ(other_group_branches(heads, "pytest-extra", "pantry/pins/group/pytest-extra-x"),
            (std::vector<std::string>{}));
  EXPECT_TRUE(other_group_branches(heads, "lint", "pantry/pins/group/lint-0123456789ab").empty());
}

}  // namespace
}  // namespace pantry::orchestrator::pins
