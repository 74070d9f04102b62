#include "pantry/orchestrator/builder/ignore.h"

#include "lexical.h"

#include <algorithm>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

using detail::decode_rune;
using detail::quote;

// One element of a pattern compiled the way docker compiles it to a regular expression.
struct token {
  enum class kind {
    literal,       // one character
    any,           // `?`: [^/]
    star,          // `*`: [^/]*
    any_run,       // trailing `**` after wildcards: .* (no newline)
    any_dirs,      // `**` before more: (.*/)? (no newline)
    char_class,    // [...] / [^...]
    anchor_start,  // a `^` outside a class: the regular expression's start-of-text
  } type;
  char32_t ch = 0;
  bool negated = false;
  std::vector<std::pair<char32_t, char32_t>> ranges{};
};

enum class match_type { exact, prefix, suffix, regexp };

std::vector<char32_t> runes_of(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto r = decode_rune(s, i);
    out.push_back(r.value);
    i += r.length;
  }
  return out;
}

bool is_ascii_alnum(char32_t c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Go's filepath.Match syntax check for a class starting after '[' at `i`: `^`, then ranges
// c or lo-hi, where `\` escapes and an item may not start with '-' or ']'. Returns the index
// after the closing ']'. Also builds the class and refuses what has a regular-expression meaning.
result<std::size_t> parse_class(const std::vector<char32_t>& p, std::size_t i, token& out,
                                std::string_view text) {
  auto bad = [&](const std::string& why) {
    return error(errc::invalid_argument, "bad pattern " + quote(text) + ": " + why);
  };
  out.type = token::kind::char_class;
  if (i < p.size() && p[i] == '^') {
    out.negated = true;
    ++i;
  }
  // One character of a range, with its escape.
  auto get = [&](std::size_t& j) -> result<char32_t> {
    if (j >= p.size()) return bad("a character class is not closed with ]");
    if (p[j] == '-' || p[j] == ']') return bad("a character class item starts with - or ]");
    if (p[j] == '*' || p[j] == '?') {
      return bad(
          "* and ? inside [...] are not supported (docker reads them as a regular "
          "expression there)");
    }
    if (p[j] == '[' && j + 1 < p.size() && p[j + 1] == ':') {
      return bad("[: inside [...] is not supported (a POSIX class in docker's regular expression)");
    }
    if (p[j] == '\\') {
      ++j;
      if (j >= p.size()) return bad("it ends with \\");
      if (is_ascii_alnum(p[j])) {
        return bad(
            "\\ before a letter or digit is not supported (docker reads it as a regular "
            "expression escape)");
      }
    }
    return p[j++];
  };
  std::size_t count = 0;
  while (true) {
    if (i < p.size() && p[i] == ']' && count > 0) return i + 1;
    auto lo = get(i);
    if (!lo) return lo.error();
    char32_t hi = *lo;
    if (i < p.size() && p[i] == '-') {
      ++i;
      auto h = get(i);
      if (!h) return h.error();
      hi = *h;
      if (hi < *lo) return bad("a character range ends before it starts");
    }
    out.ranges.emplace_back(*lo, hi);
    ++count;
  }
}

// Longer patterns are refused: matching costs pattern × path length, and a path is at most
// PATH_MAX (4096) bytes, which a pattern longer than that cannot match unless it is mostly
// wildcards.
constexpr std::size_t kMaxPattern = 4096;

// Docker's compilation of a cleaned pattern (patternmatcher's Pattern.compile), as tokens.
result<std::pair<match_type, std::vector<token>>> compile(std::string_view text) {
  if (text.size() > kMaxPattern) {
    return error(errc::invalid_argument,
                 "bad pattern " + quote(text) + ": longer than 4096 bytes, the longest path");
  }
  const std::vector<char32_t> p = runes_of(text);
  std::vector<token> tokens;
  match_type type = match_type::exact;
  for (std::size_t i = 0; i < p.size();) {
    const std::size_t first = i;
    const char32_t c = p[i++];
    if (c == '*') {
      if (i < p.size() && p[i] == '*') {
        ++i;
        if (i < p.size() && p[i] == '/') ++i;
        if (i == p.size()) {
          if (type == match_type::exact) {
            type = match_type::prefix;
          } else {
            tokens.push_back({token::kind::any_run});
            type = match_type::regexp;
          }
        } else {
          tokens.push_back({token::kind::any_dirs});
          type = match_type::regexp;
        }
        if (first == 0) type = match_type::suffix;
      } else {
        tokens.push_back({token::kind::star});
        type = match_type::regexp;
      }
    } else if (c == '?') {
      tokens.push_back({token::kind::any});
      type = match_type::regexp;
    } else if (c == '\\') {
      if (i == p.size()) {
        return error(errc::invalid_argument, "bad pattern " + quote(text) + ": it ends with \\");
      }
      if (is_ascii_alnum(p[i])) {
        return error(errc::invalid_argument,
                     "bad pattern " + quote(text) +
                         ": \\ before a letter or digit is not supported (docker reads it as a "
                         "regular expression escape)");
      }
      tokens.push_back({token::kind::literal, p[i++]});
      type = match_type::regexp;
    } else if (c == '[') {
      token t{token::kind::char_class};
      auto end = parse_class(p, i, t, text);
      if (!end) return end.error();
      i = *end;
      tokens.push_back(std::move(t));
      type = match_type::regexp;
    } else if (c == ']') {
      // A ']' outside a class is a literal in a regular expression (and in filepath.Match).
      tokens.push_back({token::kind::literal, c});
      type = match_type::regexp;
    } else if (c == '^') {
      tokens.push_back({token::kind::anchor_start, c});
    } else {
      tokens.push_back({token::kind::literal, c});
    }
  }
  return std::make_pair(type, std::move(tokens));
}

bool in_class(const token& t, char32_t c) {
  const bool in = std::any_of(t.ranges.begin(), t.ranges.end(),
                              [&](const auto& r) { return c >= r.first && c <= r.second; });
  return in != t.negated;
}

// Whether `tokens` match all of `s` (docker's ^…$).
bool full_match(const std::vector<token>& tokens, const std::vector<char32_t>& s) {
  const std::size_t n = s.size();
  std::vector<char> reach(n + 1, 0), next(n + 1, 0);
  reach[0] = 1;
  for (const token& t : tokens) {
    std::fill(next.begin(), next.end(), 0);
    switch (t.type) {
      case token::kind::literal:
      case token::kind::any:
      case token::kind::char_class:
        for (std::size_t p = 0; p < n; ++p) {
          if (!reach[p]) continue;
          const bool ok = t.type == token::kind::literal ? s[p] == t.ch
                          : t.type == token::kind::any   ? s[p] != '/'
                                                         : in_class(t, s[p]);
          if (ok) next[p + 1] = 1;
        }
        break;
      case token::kind::star:
      case token::kind::any_run: {
        const char32_t stop = t.type == token::kind::star ? U'/' : U'\n';
        bool live = false;
        for (std::size_t p = 0; p <= n; ++p) {
          if (reach[p]) live = true;
          if (live) next[p] = 1;
          if (p < n && s[p] == stop) live = false;
        }
        break;
      }
      case token::kind::any_dirs: {
        // Empty, or a run without newlines that ends with '/'.
        bool live = false;
        for (std::size_t p = 0; p <= n; ++p) {
          if (reach[p]) {
            next[p] = 1;
            live = true;
          }
          if (p == n) break;
          if (s[p] == '\n') {
            live = false;
          } else if (live && s[p] == '/') {
            next[p + 1] = 1;
          }
        }
        break;
      }
      case token::kind::anchor_start:
        next[0] = reach[0];
        break;
    }
    std::swap(reach, next);
  }
  return reach[n] != 0;
}

std::string_view trim_space(std::string_view s) {
  return detail::trim(s);
}

}  // namespace

struct ignore_rules::compiled {
  match_type type = match_type::exact;
  std::vector<token> tokens;
  std::string text;
  std::string literal_prefix;  // the text before the first wildcard, for may_include_under

  bool matches(std::string_view path) const {
    switch (type) {
      case match_type::exact:
        return path == text;
      case match_type::prefix:
        return path.starts_with(std::string_view(text).substr(0, text.size() - 2));
      case match_type::suffix: {
        const std::string_view suffix = std::string_view(text).substr(2);
        if (path.ends_with(suffix)) return true;
        return !suffix.empty() && suffix.front() == '/' && path == suffix.substr(1);
      }
      case match_type::regexp:
        return full_match(tokens, runes_of(path));
    }
    return false;
  }
};

ignore_rules::ignore_rules() = default;
ignore_rules::~ignore_rules() = default;
ignore_rules::ignore_rules(const ignore_rules&) = default;
ignore_rules& ignore_rules::operator=(const ignore_rules&) = default;
ignore_rules::ignore_rules(ignore_rules&&) noexcept = default;
ignore_rules& ignore_rules::operator=(ignore_rules&&) noexcept = default;

std::string clean_path(std::string_view path) {
  if (path.empty()) return ".";
  const bool rooted = path.front() == '/';
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::string_view part =
        path.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (part.empty() || part == ".") {
      // nothing
    } else if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(part);
      }
    } else {
      parts.push_back(part);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string out = rooted ? "/" : "";
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  if (out.empty()) return ".";
  return out;
}

