#include "pantry/orchestrator/builder/substitute.h"

#include "lexical.h"

#include <algorithm>
#include <set>
#include <utility>

// expand(): docker's shell-word processing (its shell.Lex), with the ${NAME#…}, ${NAME%…} and
// ${NAME/…/…} patterns.

namespace pantry::orchestrator::builder {
namespace {

using detail::is_digit;
using detail::is_space;
using detail::quote;

// ---- patterns of ${NAME#…}, ${NAME%…} and ${NAME/…/…} -------------------------------------------

struct pattern_token {
  enum class kind { literal, any, star } type;
  char32_t ch = 0;
};

// Docker turns the pattern into a regular expression: `*` is any run and `?` any one character,
// neither matching a newline (they become `.*` and `.`); `\` escapes `*`, `?` and itself, and is
// dropped before `}` and `/`; any other escape is an error.
result<std::vector<pattern_token>> compile_pattern(std::string_view p) {
  std::vector<pattern_token> out;
  for (std::size_t i = 0; i < p.size();) {
    const detail::rune r = detail::decode_rune(p, i);
    i += r.length;
    if (r.value == '*') {
      // `**` matches what `*` matches, with the same preference.
      if (out.empty() || out.back().type != pattern_token::kind::star) {
        out.push_back({pattern_token::kind::star});
      }
    } else if (r.value == '?') {
      out.push_back({pattern_token::kind::any});
    } else if (r.value == '\\') {
      if (i < p.size() && (p[i] == '}' || p[i] == '/')) continue;
      if (i >= p.size() || (p[i] != '*' && p[i] != '?' && p[i] != '\\')) {
        return error(errc::invalid_argument,
                     "invalid pattern " + quote(p) + ": \\ escapes only *, ? and \\");
      }
      out.push_back({pattern_token::kind::literal, static_cast<char32_t>(p[i++])});
    } else {
      out.push_back({pattern_token::kind::literal, r.value});
    }
  }
  return out;
}

struct decoded {
  std::vector<char32_t> runes;
  std::vector<std::size_t> offsets;  // byte offset of each rune, and the size at the end
};

decoded decode(std::string_view s) {
  decoded d;
  for (std::size_t i = 0; i < s.size();) {
    const detail::rune r = detail::decode_rune(s, i);
    d.runes.push_back(r.value);
    d.offsets.push_back(i);
    i += r.length;
  }
  d.offsets.push_back(s.size());
  return d;
}

constexpr std::size_t kNoMatch = static_cast<std::size_t>(-1);

// For every start position, the end of the match a backtracking regular expression engine finds
// first (Go's leftmost-first semantics: greedy stars try the longest run first, lazy ones the
// shortest), or kNoMatch. Computed from the last token back, in O(tokens × length).
std::vector<std::size_t> first_match_ends(const std::vector<pattern_token>& tokens,
                                          const std::vector<char32_t>& s, bool greedy) {
  const std::size_t n = s.size();
  std::vector<std::size_t> next(n + 1);
  for (std::size_t pos = 0; pos <= n; ++pos)
    next[pos] = pos;
  std::vector<std::size_t> cur(n + 1);
  for (std::size_t t = tokens.size(); t-- > 0;) {
    const pattern_token& tok = tokens[t];
    if (tok.type == pattern_token::kind::star) {
      // A star consumes up to the next newline; over one such segment the candidate end
      // positions are the same, so one downward scan per segment finds the longest (greedy) or
      // shortest (lazy) continuation that matches.
      std::size_t best = kNoMatch;
      for (std::size_t pos = n + 1; pos-- > 0;) {
        if (pos < n && s[pos] == '\n') best = kNoMatch;  // the star cannot cross it
        if (next[pos] != kNoMatch && (!greedy || best == kNoMatch)) best = pos;
        cur[pos] = best == kNoMatch ? kNoMatch : next[best];
      }
    } else {
      for (std::size_t pos = 0; pos <= n; ++pos) {
        const bool ok =
            pos < n && (tok.type == pattern_token::kind::any ? s[pos] != '\n' : s[pos] == tok.ch);
        cur[pos] = ok ? next[pos + 1] : kNoMatch;
      }
    }
    std::swap(cur, next);
  }
  return next;
}

// Matching costs tokens × characters; past this a pattern and a value are refused (real ones
// are a few characters against a path or a version).
constexpr std::size_t kMaxPatternWork = std::size_t{1} << 24;

result<void> check_work(const std::vector<pattern_token>& tokens, const decoded& d) {
  if (tokens.size() * (d.runes.size() + 1) > kMaxPatternWork) {
    return error(errc::invalid_argument, "the pattern and the value are too long to match");
  }
  return {};
}

// ${NAME#pattern} and ${NAME%pattern}.
result<std::string> trim_pattern(std::string_view value, std::string_view pattern, bool greedy,
                                 bool suffix) {
  auto tokens = compile_pattern(pattern);
  if (!tokens) return tokens.error();
  decoded d = decode(value);
  if (auto w = check_work(*tokens, d); !w) return w.error();
  const std::size_t n = d.runes.size();
  if (suffix) {
    // Docker reverses both the value and the pattern and removes a prefix.
    std::reverse(d.runes.begin(), d.runes.end());
    std::reverse(tokens->begin(), tokens->end());
  }
  const std::size_t end = first_match_ends(*tokens, d.runes, greedy)[0];
  if (end == kNoMatch) return std::string(value);
  if (suffix) return std::string(value.substr(0, d.offsets[n - end]));
  return std::string(value.substr(d.offsets[end]));
}

// ${NAME/pattern/text} and ${NAME//pattern/text}, as Go's regexp ReplaceAllString replaces
// (an empty match right after a match is not replaced).
result<std::string> replace_pattern(std::string_view value, std::string_view pattern,
                                    std::string_view replacement, bool all) {
  auto tokens = compile_pattern(pattern);
  if (!tokens) return tokens.error();
  const decoded d = decode(value);
  if (auto w = check_work(*tokens, d); !w) return w.error();
  const std::size_t n = d.runes.size();
  const std::vector<std::size_t> ends = first_match_ends(*tokens, d.runes, true);
  auto slice = [&](std::size_t from, std::size_t to) {
    return value.substr(d.offsets[from], d.offsets[to] - d.offsets[from]);
  };
  std::string out;
  std::size_t last_end = 0;
  std::size_t search = 0;
  while (search <= n) {
    std::size_t start = search;
    while (start <= n && ends[start] == kNoMatch)
      ++start;
    if (start > n) break;
    const std::size_t end = ends[start];
    out += slice(last_end, start);
    if (end > last_end || start == 0) out += replacement;
    last_end = end;
    if (!all) break;
    search = search + 1 > end ? search + 1 : end;
  }
  out += slice(last_end, n);
  return out;
}

// ---- the shell-word lexer -----------------------------------------------------------------------

// Docker's word splitting: characters from the word split at white space, text from quotes and
// escapes never does, text from variables does.
struct word_builder {
  std::vector<std::string> words;
  std::string buf;
  bool in_word = false;

