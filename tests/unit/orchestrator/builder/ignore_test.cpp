#include "pantry/orchestrator/builder/ignore.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using ::testing::HasSubstr;
using strings = std::vector<std::string>;

ignore_rules rules(std::string_view text) {
  auto r = ignore_rules::parse(text, ".dockerignore");
  EXPECT_TRUE(r) << r.error().message;
  return r ? std::move(*r) : ignore_rules();
}

ignore_rules of(const strings& patterns) {
  auto r = ignore_rules::from_patterns(patterns);
  EXPECT_TRUE(r) << r.error().message;
  return r ? std::move(*r) : ignore_rules();
}

// The paths of `paths` that `r` excludes.
strings excluded(const ignore_rules& r, const strings& paths) {
  strings out;
  for (const auto& p : paths) {
    if (r.excluded(p)) out.push_back(p);
  }
  return out;
}

TEST(IgnoreTest, DockersDocumentedExample) {
  const ignore_rules r = rules(
      "# comment\n"
      "*/temp*\n"
      "*/*/temp*\n"
      "temp?\n");
  EXPECT_EQ(r.patterns().size(), 3u);
  EXPECT_EQ(excluded(r, {"somedir/temporary.txt", "somedir/temp", "somedir/temp/x",
                         "somedir/subdir/temporary.txt", "tempa", "tempb", "temp", "temporary",
                         "a/b/c/temp", "somedir/other", "comment", "# comment"}),
            (strings{"somedir/temporary.txt", "somedir/temp", "somedir/temp/x",
                     "somedir/subdir/temporary.txt", "tempa", "tempb"}));
}

TEST(IgnoreTest, DoubleStarMatchesAnyDepth) {
  const ignore_rules r = rules("**/*.go\n");
  EXPECT_EQ(excluded(r, {"main.go", "cmd/x/main.go", "main.go.txt", "go", "a/b.gox"}),
            (strings{"main.go", "cmd/x/main.go"}));
}

TEST(IgnoreTest, ExceptionsAndLastMatchWins) {
  // The three examples of docker's documentation.
  const ignore_rules a = rules("*.md\n!README.md\n");
  EXPECT_EQ(excluded(a, {"CHANGES.md", "README.md", "docs/x.md"}), (strings{"CHANGES.md"}));
  const ignore_rules b = rules("*.md\n!README*.md\nREADME-secret.md\n");
  EXPECT_EQ(excluded(b, {"CHANGES.md", "README.md", "README-dev.md", "README-secret.md"}),
            (strings{"CHANGES.md", "README-secret.md"}));
  const ignore_rules c = rules("*.md\nREADME-secret.md\n!README*.md\n");
  EXPECT_EQ(excluded(c, {"CHANGES.md", "README.md", "README-secret.md"}), (strings{"CHANGES.md"}));
}

TEST(IgnoreTest, DirectoryPatternsExcludeTheirContents) {
  for (std::string_view pattern : {"build", "build/", "/build", "./build", "build//"}) {
    const ignore_rules r = rules(std::string(pattern) + "\n");
    EXPECT_EQ(excluded(r, {"build", "build/x", "build/x/y.o", "builder", "src/build"}),
              (strings{"build", "build/x", "build/x/y.o"}))
        << pattern;
  }
  const ignore_rules under = rules("build/**\n");
  EXPECT_EQ(excluded(under, {"build", "build/x", "build/x/y"}), (strings{"build/x", "build/x/y"}));
}

TEST(IgnoreTest, ExceptionInsideAnExcludedDirectory) {
  const ignore_rules r = rules("docs\n!docs/README.md\n");
  EXPECT_EQ(excluded(r, {"docs", "docs/x.md", "docs/README.md", "docs/README.md/x"}),
            (strings{"docs", "docs/x.md"}));
  EXPECT_TRUE(r.may_include_under("docs"));
  EXPECT_FALSE(rules("docs\n").may_include_under("docs"));
  EXPECT_FALSE(rules("docs\nsrc\n!src/keep\n").may_include_under("docs"));
  EXPECT_TRUE(rules("docs\n!**/keep\n").may_include_under("docs"));
  EXPECT_TRUE(rules("docs\n!*/keep\n").may_include_under("docs"));
  EXPECT_TRUE(rules("docs/a\n!docs\n").may_include_under("docs/a"));
}

TEST(IgnoreTest, ExcludeEverythingButAFew) {
  const ignore_rules r = rules("**\n!src\n!pyproject.toml\nsrc/**/__pycache__\n");
  EXPECT_EQ(excluded(r, {"pyproject.toml", "src/app.py", "src/pkg/__pycache__/x.pyc", ".git/HEAD",
                         "README.md"}),
            (strings{"src/pkg/__pycache__/x.pyc", ".git/HEAD", "README.md"}));
  // docker's multi-pattern cases.
  EXPECT_FALSE(of({"**", "!util/docker/web"}).excluded("util/docker/web/foo"));
  EXPECT_TRUE(
      of({"**", "!util/docker/web", "util/docker/web/foo"}).excluded("util/docker/web/foo"));
  EXPECT_FALSE(
      of({"**", "!dist/*.whl"}).excluded("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"));
}

