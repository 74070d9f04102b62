// The .pantry.yml reader: what a good file reads as, every kind of mistake with its message
// (file:line:col, field path, value, what to do), and the plan of jobs a spec makes.

#include "pantry/orchestrator/coordinator/pipeline_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace pantry::orchestrator::coordinator {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kDigest = "sha256:" + std::string(64, 'a');
const std::string kImage = "docker.io/library/python@" + kDigest;

pipeline_spec parse_ok(const std::string& yaml) {
  auto r = parse_pipeline_spec(yaml, ".pantry.yml");
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? *r : pipeline_spec{};
}

// The message for a file that must not parse.
std::string error_of(const std::string& yaml) {
  auto r = parse_pipeline_spec(yaml, ".pantry.yml");
  if (r) return "<parsed without error>";
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  return r.error().message;
}

// A file with the pinned image and `jobs`.
std::string with_jobs(const std::string& jobs) {
  return "image: " + kImage + "\njobs:\n" + jobs;
}

TEST(PipelineSpecTest, ReadsEveryKey) {
  const pipeline_spec spec = parse_ok("image: " + kImage +
                                      "\n"
                                      "keep_going: true\n"
                                      "jobs:\n"
                                      "  lint: {run: flake8 .}\n"
                                      "  test:\n"
                                      "    run: [pip install -e ., pytest]\n"
                                      "    parallel: 2\n"
                                      "    timeout: 10m\n"
                                      "    env: {PYTHONHASHSEED: 0, B: \"x y\"}\n"
                                      "    secrets: [PYPI_TOKEN]\n"
                                      "    network: none\n"
                                      "    tmpfs: 512MiB\n"
                                      "    fail_fast: true\n"
                                      "  package:\n"
                                      "    run: |\n"
                                      "      python -m build\n"
                                      "      ls dist\n"
                                      "    needs: [lint, test]\n"
                                      "    artifacts: [dist, ./reports/x.xml]\n"
                                      "    image: local/builder@" +
                                      kDigest + "\n");
  EXPECT_EQ(spec.image, kImage);
  EXPECT_EQ(spec.build, std::nullopt);
  EXPECT_TRUE(spec.keep_going);
  EXPECT_FALSE(spec.allow_unpinned);
  ASSERT_EQ(spec.jobs.size(), 3u);
  const job_spec& lint = spec.jobs[0];
  EXPECT_EQ(lint.name, "lint");
  EXPECT_THAT(lint.run, ElementsAre("flake8 ."));
  EXPECT_EQ(lint.parallel, 1);
  EXPECT_FALSE(lint.fail_fast);
  EXPECT_EQ(lint.network, runner::network_mode::isolated);
  EXPECT_EQ(lint.line, 4);
  const job_spec& test = spec.jobs[1];
  EXPECT_THAT(test.run, ElementsAre("pip install -e .", "pytest"));
  EXPECT_EQ(test.parallel, 2);
  EXPECT_EQ(test.timeout, milliseconds(600000));
  EXPECT_THAT(test.env, ElementsAre(std::pair<std::string, std::string>("PYTHONHASHSEED", "0"),
                                    std::pair<std::string, std::string>("B", "x y")));
  EXPECT_THAT(test.secrets, ElementsAre("PYPI_TOKEN"));
  EXPECT_EQ(test.network, runner::network_mode::none);
  EXPECT_EQ(test.tmpfs, 512u << 20);
  EXPECT_TRUE(test.fail_fast);
  const job_spec& package = spec.jobs[2];
  EXPECT_THAT(package.run, ElementsAre("python -m build\nls dist\n"));
  EXPECT_THAT(package.needs, ElementsAre("lint", "test"));
  EXPECT_THAT(package.artifacts, ElementsAre("dist", "./reports/x.xml"));
  EXPECT_EQ(package.image, "local/builder@" + kDigest);
}

TEST(PipelineSpecTest, BuildInsteadOfAnImage) {
  const pipeline_spec spec = parse_ok("build: {file: ci/Containerfile}\njobs: {t: {run: x}}\n");
  ASSERT_TRUE(spec.build.has_value());
  EXPECT_EQ(spec.build->file, "ci/Containerfile");
  EXPECT_EQ(spec.build->context, ".");
  EXPECT_EQ(parse_ok("build:\njobs: {t: {run: x}}\n").build, image_build{});
  // Every job with an image of its own needs no top-level one.
  EXPECT_EQ(parse_ok("jobs: {t: {run: x, image: \"" + kImage + "\"}}\n").image, std::nullopt);
}

