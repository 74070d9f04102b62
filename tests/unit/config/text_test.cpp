#include "pantry/text.h"

#include <gtest/gtest.h>

#include <string_view>

namespace pantry {
namespace {

TEST(TextTest, AsciiLowerFoldsOnlyAsciiLetters) {
  EXPECT_EQ(ascii_lower("Content-TYPE"), "content-type");
  EXPECT_EQ(ascii_lower("caf\xc3\x89 @[`{"), "caf\xc3\x89 @[`{");
  EXPECT_EQ(ascii_lower(""), "");
}

TEST(TextTest, AsciiIequalsIgnoresCaseOnly) {
  EXPECT_TRUE(ascii_iequals("100-Continue", "100-continue"));
  EXPECT_TRUE(ascii_iequals("", ""));
  EXPECT_FALSE(ascii_iequals("abc", "abd"));
  EXPECT_FALSE(ascii_iequals("abc", "abcd"));
  // '@' and '`' differ from 'A'/'a' by the case bit; they must not compare equal to letters.
  EXPECT_FALSE(ascii_iequals("@", "`"));
  EXPECT_FALSE(ascii_iequals("[", "{"));
}

TEST(TextTest, TrimRemovesHtmlAndHttpWhiteSpace) {
  EXPECT_EQ(trim_ascii_space(" \t\r\n\fa b\t "), "a b");
  EXPECT_EQ(trim_ascii_space("   "), "");
  EXPECT_EQ(trim_ascii_space("x"), "x");
  EXPECT_EQ(trim_ascii_space("\vx"), "\vx");  // vertical tab is not HTTP or HTML white space
}

TEST(TextTest, ParsePortTakesZeroTo65535) {
  EXPECT_EQ(parse_port("0"), std::optional<std::uint16_t>(0));
  EXPECT_EQ(parse_port("8585"), std::optional<std::uint16_t>(8585));
  EXPECT_EQ(parse_port("65535"), std::optional<std::uint16_t>(65535));
  EXPECT_EQ(parse_port("00080"), std::optional<std::uint16_t>(80));
  for (std::string_view bad : {"", "65536", "99999", "100000", "-1", "+1", "8a", " 80", "0x50"}) {
    EXPECT_EQ(parse_port(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(TextTest, NormalizesAsPep503Says) {
  EXPECT_EQ(normalize_project_name("Django"), "django");
  EXPECT_EQ(normalize_project_name("Silly_Walk"), "silly-walk");
  EXPECT_EQ(normalize_project_name("zope.interface"), "zope-interface");
  EXPECT_EQ(normalize_project_name("Pantry_Demo.Util"), "pantry-demo-util");
  EXPECT_EQ(normalize_project_name("a-_.-b"), "a-b");
  EXPECT_EQ(normalize_project_name("A__B..C--D"), "a-b-c-d");
  EXPECT_EQ(normalize_project_name("ruamel.yaml.clib"), "ruamel-yaml-clib");
  EXPECT_EQ(normalize_project_name(""), "");
}

TEST(TextTest, IsNormalizedAgreesWithNormalize) {
  for (std::string_view name :
       {"django", "silly-walk", "Django", "silly_walk", "a.b", "a--b", "a-b-c", "", "a1", "-"}) {
    EXPECT_EQ(is_normalized_project_name(name), normalize_project_name(name) == name) << name;
  }
}

TEST(TextTest, ValidNamesArePep508Names) {
  for (std::string_view name : {"a", "A1", "foo-bar", "foo_bar", "zope.interface", "x.y_z-1"}) {
    EXPECT_TRUE(is_valid_project_name(name)) << name;
  }
  for (std::string_view name :
       {"", "-a", "a-", ".a", "a.", "a b", "a/b", "..", "a%2fb", "caf\xc3\xa9", "a\nb"}) {
    EXPECT_FALSE(is_valid_project_name(name)) << name;
  }
}

}  // namespace
}  // namespace pantry
