// The pin bot's decisions against an index given as data: which version is proposed and why,
// co-upgrades and added pins from the new version's Requires-Dist, hashes, and the edits that
// apply a plan (checked by byte comparison of the whole document).

#include "pantry/orchestrator/pins/decide.h"

#include "unit/orchestrator/pins/decide_helpers.h"
#include "unit/orchestrator/pins/requirements_text.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

namespace pypi = registry::pypi;
using test::doc_of;
using test::hashed;
using test::hex_of;
using test::reasons_of;
using namespace std::chrono_literals;

// A fake index: pages and metadata as data, and the requests it received.
struct fake_index {
  std::map<std::string, pypi::project_page> pages;
  std::map<std::string, std::string> metadata;  // "name version" -> METADATA
  std::vector<std::string> asked;
  bool down = false;

  // Adds one wheel of `name` `v`; its sha256 is 64 times `digit` ("" for none).
  pypi::file_entry& add(const std::string& name, const std::string& v, char digit,
                        std::string upload = "2026-01-01T00:00:00.000000Z",
                        std::string tag = "py3-none-any") {
    auto& page = pages[name];
    page.name = name;
    page.api_version = "1.1";
    pypi::file_entry f;
    f.filename = name + "-" + v + "-" + tag + ".whl";
    for (auto& ch : f.filename) {
      if (ch == '-' && &ch < f.filename.data() + name.size()) ch = '_';
    }
    f.url = "http://index.test/files/" + f.filename;
    if (digit != 0) f.hashes["sha256"] = hex_of(digit);
    f.upload_time = std::move(upload);
    f.core_metadata.emplace();
    page.files.push_back(f);
    return page.files.back();
  }

  index_source source() {
    return index_source{[this](const std::string& name) -> result<pypi::project_page> {
                          asked.push_back("page " + name);
                          if (down) return error(errc::io_error, "index.test: connection refused");
                          const auto it = pages.find(name);
                          if (it == pages.end())
                            return error(errc::not_found, "no project " + name);
                          return it->second;
                        },
                        [this](const std::string& name, const pypi::version& v,
                               const pypi::file_entry&) -> result<std::string> {
                          asked.push_back("metadata " + name + " " + v.str());
                          const auto it = metadata.find(name + " " + v.str());
                          if (it == metadata.end())
                            return "Metadata-Version: 2.1\nName: " + name + "\n\n";
                          return it->second;
                        }};
  }
};

upgrade_policy policy_for(std::vector<std::string> pythons = {"3.11"}) {
  config::pins_config pins;
  pins.python = std::move(pythons);
  pins.platforms = {"linux-x86_64"};
  auto p = upgrade_policy::from_config(pins,
                                       std::chrono::sys_days(std::chrono::year(2026) / 6 / 1) + 0s);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message);
  return *p;
}

pin_plan decide_ok(const requirements_file& doc, std::size_t index, const upgrade_policy& policy,
                   fake_index& index_data) {
  auto plan = decide(doc, index, policy, index_data.source());
  EXPECT_TRUE(plan.has_value()) << (plan ? "" : plan.error().message);
  return plan ? *plan : pin_plan{};
}