TEST(PipelineSpecTest, WrongTypesNameTheFileLineColumnFieldAndValue) {
  EXPECT_EQ(error_of(with_jobs("  test:\n    run: pytest\n    parallel: 200\n")),
            ".pantry.yml:5:15: jobs.test.parallel: \"200\" is out of range; use 1 to 100 shards");
  EXPECT_THAT(error_of(with_jobs("  test:\n    run: {a: b}\n")),
              HasSubstr(".pantry.yml:4:10: jobs.test.run: \"{a: b}\" is a map, expected a script "
                        "or a list of scripts"));
  EXPECT_THAT(error_of(with_jobs("  test: {run: x, timeout: 10}\n")),
              HasSubstr(".pantry.yml:3:27: jobs.test.timeout: \"10\" has no unit"));
  EXPECT_THAT(error_of(with_jobs("  test: {run: x, tmpfs: lots}\n")),
              HasSubstr("jobs.test.tmpfs: \"lots\" is not a size"));
  EXPECT_THAT(error_of("keep_going: yes\n" + with_jobs("  t: {run: x}\n")),
              HasSubstr(".pantry.yml:1:13: keep_going: \"yes\" is not a boolean; use true or "
                        "false"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, fail_fast: soon}\n")),
              HasSubstr(".pantry.yml:3:26: jobs.t.fail_fast: \"soon\" is not a boolean; use true "
                        "or false"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, network: host}\n")),
              HasSubstr("jobs.t.network: \"host\" is not allowed for a job"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, network: bridge}\n")),
              HasSubstr("jobs.t.network: \"bridge\" is not a network; use isolated"));
  EXPECT_THAT(error_of(with_jobs("  t: [x]\n")),
              HasSubstr(".pantry.yml:3:6: jobs.t: \"[x]\" is a list, expected a job"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: []}\n")),
              HasSubstr("jobs.t.run: \"[]\" has no steps"));
}

TEST(PipelineSpecTest, UnknownKeysGetTheNearestKnownOne) {
  EXPECT_EQ(error_of(with_jobs("  test:\n    run: pytest\n    paralel: 2\n")),
            ".pantry.yml:5:5: jobs.test.paralel: \"paralel\" is not a known key; did you mean "
            "parallel?");
  EXPECT_THAT(error_of("keepgoing: true\n" + with_jobs("  t: {run: x}\n")),
              HasSubstr(".pantry.yml:1:1: keepgoing: \"keepgoing\" is not a known key; did you "
                        "mean keep_going?"));
  EXPECT_THAT(error_of("parallel: 2\n" + with_jobs("  t: {run: x}\n")),
              HasSubstr("did you mean jobs.NAME.parallel? (it belongs under jobs.NAME:)"));
  EXPECT_THAT(error_of("build: {dockerfile: x}\njobs: {t: {run: x}}\n"),
              HasSubstr("build.dockerfile: \"dockerfile\" is not a known key; known keys here: "
                        "file, context"));
}

TEST(PipelineSpecTest, EveryProblemIsReportedAtOnce) {
  const std::string msg =
      error_of(with_jobs("  a: {run: x, parallel: 0}\n  b: {run: x, timeout: soon}\n"));
  EXPECT_THAT(msg, HasSubstr("jobs.a.parallel"));
  EXPECT_THAT(msg, HasSubstr("jobs.b.timeout"));
}

TEST(PipelineSpecTest, NeedsMustNameOtherJobsWithoutCycles) {
  EXPECT_THAT(error_of(with_jobs("  test: {run: x}\n  pkg: {run: x, needs: [tset]}\n")),
              HasSubstr(".pantry.yml:4:25: jobs.pkg.needs[0]: \"tset\" is not a job of this "
                        "file; did you mean test?"));
  EXPECT_THAT(error_of(with_jobs("  test: {run: x}\n  pkg: {run: x, needs: deploy}\n")),
              HasSubstr("jobs.pkg.needs: \"deploy\" is not a job of this file; its jobs are "
                        "test, pkg"));
  EXPECT_THAT(error_of(with_jobs("  a: {run: x, needs: a}\n")),
              HasSubstr("jobs.a.needs: \"a\" is the job itself"));
  EXPECT_THAT(error_of(with_jobs("  a: {run: x, needs: [b, b]}\n  b: {run: x}\n")),
              HasSubstr("jobs.a.needs[1]: \"b\" is listed twice (first on line 3)"));
  EXPECT_EQ(error_of(with_jobs("  a: {run: x, needs: c}\n"
                               "  b: {run: x, needs: a}\n"
                               "  c: {run: x, needs: [b]}\n")),
            ".pantry.yml:4:22: jobs.b.needs: the jobs need each other in a cycle, a -> c -> b "
            "-> a, so none of them could start; remove one of these needs");
}

TEST(PipelineSpecTest, ImagesMustBePinnedUnlessAllowed) {
  EXPECT_THAT(error_of("image: python:3.12\njobs: {t: {run: x}}\n"),
              HasSubstr(".pantry.yml:1:8: image: \"python:3.12\" is not pinned by digest; write "
                        "it as NAME@sha256:DIGEST"));
  EXPECT_THAT(error_of("image: python:3.12\njobs: {t: {run: x}}\n"),
              HasSubstr("or set allow_unpinned: true"));
  EXPECT_EQ(parse_ok("image: python:3.12\nallow_unpinned: true\njobs: {t: {run: x}}\n").image,
            "python:3.12");
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, image: Python}\n")), HasSubstr("jobs.t.image: "));
  EXPECT_THAT(error_of("jobs: {t: {run: x}}\n"),
              HasSubstr(".pantry.yml:1:1: image: the file sets neither image: nor build:"));
  EXPECT_THAT(error_of("jobs:\n  t: {run: x, image: \"" + kImage + "\"}\n  u: {run: x}\n"),
              HasSubstr("jobs.u: the job has no image:"));
  EXPECT_THAT(error_of("image: " + kImage + "\nbuild: {}\njobs: {t: {run: x}}\n"),
              HasSubstr(".pantry.yml:2:1: build: image: (line 1) and build: are both set"));
}

