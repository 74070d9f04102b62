#include "pantry/orchestrator/coordinator/junit.h"

#include "unit/temp_dir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

using ::testing::HasSubstr;

// What pytest 7.2 writes with -o junit_family=xunit1 (file and line attributes, properties).
constexpr std::string_view kPytestXunit1 = R"(<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.5">
<testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" line="3" time="0.010"/>
<testcase classname="tests.test_a.TestGroup" name="test_param[1-a b]" file="tests/test_a.py" line="9" time="0.020">
  <failure message="assert 1 == 2">def test_param(x):
&gt;       assert 1 == 2
E       assert 1 == 2</failure>
  <system-out>noise that is ignored</system-out>
</testcase>
<testcase classname="tests.test_a" name="test_skip" file="tests/test_a.py" line="12" time="0.000">
  <skipped type="pytest.skip" message="not today">tests/test_a.py:12: not today</skipped>
</testcase>
<testcase classname="tests.test_a" name="test_fixture" file="tests/test_a.py" line="15" time="0.003">
  <error message="failed on setup with &quot;RuntimeError: no db&quot;">trace</error>
</testcase>
<testcase classname="tests.sub.test_b" name="test_unicode[\u00e9-\u2603]" file="tests/sub/test_b.py" line="1" time="1.5"/>
</testsuite></testsuites>
)";

// What pytest 7.2 writes by default (xunit2: no file attribute), with the plugin's properties.
constexpr std::string_view kPytestXunit2WithPlugin = R"(<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="2" skipped="0" tests="3" time="0.1" timestamp="2026-12-06T23:40:00" hostname="h">
<testcase classname="tests.test_a" name="test_flaky" time="0.200">
  <properties><property name="pantry.id" value="tests/test_a.py::test_flaky" /></properties>
  <failure message="AssertionError: odd">boom</failure>
</testcase>
<testcase classname="tests.test_a" name="test_id[a::b]" time="0.300">
  <properties><property name="pantry.id" value="tests/test_a.py::test_id[a::b]" /></properties>
</testcase>
<testcase classname="tests.test_a" name="test_flaky" time="0.100">
  <properties><property name="pantry.id" value="tests/test_a.py::test_flaky" /><property name="pantry.rerun" value="1" /></properties>
</testcase>
</testsuite></testsuites>
)";

const test_result* find(const std::vector<test_result>& results, std::string_view id) {
  for (const auto& r : results) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

std::vector<std::string> ids(const std::vector<test_result>& results) {
  std::vector<std::string> out;
  for (const auto& r : results)
    out.push_back(r.id);
  return out;
}

std::string error_of(std::string_view xml, const junit_limits& limits = {}) {
  auto r = read_junit_xml(xml, "report.xml", limits);
  if (r) return "(read " + std::to_string(r->size()) + " results)";
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  return r.error().message;
}

TEST(JunitTest, ReadsPytestXunit1WithFilesClassesAndOutcomes) {
  auto r = read_junit_xml(kPytestXunit1, "report.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(ids(*r),
              ::testing::ElementsAre("tests/test_a.py::test_ok",
                                     "tests/test_a.py::TestGroup::test_param[1-a b]",
                                     "tests/test_a.py::test_skip", "tests/test_a.py::test_fixture",
                                     "tests/sub/test_b.py::test_unicode[\\u00e9-\\u2603]"));
  const test_result* param = find(*r, "tests/test_a.py::TestGroup::test_param[1-a b]");
  ASSERT_NE(param, nullptr);
  EXPECT_EQ(param->outcome, test_outcome::failed);
  EXPECT_EQ(param->file, "tests/test_a.py");
  EXPECT_EQ(param->classname, "tests.test_a.TestGroup");
  EXPECT_EQ(param->name, "test_param[1-a b]");
  EXPECT_DOUBLE_EQ(param->seconds, 0.02);
  EXPECT_EQ(param->message, "assert 1 == 2");
  EXPECT_FALSE(param->rerun.has_value());
  EXPECT_EQ(find(*r, "tests/test_a.py::test_ok")->outcome, test_outcome::passed);
  EXPECT_EQ(find(*r, "tests/test_a.py::test_skip")->outcome, test_outcome::skipped);
  const test_result* fixture = find(*r, "tests/test_a.py::test_fixture");
  EXPECT_EQ(fixture->outcome, test_outcome::error);
  EXPECT_EQ(fixture->message, "failed on setup with \"RuntimeError: no db\"");
  EXPECT_DOUBLE_EQ(find(*r, "tests/sub/test_b.py::test_unicode[\\u00e9-\\u2603]")->seconds, 1.5);
}

TEST(JunitTest, PluginPropertiesGiveTheNodeIdAndTheRerunOutcome) {
  auto r = read_junit_xml(kPytestXunit2WithPlugin, "report.xml");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 2u) << ::testing::PrintToString(ids(*r));
  const test_result* flaky = find(*r, "tests/test_a.py::test_flaky");
  ASSERT_NE(flaky, nullptr);
  EXPECT_EQ(flaky->outcome, test_outcome::failed);
  ASSERT_TRUE(flaky->rerun.has_value());
  EXPECT_EQ(*flaky->rerun, test_outcome::passed);
  // The re-run's time is not the test's: a duration is one run's.
  EXPECT_DOUBLE_EQ(flaky->seconds, 0.2);
  EXPECT_EQ(flaky->file, "tests/test_a.py");
  const test_result* colons = find(*r, "tests/test_a.py::test_id[a::b]");
  ASSERT_NE(colons, nullptr);
  EXPECT_EQ(colons->file, "tests/test_a.py");
  EXPECT_EQ(colons->name, "test_id[a::b]");
}

