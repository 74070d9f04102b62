#pragma once

// A small HTML5-ish tokenizer: enough of the HTML5 tokenization rules to read the links of any
// index page correctly (tags and attribute names in any case, attribute values quoted either way
// or unquoted, comments, doctype, processing instructions, raw-text elements such as <script>),
// and nothing more: no tree building, no error recovery beyond what the tokenizer does.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::registry::pypi::detail {

struct html_token {
  enum class kind { start_tag, end_tag, text };
  kind type = kind::text;
  std::string name;  // tags: lowercased tag name
  // start tags: lowercased name -> value with character references decoded and UTF-8 repaired,
  // in document order, repeats included.
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string_view text;  // text: raw (undecoded) text between tags

  // The value of the first attribute named `attr` (lowercase; HTML5 ignores later repeats), or
  // nullopt when absent.
  std::optional<std::string_view> attribute(std::string_view attr) const;
};

class html_tokenizer {
 public:
  explicit html_tokenizer(std::string_view doc) : doc_(doc) {}

  // The next tag or text run, or nullopt at the end of the document. Comments, doctypes and the
  // contents of raw-text elements (script, style, title, textarea, ...) are skipped.
  std::optional<html_token> next();

 private:
  bool read_start_tag(html_token& tok);
  bool read_end_tag(html_token& tok);
  void skip_bogus_comment();
  void skip_comment();
  void skip_raw_text(std::string_view tag);

  std::string_view doc_;
  std::size_t pos_ = 0;
  std::string pending_raw_text_;  // a raw-text element was just opened; skip to its end tag
};

}  // namespace pantry::registry::pypi::detail