TEST(DecideTest, NewestReleaseIsProposedWithEveryHashSorted) {
  fake_index idx;
  idx.add("attrs", "23.1.0", 'a');
  idx.add("attrs", "23.2.0", 'c');
  idx.add("attrs", "23.2.0", 'b', "2026-01-02T00:00:00Z", "cp311-cp311-manylinux_2_17_x86_64");
  idx.add("attrs", "23.1.5", 'd');
  auto doc = doc_of(hashed("attrs", "23.1.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  ASSERT_TRUE(plan.change);
  EXPECT_EQ(plan.change->new_version.str(), "23.2.0");
  EXPECT_EQ(plan.change->hashes,
            (std::vector<std::string>{"sha256:" + hex_of('b'), "sha256:" + hex_of('c')}));
  EXPECT_EQ(plan.change->upload_time, "2026-01-01T00:00:00.000000Z");
  EXPECT_EQ(summary(plan), "attrs 23.1.0 -> 23.2.0");

  ASSERT_TRUE(apply(doc, plan).has_value());
  EXPECT_EQ(doc.render(), "attrs==23.2.0 \\\n    --hash=sha256:" + hex_of('b') +
                              " \\\n    --hash=sha256:" + hex_of('c') + "\n");
}

TEST(DecideTest, PinAtNewestIsUpToDate) {
  fake_index idx;
  idx.add("attrs", "23.1.0", 'a');
  idx.add("attrs", "22.0.0", 'b');
  const auto doc = doc_of(hashed("attrs", "23.1.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::up_to_date) << reasons_of(plan);
  EXPECT_FALSE(plan.change);
  EXPECT_EQ(summary(plan), "attrs 23.1.0 up to date");
}

TEST(DecideTest, YankedTooYoungPrereleaseAndRequiresPythonArePassedOverWithReasons) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "1.1.0", 'b');
  idx.add("six", "1.2.0", 'c').yanked = "broken wheel";
  idx.add("six", "1.3.0", 'd').requires_python = ">=3.12";
  idx.add("six", "1.4.0rc1", 'e');
  idx.add("six", "1.5.0", 'f', "2026-05-30T12:00:00Z");
  auto policy = policy_for();
  policy.min_release_age = 7 * 24h;
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy, idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(plan.change->new_version.str(), "1.1.0");
  const std::string why = reasons_of(plan);
  EXPECT_NE(why.find("1.5.0: uploaded 2026-05-30T12:00:00Z, younger than min_release_age (7 days)"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("1.4.0rc1: a pre-release"), std::string::npos) << why;
  EXPECT_NE(why.find("1.3.0: requires Python >=3.12, not 3.11"), std::string::npos) << why;
  EXPECT_NE(why.find("1.2.0: yanked (broken wheel)"), std::string::npos) << why;
}

TEST(DecideTest, RequiresPythonMustAdmitEveryConfiguredPython) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "2.0.0", 'b').requires_python = ">=3.10";
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  EXPECT_EQ(decide_ok(doc, 0, policy_for({"3.11", "3.12"}), idx).result,
            pin_plan::outcome::upgrade);
  const auto plan = decide_ok(doc, 0, policy_for({"3.9", "3.11"}), idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::up_to_date) << reasons_of(plan);
  EXPECT_EQ(reasons_of(plan), "2.0.0: requires Python >=3.10, not 3.9\n");
}

TEST(DecideTest, ReleaseWithoutUploadTimeIsSkippedOnlyWhenAnAgeIsSet) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "2.0.0", 'b').upload_time.reset();
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  EXPECT_EQ(decide_ok(doc, 0, policy_for(), idx).result, pin_plan::outcome::upgrade);
  auto policy = policy_for();
  policy.min_release_age = 1h;
  auto plan = decide_ok(doc, 0, policy, idx);
  // Unknown is neither too young nor old enough: skipped with the reason, not "up to date".
  EXPECT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(reasons_of(plan),
            "not applied: min_release_age (60 minutes) cannot be checked for 2.0.0: the index "
            "gives no upload time (nor does its JSON API), so its age is unknown\n"
            "2.0.0: the index gives no upload time (nor does its JSON API), so its age is "
            "unknown\n");
  // An older release whose age is known and enough is still proposed.
  idx.add("six", "1.5.0", 'c', "2026-01-01T00:00:00Z");
  plan = decide_ok(doc, 0, policy, idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(plan.change->new_version.str(), "1.5.0");
}

