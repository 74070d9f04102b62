#include "pantry/orchestrator/builder/substitute.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using ::testing::HasSubstr;
using strings = std::vector<std::string>;
using kvs = std::vector<key_value>;

constexpr std::string_view kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

variable_lookup lookup_in(const std::map<std::string, std::string, std::less<>>& vars) {
  return [&vars](std::string_view name) -> const std::string* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : &it->second;
  };
}

// ---- words --------------------------------------------------------------------------------------

// The environment of docker's lexer test file envVarTest.
const std::map<std::string, std::string, std::less<>>& lexer_env() {
  static const std::map<std::string, std::string, std::less<>> env = {
      {"PWD", "/home"}, {"SHELL", "bash"}, {"KOREAN", "한국어"}, {"NULL", ""}};
  return env;
}

struct word_case {
  std::string_view input;
  std::optional<std::string_view> expected;  // nullopt: an error
};

// Cases from docker's envVarTest (the ones that hold on Linux).
const word_case kWordCases[] = {
    {"hello", "hello"},
    {"he'll'o", "hello"},
    {"he'llo", std::nullopt},
    {"he\\'llo", "he'llo"},
    {"he\\\\'llo", std::nullopt},
    {"abc\\tdef", "abctdef"},
    {"\"abc\\tdef\"", "abc\\tdef"},
    {"\"abc\\\\tdef\"", "abc\\tdef"},
    {"'abc\\tdef'", "abc\\tdef"},
    {"hello\\", "hello"},
    {"hello\\\\", "hello\\"},
    {"\"hello", std::nullopt},
    {"\"hello\\\"", std::nullopt},
    {"\"hel'lo\"", "hel'lo"},
    {"'hello", std::nullopt},
    {"'hello\\'", "hello\\"},
    {"'hello\\there'", "hello\\there"},
    {"'hello\\\\there'", "hello\\\\there"},
    {"\"''\"", "''"},
    {"$.", "$."},
    {"he$1x", "hex"},
    {"he$.x", "he$.x"},
    {"he$pwd.", "he."},
    {"he$PWD", "he/home"},
    {"he\\$PWD", "he$PWD"},
    {"he\\\\$PWD", "he\\/home"},
    {"\"he\\$PWD\"", "he$PWD"},
    {"\"he\\\\$PWD\"", "he\\/home"},
    {"\\${}", "${}"},
    {"\\${}aaa", "${}aaa"},
    {"he\\${}", "he${}"},
    {"he\\${}xx", "he${}xx"},
    {"${}", std::nullopt},
    {"${}aaa", std::nullopt},
    {"he${}", std::nullopt},
    {"he${}xx", std::nullopt},
    {"he${hi}", "he"},
    {"he${hi}xx", "hexx"},
    {"he${PWD}", "he/home"},
    {"he${.}", std::nullopt},
    {"he${XXX:-000}xx", "he000xx"},
    {"he${PWD:-000}xx", "he/homexx"},
    {"he${XXX:-$PWD}xx", "he/homexx"},
    {"he${XXX:-${PWD:-yyy}}xx", "he/homexx"},
    {"he${XXX:-${YYY:-yyy}}xx", "heyyyxx"},
    {"he${XXX:YYY}", std::nullopt},
    {"he${XXX?}", std::nullopt},
    {"he${XXX:?}", std::nullopt},
    {"he${PWD?}", "he/home"},
    {"he${PWD:?}", "he/home"},
    {"he${NULL?}", "he"},
    {"he${NULL:?}", std::nullopt},
    {"he${XXX:+${PWD}}xx", "hexx"},
    {"he${PWD:+${XXX}}xx", "hexx"},
    {"he${PWD:+${SHELL}}xx", "hebashxx"},
    {"he${XXX:+000}xx", "hexx"},
    {"he${PWD:+000}xx", "he000xx"},
    {"'he${XX}'", "he${XX}"},
    {"\"he${PWD}\"", "he/home"},
    {"\"he'$PWD'\"", "he'/home'"},
    {"\"$PWD\"", "/home"},
    {"'$PWD'", "$PWD"},
    {"'\\$PWD'", "\\$PWD"},
    {"'\"hello\"'", "\"hello\""},
    {"he\\$PWD", "he$PWD"},
    {"\"he\\$PWD\"", "he$PWD"},
    {"'he\\$PWD'", "he\\$PWD"},
    {"he${PWD", std::nullopt},
    {"he${PWD:=000}xx", std::nullopt},
    {"he${PWD:+${PWD}:}xx", "he/home:xx"},
    {"he${XXX:-\\$PWD:}xx", "he$PWD:xx"},
    {"he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"},
    {"안녕하세요", "안녕하세요"},
    {"안'녕'하세요", "안녕하세요"},
    {"안'녕하세요", std::nullopt},
    {"안녕\\'하세요", "안녕'하세요"},
    {"안녕$PWD", "안녕/home"},
    {"$KOREAN", "한국어"},
    {"안녕$KOREAN", "안녕한국어"},
    {"${{aaa}", std::nullopt},
    {"${aaa}}", "}"},
    {"${aaa", std::nullopt},
    {"${{aaa:-bbb}", std::nullopt},
    {"${aaa:-bbb}}", "bbb}"},
    {"${aaa:-bbb", std::nullopt},
    {"${aaa:-bbb}", "bbb"},
    {"${aaa:-${bbb:-ccc}}", "ccc"},
    {"${aaa:-bbb ${foo}", std::nullopt},
    {"${aaa:-bbb {foo}", "bbb {foo"},
    {"${:}", std::nullopt},
    {"${:-bbb}", std::nullopt},
    {"${:+bbb}", std::nullopt},
    // Positional and special parameters are never set.
    {"$1", ""},
    {"${1}", ""},
    {"${1:+bbb}", ""},
    {"${1:-bbb}", "bbb"},
    {"$999aaa", "aaa"},
    {"${999:-bbb}aaa", "bbbaaa"},
    {"$001aaa", "aaa"},
    {"$@", ""},
    {"$@@@", "@@"},
    {"${@:-bbb}aaa", "bbbaaa"},
    {"$*", ""},
    {"$#", ""},
    {"${#:-bbb}", "bbb"},
    {"$?", ""},
    {"$-", ""},
    {"$$", ""},
    {"${$:-bbb}", "bbb"},
    {"$!", ""},
    {"$0", ""},
    {"${0:-bbb}", "bbb"},
};

