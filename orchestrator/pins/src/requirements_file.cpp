#include "pantry/orchestrator/pins/requirements_file.h"

#include "pantry/registry/pypi/requirements_syntax.h"
#include "pantry/text.h"

#include <algorithm>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace pypi = registry::pypi;

// pip-compile indents a requirement's --hash lines and `# via` lines by four spaces.
constexpr std::string_view kContinuationIndent = "    ";

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += separator;
    out += parts[i];
  }
  return out;
}

// "sha256:HEX" values checked and lowercased, or the first bad one's error.
result<std::vector<std::string>> normalized_hashes(const std::vector<std::string>& hashes) {
  std::vector<std::string> out;
  for (const auto& h : hashes) {
    auto parsed = pypi::parse_hash_option(h);
    if (!parsed) return parsed.error();
    out.push_back(parsed->first + ":" + parsed->second);
  }
  return out;
}

// The line end the document uses: the first line's, LF when it has none.
std::string_view line_end_of(std::string_view text) {
  const std::size_t nl = text.find('\n');
  return nl != std::string_view::npos && nl > 0 && text[nl - 1] == '\r' ? "\r\n" : "\n";
}

// The line end at the end of `bytes` ("\r\n", "\n" or "" for a last line without one).
std::string_view final_line_end(std::string_view bytes) {
  if (bytes.ends_with("\r\n")) return "\r\n";
  if (bytes.ends_with("\n")) return "\n";
  return "";
}

std::string_view leading_space(std::string_view line) {
  std::size_t n = 0;
  while (n < line.size() && (line[n] == ' ' || line[n] == '\t'))
    ++n;
  return line.substr(0, n);
}

// The names of a `via` comment body: "via a, b" -> {a, b}; "via" alone -> {} and opens a block.
std::vector<std::string> via_names(std::string_view after_via) {
  std::vector<std::string> out;
  for (std::size_t start = 0; start < after_via.size();) {
    std::size_t comma = after_via.find(',', start);
    if (comma == std::string_view::npos) comma = after_via.size();
    const auto name = trim_ascii_space(after_via.substr(start, comma - start));
    if (!name.empty()) out.emplace_back(name);
    start = comma + 1;
  }
  return out;
}

// If `comment_body` (the text after '#', trimmed) is a pip-compile `via` annotation, the rest
// after the word; else nullopt.
std::optional<std::string_view> via_annotation(std::string_view comment_body) {
  if (!comment_body.starts_with("via")) return std::nullopt;
  const std::string_view rest = comment_body.substr(3);
  if (!rest.empty() && !is_ascii_space(rest.front())) return std::nullopt;
  return trim_ascii_space(rest);
}

// True iff the last physical line of `text` (its final line end aside) ends in a continuation
// backslash, so that pip would join whatever follows to it.
bool continues(std::string_view text) {
  if (text.ends_with('\n')) text.remove_suffix(1);
  if (text.ends_with('\r')) text.remove_suffix(1);
  const std::size_t nl = text.rfind('\n');
  const std::string_view line = nl == std::string_view::npos ? text : text.substr(nl + 1);
  return line.ends_with('\\') && pypi::requirements_comment_start(line) == std::string_view::npos;
}

// Where, in the requirement as written, the version `written` of its one == / === clause
// stands.
std::optional<std::pair<std::size_t, std::size_t>> version_span(std::string_view requirement,
                                                                std::string_view written) {
  // Neither a name nor extras hold '=', so the first "==" is the clause's operator.
  std::size_t at = requirement.find("==");
  if (at == std::string_view::npos) return std::nullopt;
  at += 2;
  if (at < requirement.size() && requirement[at] == '=') ++at;
  while (at < requirement.size() && is_ascii_space(requirement[at]))
    ++at;
  if (written.empty() || requirement.substr(at, written.size()) != written) return std::nullopt;
  return std::pair(at, at + written.size());
}

class document_reader {
 public:
  document_reader(const std::string& text, const std::string& path) : text_(text), path_(path) {}

  void read(std::vector<requirement_entry>& requirements, std::vector<option_entry>& options,
            std::vector<std::size_t>& unnamed) {
    requirements_ = &requirements;
    for (const auto& line : pypi::split_requirements_lines(text_)) {
      const std::string where = path_ + ":" + std::to_string(line.first_number);
      const std::string_view trimmed = trim_ascii_space(line.text);
      if (trimmed.empty()) {
        via_open_ = false;
        last_ = kNone;
        continue;
      }
      if (trimmed.front() == '#') {
        comment_line(line, trim_ascii_space(trimmed.substr(1)));
        continue;
      }
      via_open_ = false;
      last_ = kNone;
      auto parts = pypi::split_requirements_line(line.text);
      if (!parts) {
        fail(where, parts.error().message);
        continue;
      }
      if (parts->requirement.empty()) {
        option_line(*parts, line, where, options);
        continue;
      }
      auto parsed = pypi::requirement::parse(parts->requirement);
      if (!parsed) {
        if (pypi::names_url_or_path(parts->requirement)) {
          unnamed.push_back(line.first_number);
        } else {
          fail(where, parsed.error().message);
        }
        continue;
      }
      requirement_entry e;
      e.written_name = parsed->name;
      e.name = normalize_project_name(parsed->name);
      e.parsed = std::move(*parsed);
      e.requirement_text = parts->requirement;
      e.line = line.first_number;
      e.begin = line.begin;
      e.end = line.end;
      e.via_end = line.end;
      if (!take_options(*parts, where, e)) continue;
      if (const std::size_t c = pypi::requirements_comment_start(line.text);
          c != std::string::npos) {
        std::size_t from = c;
        while (from > 0 && is_ascii_space(line.text[from - 1]))
          --from;
        e.comment = line.text.substr(from);
        if (auto via =
                via_annotation(trim_ascii_space(std::string_view(line.text).substr(c + 1)))) {
          e.via = via_names(*via);
        }
      }
      requirements.push_back(std::move(e));
      last_ = requirements.size() - 1;
    }
  }

