#include "url.h"

#include "text.h"

#include <boost/url/parse.hpp>
#include <boost/url/scheme.hpp>

#include <vector>

namespace pantry::registry::pypi::detail {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";

bool is_hex_digit(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

void append_escaped(std::string& out, char c) {
  const auto u = static_cast<unsigned char>(c);
  out.push_back('%');
  out.push_back(kHexUpper[u >> 4]);
  out.push_back(kHexUpper[u & 0xF]);
}

// Why a decoded path segment cannot be part of a file path, or nullptr.
const char* segment_problem(std::string_view encoded) {
  if (encoded.empty()) return "an empty path segment";
  const std::string decoded = percent_decode(encoded);
  if (decoded == "." || decoded == "..") return "a '.' or '..' path segment";
  for (char c : decoded) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/') return "an encoded '/' in a path segment";
    if (c == '\\') return "a '\\' in a path segment";
    if (u == 0) return "a NUL in a path segment";
    if (u < 0x20 || u == 0x7F) return "a control character in a path segment";
  }
  return nullptr;
}

// WHATWG counts percent-encoded dots as dots in "." and ".." segments; so does pantry.
bool is_single_dot(std::string_view segment) noexcept {
  return segment == "." || ascii_iequals(segment, "%2e");
}

bool is_double_dot(std::string_view segment) noexcept {
  return segment == ".." || ascii_iequals(segment, ".%2e") || ascii_iequals(segment, "%2e.") ||
         ascii_iequals(segment, "%2e%2e");
}

// RFC 3986 section 5.2.4, segment by segment.
std::string remove_dot_segments(std::string_view path) {
  const bool absolute = !path.empty() && path.front() == '/';
  if (absolute) path.remove_prefix(1);
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    const bool last = slash == std::string_view::npos;
    const std::string_view segment = path.substr(start, last ? slash : slash - start);
    if (is_single_dot(segment)) {
      if (last) out.emplace_back();
    } else if (is_double_dot(segment)) {
      if (!out.empty()) out.pop_back();
      if (last) out.emplace_back();
    } else {
      out.push_back(segment);
    }
    if (last) break;
    start = slash + 1;
  }
  std::string result = absolute ? "/" : "";
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i > 0) result += '/';
    result += out[i];
  }
  return result;
}

}  // namespace

// Characters RFC 3986 allows raw in a URI reference (besides '%', '#', '[' and ']', which
// clean_href treats by position).
bool is_uri_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case ':':
    case '/':
    case '?':
    case '@':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}

std::optional<boost::urls::url> resolve_reference(const boost::urls::url_view_base& base,
                                                  const boost::urls::url_view_base& ref) {
  // RFC 3986 section 5.2.2, on the encoded components as they are.
  std::string scheme;
  std::optional<std::string_view> authority;
  std::string path;
  std::optional<std::string_view> query;
  if (ref.has_scheme()) {
    scheme = ref.scheme();
    if (ref.has_authority()) authority = ref.encoded_authority();
    path = remove_dot_segments(ref.encoded_path());
    if (ref.has_query()) query = ref.encoded_query();
  } else {
    if (!base.has_scheme()) return std::nullopt;
    scheme = base.scheme();
    if (ref.has_authority()) {
      authority = ref.encoded_authority();
      path = remove_dot_segments(ref.encoded_path());
      if (ref.has_query()) query = ref.encoded_query();
    } else {
      if (base.has_authority()) authority = base.encoded_authority();
      const std::string_view ref_path = ref.encoded_path();
      if (ref_path.empty()) {
        path = base.encoded_path();
        if (ref.has_query()) {
          query = ref.encoded_query();
        } else if (base.has_query()) {
          query = base.encoded_query();
        }
      } else {
        if (ref_path.front() == '/') {
          path = remove_dot_segments(ref_path);
        } else {
          const std::string_view base_path = base.encoded_path();
          std::string merged;
          if (base.has_authority() && base_path.empty()) {
            merged = "/";
          } else if (const std::size_t slash = base_path.rfind('/');
                     slash != std::string_view::npos) {
            merged = base_path.substr(0, slash + 1);
          }
          merged += ref_path;
          path = remove_dot_segments(merged);
        }
        if (ref.has_query()) query = ref.encoded_query();
      }
    }
  }
  std::string out = ascii_lower(scheme);
  out += ':';
  if (authority) {
    out += "//";
    out += *authority;
  } else if (path.substr(0, 2) == "//") {
    return std::nullopt;  // would read as an authority
  }
  out += path;
  if (query) {
    out += '?';
    out += *query;
  }
  if (ref.has_fragment()) {
    out += '#';
    out += ref.encoded_fragment();
  }
  return parse_absolute_url(out);
}