TEST(SubstituteTest, WordsAsDockersLexerTestFile) {
  const auto lookup = lookup_in(lexer_env());
  for (const auto& c : kWordCases) {
    auto r = expand(c.input, lookup);
    if (!c.expected) {
      EXPECT_FALSE(r) << "input " << c.input << " gave " << (r ? r->text : "");
      if (!r) {
        EXPECT_TRUE(r.error().is(errc::invalid_argument));
      }
      continue;
    }
    ASSERT_TRUE(r) << "input " << c.input << ": " << r.error().message;
    EXPECT_EQ(r->text, *c.expected) << "input " << c.input;
  }
}

TEST(SubstituteTest, UsedNamesAreTheSetOnes) {
  const auto lookup = lookup_in(lexer_env());
  auto r = expand("${PWD}/$SHELL/${XXX:-$PWD}/$NULL/$UNSET", lookup);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->text, "/home/bash//home//");
  EXPECT_EQ(r->used, (strings{"NULL", "PWD", "SHELL"}));
  EXPECT_TRUE(expand("plain 'text'", lookup)->used.empty());
}

TEST(SubstituteTest, ErrorsQuoteTheWord) {
  const auto lookup = lookup_in(lexer_env());
  EXPECT_EQ(expand("a${B", lookup).error().message, "cannot substitute in \"a${B\": missing '}'");
  EXPECT_EQ(expand("${}", lookup).error().message,
            "cannot substitute in \"${}\": bad substitution");
  EXPECT_EQ(expand("${X:a}", lookup).error().message,
            "cannot substitute in \"${X:a}\": unsupported modifier (:a)");
  EXPECT_EQ(expand("${X?must be set}", lookup).error().message,
            "cannot substitute in \"${X?must be set}\": X: must be set");
  EXPECT_EQ(expand("${NULL:?}", lookup).error().message,
            "cannot substitute in \"${NULL:?}\": NULL: is not allowed to be empty");
  EXPECT_EQ(expand("'a", lookup).error().message,
            "cannot substitute in \"'a\": a single quote is not closed");
}

TEST(SubstituteTest, BacktickEscape) {
  const auto lookup = lookup_in(lexer_env());
  EXPECT_EQ(expand("a`$PWD`\\b", lookup, '`')->text, "a$PWD\\b");
  EXPECT_EQ(expand("\"`\"`$\"", lookup, '`')->text, "\"$");
}

TEST(SubstituteTest, WordSplitting) {
  // Cases from docker's lexer test file wordsTest.
  const std::map<std::string, std::string, std::less<>> env = {
      {"hi", "hi"}, {"space", "abc  def"}, {"leading", "  ab c"}, {"trailing", "ab c   "}};
  const auto lookup = lookup_in(env);
  auto words = [&](std::string_view w) {
    auto r = expand(w, lookup);
    EXPECT_TRUE(r) << w << ": " << (r ? "" : r.error().message);
    return r ? r->words : strings{};
  };
  EXPECT_EQ(words("hello"), (strings{"hello"}));
  EXPECT_EQ(words("hello${hi}bye"), (strings{"hellohibye"}));
  EXPECT_EQ(words("hello${space}bye"), (strings{"helloabc", "defbye"}));
  EXPECT_EQ(words("hello\"${space}\"bye"), (strings{"helloabc  defbye"}));
  EXPECT_EQ(words("hello \"${space}\"bye"), (strings{"hello", "abc  defbye"}));
  EXPECT_EQ(words("hello${leading}def"), (strings{"hello", "ab", "cdef"}));
  EXPECT_EQ(words("hello\"${leading}\" def"), (strings{"hello  ab c", "def"}));
  EXPECT_EQ(words("hello${trailing}"), (strings{"helloab", "c"}));
  EXPECT_EQ(words("hello${trailing}d"), (strings{"helloab", "c", "d"}));
  EXPECT_EQ(words("hello\"${trailing}\"d"), (strings{"helloab c   d"}));
  EXPECT_EQ(words("hello\" there  \""), (strings{"hello there  "}));
  EXPECT_EQ(words("hello there     "), (strings{"hello", "there"}));
  EXPECT_EQ(words("hello\\ there"), (strings{"hello there"}));
  EXPECT_EQ(words("hello\\\" there"), (strings{"hello\"", "there"}));
  EXPECT_EQ(words("hello\"\\\\there\""), (strings{"hello\\there"}));
  EXPECT_EQ(words("hello'\\\\there'"), (strings{"hello\\\\there"}));
  EXPECT_EQ(words("hello'$there'"), (strings{"hello$there"}));
  EXPECT_EQ(words("\"\""), (strings{}));
}