  std::vector<std::string> take_errors() { return std::move(errors_); }

 private:
  // A comment line: part of the `# via` annotation of the requirement just before, or not.
  void comment_line(const pypi::requirements_line& line, std::string_view body) {
    if (last_ == kNone) return;
    requirement_entry& last = (*requirements_)[last_];
    if (auto via = via_annotation(body)) {
      auto names = via_names(*via);
      last.via.insert(last.via.end(), names.begin(), names.end());
      via_open_ = names.empty();
      last.via_end = line.end;
      return;
    }
    // "    #   name" lines continue a `# via` that named nothing on its own line.
    if (via_open_ && !body.empty()) {
      last.via.emplace_back(body);
      last.via_end = line.end;
      return;
    }
    via_open_ = false;
    last_ = kNone;
  }

  void option_line(const pypi::line_parts& parts, const pypi::requirements_line& line,
                   const std::string& where, std::vector<option_entry>& options) {
    for (const auto& o : parts.options) {
      if (o.kind == pypi::line_option_kind::hash ||
          o.kind == pypi::line_option_kind::per_requirement) {
        fail(where, o.name + " needs a requirement on the same line");
        return;
      }
    }
    for (const auto& o : parts.options)
      options.push_back(
          option_entry{o.kind, o.name, o.value, line.first_number, line.begin, line.end});
  }

  bool take_options(const pypi::line_parts& parts, const std::string& where, requirement_entry& e) {
    for (const auto& o : parts.options) {
      switch (o.kind) {
        case pypi::line_option_kind::hash: {
          auto h = pypi::parse_hash_option(o.value);
          if (!h) {
            fail(where, quote_for_message(parts.requirement) + ": " + h.error().message);
            return false;
          }
          e.hashes.push_back(h->first + ":" + h->second);
          break;
        }
        case pypi::line_option_kind::requirement:
        case pypi::line_option_kind::constraint:
        case pypi::line_option_kind::editable:
          fail(where, o.name + " must be on a line of its own");
          return false;
        case pypi::line_option_kind::per_requirement:
        case pypi::line_option_kind::index:
        case pypi::line_option_kind::other_value:
        case pypi::line_option_kind::flag:
          e.other_options.push_back(o.value.empty() ? o.name : o.name + "=" + o.value);
          break;
      }
    }
    return true;
  }

  void fail(const std::string& where, const std::string& message) {
    errors_.push_back(where + ": " + message);
  }

  const std::string& text_;
  const std::string& path_;
  std::vector<std::string> errors_;
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::vector<requirement_entry>* requirements_ = nullptr;
  std::size_t last_ = kNone;  // the requirement whose `# via` lines may follow
  bool via_open_ = false;     // a bare `# via` waits for its name lines
};

}  // namespace

std::optional<std::string> requirement_entry::pinned_version() const {
  if (!parsed.url.empty() || parsed.specifiers.clauses().size() != 1) return std::nullopt;
  const auto& clause = parsed.specifiers.clauses().front();
  if (clause.operation == pypi::specifier::op::arbitrary_equal) return clause.text;
  if (clause.operation == pypi::specifier::op::equal && !clause.wildcard) return clause.text;
  return std::nullopt;
}

result<requirements_file> requirements_file::parse(std::string text, std::string path) {
  requirements_file doc;
  doc.text_ = std::move(text);
  doc.path_ = std::move(path);
  document_reader reader(doc.text_, doc.path_);
  reader.read(doc.requirements_, doc.options_, doc.unnamed_lines_);
  auto errors = reader.take_errors();
  if (!errors.empty()) return error(errc::invalid_argument, join(errors, "\n"));
  return doc;
}

std::vector<const requirement_entry*> requirements_file::find(std::string_view name) const {
  const std::string wanted = normalize_project_name(name);
  std::vector<const requirement_entry*> out;
  for (const auto& e : requirements_) {
    if (e.name == wanted) out.push_back(&e);
  }
  return out;
}

