// PEP 440 versions and specifiers, checked against the examples of the PEP's own text (its
// normalization section, its example ordering, its compatible release, version matching,
// exclusion and exclusive comparison examples) and the corners between them.

#include "pantry/registry/pypi/pep440.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace pantry::registry::pypi {
namespace {

version v(std::string_view text) {
  auto parsed = version::parse(text);
  EXPECT_TRUE(parsed.has_value()) << "version::parse(\"" << text
                                  << "\"): " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : version{};
}

specifier_set set(std::string_view text) {
  auto parsed = specifier_set::parse(text);
  EXPECT_TRUE(parsed.has_value()) << "specifier_set::parse(\"" << text
                                  << "\"): " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : specifier_set{};
}

// True iff `candidate` matches `specs` with pre-releases allowed (the clause rules alone).
bool takes(std::string_view specs, std::string_view candidate) {
  return set(specs).contains(v(candidate), prereleases::allow);
}

TEST(Pep440Test, NormalizationExamplesOfThePep) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      // Case sensitivity, integer normalization.
      {"1.1RC1", "1.1rc1"},
      {"00", "0"},
      {"09000", "9000"},
      {"1.0+foo0100", "1.0+foo0100"},
      // Pre-release separators and spellings, implicit pre-release number.
      {"1.1.a1", "1.1a1"},
      {"1.1-a1", "1.1a1"},
      {"1.1_a1", "1.1a1"},
      {"1.0a.1", "1.0a1"},
      {"1.0a-1", "1.0a1"},
      {"1.1alpha1", "1.1a1"},
      {"1.1beta2", "1.1b2"},
      {"1.1c3", "1.1rc3"},
      {"1.1pre4", "1.1rc4"},
      {"1.1preview5", "1.1rc5"},
      {"1.2a", "1.2a0"},
      // Post-release separators, spellings, implicit number, implicit post releases.
      {"1.2-post2", "1.2.post2"},
      {"1.2post2", "1.2.post2"},
      {"1.2.post.2", "1.2.post2"},
      {"1.2_post_2", "1.2.post2"},
      {"1.0-r4", "1.0.post4"},
      {"1.0-rev4", "1.0.post4"},
      {"1.2.post", "1.2.post0"},
      {"1.0-1", "1.0.post1"},
      // Development release separators and implicit number.
      {"1.2-dev2", "1.2.dev2"},
      {"1.2dev2", "1.2.dev2"},
      {"1.2.dev", "1.2.dev0"},
      // Local version segments, preceding v, white space.
      {"1.0+ubuntu-1", "1.0+ubuntu.1"},
      {"1.0+ubuntu_1", "1.0+ubuntu.1"},
      {"1.0+Ubuntu.01", "1.0+ubuntu.1"},
      {"v1.0", "1.0"},
      {"V1.0", "1.0"},
      {"  1.0\n", "1.0"},
      // Epochs, everything at once, trailing zeros kept.
      {"1!1.0", "1!1.0"},
      {"0!1.0", "1.0"},
      {"01!1.0", "1!1.0"},
      {"1.0.0", "1.0.0"},
      {"2!1.0-RC-1_POST.3-dev.4+A.b-C", "2!1.0rc1.post3.dev4+a.b.c"},
      {"1.0a.post1", "1.0a0.post1"},
      {"1.0a.", "1.0a0"},
      {"1.0.dev.", "1.0.dev0"},
      {"1.0c", "1.0rc0"},
      {"1.0RC1.Dev2", "1.0rc1.dev2"},
      {"123456789012345678901234567890.1", "123456789012345678901234567890.1"},
  };
  for (const auto& [in, want] : cases) {
    auto parsed = version::parse(in);
    ASSERT_TRUE(parsed.has_value()) << "\"" << in << "\": " << parsed.error().message;
    EXPECT_EQ(parsed->str(), want) << "from \"" << in << "\"";
    auto again = version::parse(parsed->str());
    ASSERT_TRUE(again.has_value()) << want;
    EXPECT_EQ(again->str(), want) << "the canonical spelling parses to itself";
  }
}