TEST(DecideTest, PrereleasesFollowThePolicy) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "1.1.0a1", 'b');
  idx.add("six", "2.0.0b1", 'c');
  idx.add("six", "2.0.0b2", 'd').yanked = "";
  const auto stable = doc_of(hashed("six", "1.0.0", 'a'));
  const auto beta = doc_of(hashed("six", "1.1.0a1", 'b'));
  auto policy = policy_for();
  EXPECT_EQ(decide_ok(stable, 0, policy, idx).result, pin_plan::outcome::up_to_date);
  auto plan = decide_ok(beta, 0, policy, idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(plan.change->new_version.str(), "2.0.0b1");
  policy.prereleases = config::pins_prereleases::always;
  plan = decide_ok(stable, 0, policy, idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(plan.change->new_version.str(), "2.0.0b1");
  policy.prereleases = config::pins_prereleases::never;
  EXPECT_EQ(decide_ok(beta, 0, policy, idx).result, pin_plan::outcome::up_to_date);
}

TEST(DecideTest, YankedPinMovesUpWhenSomethingNewerQualifies) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a').yanked = "CVE-2026-1";
  idx.add("six", "1.0.1", 'b');
  idx.add("six", "0.9.0", 'c');
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_TRUE(plan.old_yanked);
  EXPECT_EQ(plan.old_yank_reason, "CVE-2026-1");
  EXPECT_EQ(plan.change->new_version.str(), "1.0.1");
  EXPECT_EQ(plan.reasons.front(),
            "1.0.0 is yanked (CVE-2026-1); moved to the newest release that qualifies");
}

TEST(DecideTest, YankedPinMovesDownWhenNothingNewerQualifies) {
  fake_index idx;
  idx.add("six", "2.0.0", 'a').yanked = "";
  idx.add("six", "2.1.0", 'd').requires_python = ">=4";
  idx.add("six", "1.9.0", 'b');
  idx.add("six", "1.8.0", 'c');
  auto doc = doc_of("# top\n" + hashed("six", "2.0.0", 'a') + "# end\n");
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(plan.change->new_version.str(), "1.9.0");
  EXPECT_EQ(reasons_of(plan),
            "2.0.0 is yanked; nothing newer qualifies, so moved down to the nearest release that "
            "does\n2.1.0: requires Python >=4, not 3.11\n");
  EXPECT_EQ(summary(plan), "six 2.0.0 -> 1.9.0");
  ASSERT_TRUE(apply(doc, plan).has_value());
  EXPECT_EQ(doc.render(), "# top\n" + hashed("six", "1.9.0", 'b') + "# end\n");
}

