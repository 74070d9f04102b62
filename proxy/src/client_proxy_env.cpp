#include "client_proxy_env.h"
#include "pantry/proxy/client.h"
#include "pantry/text.h"

#include <openssl/evp.h>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <string>
#include <vector>

namespace pantry::proxy::detail {
namespace {

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The value of the first of `names` that is set and not empty; `used` gets its name.
std::optional<std::string> getenv_first(std::initializer_list<const char*> names,
                                        std::string& used) {
  for (const char* name : names) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') {
      used = name;
      return std::string(v);
    }
  }
  return std::nullopt;
}

proxy_setting read_setting(std::initializer_list<const char*> names) {
  proxy_setting s;
  std::string used;
  auto value = getenv_first(names, used);
  if (!value) return s;
  auto ep = parse_proxy_url(*value);
  if (ep) {
    s.endpoint = std::move(*ep);
  } else {
    s.error = used + "=\"" + *value + "\": " + ep.error().message;
  }
  return s;
}

// `host` without the brackets of an IPv6 literal.
std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

bool entry_matches(std::string_view entry, std::string_view host, std::uint16_t port) {
  if (entry == "*") return true;
  // An optional ":port" suffix; a bare IPv6 literal has several colons and no port.
  std::string_view name = entry;
  if (!name.empty() && name.front() == '[') {
    const auto close = name.find(']');
    if (close == std::string_view::npos) return false;
    const auto rest = name.substr(close + 1);
    name = name.substr(1, close - 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      unsigned p = 0;
      const auto digits = rest.substr(1);
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
      if (ec != std::errc{} || end != digits.data() + digits.size() || p != port) return false;
    }
  } else if (std::count(name.begin(), name.end(), ':') == 1) {
    const auto colon = name.find(':');
    unsigned p = 0;
    const auto digits = name.substr(colon + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
    if (ec != std::errc{} || end != digits.data() + digits.size() || p != port) return false;
    name = name.substr(0, colon);
  }
  if (!name.empty() && name.front() == '.') name.remove_prefix(1);
  if (name.empty()) return false;
  if (host == name) return true;
  return host.size() > name.size() && host.ends_with(name) &&
         host[host.size() - name.size() - 1] == '.';
}

}  // namespace

}  // namespace pantry::proxy::detail

namespace pantry::proxy {

std::string basic_authorization(std::string_view user, std::string_view password) {
  std::string pair = std::string(user) + ":" + std::string(password);
  return "Basic " + detail::base64(pair);
}

std::optional<std::pair<std::string, std::string>> parse_basic_authorization(
    std::string_view value) {
  if (value.size() < 6 || !(value.substr(0, 6) == "Basic " || value.substr(0, 6) == "basic ")) {
    return std::nullopt;
  }
  std::string_view b64 = value.substr(6);
  while (!b64.empty() && b64.front() == ' ')
    b64.remove_prefix(1);
  while (!b64.empty() && b64.back() == ' ')
    b64.remove_suffix(1);
  if (b64.empty() || b64.size() % 4 != 0 || b64.size() > 4096) return std::nullopt;
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the '=' padding as zero bytes.
  std::size_t len = static_cast<std::size_t>(n);
  if (b64.ends_with("==")) {
    len -= 2;
  } else if (b64.ends_with('=')) {
    len -= 1;
  }
  out.resize(len);
  auto colon = out.find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::pair{out.substr(0, colon), out.substr(colon + 1)};
}

}  // namespace pantry::proxy

namespace pantry::proxy::detail {

std::string proxy_endpoint::str() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

result<proxy_endpoint> parse_proxy_url(std::string_view text) {
  std::string full(text);
  if (full.find("://") == std::string::npos) full = "http://" + full;
  auto parsed = boost::urls::parse_absolute_uri(full);
  if (!parsed) {
    return error(errc::config_error, "not a URL (" + parsed.error().message() + ")");
  }
  const boost::urls::url_view& u = *parsed;
  if (ascii_lower(std::string_view(u.scheme())) != "http") {
    return error(errc::config_error, "proxy scheme \"" + std::string(u.scheme()) +
                                         "\" is not supported; use http://host:port");
  }
  proxy_endpoint ep;
  if (u.host_type() == boost::urls::host_type::ipv6) {
    ep.host = u.host_ipv6_address().to_string();
  } else {
    ep.host = ascii_lower(std::string_view(u.host()));
  }
  if (ep.host.empty()) return error(errc::config_error, "the proxy URL names no host");
  ep.port = 80;
  if (u.has_port() && !u.port().empty()) {
    auto port = parse_port(u.port());
    if (!port || *port == 0) {
      return error(errc::config_error, "port \"" + std::string(u.port()) + "\" is not 1..65535");
    }
    ep.port = *port;
  }
  const std::string path(u.encoded_path());
  if (!path.empty() && path != "/") {
    return error(errc::config_error, "a proxy URL has no path (\"" + path + "\")");
  }
  if (u.has_userinfo()) {
    ep.authorization = proxy::basic_authorization(u.user(), u.password());
  }
  return ep;
}

proxy_env read_proxy_env() {
  proxy_env env;
  env.http = read_setting({"http_proxy", "HTTP_PROXY"});
  env.https = read_setting({"https_proxy", "HTTPS_PROXY"});
  std::string used;
  env.no_proxy = getenv_first({"no_proxy", "NO_PROXY"}, used).value_or("");
  return env;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
  const std::string h = ascii_lower(strip_brackets(host));
  const std::string list = ascii_lower(no_proxy);
  std::size_t pos = 0;
  while (pos < list.size()) {
    const auto end = list.find_first_of(", \t", pos);
    const std::string_view entry =
        std::string_view(list).substr(pos, end == std::string::npos ? end : end - pos);
    if (!entry.empty() && entry_matches(entry, h, port)) return true;
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return false;
}

}  // namespace pantry::proxy::detail
