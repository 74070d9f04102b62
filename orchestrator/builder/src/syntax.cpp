#include "syntax.h"

#include "lexical.h"
#include "pantry/text.h"

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <map>
#include <utility>

namespace pantry::orchestrator::builder::detail {
namespace {

// RE2's \s, which docker's directive pattern uses: no \v.
bool is_re2_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

// Parser directives: `# key=value` lines before anything else. Once a line is not one, no later
// line is.
class directive_parser {
 public:
  // Feeds the next line (already without its line end and leading white space). Sets `escape`
  // on a valid `# escape=`; returns true iff the line was a known directive.
  result<bool> feed(std::string_view line, std::size_t line_number, char& escape,
                    const reporter& report) {
    if (done_) return false;
    if (line.empty() || line.front() != '#') {
      done_ = true;
      return false;
    }
    line = trim_left(line.substr(1));
    std::size_t i = 0;
    if (i >= line.size() || !detail::is_alpha(line[i])) return stop();
    while (i < line.size() && (detail::is_alpha(line[i]) || is_digit(line[i])))
      ++i;
    const std::string key = ascii_lower(line.substr(0, i));
    while (i < line.size() && is_re2_space(line[i]))
      ++i;
    if (i >= line.size() || line[i] != '=') return stop();
    ++i;
    const std::size_t after_equals = i;
    while (i < line.size() && is_re2_space(line[i]))
      ++i;
    std::string_view value = line.substr(i);
    while (!value.empty() && is_re2_space(value.back()))
      value.remove_suffix(1);
    if (value.empty()) {
      // `key=` followed by white space only: docker's pattern `\s*=\s*(.+?)\s*$` then takes the
      // last white space character as the value.
      if (after_equals == line.size()) return stop();
      value = line.substr(line.size() - 1);
    }
    if (key != "syntax" && key != "escape" && key != "check") return stop();
    if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) {
      return report.at(line_number, "",
                       "only one " + key + " parser directive can be used; remove this one");
    }
    seen_.push_back(key);
    if (key == "escape") {
      if (value != "\\" && value != "`") {
        return report.at(line_number, "",
                         "invalid escape directive " + quote(value) +
                             ": the escape character is \\ or ` (e.g. # escape=`)");
      }
      escape = value.front();
    }
    return true;
  }

 private:
  bool stop() {
    done_ = true;
    return false;
  }

  bool done_ = false;
  std::vector<std::string> seen_;
};

bool is_comment(std::string_view line) noexcept {
  line = trim_left(line);
  return !line.empty() && line.front() == '#';
}

std::string_view trim_line_end(std::string_view line) noexcept {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
    line.remove_suffix(1);
  return line;
}

// Docker's continuation rule: the escape character as the last character before optional spaces
// and tabs, not itself preceded by the escape character (`foo \\` is not continued), or alone on
// its line. Returns the line without it (and without what follows it) and whether the
// instruction ends here.
std::pair<std::string_view, bool> trim_continuation(std::string_view line, char escape) noexcept {
  std::size_t end = line.size();
  while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t'))
    --end;
  if (end == 0 || line[end - 1] != escape) return {line, true};
  if (end == 1) return {std::string_view(), false};
  if (line[end - 2] == escape) return {line, true};
  return {line.substr(0, end - 1), false};
}

// Docker's flag extraction: leading words that start with "--", up to a word that does not or
// a bare "--". Quotes group, the escape character takes the next byte literally.
std::pair<std::string_view, std::vector<std::string>> extract_flags(std::string_view line,
                                                                    char escape) {
  enum { in_spaces, in_word, in_quote } phase = in_spaces;
  std::vector<std::string> words;
  std::string word;
  char quote_char = 0;
  bool blank_ok = false;
  for (std::size_t pos = 0; pos <= line.size(); ++pos) {
    const char ch = pos < line.size() ? line[pos] : '\0';
    if (phase == in_spaces) {
      if (pos == line.size()) break;
      if (is_space(ch)) continue;
      if (ch != '-' || pos + 1 == line.size() || line[pos + 1] != '-') {
        return {line.substr(pos), words};
      }
      phase = in_word;
    }
    if (pos == line.size()) {
      if (word != "--" && (blank_ok || !word.empty())) words.push_back(word);
      break;
    }
    if (phase == in_word) {
      if (is_space(ch)) {
        phase = in_spaces;
        if (word == "--") return {line.substr(pos), words};
        if (blank_ok || !word.empty()) words.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote_char = ch;
        blank_ok = true;
        phase = in_quote;
        continue;
      }
      if (ch == escape) {
        if (pos + 1 == line.size()) continue;
        ++pos;
      }
      word += line[pos];
      continue;
    }
    // in_quote
    if (ch == quote_char) {
      phase = in_word;
      continue;
    }
    if (ch == escape) {
      if (pos + 1 == line.size()) {
        phase = in_word;
        continue;
      }
      ++pos;
    }
    word += line[pos];
  }
  return {std::string_view(), words};
}

// True iff `word` is a heredoc opener as docker recognizes one: ^(\d*)<<(-?)\s*([^<]*)$ with a
// non-empty name.
bool is_heredoc_word(std::string_view word) {
  std::size_t i = 0;
  while (i < word.size() && is_digit(word[i]))
    ++i;
  if (word.substr(i, 2) != "<<") return false;
  i += 2;
  if (i < word.size() && word[i] == '-') ++i;
  while (i < word.size() && is_re2_space(word[i]))
    ++i;
  const std::string_view name = word.substr(i);
  if (name.empty() || name.find('<') != std::string_view::npos) return false;
  return std::any_of(name.begin(), name.end(), [](char c) { return c != '\'' && c != '"'; });
}

}  // namespace