TEST(JunitTest, FailureTimeIsTheEarliestFirstRunsAndBadValuesAreIgnored) {
  auto r = read_junit_xml(R"(<testsuites>
<testsuite>
<testcase classname="t" name="a"><properties><property name="pantry.id" value="t.py::a"/>
  <property name="pantry.failed_at" value="1796611766489"/></properties><failure/></testcase>
<testcase classname="t" name="b"><properties><property name="pantry.id" value="t.py::b"/>
  <property name="pantry.failed_at" value="17966x"/></properties><failure/></testcase>
<testcase classname="t" name="c"><properties><property name="pantry.id" value="t.py::c"/>
  <property name="pantry.failed_at" value="-5"/></properties><failure/></testcase>
<testcase classname="t" name="d"><properties><property name="pantry.id" value="t.py::d"/>
  <property name="pantry.failed_at" value="99999999999999999999"/></properties><failure/></testcase>
<testcase classname="t" name="a"><properties><property name="pantry.id" value="t.py::a"/>
  <property name="pantry.failed_at" value="1796611766400"/></properties><error/></testcase>
<testcase classname="t" name="a"><properties><property name="pantry.id" value="t.py::a"/>
  <property name="pantry.rerun" value="1"/>
  <property name="pantry.failed_at" value="1000"/></properties><failure/></testcase>
<testcase classname="t" name="e"/>
</testsuite></testsuites>)",
                          "report.xml");
  ASSERT_TRUE(r) << r.error().message;
  const auto ms = [](std::int64_t n) {
    return clock::time_point(
        std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(n)));
  };
  // Two first-run testcases of one id: the earlier; the re-run's time is not the failure's.
  EXPECT_EQ(find(*r, "t.py::a")->failed_at, ms(1796611766400));
  EXPECT_EQ(find(*r, "t.py::b")->failed_at, std::nullopt);
  EXPECT_EQ(find(*r, "t.py::c")->failed_at, std::nullopt);
  EXPECT_EQ(find(*r, "t.py::d")->failed_at, std::nullopt);
  EXPECT_EQ(find(*r, "t::e")->failed_at, std::nullopt);
}

