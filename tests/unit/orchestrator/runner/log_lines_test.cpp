#include "pantry/orchestrator/runner/log_lines.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

log_clock::time_point at(int seconds) {
  return log_clock::time_point(std::chrono::seconds(seconds));
}

// "text|end" for each line, ends written n, rn, cut, eof.
std::vector<std::string> render(const std::vector<log_line>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) {
    const char* end = l.end == line_end::newline ? "n"
                      : l.end == line_end::crlf  ? "rn"
                      : l.end == line_end::cut   ? "cut"
                                                 : "eof";
    out.push_back(l.text + "|" + end);
  }
  return out;
}

std::vector<log_line> split_all(const std::vector<std::string>& chunks, std::size_t max_line) {
  line_splitter s(max_line);
  std::vector<log_line> out;
  int t = 0;
  for (const auto& c : chunks)
    s.feed(c, at(t++), out);
  s.finish(out);
  return out;
}

std::string joined(const std::vector<log_line>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += l.text + std::string(terminator(l.end));
  return out;
}

// A small deterministic generator, so that a failure reproduces.
class rng {
 public:
  explicit rng(std::uint64_t seed) : x_(seed * 0x9e3779b97f4a7c15 + 1) {}
  std::uint64_t next() {
    x_ ^= x_ << 13;
    x_ ^= x_ >> 7;
    x_ ^= x_ << 17;
    return x_;
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

 private:
  std::uint64_t x_;
};

std::vector<std::string> random_chunks(std::string_view text, rng& r) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t n = std::min(text.size(), 1 + r.below(9));
    out.emplace_back(text.substr(0, n));
    text.remove_prefix(n);
  }
  return out;
}

TEST(LineSplitterTest, LinesInOneChunk) {
  line_splitter s(100);
  std::vector<log_line> out;
  s.feed("one\ntwo\nthr", at(1), out);
  EXPECT_THAT(render(out), ElementsAre("one|n", "two|n"));
  EXPECT_EQ(out[0].time, at(1));
  EXPECT_EQ(s.pending(), 3u);
  s.feed("ee\n", at(2), out);
  EXPECT_THAT(render(out), ElementsAre("one|n", "two|n", "three|n"));
  EXPECT_EQ(out[2].time, at(1)) << "a line is stamped when its first byte arrived";
  EXPECT_EQ(s.pending(), 0u);
}

TEST(LineSplitterTest, LaterLinesOfAChunkTakeItsTime) {
  line_splitter s(100);
  std::vector<log_line> out;
  s.feed("a", at(1), out);
  s.feed("\nb\n", at(5), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].time, at(1));
  EXPECT_EQ(out[1].time, at(5));
}

TEST(LineSplitterTest, CrLfAndBareCr) {
  EXPECT_THAT(render(split_all({"a\r\nb\r", "\nc\rd\n", "\r\n"}, 100)),
              ElementsAre("a|rn", "b|rn", "c\rd|n", "|rn"));
}

TEST(LineSplitterTest, FinalUnterminatedLine) {
  EXPECT_THAT(render(split_all({"done\nno newline"}, 100)),
              ElementsAre("done|n", "no newline|eof"));
  EXPECT_THAT(render(split_all({"trailing cr\r"}, 100)), ElementsAre("trailing cr\r|eof"));
  EXPECT_THAT(render(split_all({}, 100)), IsEmpty());
  EXPECT_THAT(render(split_all({"", ""}, 100)), IsEmpty());

  line_splitter s(100);
  std::vector<log_line> out;
  s.feed("x", at(1), out);
  s.finish(out);
  s.feed("y\n", at(2), out);  // usable again
  EXPECT_THAT(render(out), ElementsAre("x|eof", "y|n"));
  EXPECT_EQ(out[1].time, at(2));
}