result<read_result> read_lines(std::string_view text, const reporter& report) {
  read_result out;
  directive_parser directives;
  std::vector<std::string_view> physical;
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      physical.push_back(text.substr(start));
      break;
    }
    physical.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  std::size_t next = 0;
  std::size_t line_number = 0;
  while (next < physical.size()) {
    std::string_view raw = physical[next++];
    if (line_number == 0 && raw.starts_with("\xEF\xBB\xBF")) raw.remove_prefix(3);
    std::string_view token = trim_left(trim_line_end(raw));
    ++line_number;
    auto directive = directives.feed(token, line_number, out.escape, report);
    if (!directive) return directive.error();
    if (is_comment(token)) token = {};
    const std::size_t start_line = line_number;
    auto [first, end] = trim_continuation(token, out.escape);
    if (end && first.empty()) continue;
    std::string joined(first);
    while (!end && next < physical.size()) {
      std::string_view cont = physical[next++];
      token = trim_line_end(cont);
      ++line_number;
      auto d = directives.feed(token, line_number, out.escape, report);
      if (!d) return d.error();
      if (is_comment(cont)) continue;
      if (trim_left(token).empty()) continue;  // an empty continuation line
      auto [part, part_end] = trim_continuation(token, out.escape);
      joined += part;
      end = part_end;
    }
    out.lines.push_back({start_line, std::move(joined)});
  }
  return out;
}

split_line split_command(std::string_view line, char escape) {
  split_line out;
  line = trim(line);
  std::size_t k = 0;
  while (k < line.size() && !is_space(line[k]))
    ++k;
  out.keyword = std::string(line.substr(0, k));
  auto rest = line.substr(k);
  // Docker splits the keyword off on [\t\v\f\r ]+; no \n is left in a joined line.
  auto [args, flags] = extract_flags(rest, escape);
  out.flags = std::move(flags);
  out.args = std::string(trim(args));
  return out;
}

// Docker's word splitting for ENV, LABEL and ARG: white space separates words outside quotes;
// quotes and escapes are kept (substitution removes them later); an escape character at the very
// end is dropped.
std::vector<std::string> parse_words(std::string_view rest, char escape) {
  enum { in_spaces, in_word, in_quote } phase = in_spaces;
  std::vector<std::string> words;
  std::string word;
  char quote_char = 0;
  bool blank_ok = false;
  for (std::size_t pos = 0; pos <= rest.size(); ++pos) {
    char ch = pos < rest.size() ? rest[pos] : '\0';
    if (phase == in_spaces) {
      if (pos == rest.size()) break;
      if (is_space(ch)) continue;
      phase = in_word;
    }
    if (pos == rest.size()) {
      if (blank_ok || !word.empty()) words.push_back(word);
      break;
    }
    if (phase == in_word) {
      if (is_space(ch)) {
        phase = in_spaces;
        if (blank_ok || !word.empty()) words.push_back(word);
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote_char = ch;
        blank_ok = true;
        phase = in_quote;
      }
      if (ch == escape) {
        if (pos + 1 == rest.size()) continue;
        word += ch;
        ch = rest[++pos];
      }
      word += ch;
      continue;
    }
    // in_quote
    if (ch == quote_char) phase = in_word;
    if (ch == escape && quote_char != '\'') {
      if (pos + 1 == rest.size()) {
        phase = in_word;
        continue;
      }
      word += ch;
      ch = rest[++pos];
    }
    word += ch;
  }
  return words;
}

// Splits on runs of [\t\v\f\r ] (docker's parseStringsWhitespaceDelimited): no quote handling.
std::vector<std::string> split_whitespace(std::string_view rest) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && is_space(rest[i]))
      ++i;
    if (i == rest.size()) break;
    std::size_t j = i;
    while (j < rest.size() && !is_space(rest[j]))
      ++j;
    out.emplace_back(rest.substr(i, j - i));
    i = j;
  }
  return out;
}