TEST(Pep440Test, InvalidVersionsAreErrorsThatQuoteTheText) {
  for (std::string_view bad : {"",
                               " ",
                               "1.0-",
                               "1.0x",
                               "a1",
                               "1..0",
                               "1.0.",
                               "1.0+",
                               "1.0+a..b",
                               "1.0+a_",
                               "!1.0",
                               "1!",
                               "1.0 1",
                               "1.0a1a2",
                               "1.0.post1.post2",
                               "1.0-dev-1-2",
                               "1.0_1",
                               "1.0prev1",
                               "1.0+é",
                               "1,0",
                               "vv1.0",
                               "1.0dev1.post1",
                               "1.0.post1a1"}) {
    auto parsed = version::parse(bad);
    ASSERT_FALSE(parsed.has_value()) << "\"" << bad << "\" parsed as " << parsed->str();
    EXPECT_NE(parsed.error().message.find("is not a PEP 440 version"), std::string::npos)
        << parsed.error().message;
    EXPECT_TRUE(parsed.error().is(errc::invalid_argument));
  }
  auto parsed = version::parse("1.0x");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().message.rfind("\"1.0x\" is not a PEP 440 version: ", 0), 0u)
      << parsed.error().message;
}

TEST(Pep440Test, TheExampleOrderingOfThePep) {
  // The PEP's "summary of permitted suffixes and relative ordering" example, plus epochs.
  const std::vector<std::string> ordered = {
      "1.dev0",
      "1.0.dev456",
      "1.0a1",
      "1.0a2.dev456",
      "1.0a12.dev456",
      "1.0a12",
      "1.0b1.dev456",
      "1.0b2",
      "1.0b2.post345.dev456",
      "1.0b2.post345",
      "1.0rc1.dev456",
      "1.0rc1",
      "1.0",
      "1.0+abc.5",
      "1.0+abc.7",
      "1.0+5",
      "1.0.post456.dev34",
      "1.0.post456",
      "1.0.15",
      "1.1.dev1",
      "2012.4",
      "1!0.1",
      "1!1.0",
  };
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    for (std::size_t j = 0; j < ordered.size(); ++j) {
      const auto a = v(ordered[i]);
      const auto b = v(ordered[j]);
      EXPECT_EQ(a < b, i < j) << ordered[i] << " vs " << ordered[j];
      EXPECT_EQ(a == b, i == j) << ordered[i] << " vs " << ordered[j];
    }
  }
}

TEST(Pep440Test, OrderingCorners) {
  EXPECT_EQ(v("1.0"), v("1.0.0"));
  EXPECT_EQ(v("1"), v("1.0.0.0"));
  EXPECT_EQ(v("1.0a1"), v("1.0.0a1"));
  EXPECT_LT(v("1.9"), v("1.10"));
  EXPECT_LT(v("1.0.dev1"), v("1.0a0.dev0"));
  EXPECT_LT(v("1.0a0.post0"), v("1.0"));
  EXPECT_LT(v("1.0a1.post1.dev1"), v("1.0a1.post1"));
  EXPECT_LT(v("1.0"), v("1.0.post0.dev0"));
  EXPECT_LT(v("1.0+5"), v("1.0.post0.dev0"));
  // Local labels: numeric segments above alphanumeric ones, a prefix first, numbers as numbers.
  EXPECT_LT(v("1.0+abc"), v("1.0+1"));
  EXPECT_LT(v("1.0+abc"), v("1.0+abc.1"));
  EXPECT_LT(v("1.0+2"), v("1.0+10"));
  EXPECT_LT(v("1.0+a10"), v("1.0+a9"));
  EXPECT_EQ(v("1.0+ABC.01"), v("1.0+abc.1"));
  EXPECT_NE(v("1.0"), v("1.0+0"));
  EXPECT_LT(v("99999999999999999999"), v("100000000000000000000"));
  EXPECT_LT(v("1!0"), v("2!0"));
}