std::string clean_href(std::string_view href) {
  href = trim_ascii_space(href);
  // Where the authority is, if any: brackets are only allowed raw there (IPv6 literals).
  std::size_t authority_begin = std::string_view::npos;
  std::size_t authority_end = std::string_view::npos;
  {
    std::size_t i = 0;
    const std::size_t colon = href.find(':');
    const std::size_t first_delim = href.find_first_of("/?#");
    if (colon != std::string_view::npos && colon < first_delim) i = colon + 1;
    if (href.substr(i, 2) == "//") {
      authority_begin = i + 2;
      authority_end = href.find_first_of("/?#", authority_begin);
      if (authority_end == std::string_view::npos) authority_end = href.size();
    }
  }
  std::string out;
  out.reserve(href.size());
  bool in_fragment = false;
  for (std::size_t i = 0; i < href.size(); ++i) {
    const char c = href[i];
    if (c == '\t' || c == '\n' || c == '\r') continue;
    if (c == '%') {
      if (i + 2 < href.size() && is_hex_digit(href[i + 1]) && is_hex_digit(href[i + 2])) {
        out.push_back(c);
      } else {
        out += "%25";
      }
      continue;
    }
    if (c == '#') {
      if (in_fragment) {
        append_escaped(out, c);
      } else {
        in_fragment = true;
        out.push_back(c);
      }
      continue;
    }
    if (c == '[' || c == ']') {
      if (i >= authority_begin && i < authority_end) {
        out.push_back(c);
      } else {
        append_escaped(out, c);
      }
      continue;
    }
    if (is_uri_char(c)) {
      out.push_back(c);
    } else {
      append_escaped(out, c);
    }
  }
  return out;
}

std::optional<boost::urls::url> parse_absolute_url(std::string_view s) {
  auto u = boost::urls::parse_uri(s);
  if (!u) return std::nullopt;
  return boost::urls::url(*u);
}

std::string percent_encode_segment(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      append_escaped(out, c);
    }
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && is_hex_digit(s[i + 1]) && is_hex_digit(s[i + 2])) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

result<std::string> file_location_of(const boost::urls::url_view_base& u) {
  const auto fail = [](std::string why) { return pantry::error(errc::invalid_argument, why); };
  if (!u.has_scheme()) return fail("it has no scheme");
  const auto scheme = u.scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https) {
    return fail("scheme \"" + std::string(u.scheme()) + "\" is not http or https");
  }
  if (!u.has_authority() || u.encoded_host().empty()) return fail("it has no host");
  if (u.host_type() == boost::urls::host_type::ipvfuture) return fail("IPvFuture host");
  const std::string_view host = u.encoded_host();
  if (host.find('%') != std::string_view::npos) return fail("percent-encoded host");
  std::string location = ascii_lower(host);
  if (u.has_port() && !u.port().empty()) {
    const std::string_view port = u.port();
    if (port.size() > 5) return fail("bad port");
    unsigned value = 0;
    for (char c : port)
      value = value * 10 + static_cast<unsigned>(c - '0');
    if (value == 0 || value > 65535) return fail("bad port");
    location += ':';
    location += port;
  }
  const std::string_view path = u.encoded_path();
  if (path.empty() || path.front() != '/') return fail("it has no path");
  // Each segment in one spelling, pip's: every byte but the unreserved ones escaped, hex in upper
  // case. pip re-escapes the links it is given (a ':' or '+' in a path reaches pantry as "%3A",
  // "%2B") while indexes escape as they like, so without this one file would have several
  // locations; the links of another pantry's pages (pantry in tiers) hold a ':' in their path.
  std::size_t start = 1;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    const std::string_view segment = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (const char* problem = segment_problem(segment)) return fail(problem);
    location += '/';
    location += percent_encode_segment(percent_decode(segment));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (u.has_query()) {
    location += '?';
    location += u.encoded_query();
  }
  return location;
}

std::optional<resolved_file> resolve_file(const boost::urls::url_view_base& base,
                                          std::string_view href) {
  const std::string cleaned = clean_href(href);
  if (cleaned.empty()) return std::nullopt;  // a link to the page itself
  auto ref = boost::urls::parse_uri_reference(cleaned);
  if (!ref) return std::nullopt;
  auto resolved = resolve_reference(base, *ref);
  if (!resolved) return std::nullopt;
  boost::urls::url& dest = *resolved;
  resolved_file out;
  if (dest.has_fragment()) out.fragment = dest.encoded_fragment();
  dest.remove_fragment();
  auto location = file_location_of(dest);
  if (!location) return std::nullopt;
  out.location = std::move(*location);
  const std::string_view path = dest.encoded_path();
  out.filename = valid_utf8(percent_decode(path.substr(path.rfind('/') + 1)));
  out.url = dest.buffer();
  return out;
}

}  // namespace pantry::registry::pypi::detail