json_form parse_json_form(std::string_view rest) {
  json_form out;
  rest = trim_left(rest);
  if (!rest.starts_with('[')) return out;
  boost::json::parse_options options;
  // Go's decoder takes strings that are not UTF-8 and replaces the bad bytes with U+FFFD.
  options.allow_invalid_utf8 = true;
  // Go stops at 10000 levels; Boost's default of 32 would make deep but valid JSON "invalid",
  // which turns an error into the shell form.
  options.max_depth = 10000;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(rest, ec, {}, options);
  if (ec || !v.is_array()) return out;
  for (const auto& item : v.as_array()) {
    if (!item.is_string()) {
      out.kind = json_form::outcome::not_strings;
      out.args.clear();
      return out;
    }
    const auto& s = item.get_string();
    out.args.push_back(detail::coerce_utf8(std::string_view(s.data(), s.size())));
  }
  out.kind = json_form::outcome::strings;
  return out;
}

// Whether an instruction line opens a heredoc. The words are split as docker splits them for this
// check: quotes and escapes kept, "<<" and the spaces after it part of the word.
bool has_heredoc(std::string_view line) {
  if (line.find("<<") == std::string_view::npos) return false;
  std::vector<std::string> words;
  std::string word;
  for (std::size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (c == '\\') {
      word.append(line.substr(i, 2));
      i += 2;
    } else if (c == '\'' || c == '"') {
      std::size_t j = i + 1;
      while (j < line.size() && line[j] != c) {
        if (c == '"' && line[j] == '\\') ++j;
        ++j;
      }
      if (j >= line.size()) return false;  // unbalanced: docker finds no words, so no heredoc
      word.append(line.substr(i, j + 1 - i));
      i = j + 1;
    } else if (c == '<' && i + 1 < line.size() && line[i + 1] == '<') {
      word += "<<";
      i += 2;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        word += line[i++];
    } else if (is_space(c)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
      ++i;
    } else {
      word += c;
      ++i;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return std::any_of(words.begin(), words.end(), is_heredoc_word);
}

// Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with units ns, us, µs, ms, s, m, h.
std::optional<std::int64_t> parse_go_duration(std::string_view s) {
  constexpr std::uint64_t kLimit = std::uint64_t{1} << 63;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return std::nullopt;
  static const std::map<std::string_view, std::uint64_t> kUnits = {
      {"ns", 1},           {"us", 1000},      {"\xC2\xB5s", 1000},  // U+00B5 micro sign
      {"\xCE\xBCs", 1000},                                          // U+03BC Greek mu
      {"ms", 1000000},     {"s", 1000000000}, {"m", 60000000000},  {"h", 3600000000000},
  };
  std::uint64_t total = 0;
  while (!s.empty()) {
    if (!(s[0] == '.' || is_digit(s[0]))) return std::nullopt;
    std::uint64_t v = 0;
    std::size_t i = 0;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      if (v > (kLimit - 1) / 10) return std::nullopt;
      v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
      if (v > kLimit) return std::nullopt;
    }
    const bool pre = i > 0;
    s.remove_prefix(i);
    std::uint64_t frac = 0;
    double scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      std::size_t j = 0;
      bool overflow = false;
      for (; j < s.size() && is_digit(s[j]); ++j) {
        if (overflow) continue;
        if (frac > (kLimit - 1) / 10) {
          overflow = true;
          continue;
        }
        const std::uint64_t y = frac * 10 + static_cast<std::uint64_t>(s[j] - '0');
        if (y > kLimit) {
          overflow = true;
          continue;
        }
        frac = y;
        scale *= 10;
      }
      post = j > 0;
      s.remove_prefix(j);
    }
    if (!pre && !post) return std::nullopt;
    std::size_t u = 0;
    while (u < s.size() && s[u] != '.' && !is_digit(s[u]))
      ++u;
    if (u == 0) return std::nullopt;
    const auto unit = kUnits.find(s.substr(0, u));
    if (unit == kUnits.end()) return std::nullopt;
    s.remove_prefix(u);
    if (v > kLimit / unit->second) return std::nullopt;
    v *= unit->second;
    if (frac > 0) {
      v += static_cast<std::uint64_t>(static_cast<double>(frac) *
                                      (static_cast<double>(unit->second) / scale));
      if (v > kLimit) return std::nullopt;
    }
    total += v;
    if (total > kLimit) return std::nullopt;
  }
  if (neg)
    return total == kLimit ? std::numeric_limits<std::int64_t>::min()
                           : -static_cast<std::int64_t>(total);
  if (total > kLimit - 1) return std::nullopt;
  return static_cast<std::int64_t>(total);
}

}  // namespace pantry::orchestrator::builder::detail