TEST(JunitTest, Xunit2WithoutThePluginUsesClassnameAndName) {
  auto r = read_junit_xml(
      R"(<testsuites><testsuite><testcase classname="tests.test_a.TestX" name="test_y" time="1"/></testsuite></testsuites>)",
      "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(ids(*r), ::testing::ElementsAre("tests.test_a.TestX::test_y"));
  EXPECT_EQ((*r)[0].file, "");
}

TEST(JunitTest, NestedSuitesInheritTheirFileAndCaseFileWins) {
  // The shape of Jest's jest-junit and of Go's go-junit-report: nested suites, file on a suite.
  constexpr std::string_view xml = R"(<testsuites name="all">
  <testsuite name="outer" file="src/a.test.js">
    <testsuite name="inner">
      <testcase classname="a adds" name="adds two numbers" time="0.004"/>
      <testcase classname="a adds" name="other file" file="src/b.test.js" time="0.001"/>
    </testsuite>
  </testsuite>
  <testsuite name="github.com/x/y" timestamp="2026-01-01T00:00:00">
    <properties><property name="go.version" value="go1.19"/></properties>
    <testcase classname="y" name="TestZ" time="0.000"><skipped message="skip"/></testcase>
  </testsuite>
</testsuites>)";
  auto r = read_junit_xml(xml, "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(ids(*r), ::testing::ElementsAre("src/a.test.js::a adds::adds two numbers",
                                              "src/b.test.js::a adds::other file", "y::TestZ"));
  EXPECT_EQ((*r)[0].file, "src/a.test.js");
  EXPECT_EQ((*r)[1].file, "src/b.test.js");
  EXPECT_EQ((*r)[2].outcome, test_outcome::skipped);
}

TEST(JunitTest, RootTestsuiteAndDuplicateCasesMergeToTheWorstOutcome) {
  // pytest writes a failing call and a failing teardown of one test as two testcases.
  constexpr std::string_view xml = R"(<testsuite name="pytest">
<testcase classname="t" name="test_x" file="t.py" time="0.5"><failure message="call"/></testcase>
<testcase classname="t" name="test_x" file="t.py" time="0.25"><error message="teardown"/></testcase>
<testcase classname="t" name="test_y" file="t.py" time="0.1"/>
</testsuite>)";
  auto r = read_junit_xml(xml, "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].id, "t.py::test_x");
  EXPECT_EQ((*r)[0].outcome, test_outcome::error);
  EXPECT_EQ((*r)[0].message, "call");
  EXPECT_DOUBLE_EQ((*r)[0].seconds, 0.75);
}

TEST(JunitTest, SurefireFlakyAndRerunElementsAreReruns) {
  constexpr std::string_view xml = R"(<testsuite name="com.x.FooTest">
<testcase name="flaky" classname="com.x.FooTest" time="0.1"><flakyFailure message="once"/></testcase>
<testcase name="broken" classname="com.x.FooTest" time="0.1"><failure message="always"/><rerunFailure message="again"/></testcase>
</testsuite>)";
  auto r = read_junit_xml(xml, "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].outcome, test_outcome::failed);
  EXPECT_EQ((*r)[0].rerun, test_outcome::passed);
  EXPECT_EQ((*r)[1].outcome, test_outcome::failed);
  EXPECT_EQ((*r)[1].rerun, test_outcome::failed);
}