TEST(DecideTest, ConflictingPinIsCoUpgraded) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'b');
  idx.add("urllib3", "1.26.0", 'c');
  idx.add("urllib3", "2.0.0", 'd');
  idx.add("urllib3", "2.2.0", 'e');
  idx.add("urllib3", "3.0.0", 'f');
  idx.metadata["requests 2.32.0"] =
      "Metadata-Version: 2.1\nName: requests\nVersion: 2.32.0\n"
      "Requires-Dist: urllib3 <3,>=2\n"
      "Requires-Dist: PySocks!=1.5.7,>=1.5.6; extra == \"socks\"\n"
      "Requires-Dist: win-inet-pton; sys_platform == \"win32\"\n\nDescription\n";
  auto doc = doc_of(hashed("requests", "2.31.0", 'a') + hashed("urllib3", "1.26.0", 'c'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  ASSERT_EQ(plan.co_upgrades.size(), 1u);
  EXPECT_EQ(plan.co_upgrades[0].name, "urllib3");
  EXPECT_EQ(plan.co_upgrades[0].new_version.str(), "2.2.0");
  EXPECT_TRUE(plan.added.empty()) << plan.added.front().name;
  EXPECT_EQ(summary(plan), "requests 2.31.0 -> 2.32.0, urllib3 1.26.0 -> 2.2.0");
  EXPECT_NE(reasons_of(plan).find("co-upgrade urllib3 1.26.0 -> 2.2.0: requests 2.32.0 requires "
                                  "urllib3<3,>=2"),
            std::string::npos)
      << reasons_of(plan);
  ASSERT_TRUE(apply(doc, plan).has_value());
  EXPECT_EQ(doc.render(), hashed("requests", "2.32.0", 'b') + hashed("urllib3", "2.2.0", 'e'));
}

TEST(DecideTest, ConflictWithoutAQualifyingVersionIsSkippedWithItsReason) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'b');
  idx.add("urllib3", "1.26.0", 'c');
  idx.add("urllib3", "2.0.0", 'd').yanked = "";
  idx.metadata["requests 2.32.0"] = "Name: requests\nRequires-Dist: urllib3>=2\n";
  const auto doc = doc_of(hashed("requests", "2.31.0", 'a') + hashed("urllib3", "1.26.0", 'c'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(plan.reasons.front(),
            "not applied: requests 2.32.0 requires urllib3>=2, and no release of urllib3 "
            "qualifies (2.0.0 yanked)");
  EXPECT_EQ(summary(plan), "requests 2.31.0 -> 2.32.0 (skipped)");
  auto copy = doc;
  EXPECT_FALSE(apply(copy, plan).has_value());
  EXPECT_EQ(copy.render(), doc.render());
}

TEST(DecideTest, NewRequirementIsAddedPinnedAndHashedWithVia) {
  fake_index idx;
  idx.add("flask", "2.0.0", 'a');
  idx.add("flask", "3.0.0", 'b');
  idx.add("blinker", "1.6.0", 'c');
  idx.add("blinker", "1.7.0", 'd');
  idx.add("blinker", "1.7.0", 'e', "2026-01-01T00:00:00Z", "py2-none-any");
  idx.add("blinker", "1.8.0rc1", '1');
  idx.add("markupsafe", "2.1.0", 'f');
  idx.metadata["flask 3.0.0"] =
      "Name: flask\nRequires-Dist: blinker>=1.6\nRequires-Dist: zope; python_version < \"3\"\n";
  idx.metadata["blinker 1.7.0"] = "Name: blinker\nRequires-Dist: MarkupSafe\n";
  auto doc = doc_of(hashed("flask", "2.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  ASSERT_EQ(plan.added.size(), 2u);
  EXPECT_EQ(plan.added[0].name, "blinker");
  EXPECT_EQ(plan.added[0].via, "flask");
  EXPECT_EQ(plan.added[1].name, "markupsafe");
  EXPECT_EQ(plan.added[1].via, "blinker");
  EXPECT_EQ(summary(plan), "flask 2.0.0 -> 3.0.0, +blinker 1.7.0, +markupsafe 2.1.0");
  ASSERT_TRUE(apply(doc, plan).has_value());
  EXPECT_EQ(doc.render(), "blinker==1.7.0 \\\n    --hash=sha256:" + hex_of('d') +
                              " \\\n    --hash=sha256:" + hex_of('e') + "\n    # via flask\n" +
                              hashed("flask", "3.0.0", 'b') + hashed("markupsafe", "2.1.0", 'f') +
                              "    # via blinker\n");
}

TEST(DecideTest, NewRequirementMissingFromTheIndexSkipsTheUpgrade) {
  fake_index idx;
  idx.add("flask", "2.0.0", 'a');
  idx.add("flask", "3.0.0", 'b');
  idx.metadata["flask 3.0.0"] = "Name: flask\nRequires-Dist: ghost>=1\n";
  const auto doc = doc_of(hashed("flask", "2.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(plan.reasons.front(),
            "not applied: flask 3.0.0 requires ghost>=1, which the index does not have");
}

TEST(DecideTest, ExtrasOfThePinSelectRequirements) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'b');
  idx.add("pysocks", "1.7.1", 'c');
  idx.metadata["requests 2.32.0"] =
      "Name: requests\nRequires-Dist: PySocks>=1.5; extra == 'socks'\n";
  const auto plain = doc_of(hashed("requests", "2.31.0", 'a'));
  EXPECT_TRUE(decide_ok(plain, 0, policy_for(), idx).added.empty());
  const auto socks = doc_of(hashed("requests[socks]", "2.31.0", 'a'));
  const auto plan = decide_ok(socks, 0, policy_for(), idx);
  ASSERT_EQ(plan.added.size(), 1u) << reasons_of(plan);
  EXPECT_EQ(plan.added[0].name, "pysocks");
}

TEST(DecideTest, FileWithoutDigestIsNoted) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "2.0.0", 'b');
  idx.add("six", "2.0.0", 0, "2026-01-01T00:00:00Z", "py2-none-any");
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  ASSERT_EQ(plan.change->missing_digests.size(), 1u);
  EXPECT_EQ(plan.change->missing_digests[0].filename, "six-2.0.0-py2-none-any.whl");
  EXPECT_EQ(plan.change->hashes, std::vector<std::string>{"sha256:" + hex_of('b')});
  EXPECT_NE(reasons_of(plan).find("no sha256 for six-2.0.0-py2-none-any.whl"), std::string::npos)
      << reasons_of(plan);

  // Applied as it is, the file would lack a hash pip needs; hashed by the caller, it applies.
  auto copy = doc;
  const auto refused = apply(copy, plan);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message.find("six-2.0.0-py2-none-any.whl has no sha256"),
            std::string::npos)
      << refused.error().message;
  EXPECT_EQ(copy.render(), doc.render());
  auto hashed_plan = plan;
  hashed_plan.change->hashes.push_back("sha256:" + hex_of('0'));
  hashed_plan.change->missing_digests.clear();
  ASSERT_TRUE(apply(copy, hashed_plan).has_value());
  EXPECT_EQ(copy.render(), "six==2.0.0 \\\n    --hash=sha256:" + hex_of('b') +
                               " \\\n    --hash=sha256:" + hex_of('0') + "\n");
}

