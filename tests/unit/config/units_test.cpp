#include "pantry/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fnmatch.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::config {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

constexpr std::uint64_t kKiB = 1ULL << 10;
constexpr std::uint64_t kMiB = 1ULL << 20;
constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr std::uint64_t kTiB = 1ULL << 40;

// The error message of a size that must not parse.
std::string size_error(std::string_view text) {
  auto r = parse_size(text);
  if (r) return "parsed as " + std::to_string(*r);
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().message;
  return r.error().message;
}

std::string duration_error(std::string_view text) {
  auto r = parse_duration(text);
  if (r) return "parsed as " + std::to_string(r->count()) + "s";
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().message;
  return r.error().message;
}

std::string listen_error(std::string_view text) {
  auto r = parse_listen(text);
  if (r) return "parsed as " + r->str();
  EXPECT_TRUE(r.error().is(errc::config_error)) << r.error().message;
  return r.error().message;
}

TEST(ConfigSizeTest, ParsesBinaryUnits) {
  EXPECT_EQ(parse_size("512MiB").value(), 512 * kMiB);
  EXPECT_EQ(parse_size("50GiB").value(), 50 * kGiB);
  EXPECT_EQ(parse_size("1TiB").value(), kTiB);
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("4096B").value(), 4096u);
  EXPECT_EQ(parse_size("0").value(), 0u);
  EXPECT_EQ(parse_size("1536KiB").value(), 1536 * kKiB);
  EXPECT_EQ(parse_size("2PiB").value(), 2 * 1024 * kTiB);
}

TEST(ConfigSizeTest, DecimalUnitNamesAreBinary) {
  EXPECT_EQ(parse_size("1KB").value(), kKiB);
  EXPECT_EQ(parse_size("10MB").value(), 10 * kMiB);
  EXPECT_EQ(parse_size("50GB").value(), 50 * kGiB);
  EXPECT_EQ(parse_size("2TB").value(), 2 * kTiB);
  EXPECT_EQ(parse_size("3G").value(), 3 * kGiB);
}

TEST(ConfigSizeTest, UnitsAreCaseInsensitive) {
  EXPECT_EQ(parse_size("50gib").value(), 50 * kGiB);
  EXPECT_EQ(parse_size("50GIB").value(), 50 * kGiB);
  EXPECT_EQ(parse_size("7mb").value(), 7 * kMiB);
  EXPECT_EQ(parse_size("12b").value(), 12u);
}

TEST(ConfigSizeTest, FractionsOfAUnitRoundDownToBytes) {
  EXPECT_EQ(parse_size("1.5GiB").value(), kGiB + kGiB / 2);
  EXPECT_EQ(parse_size("0.5KiB").value(), 512u);
  EXPECT_EQ(parse_size("0.1KiB").value(), 102u);
}

TEST(ConfigSizeTest, RejectsEmpty) {
  const std::string msg = size_error("");
  EXPECT_THAT(msg, HasSubstr("\"\" is empty"));
  EXPECT_THAT(msg, HasSubstr("e.g. 50GiB"));
}

TEST(ConfigSizeTest, RejectsNegative) {
  const std::string msg = size_error("-5GiB");
  EXPECT_THAT(msg, HasSubstr("\"-5GiB\" is negative"));
  EXPECT_THAT(msg, HasSubstr("e.g. 50GiB"));
}

TEST(ConfigSizeTest, RejectsUnknownUnit) {
  const std::string msg = size_error("5XB");
  EXPECT_THAT(msg, HasSubstr("\"5XB\" has an unknown unit \"XB\""));
  EXPECT_THAT(msg, HasSubstr("use a number with B, KiB, MiB, GiB or TiB, e.g. 50GiB"));
}

TEST(ConfigSizeTest, RejectsSpaceBeforeUnit) {
  EXPECT_EQ(size_error("50 GB"),
            "\"50 GB\" is not a size; use a number with B, KiB, MiB, GiB or TiB, e.g. 50GiB");
}

TEST(ConfigSizeTest, RejectsTextWithoutNumber) {
  EXPECT_THAT(size_error("GiB"), HasSubstr("\"GiB\" is not a size"));
  EXPECT_THAT(size_error("lots"), HasSubstr("\"lots\" is not a size"));
  EXPECT_THAT(size_error("+5GiB"), HasSubstr("\"+5GiB\" is not a size"));
  EXPECT_THAT(size_error("0x10"), HasSubstr("\"0x10\" is not a size"));
}

