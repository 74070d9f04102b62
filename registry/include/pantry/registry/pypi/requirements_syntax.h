#pragma once

// The line syntax of pip requirements files, as pip reads it: logical lines (physical lines
// joined at trailing backslashes, with the byte range they came from), comments, the options of
// a line (read with shell quoting) and --hash values. What a line means is its readers' business:
// `pantry cache warm` (requirements.h) warms the pins; the pin bot's documents
// (orchestrator/pins) keep every byte and edit pins in place.
//
// Pure code: functions from text to values.

#include "pantry/error.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::registry::pypi {

// One logical line: one physical line, or several joined where each but the last ends in a
// backslash.
struct requirements_line {
  std::size_t first_number = 0;  // 1-based number of its first physical line
  std::size_t last_number = 0;   // of its last physical line
  std::size_t begin = 0;         // byte offset of its first physical line in the text
  std::size_t end = 0;           // just past its last line's '\n' (or the end of the text)
  // The joined text: the continuation backslashes and each line's '\r' removed; comments kept.
  std::string text;
};

// Splits `text` into logical lines as pip does: a physical line ending in a backslash continues
// on the next, unless it holds a comment (then the comment ends it). The lines' byte ranges
// cover the text without gaps or overlaps, in order.
std::vector<requirements_line> split_requirements_lines(std::string_view text);

// The position of the comment in `line` as pip finds it ('#' at the start or after white
// space), or npos. A '#' inside a word (a URL's fragment) starts none.
std::size_t requirements_comment_start(std::string_view line) noexcept;

// Splits on white space, honouring single and double quotes as a POSIX shell does (pip reads a
// line's options with shlex).
std::vector<std::string> requirements_shell_words(std::string_view s);

// What an option of a requirements file line is.
enum class line_option_kind {
  requirement,      // -r FILE / --requirement FILE
  constraint,       // -c FILE / --constraint FILE
  editable,         // -e / --editable
  hash,             // --hash ALGO:HEX (on a requirement's line)
  per_requirement,  // --global-option, --install-option, --config-settings, -C (a requirement's)
  index,            // -i, --index-url, --extra-index-url, --no-index, -f, --find-links, ...
  other_value,      // --trusted-host, --no-binary, --only-binary, --use-feature
  flag,             // --pre, --prefer-binary, --require-hashes
};

// One option as read: its kind, its name as the table spells it ("--index-url" for both
// "--index-url=X" and "--index-url X"; "-i" stays "-i") and its value ("" for a flag).
struct line_option {
  line_option_kind kind = line_option_kind::flag;
  std::string name;
  std::string value;
};

// A logical line taken apart: the comment removed, the requirement part (every word before the
// first that starts with '-', as pip has it; "" on an option line or a blank one) and the
// options after it.
struct line_parts {
  std::string requirement;  // trimmed
  std::vector<line_option> options;
};

// Takes a logical line's text apart. Errors (invalid_argument; the message names the option
// and never the file, which the caller adds): an unknown option, a flag given a value, an option
// without its value, a word that is not an option among the options.
result<line_parts> split_requirements_line(std::string_view text);

// A --hash value "ALGO:HEX" -> {algorithm, lowercase hex digest}: sha256 with 64 hex digits,
// sha384 with 96 or sha512 with 128. Errors quote the value and say what a hash looks like.
result<std::pair<std::string, std::string>> parse_hash_option(std::string_view value);

// True iff `requirement` names a URL or a path: it contains "://" (`git+https://...`, and also
// `name @ https://...`), starts with '.', '/' or '~', or holds a backslash. None of these names a
// version on an index.
bool names_url_or_path(std::string_view requirement) noexcept;

}  // namespace pantry::registry::pypi