TEST(DecideTest, IgnoredUnpinnedAndUnreachable) {
  fake_index idx;
  idx.add("six", "1.0.0", 'a');
  idx.add("six", "2.0.0", 'b');
  const auto doc = doc_of("six==1.0.0\nattrs>=1\n");
  auto policy = policy_for();
  policy.ignore = {"s*"};
  auto plan = decide_ok(doc, 0, policy, idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::ignored);
  EXPECT_EQ(reasons_of(plan), "matches pins.ignore \"s*\"\n");
  plan = decide_ok(doc, 1, policy_for(), idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::unpinned);
  EXPECT_TRUE(idx.asked.empty()) << idx.asked.front();

  idx.down = true;
  const auto failed = decide(doc, 0, policy_for(), idx.source());
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().message, "index.test: connection refused");
  EXPECT_FALSE(decide(doc, 2, policy_for(), idx.source()).has_value());
}

TEST(DecideTest, PolicyFromConfigNamesABadPlatform) {
  config::pins_config pins;
  pins.python = {"3.11"};
  pins.platforms = {"linux"};
  const auto p = upgrade_policy::from_config(pins, {});
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("\"linux\""), std::string::npos) << p.error().message;
  pins.platforms = {"linux-x86_64", "windows-x86_64"};
  pins.python = {"3.10", "3.12"};
  const auto ok = upgrade_policy::from_config(pins, {});
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->targets.size(), 4u);
}

TEST(DecideTest, PageParsedFromJsonDrivesTheDecision) {
  const std::string body =
      R"({"meta":{"api-version":"1.1"},"name":"six","versions":["1.0.0","1.1.0"],
    "files":[{"filename":"six-1.0.0-py3-none-any.whl","url":"six-1.0.0-py3-none-any.whl",
              "hashes":{"sha256":")" +
      hex_of('a') + R"("},"size":1,"upload-time":"2025-01-01T00:00:00.000000Z"},
             {"filename":"six-1.1.0.tar.gz","url":"six-1.1.0.tar.gz","hashes":{"sha256":")" +
      hex_of('9') + R"("},"size":1,"upload-time":"2025-02-01T00:00:00.000000Z",
              "yanked":"bad sdist","requires-python":">=3.8"}]})";
  auto page = pypi::parse_project_json(body, "http://index.test/simple/six/");
  ASSERT_TRUE(page.has_value()) << page.error().message;
  fake_index idx;
  idx.pages["six"] = *page;
  const auto doc = doc_of(hashed("six", "1.0.0", 'a'));
  const auto plan = decide_ok(doc, 0, policy_for(), idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::up_to_date);
  EXPECT_EQ(reasons_of(plan), "1.1.0: yanked (bad sdist)\n");
}

