#pragma once

// Text helpers shared by the HTML and JSON code: UTF-8 repair, HTML character references,
// escaping for HTML attributes and JSON strings.

#include "pantry/text.h"

#include <string>
#include <string_view>

namespace pantry::registry::pypi::detail {

// True iff `s` is valid UTF-8.
bool is_valid_utf8(std::string_view s) noexcept;

// `s` with every invalid UTF-8 sequence replaced by U+FFFD (as a browser decodes a page).
std::string valid_utf8(std::string_view s);

// Appends code point `cp` as UTF-8 (U+FFFD for surrogates and values past U+10FFFF).
void append_utf8(std::string& out, char32_t cp);

// Decodes HTML character references: numeric ones (decimal and hex, with the HTML5 fixes for
// NUL, surrogates, out-of-range values and the windows-1252 range 0x80-0x9F) and the named ones
// an index page may use (amp, lt, gt, quot, apos, nbsp). In an attribute (`in_attribute`), a
// legacy reference without ';' followed by an alphanumeric or '=' stays literal, as HTML5 says.
// Unknown names stay literal.
std::string decode_entities(std::string_view s, bool in_attribute);

// pantry/text.h's, used unqualified here.
using pantry::append_html_escaped;

// Appends `s` (valid UTF-8) as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view s);

}  // namespace pantry::registry::pypi::detail