TEST(SubstituteTest, PatternRemoval) {
  // Cases from docker's lexer tests.
  auto with = [](std::map<std::string, std::string, std::less<>> env, std::string_view word) {
    auto r = expand(word, lookup_in(env));
    EXPECT_TRUE(r) << word << ": " << (r ? "" : r.error().message);
    return r ? r->text : std::string("<error>");
  };
  EXPECT_EQ(with({{"FOO", "()[]{}^$.*?|\\x"}}, "${FOO#()[]{\\}^$.\\*\\?|\\\\}"), "x");
  EXPECT_EQ(with({{"FOO", "xx**"}}, "${FOO%%\\**}"), "xx");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO#*x*y}"), "y");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO#*}"), "xxyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}, {"BAR", "x"}}, "${FOO#$BAR}"), "xyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}, {"BAR", ""}}, "${FOO#$BAR}"), "xxyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO#}"), "xxyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO##*x}"), "yy");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO##}"), "xxyy");
  EXPECT_EQ(with({{"FOO", "???y"}}, "${FOO#?\\?}"), "?y");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${ABC:-.}${FOO%x}${ABC:-.}"), ".xxyy.");
  EXPECT_EQ(with({{"FOO", "a***yy*"}}, "${FOO%%\\**\\*}"), "a");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO%}"), "xxyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}, {"BAR", ""}}, "${FOO%%$BAR}"), "xxyy");
  EXPECT_EQ(with({{"F", "archive.tar.gz"}}, "${F%.*}"), "archive.tar");
  EXPECT_EQ(with({{"F", "archive.tar.gz"}}, "${F%%.*}"), "archive");
  EXPECT_EQ(with({{"F", "/usr/local/bin"}}, "${F##*/}"), "bin");
  EXPECT_EQ(with({{"F", "/usr/local/bin"}}, "${F#*/}"), "usr/local/bin");
  EXPECT_EQ(with({{"F", "é-x-é"}}, "${F%-?}"), "é-x");
  EXPECT_EQ(with({{"F", "é-x-é"}}, "${F%%-*}"), "é");
  EXPECT_EQ(with({{"F", "a\nb"}}, "${F#*b}"), "a\nb");  // `*` does not cross a newline
  EXPECT_EQ(with({}, "${UNSET#x}"), "");
  for (std::string_view bad : {"${FOO:#}", "${FOO:##}", "${FOO:%}", "${FOO:%%}", "${FOO#\\a}"}) {
    EXPECT_FALSE(expand(bad, lookup_in({{"FOO", "x"}}))) << bad;
  }
}

TEST(SubstituteTest, PatternReplacement) {
  // Cases from docker's lexer tests.
  auto with = [](std::map<std::string, std::string, std::less<>> env, std::string_view word) {
    auto r = expand(word, lookup_in(env));
    EXPECT_TRUE(r) << word << ": " << (r ? "" : r.error().message);
    return r ? r->text : std::string("<error>");
  };
  EXPECT_EQ(
      with({{"FOO", "/foo*/*/*.txt"}, {"NEEDLE", "\\*/"}}, "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}"),
      "/foo.*/*.txt - /foo..*.txt");
  EXPECT_EQ(
      with({{"FOO", "/tmp/tmp/bar.txt"}, {"NEEDLE", "/tmp"}}, "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}"),
      "/tmp/bar.txt - /bar.txt");
  EXPECT_EQ(with({{"FOO", "/a/foo/b/c.txt"}, {"NEEDLE", "/?/"}, {"REPLACEMENT", "/"}},
                 "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}"),
            "/foo/b/c.txt - /foo/c.txt");
  EXPECT_EQ(with({{"FOO", "http://google.de"}, {"NEEDLE", "http://"}, {"REPLACEMENT", "https://"}},
                 "${FOO/$NEEDLE/$REPLACEMENT}"),
            "https://google.de");
  EXPECT_EQ(with({{"FOO", "/tmp/foo.txt"}}, "${FOO//\\//\\/}"), "\\/tmp\\/foo.txt");
  EXPECT_EQ(with({{"FOO", "xxyy"}, {"BAR", ""}}, "${FOO/$BAR/ww}"), "wwxxyy");
  EXPECT_EQ(with({{"FOO", "xxyy"}}, "${FOO///}"), "xxyy");
  EXPECT_EQ(with({}, "${FOO///}"), "");
  EXPECT_EQ(with({{"V", "1.2.3"}}, "${V//./-}"), "1-2-3");
  EXPECT_EQ(with({{"V", "abc"}}, "${V//*/x}"), "x");
  EXPECT_EQ(with({{"V", "abc"}}, "${V//b*/x}"), "ax");
  EXPECT_FALSE(expand("${FOO//ww}", lookup_in({{"FOO", "xxyy"}})));
  EXPECT_FALSE(expand("${FOO//}", lookup_in({{"FOO", "xxyy"}})));
}

TEST(SubstituteTest, LimitsAgainstHostileFiles) {
  const std::map<std::string, std::string, std::less<>> none;
  auto nested = [](int depth) {
    std::string w;
    for (int i = 0; i < depth; ++i)
      w += "${A:-";
    w += "x";
    for (int i = 0; i < depth; ++i)
      w += "}";
    return w;
  };
  EXPECT_EQ(expand(nested(32), lookup_in(none))->text, "x");
  EXPECT_THAT(expand(nested(33), lookup_in(none)).error().message,
              HasSubstr("${…} nested more than 32 deep"));
  EXPECT_FALSE(expand(nested(100000), lookup_in(none)));

  const std::map<std::string, std::string, std::less<>> big = {{"A", std::string(70000, 'a')}};
  EXPECT_EQ(expand("$A", lookup_in(big))->text.size(), 70000u);
  EXPECT_THAT(expand("$A$A", lookup_in(big)).error().message,
              HasSubstr("the result is longer than 128 KiB"));

  const std::map<std::string, std::string, std::less<>> long_pattern = {
      {"V", std::string(5000, 'a')}, {"P", std::string(5000, '?')}};
  EXPECT_THAT(expand("${V#$P}", lookup_in(long_pattern)).error().message,
              HasSubstr("too long to match"));
  EXPECT_THAT(expand("${V//$P/x}", lookup_in(long_pattern)).error().message,
              HasSubstr("too long to match"));
}