TEST(ConfigSizeTest, RejectsOverflow) {
  EXPECT_EQ(parse_size("18446744073709551615").value(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_THAT(size_error("18446744073709551616"),
              HasSubstr("\"18446744073709551616\" is too large"));
  EXPECT_THAT(size_error("16EiB"), HasSubstr("\"16EiB\" is too large"));
  EXPECT_THAT(size_error("99999999999999999999999999999999999999999TiB"),
              HasSubstr("is too large"));
  EXPECT_THAT(size_error("17179869184GiB"), HasSubstr("is too large"));
}

TEST(ConfigSizeTest, RejectsBrokenFractions) {
  EXPECT_THAT(size_error("1.GiB"), HasSubstr("\"1.GiB\" has no digits after the decimal point"));
  EXPECT_THAT(size_error("1.5"), HasSubstr("\"1.5\" is not a whole number of bytes"));
  EXPECT_THAT(size_error("1.5B"), HasSubstr("\"1.5B\" is not a whole number of bytes"));
  EXPECT_THAT(size_error("1.0000000000000000001GiB"), HasSubstr("too many decimal places"));
}

TEST(ConfigSizeTest, QuotesControlCharactersEscaped) {
  EXPECT_THAT(size_error("5\nGiB"), HasSubstr("\"5\\nGiB\" is not a size"));
}

TEST(ConfigSizeTest, FormatPicksLargestExactUnit) {
  EXPECT_EQ(format_size(0), "0B");
  EXPECT_EQ(format_size(123), "123B");
  EXPECT_EQ(format_size(1536 * kKiB), "1536KiB");
  EXPECT_EQ(format_size(512 * kMiB), "512MiB");
  EXPECT_EQ(format_size(50 * kGiB), "50GiB");
  EXPECT_EQ(format_size(kTiB), "1TiB");
  EXPECT_EQ(format_size(kGiB + 1), "1073741825B");
  EXPECT_EQ(format_size(1ULL << 60), "1EiB");
}

TEST(ConfigSizeTest, FormatThenParseIsIdentity) {
  for (std::uint64_t v : std::initializer_list<std::uint64_t>{
           0, 1, 1023, 1024, 4096, 3 * kMiB, 50 * kGiB + kKiB, 7 * kTiB,
           std::numeric_limits<std::uint64_t>::max(), 1ULL << 63}) {
    EXPECT_EQ(parse_size(format_size(v)).value(), v) << format_size(v);
  }
}

TEST(ConfigDurationTest, ParsesUnits) {
  EXPECT_EQ(parse_duration("90s").value(), seconds(90));
  EXPECT_EQ(parse_duration("10m").value(), seconds(600));
  EXPECT_EQ(parse_duration("2h").value(), seconds(7200));
  EXPECT_EQ(parse_duration("7d").value(), seconds(7 * 86400));
  EXPECT_EQ(parse_duration("0s").value(), seconds(0));
}

TEST(ConfigDurationTest, ParsesCombinedUnits) {
  EXPECT_EQ(parse_duration("1h30m").value(), seconds(5400));
  EXPECT_EQ(parse_duration("1d2h3m4s").value(), seconds(86400 + 7200 + 180 + 4));
  EXPECT_EQ(parse_duration("90m").value(), seconds(5400));
}

TEST(ConfigDurationTest, RejectsBareNumber) {
  const std::string msg = duration_error("90");
  EXPECT_THAT(msg, HasSubstr("\"90\" has no unit"));
  EXPECT_THAT(msg, HasSubstr("90s (seconds)"));
}

TEST(ConfigDurationTest, RejectsTrailingNumberWithoutUnit) {
  EXPECT_THAT(duration_error("1h30"), HasSubstr("\"1h30\" ends in a number without a unit"));
}

TEST(ConfigDurationTest, RejectsEmpty) {
  EXPECT_THAT(duration_error(""), HasSubstr("\"\" is empty; use a whole number with s, m, h or d"));
}

TEST(ConfigDurationTest, RejectsNegative) {
  EXPECT_THAT(duration_error("-5m"), HasSubstr("\"-5m\" is negative"));
}

TEST(ConfigDurationTest, RejectsUnknownUnit) {
  const std::string msg = duration_error("10y");
  EXPECT_THAT(msg, HasSubstr("\"10y\" has an unknown unit \"y\""));
  EXPECT_THAT(msg, HasSubstr("e.g. 90s, 10m, 7d or 1h30m"));
  EXPECT_THAT(duration_error("500ms"), HasSubstr("unknown unit \"ms\""));
  EXPECT_THAT(duration_error("10M"), HasSubstr("unknown unit \"M\""));
}

TEST(ConfigDurationTest, RejectsFractions) {
  EXPECT_THAT(duration_error("1.5h"), HasSubstr("\"1.5h\" is not a whole number"));
}

TEST(ConfigDurationTest, RejectsMisorderedOrRepeatedUnits) {
  EXPECT_THAT(duration_error("30m1h"), HasSubstr("\"30m1h\" repeats a unit or puts a smaller"));
  EXPECT_THAT(duration_error("1m1m"), HasSubstr("\"1m1m\" repeats a unit"));
}

TEST(ConfigDurationTest, RejectsOverflow) {
  EXPECT_EQ(parse_duration("36500d").value(), seconds(36500LL * 86400));
  EXPECT_THAT(duration_error("36501d"), HasSubstr("\"36501d\" is too long"));
  EXPECT_THAT(duration_error("36500d1s"), HasSubstr("is too long"));
  EXPECT_THAT(duration_error("99999999999999999999999999s"), HasSubstr("is too long"));
  EXPECT_THAT(duration_error("9223372036854775807s"), HasSubstr("is too long"));
}

TEST(ConfigDurationTest, RejectsOtherText) {
  EXPECT_THAT(duration_error("10 m"), HasSubstr("\"10 m\" is not a duration"));
  EXPECT_THAT(duration_error("m"), HasSubstr("\"m\" is not a duration"));
  EXPECT_THAT(duration_error("1h 30m"), HasSubstr("is not a duration"));
}

TEST(ConfigDurationTest, FormatUsesLargestUnitsFirst) {
  EXPECT_EQ(format_duration(seconds(0)), "0s");
  EXPECT_EQ(format_duration(seconds(600)), "10m");
  EXPECT_EQ(format_duration(seconds(5400)), "1h30m");
  EXPECT_EQ(format_duration(seconds(7 * 86400)), "7d");
  EXPECT_EQ(format_duration(seconds(90)), "1m30s");
  EXPECT_EQ(format_duration(seconds(86400 + 1)), "1d1s");
  EXPECT_EQ(format_duration(seconds(-90)), "-1m30s");
  EXPECT_FALSE(format_duration(seconds::min()).empty());
}

TEST(ConfigDurationTest, FormatThenParseIsIdentity) {
  for (std::int64_t v :
       {0LL, 1LL, 59LL, 60LL, 61LL, 3599LL, 3600LL, 86399LL, 86400LL, 987654LL, 36500LL * 86400}) {
    EXPECT_EQ(parse_duration(format_duration(seconds(v))).value(), seconds(v))
        << format_duration(seconds(v));
  }
}

TEST(ConfigListenTest, ParsesHostAndPort) {
  const listen_address a = parse_listen("0.0.0.0:8585").value();
  EXPECT_EQ(a.host, "0.0.0.0");
  EXPECT_EQ(a.port, 8585);
  EXPECT_EQ(a.str(), "0.0.0.0:8585");
  EXPECT_EQ(parse_listen("localhost:1").value().host, "localhost");
  EXPECT_EQ(parse_listen("127.0.0.1:65535").value().port, 65535);
  EXPECT_EQ(parse_listen("127.0.0.1:0").value().port, 0);
}

TEST(ConfigListenTest, ParsesBracketedIPv6) {
  const listen_address a = parse_listen("[::1]:8585").value();
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 8585);
  EXPECT_EQ(a.str(), "[::1]:8585");
  EXPECT_EQ(parse_listen("[::]:80").value().str(), "[::]:80");
  EXPECT_EQ(parse_listen("[fe80::1%eth0]:80").value().host, "fe80::1%eth0");
}

TEST(ConfigListenTest, RejectsPortOutOfRange) {
  const std::string msg = listen_error("0.0.0.0:65536");
  EXPECT_THAT(msg, HasSubstr("\"0.0.0.0:65536\" has port 65536, which is out of range"));
  EXPECT_THAT(msg, HasSubstr("use a port from 1 to 65535"));
  EXPECT_THAT(listen_error("0.0.0.0:999999999999"), HasSubstr("out of range"));
  EXPECT_THAT(listen_error("[::1]:70000"), HasSubstr("out of range"));
}

TEST(ConfigListenTest, RejectsMissingPartsAndJunk) {
  EXPECT_THAT(listen_error(""), HasSubstr("\"\" is empty; use HOST:PORT"));
  EXPECT_THAT(listen_error("8585"), HasSubstr("\"8585\" has no host; write 0.0.0.0:8585"));
  EXPECT_THAT(listen_error("localhost"), HasSubstr("\"localhost\" has no port"));
  EXPECT_THAT(listen_error("localhost:"), HasSubstr("has no port after ':'"));
  EXPECT_THAT(listen_error(":8585"), HasSubstr("\":8585\" has no host; use 0.0.0.0:8585"));
  EXPECT_THAT(listen_error("host:http"), HasSubstr("has a port that is not a number"));
  EXPECT_THAT(listen_error("ho st:80"), HasSubstr("has an invalid host"));
  EXPECT_THAT(listen_error("[::1"), HasSubstr("has an unclosed '['"));
  EXPECT_THAT(listen_error("[::1]"), HasSubstr("\"[::1]\" has no port"));
  EXPECT_THAT(listen_error("[nope]:80"), HasSubstr("invalid IPv6 address"));
  EXPECT_THAT(listen_error("0.0.0.0:-1"), HasSubstr("not a number"));
}

TEST(ConfigListenTest, RejectsUnbracketedIPv6) {
  EXPECT_THAT(listen_error("::1:8585"),
              HasSubstr("\"::1:8585\" has an IPv6 address without brackets; write it as "
                        "[::1]:8585"));
}

TEST(ConfigGlobTest, LiteralsMatchWholeNames) {
  EXPECT_TRUE(glob_match("requests", "requests"));
  EXPECT_FALSE(glob_match("requests", "requests2"));
  EXPECT_FALSE(glob_match("requests", "request"));
  EXPECT_FALSE(glob_match("requests", ""));
  EXPECT_TRUE(glob_match("", ""));
  EXPECT_FALSE(glob_match("", "a"));
}

TEST(ConfigGlobTest, StarMatchesAnyRunIncludingNone) {
  EXPECT_TRUE(glob_match("mycorp-*", "mycorp-tools"));
  EXPECT_TRUE(glob_match("mycorp-*", "mycorp-"));
  EXPECT_FALSE(glob_match("mycorp-*", "mycorp"));
  EXPECT_FALSE(glob_match("mycorp-*", "not-mycorp-tools"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("*", "anything-at-all"));
  EXPECT_TRUE(glob_match("**", "x"));
  EXPECT_TRUE(glob_match("*-internal", "billing-internal"));
  EXPECT_FALSE(glob_match("*-internal", "billing-internal-x"));
  EXPECT_TRUE(glob_match("a*b*c", "abc"));
  EXPECT_TRUE(glob_match("a*b*c", "a-b-b-c-c"));
  EXPECT_FALSE(glob_match("a*b*c", "a-b-b-c-d"));
  // Needs a retry from the star: the first "ab" is not the one that matches.
  EXPECT_TRUE(glob_match("*abc", "ababc"));
}

TEST(ConfigGlobTest, QuestionMarkMatchesExactlyOneCharacter) {
  EXPECT_TRUE(glob_match("a?c", "abc"));
  EXPECT_FALSE(glob_match("a?c", "ac"));
  EXPECT_FALSE(glob_match("a?c", "abbc"));
  EXPECT_TRUE(glob_match("??", "xy"));
  EXPECT_FALSE(glob_match("?", ""));
}

TEST(ConfigGlobTest, SetsMatchOneCharacterOfTheSet) {
  EXPECT_TRUE(glob_match("team-[abc]", "team-b"));
  EXPECT_FALSE(glob_match("team-[abc]", "team-d"));
  EXPECT_FALSE(glob_match("team-[abc]", "team-ab"));
  EXPECT_TRUE(glob_match("v[0-9]", "v7"));
  EXPECT_FALSE(glob_match("v[0-9]", "vx"));
  EXPECT_TRUE(glob_match("[a-z0-9]x", "5x"));
  EXPECT_TRUE(glob_match("[!0-9]*", "abc"));
  EXPECT_FALSE(glob_match("[!0-9]*", "1abc"));
  EXPECT_TRUE(glob_match("x[a-]", "x-")) << "a '-' at the end of a set is itself";
  EXPECT_TRUE(glob_match("x[-a]", "x-")) << "a '-' at the start of a set is itself";
  EXPECT_TRUE(glob_match("x[]a]", "x]")) << "a ']' first in a set is a member";
  EXPECT_TRUE(glob_match("x[!]a]", "xb"));
  EXPECT_FALSE(glob_match("x[!]a]", "x]"));
  EXPECT_FALSE(glob_match("x[z-a]", "xm")) << "a backwards range matches nothing";
  EXPECT_TRUE(glob_match("x[!z-a]", "xm"));
}

TEST(ConfigGlobTest, UnclosedBracketIsLiteral) {
  EXPECT_TRUE(glob_match("a[b", "a[b"));
  EXPECT_FALSE(glob_match("a[b", "ab"));
  EXPECT_TRUE(glob_match("[", "["));
  EXPECT_TRUE(glob_match("[!", "[!"));
  EXPECT_TRUE(glob_match("[]", "[]"));
}

TEST(ConfigGlobTest, MatchesBytesCaseSensitively) {
  // Route patterns are written for normalized names; the caller normalizes the name first.
  EXPECT_FALSE(glob_match("mycorp-*", "MyCorp_Tools"));
  EXPECT_TRUE(glob_match("mycorp-*", "mycorp-tools"));
  EXPECT_TRUE(glob_match("caf?", "caf\xC3"));
  EXPECT_TRUE(glob_match("[\x01-\xFF]", "\xE9")) << "ranges compare bytes as unsigned";
}

// Whether some '[' in `pattern` starts no set. glibc's fnmatch() then sometimes matches nothing
// ("[a-" does not match "[a-"); POSIX, Python's fnmatch and glob_match take the '[' literally.
bool has_unclosed_set(std::string_view pattern) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '[') continue;
    std::size_t body = i + 1;
    if (body < pattern.size() && pattern[body] == '!') ++body;
    if (body + 1 > pattern.size() || pattern.find(']', body + 1) == std::string_view::npos) {
      return true;
    }
  }
  return false;
}

