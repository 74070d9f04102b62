// yaml::load_document(): a text as exactly one YAML document, with the problems of the text as a
// whole (its size, encoding and YAML syntax) reported before any key is read.

#include "pantry/config/config.h"
#include "pantry/config/yaml_reader.h"

#include "chars.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <sstream>
#include <utility>

namespace pantry::config::yaml {
namespace {

using detail::first_invalid_utf8;

// YAML::Node converts from anything, so a result<YAML::Node> is made from an error explicitly.
result<YAML::Node> failure(errc code, std::string message) {
  return {boost::system::in_place_error, code, std::move(message)};
}

// Notes where a document starts and ignores its content.
class document_start_finder final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;

  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Where `text` goes on after its first YAML document, or nullopt if it ends there. Not
// YAML::LoadAll: yaml-cpp 0.7 does not consume a token that cannot start a node (a ',' at the top
// level), and LoadAll then makes empty documents from it forever; YAML::Load silently stops there.
std::optional<YAML::Mark> after_first_document(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_start_finder first;
  if (!parser.HandleNextDocument(first)) return std::nullopt;
  document_start_finder second;
  if (!parser.HandleNextDocument(second)) return std::nullopt;
  return second.start.value_or(YAML::Mark::null_mark());
}

// 1-based line and column of byte `offset` in `text`.
std::pair<std::size_t, std::size_t> line_col(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

// The text of 0-based line `line`, without its newline.
std::string_view line_text(std::string_view text, int line) {
  std::size_t start = 0;
  for (int i = 0; i < line; ++i) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  const std::size_t end = text.find('\n', start);
  std::string_view out = text.substr(start, end == std::string_view::npos ? end : end - start);
  if (out.ends_with('\r')) out.remove_suffix(1);
  return out;
}

}  // namespace

result<YAML::Node> load_document(std::string_view text, std::string_view source,
                                 const document_kind& kind) {
  const std::string src(source);
  const std::string noun(kind.noun);
  if (text.size() > kind.max_bytes) {
    return failure(kind.code, src + ":1:1: (file): \"" + std::to_string(text.size()) +
                                  " bytes\" is too large for a " + noun + " file (the limit is " +
                                  format_size(kind.max_bytes) +
                                  "); check that this is the right file");
  }
  // Refused before yaml-cpp sees it: NUL bytes make yaml-cpp guess UTF-16/32, and strings that
  // are not UTF-8 could not be written back (to_yaml(), JSON).
  if (const std::size_t bad = std::min(text.find('\0'), first_invalid_utf8(text));
      bad != std::string_view::npos) {
    const auto [line, col] = line_col(text, bad);
    return failure(kind.code,
                   src + ":" + std::to_string(line) + ":" + std::to_string(col) +
                       ": (file): " + quote(line_text(text, static_cast<int>(line - 1))) +
                       " has a byte that is not UTF-8 text; save the file as UTF-8");
  }
  try {
    const std::string whole(text);
    YAML::Node root;
    std::optional<YAML::Mark> rest;
    try {
      root = YAML::Load(whole);
      rest = after_first_document(whole);
    } catch (const YAML::ParserException& e) {
      return failure(kind.code, src + ":" + std::to_string(std::max(e.mark.line, 0) + 1) + ":" +
                                    std::to_string(std::max(e.mark.column, 0) + 1) +
                                    ": (syntax): " + quote(line_text(text, e.mark.line)) +
                                    " is not valid YAML: " + e.msg +
                                    "; check the indentation, colons, brackets and quotes here and "
                                    "on the line before");
    }
    if (rest) {
      const std::string_view line = line_text(text, rest->line);
      const std::string where = src + ":" + std::to_string(std::max(rest->line, 0) + 1) + ":" +
                                std::to_string(std::max(rest->column, 0) + 1);
      if (line.starts_with("---")) {
        return failure(kind.code, where + ": (file): " + quote(line) +
                                      " starts a second YAML document; a " + noun +
                                      " is one document, so remove the \"---\" and merge the "
                                      "settings into the first");
      }
      return failure(kind.code, where + ": (syntax): " + quote(line) +
                                    " is not valid YAML: unexpected text after the end of the "
                                    "document; check for a stray ',' or indentation that ends the "
                                    "settings early");
    }
    return root;
  } catch (const std::exception& e) {
    return failure(kind.code, src + ": cannot read the " + noun + ": " + std::string(e.what()) +
                                  "; this is a bug in pantry, please report it with the file");
  }
}

}  // namespace pantry::config::yaml