// ---- scopes -------------------------------------------------------------------------------------
// A parsed file and its build scope, kept together (the scope points into the file).
struct build {
  std::unique_ptr<containerfile> file;
  std::unique_ptr<build_scope> scope;
};

build make(std::string_view text, build_options options = {}) {
  build b;
  auto f = parse_containerfile(text, "Containerfile");
  EXPECT_TRUE(f) << f.error().message;
  if (!f) return b;
  b.file = std::make_unique<containerfile>(std::move(*f));
  auto s = build_scope::make(*b.file, std::move(options));
  EXPECT_TRUE(s) << s.error().message;
  if (s) b.scope = std::make_unique<build_scope>(std::move(*s));
  return b;
}

// Resolves every instruction of stage `index` in a scope on an image with `image_env`.
std::vector<resolved_step> resolve_all(const build& b, std::size_t index,
                                       std::vector<std::string> image_env = {},
                                       stage_scope* scope_out = nullptr) {
  stage_scope scope(*b.scope, std::move(image_env));
  std::vector<resolved_step> out;
  for (const auto& in : b.file->stages.at(index).instructions) {
    auto r = scope.resolve(in);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) break;
    out.push_back(std::move(*r));
  }
  if (scope_out != nullptr) *scope_out = scope;
  return out;
}

// The message resolving the last instruction of the only stage fails with.
std::string resolve_failure(std::string_view text, build_options options = {}) {
  const build b = make(text, std::move(options));
  if (!b.scope) return "<no scope>";
  stage_scope scope(*b.scope, {});
  const auto& in = b.file->stages.at(0).instructions;
  for (std::size_t i = 0; i + 1 < in.size(); ++i) {
    auto r = scope.resolve(in[i]);
    EXPECT_TRUE(r) << r.error().message;
  }
  auto r = scope.resolve(in.back());
  EXPECT_FALSE(r) << "resolved: " << in.back().text;
  return r ? std::string() : r.error().message;
}

template <class T>
const T& body(const resolved_step& s) {
  return std::get<T>(s.step.body);
}

std::string from(std::string_view rest) {
  return "FROM python@" + std::string(kDigest) + std::string(rest);
}

TEST(SubstituteTest, GlobalArgsAreSeenInFromLinesOnly) {
  const build b = make(
      "ARG IMAGE=python\n"
      "ARG DIGEST=" +
      std::string(kDigest) +
      "\n"
      "FROM ${IMAGE}@${DIGEST}\n"
      "ENV SEEN=x$IMAGE\n");
  auto f = b.scope->resolve_from(0);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->base, resolved_from::kind::image);
  EXPECT_EQ(f->image, (image_reference{"python", "", std::string(kDigest)}));
  EXPECT_EQ(f->build_args_used, (kvs{{"DIGEST", std::string(kDigest)}, {"IMAGE", "python"}}));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(body<env_instruction>(steps[0]).variables, (kvs{{"SEEN", "x"}}));
  EXPECT_TRUE(steps[0].build_args_used.empty());
}