  void add_char(char c) {
    if (is_space(c)) {
      if (in_word && !buf.empty()) {
        words.push_back(std::move(buf));
        buf.clear();
        in_word = false;
      }
    } else {
      add_raw_char(c);
    }
  }
  void add_raw_char(char c) {
    buf += c;
    in_word = true;
  }
  void add_string(std::string_view s) {
    for (char c : s)
      add_char(c);
  }
  void add_raw_string(std::string_view s) {
    buf += s;
    in_word = true;
  }
  std::vector<std::string> finish() {
    if (!buf.empty()) words.push_back(std::move(buf));
    buf.clear();
    return std::move(words);
  }
};

bool is_special_parameter(char c) noexcept {
  return c == '@' || c == '*' || c == '#' || c == '?' || c == '-' || c == '$' || c == '!' ||
         c == '0';
}

// A result longer than this is an error: no process can take a longer argument or environment
// variable (Linux's MAX_ARG_STRLEN), and without a bound `ENV A=$A$A`, repeated, would double
// its way through memory.
constexpr std::size_t kMaxResult = 128 * 1024;

// ${…} inside ${…} this deep is an error: the lexer recurses, and a hostile file must not
// exhaust the stack.
constexpr int kMaxNesting = 32;

class lexer {
 public:
  lexer(std::string_view src, const variable_lookup& lookup, char escape)
      : src_(src), lookup_(lookup), escape_(escape) {}

