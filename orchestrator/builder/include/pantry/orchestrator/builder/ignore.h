#pragma once

// .containerignore / .dockerignore: which files of the build context a build never sees, matched
// exactly as docker matches them (moby's patternmatcher and ignorefile).
//
// Pure code: the caller reads the file and walks the context.
//
// The file: one pattern a line; a line starting with '#' (in its first column) is a comment;
// white space around a pattern is dropped; `!` in front makes an exception (the path is included
// again); each pattern is cleaned as a path (`./a//b/` is `a/b`, `a/../b` is `b`) and a leading
// `/` dropped, so `/a` and `a` are the same; a UTF-8 byte order mark and CRLF line ends are
// accepted.
//
// Matching: a path relative to the context root is excluded when the last pattern that matches it
// or one of its parent directories is not an exception (so `build` excludes `build/x/y` too, and
// `!build/keep` after it brings `build/keep` back). `*` matches any run of characters but '/',
// `?` one character but '/', `[a-z]` and `[^a-z]` a character of a class (`[^…]` may match '/'),
// `\` escapes the next character; `**` matches any number of directories (`**/*.go` matches
// `a.go` and `x/y/a.go`), and docker's special cases are kept: a pattern that starts with `**`
// and has no other wildcard matches every path that ends with the rest (`**foo` matches
// `barfoo`), one that ends with `**` and has no other wildcard every path that starts with the
// rest (`a**` matches `abc/d`; `a/**` matches what is under `a`, not `a`).
//
// Refused (docker turns patterns into Go regular expressions, where these have meanings no ignore
// file means): an escaped letter or digit (`\d`), `*` or `?` or `[:` inside a character class.
// Also refused, as docker refuses them: a malformed class, a trailing `\`, a lone `!`; and a
// pattern longer than 4096 bytes (no path is longer; it keeps matching cheap).

#include "pantry/error.h"

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

// The ignore files at the root of a build context, in the order they are looked for: the first
// that exists is used, the others are not read (as podman and buildah look; docker reads only
// .dockerignore, and also <Dockerfile>.dockerignore beside a Dockerfile, which pantry does not).
inline constexpr std::array<std::string_view, 2> kIgnoreFiles = {".containerignore",
                                                                 ".dockerignore"};

// A set of ignore patterns, compiled. Immutable; safe to share between threads.
class ignore_rules {
 public:
  struct pattern {
    std::string text;  // cleaned, without the `!`
    bool exception = false;
    std::size_t line = 0;  // in the ignore file, from 1; 0 when given as a list
  };

  ignore_rules();
  ~ignore_rules();
  ignore_rules(const ignore_rules&);
  ignore_rules& operator=(const ignore_rules&);
  ignore_rules(ignore_rules&&) noexcept;
  ignore_rules& operator=(ignore_rules&&) noexcept;

  // Parses the ignore file `file` whose text is `text`. Errors are errc::invalid_argument naming
  // FILE:LINE and quoting the pattern.
  static result<ignore_rules> parse(std::string_view text, std::string_view file);

  // Compiles patterns already read from a file (as docker's API passes them: `!` for exceptions).
  static result<ignore_rules> from_patterns(const std::vector<std::string>& patterns);

  // True iff `path` (relative to the context root, '/'-separated; cleaned first, so `./a/` is
  // `a`) is excluded. The root itself (`.` or empty) never is.
  bool excluded(std::string_view path) const;

  // False only when nothing under the directory `dir` can be included again by an exception, so
  // that a walker may skip an excluded directory whole. True when in doubt. (An excluded
  // directory that holds an included file is still sent, as docker sends it.)
  bool may_include_under(std::string_view dir) const;

  const std::vector<pattern>& patterns() const noexcept { return patterns_; }
  bool empty() const noexcept { return patterns_.empty(); }

 private:
  struct compiled;

  std::vector<pattern> patterns_;
  std::vector<compiled> compiled_;
};

// Go's path.Clean: the shortest path naming the same file, lexically ("a/./b/../c//" is "a/c",
// "" is ".").
std::string clean_path(std::string_view path);

}  // namespace pantry::orchestrator::builder
