// PEP 508 markers and requirements: parsing, evaluation against target environments, the
// version-or-string rule, extras normalization, and errors that say where and what.

#include "pantry/registry/pypi/markers.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace pantry::registry::pypi {
namespace {

marker m(std::string_view text) {
  auto parsed = marker::parse(text);
  EXPECT_TRUE(parsed.has_value()) << "marker::parse(\"" << text
                                  << "\"): " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : marker{};
}

marker_environment target(std::string_view python, std::string_view platform,
                          std::string_view machine = "x86_64") {
  auto env = marker_environment::for_target(python, platform, machine);
  EXPECT_TRUE(env.has_value()) << python << " " << platform << ": "
                               << (env ? "" : env.error().message);
  return env ? *env : marker_environment{};
}

TEST(PypiMarkersTest, EvaluatesAgainstTargets) {
  const auto linux311 = target("3.11", "linux");
  const auto linux38 = target("3.8.10", "linux");
  const auto win312 = target("3.12", "windows");
  const auto mac310 = target("3.10", "macos", "aarch64");
  struct row {
    std::string marker;
    bool linux311, linux38, win312, mac310;
  };
  const std::vector<row> rows = {
      {"python_version >= \"3.9\"", true, false, true, true},
      // As versions: "3.10" > "3.9" although it sorts lower as a string.
      {"python_version > '3.9'", true, false, true, true},
      {"python_version < \"3.10\"", false, true, false, false},
      {"python_full_version >= '3.8.10'", true, true, true, true},
      {"python_full_version < '3.8.10'", false, false, false, false},
      {"python_version == '3.8.*'", false, true, false, false},
      {"python_version ~= '3.10'", true, false, true, true},
      {"python_version != '3.11'", false, true, true, true},
      {"'3.9' < python_version", true, false, true, true},
      {"sys_platform == 'linux'", true, true, false, false},
      {"sys_platform == \"win32\" or sys_platform == \"darwin\"", false, false, true, true},
      {"platform_system != 'Windows'", true, true, false, true},
      {"os_name == 'nt'", false, false, true, false},
      {"platform_machine == 'x86_64'", true, true, false, false},
      {"platform_machine == 'AMD64'", false, false, true, false},
      {"platform_machine == 'arm64'", false, false, false, true},
      {"implementation_name == 'cpython'", true, true, true, true},
      {"platform_python_implementation == 'CPython'", true, true, true, true},
      {"platform_python_implementation != 'PyPy'", true, true, true, true},
      {"'linux' in sys_platform", true, true, false, false},
      {"sys_platform not in 'win32 cygwin'", true, true, false, true},
      {"sys_platform in 'win32 cygwin'", false, false, true, false},
      // `and` binds tighter than `or`; parentheses regroup.
      {"sys_platform == 'win32' or sys_platform == 'linux' and python_version >= '3.9'", true,
       false, true, false},
      {"(sys_platform == 'win32' or sys_platform == 'linux') and python_version >= '3.9'", true,
       false, true, false},
      {"(sys_platform == 'darwin' or sys_platform == 'linux') and python_version < '3.9'", false,
       true, false, false},
      {"((python_version >= '3.8'))", true, true, true, true},
      // The old dotted names.
      {"sys.platform == 'linux' and os.name == 'posix'", true, true, false, false},
      {"python_implementation == 'CPython'", true, true, true, true},
      // Strings compared as strings when either side is not a version.
      {"platform_system > 'Darwin'", true, true, true, false},
      {"extra == 'test'", false, false, false, false},
  };
  for (const auto& r : rows) {
    const auto parsed = m(r.marker);
    EXPECT_EQ(parsed.evaluate(linux311), r.linux311) << r.marker << " on linux 3.11";
    EXPECT_EQ(parsed.evaluate(linux38), r.linux38) << r.marker << " on linux 3.8.10";
    EXPECT_EQ(parsed.evaluate(win312), r.win312) << r.marker << " on windows 3.12";
    EXPECT_EQ(parsed.evaluate(mac310), r.mac310) << r.marker << " on macos 3.10 arm64";
  }
}

TEST(PypiMarkersTest, ExtrasCompareNormalized) {
  auto env = target("3.11", "linux");
  const auto test_extra = m("extra == \"Test_Suite\"");
  EXPECT_FALSE(test_extra.evaluate(env));
  env.extra = "test-suite";
  EXPECT_TRUE(test_extra.evaluate(env));
  env.extra = "test.SUITE";
  EXPECT_TRUE(test_extra.evaluate(env));
  EXPECT_FALSE(m("extra != 'test-suite'").evaluate(env));
  env.extra = "docs";
  EXPECT_FALSE(test_extra.evaluate(env));
}

TEST(PypiMarkersTest, PrintsOneSpellingThatParsesToItself) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"python_version>='3.8'", "python_version >= \"3.8\""},
      {"  os.name=='nt'  ", "os_name == \"nt\""},
      {"a_b == 'x' or (python_version<'3' and extra=='y')", ""},
      {"(sys_platform=='a' or sys_platform=='b') and extra=='c'",
       "(sys_platform == \"a\" or sys_platform == \"b\") and extra == \"c\""},
      {"'x\"y' in platform_version", "'x\"y' in platform_version"},
      {"sys_platform not   in 'ab'", "sys_platform not in \"ab\""},
      {"python_version>'3'and\textra=='x'", "python_version > \"3\" and extra == \"x\""},
  };
  for (const auto& [in, want] : cases) {
    auto parsed = marker::parse(in);
    if (want.empty()) {
      EXPECT_FALSE(parsed.has_value()) << in;
      continue;
    }
    ASSERT_TRUE(parsed.has_value()) << in << ": " << parsed.error().message;
    EXPECT_EQ(parsed->str(), want) << in;
    auto again = marker::parse(parsed->str());
    ASSERT_TRUE(again.has_value()) << parsed->str();
    EXPECT_EQ(again->str(), want);
  }
  EXPECT_EQ(m("extra == 'a' or python_version < '3' and sys.platform == 'x'").variables(),
            (std::vector<std::string>{"extra", "python_version", "sys_platform"}));
}