  result<expansion> run() {
    word_builder words;
    auto text = process(-1, false, &words);
    if (!text) return text.error();
    expansion out;
    out.text = std::move(*text);
    out.words = words.finish();
    out.used.assign(used_.begin(), used_.end());
    return out;
  }

 private:
  bool at_end() const noexcept { return pos_ >= src_.size(); }
  char peek() const noexcept { return src_[pos_]; }

  error fail(const std::string& why) const {
    return error(errc::invalid_argument, "cannot substitute in " + quote(src_) + ": " + why);
  }

  const std::string* get(const std::string& name) {
    const std::string* v = lookup_ ? lookup_(name) : nullptr;
    if (v != nullptr) used_.insert(name);
    return v;
  }

  // Processes up to `stop` (consumed) or the end; `words` is null inside ${…}.
  result<std::string> process(int stop, bool raw_escapes, word_builder* words) {
    std::string out;
    while (!at_end()) {
      if (out.size() > kMaxResult) return fail("the result is longer than 128 KiB");
      const char c = peek();
      if (stop >= 0 && c == static_cast<char>(stop)) {
        ++pos_;
        return out;
      }
      if (c == '$') {
        auto v = dollar();
        if (!v) return v.error();
        out += *v;
        if (words != nullptr) words->add_string(*v);
      } else if (c == '\'' || c == '"' || c == '<') {
        auto v = c == '\'' ? single_quote() : c == '"' ? double_quote(raw_escapes) : angle();
        if (!v) return v.error();
        out += *v;
        if (words != nullptr) words->add_raw_string(*v);
      } else {
        ++pos_;
        char ch = c;
        if (ch == escape_) {
          if (raw_escapes) {
            if (words != nullptr) words->add_raw_char(ch);
            out += ch;
          }
          if (at_end()) break;  // an escape character at the end is dropped
          ch = src_[pos_++];
          if (words != nullptr) words->add_raw_char(ch);
        } else if (words != nullptr) {
          words->add_char(ch);
        }
        out += ch;
      }
    }
    if (stop >= 0) {
      return fail(std::string("unexpected end while looking for the matching ") +
                  static_cast<char>(stop));
    }
    if (out.size() > kMaxResult) return fail("the result is longer than 128 KiB");
    return out;
  }

  result<std::string> single_quote() {
    ++pos_;
    const std::size_t close = src_.find('\'', pos_);
    if (close == std::string_view::npos) return fail("a single quote is not closed");
    std::string out(src_.substr(pos_, close - pos_));
    pos_ = close + 1;
    return out;
  }

  result<std::string> double_quote(bool raw_escapes) {
    ++pos_;
    std::string out;
    while (true) {
      if (at_end()) return fail("a double quote is not closed");
      const char c = peek();
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '$') {
        auto v = dollar();
        if (!v) return v.error();
        out += *v;
        continue;
      }
      char ch = src_[pos_++];
      if (ch == escape_) {
        if (raw_escapes) out += ch;
        if (at_end()) continue;
        const char next = peek();
        if (next == '"' || next == '$' || next == escape_) ch = src_[pos_++];
      }
      out += ch;
    }
  }

  // "<" or "<<" with the white space after it, kept together (docker's heredoc handling; it
  // changes only how words split).
  result<std::string> angle() {
    ++pos_;
    if (at_end() || peek() != '<') return std::string("<");
    ++pos_;
    std::string out = "<<";
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\r'))
      out += src_[pos_++];
    return out;
  }