result<ignore_rules> ignore_rules::from_patterns(const std::vector<std::string>& patterns) {
  ignore_rules rules;
  for (const auto& raw : patterns) {
    std::string p(trim_space(raw));
    if (p.empty()) continue;
    p = clean_path(p);
    pattern pat;
    if (p.front() == '!') {
      if (p.size() == 1) {
        return error(errc::invalid_argument, "bad pattern \"!\": an exception needs a pattern");
      }
      pat.exception = true;
      p.erase(0, 1);
    }
    auto c = compile(p);
    if (!c) return c.error();
    compiled comp;
    comp.type = c->first;
    comp.tokens = std::move(c->second);
    comp.text = p;
    const std::size_t wild = p.find_first_of("*?[]\\^");
    comp.literal_prefix = p.substr(0, wild);
    pat.text = std::move(p);
    rules.patterns_.push_back(std::move(pat));
    rules.compiled_.push_back(std::move(comp));
  }
  return rules;
}

result<ignore_rules> ignore_rules::parse(std::string_view text, std::string_view file) {
  std::vector<std::string> patterns;
  std::vector<std::size_t> lines;
  std::size_t line = 0;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(start, nl - start);
    start = nl + 1;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (line == 0 && l.starts_with("\xEF\xBB\xBF")) l.remove_prefix(3);
    ++line;
    if (l.starts_with('#')) continue;
    std::string_view p = trim_space(l);
    if (p.empty()) continue;
    const bool exception = p.front() == '!';
    if (exception) p = trim_space(p.substr(1));
    std::string cleaned;
    if (!p.empty()) {
      cleaned = clean_path(p);
      if (cleaned.size() > 1 && cleaned.front() == '/') cleaned.erase(0, 1);
    }
    patterns.push_back(exception ? "!" + cleaned : cleaned);
    lines.push_back(line);
  }
  // Compiled one by one so that an error names its line.
  ignore_rules rules;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    auto one = from_patterns({patterns[i]});
    if (!one) {
      return error(errc::invalid_argument,
                   std::string(file) + ":" + std::to_string(lines[i]) + ": " + one.error().message);
    }
    for (std::size_t k = 0; k < one->patterns_.size(); ++k) {
      one->patterns_[k].line = lines[i];
      rules.patterns_.push_back(std::move(one->patterns_[k]));
      rules.compiled_.push_back(std::move(one->compiled_[k]));
    }
  }
  return rules;
}

