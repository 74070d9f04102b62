// The machinery sections read with (config/src/reader.h), on a list of the kind the orchestrator's
// sections will have: what a new list costs to write, and what every list gets for free.

#include "reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <array>
#include <string>
#include <vector>

namespace pantry::config::detail {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

struct job {
  std::string name;
  std::string image;
  friend bool operator==(const job&, const job&) = default;
};

constexpr std::array<std::string_view, 2> kJobKeys = {"name", "image"};
constexpr std::array<std::string_view, 1> kTopKeys = {"jobs"};
constexpr std::array<key_set, 1> kMaps = {{{"", kTopKeys}}};

std::string repeated_job(std::string_view name, std::string_view first_path, int first_line) {
  return "\"" + std::string(name) + "\" is already the name of " + std::string(first_path) +
         " (line " + std::to_string(first_line) + ")";
}

// Reads `yaml`'s `jobs:` as a section would; the problems go to `r`.
std::optional<std::vector<job>> read_jobs(reader& r, const std::string& yaml,
                                          bool may_be_empty = true) {
  static constexpr std::array<required_key, 2> kRequired = {
      {{"name", "a job name"}, {"image", "an image reference"}}};
  const YAML::Node root = YAML::Load(yaml);
  const auto it = root.begin();
  const entry e{"jobs", it->first, it->second, "jobs"};
  list_rules<job> rules = {
      .not_a_list = ", expected a list of jobs",
      .not_a_map = ", expected a map with name and image",
      .keys = kJobKeys,
      .required = kRequired,
      .unique_key = "name",
      .unique_field = &job::name,
      .repeated = repeated_job,
  };
  if (!may_be_empty) rules.if_empty = "\"[]\" is an empty list; list at least one job";
  return r.read_list(e, rules, [&](job& j, const entry& f) {
    if (auto s = r.as_text(f, f.key == "name" ? "a job name" : "an image reference")) {
      (f.key == "name" ? j.name : j.image) = std::move(*s);
    }
  });
}

TEST(ReaderTest, ListOfMapsIsReadInOrder) {
  reader r("jobs.yaml", kMaps);
  const auto jobs =
      read_jobs(r, "jobs:\n  - {name: lint, image: py}\n  - {image: gcc, name: build}\n");
  ASSERT_TRUE(jobs.has_value()) << ::testing::PrintToString(r.errors());
  EXPECT_THAT(*jobs, ElementsAre(job{"lint", "py"}, job{"build", "gcc"}));
  EXPECT_THAT(r.errors(), IsEmpty());
}

TEST(ReaderTest, RepeatedUniqueValueIsReportedAtTheRepeatNamingTheFirst) {
  reader r("jobs.yaml", kMaps);
  const auto jobs = read_jobs(r,
                              "jobs:\n"
                              "  - {name: lint, image: py}\n"
                              "  - {name: build, image: gcc}\n"
                              "  - {name: lint, image: py2}\n");
  EXPECT_FALSE(jobs.has_value());
  EXPECT_THAT(r.errors(), ElementsAre("jobs.yaml:4:12: jobs[2].name: \"lint\" is already the name "
                                      "of jobs[0] (line 2)"));
}

TEST(ReaderTest, RepeatOfAnItemWithOtherProblemsIsStillFound) {
  // One run reports every problem: the first "lint" is wrong in another key, and is still the
  // first "lint".
  reader r("jobs.yaml", kMaps);
  EXPECT_FALSE(read_jobs(r, "jobs:\n  - {name: lint, image: \"\"}\n  - {name: lint, image: py}\n"));
  EXPECT_THAT(r.errors(),
              ElementsAre("jobs.yaml:2:25: jobs[0].image: \"\" is empty; set an image reference",
                          "jobs.yaml:3:12: jobs[1].name: \"lint\" is already the name of jobs[0] "
                          "(line 2)"));
}

TEST(ReaderTest, ProblemsOfAnItemComeInItsKeyOrderThenMissingKeysThenTheRepeat) {
  reader r("jobs.yaml", kMaps);
  EXPECT_FALSE(read_jobs(r, "jobs:\n  - {name: a, image: x}\n  - {name: a, imag: x}\n"));
  EXPECT_THAT(r.errors(),
              ElementsAre("jobs.yaml:3:15: jobs[1].imag: \"imag\" is not a known key; did you mean "
                          "image?",
                          "jobs.yaml:3:5: jobs[1].image: \"{name: a, imag: x}\" has no image; add "
                          "image: followed by an image reference",
                          "jobs.yaml:3:12: jobs[1].name: \"a\" is already the name of jobs[0] "
                          "(line 2)"));
}

TEST(ReaderTest, ValueThatIsNotAListOrItemThatIsNotAMapIsReported) {
  reader r("jobs.yaml", kMaps);
  EXPECT_FALSE(read_jobs(r, "jobs: lint\n"));
  EXPECT_FALSE(read_jobs(r, "jobs:\n"));
  EXPECT_FALSE(read_jobs(r, "jobs:\n  - lint\n  -\n"));
  EXPECT_THAT(
      r.errors(),
      ElementsAre("jobs.yaml:1:7: jobs: \"lint\" is a single value, expected a list of jobs",
                  "jobs.yaml:1:1: jobs: \"\" has no value, expected a list of jobs",
                  "jobs.yaml:2:5: jobs[0]: \"lint\" is a single value, expected a map with "
                  "name and image",
                  "jobs.yaml:1:1: jobs[1]: \"\" is empty, expected a map with name and "
                  "image"));
}

TEST(ReaderTest, EmptyListIsRefusedOnlyWhenTheRulesSaySo) {
  reader r("jobs.yaml", kMaps);
  const auto jobs = read_jobs(r, "jobs: []\n");
  ASSERT_TRUE(jobs.has_value());
  EXPECT_THAT(*jobs, IsEmpty());
  EXPECT_FALSE(read_jobs(r, "jobs: []\n", /*may_be_empty=*/false));
  EXPECT_THAT(r.errors(),
              ElementsAre("jobs.yaml:1:7: jobs: \"[]\" is an empty list; list at least one job"));
}

TEST(ReaderTest, NotedPositionsAreWhatTheDocumentSet) {
  reader r("x.yaml", kMaps);
  EXPECT_FALSE(r.noted("jobs").has_value());
  YAML::Mark m;
  m.line = 3;
  m.column = 4;
  r.note("jobs", m);
  ASSERT_TRUE(r.noted("jobs").has_value());
  EXPECT_EQ(r.noted("jobs")->line, 3);
  EXPECT_FALSE(r.noted("jobs[0]").has_value());
}

TEST(ReaderTest, UniqueValuesRememberTheFirstUse) {
  unique_values u;
  EXPECT_FALSE(u.add("a", 0, 2).has_value());
  EXPECT_FALSE(u.add("b", 1, 3).has_value());
  const auto first = u.add("a", 2, 4);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->index, 0u);
  EXPECT_EQ(first->line, 2);
  EXPECT_EQ(u.add("a", 3, 5)->index, 0u);
}

}  // namespace
}  // namespace pantry::config::detail
