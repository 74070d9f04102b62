#pragma once

// URL handling shared by the page parsers and the file path functions.

#include "pantry/error.h"

#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi::detail {

// What a browser (and pip) does to an href before parsing it: trims ASCII whitespace, drops tabs
// and line breaks, and percent-encodes what may not appear raw in a URI reference (spaces,
// non-ASCII bytes, '"', '<', '>', '\', '^', '`', '{', '|', '}', brackets outside the host, a
// second '#', and a '%' not starting an escape).
std::string clean_href(std::string_view href);

// True iff RFC 3986 allows `c` raw in a URI reference, '%', '#', '[' and ']' aside (their
// meaning depends on where they stand).
bool is_uri_char(char c) noexcept;

// `s` parsed as an absolute URI (with a scheme), or nullopt.
std::optional<boost::urls::url> parse_absolute_url(std::string_view s);

// `s` with every byte but unreserved ones (letters, digits, "-._~") percent-encoded: safe as one
// path segment of a relative reference.
std::string percent_encode_segment(std::string_view s);

// "%41" -> "A"; a '%' without two hex digits stays as it is.
std::string percent_decode(std::string_view s);

// The location ("<host[:port]>/<path>[?<query>]", host lowercased) of an http(s) URL, or an error
// whose message is only the reason why `u` cannot be a pantry file path, e.g. "it has no host"
// (see file_path.h for the rules).
result<std::string> file_location_of(const boost::urls::url_view_base& u);

// Resolves `ref` against `base` as RFC 3986 section 5.2 says, keeping every percent-encoding as
// it is ("%2B" stays "%2B": S3-backed indexes such as download.pytorch.org need it). Boost.URL
// 1.81's resolve() decodes "%2F" and "%2B" and keeps ".." segments above the root, so it is not
// used. "%2e"-spelled dot segments count as dot segments (as in browsers). Returns nullopt when
// the result is not an absolute URI.
std::optional<boost::urls::url> resolve_reference(const boost::urls::url_view_base& base,
                                                  const boost::urls::url_view_base& ref);

// A file link resolved and checked.
struct resolved_file {
  std::string url;       // absolute, without fragment
  std::string location;  // file_location_of(url)
  std::string filename;  // the last path segment, percent-decoded, valid UTF-8
  std::string fragment;  // still percent-encoded; "" when none
};

// Resolves `href` (raw, as found in a page) against `base`; nullopt unless the result is an
// http(s) URL that file_location_of accepts.
std::optional<resolved_file> resolve_file(const boost::urls::url_view_base& base,
                                          std::string_view href);

}  // namespace pantry::registry::pypi::detail