TEST(LineSplitterTest, OverlongLinesAreCutAndMarked) {
  EXPECT_THAT(render(split_all({"abcdefghij\n"}, 4)), ElementsAre("abcd|cut", "efgh|cut", "ij|n"));
  // Cut as soon as the limit is passed, without waiting for the end of the line.
  line_splitter s(4);
  std::vector<log_line> out;
  s.feed("abcdef", at(1), out);
  EXPECT_THAT(render(out), ElementsAre("abcd|cut"));
  s.feed("gh", at(2), out);
  EXPECT_THAT(render(out), ElementsAre("abcd|cut"));  // "efgh" may still end at the limit
  s.feed("i", at(3), out);
  EXPECT_THAT(render(out), ElementsAre("abcd|cut", "efgh|cut"));
  EXPECT_EQ(out[1].time, at(1));
  s.finish(out);
  EXPECT_THAT(render(out), ElementsAre("abcd|cut", "efgh|cut", "i|eof"));
}

TEST(LineSplitterTest, LinesOfExactlyTheLimitAreWhole) {
  EXPECT_THAT(render(split_all({"abcd\n"}, 4)), ElementsAre("abcd|n"));
  EXPECT_THAT(render(split_all({"abcd\r", "\n"}, 4)), ElementsAre("abcd|rn"));
  EXPECT_THAT(render(split_all({"abcd"}, 4)), ElementsAre("abcd|eof"));
  EXPECT_THAT(render(split_all({"abcd\r"}, 4)), ElementsAre("abcd|cut", "\r|eof"));
}

TEST(LineSplitterTest, CutsKeepUtf8SequencesWhole) {
  const std::string euro = "\xE2\x82\xAC";  // three bytes
  // "ab€" is 5 bytes: a cut at 4 would split the euro sign.
  EXPECT_THAT(render(split_all({"ab" + euro + "cd\n"}, 4)),
              ElementsAre("ab|cut", euro + "c|cut", "d|n"));
  const std::string emoji = "\xF0\x9F\x98\x80";  // four bytes
  EXPECT_THAT(render(split_all({"a" + emoji + emoji + "\n"}, 4)),
              ElementsAre("a|cut", emoji + "|cut", emoji + "|n"));
  // Not UTF-8: cut at the limit.
  EXPECT_THAT(render(split_all({"\x80\x80\x80\x80\x80\x80\n"}, 4)),
              ElementsAre("\x80\x80\x80\x80|cut", "\x80\x80|n"));
}

TEST(LineSplitterTest, AnyChunkingGivesTheSameLinesAndTheInputBack) {
  rng r(7);
  const std::string alphabet = "ab\r\n\xE2\x82\xAC ";
  for (int round = 0; round < 300; ++round) {
    std::string text;
    const std::size_t n = r.below(120);
    for (std::size_t i = 0; i < n; ++i)
      text += alphabet[r.below(alphabet.size())];
    const std::size_t max_line = 4 + r.below(12);
    const auto whole = split_all({text}, max_line);
    const auto pieces = split_all(random_chunks(text, r), max_line);
    ASSERT_EQ(joined(pieces), text) << "round " << round;
    ASSERT_EQ(render(pieces), render(whole))
        << "round " << round << " text " << ::testing::PrintToString(text);
    for (const auto& l : pieces) {
      ASSERT_LE(l.text.size(), max_line);
      ASSERT_EQ(l.text.find('\n'), std::string::npos);
    }
  }
}

// --- secret masking

TEST(SecretMaskerTest, MasksEveryOccurrence) {
  secret_masker m({"hunter22"});
  EXPECT_EQ(m.mask("pw=hunter22 again hunter22hunter22."), "pw=**** again ********.");
  EXPECT_EQ(m.mask("hunter2"), "hunter2");
}

TEST(SecretMaskerTest, AcrossChunkBoundaries) {
  secret_masker m({"s3cr3t-value"});
  std::string out;
  for (char c : std::string("token: s3cr3t-value\nnext s3cr3t-valu"))
    out += m.feed(std::string_view(&c, 1));
  out += m.finish();
  EXPECT_EQ(out, "token: ****\nnext s3cr3t-valu");
}