bool ignore_rules::excluded(std::string_view path) const {
  std::string p = clean_path(path);
  while (p.starts_with('/'))
    p.erase(0, 1);
  if (p.empty() || p == ".") return false;
  // The parent directories, shortest first: "a", "a/b" for "a/b/c".
  std::vector<std::string_view> parents;
  for (std::size_t slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1))
    parents.push_back(std::string_view(p).substr(0, slash));
  bool matched = false;
  for (std::size_t i = 0; i < compiled_.size(); ++i) {
    // An include pattern can change nothing once matched, an exception nothing before.
    if (patterns_[i].exception != matched) continue;
    const compiled& c = compiled_[i];
    bool match = c.matches(p);
    for (std::size_t k = 0; !match && k < parents.size(); ++k)
      match = c.matches(parents[k]);
    if (match) matched = !patterns_[i].exception;
  }
  return matched;
}

bool ignore_rules::may_include_under(std::string_view dir) const {
  std::string d = clean_path(dir);
  while (d.starts_with('/'))
    d.erase(0, 1);
  const std::string under = (d == "." || d.empty()) ? std::string() : d + "/";
  for (std::size_t i = 0; i < compiled_.size(); ++i) {
    if (!patterns_[i].exception) continue;
    const compiled& c = compiled_[i];
    // A path under `dir` starts with `under`; the pattern can match only paths that start with
    // its literal prefix (a suffix pattern has none).
    if (c.type == match_type::suffix) return true;
    const std::string& lit = c.literal_prefix;
    if (lit.starts_with(under) || under.starts_with(lit)) return true;
  }
  return false;
}

}  // namespace pantry::orchestrator::builder
