// The arguments of the coordinator's commands (pipelines.h): options in any order, --name=VALUE,
// flags, positional ids; usage errors naming the argument.

#include "pipelines.h"
#include "usage_error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::cli {
namespace {

using args = std::vector<std::string>;

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

TEST(PipelinesArgsTest, SubmitTakesEveryOptionInAnyOrder) {
  auto o = parse_submit_args({"--wait", "-f", "ci.yml", "-C", "proj", "--project=tiny", "--patch",
                              "7", "--commit", kCommit, "--url", "http://h:1", "--token", "t0k3n",
                              "--no-color"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_TRUE(o->wait);
  EXPECT_FALSE(o->color);
  EXPECT_EQ(o->file, "ci.yml");
  EXPECT_EQ(o->dir, "proj");
  EXPECT_EQ(o->project, "tiny");
  EXPECT_EQ(o->patch, "7");
  EXPECT_EQ(o->commit, kCommit);
  EXPECT_EQ(o->where.url, "http://h:1");
  EXPECT_EQ(o->where.token, "t0k3n");
  EXPECT_FALSE(o->git);
}

TEST(PipelinesArgsTest, SubmitDefaultsToTheWorkingTreeHere) {
  auto o = parse_submit_args({});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->file, ".pantry.yml");
  EXPECT_EQ(o->dir, ".");
  EXPECT_FALSE(o->wait);
  EXPECT_TRUE(o->color);
  EXPECT_FALSE(o->project);
}

TEST(PipelinesArgsTest, SubmitOfAGitCommitNeedsTheWholeCommitId) {
  auto o = parse_submit_args(
      {"--git", "https://example.org/r.git", "--commit", kCommit, "--auth-secret", "forge"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->git, "https://example.org/r.git");
  EXPECT_EQ(o->auth_secret, "forge");
  args no_commit{"--git", "https://example.org/r.git"};
  EXPECT_TRUE(usage_error(parse_submit_args(no_commit), no_commit, {"--git", "--commit"}));
  args short_commit{"--commit", "abc123"};
  EXPECT_TRUE(usage_error(parse_submit_args(short_commit), short_commit, {"abc123", "40"}));
  args upper{"--commit", "0123456789ABCDEF0123456789abcdef01234567"};
  EXPECT_TRUE(usage_error(parse_submit_args(upper), upper, {"--commit"}));
  auto based = parse_submit_args(
      {"--git", "https://example.org/r.git", "--commit", kCommit, "--base", std::string(40, 'b')});
  ASSERT_TRUE(based) << based.error().message;
  EXPECT_EQ(based->base, std::string(40, 'b'));
  args stray_base{"--base", std::string(40, 'b')};
  EXPECT_TRUE(usage_error(parse_submit_args(stray_base), stray_base, {"--base goes with --git"}));
  args short_base{"--git", "https://example.org/r.git", "--commit", kCommit, "--base", "abc"};
  EXPECT_TRUE(usage_error(parse_submit_args(short_base), short_base,
                          {"--base abc", "not a full commit id"}));
  args stray_secret{"--auth-secret", "forge"};
  EXPECT_TRUE(usage_error(parse_submit_args(stray_secret), stray_secret, {"--auth-secret"}));
}

TEST(PipelinesArgsTest, UnknownOptionsAndMissingValuesAreNamed) {
  args unknown{"--wiat"};
  EXPECT_TRUE(usage_error(parse_submit_args(unknown), unknown, {"--wiat"}));
  args missing{"--project"};
  EXPECT_TRUE(usage_error(parse_submit_args(missing), missing, {"--project", "needs a value"}));
  args flag_value{"--wait=yes"};
  EXPECT_TRUE(usage_error(parse_submit_args(flag_value), flag_value, {"--wait", "no value"}));
  args stray{"extra"};
  EXPECT_TRUE(usage_error(parse_submit_args(stray), stray, {"extra"}));
}

TEST(PipelinesArgsTest, LogsTakesOneJobIdAndItsFilters) {
  auto o = parse_logs_args({"-f", "42", "--grep", "FAILED|Error", "--step", "run 2"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_TRUE(o->follow);
  EXPECT_EQ(o->job, "42");
  EXPECT_EQ(o->grep, "FAILED|Error");
  EXPECT_EQ(o->step, "run 2");
  args none{};
  EXPECT_TRUE(usage_error(parse_logs_args(none), none, {"JOB"}));
  args word{"lint"};
  EXPECT_TRUE(usage_error(parse_logs_args(word), word, {"lint", "not a job id"}));
  args zero{"0"};
  EXPECT_TRUE(usage_error(parse_logs_args(zero), zero, {"0"}));
}

TEST(PipelinesArgsTest, CancelTakesAPipelineOrWithJobAJob) {
  auto p = parse_cancel_args({"12"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->id, "12");
  EXPECT_FALSE(p->job);
  auto j = parse_cancel_args({"--job", "34"});
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_EQ(j->id, "34");
  EXPECT_TRUE(j->job);
  args two{"1", "2"};
  EXPECT_TRUE(usage_error(parse_cancel_args(two), two, {"one PIPELINE"}));
}

TEST(PipelinesArgsTest, ArtifactsNeedsAJobAndADirectory) {
  auto o = parse_artifacts_args({"7", "-o", "out"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->job, "7");
  EXPECT_EQ(o->out_dir, "out");
  args no_dir{"7"};
  EXPECT_TRUE(usage_error(parse_artifacts_args(no_dir), no_dir, {"-o DIR"}));
}

TEST(PipelinesArgsTest, JobsTakesAProject) {
  auto o = parse_jobs_args({"--project", "tiny", "--data-dir", "/var/lib/pantry"});
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->project, "tiny");
  EXPECT_EQ(o->where.data_dir, "/var/lib/pantry");
}

TEST(PipelinesArgsTest, TestsTakesAProjectAndOneView) {
  auto plain = parse_tests_args({});
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_FALSE(plain->project);
  EXPECT_FALSE(plain->flaky);
  EXPECT_FALSE(plain->slowest);
  auto flaky = parse_tests_args({"--flaky", "--project=acme/shop", "--url", "http://h:1"});
  ASSERT_TRUE(flaky) << flaky.error().message;
  EXPECT_TRUE(flaky->flaky);
  EXPECT_EQ(flaky->project, "acme/shop");
  EXPECT_EQ(flaky->where.url, "http://h:1");
  auto slowest = parse_tests_args({"--slowest", "15"});
  ASSERT_TRUE(slowest) << slowest.error().message;
  EXPECT_EQ(slowest->slowest, 15u);
  auto listed = parse_tests_args({"--quarantined"});
  ASSERT_TRUE(listed) << listed.error().message;
  EXPECT_TRUE(listed->quarantined);
  auto put = parse_tests_args({"--quarantine", "tests/a.py::test_b[x y]"});
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(put->quarantine, "tests/a.py::test_b[x y]");
  EXPECT_FALSE(put->unquarantine);
  auto out = parse_tests_args({"--unquarantine=t::c"});
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(out->unquarantine, "t::c");
}

TEST(PipelinesArgsTest, TestsRefusesBadCountsAndBothViews) {
  for (const args& a : {args{"--slowest", "0"}, args{"--slowest", "ten"}, args{"--slowest", "-3"},
                        args{"--slowest", "99999999"}}) {
    EXPECT_TRUE(usage_error(parse_tests_args(a), a, {"--slowest " + a[1], "not a count"}));
  }
  args both{"--flaky", "--slowest", "3"};
  EXPECT_TRUE(usage_error(parse_tests_args(both), both, {"--flaky", "--slowest", "give one of"}));
  args two{"--quarantined", "--quarantine", "t::a"};
  EXPECT_TRUE(usage_error(parse_tests_args(two), two, {"--quarantined", "give one of"}));
  args blank{"--quarantine="};
  EXPECT_TRUE(usage_error(parse_tests_args(blank), blank, {"--quarantine", "need a test id"}));
  args missing{"--slowest"};
  EXPECT_TRUE(usage_error(parse_tests_args(missing), missing, {"--slowest needs a value"}));
  args extra{"acme"};
  EXPECT_TRUE(usage_error(parse_tests_args(extra), extra, {"unexpected argument acme"}));
  args empty{"--project="};
  EXPECT_TRUE(usage_error(parse_tests_args(empty), empty, {"--project needs a name"}));
}

TEST(PipelinesArgsTest, CiMeasuresTakesAProjectAndWhere) {
  auto plain = parse_measures_args({});
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_FALSE(plain->project);
  auto given = parse_measures_args({"--project", "acme/shop", "--token=t"});
  ASSERT_TRUE(given) << given.error().message;
  EXPECT_EQ(given->project, "acme/shop");
  EXPECT_EQ(given->where.token, "t");
  args empty{"--project="};
  EXPECT_TRUE(
      usage_error(parse_measures_args(empty), empty, {"ci measures", "--project needs a name"}));
  args extra{"acme"};
  EXPECT_TRUE(usage_error(parse_measures_args(extra), extra, {"unexpected argument acme"}));
  args unknown{"--days", "3"};
  EXPECT_TRUE(usage_error(parse_measures_args(unknown), unknown, {"--days"}));
}

}  // namespace
}  // namespace pantry::cli
