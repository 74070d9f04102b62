#include "html_tokenizer.h"

#include "text.h"

#include <array>

namespace pantry::registry::pypi::detail {
namespace {

bool is_ascii_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Elements whose content is not markup: nothing inside them is a tag.
constexpr std::array<std::string_view, 9> kRawTextElements = {
    "script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "plaintext"};

bool is_raw_text_element(std::string_view name) noexcept {
  for (auto e : kRawTextElements) {
    if (name == e) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string_view> html_token::attribute(std::string_view attr) const {
  for (const auto& [name, value] : attributes) {
    if (name == attr) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<html_token> html_tokenizer::next() {
  if (!pending_raw_text_.empty()) {
    const std::string tag = std::move(pending_raw_text_);
    pending_raw_text_.clear();
    skip_raw_text(tag);
  }
  while (pos_ < doc_.size()) {
    if (doc_[pos_] != '<') {
      const std::size_t lt = doc_.find('<', pos_);
      const std::size_t end = lt == std::string_view::npos ? doc_.size() : lt;
      html_token tok;
      tok.type = html_token::kind::text;
      tok.text = doc_.substr(pos_, end - pos_);
      pos_ = end;
      return tok;
    }
    const std::string_view rest = doc_.substr(pos_);
    if (rest.size() >= 2 && is_ascii_alpha(rest[1])) {
      html_token tok;
      if (read_start_tag(tok)) {
        if (is_raw_text_element(tok.name)) pending_raw_text_ = tok.name;
        return tok;
      }
      continue;  // a tag cut off by the end of the document is dropped, as in HTML5
    }
    if (rest.size() >= 3 && rest[1] == '/' && is_ascii_alpha(rest[2])) {
      html_token tok;
      if (read_end_tag(tok)) return tok;
      continue;
    }
    if (rest.substr(0, 4) == "<!--") {
      skip_comment();
      continue;
    }
    if (rest.size() >= 2 && (rest[1] == '!' || rest[1] == '?' || rest[1] == '/')) {
      // Doctype, CDATA, processing instruction, "</>" or "</ 3": a bogus comment up to '>'.
      skip_bogus_comment();
      continue;
    }
    // A '<' that starts nothing is text.
    const std::size_t lt = doc_.find('<', pos_ + 1);
    const std::size_t end = lt == std::string_view::npos ? doc_.size() : lt;
    html_token tok;
    tok.type = html_token::kind::text;
    tok.text = doc_.substr(pos_, end - pos_);
    pos_ = end;
    return tok;
  }
  return std::nullopt;
}

// Reads "<name attr=value ...>" at pos_. Returns false when the document ends inside the tag.
bool html_tokenizer::read_start_tag(html_token& tok) {
  std::size_t i = pos_ + 1;
  const std::size_t name_start = i;
  while (i < doc_.size() && !is_ascii_space(doc_[i]) && doc_[i] != '/' && doc_[i] != '>')
    ++i;
  tok.type = html_token::kind::start_tag;
  tok.name = ascii_lower(doc_.substr(name_start, i - name_start));
  for (;;) {
    while (i < doc_.size() && (is_ascii_space(doc_[i]) || doc_[i] == '/'))
      ++i;
    if (i >= doc_.size()) {
      pos_ = doc_.size();
      return false;
    }
    if (doc_[i] == '>') {
      pos_ = i + 1;
      return true;
    }
    // Attribute name: the first character may be anything but space, '/' or '>' (even '=').
    const std::size_t attr_start = i++;
    while (i < doc_.size() && !is_ascii_space(doc_[i]) && doc_[i] != '/' && doc_[i] != '>' &&
           doc_[i] != '=') {
      ++i;
    }
    std::string attr = ascii_lower(doc_.substr(attr_start, i - attr_start));
    std::size_t j = i;
    while (j < doc_.size() && is_ascii_space(doc_[j]))
      ++j;
    std::string value;
    if (j < doc_.size() && doc_[j] == '=') {
      ++j;
      while (j < doc_.size() && is_ascii_space(doc_[j]))
        ++j;
      if (j >= doc_.size()) {
        pos_ = doc_.size();
        return false;
      }
      std::string_view raw;
      if (doc_[j] == '"' || doc_[j] == '\'') {
        const char quote = doc_[j];
        const std::size_t close = doc_.find(quote, j + 1);
        if (close == std::string_view::npos) {
          pos_ = doc_.size();
          return false;
        }
        raw = doc_.substr(j + 1, close - j - 1);
        i = close + 1;
      } else {
        std::size_t k = j;
        while (k < doc_.size() && !is_ascii_space(doc_[k]) && doc_[k] != '>')
          ++k;
        raw = doc_.substr(j, k - j);
        i = k;
      }
      value = valid_utf8(decode_entities(raw, /*in_attribute=*/true));
    }
    // else: an attribute without a value; the space after its name was not consumed, which does
    // not matter as the loop skips it.
    // Repeats are kept; attribute() returns the first, which is what HTML5 keeps. (Dropping them
    // here would cost a quadratic scan on a tag with many attributes.)
    tok.attributes.emplace_back(std::move(attr), std::move(value));
  }
}

// Reads "</name ...>" at pos_; attributes of end tags are parsed (quotes matter) and dropped.
bool html_tokenizer::read_end_tag(html_token& tok) {
  pos_ += 1;  // read_start_tag skips one character, '<'; here it must skip "</"
  html_token ignored;
  if (!read_start_tag(ignored)) return false;
  tok.type = html_token::kind::end_tag;
  tok.name = std::move(ignored.name);
  return true;
}

void html_tokenizer::skip_bogus_comment() {
  const std::size_t gt = doc_.find('>', pos_ + 1);
  pos_ = gt == std::string_view::npos ? doc_.size() : gt + 1;
}

void html_tokenizer::skip_comment() {
  std::size_t i = pos_ + 4;
  // "<!-->" and "<!--->" are (empty) comments too.
  if (doc_.substr(i, 1) == ">") {
    pos_ = i + 1;
    return;
  }
  if (doc_.substr(i, 2) == "->") {
    pos_ = i + 2;
    return;
  }
  while (i < doc_.size()) {
    const std::size_t dashes = doc_.find("--", i);
    if (dashes == std::string_view::npos) break;
    if (doc_.substr(dashes + 2, 1) == ">") {
      pos_ = dashes + 3;
      return;
    }
    if (doc_.substr(dashes + 2, 2) == "!>") {
      pos_ = dashes + 4;
      return;
    }
    i = dashes + 1;
  }
  pos_ = doc_.size();
}

// Skips to the end tag "</tag" (any case) followed by space, '/' or '>', and leaves pos_ on it.
void html_tokenizer::skip_raw_text(std::string_view tag) {
  if (tag == "plaintext") {
    pos_ = doc_.size();
    return;
  }
  std::size_t i = pos_;
  for (;;) {
    const std::size_t lt = doc_.find("</", i);
    if (lt == std::string_view::npos) {
      pos_ = doc_.size();
      return;
    }
    const std::size_t after = lt + 2 + tag.size();
    if (after <= doc_.size() && ascii_iequals(doc_.substr(lt + 2, tag.size()), tag) &&
        (after == doc_.size() || is_ascii_space(doc_[after]) || doc_[after] == '/' ||
         doc_[after] == '>')) {
      pos_ = lt;
      return;
    }
    i = lt + 2;
  }
}

}  // namespace pantry::registry::pypi::detail