result<void> requirements_file::set_pin(std::size_t index, const registry::pypi::version& version,
                                        const std::vector<std::string>& hashes) {
  if (index >= requirements_.size()) {
    return error(errc::invalid_argument, path_ + ": no requirement number " +
                                             std::to_string(index) + " (the file has " +
                                             std::to_string(requirements_.size()) + ")");
  }
  const requirement_entry& e = requirements_[index];
  const std::string where = path_ + ":" + std::to_string(e.line) + ": " + e.requirement_text;
  const auto pinned = e.pinned_version();
  const auto span = pinned ? version_span(e.requirement_text, *pinned) : std::nullopt;
  if (!span) {
    return error(errc::invalid_argument,
                 where +
                     ": not pinned with one == or === clause, so there is no version to "
                     "replace; pin it (name==version) first");
  }
  auto checked = normalized_hashes(hashes);
  if (!checked) return error(errc::invalid_argument, where + ": " + checked.error().message);
  const std::string_view original = std::string_view(text_).substr(e.begin, e.end - e.begin);
  const std::string_view eol = line_end_of(original);
  const std::string_view last_end = final_line_end(original);
  const std::string indent(leading_space(original));

  std::string first = indent + e.requirement_text.substr(0, span->first) + version.str() +
                      e.requirement_text.substr(span->second);
  for (const auto& o : e.other_options)
    first += " " + o;
  std::string block;
  if (checked->empty()) {
    block = first + e.comment + std::string(last_end);
  } else {
    block = first + " \\" + std::string(eol);
    for (std::size_t i = 0; i < checked->size(); ++i) {
      block += indent + std::string(kContinuationIndent) + "--hash=" + (*checked)[i];
      block +=
          i + 1 < checked->size() ? " \\" + std::string(eol) : e.comment + std::string(last_end);
    }
  }
  return splice(e.begin, e.end, block);
}

result<void> requirements_file::set_pin(std::string_view name,
                                        const registry::pypi::version& version,
                                        const std::vector<std::string>& hashes) {
  const std::string wanted = normalize_project_name(name);
  std::vector<std::size_t> matches;
  for (std::size_t i = 0; i < requirements_.size(); ++i) {
    if (requirements_[i].name == wanted) matches.push_back(i);
  }
  if (matches.size() != 1) {
    std::string lines;
    for (auto i : matches)
      lines += (lines.empty() ? "" : ", ") + std::to_string(requirements_[i].line);
    return error(matches.empty() ? errc::not_found : errc::invalid_argument,
                 path_ + ": " + quote_for_message(name) +
                     (matches.empty() ? " is not required here"
                                      : " is required on several lines (" + lines +
                                            "); choose one by its index"));
  }
  return set_pin(matches.front(), version, hashes);
}

result<void> requirements_file::add_pin(std::string_view name,
                                        const registry::pypi::version& version,
                                        const std::vector<std::string>& hashes,
                                        std::string_view via) {
  if (!is_valid_project_name(name)) {
    return error(errc::invalid_argument,
                 path_ + ": " + quote_for_message(name) + " is not a valid project name");
  }
  if (auto existing = find(name); !existing.empty()) {
    return error(errc::already_exists, path_ + ":" + std::to_string(existing.front()->line) + ": " +
                                           quote_for_message(name) +
                                           " is already required here; use set_pin");
  }
  const std::string_view via_text = trim_ascii_space(via);
  if (via_text.empty() || via.find_first_of("\r\n") != std::string_view::npos) {
    return error(errc::invalid_argument, path_ + ": adding " + std::string(name) +
                                             ": the `# via` text " + quote_for_message(via) +
                                             " must be one non-empty line");
  }
  auto checked = normalized_hashes(hashes);
  if (!checked) {
    return error(errc::invalid_argument,
                 path_ + ": adding " + std::string(name) + ": " + checked.error().message);
  }
  const std::string eol(line_end_of(text_));
  std::string block = std::string(name) + "==" + version.str();
  for (const auto& h : *checked)
    block += " \\" + eol + std::string(kContinuationIndent) + "--hash=" + h;
  block += eol + std::string(kContinuationIndent) + "# via " + std::string(via_text) + eol;

  const std::string wanted = normalize_project_name(name);
  std::size_t at = text_.size();
  const auto after = std::find_if(requirements_.begin(), requirements_.end(),
                                  [&](const requirement_entry& e) { return e.name > wanted; });
  if (after != requirements_.end()) {
    at = after->begin;
  } else if (!requirements_.empty()) {
    at = requirements_.back().via_end;
  }
  std::string prefix;
  if (at > 0 && text_[at - 1] != '\n') prefix = eol;
  // A last line ending in a backslash would join the new requirement to it: a blank line ends
  // that line, as pip reads it.
  if (continues(std::string_view(text_).substr(0, at))) prefix += eol;
  return splice(at, at, prefix + block);
}

result<void> requirements_file::splice(std::size_t begin, std::size_t end,
                                       const std::string& replacement) {
  std::string edited = text_.substr(0, begin) + replacement + text_.substr(end);
  auto reread = parse(std::move(edited), path_);
  if (!reread) {
    return error(errc::invalid_argument,
                 path_ + ": the edited file does not read back, so it was left as it was: " +
                     reread.error().message);
  }
  *this = std::move(*reread);
  return {};
}

}  // namespace pantry::orchestrator::pins
