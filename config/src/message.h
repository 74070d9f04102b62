#pragma once

// How values appear in config error messages: quoted, escaped, cut short, and described by kind
// ("is a list"), so that every message shows the offending value on one readable line.

#include <yaml-cpp/node/node.h>

#include <span>
#include <string>
#include <string_view>

namespace pantry::config::detail {

// `s` made safe to print on one line: '"' and '\' escaped, newlines, tabs, other control
// characters and invalid UTF-8 escaped, text past 80 bytes cut with "...".
std::string printable(std::string_view s);

// printable(s) in double quotes: "\"50 GB\"".
std::string quote(std::string_view s);

// One character (a whole UTF-8 sequence, or one byte) for a message: 'x', or its escape in
// double quotes ("\x01") when it is a control character or not UTF-8. Requires !ch.empty().
std::string describe_char(std::string_view ch);

// "a, b, c".
std::string join(std::span<const std::string_view> items);

// "a map", "a list", "empty" or "a single value".
std::string kind_of(const YAML::Node& n);

// A node quoted as a short flow-style rendering ("{name: pypi, url: x}"), cut like quote(); safe
// on anchors that refer to themselves.
std::string describe(const YAML::Node& n);

}  // namespace pantry::config::detail