TEST(PipelineSpecTest, NamesAndPathsAreChecked) {
  EXPECT_THAT(error_of(with_jobs("  \"a b\": {run: x}\n")),
              HasSubstr(".pantry.yml:3:3: jobs.a b: \"a b\" is not a job name"));
  EXPECT_THAT(error_of(with_jobs("  " + std::string(64, 'j') + ": {run: x}\n")),
              HasSubstr("is not a job name"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, env: {1X: a}}\n")),
              HasSubstr("jobs.t.env.1X: \"1X\" is not an environment variable name"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, env: {PANTRY_SHARD: 1}}\n")),
              HasSubstr("jobs.t.env.PANTRY_SHARD: \"PANTRY_SHARD\" starts with PANTRY_"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, secrets: [../x]}\n")),
              HasSubstr("jobs.t.secrets[0]: \"../x\" is not a secret name"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, artifacts: [/etc/passwd]}\n")),
              HasSubstr("jobs.t.artifacts[0]: \"/etc/passwd\" is an absolute path"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x, artifacts: [dist/../../x]}\n")),
              HasSubstr("jobs.t.artifacts[0]: \"dist/../../x\" goes outside the workspace"));
  EXPECT_THAT(error_of("build: {context: ..}\njobs: {t: {run: x}}\n"),
              HasSubstr("build.context: \"..\" goes outside the workspace"));
}

TEST(PipelineSpecTest, TheFileAsAWholeIsChecked) {
  EXPECT_THAT(error_of(""), HasSubstr(".pantry.yml:1:1: (top level): the file is empty"));
  EXPECT_THAT(error_of("image: " + kImage + "\n"),
              HasSubstr("jobs: the file has no jobs:; add jobs: with at least one"));
  EXPECT_THAT(error_of(with_jobs("  {}\n")), HasSubstr("jobs: \"{}\" is a map"));
  EXPECT_THAT(error_of("jobs: [a\n"), StartsWith(".pantry.yml:"));
  EXPECT_THAT(error_of("jobs: [a\n"), HasSubstr("(syntax)"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x}\n") + "---\njobs: {}\n"),
              HasSubstr("a pipeline is one document"));
  EXPECT_THAT(error_of(std::string("jobs: \xff\n")), HasSubstr("not UTF-8"));
  EXPECT_THAT(error_of(std::string(2 << 20, ' ')), HasSubstr("too large for a pipeline file"));
  EXPECT_THAT(error_of(with_jobs("  t: {run: x}\n  t: {run: y}\n")),
              HasSubstr("jobs.t: \"t\" is set twice (first on line 3)"));
}

TEST(PlanJobsTest, ShardsAndNeedsResolveToIndicesInDependencyOrder) {
  const pipeline_spec spec =
      parse_ok(with_jobs("  package: {run: x, needs: [lint, test]}\n"
                         "  test: {run: x, parallel: 2}\n"
                         "  lint: {run: x}\n"));
  const std::vector<planned_job> plan = plan_jobs(spec);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0], (planned_job{"test 1/2", "test", 1, 2, {}}));
  EXPECT_EQ(plan[1], (planned_job{"test 2/2", "test", 2, 2, {}}));
  EXPECT_EQ(plan[2], (planned_job{"lint", "lint", 1, 1, {}}));
  EXPECT_EQ(plan[3], (planned_job{"package", "package", 1, 1, {2, 0, 1}}));
}

TEST(PlanJobsTest, FileOrderIsKeptWhereNeedsAllowIt) {
  const pipeline_spec spec =
      parse_ok(with_jobs("  a: {run: x}\n"
                         "  b: {run: x, needs: d}\n"
                         "  c: {run: x}\n"
                         "  d: {run: x}\n"));
  std::vector<std::string> names;
  for (const planned_job& j : plan_jobs(spec))
    names.push_back(j.name);
  EXPECT_THAT(names, ElementsAre("a", "c", "d", "b"));
}

TEST(PlanJobsTest, EveryNeedComesBeforeItsJob) {
  std::string jobs;
  for (int i = 0; i < 50; ++i) {
    jobs += "  j" + std::to_string(i) + ": {run: x, parallel: " + std::to_string(1 + i % 3);
    if (i > 0) jobs += ", needs: [j" + std::to_string((i * 37 + 11) % i) + "]";
    jobs += "}\n";
  }
  const std::vector<planned_job> plan = plan_jobs(parse_ok(with_jobs(jobs)));
  EXPECT_EQ(plan.size(), 50u / 3 * 6 + 1 + 2);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    for (std::size_t need : plan[i].needs)
      EXPECT_LT(need, i) << plan[i].name << " needs " << plan[need].name;
  }
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