TEST(PypiMarkersTest, ErrorsQuoteTheMarkerAndGiveTheOffset) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "at offset 0, expected a marker variable"},
      {"python_version", "at offset 14, expected a comparison operator"},
      {"python_version >= ", "at offset 18, expected a marker variable"},
      {"python_version >= '3.8", "expected the closing '"},
      {"pyhton_version >= '3.8'", "a marker variable, not \"pyhton_version\""},
      {"python_version >= 3.8", "strings need quotes"},
      {"(python_version >= '3.8'", "expected \")\""},
      {"python_version >= '3.8' xor extra == 'a'", "at offset 24, expected \"and\", \"or\""},
      {"python_version >= '3.8' and", "expected a marker variable"},
      {"python_version => '3.8'", "expected a comparison operator"},
      {"extra notin 'a'", "expected a comparison operator"},
      {std::string(100, '(') + "extra == 'a'" + std::string(100, ')'), "nested parentheses"},
  };
  for (const auto& [text, why] : cases) {
    auto parsed = marker::parse(text);
    ASSERT_FALSE(parsed.has_value()) << "\"" << text << "\" parsed as " << parsed->str();
    EXPECT_NE(parsed.error().message.find(why), std::string::npos)
        << "\"" << text << "\": " << parsed.error().message;
    EXPECT_TRUE(parsed.error().message.starts_with("marker \"")) << parsed.error().message;
  }
}

TEST(PypiMarkersTest, TargetsAreCheckedAndNamed) {
  const auto env = target("3.12.1", "Windows", "x86_64");
  EXPECT_EQ(env.python_version, "3.12");
  EXPECT_EQ(env.python_full_version, "3.12.1");
  EXPECT_EQ(env.implementation_version, "3.12.1");
  EXPECT_EQ(env.sys_platform, "win32");
  EXPECT_EQ(env.platform_system, "Windows");
  EXPECT_EQ(env.os_name, "nt");
  EXPECT_EQ(env.platform_machine, "AMD64");
  EXPECT_EQ(target("3.9", "darwin").platform_system, "Darwin");
  EXPECT_EQ(target("3.9", "linux", "aarch64").platform_machine, "aarch64");
  struct bad {
    std::string python, platform, named;
  };
  for (const auto& [python, platform, named] : std::vector<bad>{{"3", "linux", "\"3\""},
                                                                {"three", "linux", "\"three\""},
                                                                {"3.x", "linux", "\"3.x\""},
                                                                {"3.11.", "linux", "\"3.11.\""},
                                                                {"3.11", "solaris", "\"solaris\""},
                                                                {"3.11", "", "platform \"\""}}) {
    auto env2 = marker_environment::for_target(python, platform);
    ASSERT_FALSE(env2.has_value()) << python << " " << platform;
    EXPECT_NE(env2.error().message.find(named), std::string::npos) << env2.error().message;
  }
  EXPECT_EQ(*target("3.11", "linux").find("python_version"), "3.11");
  EXPECT_EQ(target("3.11", "linux").find("nonsense"), nullptr);
}

