// Grouping rules: which group an upgrade is in, the group's branch name, its edits applied one
// after the other to one document (checked byte for byte), a conflicting upgrade left out, and
// the commit message.

#include "pantry/orchestrator/pins/groups.h"

#include "unit/orchestrator/pins/requirements_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

using test::doc_of;
using test::hashed;
using test::hex_of;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

registry::pypi::version v(const std::string& text) {
  auto parsed = registry::pypi::version::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return *parsed;
}

pin_change change(const std::string& name, std::optional<std::size_t> index,
                  const std::string& from, const std::string& to, char digit) {
  pin_change c;
  c.name = name;
  c.index = index;
  if (!from.empty()) c.old_version = v(from);
  c.new_version = v(to);
  c.hashes = {"sha256:" + hex_of(digit)};
  return c;
}

// An upgrade of the pin at `index` of `doc` from `from` to `to`.
pin_plan upgrade(const requirements_file& doc, std::size_t index, const std::string& to,
                 char digit) {
  pin_plan p;
  p.result = pin_plan::outcome::upgrade;
  p.index = index;
  p.name = doc.requirements()[index].name;
  p.old_version = v(*doc.requirements()[index].pinned_version());
  p.change = change(p.name, index, p.old_version->str(), to, digit);
  p.reasons = {to + " is the newest release that qualifies"};
  return p;
}

TEST(GroupsTest, AnUpgradeIsInTheFirstGroupWhoseGlobMatchesItsName) {
  const std::vector<config::pins_group> groups = {{"pytest", "pytest*"}, {"all", "*"}};
  ASSERT_NE(group_of(groups, "pytest-cov"), nullptr);
  EXPECT_EQ(group_of(groups, "pytest-cov")->name, "pytest");
  EXPECT_EQ(group_of(groups, "pytest")->name, "pytest");
  EXPECT_EQ(group_of(groups, "requests")->name, "all");
  EXPECT_EQ(group_of({{"pytest", "pytest*"}}, "requests"), nullptr);
  EXPECT_EQ(group_of({}, "pytest"), nullptr);
}

TEST(GroupsTest, TheBranchNamesTheGroupAndTheSetOfVersions) {
  const auto doc = doc_of(hashed("pytest", "7.0", 'a') + hashed("pytest-cov", "4.0", 'b'));
  const pin_plan a = upgrade(doc, 0, "8.0", 'c');
  const pin_plan b = upgrade(doc, 1, "5.0", 'd');
  const std::string name = group_branch("pytest", {&a, &b});
  EXPECT_THAT(name, MatchesRegex("pantry/pins/group/pytest-[0-9a-f]{12}"));
  // The same versions in another order are the same branch; another version is another one.
  EXPECT_EQ(group_branch("pytest", {&b, &a}), name);
  const pin_plan newer = upgrade(doc, 1, "5.1", 'd');
  EXPECT_NE(group_branch("pytest", {&a, &newer}), name);
  EXPECT_NE(group_branch("pytest", {&a}), name);
  // The hash is of the versions only: another group of them differs in its name alone.
  EXPECT_EQ(group_branch("tests", {&a, &b}),
            "pantry/pins/group/tests-" + name.substr(name.size() - 12));
}

TEST(GroupsTest, EveryUpgradeOfAFileEditsTheSameDocumentInTurn) {
  const std::string text = "# dev pins\n" + hashed("pytest", "7.0", 'a') +
                           hashed("pytest-cov", "4.0", 'b') + hashed("requests", "2.0", 'e');
  const auto doc = doc_of(text);
  // pytest-cov 5.0 brings coverage, which sorts before both: pytest's index moves by one.
  pin_plan cov = upgrade(doc, 1, "5.0", 'd');
  pin_change added = change("coverage", std::nullopt, "", "7.4", 'f');
  added.via = "pytest-cov";
  cov.added.push_back(added);
  const pin_plan pytest = upgrade(doc, 0, "8.0", 'c');
  const auto edit =
      apply_group({{"requirements.txt", doc, cov}, {"requirements.txt", doc, pytest}});
  EXPECT_TRUE(edit.left_out.empty()) << edit.left_out.front().second;
  EXPECT_EQ(edit.applied, (std::vector<std::size_t>{0, 1}));
  ASSERT_EQ(edit.files.size(), 1u);
  EXPECT_EQ(edit.files[0].first, "requirements.txt");
  EXPECT_EQ(edit.files[0].second.render(),
            "# dev pins\n" + hashed("coverage", "7.4", 'f') + "    # via pytest-cov\n" +
                hashed("pytest", "8.0", 'c') + hashed("pytest-cov", "5.0", 'd') +
                hashed("requests", "2.0", 'e'));
}

