#pragma once

// A pip requirements file as a document the pin bot reads and edits: every byte is kept
// (comments, blank lines, option lines such as --index-url, -r/-c includes, continuation lines,
// --hash options, pip-compile's `# via` comments, CRLF line ends), each requirement is known with
// its name, extras, specifiers, marker, hashes and the exact byte range of its logical line(s),
// and an edit rewrites only the lines it changes: render() after an edit is the old text with
// one byte range replaced.
//
// Pure code: the caller reads and writes the file; an included file (-r, -c) is listed, not
// read, so the caller opens it as a document of its own. A document is a value: copy it to keep
// the text before an edit. Not thread-safe for concurrent edits of one document.
//
// The line syntax is registry/pypi's (requirements_syntax.h), the requirements PEP 508's
// (markers.h) and the versions PEP 440's (pep440.h): one reader of each format in pantry.

#include "pantry/error.h"
#include "pantry/registry/pypi/markers.h"
#include "pantry/registry/pypi/pep440.h"
#include "pantry/registry/pypi/requirements_syntax.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::pins {

// One requirement line (logical line) of the document.
struct requirement_entry {
  std::string name;          // PEP 503 normalized ("typing-extensions")
  std::string written_name;  // as written ("typing_extensions")
  registry::pypi::requirement
      parsed;                    // name, extras, specifiers, URL, marker as PEP 508 reads them
  std::string requirement_text;  // the requirement part of the line as written, trimmed
  // The --hash options in written order, each "ALGO:HEX" with the hex lowercased.
  std::vector<std::string> hashes;
  // Other options of the line (--config-settings, ...), each "NAME=VALUE" ("NAME" for a flag).
  std::vector<std::string> other_options;
  // The line's own trailing comment with the white space before it ("  # via x, y"), or "".
  std::string comment;
  // The `# via` names that pip-compile wrote for this requirement: on the comment lines right
  // after it ("    # via requests", or "    # via" then "    #   -r requirements.in" lines) or
  // as its own trailing comment ("  # via x, y"); as written, in order.
  std::vector<std::string> via;
  std::size_t line = 0;   // 1-based number of its first physical line
  std::size_t begin = 0;  // byte range of its logical line(s) in text(), the last '\n' included
  std::size_t end = 0;
  // Where the `# via` comment lines after it end (== end when there are none): the requirement
  // and its annotation are bytes [begin, via_end).
  std::size_t via_end = 0;

  // The version when the requirement is exactly one `==V` clause without a wildcard (or one
  // `===V` clause): the version as written after the operator. nullopt for ranges and URLs.
  std::optional<std::string> pinned_version() const;
};

// An option line of the document (-r, -c, -e, --index-url, ...), one entry per option.
struct option_entry {
  registry::pypi::line_option_kind kind;
  std::string name;   // as the option table spells it ("--index-url", "-r")
  std::string value;  // "" for a flag
  std::size_t line = 0;
  std::size_t begin = 0;  // byte range of the whole logical line
  std::size_t end = 0;
};

class requirements_file {
 public:
  // Reads `text` (the file `path`, used only in messages). Errors (invalid_argument): one per
  // malformed line, each "PATH:LINE: what is wrong", joined by newlines in the one error: an
  // unknown option or one without its value, a requirement that is not PEP 508 and not a URL or
  // path, a malformed --hash, --hash without a requirement, -r/-c/-e after a requirement.
  // Lines pip reads as URLs or paths ("./dir", "git+https://...") are kept as they are and
  // listed in unnamed_lines().
  static result<requirements_file> parse(std::string text, std::string path);

  const std::string& path() const noexcept { return path_; }
  // The document's bytes: the text it was read from, with the edits made since.
  const std::string& render() const noexcept { return text_; }

  // Every requirement, in file order.
  const std::vector<requirement_entry>& requirements() const noexcept { return requirements_; }
  // Every option of an option line, in file order.
  const std::vector<option_entry>& options() const noexcept { return options_; }
  // The 1-based numbers of the lines kept as URLs or paths.
  const std::vector<std::size_t>& unnamed_lines() const noexcept { return unnamed_lines_; }

  // The requirements named `name` (any spelling; compared PEP 503 normalized), in file order.
  // A file may hold a name more than once (with different markers).
  std::vector<const requirement_entry*> find(std::string_view name) const;

  // Pins the requirement at index `index` of requirements() to `version` with exactly `hashes`
  // ("sha256:HEX", written in the order given; none for a file without hashes), rewriting only
  // its logical line(s), in pip-compile's layout: "NAME==VERSION[ ; MARKER] \" then one
  // "    --hash=ALGO:HEX \" line per hash (the last without the backslash), each indented by the
  // requirement line's own indentation plus four spaces; the requirement as written (extras,
  // marker, its spelling of the name) keeps everything but the version, other options stay on
  // the first line, and a trailing comment stays on the last line. The line end (LF or CRLF) is
  // the requirement's own. Errors (the document is unchanged): an index out of range, a
  // requirement that is not pinned with one == or === clause, a malformed hash.
  result<void> set_pin(std::size_t index, const registry::pypi::version& version,
                       const std::vector<std::string>& hashes);

  // As set_pin(index, ...) for the one requirement named `name`; an error when there is none or
  // more than one (name the one to change by index then).
  result<void> set_pin(std::string_view name, const registry::pypi::version& version,
                       const std::vector<std::string>& hashes);

  // Adds "NAME==VERSION" with `hashes` in the same layout and a "    # via VIA" comment line
  // (pip-compile's, for a requirement that a new release of VIA brings in), placed in
  // alphabetical order of normalized names among the requirements: before the first requirement
  // whose name sorts after `name`, or after the last requirement and its `# via` comment lines.
  // `name` is written as given. Errors (the document is unchanged): an invalid project name, a
  // name already in the file, a malformed hash, an empty `via`.
  result<void> add_pin(std::string_view name, const registry::pypi::version& version,
                       const std::vector<std::string>& hashes, std::string_view via);

 private:
  // Replaces bytes [begin, end) with `replacement` and reads the result again; on a failure to
  // read it back (a bug), the document is left as it was and the error says so.
  result<void> splice(std::size_t begin, std::size_t end, const std::string& replacement);

  std::string path_;
  std::string text_;
  std::vector<requirement_entry> requirements_;
  std::vector<option_entry> options_;
  std::vector<std::size_t> unnamed_lines_;
};

}  // namespace pantry::orchestrator::pins