TEST(IgnoreTest, TheRootIsNeverExcluded) {
  const ignore_rules r = rules("*\n**\n.\n");
  EXPECT_FALSE(r.excluded("."));
  EXPECT_FALSE(r.excluded(""));
  EXPECT_FALSE(r.excluded("./"));
  EXPECT_TRUE(r.excluded("./a/../b"));
}

TEST(IgnoreTest, FileFormat) {
  const ignore_rules r = rules(
      "\xEF\xBB\xBFtest1\r\n"
      "/test2\n"
      "/a/file/here\n"
      "\n"
      "lastfile\n"
      "# this is a comment\n"
      " # not a comment \n"
      "! /inverted/abs/path\n"
      "\t./x/../y/ \n");
  strings texts;
  std::vector<std::size_t> lines;
  for (const auto& p : r.patterns()) {
    texts.push_back((p.exception ? "!" : "") + p.text);
    lines.push_back(p.line);
  }
  EXPECT_EQ(texts, (strings{"test1", "test2", "a/file/here", "lastfile", "# not a comment",
                            "!inverted/abs/path", "y"}));
  EXPECT_EQ(lines, (std::vector<std::size_t>{1, 2, 3, 5, 7, 8, 9}));
}

TEST(IgnoreTest, BadPatternsNameTheirLine) {
  auto failure = [](std::string_view text) {
    auto r = ignore_rules::parse(text, ".containerignore");
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(failure("a\n!\n"),
            ".containerignore:2: bad pattern \"!\": an exception needs a pattern");
  EXPECT_EQ(failure("x\n\n[a-\n"),
            ".containerignore:3: bad pattern \"[a-\": a character class is not closed with ]");
  EXPECT_EQ(failure("a\\\n"), ".containerignore:1: bad pattern \"a\\\\\": it ends with \\");
  EXPECT_THAT(failure("\\d+\n"), HasSubstr("\\ before a letter or digit is not supported"));
  EXPECT_THAT(failure("[*]\n"), HasSubstr("* and ? inside [...] are not supported"));
  EXPECT_THAT(failure("[[:alpha:]]\n"), HasSubstr("[: inside [...] is not supported"));
  EXPECT_THAT(failure(std::string(4097, 'a') + "\n"), HasSubstr("longer than 4096 bytes"));
  EXPECT_TRUE(ignore_rules::parse(std::string(4096, 'a') + "\n", "x"));
}

struct match_case {
  std::string_view pattern;
  std::string_view path;
  bool match;
};

// docker's patternmatcher tests (TestMatches), for paths relative to the context.
const match_case kMatchCases[] = {
    {"**", "file", true},
    {"**", "file/", true},
    {"**/", "file", true},
    {"**/", "file/", true},
    {"**", "dir/file", true},
    {"**/", "dir/file", true},
    {"**", "dir/file/", true},
    {"**/", "dir/file/", true},
    {"**/**", "dir/file", true},
    {"**/**", "dir/file/", true},
    {"dir/**", "dir/file", true},
    {"dir/**", "dir/file/", true},
    {"dir/**", "dir/dir2/file", true},
    {"dir/**", "dir/dir2/file/", true},
    {"**/dir", "dir", true},
    {"**/dir", "dir/file", true},
    {"**/dir2/*", "dir/dir2/file", true},
    {"**/dir2/*", "dir/dir2/file/", true},
    {"**/dir2/**", "dir/dir2/dir3/file", true},
    {"**/dir2/**", "dir/dir2/dir3/file/", true},
    {"**file", "file", true},
    {"**file", "dir/file", true},
    {"**/file", "dir/file", true},
    {"**file", "dir/dir/file", true},
    {"**/file", "dir/dir/file", true},
    {"**/file*", "dir/dir/file", true},
    {"**/file*", "dir/dir/file.txt", true},
    {"**/file*txt", "dir/dir/file.txt", true},
    {"**/file*.txt", "dir/dir/file.txt", true},
    {"**/file*.txt*", "dir/dir/file.txt", true},
    {"**/**/*.txt", "dir/dir/file.txt", true},
    {"**/**/*.txt2", "dir/dir/file.txt", false},
    {"**/*.txt", "file.txt", true},
    {"**/**/*.txt", "file.txt", true},
    {"a**/*.txt", "a/file.txt", true},
    {"a**/*.txt", "a/dir/file.txt", true},
    {"a**/*.txt", "a/dir/dir/file.txt", true},
    {"a/*.txt", "a/dir/file.txt", false},
    {"a/*.txt", "a/file.txt", true},
    {"a/*.txt**", "a/file.txt", true},
    {"a[b-d]e", "ae", false},
    {"a[b-d]e", "ace", true},
    {"a[b-d]e", "aae", false},
    {"a[^b-d]e", "aze", true},
    {".*", ".foo", true},
    {".*", "foo", false},
    {"abc.def", "abcdef", false},
    {"abc.def", "abc.def", true},
    {"abc.def", "abcZdef", false},
    {"abc?def", "abcZdef", true},
    {"abc?def", "abcdef", false},
    {"a\\\\", "a\\", true},
    {"**/foo/bar", "foo/bar", true},
    {"**/foo/bar", "dir/foo/bar", true},
    {"**/foo/bar", "dir/dir2/foo/bar", true},
    {"abc/**", "abc", false},
    {"abc/**", "abc/def", true},
    {"abc/**", "abc/def/ghi", true},
    {"**/.foo", ".foo", true},
    {"**/.foo", "bar.foo", false},
    {"a(b)c/def", "a(b)c/def", true},
    {"a(b)c/def", "a(b)c/xyz", false},
    {"a.|)$(}+{bc", "a.|)$(}+{bc", true},
    {"dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true},
    {"dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true},
    {"a\\*b", "a*b", true},
    // TestMatch (filepath.Match's own cases, through docker's matcher).
    {"abc", "abc", true},
    {"*", "abc", true},
    {"*c", "abc", true},
    {"a*", "a", true},
    {"a*", "abc", true},
    {"a*", "ab/c", true},
    {"a*/b", "abc/b", true},
    {"a*/b", "a/c/b", false},
    {"a*b*c*d*e*/f", "axbxcxdxe/f", true},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/f", true},
    {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", false},
    {"a*b?c*x", "abxbbxdbxebxczzx", true},
    {"a*b?c*x", "abxbbxdbxebxczzy", false},
    {"ab[c]", "abc", true},
    {"ab[b-d]", "abc", true},
    {"ab[e-g]", "abc", false},
    {"ab[^c]", "abc", false},
    {"ab[^b-d]", "abc", false},
    {"ab[^e-g]", "abc", true},
    {"a\\*b", "ab", false},
    {"a?b", "a☺b", true},
    {"a[^a]b", "a☺b", true},
    {"a???b", "a☺b", false},
    {"a[^a][^a][^a]b", "a☺b", false},
    {"[a-ζ]*", "α", true},
    {"*[a-ζ]", "A", false},
    {"a?b", "a/b", false},
    {"a*b", "a/b", false},
    {"[\\]a]", "]", true},
    {"[\\-]", "-", true},
    {"[x\\-]", "x", true},
    {"[x\\-]", "-", true},
    {"[x\\-]", "z", false},
    {"[\\-x]", "x", true},
    {"[\\-x]", "-", true},
    {"[\\-x]", "a", false},
    {"*x", "xxx", true},
    // docker's special cases: **-prefixed and **-suffixed patterns without other wildcards
    // compare strings.
    {"**foo", "barfoo", true},
    {"**foo", "a/barfoo", true},
    {"foo**", "foobar/x", true},
    {"foo**", "fo", false},
    // A '^' outside a class anchors docker's regular expression.
    {"^a*", "abc", true},
    {"a^*", "abc", false},
    {"a^b", "a^b", true},
    // `[^…]` may match '/', as in docker.
    {"a[^x]b", "a/b", true},
};

TEST(IgnoreTest, MatchesAsDockersPatternMatcher) {
  for (const auto& c : kMatchCases) {
    auto r = ignore_rules::from_patterns({std::string(c.pattern)});
    ASSERT_TRUE(r) << c.pattern << ": " << r.error().message;
    EXPECT_EQ(r->excluded(c.path), c.match) << "pattern " << c.pattern << ", path " << c.path;
  }
}

TEST(IgnoreTest, MalformedPatternsAsDockersPatternMatcher) {
  for (std::string_view bad :
       {"[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "[z-a]", "!"}) {
    EXPECT_FALSE(ignore_rules::from_patterns({std::string(bad)})) << bad;
  }
}

TEST(IgnoreTest, CleanPath) {
  EXPECT_EQ(clean_path(""), ".");
  EXPECT_EQ(clean_path("a/./b/../c//"), "a/c");
  EXPECT_EQ(clean_path("/../a"), "/a");
  EXPECT_EQ(clean_path("../../a/.."), "../..");
  EXPECT_EQ(clean_path("./"), ".");
  EXPECT_EQ(clean_path("/"), "/");
  EXPECT_EQ(clean_path("a/.."), ".");
}

}  // namespace
}  // namespace pantry::orchestrator::builder
