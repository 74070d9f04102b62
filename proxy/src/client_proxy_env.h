#pragma once

// Forward proxies for the upstream client, as the environment names them (HTTP_PROXY,
// HTTPS_PROXY, NO_PROXY). Private to proxy/; no Beast here, so the rules are cheap to test.

#include "pantry/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::proxy::detail {

// A forward proxy reached over plain HTTP.
struct proxy_endpoint {
  std::string host;  // a name or an address, IPv6 without brackets
  std::uint16_t port = 0;
  std::string authorization;  // "Basic …" from the URL's user info, or empty

  // "host:port" ("[v6]:port"), for messages and pool keys.
  std::string str() const;
};

// One of HTTP_PROXY / HTTPS_PROXY: unset (empty value), a proxy, or a value that cannot be used.
struct proxy_setting {
  std::optional<proxy_endpoint> endpoint;
  std::optional<std::string> error;  // "HTTPS_PROXY=\"…\": …"; requests that would use it fail
};

struct proxy_env {
  proxy_setting http;   // for http:// URLs
  proxy_setting https;  // for https:// URLs, through a CONNECT tunnel
  std::string no_proxy;
};

// Parses a proxy URL: "http://[user:password@]host[:port][/]", or the same without "http://".
// The port defaults to 80. Other schemes (https://, socks5://) are errors, so that a request is
// never sent straight past a proxy that its operator meant it to use.
result<proxy_endpoint> parse_proxy_url(std::string_view text);

// Reads http_proxy / HTTP_PROXY, https_proxy / HTTPS_PROXY and no_proxy / NO_PROXY (the lowercase
// form wins when both are set, as in curl). `name` of each error is the variable that was read.
proxy_env read_proxy_env();

// True iff `no_proxy` (NO_PROXY's value) exempts `host`:`port` from the proxy. The value is a
// comma- or space-separated list, case-insensitive; an entry is
//   "*"                      every host;
//   "example.com", ".example.com"  that host and every name under it (not "badexample.com");
//   "example.com:8080"       the same, on that port only;
//   "10.1.2.3", "[::1]", "::1"     that address literally (no CIDR ranges).
// Loopback is not special: "localhost" and "127.0.0.1" go through the proxy unless listed.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port);

}  // namespace pantry::proxy::detail
