#include "pantry/registry/pypi/requirements_syntax.h"

#include "pantry/text.h"

#include <algorithm>
#include <array>
#include <optional>

namespace pantry::registry::pypi {
namespace {

struct option_spec {
  std::string_view name;  // "--long" or "-x"
  line_option_kind kind;
  bool takes_value;
};

constexpr std::array<option_spec, 24> kOptions = {{
    {"-r", line_option_kind::requirement, true},
    {"--requirement", line_option_kind::requirement, true},
    {"-c", line_option_kind::constraint, true},
    {"--constraint", line_option_kind::constraint, true},
    {"-e", line_option_kind::editable, true},
    {"--editable", line_option_kind::editable, true},
    {"--hash", line_option_kind::hash, true},
    {"--global-option", line_option_kind::per_requirement, true},
    {"--install-option", line_option_kind::per_requirement, true},
    {"--config-settings", line_option_kind::per_requirement, true},
    {"-C", line_option_kind::per_requirement, true},
    {"-i", line_option_kind::index, true},
    {"--index-url", line_option_kind::index, true},
    {"--extra-index-url", line_option_kind::index, true},
    {"-f", line_option_kind::index, true},
    {"--find-links", line_option_kind::index, true},
    {"--no-index", line_option_kind::index, false},
    {"--trusted-host", line_option_kind::other_value, true},
    {"--no-binary", line_option_kind::other_value, true},
    {"--only-binary", line_option_kind::other_value, true},
    {"--use-feature", line_option_kind::other_value, true},
    {"--pre", line_option_kind::flag, false},
    {"--prefer-binary", line_option_kind::flag, false},
    {"--require-hashes", line_option_kind::flag, false},
}};

bool is_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

result<std::vector<line_option>> parse_options(const std::vector<std::string>& words) {
  std::vector<line_option> out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    const option_spec* spec = nullptr;
    std::optional<std::string> value;
    for (const auto& s : kOptions) {
      if (w == s.name) {
        spec = &s;
      } else if (s.name.starts_with("--") && w.starts_with(s.name) && w.size() > s.name.size() &&
                 w[s.name.size()] == '=') {
        spec = &s;
        value = w.substr(s.name.size() + 1);
      } else if (!s.name.starts_with("--") && w.starts_with(s.name) && w.size() > 2) {
        spec = &s;  // "-rfile.txt"
        value = w.substr(2);
      }
      if (spec != nullptr) break;
    }
    if (spec == nullptr) {
      return error(errc::invalid_argument, w.starts_with("-")
                                               ? "unknown option " + w
                                               : "unexpected \"" + w + "\" among the options");
    }
    if (!spec->takes_value && value) {
      return error(errc::invalid_argument, std::string(spec->name) + " takes no value");
    }
    if (spec->takes_value && !value) {
      if (i + 1 >= words.size()) {
        return error(errc::invalid_argument, std::string(spec->name) + " needs a value");
      }
      value = words[++i];
    }
    out.push_back(line_option{spec->kind, std::string(spec->name), value.value_or("")});
  }
  return out;
}

}  // namespace

std::size_t requirements_comment_start(std::string_view line) noexcept {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || is_ascii_space(line[i - 1]))) return i;
  }
  return std::string_view::npos;
}

std::vector<requirements_line> split_requirements_lines(std::string_view text) {
  std::vector<requirements_line> out;
  std::optional<requirements_line> pending;
  std::size_t number = 0;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t nl = text.find('\n', start);
    const std::size_t line_begin = start;
    const std::size_t line_end = nl == std::string_view::npos ? text.size() : nl + 1;
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    start = line_end;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool continues = !line.empty() && line.back() == '\\' &&
                           requirements_comment_start(line) == std::string_view::npos;
    if (!pending) pending = requirements_line{number, number, line_begin, line_end, {}};
    pending->last_number = number;
    pending->end = line_end;
    if (continues) {
      while (!line.empty() && line.back() == '\\')
        line.remove_suffix(1);
      pending->text += line;
      continue;
    }
    pending->text += line;
    out.push_back(std::move(*pending));
    pending.reset();
  }
  if (pending) out.push_back(std::move(*pending));
  return out;
}

std::vector<std::string> requirements_shell_words(std::string_view s) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (char c : s) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        word += c;
      }
      continue;
    }
    if (is_ascii_space(c)) {
      if (in_word) out.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '"' || c == '\'') {
      quote = c;
    } else {
      word += c;
    }
  }
  if (in_word) out.push_back(std::move(word));
  return out;
}

result<line_parts> split_requirements_line(std::string_view text) {
  std::string_view s = text;
  if (const std::size_t c = requirements_comment_start(s); c != std::string_view::npos) {
    s = s.substr(0, c);
  }
  s = trim_ascii_space(s);
  // As pip: the requirement is every word before the first that starts with '-'.
  std::size_t options_at = s.size();
  for (std::size_t i = 0; i < s.size();) {
    while (i < s.size() && is_ascii_space(s[i]))
      ++i;
    if (i < s.size() && s[i] == '-') {
      options_at = i;
      break;
    }
    while (i < s.size() && !is_ascii_space(s[i]))
      ++i;
  }
  line_parts parts;
  parts.requirement = std::string(trim_ascii_space(s.substr(0, options_at)));
  auto options = parse_options(requirements_shell_words(s.substr(options_at)));
  if (!options) return options.error();
  parts.options = std::move(*options);
  return parts;
}

result<std::pair<std::string, std::string>> parse_hash_option(std::string_view value) {
  static constexpr std::array<std::pair<std::string_view, std::size_t>, 3> kAlgorithms = {{
      {"sha256", 64},
      {"sha384", 96},
      {"sha512", 128},
  }};
  const std::size_t colon = value.find(':');
  if (colon != std::string_view::npos) {
    const std::string algorithm = ascii_lower(value.substr(0, colon));
    const std::string_view hex = value.substr(colon + 1);
    for (const auto& [name, length] : kAlgorithms) {
      if (algorithm == name && hex.size() == length && is_hex(hex)) {
        return std::pair(algorithm, ascii_lower(hex));
      }
    }
  }
  return error(errc::invalid_argument,
               "--hash=" + std::string(value) +
                   ": expected sha256:<64 hex digits> (or sha384:<96>, sha512:<128>)");
}

bool names_url_or_path(std::string_view requirement) noexcept {
  return requirement.find("://") != std::string_view::npos || requirement.starts_with(".") ||
         requirement.starts_with("/") || requirement.starts_with("~") ||
         requirement.find('\\') != std::string_view::npos;
}

}  // namespace pantry::registry::pypi