TEST(PypiRequirementTest, ParsesEveryForm) {
  struct row {
    std::string text;
    std::string name;
    std::vector<std::string> extras;
    std::string specifiers;
    std::string url;
    std::string marker;
    std::string str;
  };
  const std::vector<row> rows = {
      {"requests", "requests", {}, "", "", "", "requests"},
      {"requests>=2.8.1,==2.8.*", "requests", {}, ">=2.8.1,==2.8.*", "", "", ""},
      {"requests [security,tests] >= 2.8.1, == 2.8.* ; python_version < \"2.7\"",
       "requests",
       {"security", "tests"},
       ">=2.8.1,==2.8.*",
       "",
       "python_version < \"2.7\"",
       "requests[security,tests]>=2.8.1,==2.8.*; python_version < \"2.7\""},
      {"name (>=1.0, <2)", "name", {}, ">=1.0,<2", "", "", "name>=1.0,<2"},
      {"name[]==1", "name", {}, "==1", "", "", "name==1"},
      {"pip @ https://github.com/pypa/pip/archive/1.3.1.zip#sha1=da9234ee",
       "pip",
       {},
       "",
       "https://github.com/pypa/pip/archive/1.3.1.zip#sha1=da9234ee",
       "",
       "pip @ https://github.com/pypa/pip/archive/1.3.1.zip#sha1=da9234ee"},
      {"name@http://foo.com ; python_version=='2.7'",
       "name",
       {},
       "",
       "http://foo.com",
       "python_version == \"2.7\"",
       "name @ http://foo.com ; python_version == \"2.7\""},
      {"Foo.Bar_baz-2;extra=='x'",
       "Foo.Bar_baz-2",
       {},
       "",
       "",
       "extra == \"x\"",
       "Foo.Bar_baz-2; extra == \"x\""},
      {"A", "A", {}, "", "", "", "A"},
  };
  for (const auto& r : rows) {
    auto parsed = requirement::parse(r.text);
    ASSERT_TRUE(parsed.has_value()) << r.text << ": " << parsed.error().message;
    EXPECT_EQ(parsed->name, r.name) << r.text;
    EXPECT_EQ(parsed->extras, r.extras) << r.text;
    EXPECT_EQ(parsed->specifiers.str(), r.specifiers) << r.text;
    EXPECT_EQ(parsed->url, r.url) << r.text;
    EXPECT_EQ(parsed->environment ? parsed->environment->str() : "", r.marker) << r.text;
    const std::string want = r.str.empty() ? r.name + r.specifiers : r.str;
    EXPECT_EQ(parsed->str(), want) << r.text;
    auto again = requirement::parse(parsed->str());
    ASSERT_TRUE(again.has_value()) << parsed->str();
    EXPECT_EQ(again->str(), want);
  }
}

TEST(PypiRequirementTest, AppliesByItsMarker) {
  auto env = target("3.8", "linux");
  auto r = requirement::parse("importlib-metadata>=4; python_version < '3.10'");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_TRUE(r->applies_to(env));
  EXPECT_FALSE(r->applies_to(target("3.10", "linux")));
  auto plain = requirement::parse("idna>=2.5");
  ASSERT_TRUE(plain.has_value());
  EXPECT_TRUE(plain->applies_to(env));
  auto test_only = requirement::parse("pytest>=7; extra == 'test'");
  ASSERT_TRUE(test_only.has_value());
  EXPECT_FALSE(test_only->applies_to(env));
  env.extra = "test";
  EXPECT_TRUE(test_only->applies_to(env));
}

TEST(PypiRequirementTest, ErrorsQuoteTheRequirementAndSayWhy) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no project name"},
      {">=1.0", "no project name"},
      {"-foo", "no project name"},
      {"foo[bar", "'[' of the extras is not closed"},
      {"foo[b@r]", "\"b@r\" is not an extra's name"},
      {"foo[a,]", "\"\" is not an extra's name"},
      {"foo (>=1.0", "'(' of the version specifiers is not closed"},
      {"foo >=1.0 <2", "white space inside the version"},
      {"foo bar", "no operator"},
      {"foo==1.x", "is not a PEP 440 version"},
      {"foo==1.0;", "nothing after ';'"},
      {"foo==1.0; python_version >= 3", "strings need quotes"},
      {"foo @", "no URL after '@'"},
      {"foo @ http://x extra", "after the URL"},
  };
  for (const auto& [text, why] : cases) {
    auto parsed = requirement::parse(text);
    ASSERT_FALSE(parsed.has_value()) << "\"" << text << "\" parsed as " << parsed->str();
    EXPECT_NE(parsed.error().message.find(why), std::string::npos)
        << "\"" << text << "\": " << parsed.error().message;
    EXPECT_TRUE(parsed.error().message.starts_with("requirement \"")) << parsed.error().message;
  }
}

}  // namespace
}  // namespace pantry::registry::pypi
