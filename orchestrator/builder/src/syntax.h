#pragma once

// Docker's Containerfile syntax below the level of instructions: physical lines to instructions
// (comments, continuations, parser directives), the keyword and flags of an instruction, word
// splitting, the JSON (exec) form, heredoc detection and Go durations. Private to
// pantry_builder; containerfile.cpp builds the typed instructions from these.

#include "pantry/error.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder::detail {

// Builds "FILE:LINE: KEYWORD: message" errors.
class reporter {
 public:
  explicit reporter(std::string_view file) : file_(file) {}

  error at(std::size_t line, std::string_view keyword, const std::string& message) const {
    std::string text = std::string(file_) + ":" + std::to_string(line) + ": ";
    if (!keyword.empty()) text += std::string(keyword) + ": ";
    return error(errc::invalid_argument, text + message);
  }
  error whole(const std::string& message) const {
    return error(errc::invalid_argument, std::string(file_) + ": " + message);
  }
  std::string_view file() const noexcept { return file_; }

 private:
  std::string_view file_;
};

// One instruction as docker's parser joins it from physical lines.
struct logical_line {
  std::size_t line = 0;  // the first physical line, from 1
  std::string text;
};

struct read_result {
  std::vector<logical_line> lines;
  char escape = '\\';  // after the `# escape=` directive, if any
};

// Splits `text` into instructions the way docker's parser does: a byte order mark dropped,
// parser directives read from the first lines, comment and blank lines skipped, continued lines
// joined (comment and empty lines inside skipped), CR before LF dropped. Errors (a bad or repeated
// directive) name FILE:LINE.
result<read_result> read_lines(std::string_view text, const reporter& report);

struct split_line {
  std::string keyword;             // as written
  std::vector<std::string> flags;  // "--name=value" words, quotes and escapes removed
  std::string args;                // the rest, trimmed
};

// An instruction's keyword, its leading --flags (up to a word that is none, or a bare "--"), and
// the rest.
split_line split_command(std::string_view line, char escape);

// Docker's word splitting for ENV, LABEL and ARG: white space separates words outside quotes;
// quotes and escapes are kept (substitution removes them later); an escape character at the very
// end is dropped.
std::vector<std::string> parse_words(std::string_view rest, char escape);

// Splits on runs of white space (docker's parseStringsWhitespaceDelimited): no quote handling.
std::vector<std::string> split_whitespace(std::string_view rest);

// The JSON (exec) form: a JSON array of strings, as Go's encoding/json reads it.
struct json_form {
  enum class outcome {
    not_json,     // not a valid JSON array: the shell form
    strings,      // `args` holds the strings
    not_strings,  // a valid array holding something else: an error, as in docker
  } kind = outcome::not_json;
  std::vector<std::string> args;
};
json_form parse_json_form(std::string_view rest);

// Whether an instruction line (RUN, COPY, ADD in shell form) opens a heredoc, by docker's rule.
bool has_heredoc(std::string_view line);

// Go's time.ParseDuration in nanoseconds: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with units ns, us, µs,
// ms, s, m, h; nullopt when malformed or out of range.
std::optional<std::int64_t> parse_go_duration(std::string_view s);

}  // namespace pantry::orchestrator::builder::detail