  std::string name() {
    std::string out;
    if (at_end()) return out;
    if (is_digit(peek())) {
      while (!at_end() && is_digit(peek()))
        out += src_[pos_++];
      return out;
    }
    if (is_special_parameter(peek())) return std::string(1, src_[pos_++]);
    while (!at_end() && (detail::is_alpha(peek()) || is_digit(peek()) || peek() == '_'))
      out += src_[pos_++];
    return out;
  }

  result<std::string> dollar() {
    if (depth_ >= kMaxNesting) return fail("${…} nested more than 32 deep");
    ++depth_;
    auto v = dollar_body();
    --depth_;
    return v;
  }

  result<std::string> dollar_body() {
    ++pos_;
    if (at_end() || peek() != '{') {
      const std::string n = name();
      if (n.empty()) return std::string("$");
      const std::string* v = get(n);
      return v != nullptr ? *v : std::string();
    }
    ++pos_;
    if (at_end()) return fail("missing '}'");
    if (peek() == '{' || peek() == '}' || peek() == ':') return fail("bad substitution");
    const std::string n = name();
    if (at_end()) return fail("missing '}'");
    char op = src_[pos_++];
    std::string ops(1, op);
    if (op == '}') {
      const std::string* v = get(n);
      return v != nullptr ? *v : std::string();
    }
    if (op == '/') return replace(n);
    bool null_is_unset = false;
    if (op == ':') {
      null_is_unset = true;
      if (at_end()) return fail("missing '}'");
      op = src_[pos_++];
      ops += op;
    } else if (op != '+' && op != '-' && op != '?' && op != '#' && op != '%') {
      return fail("unsupported modifier (" + ops + ")");
    }
    const bool pattern = op == '#' || op == '%';
    if (null_is_unset && pattern) return fail("unsupported modifier (" + ops + ")");
    auto word = process('}', pattern, nullptr);
    if (!word) {
      if (at_end()) return fail("missing '}'");
      return word.error();
    }
    const std::string* v = get(n);
    const bool set = v != nullptr;
    const bool empty = !set || v->empty();
    switch (op) {
      case '-':
        return (!set || (null_is_unset && empty)) ? *word : *v;
      case '+':
        return (!set || (null_is_unset && empty)) ? std::string() : *word;
      case '?':
        if (!set) {
          return fail(n + ": " + (word->empty() ? "is not allowed to be unset" : *word));
        }
        if (null_is_unset && empty) {
          return fail(n + ": " + (word->empty() ? "is not allowed to be empty" : *word));
        }
        return *v;
      case '#':
      case '%': {
        std::string_view p = *word;
        const bool greedy = p.starts_with(op);
        if (greedy) p.remove_prefix(1);
        auto r =
            trim_pattern(set ? std::string_view(*v) : std::string_view(), p, greedy, op == '%');
        if (!r) return fail(r.error().message);
        return r;
      }
      default:
        return fail("unsupported modifier (" + ops + ")");
    }
  }

  result<std::string> replace(const std::string& n) {
    const bool all = !at_end() && peek() == '/';
    if (all) ++pos_;
    auto pattern = process('/', true, nullptr);
    if (!pattern) {
      if (at_end()) return fail("missing '/' in ${…/…/…}");
      return pattern.error();
    }
    auto replacement = process('}', true, nullptr);
    if (!replacement) {
      if (at_end()) return fail("missing '}'");
      return replacement.error();
    }
    const std::string* v = get(n);
    auto r = replace_pattern(v != nullptr ? std::string_view(*v) : std::string_view(), *pattern,
                             *replacement, all);
    if (!r) return fail(r.error().message);
    return r;
  }

  std::string_view src_;
  const variable_lookup& lookup_;
  char escape_;
  std::size_t pos_ = 0;
  std::set<std::string> used_;
  int depth_ = 0;
};

}  // namespace

result<expansion> expand(std::string_view word, const variable_lookup& lookup, char escape) {
  return lexer(word, lookup, escape).run();
}

}  // namespace pantry::orchestrator::builder