TEST(SubstituteTest, StageSeesAGlobalArgDeclaredAgain) {
  const build b = make("ARG V=1\n" + from("\nARG V\nENV A=$V\nARG V=2\nENV B=$V\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(body<arg_instruction>(steps[0]).args, (std::vector<arg_declaration>{{"V", "1"}}));
  EXPECT_EQ(body<env_instruction>(steps[1]).variables, (kvs{{"A", "1"}}));
  EXPECT_EQ(steps[1].build_args_used, (kvs{{"V", "1"}}));
  EXPECT_EQ(body<env_instruction>(steps[3]).variables, (kvs{{"B", "2"}}));
  EXPECT_EQ(steps[3].build_args_used, (kvs{{"V", "2"}}));
}

TEST(SubstituteTest, BuildArgsOverrideDefaults) {
  build_options options;
  options.build_args = {{"V", "cli"}, {"W", "cli-w"}, {"NOBODY", "x"}};
  const build b = make(
      "ARG V=global\nARG BASE=scratch\nFROM $BASE\nARG V\nARG W=default\n"
      "RUN true\n",
      options);
  EXPECT_EQ(*b.scope->global("V"), "cli");
  EXPECT_EQ(b.scope->global("W"), nullptr);
  stage_scope scope(*b.scope, {});
  const auto steps = resolve_all(b, 0, {}, &scope);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(body<arg_instruction>(steps[0]).args, (std::vector<arg_declaration>{{"V", "cli"}}));
  EXPECT_EQ(body<arg_instruction>(steps[1]).args, (std::vector<arg_declaration>{{"W", "cli-w"}}));
  EXPECT_EQ(steps[2].build_args_used, (kvs{{"V", "cli"}, {"W", "cli-w"}}));
  EXPECT_EQ(b.scope->unused_build_args(), (strings{"NOBODY"}));
}

TEST(SubstituteTest, ArgWithoutValueStaysUnsetAndKeepsAnEarlierValue) {
  const build b = make(from("\nARG A\nENV X=[$A]\nARG A=1\nARG A\nENV Y=$A\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(body<arg_instruction>(steps[0]).args,
            (std::vector<arg_declaration>{{"A", std::nullopt}}));
  EXPECT_EQ(body<env_instruction>(steps[1]).variables, (kvs{{"X", "[]"}}));
  EXPECT_EQ(body<arg_instruction>(steps[3]).args, (std::vector<arg_declaration>{{"A", "1"}}));
  EXPECT_EQ(body<env_instruction>(steps[4]).variables, (kvs{{"Y", "1"}}));
}

TEST(SubstituteTest, EnvOverridesArgWhateverTheOrder) {
  build_options options;
  options.build_args = {{"B", "cli"}};
  const build b = make(from("\nARG A=arg\nENV A=env\nENV B=env\nARG B\nARG C=arg-c\n"
                            "ENV X=$A/$B/$C\nRUN true\n"),
                       options);
  stage_scope scope(*b.scope, {});
  const auto steps = resolve_all(b, 0, {}, &scope);
  ASSERT_EQ(steps.size(), 7u);
  EXPECT_EQ(body<env_instruction>(steps[5]).variables, (kvs{{"X", "env/env/arg-c"}}));
  EXPECT_EQ(steps[5].build_args_used, (kvs{{"C", "arg-c"}}));
  EXPECT_EQ(steps[6].build_args_used, (kvs{{"C", "arg-c"}}));
  EXPECT_EQ(scope.args_in_scope(), (kvs{{"C", "arg-c"}}));
}

TEST(SubstituteTest, ImageEnvOverridesArgToo) {
  const build b = make(from("\nARG HOME=/arg\nWORKDIR $HOME\n"));
  const auto steps = resolve_all(b, 0, {"HOME=/root"});
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(body<workdir_instruction>(steps[1]).path, "/root");
  EXPECT_TRUE(steps[1].build_args_used.empty());
}

TEST(SubstituteTest, ArgValuesAreInTheRunEnvironmentNotTheImage) {
  const build b = make(from("\nARG PIP_VERSION=23.0\nENV LANG=C.UTF-8\nARG UNSET\nRUN pip\n"));
  stage_scope scope(*b.scope, {});
  const auto steps = resolve_all(b, 0, {"PATH=/usr/bin", "LANG=C"}, &scope);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(scope.env(), (strings{"PATH=/usr/bin", "LANG=C.UTF-8"}));
  EXPECT_EQ(scope.run_env(), (strings{"PATH=/usr/bin", "LANG=C.UTF-8", "PIP_VERSION=23.0"}));
  EXPECT_EQ(steps[3].build_args_used, (kvs{{"PIP_VERSION", "23.0"}}));
  // RUN is never substituted: the shell expands at run time.
  EXPECT_EQ(body<run_instruction>(steps[3]).command.args, (strings{"pip"}));
}

TEST(SubstituteTest, RunUsesEveryArgInScopeSorted) {
  const build b = make(from("\nARG Z=1 A=2\nRUN echo $HOME\nARG M=3\nRUN [\"true\"]\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(steps[1].build_args_used, (kvs{{"A", "2"}, {"Z", "1"}}));
  EXPECT_EQ(steps[3].build_args_used, (kvs{{"A", "2"}, {"M", "3"}, {"Z", "1"}}));
  // An ARG step itself uses none: its value counts where it is used.
  EXPECT_TRUE(steps[0].build_args_used.empty());
}

TEST(SubstituteTest, OneEnvLineSeesTheValuesFromBeforeIt) {
  const build b = make(from("\nENV A=1\nENV A=2 B=$A\nENV C=$A\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(body<env_instruction>(steps[1]).variables, (kvs{{"A", "2"}, {"B", "1"}}));
  EXPECT_EQ(body<env_instruction>(steps[2]).variables, (kvs{{"C", "2"}}));
}

TEST(SubstituteTest, OneArgLineAppliesItsDeclarationsInOrder) {
  const build b = make(from("\nARG A=1 B=$A\nENV X=$B\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(body<arg_instruction>(steps[0]).args,
            (std::vector<arg_declaration>{{"A", "1"}, {"B", "1"}}));
  EXPECT_EQ(body<env_instruction>(steps[1]).variables, (kvs{{"X", "1"}}));
}

TEST(SubstituteTest, EnvQuotesAndLegacyForm) {
  const build b = make(from("\nENV A=\"a b\" B='$A' C=x\\ y\nENV PATH /opt/venv/bin:$PATH\n"));
  const auto steps = resolve_all(b, 0, {"PATH=/usr/bin"});
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(body<env_instruction>(steps[0]).variables,
            (kvs{{"A", "a b"}, {"B", "$A"}, {"C", "x y"}}));
  EXPECT_EQ(body<env_instruction>(steps[1]).variables, (kvs{{"PATH", "/opt/venv/bin:/usr/bin"}}));
}

TEST(SubstituteTest, DefaultPathIsAddedWhenTheImageHasNone) {
  const build b = make("FROM scratch\nENV PATH=/x:$PATH\n");
  stage_scope scope(*b.scope, {});
  const auto steps = resolve_all(b, 0, {}, &scope);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(scope.env(),
            (strings{"PATH=/x:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}));
  stage_scope with_path(*b.scope, {"A=1", "PATH=/bin", "A=2", "EMPTY", "B=x=y"});
  EXPECT_EQ(with_path.env(), (strings{"A=2", "PATH=/bin", "EMPTY=", "B=x=y"}));
}

TEST(SubstituteTest, StageOnAStageCarriesItsScopeOver) {
  const build b = make(from(" AS base\nARG V=1\nENV E=e\nFROM base\nENV X=$V$E\n"));
  auto f = b.scope->resolve_from(1);
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->base, resolved_from::kind::stage);
  EXPECT_EQ(f->stage, 0u);
  stage_scope base(*b.scope, {});
  resolve_all(b, 0, {}, &base);
  stage_scope next = base;
  auto r = next.resolve(b.file->stages[1].instructions[0]);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(body<env_instruction>(*r).variables, (kvs{{"X", "1e"}}));
  EXPECT_EQ(r->build_args_used, (kvs{{"V", "1"}}));
}

TEST(SubstituteTest, CopyAndAddFieldsAreSubstituted) {
  const build b =
      make(from("\nARG SRC=src U=app G=staff M=755\nENV DEST=\"/app dir\"\n"
                "COPY --chown=$U:$G --chmod=$M ${SRC}/*.py \"${DEST}/\"\n"
                "ADD --chown=${U} vendor/${SRC}.tar.gz $DEST\n"
                "COPY --chmod=4755 [\"${SRC}\", \"/x\"]\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 5u);
  const auto& copy = body<copy_instruction>(steps[2]);
  EXPECT_EQ(copy.chown, "app:staff");
  EXPECT_EQ(copy.chmod, "0755");
  EXPECT_EQ(copy.sources, (strings{"src/*.py"}));
  EXPECT_EQ(copy.destination, "/app dir/");
  EXPECT_EQ(steps[2].build_args_used,
            (kvs{{"G", "staff"}, {"M", "755"}, {"SRC", "src"}, {"U", "app"}}));
  const auto& add = body<add_instruction>(steps[3]);
  EXPECT_EQ(add.chown, "app");
  EXPECT_EQ(add.chmod, "");
  EXPECT_EQ(add.sources, (strings{"vendor/src.tar.gz"}));
  EXPECT_EQ(add.destination, "/app dir");
  EXPECT_EQ(body<copy_instruction>(steps[4]).chmod, "4755");
}

TEST(SubstituteTest, ChmodAndChownAreChecked) {
  EXPECT_EQ(resolve_failure(from("\nCOPY --chmod=u+x a /b\n")),
            "Containerfile:2: COPY: --chmod=u+x is not an octal mode from 0 to 7777 (symbolic "
            "modes such as u+x are not supported)");
  EXPECT_THAT(resolve_failure(from("\nCOPY --chmod=17777 a /b\n")),
              HasSubstr("--chmod=17777 is not an octal mode"));
  EXPECT_THAT(resolve_failure(from("\nCOPY --chmod=8 a /b\n")), HasSubstr("--chmod=8"));
  EXPECT_EQ(resolve_failure(from("\nCOPY --chown=:staff a /b\n")),
            "Containerfile:2: COPY: --chown=:staff is not USER or USER:GROUP (names or numeric "
            "ids)");
  EXPECT_THAT(resolve_failure(from("\nADD --chown=a: a /b\n")), HasSubstr("ADD: --chown=a:"));
  EXPECT_THAT(resolve_failure(from("\nCOPY --chown=a:b:c a /b\n")), HasSubstr("--chown=a:b:c"));
  // A --chown that substitutes to nothing means none, as in docker.
  const build b = make(from("\nCOPY --chown=$NOBODY --chmod=$NOTHING a /b\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(body<copy_instruction>(steps[0]).chown, "");
  EXPECT_EQ(body<copy_instruction>(steps[0]).chmod, "");
}

TEST(SubstituteTest, EmptyFieldsAfterSubstitutionAreErrors) {
  EXPECT_EQ(resolve_failure(from("\nCOPY $NONE /b\n")),
            "Containerfile:2: COPY: the source \"$NONE\" is empty after substitution");
  EXPECT_THAT(resolve_failure(from("\nCOPY a ${NONE}\n")),
              HasSubstr("COPY: the destination \"${NONE}\" is empty after substitution"));
  EXPECT_THAT(resolve_failure(from("\nWORKDIR $NONE\n")), HasSubstr("WORKDIR: the path"));
  EXPECT_THAT(resolve_failure(from("\nUSER $NONE\n")), HasSubstr("USER: the user"));
  EXPECT_THAT(resolve_failure(from("\nVOLUME /a $NONE\n")), HasSubstr("VOLUME: the path"));
  EXPECT_THAT(resolve_failure(from("\nENV $NONE=1\n")), HasSubstr("ENV: the name"));
  EXPECT_THAT(resolve_failure(from("\nLABEL $NONE=1\n")), HasSubstr("LABEL: the name"));
  EXPECT_EQ(resolve_failure(from("\nARG K=a=b\nENV $K=1\n")),
            "Containerfile:3: ENV: the name \"a=b\" holds '='");
}

TEST(SubstituteTest, DoublingAVariableStopsAtTheLimit) {
  std::string text = from("\nENV A=" + std::string(1000, 'a') + "\n");
  for (int i = 0; i < 8; ++i)
    text += "ENV A=$A$A\n";
  EXPECT_EQ(resolve_failure(text),
            "Containerfile:10: ENV: cannot substitute in \"$A$A\": the result is longer than 128 "
            "KiB");
  std::string wide = from("\n");
  for (int i = 0; i < 9; ++i)
    wide += "ENV V" + std::to_string(i) + "=" + std::string(120000, 'v') + "\n";
  EXPECT_EQ(resolve_failure(wide), "Containerfile:10: ENV: the environment exceeds 1 MiB");
  std::string args = from("\n");
  for (int i = 0; i < 9; ++i)
    args += "ARG V" + std::to_string(i) + "=" + std::string(120000, 'v') + "\n";
  EXPECT_EQ(resolve_failure(args), "Containerfile:10: ARG: the environment exceeds 1 MiB");
}

TEST(SubstituteTest, SubstitutionErrorsNameTheLine) {
  EXPECT_EQ(resolve_failure(from("\n\nENV A=${B\n")),
            "Containerfile:3: ENV: cannot substitute in \"${B\": missing '}'");
  EXPECT_EQ(resolve_failure(from("\nARG V\nRUN true\nCOPY ${V:?required} /x\n")),
            "Containerfile:4: COPY: cannot substitute in \"${V:?required}\": V: required");
}

TEST(SubstituteTest, AddUrlsAreRefusedAfterSubstitution) {
  EXPECT_EQ(resolve_failure(from("\nARG URL=https://example.com/x.tar.gz\nADD $URL /x\n")),
            "Containerfile:3: ADD: \"https://example.com/x.tar.gz\" is a URL; pantry's ADD takes "
            "local files and archives only: download it in a RUN --network=host step, or put it "
            "in the build context");
  EXPECT_THAT(resolve_failure(from("\nARG R=git@github.com:a/b.git\nADD $R /x\n")),
              HasSubstr("is a URL"));
  // COPY takes the same text as a path, as docker does.
  const build b = make(from("\nCOPY http://x /x\n"));
  EXPECT_EQ(body<copy_instruction>(resolve_all(b, 0).at(0)).sources, (strings{"http://x"}));
}

TEST(SubstituteTest, OtherSubstitutedFields) {
  const build b =
      make(from("\nARG U=app D=/srv S=TERM P=\"80 443/UDP\"\n"
                "WORKDIR $D/app\n"
                "USER ${U}:${U}\n"
                "LABEL org.opencontainers.image.title=\"$U\" $U.kind=web\n"
                "VOLUME $D/data [\"x\"]\n"
                "STOPSIGNAL SIG$S\n"
                "EXPOSE $P 8000-8002 9000/tcp\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 7u);
  EXPECT_EQ(body<workdir_instruction>(steps[1]).path, "/srv/app");
  EXPECT_EQ(body<user_instruction>(steps[2]).user, "app:app");
  EXPECT_EQ(body<label_instruction>(steps[3]).labels,
            (kvs{{"org.opencontainers.image.title", "app"}, {"app.kind", "web"}}));
  EXPECT_EQ(body<volume_instruction>(steps[4]).paths, (strings{"/srv/data", "[x]"}));
  EXPECT_EQ(body<stopsignal_instruction>(steps[5]).signal, "SIGTERM");
  EXPECT_EQ(body<expose_instruction>(steps[6]).ports,
            (strings{"80/tcp", "443/udp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp"}));
  EXPECT_EQ(steps[6].build_args_used, (kvs{{"P", "80 443/UDP"}}));
}

TEST(SubstituteTest, NeverSubstituted) {
  const build b =
      make(from("\nARG V=1\n"
                "CMD echo $V\n"
                "ENTRYPOINT [\"/bin/$V\"]\n"
                "SHELL [\"/bin/$V\"]\n"
                "HEALTHCHECK CMD test $V\n"
                "MAINTAINER $V\n"));
  const auto steps = resolve_all(b, 0);
  ASSERT_EQ(steps.size(), 6u);
  EXPECT_EQ(body<cmd_instruction>(steps[1]).command.args, (strings{"echo $V"}));
  EXPECT_EQ(body<entrypoint_instruction>(steps[2]).command.args, (strings{"/bin/$V"}));
  EXPECT_EQ(body<shell_instruction>(steps[3]).shell, (strings{"/bin/$V"}));
  EXPECT_EQ(body<healthcheck_instruction>(steps[4]).test.args, (strings{"test $V"}));
  EXPECT_EQ(body<maintainer_instruction>(steps[5]).maintainer, "$V");
  for (std::size_t i = 1; i < steps.size(); ++i)
    EXPECT_TRUE(steps[i].build_args_used.empty()) << steps[i].step.text;
}

TEST(SubstituteTest, ExposeAndStopsignalAreChecked) {
  EXPECT_EQ(resolve_failure(from("\nEXPOSE 8080:80\n")),
            "Containerfile:2: EXPOSE: invalid port \"8080:80\": EXPOSE takes the container's "
            "ports only (8080 or 8080/tcp), no host part");
  EXPECT_THAT(resolve_failure(from("\nEXPOSE 80/icmp\n")), HasSubstr("tcp, udp or sctp"));
  EXPECT_THAT(resolve_failure(from("\nEXPOSE http\n")), HasSubstr("from 0 to 65535"));
  EXPECT_THAT(resolve_failure(from("\nEXPOSE 65536\n")), HasSubstr("from 0 to 65535"));
  EXPECT_THAT(resolve_failure(from("\nEXPOSE 90-80\n")), HasSubstr("ends before it starts"));
  EXPECT_THAT(resolve_failure(from("\nEXPOSE /tcp\n")), HasSubstr("no port number"));
  for (std::string_view ok : {"9", "64", "SIGKILL", "kill", "sigrtmin+3", "RTMAX-14", "SIGWINCH"}) {
    const build b = make(from("\nSTOPSIGNAL " + std::string(ok) + "\n"));
    stage_scope scope(*b.scope, {});
    EXPECT_TRUE(scope.resolve(b.file->stages[0].instructions[0])) << ok;
  }
  EXPECT_EQ(resolve_failure(from("\nSTOPSIGNAL SIGFOO\n")),
            "Containerfile:2: STOPSIGNAL: \"SIGFOO\" is not a signal: use a name such as SIGTERM "
            "or a number 1-64");
  for (std::string_view bad : {"0", "65", "RTMIN+16", "RTMAX-15", "-1"}) {
    EXPECT_THAT(resolve_failure(from("\nSTOPSIGNAL " + std::string(bad) + "\n")),
                HasSubstr("is not a signal"))
        << bad;
  }
}

// ---- FROM and the stages a target needs ---------------------------------------------------------

TEST(SubstituteTest, ResolveFromKinds) {
  const build b = make(
      "ARG TAG=3.11\n"
      "FROM scratch AS empty\n"
      "FROM python:${TAG}@" +
      std::string(kDigest) +
      " AS py\n"
      "FROM empty\n"
      "FROM python:$TAG\n");
  auto scratch = b.scope->resolve_from(0);
  ASSERT_TRUE(scratch);
  EXPECT_EQ(scratch->base, resolved_from::kind::scratch);
  auto py = b.scope->resolve_from(1);
  ASSERT_TRUE(py);
  EXPECT_EQ(py->image, (image_reference{"python", "3.11", std::string(kDigest)}));
  EXPECT_EQ(py->build_args_used, (kvs{{"TAG", "3.11"}}));
  auto stage = b.scope->resolve_from(2);
  ASSERT_TRUE(stage);
  EXPECT_EQ(stage->base, resolved_from::kind::stage);
  EXPECT_EQ(stage->stage, 0u);
  auto unpinned = b.scope->resolve_from(3);
  ASSERT_TRUE(unpinned);
  EXPECT_FALSE(unpinned->image.pinned());
}

TEST(SubstituteTest, ResolveFromErrors) {
  auto from_failure = [](std::string_view text, std::size_t index, build_options o = {}) {
    const build b = make(text, std::move(o));
    auto r = b.scope->resolve_from(index);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(from_failure("ARG IMAGE\nFROM $IMAGE\n", 0),
            "Containerfile:2: FROM: the image \"$IMAGE\" is empty after substitution (is the "
            "global ARG set?)");
  EXPECT_EQ(from_failure("FROM later\nFROM scratch AS later\n", 0),
            "Containerfile:1: FROM: names the stage \"later\" (line 2); a stage builds only on a "
            "stage defined before it");
  EXPECT_THAT(from_failure("FROM me AS me\n", 0), HasSubstr("names the stage \"me\", itself"));
  EXPECT_EQ(from_failure("FROM Python\n", 0),
            "Containerfile:1: FROM: \"Python\" is not an image reference: repository names are "
            "lowercase");
  EXPECT_THAT(from_failure("FROM ${X\n", 0), HasSubstr("FROM: cannot substitute"));
}

TEST(SubstituteTest, PlatformArgsAndFromPlatform) {
  build_options options;
  options.platform = "linux/x86_64";
  const build b = make(
      "ARG ARCH=$TARGETARCH\n"
      "FROM --platform=$BUILDPLATFORM scratch\n"
      "FROM --platform=linux/amd64 scratch\n"
      "FROM --platform=linux/arm64 scratch\n",
      options);
  EXPECT_EQ(*b.scope->global("ARCH"), "amd64");
  EXPECT_EQ(*b.scope->global("TARGETPLATFORM"), "linux/amd64");
  EXPECT_EQ(*b.scope->global("BUILDOS"), "linux");
  EXPECT_EQ(*b.scope->global("TARGETVARIANT"), "");
  auto ok = b.scope->resolve_from(0);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->build_args_used, (kvs{{"BUILDPLATFORM", "linux/amd64"}}));
  EXPECT_TRUE(b.scope->resolve_from(1));
  EXPECT_EQ(b.scope->resolve_from(2).error().message,
            "Containerfile:4: FROM: --platform=linux/arm64 is not the platform pantry builds for "
            "(linux/x86_64): pantry builds natively, without emulation; remove --platform or "
            "build on such a machine");
  const build none = make("FROM --platform=linux/amd64 scratch\n");
  EXPECT_EQ(none.scope->resolve_from(0).error().message,
            "Containerfile:1: FROM: --platform=linux/amd64 is not supported here: pantry builds "
            "for the machine it runs on; remove --platform");
  EXPECT_EQ(none.scope->global("TARGETARCH"), nullptr);
}

TEST(SubstituteTest, GlobalArgErrorsNameTheLine) {
  auto f = parse_containerfile("ARG A=${B\nFROM scratch\n", "Containerfile");
  ASSERT_TRUE(f);
  auto s = build_scope::make(*f, {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "Containerfile:1: ARG: cannot substitute in \"${B\": missing '}'");
}

TEST(SubstituteTest, StagesForATarget) {
  const build b = make(
      "FROM scratch AS a\n"
      "FROM scratch AS b\n"
      "FROM a AS c\n"
      "COPY --from=b /x /x\n"
      "FROM scratch AS d\n"
      "FROM scratch AS e\n"
      "COPY --from=c /x /x\n");
  EXPECT_EQ(b.scope->stages_for(4).value(), (std::vector<std::size_t>{0, 1, 2, 4}));
  EXPECT_EQ(b.scope->stages_for(3).value(), (std::vector<std::size_t>{3}));
  EXPECT_EQ(b.scope->stages_for(2).value(), (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_FALSE(b.scope->stages_for(5));
}

}  // namespace
}  // namespace pantry::orchestrator::builder