TEST(JunitTest, BadTimesCountAsZero) {
  auto r = read_junit_xml(
      R"(<testsuite><testcase name="a" time=""/><testcase name="b" time="NaN"/><testcase name="c" time="-3"/><testcase name="d" time="1,5"/></testsuite>)",
      "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  for (const auto& t : *r)
    EXPECT_EQ(t.seconds, 0) << t.id;
}

TEST(JunitTest, MalformedXmlIsAnErrorNamingTheFileAndThePlace) {
  EXPECT_THAT(error_of("<testsuites><testsuite><testcase name=\"a\"></testsuite>"),
              HasSubstr("junit: report.xml: is not well-formed XML at byte"));
  EXPECT_THAT(error_of(""), HasSubstr("junit: report.xml: is not well-formed XML"));
  EXPECT_THAT(error_of("<html><body/></html>"),
              HasSubstr("the root element is <html>, not <testsuites> or <testsuite>"));
  EXPECT_THAT(error_of("<testsuite><testcase classname=\"k\"/></testsuite>"),
              HasSubstr("a <testcase> (classname \"k\") has no name attribute"));
}

TEST(JunitTest, EntitiesAreNotExpanded) {
  // A billion-laughs document: pugixml skips the DTD, so the entity reference stays text.
  constexpr std::string_view xml = R"(<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<testsuite><testcase name="&lol2;"/></testsuite>)";
  auto r = read_junit_xml(xml, "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].name, "&lol2;");
}

TEST(JunitTest, LimitsAreErrorsThatSayWhatToDo) {
  junit_limits small;
  small.max_file_bytes = 10;
  EXPECT_THAT(error_of("<testsuite/>   ", small),
              HasSubstr("15 bytes is more than the limit of 10; write smaller files"));
  junit_limits few;
  few.max_test_cases = 2;
  EXPECT_THAT(
      error_of(
          R"(<testsuite><testcase name="a"/><testcase name="b"/><testcase name="c"/></testsuite>)",
          few),
      HasSubstr("more than 2 test cases"));
  std::string deep;
  for (int i = 0; i < 40; ++i)
    deep += "<testsuite>";
  for (int i = 0; i < 40; ++i)
    deep += "</testsuite>";
  EXPECT_THAT(error_of(deep), HasSubstr("nested more than 32 deep"));
}

TEST(JunitTest, DeeplyNestedElementsNeitherRecurseNorCrash) {
  // pugixml parses and frees without recursion; the reader walks only suites, to a bounded depth.
  constexpr int kDepth = 300000;
  std::string xml = "<testsuite>";
  for (int i = 0; i < kDepth; ++i)
    xml += "<a>";
  for (int i = 0; i < kDepth; ++i)
    xml += "</a>";
  xml += "<testcase name=\"x\"/></testsuite>";
  auto r = read_junit_xml(xml, "deep.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->size(), 1u);
  EXPECT_THAT(error_of(xml.substr(0, 11 + 3 * kDepth)),
              HasSubstr("junit: report.xml: is not well-formed XML at byte"));
}

TEST(JunitTest, HugeDocumentOfManyCasesReadsWithinLimits) {
  std::string xml = "<testsuite>";
  for (int i = 0; i < 50000; ++i) {
    xml += "<testcase classname=\"m\" name=\"t" + std::to_string(i) + "\" time=\"0.001\"/>";
  }
  xml += "</testsuite>";
  auto r = read_junit_xml(xml, "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->size(), 50000u);
  EXPECT_EQ(r->back().id, "m::t49999");
}

TEST(JunitTest, LongMessagesAreCutAtACharacter) {
  std::string message(kMaxMessage - 1, 'x');
  message += "\xc3\xa9\xc3\xa9";  // é é: the cut falls inside the first
  auto r = read_junit_xml("<testsuite><testcase name=\"a\"><failure message=\"" + message +
                              "\"/></testcase></testsuite>",
                          "r.xml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[0].message, std::string(kMaxMessage - 1, 'x'));
}

TEST(JunitTest, TestIdFromAttributes) {
  EXPECT_EQ(junit_test_id("tests/test_a.py", "tests.test_a", "test_x"), "tests/test_a.py::test_x");
  EXPECT_EQ(junit_test_id("tests/test_a.py", "tests.test_a.A.B", "test_x"),
            "tests/test_a.py::A::B::test_x");
  EXPECT_EQ(junit_test_id("tests/test_a.py", "", "test_x"), "tests/test_a.py::test_x");
  EXPECT_EQ(junit_test_id("spec/a.rb", "A thing", "does"), "spec/a.rb::A thing::does");
  EXPECT_EQ(junit_test_id("", "pkg.Cls", "m"), "pkg.Cls::m");
  EXPECT_EQ(junit_test_id("", "", "m"), "m");
  // A dot in a directory is not an extension.
  EXPECT_EQ(junit_test_id("v1.2/test", "v1.2.test.K", "m"), "v1.2/test::K::m");
}

// The report of pantry_pytest_test.py's PLUGIN_SUITE as the plugin and pytest 7.2 write it; that
// test checks the plugin still writes exactly these testcases, and this one reads them.
TEST(JunitTest, ReadsTheReportThePytestPluginWrites) {
  const auto path = std::filesystem::path(PANTRY_TEST_DATA_DIR) / "pytest_plugin_junit.xml";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const std::string xml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto r = read_junit_xml(xml, path.string());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(ids(*r),
              ::testing::ElementsAre("test_a.py::test_ok", "test_a.py::test_flaky",
                                     "test_a.py::test_broken", "test_a.py::test_param[a::b]",
                                     "test_a.py::test_param[1-\\xe9]", "test_a.py::test_skipped"));
  const test_result* flaky = find(*r, "test_a.py::test_flaky");
  EXPECT_EQ(flaky->outcome, test_outcome::failed);
  EXPECT_EQ(flaky->rerun, test_outcome::passed);
  EXPECT_EQ(flaky->message, "AssertionError: fails every other run");
  EXPECT_EQ(flaky->file, "test_a.py");
  const test_result* broken = find(*r, "test_a.py::test_broken");
  EXPECT_EQ(broken->outcome, test_outcome::failed);
  EXPECT_EQ(broken->rerun, test_outcome::failed);
  EXPECT_EQ(find(*r, "test_a.py::test_ok")->rerun, std::nullopt);
  // The first runs' failure times as the plugin wrote them, in the order the tests ran.
  ASSERT_TRUE(flaky->failed_at.has_value());
  ASSERT_TRUE(broken->failed_at.has_value());
  EXPECT_LE(*flaky->failed_at, *broken->failed_at);
  EXPECT_GT(flaky->failed_at->time_since_epoch(), std::chrono::hours(24 * 365 * 50));
  EXPECT_EQ(find(*r, "test_a.py::test_ok")->failed_at, std::nullopt);
  EXPECT_EQ(find(*r, "test_a.py::test_skipped")->outcome, test_outcome::skipped);
}

class JunitDirTest : public test_util::temp_dir_test {
 protected:
  void write(const std::filesystem::path& rel, std::string_view text) {
    std::filesystem::create_directories((dir_ / rel).parent_path());
    std::ofstream(dir_ / rel, std::ios::binary) << text;
  }
};

TEST_F(JunitDirTest, ReadsEveryXmlFileAndReportsTheBadOnes) {
  write("shard1.xml", kPytestXunit1);
  write(
      "sub/go.xml",
      R"(<testsuites><testsuite><testcase classname="y" name="TestZ"/></testsuite></testsuites>)");
  write("broken.xml", "<testsuites><testsuite>");
  write("notes.txt", "not a report");
  std::filesystem::create_symlink("/etc/passwd", dir_ / "link.xml");
  auto report = read_junit_dir(dir_);
  EXPECT_EQ(report.files, 2u);
  EXPECT_EQ(report.results.size(), 6u) << ::testing::PrintToString(ids(report.results));
  ASSERT_EQ(report.problems.size(), 1u) << ::testing::PrintToString(report.problems);
  EXPECT_THAT(report.problems[0],
              HasSubstr((dir_ / "broken.xml").string() + ": is not well-formed XML"));
  EXPECT_NE(find(report.results, "y::TestZ"), nullptr);
}

TEST_F(JunitDirTest, FilesOfOneTestMergeAcrossFiles) {
  write(
      "a.xml",
      R"(<testsuite><testcase classname="t" name="x" file="t.py" time="1"><failure/></testcase></testsuite>)");
  write("b.xml", R"(<testsuite><testcase classname="t" name="x" file="t.py" time="1">
<properties><property name="pantry.rerun" value="1"/></properties></testcase></testsuite>)");
  auto report = read_junit_dir(dir_);
  ASSERT_EQ(report.results.size(), 1u);
  EXPECT_EQ(report.results[0].outcome, test_outcome::failed);
  // b.xml alone reads its re-run as a first run; merged it is a second run's time.
  EXPECT_DOUBLE_EQ(report.results[0].seconds, 2);
}

TEST_F(JunitDirTest, TooManyFilesAndTooBigFilesAreProblemsNotFailures) {
  for (int i = 0; i < 5; ++i) {
    write("r" + std::to_string(i) + ".xml",
          "<testsuite><testcase name=\"t" + std::to_string(i) + "\"/></testsuite>");
  }
  junit_limits limits;
  limits.max_files = 3;
  auto report = read_junit_dir(dir_, limits);
  EXPECT_EQ(report.files, 3u);
  EXPECT_EQ(report.results.size(), 3u);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_THAT(report.problems[0], HasSubstr("5 XML files, more than the limit of 3"));

  limits = {};
  limits.max_file_bytes = 50;
  write("r0.xml", "<testsuite><testcase name=\"a-much-longer-name-than-forty\"/></testsuite>");
  report = read_junit_dir(dir_, limits);
  EXPECT_EQ(report.files, 4u);
  ASSERT_EQ(report.problems.size(), 1u) << ::testing::PrintToString(report.problems);
  EXPECT_THAT(report.problems[0], HasSubstr("r0.xml: 71 bytes is more than the limit of 50"));
}

TEST_F(JunitDirTest, MissingDirectoryIsAnEmptyReport) {
  auto report = read_junit_dir(dir_ / "absent");
  EXPECT_EQ(report.files, 0u);
  EXPECT_TRUE(report.results.empty());
  EXPECT_TRUE(report.problems.empty());
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