TEST(GroupsTest, AnUpgradeThatDisagreesWithAnEarlierOneIsLeftOutWithTheReason) {
  const auto doc = doc_of(hashed("pytest", "7.0", 'a') + hashed("pytest-cov", "4.0", 'b'));
  // pytest-cov 5.0 needs pytest 8.0 (a co-upgrade); pytest's own upgrade wants 8.1.
  pin_plan cov = upgrade(doc, 1, "5.0", 'd');
  cov.co_upgrades.push_back(change("pytest", 0, "7.0", "8.0", 'c'));
  const pin_plan pytest = upgrade(doc, 0, "8.1", 'e');
  const auto edit =
      apply_group({{"requirements.txt", doc, cov}, {"requirements.txt", doc, pytest}});
  EXPECT_EQ(edit.applied, (std::vector<std::size_t>{0}));
  ASSERT_EQ(edit.left_out.size(), 1u);
  EXPECT_EQ(edit.left_out[0].first, 1u);
  EXPECT_EQ(edit.left_out[0].second, "it sets pytest 8.1, another upgrade of the group 8.0");
  EXPECT_EQ(edit.files[0].second.render(),
            hashed("pytest", "8.0", 'c') + hashed("pytest-cov", "5.0", 'd'));
}

TEST(GroupsTest, UpgradesOfTwoFilesEditEachFile) {
  const auto dev = doc_of(hashed("pytest", "7.0", 'a'));
  auto ci = requirements_file::parse(hashed("pytest-xdist", "3.0", 'b'), "ci/requirements.txt");
  ASSERT_TRUE(ci.has_value());
  const auto edit = apply_group({{"requirements.txt", dev, upgrade(dev, 0, "8.0", 'c')},
                                 {"ci/requirements.txt", *ci, upgrade(*ci, 0, "3.5", 'd')}});
  ASSERT_EQ(edit.files.size(), 2u);
  EXPECT_EQ(edit.files[0].second.render(), hashed("pytest", "8.0", 'c'));
  EXPECT_EQ(edit.files[1].first, "ci/requirements.txt");
  EXPECT_EQ(edit.files[1].second.render(), hashed("pytest-xdist", "3.5", 'd'));
}

TEST(GroupsTest, TheCommitMessageListsEachUpgradeWithItsReasons) {
  const auto doc = doc_of(hashed("pytest", "7.0", 'a') + hashed("pytest-cov", "4.0", 'b'));
  pin_plan a = upgrade(doc, 0, "8.0", 'c');
  a.change->upload_time = "2026-01-02T00:00:00Z";
  pin_plan b = upgrade(doc, 1, "5.0", 'd');
  b.old_yanked = true;
  b.old_yank_reason = "broken";
  EXPECT_EQ(group_commit_message("pytest", {{"requirements.txt", &a}, {"dev.txt", &b}}),
            "pins: group pytest: pytest 7.0 -> 8.0; pytest-cov 4.0 -> 5.0\n"
            "\n"
            "pytest 7.0 -> 8.0 (requirements.txt):\n"
            "8.0 is the newest release that qualifies\n"
            "\n"
            "Uploaded: 2026-01-02T00:00:00Z\n"
            "Pinned version yanked: no\n"
            "\n"
            "pytest-cov 4.0 -> 5.0 (dev.txt):\n"
            "5.0 is the newest release that qualifies\n"
            "Pinned version yanked: yes (broken)\n");
  EXPECT_EQ(group_summary("pytest", {&a}), "group pytest: pytest 7.0 -> 8.0");
}

}  // namespace
}  // namespace pantry::orchestrator::pins