TEST(DecideTest, FilesWithoutDigestAreHashedByTheCallersDownloadOnly) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'e');
  idx.add("requests", "2.32.0", 0, "2026-01-01T00:00:00Z", "py2-none-any");
  idx.add("urllib3", "1.26.0", 'c');
  idx.add("urllib3", "2.2.0", 'd');
  idx.add("urllib3", "2.2.0", 0, "2026-01-01T00:00:00Z", "py2-none-any");
  idx.add("urllib3", "2.2.0", 0, "2026-01-01T00:00:00Z", "py2-none-any").yanked = "";
  idx.metadata["requests 2.32.0"] = "Name: requests\nRequires-Dist: urllib3>=2\n";
  auto doc = doc_of(hashed("requests", "2.31.0", 'a') + hashed("urllib3", "1.26.0", 'c'));
  auto plan = decide_ok(doc, 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  ASSERT_EQ(plan.co_upgrades.size(), 1u);

  std::vector<std::string> downloaded;
  const file_hasher fake = [&](const pypi::file_entry& f) -> result<std::string> {
    downloaded.push_back(f.filename);
    return "sha256:" + hex_of(f.filename.starts_with("requests") ? '0' : '9');
  };
  auto failing = plan;
  const auto refused = hash_missing_files(failing, [&](const pypi::file_entry& f) {
    return result<std::string>(error(errc::io_error, "connection refused (" + f.filename + ")"));
  });
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().message,
            "requests 2.32.0: hashing requests-2.32.0-py2-none-any.whl, which the index lists "
            "without a sha256: connection refused (requests-2.32.0-py2-none-any.whl)");
  EXPECT_EQ(failing.change->hashes, plan.change->hashes);
  EXPECT_EQ(failing.change->missing_digests, plan.change->missing_digests);

  const auto hashed_count = hash_missing_files(plan, fake);
  ASSERT_TRUE(hashed_count.has_value()) << hashed_count.error().message;
  EXPECT_EQ(*hashed_count, 2u);
  // Only the two files without a digest, not the yanked one, not those with a digest.
  EXPECT_EQ(downloaded, (std::vector<std::string>{"requests-2.32.0-py2-none-any.whl",
                                                  "urllib3-2.2.0-py2-none-any.whl"}));
  EXPECT_EQ(plan.change->hashes,
            (std::vector<std::string>{"sha256:" + hex_of('0'), "sha256:" + hex_of('e')}));
  EXPECT_EQ(plan.co_upgrades[0].hashes,
            (std::vector<std::string>{"sha256:" + hex_of('9'), "sha256:" + hex_of('d')}));
  EXPECT_TRUE(plan.change->missing_digests.empty());
  EXPECT_TRUE(plan.co_upgrades[0].missing_digests.empty());
  EXPECT_NE(reasons_of(plan).find("the index gives no sha256 for urllib3-2.2.0-py2-none-any.whl: "
                                  "downloaded and hashed (sha256:" +
                                  hex_of('9') + ")"),
            std::string::npos)
      << reasons_of(plan);
  EXPECT_EQ(reasons_of(plan).find("must be downloaded"), std::string::npos) << reasons_of(plan);
  ASSERT_TRUE(apply(doc, plan).has_value());
  EXPECT_EQ(doc.render(), "requests==2.32.0 \\\n    --hash=sha256:" + hex_of('0') +
                              " \\\n    --hash=sha256:" + hex_of('e') +
                              "\nurllib3==2.2.0 \\\n    --hash=sha256:" + hex_of('9') +
                              " \\\n    --hash=sha256:" + hex_of('d') + "\n");
  // A plan with nothing missing downloads nothing.
  downloaded.clear();
  ASSERT_TRUE(hash_missing_files(plan, fake).has_value());
  EXPECT_TRUE(downloaded.empty());
}

