#include "pantry/registry/pypi/file_path.h"

#include "url.h"

#include <boost/url/parse.hpp>

namespace pantry::registry::pypi {
namespace {

constexpr std::string_view kPrefix = "/files/";

bool is_upstream_name(std::string_view name) noexcept {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

// Bytes a request target may hold raw: RFC 3986's URI characters, '%', and the brackets of an
// IPv6 host.
bool is_target_char(char c) noexcept {
  return detail::is_uri_char(c) || c == '%' || c == '[' || c == ']';
}

}  // namespace

std::string file_path_for(std::string_view upstream_name, std::string_view absolute_url) {
  if (!is_upstream_name(upstream_name)) return {};
  auto u = boost::urls::parse_uri(absolute_url);
  if (!u) return {};
  auto location = detail::file_location_of(*u);
  if (!location) return {};
  std::string out;
  out.reserve(kPrefix.size() + upstream_name.size() + 1 + location->size());
  out += kPrefix;
  out += upstream_name;
  out += '/';
  out += *location;
  return out;
}

result<file_location> parse_file_path(std::string_view target) {
  const auto fail = [&](std::string_view why) {
    std::string shown(target.substr(0, 512));
    for (char& c : shown) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7F) c = '?';  // keep the message printable
    }
    return pantry::error(errc::invalid_argument,
                         "pypi: bad file path \"" + shown + "\": " + std::string(why));
  };
  if (target.substr(0, kPrefix.size()) != kPrefix) return fail("it does not start with /files/");
  for (char c : target) {
    if (c == '#') return fail("it holds a fragment");
    if (c == '\\') return fail("it holds a '\\'");
    if (!is_target_char(c)) return fail("it holds a space, control or non-ASCII character");
  }
  const std::string_view rest = target.substr(kPrefix.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return fail("it names no file");
  const std::string_view upstream = rest.substr(0, slash);
  if (!is_upstream_name(upstream)) return fail("bad upstream name");
  std::string location(rest.substr(slash + 1));
  std::size_t authority_end = location.find_first_of("/?");
  if (authority_end == 0) return fail("an empty host (\"//\")");
  // pip percent-encodes the ':' before a port ("127.0.0.1%3A8080/…"); RFC 3986 makes that the
  // same path segment, so it is read as the port separator it was written as.
  for (std::size_t i = location.find('%');
       i != std::string::npos && i + 2 < std::min(authority_end, location.size());
       i = location.find('%', i + 1)) {
    if (location.compare(i, 3, "%3A") == 0 || location.compare(i, 3, "%3a") == 0) {
      location.replace(i, 3, ":");
      authority_end -= 2;
    }
  }
  const std::string_view authority = std::string_view(location).substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) return fail("userinfo in the host");
  if (authority.find('%') != std::string_view::npos) return fail("a percent-encoded host");

  const std::string url = "http://" + std::string(location);
  auto u = boost::urls::parse_uri(url);
  if (!u) return fail("not a host followed by a path");
  if (u->has_userinfo()) return fail("userinfo in the host");
  auto canonical = detail::file_location_of(*u);
  if (!canonical) return fail(canonical.error().message);
  return file_location{std::string(upstream), std::move(*canonical)};
}

}  // namespace pantry::registry::pypi