TEST(ConfigGlobTest, AgreesWithFnmatch) {
  // Every pattern over a small alphabet that can form sets, ranges and negations, against every
  // short name; glibc's fnmatch(3) with no flags is the reference (apart from unclosed sets,
  // above).
  constexpr std::string_view kPatternChars = "ab-*?[]!";
  constexpr std::string_view kNameChars = "ab-[]!";
  const auto all_strings = [](std::string_view alphabet, std::size_t max_len) {
    std::vector<std::string> out = {""};
    for (std::size_t begin = 0, len = 1; len <= max_len; ++len) {
      const std::size_t end = out.size();
      for (std::size_t i = begin; i < end; ++i) {
        for (char c : alphabet)
          out.push_back(out[i] + c);
      }
      begin = end;
    }
    return out;
  };
  const std::vector<std::string> patterns = all_strings(kPatternChars, 5);
  const std::vector<std::string> names = all_strings(kNameChars, 3);
  std::size_t mismatches = 0;
  std::size_t compared = 0;
  for (const std::string& p : patterns) {
    if (has_unclosed_set(p)) continue;
    ++compared;
    for (const std::string& n : names) {
      const bool want = ::fnmatch(p.c_str(), n.c_str(), 0) == 0;
      if (glob_match(p, n) != want && ++mismatches <= 10) {
        ADD_FAILURE() << "pattern \"" << p << "\" name \"" << n << "\": fnmatch says " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(compared, 20000u);
}

TEST(ConfigGlobTest, ManyStarsOnALongNameStayFast) {
  const std::string name(20000, 'a');
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*a*b", name));
  EXPECT_TRUE(glob_match("*a*a*a*a*a*a*a*a*a*a", name));
  EXPECT_FALSE(glob_match("[a][a]*[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[b", name));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace pantry::config