TEST(DecideTest, ACoUpgradesOwnRequirementsAreCheckedTransitively) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'b');
  idx.add("urllib3", "1.26.0", 'c');
  idx.add("urllib3", "2.2.0", 'd');
  idx.add("idna", "2.0", 'e');
  idx.add("idna", "3.7", 'f');
  idx.metadata["requests 2.32.0"] = "Name: requests\nRequires-Dist: urllib3>=2\n";
  idx.metadata["urllib3 2.2.0"] = "Name: urllib3\nRequires-Dist: idna>=3\n";
  const std::string text = hashed("requests", "2.31.0", 'a') + hashed("urllib3", "1.26.0", 'c') +
                           hashed("idna", "2.0", 'e');
  auto plan = decide_ok(doc_of(text), 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
  EXPECT_EQ(summary(plan), "requests 2.31.0 -> 2.32.0, urllib3 1.26.0 -> 2.2.0, idna 2.0 -> 3.7");
  EXPECT_NE(reasons_of(plan).find("co-upgrade idna 2.0 -> 3.7: urllib3 2.2.0 requires idna>=3"),
            std::string::npos)
      << reasons_of(plan);

  // The co-upgrade needs what the patch has moved elsewhere already: skipped, with the reason.
  idx.metadata["urllib3 2.2.0"] = "Name: urllib3\nRequires-Dist: requests<2.32\n";
  plan = decide_ok(doc_of(text), 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(plan.reasons.front(),
            "not applied: urllib3 2.2.0 requires requests<2.32, which the pin requests==2.32.0 "
            "this patch keeps does not satisfy");
}

TEST(DecideTest, APinTheFileKeepsMustAdmitEveryMovedVersion) {
  fake_index idx;
  idx.add("requests", "2.31.0", 'a');
  idx.add("requests", "2.32.0", 'b');
  idx.add("urllib3", "1.26.0", 'c');
  idx.add("urllib3", "2.2.0", 'd');
  idx.add("botocore", "1.0", 'e');
  idx.metadata["requests 2.32.0"] = "Name: requests\nRequires-Dist: urllib3>=2\n";
  idx.metadata["botocore 1.0"] =
      "Name: botocore\nRequires-Dist: urllib3<1.27; python_version < \"3.10\"\n"
      "Requires-Dist: urllib3!=2.2.0; python_version >= \"3.10\"\n";
  const std::string text = hashed("requests", "2.31.0", 'a') + hashed("urllib3", "1.26.0", 'c') +
                           hashed("botocore", "1.0", 'e');
  // The co-upgrade of urllib3 breaks the botocore pin, which the patch keeps.
  auto plan = decide_ok(doc_of(text), 0, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(plan.reasons.front(),
            "not applied: botocore==1.0, a pin this patch keeps, requires urllib3!=2.2.0; "
            "python_version >= \"3.10\", which urllib3 2.2.0 does not satisfy");
  EXPECT_NE(std::find(idx.asked.begin(), idx.asked.end(), "metadata botocore 1.0"),
            idx.asked.end());
  // The upgrade of urllib3 alone is checked the same way.
  plan = decide_ok(doc_of(text), 1, policy_for(), idx);
  ASSERT_EQ(plan.result, pin_plan::outcome::skipped) << reasons_of(plan);
  EXPECT_EQ(plan.reasons.front(),
            "not applied: botocore==1.0, a pin this patch keeps, requires urllib3!=2.2.0; "
            "python_version >= \"3.10\", which urllib3 2.2.0 does not satisfy");
  // A requirement whose marker holds for no configured Python does not count.
  idx.metadata["botocore 1.0"] =
      "Name: botocore\nRequires-Dist: urllib3<1.27; python_version < \"3.10\"\n";
  plan = decide_ok(doc_of(text), 1, policy_for(), idx);
  EXPECT_EQ(plan.result, pin_plan::outcome::upgrade) << reasons_of(plan);
}

}  // namespace
}  // namespace pantry::orchestrator::pins