TEST(Pep440Test, PartsAndKinds) {
  const auto x = v("3!1.02.3rc4.post5.dev6+Local.07");
  EXPECT_EQ(x.epoch(), "3");
  EXPECT_EQ(x.release(), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(x.pre(), version::pre_kind::rc);
  EXPECT_EQ(x.pre_number(), "4");
  EXPECT_EQ(x.post(), std::optional<std::string>("5"));
  EXPECT_EQ(x.dev(), std::optional<std::string>("6"));
  EXPECT_EQ(x.local(), (std::vector<std::string>{"local", "7"}));
  EXPECT_EQ(x.public_str(), "3!1.2.3rc4.post5.dev6");
  EXPECT_EQ(x.base_str(), "3!1.2.3");
  EXPECT_EQ(x.base_version().str(), "3!1.2.3");
  EXPECT_EQ(x.public_version().str(), "3!1.2.3rc4.post5.dev6");
  EXPECT_TRUE(v("1.0a1").is_prerelease());
  EXPECT_TRUE(v("1.0.dev1").is_prerelease());
  EXPECT_TRUE(v("1.0.post1.dev1").is_prerelease());
  EXPECT_FALSE(v("1.0.post1").is_prerelease());
  EXPECT_FALSE(v("1.0+local").is_prerelease());
  EXPECT_TRUE(v("1.0.post1").is_postrelease());
  EXPECT_TRUE(v("1.0.dev0").is_devrelease());
  EXPECT_TRUE(v("1.0+x").has_local());
}

TEST(Pep440Test, CompatibleReleaseExamplesOfThePep) {
  // Each ~= clause against its expansion in the PEP, on versions around the boundaries.
  const std::vector<std::pair<std::string, std::string>> expansions = {
      {"~=2.2", ">=2.2,==2.*"},
      {"~=1.4.5", ">=1.4.5,==1.4.*"},
      {"~=2.2.post3", ">=2.2.post3,==2.*"},
      {"~=1.4.5a4", ">=1.4.5a4,==1.4.*"},
      {"~=2.2.0", ">=2.2.0,==2.2.*"},
      {"~=1.4.5.0", ">=1.4.5.0,==1.4.5.*"},
      {"~=1!2.2", ">=1!2.2,==1!2.*"},
  };
  const std::vector<std::string> candidates = {
      "1.4",    "1.4.4", "1.4.5a3", "1.4.5a4",  "1.4.5",     "1.4.5.0",   "1.4.5.1",   "1.4.6",
      "1.4.99", "1.5",   "2.1",     "2.2",      "2.2.0",     "2.2.post2", "2.2.post3", "2.2.1",
      "2.3",    "2.99",  "3.0",     "3.0.dev0", "2.2+local", "1!2.2",     "1!2.5",     "1!3.0",
  };
  for (const auto& [compatible, expanded] : expansions) {
    for (const auto& c : candidates) {
      EXPECT_EQ(takes(compatible, c), takes(expanded, c))
          << compatible << " vs " << expanded << " on " << c;
    }
  }
  EXPECT_TRUE(takes("~=2.2", "2.3"));
  EXPECT_FALSE(takes("~=2.2", "3.0"));
  EXPECT_FALSE(takes("~=1.4.5", "1.5.0"));
  EXPECT_TRUE(takes("~=1.4.5", "1.4.7"));
}

TEST(Pep440Test, VersionMatchingExamplesOfThePep) {
  // "Version 1.1.post1" against == and !=, strict and prefix.
  EXPECT_FALSE(takes("==1.1", "1.1.post1"));
  EXPECT_TRUE(takes("==1.1.post1", "1.1.post1"));
  EXPECT_TRUE(takes("==1.1.*", "1.1.post1"));
  EXPECT_TRUE(takes("!=1.1", "1.1.post1"));
  EXPECT_FALSE(takes("!=1.1.post1", "1.1.post1"));
  EXPECT_FALSE(takes("!=1.1.*", "1.1.post1"));
  // Zero padding both ways, and in prefix matches.
  EXPECT_TRUE(takes("==1.1", "1.1.0"));
  EXPECT_TRUE(takes("==1.1.0", "1.1"));
  EXPECT_TRUE(takes("==1.1.0.*", "1.1"));
  EXPECT_TRUE(takes("==1.*", "1"));
  EXPECT_TRUE(takes("==1.1.*", "1.1a1"));
  EXPECT_TRUE(takes("==1.1.*", "1.1.dev1"));
  EXPECT_FALSE(takes("==1.1.*", "1.10"));
  EXPECT_FALSE(takes("==1.1.*", "1!1.1"));
  // "==3.1" matches 3.1.0 and the local versions of 3.1, "==3.1+x" only that one.
  EXPECT_TRUE(takes("==3.1", "3.1+ubuntu.1"));
  EXPECT_TRUE(takes("==3.1+ubuntu.1", "3.1+Ubuntu-1"));
  EXPECT_FALSE(takes("==3.1+ubuntu.1", "3.1"));
  EXPECT_FALSE(takes("==3.1+ubuntu.1", "3.1+ubuntu.2"));
  EXPECT_TRUE(takes("==1.1.*", "1.1+local"));
  // Prefix matches with a pre or post part.
  EXPECT_TRUE(takes("==1.1a1.*", "1.1a1.post2"));
  EXPECT_FALSE(takes("==1.1a1.*", "1.1a2"));
  EXPECT_TRUE(takes("==1.1.post1.*", "1.1.post1.dev3"));
}

TEST(Pep440Test, InclusiveAndExclusiveOrderedComparisonsOfThePep) {
  EXPECT_TRUE(takes(">=1.0", "1.0"));
  EXPECT_TRUE(takes(">=1.0", "1.0+local"));
  EXPECT_TRUE(takes("<=1.0", "1.0+local"));
  EXPECT_FALSE(takes(">=1.0", "1.0rc1"));
  EXPECT_TRUE(takes("<=1.0", "1.0rc1"));
  // ">1.7 should allow 1.7.1 but not 1.7.0.post1"; ">1.7.post2 should allow 1.7.1 and
  // 1.7.0.post3 but not 1.7.0".
  EXPECT_TRUE(takes(">1.7", "1.7.1"));
  EXPECT_FALSE(takes(">1.7", "1.7.0.post1"));
  EXPECT_TRUE(takes(">1.7.post2", "1.7.1"));
  EXPECT_TRUE(takes(">1.7.post2", "1.7.0.post3"));
  EXPECT_FALSE(takes(">1.7.post2", "1.7.0"));
  // >V never takes a local version of V.
  EXPECT_FALSE(takes(">1.7", "1.7+local"));
  EXPECT_TRUE(takes(">1.7", "1.7.1+local"));
  // "<3.1 MUST NOT allow a pre-release of the specified version unless the specified version
  // is itself a pre-release"; "<V.rc1 or similar" allows the earlier ones.
  EXPECT_FALSE(takes("<3.1", "3.1rc1"));
  EXPECT_FALSE(takes("<3.1", "3.1.dev0"));
  EXPECT_TRUE(takes("<3.1", "3.0rc1"));
  EXPECT_TRUE(takes("<3.1", "3.0.99"));
  EXPECT_TRUE(takes("<3.1rc1", "3.1a2"));
  EXPECT_FALSE(takes("<3.1rc1", "3.1rc1"));
  EXPECT_TRUE(takes("<3.1", "3.0+local"));
  EXPECT_FALSE(takes("<3.1", "3.1"));
  // Arbitrary equality: spelling, case aside.
  EXPECT_TRUE(takes("===1.0", "1.0"));
  EXPECT_FALSE(takes("===1.0", "1.0.0"));
  EXPECT_FALSE(takes("===1.0", "1.0+downstream1"));
  auto foobar = specifier::parse("===foobar");
  ASSERT_TRUE(foobar.has_value());
  EXPECT_TRUE(foobar->matches(std::string_view("FooBar")));
  EXPECT_FALSE(foobar->matches(std::string_view("foobar2")));
}

TEST(Pep440Test, EpochsSeparateSeries) {
  EXPECT_FALSE(takes("<2.0", "1!1.0"));
  EXPECT_TRUE(takes(">=2013.10", "1!1.0"));
  EXPECT_FALSE(takes("==1.*", "1!1.0"));
  EXPECT_TRUE(takes("==1!1.*", "1!1.5"));
}

TEST(Pep440Test, PreReleaseAcceptanceRule) {
  // Excluded by default; accepted when a clause names one, when allowed, never when denied.
  EXPECT_FALSE(set(">=1.0").contains(v("2.0a1")));
  EXPECT_TRUE(set(">=1.0").contains(v("2.0a1"), prereleases::allow));
  EXPECT_TRUE(set(">=1.0a1").contains(v("2.0a1")));
  EXPECT_TRUE(set("==2.0b1").contains(v("2.0b1")));
  EXPECT_FALSE(set("==2.0b1").contains(v("2.0b1"), prereleases::deny));
  EXPECT_FALSE(set("!=2.0b1").contains(v("2.0b2")));
  EXPECT_FALSE(set("").contains(v("1.0.dev1")));
  EXPECT_TRUE(set("").contains(v("1.0.post1")));
  EXPECT_TRUE(set("~=1.0rc1").names_prerelease());
  EXPECT_TRUE(set("===1.0a1").names_prerelease());
  EXPECT_FALSE(set("<1.0a1").names_prerelease());
  EXPECT_FALSE(set(">1.0a1").names_prerelease());
  // filter: pre-releases only when no final or post release matches.
  const std::vector<version> all = {v("1.0"), v("2.0a1"), v("2.0"), v("3.0b1")};
  EXPECT_EQ(set(">=1.0").filter(all), (std::vector<std::size_t>{0, 2}));
  EXPECT_EQ(set(">=2.5").filter(all), (std::vector<std::size_t>{3}));
  EXPECT_EQ(set(">=2.5").filter(all, prereleases::deny), (std::vector<std::size_t>{}));
  EXPECT_EQ(set(">=1.0").filter(all, prereleases::allow), (std::vector<std::size_t>{0, 1, 2, 3}));
  EXPECT_EQ(set(">=2.0a1").filter(all), (std::vector<std::size_t>{1, 2, 3}));
  EXPECT_EQ(set(">=4").filter(all), (std::vector<std::size_t>{}));
}

TEST(Pep440Test, SpecifierSetsParseAndPrint) {
  const auto s = set(" >= 1.0 , <2 ,!=1.5.*, ~=1.1 ");
  ASSERT_EQ(s.clauses().size(), 4u);
  EXPECT_EQ(s.str(), ">=1.0,<2,!=1.5.*,~=1.1");
  EXPECT_EQ(s.clauses()[0].operation, specifier::op::greater_equal);
  EXPECT_EQ(s.clauses()[2].operation, specifier::op::not_equal);
  EXPECT_TRUE(s.clauses()[2].wildcard);
  EXPECT_EQ(s.clauses()[2].text, "1.5");
  EXPECT_TRUE(s.contains(v("1.4")));
  EXPECT_FALSE(s.contains(v("1.5.3")));
  EXPECT_FALSE(s.contains(v("2.0")));
  EXPECT_FALSE(s.contains(v("1.0")));  // ~=1.1
  EXPECT_TRUE(set("").empty());
  EXPECT_TRUE(set("  ").contains(v("7")));
  EXPECT_EQ(set("==V1.0-RC1").str(), "==1.0rc1");
  EXPECT_EQ(set("===Foo-1").str(), "===Foo-1");
}

TEST(Pep440Test, BadSpecifiersAreErrorsThatNameTheClause) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1.0", "no operator"},
      {"=>1.0", "no operator"},
      {">=", "no version after the operator"},
      {"== 1.0 2.0", "white space inside the version"},
      {">=1.0.*", "only allowed after == or !="},
      {"~=1.*", "only allowed after == or !="},
      {"==1.0+local.*", "local version label"},
      {">=1.0+local", "local version label"},
      {"~=1.0+local", "local version label"},
      {"==1.0.dev1.*", "development release"},
      {"~=1", "at least two release segments"},
      {"==1.x", "is not a PEP 440 version"},
      {">=1.0,,<2", "empty clause"},
      {">=1.0,", "empty clause"},
  };
  for (const auto& [text, why] : cases) {
    auto parsed = specifier_set::parse(text);
    ASSERT_FALSE(parsed.has_value()) << "\"" << text << "\" parsed as " << parsed->str();
    EXPECT_NE(parsed.error().message.find(why), std::string::npos)
        << "\"" << text << "\": " << parsed.error().message;
  }
  auto parsed = specifier_set::parse(">=1.0, >=1.x");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_NE(parsed.error().message.find("\">=1.x\""), std::string::npos) << parsed.error().message;
}

TEST(Pep440Test, NonPep440CandidatesMatchOnlyTheirSpelling) {
  auto eq = specifier::parse("==1.0");
  ASSERT_TRUE(eq.has_value());
  EXPECT_TRUE(eq->matches(std::string_view("1.0.0")));
  EXPECT_FALSE(eq->matches(std::string_view("1.0-foo-bar")));
  auto arbitrary = specifier::parse("===2004d");
  ASSERT_TRUE(arbitrary.has_value());
  EXPECT_TRUE(arbitrary->matches(std::string_view(" 2004D ")));
  EXPECT_FALSE(arbitrary->matches(std::string_view("2004")));
}

}  // namespace
}  // namespace pantry::registry::pypi
