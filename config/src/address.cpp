// Network addresses: `listen` (parse_listen, listen_address::str) and upstream URLs.

#include "address.h"

#include "chars.h"
#include "message.h"
#include "pantry/config/config.h"
#include "pantry/text.h"

#include <algorithm>

namespace pantry::config {
namespace detail {
namespace {

constexpr std::string_view kListenHint = "use HOST:PORT, e.g. 0.0.0.0:8585 or [::1]:8585";

// Host names and IPv4 literals as they appear in `listen` and URLs.
bool is_host_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_';
  });
}

// The inside of "[...]": an IPv6 literal, optionally with a %zone.
bool is_ipv6_literal(std::string_view s) {
  const std::size_t pct = s.find('%');
  const std::string_view addr = s.substr(0, pct);
  if (addr.find(':') == std::string_view::npos) return false;
  const bool addr_ok = std::all_of(addr.begin(), addr.end(), [](char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
  });
  return addr_ok && (pct == std::string_view::npos || is_host_name(s.substr(pct + 1)));
}

}  // namespace

std::optional<std::string> url_problem(std::string_view url, url_kind kind) {
  const std::string example = kind == url_kind::pypi_index     ? "https://pypi.org/simple/"
                              : kind == url_kind::oci_registry ? "https://registry-1.docker.io"
                                                               : "https://git.example/team/app.git";
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return "is not an http:// or https:// URL; write the full URL, e.g. " + example;
  }
  for (char c : url) {
    if (is_control(static_cast<unsigned char>(c)) || c == ' ') {
      return "contains a space or control character; percent-encode it, e.g. %20";
    }
  }
  if (url.find('#') != std::string_view::npos || url.find('?') != std::string_view::npos) {
    return "has a query or fragment; give the plain URL, e.g. " + example;
  }
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    if (kind == url_kind::git_or_api) {
      return "has credentials in it; remove the user:password@ part and put the token in the "
             "file token_file names (it is sent as a header, never in a URL or a log)";
    }
    return "has credentials in it; remove the user:password@ part from the URL";
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return "has an unclosed '[' in its host; e.g. " + example;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) {
      return "has text after the ']' of its host; e.g. https://[::1]:8080/";
    }
    if (!after.empty()) port = after.substr(1);
    if (!is_ipv6_literal(host)) return "has an invalid IPv6 host; e.g. https://[::1]:8080/";
  } else {
    const std::size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return "has no host; e.g. " + example;
    if (!is_host_name(host)) return "has an invalid host name; e.g. " + example;
  }
  if (authority.find(':') != std::string_view::npos && !authority.starts_with('[') &&
      port.empty()) {
    return "has an empty port after ':'; remove the ':' or add a port";
  }
  if (!port.empty()) {
    const auto p = parse_port(port);
    if (!p || *p == 0) return "has a port that is not 1 to 65535; fix the port";
  }
  if (kind == url_kind::pypi_index && !path.ends_with('/')) {
    return "does not end in '/'; add the trailing slash, e.g. " + example;
  }
  if (kind == url_kind::oci_registry && !path.empty() && path != "/") {
    return "has a path; give only the registry's base URL (pantry adds /v2/), e.g. " + example;
  }
  return std::nullopt;
}

}  // namespace detail

using detail::all_digits;
using detail::is_host_name;
using detail::is_ipv6_literal;
using detail::kListenHint;
using detail::printable;
using detail::quote;

std::string listen_address::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

result<listen_address> parse_listen(std::string_view text) {
  const std::string q = quote(text);
  const auto fail = [&](std::string why) {
    return pantry::error(errc::config_error, q + " " + why);
  };
  if (text.empty()) return fail("is empty; " + std::string(kListenHint));
  listen_address out;
  std::string_view port;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos)
      return fail("has an unclosed '['; " + std::string(kListenHint));
    const std::string_view host = text.substr(1, close - 1);
    if (!is_ipv6_literal(host)) {
      return fail("has an invalid IPv6 address in brackets; " + std::string(kListenHint));
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return fail("has no port; " + std::string(kListenHint));
    }
    out.host = std::string(host);
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      if (all_digits(text)) {
        return fail("has no host; write 0.0.0.0:" + std::string(text.substr(0, 5)) +
                    " for all interfaces or 127.0.0.1:" + std::string(text.substr(0, 5)) +
                    " for this machine only");
      }
      return fail("has no port; " + std::string(kListenHint));
    }
    const std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return fail("has an IPv6 address without brackets; write it as [" + printable(host) +
                  "]:" + printable(text.substr(colon + 1)));
    }
    if (host.empty()) {
      return fail("has no host; use 0.0.0.0" + printable(text.substr(colon, 6)) +
                  " for all interfaces");
    }
    if (!is_host_name(host)) return fail("has an invalid host; " + std::string(kListenHint));
    out.host = std::string(host);
    port = text.substr(colon + 1);
  }
  if (port.empty()) return fail("has no port after ':'; " + std::string(kListenHint));
  const auto p = parse_port(port);
  if (!p) {
    if (all_digits(port)) {
      return fail("has port " + printable(port) +
                  ", which is out of range; use a port from 1 to 65535 (or 0 for any free port)");
    }
    return fail("has a port that is not a number; " + std::string(kListenHint));
  }
  out.port = *p;
  return out;
}

}  // namespace pantry::config