TEST(SecretMaskerTest, HoldsBackOnlyWhatMayBeginASecret) {
  secret_masker m({"abcdef"});
  EXPECT_EQ(m.feed("line one\n"), "line one\n");
  EXPECT_EQ(m.pending(), 0u);
  EXPECT_EQ(m.feed("x abc"), "x ");
  EXPECT_EQ(m.pending(), 3u);
  EXPECT_EQ(m.feed("dX"), "abcdX");  // not the secret after all
  EXPECT_EQ(m.feed("ab"), "");
  EXPECT_EQ(m.feed("cdef!"), "****!");
  EXPECT_EQ(m.feed("abc"), "");
  EXPECT_EQ(m.finish(), "abc");
}

TEST(SecretMaskerTest, LongestSecretWinsWhereTheyOverlap) {
  secret_masker m({"abcd", "abcdefgh", "efghij"});
  EXPECT_EQ(m.mask("abcdefghij"), "****ij");
  EXPECT_EQ(m.mask("abcdefgXij"), "****efgXij");
  EXPECT_EQ(m.mask("xxefghijabcd"), "xx********");
  // Streaming decides the same, though "abcd" is complete before "abcdefgh" can be ruled out.
  std::string out = m.feed("abcd");
  EXPECT_EQ(out, "");
  out += m.feed("efgh");
  out += m.feed("ij");
  out += m.finish();
  EXPECT_EQ(out, "****ij");
}

TEST(SecretMaskerTest, SecretFilesTrailingNewlineIsOptional) {
  secret_masker m({"token-1234\n", "crlf-secret\r\n"});
  EXPECT_EQ(m.mask("a token-1234 b token-1234\n c crlf-secret."), "a **** b **** c ****.");
}

TEST(SecretMaskerTest, ShortAndEmptyValuesAreReported) {
  secret_masker m({"", "abc", "long-enough", "x\n", "abc"});
  EXPECT_THAT(m.too_short(), ElementsAre(1u, 3u, 4u));
  EXPECT_EQ(m.mask("abc long-enough x"), "abc **** x");
  secret_masker shorter({"abc"}, 3);
  EXPECT_THAT(shorter.too_short(), IsEmpty());
  EXPECT_EQ(shorter.mask("abc"), "****");
}

TEST(SecretMaskerTest, NoSecretsPassesThrough) {
  secret_masker m({});
  EXPECT_EQ(m.feed("anything\n"), "anything\n");
  EXPECT_EQ(m.finish(), "");
}

TEST(SecretMaskerTest, MultiLineSecretsAreMaskedBeforeSplitting) {
  secret_masker m({"-----BEGIN KEY-----\nAAAA\n-----END KEY-----"});
  line_splitter s(100);
  std::vector<log_line> lines;
  for (std::string_view chunk : {"key: -----BEGIN KEY-----\nAA", "AA\n-----END KEY-----\ndone\n"})
    s.feed(m.feed(chunk), at(1), lines);
  s.feed(m.finish(), at(2), lines);
  s.finish(lines);
  EXPECT_THAT(render(lines), ElementsAre("key: ****|n", "done|n"));
}

TEST(SecretMaskerTest, AnyChunkingMasksLikeOneGo) {
  rng r(11);
  const std::string alphabet = "abc\n";
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> secrets;
    for (std::size_t k = r.below(4); k > 0; --k) {
      std::string s;
      for (std::size_t n = 1 + r.below(6); n > 0; --n)
        s += alphabet[r.below(alphabet.size())];
      secrets.push_back(s);
    }
    std::string text;
    for (std::size_t n = r.below(80); n > 0; --n)
      text += alphabet[r.below(alphabet.size())];
    secret_masker m(secrets, 2);
    const std::string expected = m.mask(text);
    std::string streamed;
    for (const auto& c : random_chunks(text, r))
      streamed += m.feed(c);
    streamed += m.finish();
    ASSERT_EQ(streamed, expected) << "round " << round << " text " << text;
  }
}

}  // namespace
}  // namespace pantry::orchestrator::runner
