#include "pantry/config/config.h"
#include "pantry/text.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <utility>

namespace pantry::config {
namespace detail {
extern const char kEmbeddedDefaults[];
extern const std::size_t kEmbeddedDefaultsSize;
}  // namespace detail

namespace {

constexpr std::string_view kDefaultsSource = "<embedded defaults>";

// A config file is a page or two of YAML; anything this large is the wrong file, and refusing it
// bounds the parser's time and memory on hostile input.
constexpr std::size_t kMaxInputBytes = 1 << 20;

// Durations are added to clock time points in nanoseconds, which overflow after 292 years.
constexpr std::int64_t kMaxDurationSeconds = 36500LL * 86400;

// Past this many problems the rest are usually consequences of the first ones.
constexpr std::size_t kMaxErrors = 20;

// Quoted values in messages are cut here so one bad line cannot flood a terminal.
constexpr std::size_t kMaxQuotedBytes = 80;

constexpr std::string_view kSizeUnitsHint = "use a number with B, KiB, MiB, GiB or TiB, e.g. 50GiB";
constexpr std::string_view kDurationUnitsHint =
    "use a whole number with s, m, h or d, e.g. 90s, 10m, 7d or 1h30m";
constexpr std::string_view kListenHint = "use HOST:PORT, e.g. 0.0.0.0:8585 or [::1]:8585";
constexpr std::string_view kNameHint = "use lowercase letters, digits, '.', '_' and '-', e.g. pypi";
constexpr std::string_view kPatternExample = "e.g. \"mycorp-*\"";

// Ranges of the whole-number settings.
constexpr unsigned kMaxServerThreads = 256;
constexpr unsigned kMaxIdleConnections = 1024;

using error_list = std::vector<std::string>;

result<config> config_error(std::string msg) {
  return pantry::error(errc::config_error, std::move(msg));
}

// Length of the UTF-8 sequence starting at s[i], or 0 if it is not valid UTF-8.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr std::array<std::uint32_t, 5> kMinForLength = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// Offset of the first byte that is not valid UTF-8, or npos.
std::size_t first_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7F;
}

// `s` made safe to print on one line: control characters and invalid UTF-8 escaped, long text
// cut with "...".
std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (out.size() >= kMaxQuotedBytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_sequence_length(s, i);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (is_control(c) || n == 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  return out;
}

std::string quote(std::string_view s) {
  return "\"" + printable(s) + "\"";
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_lower_alpha(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_alpha(char c) {
  return is_lower_alpha(c) || (c >= 'A' && c <= 'Z');
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

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

struct unit {
  std::string_view name;
  std::uint64_t factor;
};

// Accepted case-insensitively. KB/MB/… are binary here on purpose: see parse_size in config.h.
constexpr std::array<unit, 22> kSizeUnits = {{
    {"", 1},
    {"b", 1},
    {"k", 1ULL << 10},
    {"kb", 1ULL << 10},
    {"kib", 1ULL << 10},
    {"m", 1ULL << 20},
    {"mb", 1ULL << 20},
    {"mib", 1ULL << 20},
    {"g", 1ULL << 30},
    {"gb", 1ULL << 30},
    {"gib", 1ULL << 30},
    {"t", 1ULL << 40},
    {"tb", 1ULL << 40},
    {"tib", 1ULL << 40},
    {"p", 1ULL << 50},
    {"pb", 1ULL << 50},
    {"pib", 1ULL << 50},
    {"e", 1ULL << 60},
    {"eb", 1ULL << 60},
    {"eib", 1ULL << 60},
    {"bytes", 1},
    {"byte", 1},
}};

// Largest first, for format_size.
constexpr std::array<unit, 7> kSizeNames = {{
    {"EiB", 1ULL << 60},
    {"PiB", 1ULL << 50},
    {"TiB", 1ULL << 40},
    {"GiB", 1ULL << 30},
    {"MiB", 1ULL << 20},
    {"KiB", 1ULL << 10},
    {"B", 1},
}};

// Largest first: a duration's parts must come in this order.
constexpr std::array<unit, 4> kDurationUnits = {{
    {"d", 86400},
    {"h", 3600},
    {"m", 60},
    {"s", 1},
}};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The known key closest to `key`, if it is close enough to be a likely typo.
std::optional<std::string_view> nearest(std::string_view key,
                                        std::span<const std::string_view> known) {
  if (key.size() > 64) return std::nullopt;
  std::optional<std::string_view> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (std::string_view k : known) {
    const std::size_t d = edit_distance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  if (!best || best_distance > std::max<std::size_t>(2, best->size() / 3)) return std::nullopt;
  return best;
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (std::string_view s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

constexpr std::array<std::string_view, 7> kTopKeys = {"listen", "data_dir", "server", "upstream",
                                                      "cache",  "pypi",     "oci"};
constexpr std::array<std::string_view, 5> kServerKeys = {
    "threads", "header_timeout", "idle_timeout", "shutdown_grace", "access_log"};
constexpr std::array<std::string_view, 4> kClientKeys = {"connect_timeout", "header_timeout",
                                                         "idle_timeout", "max_idle_connections"};
constexpr std::array<std::string_view, 1> kCacheKeys = {"max_size"};
constexpr std::array<std::string_view, 5> kPypiKeys = {"upstreams", "index_ttl", "negative_ttl",
                                                       "offline", "routes"};
constexpr std::array<std::string_view, 4> kOciKeys = {"default_upstream", "upstreams", "tag_ttl",
                                                      "hosted"};
constexpr std::array<std::string_view, 3> kHostedKeys = {"prefix", "users", "pull_auth"};
constexpr std::array<std::string_view, 2> kUserKeys = {"name", "token"};
constexpr std::array<std::string_view, 3> kUpstreamKeys = {"name", "url", "ca_file"};
constexpr std::array<std::string_view, 5> kOciUpstreamKeys = {"name", "url", "ca_file", "username",
                                                              "password"};
constexpr std::array<std::string_view, 2> kRouteKeys = {"pattern", "upstream"};

// Every settable key by section, for "did you mean cache.max_size?" when a key is in the wrong
// section.
constexpr std::array<std::pair<std::string_view, std::span<const std::string_view>>, 7> kSections =
    {{
        {"", kTopKeys},
        {"server", kServerKeys},
        {"upstream", kClientKeys},
        {"cache", kCacheKeys},
        {"pypi", kPypiKeys},
        {"oci", kOciKeys},
        {"oci.hosted", kHostedKeys},
    }};

enum class url_kind { pypi_index, oci_registry };

// Why `url` is not acceptable as an upstream URL, or nullopt if it is. An OCI base URL may end in
// one '/', which the caller drops.
std::optional<std::string> url_problem(std::string_view url, url_kind kind) {
  const std::string example =
      kind == url_kind::pypi_index ? "https://pypi.org/simple/" : "https://registry-1.docker.io";
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

// Why `s` cannot be a name or path string in the config, or nullopt.
std::optional<std::string> text_problem(std::string_view s) {
  if (first_invalid_utf8(s) != std::string_view::npos) {
    return "is not valid UTF-8; write the text in UTF-8";
  }
  if (std::any_of(s.begin(), s.end(), [](char c) { return is_control(c); })) {
    return "contains a control character; remove it";
  }
  return std::nullopt;
}

// A hosted prefix is the start of a repository name: path components of [a-z0-9._-], each
// beginning with a letter or digit, ending with '/'.
std::optional<std::string> hosted_prefix_problem(std::string_view prefix) {
  constexpr std::string_view hint = "use lowercase path components ending in '/', e.g. local/";
  if (prefix.empty() || prefix.back() != '/') return "does not end with '/'; " + std::string(hint);
  std::string_view rest = prefix.substr(0, prefix.size() - 1);
  while (true) {
    auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty() || !(is_lower_alpha(part[0]) || is_digit(part[0]))) {
      return "has an empty component or one that starts with a symbol; " + std::string(hint);
    }
    if (!std::all_of(part.begin(), part.end(), [](char c) {
          return is_lower_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
        })) {
      return "is not lowercase letters, digits, '.', '_' and '-'; " + std::string(hint);
    }
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return std::nullopt;
}

// A secret whose value is the placeholder to_yaml() prints for hidden secrets.
std::optional<std::string> placeholder_problem(std::string_view value, std::string_view what) {
  if (value != kHiddenSecret) return std::nullopt;
  return quote(value) + " is the placeholder `pantry config show` prints in place of a " +
         std::string(what) + "; put the real " + std::string(what) +
         " here (`pantry config show --secrets` prints the configured one)";
}

std::optional<std::string> user_name_problem(std::string_view name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return is_lower_alpha(c) || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
               c == '-';
      })) {
    return "is not a user name; use letters, digits, '.', '_' and '-', e.g. ci";
  }
  return std::nullopt;
}

std::optional<std::string> upstream_name_problem(std::string_view name) {
  if (name.empty()) return "is empty; " + std::string(kNameHint);
  const bool charset_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return is_lower_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
  });
  if (!charset_ok) return "is not a valid upstream name; " + std::string(kNameHint);
  // The name is a path segment in pantry's file URLs, where "." and ".." mean something else.
  if (name.find_first_not_of('.') == std::string_view::npos) {
    return "is only dots; " + std::string(kNameHint);
  }
  return std::nullopt;
}

// One character (a whole UTF-8 sequence, or one byte) for a message: 'x', or its escape in
// double quotes ("\x01") when it is a control character or not UTF-8.
std::string describe_char(std::string_view ch) {
  const bool plain = ch.size() > 1 || (!is_control(static_cast<unsigned char>(ch[0])) &&
                                       static_cast<unsigned char>(ch[0]) < 0x80);
  return plain ? "'" + std::string(ch) + "'" : quote(ch);
}

// Why `pattern` cannot be a pypi.routes pattern, or nullopt. A pattern is matched against
// PEP 503-normalized names, so it must look like one: a text that could never match is refused
// here rather than silently routing nothing.
std::optional<std::string> route_pattern_problem(std::string_view pattern) {
  if (pattern.empty()) {
    return "is empty; write a glob over normalized project names, " + std::string(kPatternExample);
  }
  const auto glob_or_name_char = [](char c) {
    return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.' || c == '*' || c == '?' ||
           c == '[' || c == ']' || c == '!';
  };
  if (const auto bad = std::find_if_not(pattern.begin(), pattern.end(), glob_or_name_char);
      bad != pattern.end()) {
    const auto i = static_cast<std::size_t>(bad - pattern.begin());
    const std::size_t n = std::max<std::size_t>(1, utf8_sequence_length(pattern, i));
    return "has " + describe_char(pattern.substr(i, n)) +
           ", which is in no project name and means nothing in a glob; use a-z, 0-9, '-', '*', "
           "'?' and [...], " +
           std::string(kPatternExample);
  }
  if (const std::string normal = normalize_project_name(pattern); normal != pattern) {
    return "is not written in PEP 503 normalized form, which is what routes match (lowercase; "
           "each run of '-', '_' and '.' is one '-'); write " +
           quote(normal);
  }
  for (std::size_t i = 0; i < pattern.size();) {
    const char c = pattern[i];
    if (c == ']') return "has a ']' with no '[' before it; remove it or add the '['";
    if (c == '!') return "has a '!' outside [...]; '!' only negates a set, as in [!0-9]";
    if (c != '[') {
      ++i;
      continue;
    }
    const std::size_t body = i + 1 + (i + 1 < pattern.size() && pattern[i + 1] == '!' ? 1 : 0);
    const std::size_t close = pattern.find(']', body);
    if (close == std::string_view::npos) {
      return "has a '[' with no ']' after it; close the set, e.g. \"mycorp-[a-z]*\"";
    }
    const std::string_view set = pattern.substr(body, close - body);
    if (set.empty()) {
      return "has the empty set " + quote(pattern.substr(i, close + 1 - i)) +
             "; list characters in it, e.g. [a-z0-9]";
    }
    if (const std::size_t bad = set.find_first_of("[!*?"); bad != std::string_view::npos) {
      return "has " + describe_char(set.substr(bad, 1)) +
             " inside [...], where only a-z, 0-9 and '-' mean something; e.g. [a-z0-9-]";
    }
    for (std::size_t k = 0; k < set.size();) {
      if (k + 2 >= set.size() || set[k + 1] != '-') {
        ++k;
        continue;
      }
      if (set[k] > set[k + 2]) {
        return "has the backwards range " + quote(set.substr(k, 3)) +
               ", which matches nothing; write it low to high, e.g. [a-z]";
      }
      k += 3;
    }
    i = close + 1;
  }
  if (pattern.front() == '-') {
    return "starts with '-', which no normalized project name does; remove it";
  }
  if (pattern.back() == '-') {
    return "ends with '-', which no normalized project name does; remove it, or end with '*' as "
           "in \"mycorp-*\"";
  }
  return std::nullopt;
}

// Reads one YAML document onto a config: keys it sets replace the config's values. Problems are
// collected (as complete messages) rather than returned, so one run reports all of them.
class overlay {
 public:
  overlay(std::string_view source, config& c) : source_(source), c_(c) {}

  void apply(const YAML::Node& root) {
    if (root.IsNull()) return;
    if (!root.IsMap()) {
      fail(root.Mark(), "(top level)",
           describe(root) + " is " + kind_of(root) +
               ", expected a map of settings; start with keys such as listen:, cache: or pypi:");
      return;
    }
    for_each_key(root, "", kTopKeys,
                 [&](std::string_view key, const YAML::Node& k, const YAML::Node& v) {
                   const std::string path(key);
                   if (key == "listen") {
                     read_listen(k, v, path);
                   } else if (key == "data_dir") {
                     read_data_dir(k, v, path);
                   } else if (key == "server") {
                     read_server(k, v, path);
                   } else if (key == "upstream") {
                     read_client(k, v, path);
                   } else if (key == "cache") {
                     if (!as_map(k, v, path)) return;
                     for_each_key(v, path, kCacheKeys, [&](auto, auto& k2, auto& v2) {
                       read_max_size(k2, v2, path + ".max_size");
                     });
                   } else if (key == "pypi") {
                     read_pypi(k, v, path);
                   } else if (key == "oci") {
                     read_oci(k, v, path);
                   }
                 });
  }

  // Checks that span sections; call after apply().
  void check_cross_references() {
    if (!errors_.empty()) return;
    check_default_upstream();
    check_routes();
    check_credentialed_upstreams();
  }

  const error_list& errors() const { return errors_; }
  std::size_t dropped_errors() const { return dropped_errors_; }

 private:
  // Content pulled with an upstream's credentials is served only to pantry's own users, so such
  // an upstream without users could never be pulled from.
  void check_credentialed_upstreams() {
    if (!c_.oci.hosted.users.empty() || !oci_upstreams_mark_) return;
    for (const auto& u : c_.oci.upstreams) {
      if (u.username.empty()) continue;
      fail(*oci_upstreams_mark_, "oci.upstreams",
           quote(u.name) +
               " has credentials, and what is pulled with them is served only to clients that "
               "log in to pantry; add a user to oci.hosted.users");
      return;
    }
  }

  void check_default_upstream() {
    if (!default_upstream_mark_ && !oci_upstreams_mark_) return;
    const auto& ups = c_.oci.upstreams;
    const bool found = std::any_of(ups.begin(), ups.end(), [&](const oci_upstream& u) {
      return u.name == c_.oci.default_upstream;
    });
    if (found) return;
    std::vector<std::string_view> names;
    for (const auto& u : ups)
      names.push_back(u.name);
    if (default_upstream_mark_) {
      fail(*default_upstream_mark_, "oci.default_upstream",
           quote(c_.oci.default_upstream) +
               " names no upstream in oci.upstreams; set it to one of: " + join(names));
    } else {
      fail(*oci_upstreams_mark_, "oci.default_upstream",
           quote(c_.oci.default_upstream) +
               " (the default) names no upstream in oci.upstreams; add an upstream named " +
               printable(c_.oci.default_upstream) +
               " or set oci.default_upstream to one of: " + join(names));
    }
  }

  // Every route must name one of pypi.upstreams, whether this document set the routes, the
  // upstreams or both.
  void check_routes() {
    if (!route_upstream_marks_ && !pypi_upstreams_mark_) return;
    const auto& ups = c_.pypi.upstreams;
    std::vector<std::string_view> names;
    for (const auto& u : ups)
      names.push_back(u.name);
    for (std::size_t i = 0; i < c_.pypi.routes.size(); ++i) {
      const pypi_route& r = c_.pypi.routes[i];
      if (std::find(names.begin(), names.end(), r.upstream) != names.end()) continue;
      const std::string path = "pypi.routes[" + std::to_string(i) + "].upstream";
      if (route_upstream_marks_) {
        fail((*route_upstream_marks_)[i], path,
             quote(r.upstream) +
                 " names no upstream in pypi.upstreams; set it to one of: " + join(names));
      } else {
        fail(*pypi_upstreams_mark_, path,
             quote(r.upstream) +
                 " (a default route) names no upstream in pypi.upstreams; add an upstream named " +
                 printable(r.upstream) + " or set pypi.routes to routes for: " + join(names));
      }
    }
  }

  std::string location(const YAML::Mark& m) const {
    return std::string(source_) + ":" + std::to_string(std::max(m.line, 0) + 1) + ":" +
           std::to_string(std::max(m.column, 0) + 1);
  }

  void fail(const YAML::Mark& m, std::string_view path, std::string message) {
    if (errors_.size() >= kMaxErrors) {
      ++dropped_errors_;
      return;
    }
    errors_.push_back(location(m) + ": " + std::string(path) + ": " + message);
  }

  // Where an error about a value belongs: a missing value has no position of its own (yaml-cpp
  // puts it at the next token), so point at its key.
  static YAML::Mark mark_of(const YAML::Node& key, const YAML::Node& value) {
    return value.IsNull() ? key.Mark() : value.Mark();
  }

  static std::string kind_of(const YAML::Node& n) {
    if (n.IsMap()) return "a map";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "empty";
    return "a single value";
  }

  // Appends a short flow-style rendering of `n` to `out`, stopping at the quoting limit. The
  // limit also ends recursion through anchors that refer to themselves (`&a [*a]`).
  static void render(const YAML::Node& n, std::string& out) {
    if (out.size() > kMaxQuotedBytes) return;
    if (n.IsScalar()) {
      out += n.Scalar();
    } else if (n.IsMap()) {
      out += '{';
      bool first = true;
      for (auto it = n.begin(); it != n.end() && out.size() <= kMaxQuotedBytes; ++it) {
        if (!first) out += ", ";
        first = false;
        render(it->first, out);
        out += ": ";
        render(it->second, out);
      }
      out += '}';
    } else if (n.IsSequence()) {
      out += '[';
      bool first = true;
      for (auto it = n.begin(); it != n.end() && out.size() <= kMaxQuotedBytes; ++it) {
        if (!first) out += ", ";
        first = false;
        render(*it, out);
      }
      out += ']';
    }
  }

  static std::string describe(const YAML::Node& n) {
    std::string text;
    render(n, text);
    return quote(text);
  }

  // Calls handle(key, key_node, value_node) for each known key of `map`; reports keys that are
  // not scalars, unknown, or repeated.
  template <class Handle>
  void for_each_key(const YAML::Node& map, const std::string& path,
                    std::span<const std::string_view> known, Handle&& handle) {
    std::map<std::string, int, std::less<>> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      if (!k.IsScalar()) {
        fail(k.Mark(), path.empty() ? "(top level)" : path,
             describe(k) + " is " + kind_of(k) + ", not a key name; write key: value");
        continue;
      }
      const std::string& key = k.Scalar();
      const std::string key_path = (path.empty() ? "" : path + ".") + printable(key);
      if (auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1); !inserted) {
        fail(k.Mark(), key_path,
             quote(key) + " is set twice (first on line " + std::to_string(pos->second) +
                 "); remove one of them");
        continue;
      }
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        fail(k.Mark(), key_path, quote(key) + " is not a known key; " + suggest(key, path, known));
        continue;
      }
      handle(std::string_view(key), k, v);
    }
  }

  // In a section, a key that is exactly a key of other sections is most likely misplaced
  // (`header_timeout` under upstream: and server:, `upstreams` at the top level); in a list entry
  // it is more likely a typo of the entry's own keys (`upstreams` in a route).
  static std::string suggest(std::string_view key, const std::string& path,
                             std::span<const std::string_view> known) {
    const bool in_section = std::any_of(kSections.begin(), kSections.end(),
                                        [&](const auto& s) { return s.first == path; });
    if (in_section) {
      if (auto elsewhere = exactly_elsewhere(key, path)) return *elsewhere;
    }
    if (auto near = nearest(key, known)) return "did you mean " + std::string(*near) + "?";
    if (auto elsewhere = exactly_elsewhere(key, path)) return *elsewhere;
    for (const auto& [section, keys] : kSections) {
      if (section == path) continue;
      if (auto near = nearest(key, keys)) {
        return "did you mean " + (section.empty() ? "" : std::string(section) + ".") +
               std::string(*near) + "? (it belongs " +
               (section.empty() ? std::string("at the top level")
                                : "under " + std::string(section) + ":") +
               ")";
      }
    }
    return "known keys here: " + join(known);
  }

  // "did you mean server.idle_timeout or upstream.idle_timeout? (it belongs under server: or
  // upstream:)" for a key that sections other than `path` have, or nullopt.
  static std::optional<std::string> exactly_elsewhere(std::string_view key,
                                                      const std::string& path) {
    std::string keys;
    std::string places;
    for (const auto& [section, section_keys] : kSections) {
      if (section == path) continue;
      if (std::find(section_keys.begin(), section_keys.end(), key) == section_keys.end()) continue;
      const bool first = keys.empty();
      keys += (first ? "" : " or ") + (section.empty() ? "" : std::string(section) + ".") +
              std::string(key);
      places += (first ? "" : " or ") +
                (section.empty() ? std::string("at the top level")
                                 : (first ? "under " : "") + std::string(section) + ":");
    }
    if (keys.empty()) return std::nullopt;
    return "did you mean " + keys + "? (it belongs " + places + ")";
  }

  // True iff `v` is a map to descend into. An empty value (`cache:` with its keys commented out)
  // keeps the defaults.
  bool as_map(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (v.IsMap()) return true;
    if (v.IsNull()) return false;
    fail(mark_of(k, v), path,
         describe(v) + " is " + kind_of(v) + ", expected a map; put its keys on the lines below, " +
             "indented");
    return false;
  }

  // The text of a scalar value, or nullopt after reporting what it is instead.
  std::optional<std::string> as_scalar(const YAML::Node& k, const YAML::Node& v,
                                       const std::string& path, std::string_view expected) {
    if (v.IsScalar()) return v.Scalar();
    if (v.IsNull()) {
      fail(mark_of(k, v), path,
           "\"\" has no value; set " + std::string(expected) +
               ", or remove the key to keep the default");
    } else {
      fail(mark_of(k, v), path,
           describe(v) + " is " + kind_of(v) + ", expected " + std::string(expected) +
               "; write the value on the same line as the key");
    }
    return std::nullopt;
  }

  // A scalar that must be non-empty text without control characters.
  std::optional<std::string> as_text(const YAML::Node& k, const YAML::Node& v,
                                     const std::string& path, std::string_view expected) {
    auto s = as_scalar(k, v, path, expected);
    if (!s) return std::nullopt;
    if (s->empty()) {
      fail(mark_of(k, v), path, "\"\" is empty; set " + std::string(expected));
      return std::nullopt;
    }
    if (auto why = text_problem(*s)) {
      fail(mark_of(k, v), path, quote(*s) + " " + *why);
      return std::nullopt;
    }
    return s;
  }

  void read_listen(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    auto s = as_scalar(k, v, path, "HOST:PORT, e.g. 0.0.0.0:8585");
    if (!s) return;
    auto addr = parse_listen(*s);
    if (!addr) {
      fail(mark_of(k, v), path, addr.error().message);
      return;
    }
    c_.listen = *addr;
  }

  void read_data_dir(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    auto s = as_text(k, v, path, "a directory, e.g. ./pantry-data");
    if (s) c_.data_dir = std::move(*s);
  }

  void read_max_size(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    auto s = as_scalar(k, v, path, "a size, e.g. 50GiB");
    if (!s) return;
    auto size = parse_size(*s);
    if (!size) {
      fail(mark_of(k, v), path, size.error().message);
      return;
    }
    if (*size == 0) {
      fail(mark_of(k, v), path,
           quote(*s) + " is zero, which would cache nothing; set a positive size, e.g. 50GiB");
      return;
    }
    c_.cache.max_size = *size;
  }

  std::optional<std::chrono::seconds> read_duration(const YAML::Node& k, const YAML::Node& v,
                                                    const std::string& path) {
    auto s = as_scalar(k, v, path, "a duration, e.g. 10m");
    if (!s) return std::nullopt;
    auto d = parse_duration(*s);
    if (!d) {
      fail(mark_of(k, v), path, d.error().message);
      return std::nullopt;
    }
    return *d;
  }

  // YAML 1.2 booleans only: YAML 1.1's yes/no/on/off read differently from one tool to the next,
  // so they are refused rather than guessed.
  std::optional<bool> read_bool(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    auto s = as_scalar(k, v, path, "true or false");
    if (!s) return std::nullopt;
    if (*s == "true" || *s == "True" || *s == "TRUE") return true;
    if (*s == "false" || *s == "False" || *s == "FALSE") return false;
    fail(mark_of(k, v), path, quote(*s) + " is not a boolean; use true or false");
    return std::nullopt;
  }

  // A duration that must not be zero; `zero_means` says what zero would do.
  std::optional<std::chrono::seconds> read_positive_duration(const YAML::Node& k,
                                                             const YAML::Node& v,
                                                             const std::string& path,
                                                             std::string_view zero_means,
                                                             std::string_view example) {
    auto d = read_duration(k, v, path);
    if (!d) return std::nullopt;
    if (d->count() == 0) {
      fail(mark_of(k, v), path,
           quote(v.Scalar()) + " is zero, which " + std::string(zero_means) +
               "; set a positive duration, e.g. " + std::string(example));
      return std::nullopt;
    }
    return d;
  }

  // A whole number in [low, high]; `range` says which numbers to use, e.g. "use 1 to 1024".
  std::optional<unsigned> read_count(const YAML::Node& k, const YAML::Node& v,
                                     const std::string& path, unsigned low, unsigned high,
                                     std::string_view range) {
    auto s = as_scalar(k, v, path, "a whole number");
    if (!s) return std::nullopt;
    if (s->starts_with('-') && all_digits(std::string_view(*s).substr(1))) {
      fail(mark_of(k, v), path, quote(*s) + " is negative; " + std::string(range));
      return std::nullopt;
    }
    if (!all_digits(*s)) {
      fail(mark_of(k, v), path, quote(*s) + " is not a whole number; " + std::string(range));
      return std::nullopt;
    }
    std::uint64_t n = 0;
    for (char c : *s) {
      n = n * 10 + static_cast<unsigned>(c - '0');
      if (n > high) break;
    }
    if (n < low || n > high) {
      fail(mark_of(k, v), path, quote(*s) + " is out of range; " + std::string(range));
      return std::nullopt;
    }
    return static_cast<unsigned>(n);
  }

  void read_server(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (!as_map(k, v, path)) return;
    server_config& sc = c_.server;
    for_each_key(
        v, path, kServerKeys,
        [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
          const std::string sub = path + "." + std::string(key);
          if (key == "threads") {
            const std::string range = "use 0 for one thread per CPU core, or a number from 1 to " +
                                      std::to_string(kMaxServerThreads);
            if (auto n = read_count(k2, v2, sub, 0, kMaxServerThreads, range)) sc.threads = *n;
          } else if (key == "header_timeout") {
            if (auto d = read_positive_duration(k2, v2, sub,
                                                "would close every connection before its request "
                                                "arrives",
                                                "30s")) {
              sc.header_timeout = *d;
            }
          } else if (key == "idle_timeout") {
            if (auto d = read_positive_duration(k2, v2, sub,
                                                "would close every keep-alive connection between "
                                                "requests",
                                                "60s")) {
              sc.idle_timeout = *d;
            }
          } else if (key == "shutdown_grace") {
            if (auto d = read_positive_duration(k2, v2, sub,
                                                "would cut off every response in flight when "
                                                "pantry stops",
                                                "10s")) {
              sc.shutdown_grace = *d;
            }
          } else if (key == "access_log") {
            if (auto b = read_bool(k2, v2, sub)) sc.access_log = *b;
          }
        });
  }

  // The `upstream:` section: the client every upstream is fetched with.
  void read_client(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (!as_map(k, v, path)) return;
    upstream_config& uc = c_.upstream;
    for_each_key(
        v, path, kClientKeys,
        [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
          const std::string sub = path + "." + std::string(key);
          if (key == "connect_timeout") {
            if (auto d =
                    read_positive_duration(k2, v2, sub, "would fail every connection", "10s")) {
              uc.connect_timeout = *d;
            }
          } else if (key == "header_timeout") {
            if (auto d = read_positive_duration(k2, v2, sub, "would fail every upstream request",
                                                "30s")) {
              uc.header_timeout = *d;
            }
          } else if (key == "idle_timeout") {
            if (auto d = read_positive_duration(k2, v2, sub, "would fail every download", "30s")) {
              uc.idle_timeout = *d;
            }
          } else if (key == "max_idle_connections") {
            const std::string range =
                "use a number from 1 to " + std::to_string(kMaxIdleConnections) + ", e.g. 16";
            if (auto n = read_count(k2, v2, sub, 1, kMaxIdleConnections, range)) {
              uc.max_idle_connections = *n;
            }
          }
        });
  }

  void read_pypi(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (!as_map(k, v, path)) return;
    for_each_key(v, path, kPypiKeys,
                 [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
                   const std::string sub = path + "." + std::string(key);
                   if (key == "upstreams") {
                     auto ups = read_upstreams<pypi_upstream>(k2, v2, sub, url_kind::pypi_index);
                     if (ups) {
                       c_.pypi.upstreams = std::move(*ups);
                       pypi_upstreams_mark_ = k2.Mark();
                     }
                   } else if (key == "index_ttl") {
                     if (auto d = read_duration(k2, v2, sub)) c_.pypi.index_ttl = *d;
                   } else if (key == "negative_ttl") {
                     if (auto d = read_duration(k2, v2, sub)) c_.pypi.negative_ttl = *d;
                   } else if (key == "offline") {
                     if (auto b = read_bool(k2, v2, sub)) c_.pypi.offline = *b;
                   } else if (key == "routes") {
                     read_routes(k2, v2, sub);
                   }
                 });
  }

  void read_oci(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (!as_map(k, v, path)) return;
    for_each_key(
        v, path, kOciKeys, [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
          const std::string sub = path + "." + std::string(key);
          if (key == "upstreams") {
            auto ups = read_upstreams<oci_upstream>(k2, v2, sub, url_kind::oci_registry);
            if (ups) {
              c_.oci.upstreams = std::move(*ups);
              oci_upstreams_mark_ = k2.Mark();
            }
          } else if (key == "default_upstream") {
            auto s = as_text(k2, v2, sub, "the name of one of oci.upstreams, e.g. docker.io");
            if (s) {
              c_.oci.default_upstream = std::move(*s);
              default_upstream_mark_ = mark_of(k2, v2);
            }
          } else if (key == "tag_ttl") {
            if (auto d = read_duration(k2, v2, sub)) c_.oci.tag_ttl = *d;
          } else if (key == "hosted") {
            read_hosted(k2, v2, sub);
          }
        });
  }

  void read_hosted(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    if (!as_map(k, v, path)) return;
    for_each_key(v, path, kHostedKeys,
                 [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
                   const std::string sub = path + "." + std::string(key);
                   if (key == "prefix") {
                     auto s = as_scalar(k2, v2, sub,
                                        "a repository name prefix ending in '/', e.g. local/");
                     if (!s) return;
                     if (auto why = hosted_prefix_problem(*s)) {
                       fail(mark_of(k2, v2), sub, quote(*s) + " " + *why);
                       return;
                     }
                     c_.oci.hosted.prefix = std::move(*s);
                   } else if (key == "users") {
                     read_users(k2, v2, sub);
                   } else if (key == "pull_auth") {
                     if (auto b = read_bool(k2, v2, sub)) c_.oci.hosted.pull_auth = *b;
                   }
                 });
  }

  // oci.hosted.users, replacing the current list if nothing in it is wrong.
  void read_users(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    constexpr std::string_view example = "[{name: ci, token: \"a-long-random-secret\"}]";
    if (!v.IsSequence()) {
      const std::string what = v.IsNull() ? "\"\" has no value" : describe(v) + " is " + kind_of(v);
      fail(mark_of(k, v), path, what + ", expected a list of users, e.g. " + std::string(example));
      return;
    }
    const std::size_t errors_before = errors_.size() + dropped_errors_;
    std::vector<oci_user> out;
    std::size_t index = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++index) {
      const YAML::Node item = *it;
      const std::string item_path = path + "[" + std::to_string(index) + "]";
      if (!item.IsMap()) {
        fail(item.IsNull() ? k.Mark() : item.Mark(), item_path,
             (item.IsNull() ? std::string("\"\"") : describe(item)) + " is " + kind_of(item) +
                 ", expected a map with name and token, e.g. " + std::string(example));
        continue;
      }
      oci_user u;
      for_each_key(item, item_path, kUserKeys,
                   [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
                     const std::string sub = item_path + "." + std::string(key);
                     auto s = as_scalar(k2, v2, sub, key == "name" ? "a user name" : "a token");
                     if (!s) return;
                     if (key == "name") {
                       if (auto why = user_name_problem(*s)) {
                         fail(mark_of(k2, v2), sub, quote(*s) + " " + *why);
                         return;
                       }
                       for (const auto& other : out) {
                         if (other.name == *s) {
                           fail(mark_of(k2, v2), sub,
                                quote(*s) + " is listed twice; give each user its own name");
                           return;
                         }
                       }
                       u.name = std::move(*s);
                     } else {
                       if (auto why = placeholder_problem(*s, "token")) {
                         fail(mark_of(k2, v2), sub, *why);
                         return;
                       }
                       if (s->size() < 16) {
                         // The value is a secret: never echo it.
                         fail(mark_of(k2, v2), sub,
                              "the token has " + std::to_string(s->size()) +
                                  " characters; use at least 16, e.g. the output of "
                                  "`openssl rand -hex 24`");
                         return;
                       }
                       u.token = std::move(*s);
                     }
                   });
      if (u.name.empty() || u.token.empty()) {
        if (errors_.size() + dropped_errors_ == errors_before) {
          fail(item.Mark(), item_path,
               "a user needs both name and token, e.g. " + std::string(example));
        }
        continue;
      }
      out.push_back(std::move(u));
    }
    if (errors_.size() + dropped_errors_ != errors_before) return;
    c_.oci.hosted.users = std::move(out);
  }

  // pypi.routes, replacing the current routes if nothing in the list is wrong. Whether each
  // route's upstream exists is checked in check_routes(), once the upstreams are known.
  void read_routes(const YAML::Node& k, const YAML::Node& v, const std::string& path) {
    constexpr std::string_view example = "[{pattern: \"mycorp-*\", upstream: internal}]";
    if (!v.IsSequence()) {
      const std::string what = v.IsNull() ? "\"\" has no value" : describe(v) + " is " + kind_of(v);
      fail(mark_of(k, v), path,
           what +
               ", expected a list of routes; write [] for none, or one \"- pattern: ...\" entry "
               "per route, e.g. " +
               std::string(example));
      return;
    }
    const std::size_t errors_before = errors_.size() + dropped_errors_;
    std::vector<pypi_route> out;
    std::vector<YAML::Mark> upstream_marks;
    std::map<std::string, std::pair<std::size_t, int>, std::less<>> first_use;
    std::size_t index = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++index) {
      const YAML::Node item = *it;
      const std::string item_path = path + "[" + std::to_string(index) + "]";
      if (!item.IsMap()) {
        fail(item.IsNull() ? k.Mark() : item.Mark(), item_path,
             (item.IsNull() ? std::string("\"\"") : describe(item)) + " is " + kind_of(item) +
                 ", expected a map with pattern and upstream; write it as \"- pattern: ...\" " +
                 "with \"upstream: ...\" on the next line, indented");
        continue;
      }
      pypi_route route;
      bool has_pattern = false;
      bool has_upstream = false;
      YAML::Mark pattern_mark = item.Mark();
      YAML::Mark upstream_mark = item.Mark();
      for_each_key(item, item_path, kRouteKeys,
                   [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
                     const std::string sub = item_path + "." + std::string(key);
                     if (key == "pattern") {
                       has_pattern = true;
                       auto s = as_text(
                           k2, v2, sub,
                           "a glob over normalized project names, " + std::string(kPatternExample));
                       if (!s) return;
                       if (auto why = route_pattern_problem(*s)) {
                         fail(mark_of(k2, v2), sub, quote(*s) + " " + *why);
                         return;
                       }
                       route.pattern = std::move(*s);
                       pattern_mark = mark_of(k2, v2);
                     } else if (key == "upstream") {
                       has_upstream = true;
                       auto s =
                           as_text(k2, v2, sub, "the name of one of pypi.upstreams, e.g. pypi");
                       if (!s) return;
                       route.upstream = std::move(*s);
                       upstream_mark = mark_of(k2, v2);
                     }
                   });
      if (!has_pattern) {
        fail(item.Mark(), item_path + ".pattern",
             describe(item) + " has no pattern; add pattern: followed by a glob over normalized " +
                 "project names, " + std::string(kPatternExample));
      }
      if (!has_upstream) {
        fail(item.Mark(), item_path + ".upstream",
             describe(item) +
                 " has no upstream; add upstream: followed by the name of one of pypi.upstreams");
      }
      if (!route.pattern.empty()) {
        auto [pos, inserted] =
            first_use.emplace(route.pattern, std::pair{index, pattern_mark.line + 1});
        if (!inserted) {
          fail(pattern_mark, item_path + ".pattern",
               quote(route.pattern) + " is already the pattern of " + path + "[" +
                   std::to_string(pos->second.first) + "] (line " +
                   std::to_string(pos->second.second) +
                   "), which wins as the first match; remove one of them");
        }
      }
      out.push_back(std::move(route));
      upstream_marks.push_back(upstream_mark);
    }
    if (errors_.size() + dropped_errors_ != errors_before) return;
    c_.pypi.routes = std::move(out);
    route_upstream_marks_ = std::move(upstream_marks);
  }

  // A whole upstream list, or nullopt if anything in it is wrong.
  template <class Upstream>
  std::optional<std::vector<Upstream>> read_upstreams(const YAML::Node& k, const YAML::Node& v,
                                                      const std::string& path, url_kind kind) {
    const std::string example = kind == url_kind::pypi_index
                                    ? "[{name: pypi, url: \"https://pypi.org/simple/\"}]"
                                    : "[{name: docker.io, url: \"https://registry-1.docker.io\"}]";
    if (!v.IsSequence()) {
      const std::string what = v.IsNull() ? "\"\" has no value" : describe(v) + " is " + kind_of(v);
      fail(mark_of(k, v), path,
           what +
               ", expected a list of upstreams; write one \"- name: ...\" entry per upstream, "
               "e.g. " +
               example);
      return std::nullopt;
    }
    if (v.size() == 0) {
      fail(mark_of(k, v), path,
           "\"[]\" is an empty list; list at least one upstream, e.g. " + example);
      return std::nullopt;
    }
    const std::size_t errors_before = errors_.size() + dropped_errors_;
    std::vector<Upstream> out;
    std::map<std::string, std::pair<std::size_t, int>, std::less<>> first_use;
    std::size_t index = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++index) {
      const YAML::Node item = *it;
      const std::string item_path = path + "[" + std::to_string(index) + "]";
      if (!item.IsMap()) {
        fail(item.IsNull() ? k.Mark() : item.Mark(), item_path,
             (item.IsNull() ? std::string("\"\"") : describe(item)) + " is " + kind_of(item) +
                 ", expected a map with name and url; write it as \"- name: ...\" with " +
                 "\"url: ...\" on the next line, indented");
        continue;
      }
      Upstream up;
      bool has_name = false;
      bool has_url = false;
      YAML::Mark name_mark = item.Mark();
      const std::span<const std::string_view> keys =
          kind == url_kind::oci_registry ? std::span<const std::string_view>(kOciUpstreamKeys)
                                         : std::span<const std::string_view>(kUpstreamKeys);
      for_each_key(item, item_path, keys,
                   [&](std::string_view key, const YAML::Node& k2, const YAML::Node& v2) {
                     const std::string sub = item_path + "." + std::string(key);
                     if (key == "name") {
                       has_name = true;
                       auto s = as_scalar(k2, v2, sub, "a name, e.g. pypi");
                       if (!s) return;
                       if (auto why = upstream_name_problem(*s)) {
                         fail(mark_of(k2, v2), sub, quote(*s) + " " + *why);
                         return;
                       }
                       up.name = std::move(*s);
                       name_mark = mark_of(k2, v2);
                     } else if (key == "url") {
                       has_url = true;
                       auto s = as_scalar(k2, v2, sub, "a URL");
                       if (!s) return;
                       if (auto why = url_problem(*s, kind)) {
                         fail(mark_of(k2, v2), sub, quote(*s) + " " + *why);
                         return;
                       }
                       if (kind == url_kind::oci_registry && s->ends_with('/')) s->pop_back();
                       up.url = std::move(*s);
                     } else if (key == "ca_file") {
                       if (auto s = as_text(k2, v2, sub, "the path of a PEM file")) {
                         up.ca_file = std::move(*s);
                       }
                     } else if constexpr (std::is_same_v<Upstream, oci_upstream>) {
                       auto s = as_scalar(
                           k2, v2, sub, key == "username" ? "a user name" : "a password or token");
                       if (!s) return;
                       if (key == "password") {
                         if (auto why = placeholder_problem(*s, "password")) {
                           fail(mark_of(k2, v2), sub, *why);
                           return;
                         }
                       }
                       (key == "username" ? up.username : up.password) = std::move(*s);
                     }
                   });
      if constexpr (std::is_same_v<Upstream, oci_upstream>) {
        if (up.username.empty() != up.password.empty()) {
          // Never render the item: it holds a secret.
          fail(item.Mark(), item_path + (up.username.empty() ? ".username" : ".password"),
               std::string("the upstream ") + quote(up.name) + " has " +
                   (up.username.empty() ? "a password but no username"
                                        : "a username but no password") +
                   "; give both, or neither for anonymous pulls");
        }
      }
      if (!has_name) {
        fail(item.Mark(), item_path + ".name",
             describe(item) + " has no name; add name: followed by a name (" +
                 std::string(kNameHint.substr(4)) + ")");
      }
      if (!has_url) {
        fail(item.Mark(), item_path + ".url",
             describe(item) + " has no url; add url: followed by the upstream's URL");
      }
      if (!up.name.empty()) {
        auto [pos, inserted] = first_use.emplace(up.name, std::pair{index, name_mark.line + 1});
        if (!inserted) {
          fail(name_mark, item_path + ".name",
               quote(up.name) + " is already the name of " + path + "[" +
                   std::to_string(pos->second.first) + "] (line " +
                   std::to_string(pos->second.second) + "); give each upstream its own name");
        }
      }
      out.push_back(std::move(up));
    }
    if (errors_.size() + dropped_errors_ != errors_before) return std::nullopt;
    return out;
  }

  std::string_view source_;
  config& c_;
  error_list errors_;
  std::size_t dropped_errors_ = 0;
  std::optional<YAML::Mark> default_upstream_mark_;
  std::optional<YAML::Mark> oci_upstreams_mark_;
  std::optional<YAML::Mark> pypi_upstreams_mark_;
  // Where each of pypi.routes names its upstream, when this document set the routes.
  std::optional<std::vector<YAML::Mark>> route_upstream_marks_;
};

// Notes where a document starts and ignores its content.
class document_start_finder final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;

  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Where `text` goes on after its first YAML document, or nullopt if it ends there. Not
// YAML::LoadAll: yaml-cpp 0.7 does not consume a token that cannot start a node (a ',' at the top
// level), and LoadAll then makes empty documents from it forever; YAML::Load silently stops there.
std::optional<YAML::Mark> after_first_document(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_start_finder first;
  if (!parser.HandleNextDocument(first)) return std::nullopt;
  document_start_finder second;
  if (!parser.HandleNextDocument(second)) return std::nullopt;
  return second.start.value_or(YAML::Mark::null_mark());
}

// 1-based line and column of byte `offset` in `text`.
std::pair<std::size_t, std::size_t> line_col(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

// The text of 0-based line `line`, without its newline.
std::string_view line_text(std::string_view text, int line) {
  std::size_t start = 0;
  for (int i = 0; i < line; ++i) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  const std::size_t end = text.find('\n', start);
  std::string_view out = text.substr(start, end == std::string_view::npos ? end : end - start);
  if (out.ends_with('\r')) out.remove_suffix(1);
  return out;
}

// Parses `yaml` laid over `base`. Never throws.
result<config> parse_over(std::string_view yaml, std::string_view source, const config& base) {
  const std::string src(source);
  if (yaml.size() > kMaxInputBytes) {
    return config_error(src + ":1:1: (file): \"" + std::to_string(yaml.size()) +
                        " bytes\" is too large for a config file (the limit is " +
                        format_size(kMaxInputBytes) + "); check that this is the right file");
  }
  // Refused before yaml-cpp sees it: NUL bytes make yaml-cpp guess UTF-16/32, and strings that
  // are not UTF-8 could not be written back by to_yaml().
  if (const std::size_t bad = std::min(yaml.find('\0'), first_invalid_utf8(yaml));
      bad != std::string_view::npos) {
    const auto [line, col] = line_col(yaml, bad);
    return config_error(src + ":" + std::to_string(line) + ":" + std::to_string(col) +
                        ": (file): " + quote(line_text(yaml, static_cast<int>(line - 1))) +
                        " has a byte that is not UTF-8 text; save the file as UTF-8");
  }
  try {
    const std::string text(yaml);
    YAML::Node root;
    std::optional<YAML::Mark> rest;
    try {
      root = YAML::Load(text);
      rest = after_first_document(text);
    } catch (const YAML::ParserException& e) {
      return config_error(src + ":" + std::to_string(std::max(e.mark.line, 0) + 1) + ":" +
                          std::to_string(std::max(e.mark.column, 0) + 1) + ": (syntax): " +
                          quote(line_text(yaml, e.mark.line)) + " is not valid YAML: " + e.msg +
                          "; check the indentation, colons, brackets and quotes here and on the "
                          "line before");
    }
    if (rest) {
      const std::string_view line = line_text(yaml, rest->line);
      const std::string where = src + ":" + std::to_string(std::max(rest->line, 0) + 1) + ":" +
                                std::to_string(std::max(rest->column, 0) + 1);
      if (line.starts_with("---")) {
        return config_error(where + ": (file): " + quote(line) +
                            " starts a second YAML document; a config is one document, so "
                            "remove the \"---\" and merge the settings into the first");
      }
      return config_error(where + ": (syntax): " + quote(line) +
                          " is not valid YAML: unexpected text after the end of the document; "
                          "check for a stray ',' or indentation that ends the settings early");
    }
    config c = base;
    overlay o(source, c);
    o.apply(root);
    o.check_cross_references();
    if (!o.errors().empty()) {
      std::string msg;
      for (const auto& e : o.errors()) {
        if (!msg.empty()) msg += '\n';
        msg += e;
      }
      if (o.dropped_errors() > 0) {
        msg += "\n" + src + ": " + std::to_string(o.dropped_errors()) + " more errors not shown";
      }
      return config_error(std::move(msg));
    }
    return c;
  } catch (const YAML::Exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()) +
                        "; this is a bug in pantry, please report it with the file");
  } catch (const std::exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()));
  }
}

std::string secret(const std::string& value, secrets shown) {
  return shown == secrets::shown ? value : std::string(kHiddenSecret);
}

template <class Upstream>
void emit_upstreams(YAML::Emitter& out, const std::vector<Upstream>& ups, secrets shown) {
  out << YAML::Key << "upstreams" << YAML::Value;
  if (ups.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
    return;
  }
  out << YAML::BeginSeq;
  for (const auto& u : ups) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << u.name;
    out << YAML::Key << "url" << YAML::Value << u.url;
    if (u.ca_file) out << YAML::Key << "ca_file" << YAML::Value << *u.ca_file;
    if constexpr (std::is_same_v<Upstream, oci_upstream>) {
      if (!u.username.empty()) {
        out << YAML::Key << "username" << YAML::Value << u.username;
        out << YAML::Key << "password" << YAML::Value << secret(u.password, shown);
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
}

}  // namespace

std::string listen_address::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string_view embedded_defaults() {
  return {detail::kEmbeddedDefaults, detail::kEmbeddedDefaultsSize};
}

config defaults() {
  static const config kDefaults = [] {
    auto c = parse_over(embedded_defaults(), kDefaultsSource, config{});
    // The defaults are part of the binary: if they do not parse, the build is broken.
    if (!c) {
      std::fprintf(stderr, "pantry: the embedded default config is invalid:\n%s\n",
                   c.error().message.c_str());
      std::abort();
    }
    const config& d = *c;
    const bool timeouts_set =
        d.server.header_timeout.count() > 0 && d.server.idle_timeout.count() > 0 &&
        d.server.shutdown_grace.count() > 0 && d.upstream.connect_timeout.count() > 0 &&
        d.upstream.header_timeout.count() > 0 && d.upstream.idle_timeout.count() > 0;
    if (d.listen.host.empty() || d.data_dir.empty() || d.cache.max_size == 0 ||
        d.pypi.upstreams.empty() || d.oci.upstreams.empty() || d.oci.default_upstream.empty() ||
        d.oci.hosted.prefix.empty() || !timeouts_set || d.upstream.max_idle_connections == 0) {
      std::fprintf(stderr, "pantry: the embedded default config leaves a required key unset\n");
      std::abort();
    }
    return d;
  }();
  return kDefaults;
}

result<config> parse(std::string_view yaml, std::string_view source) {
  try {
    return parse_over(yaml, source, defaults());
  } catch (const std::exception& e) {
    return config_error(std::string(source) + ": cannot read the config: " + e.what());
  }
}

result<config> load_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    return config_error(path + ": cannot open the config file: " + std::strerror(err) +
                        "; check the path and its permissions");
  }
  std::string text;
  std::array<char, 16384> buf;
  int read_errno = 0;
  while (text.size() <= kMaxInputBytes) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
    text.append(buf.data(), n);
    if (n < buf.size()) {
      if (std::ferror(f)) read_errno = errno;
      break;
    }
  }
  std::fclose(f);
  if (read_errno != 0) {
    return config_error(path + ": cannot read the config file: " + std::strerror(read_errno) +
                        "; give the path of a YAML file");
  }
  return parse(text, path);
}

std::string to_yaml(const config& c, secrets shown) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << c.listen.str();
  out << YAML::Key << "data_dir" << YAML::Value << c.data_dir;
  out << YAML::Key << "server" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "threads" << YAML::Value << c.server.threads;
  out << YAML::Key << "header_timeout" << YAML::Value << format_duration(c.server.header_timeout);
  out << YAML::Key << "idle_timeout" << YAML::Value << format_duration(c.server.idle_timeout);
  out << YAML::Key << "shutdown_grace" << YAML::Value << format_duration(c.server.shutdown_grace);
  out << YAML::Key << "access_log" << YAML::Value << c.server.access_log;
  out << YAML::EndMap;
  out << YAML::Key << "upstream" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "connect_timeout" << YAML::Value
      << format_duration(c.upstream.connect_timeout);
  out << YAML::Key << "header_timeout" << YAML::Value << format_duration(c.upstream.header_timeout);
  out << YAML::Key << "idle_timeout" << YAML::Value << format_duration(c.upstream.idle_timeout);
  out << YAML::Key << "max_idle_connections" << YAML::Value << c.upstream.max_idle_connections;
  out << YAML::EndMap;
  out << YAML::Key << "cache" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_size" << YAML::Value << format_size(c.cache.max_size);
  out << YAML::EndMap;
  out << YAML::Key << "pypi" << YAML::Value << YAML::BeginMap;
  emit_upstreams(out, c.pypi.upstreams, shown);
  out << YAML::Key << "index_ttl" << YAML::Value << format_duration(c.pypi.index_ttl);
  out << YAML::Key << "negative_ttl" << YAML::Value << format_duration(c.pypi.negative_ttl);
  out << YAML::Key << "offline" << YAML::Value << c.pypi.offline;
  out << YAML::Key << "routes" << YAML::Value;
  if (c.pypi.routes.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
  } else {
    out << YAML::BeginSeq;
    for (const pypi_route& r : c.pypi.routes) {
      out << YAML::BeginMap;
      out << YAML::Key << "pattern" << YAML::Value << r.pattern;
      out << YAML::Key << "upstream" << YAML::Value << r.upstream;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  out << YAML::Key << "oci" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "default_upstream" << YAML::Value << c.oci.default_upstream;
  emit_upstreams(out, c.oci.upstreams, shown);
  out << YAML::Key << "tag_ttl" << YAML::Value << format_duration(c.oci.tag_ttl);
  out << YAML::Key << "hosted" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "prefix" << YAML::Value << c.oci.hosted.prefix;
  out << YAML::Key << "users" << YAML::Value;
  if (c.oci.hosted.users.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
  } else {
    out << YAML::BeginSeq;
    for (const oci_user& u : c.oci.hosted.users) {
      out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << u.name;
      out << YAML::Key << "token" << YAML::Value << secret(u.token, shown) << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::Key << "pull_auth" << YAML::Value << c.oci.hosted.pull_auth;
  out << YAML::EndMap;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

result<std::uint64_t> parse_size(std::string_view text) {
  const std::string q = quote(text);
  if (text.empty())
    return pantry::error(errc::config_error, q + " is empty; " + std::string(kSizeUnitsHint));
  if (text.front() == '-') {
    return pantry::error(errc::config_error, q + " is negative; " + std::string(kSizeUnitsHint));
  }
  std::size_t i = 0;
  unsigned __int128 whole = 0;
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  const auto too_large = [&] {
    return pantry::error(errc::config_error, q + " is too large; the largest size is " +
                                                 std::to_string(kMax) +
                                                 " bytes (just under 16EiB)");
  };
  while (i < text.size() && is_digit(text[i])) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > kMax) return too_large();
    ++i;
  }
  if (i == 0) {
    return pantry::error(errc::config_error, q + " is not a size; " + std::string(kSizeUnitsHint));
  }
  unsigned __int128 fraction = 0;
  unsigned __int128 scale = 1;
  const bool has_point = i < text.size() && text[i] == '.';
  if (has_point) {
    ++i;
    const std::size_t start = i;
    while (i < text.size() && is_digit(text[i])) {
      if (i - start >= 18) {
        return pantry::error(errc::config_error,
                             q + " has too many decimal places; use at most 18, e.g. 1.5GiB");
      }
      fraction = fraction * 10 + static_cast<unsigned>(text[i] - '0');
      scale *= 10;
      ++i;
    }
    if (i == start) {
      return pantry::error(errc::config_error,
                           q + " has no digits after the decimal point; e.g. 1.5GiB");
    }
  }
  const std::string_view suffix = text.substr(i);
  const auto u = std::find_if(kSizeUnits.begin(), kSizeUnits.end(),
                              [&](const unit& x) { return ascii_iequals(x.name, suffix); });
  if (u == kSizeUnits.end()) {
    const bool plain_word = std::all_of(suffix.begin(), suffix.end(), is_alpha);
    return pantry::error(
        errc::config_error,
        q + (plain_word ? " has an unknown unit " + quote(suffix) : std::string(" is not a size")) +
            "; " + std::string(kSizeUnitsHint));
  }
  if (has_point && u->factor == 1) {
    return pantry::error(errc::config_error,
                         q + " is not a whole number of bytes; drop the fraction or use a larger "
                             "unit, e.g. 1.5KiB");
  }
  // A fraction of a unit rounds down to whole bytes.
  const unsigned __int128 bytes = whole * u->factor + fraction * u->factor / scale;
  if (bytes > kMax) return too_large();
  return static_cast<std::uint64_t>(bytes);
}

result<std::chrono::seconds> parse_duration(std::string_view text) {
  const std::string q = quote(text);
  const auto fail = [&](std::string why) {
    return pantry::error(errc::config_error, q + " " + why);
  };
  if (text.empty()) return fail("is empty; " + std::string(kDurationUnitsHint));
  if (text.front() == '-') return fail("is negative; " + std::string(kDurationUnitsHint));
  if (all_digits(text)) {
    const std::string n(text.substr(0, 12));
    return fail("has no unit; add one: " + n + "s (seconds), " + n + "m, " + n + "h or " + n + "d");
  }
  std::int64_t total = 0;
  std::size_t next_unit = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    std::int64_t n = 0;
    while (i < text.size() && is_digit(text[i])) {
      if (n > kMaxDurationSeconds) break;
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i < text.size() && is_digit(text[i])) {
      return fail("is too long; the longest duration is " +
                  format_duration(std::chrono::seconds(kMaxDurationSeconds)) + " (100 years)");
    }
    if (i == start) {
      return fail("is not a duration; " + std::string(kDurationUnitsHint));
    }
    if (i < text.size() && text[i] == '.') {
      return fail("is not a whole number; combine units instead, e.g. 1h30m rather than 1.5h");
    }
    const std::size_t unit_start = i;
    while (i < text.size() && is_alpha(text[i]))
      ++i;
    const std::string_view suffix = text.substr(unit_start, i - unit_start);
    if (suffix.empty()) {
      if (i == text.size()) {
        return fail("ends in a number without a unit; add s, m, h or d, e.g. 1h30m");
      }
      return fail("is not a duration; " + std::string(kDurationUnitsHint));
    }
    const auto u = std::find_if(kDurationUnits.begin(), kDurationUnits.end(),
                                [&](const unit& x) { return x.name == suffix; });
    if (u == kDurationUnits.end()) {
      return fail("has an unknown unit " + quote(suffix) + "; " + std::string(kDurationUnitsHint));
    }
    const auto rank = static_cast<std::size_t>(u - kDurationUnits.begin());
    if (rank < next_unit) {
      return fail(
          "repeats a unit or puts a smaller one first; write each unit once, largest "
          "first, e.g. 1h30m");
    }
    next_unit = rank + 1;
    total += n * static_cast<std::int64_t>(u->factor);
    if (n > kMaxDurationSeconds || total > kMaxDurationSeconds) {
      return fail("is too long; the longest duration is " +
                  format_duration(std::chrono::seconds(kMaxDurationSeconds)) + " (100 years)");
    }
  }
  return std::chrono::seconds(total);
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0B";
  for (const unit& u : kSizeNames) {
    if (bytes % u.factor == 0) return std::to_string(bytes / u.factor) + std::string(u.name);
  }
  return std::to_string(bytes) + "B";
}

std::string format_duration(std::chrono::seconds d) {
  const std::int64_t count = d.count();
  if (count == 0) return "0s";
  std::string out = count < 0 ? "-" : "";
  // Through unsigned so that the most negative value has a magnitude.
  std::uint64_t left =
      count < 0 ? 0 - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);
  for (const unit& u : kDurationUnits) {
    if (left >= u.factor) {
      out += std::to_string(left / u.factor) + std::string(u.name);
      left %= u.factor;
    }
  }
  return out;
}

namespace {

// The length of the "[...]" set that starts at pattern[i] == '[', or 0 if no ']' closes it.
// `last_close` is pattern.rfind(']'), so an unclosed '[' costs no scan.
std::size_t set_length(std::string_view pattern, std::size_t i, std::size_t last_close) {
  std::size_t body = i + 1;
  if (body < pattern.size() && pattern[body] == '!') ++body;
  // A ']' first in the set is a member, not its end.
  const std::size_t search_from = body + 1;
  if (last_close == std::string_view::npos || last_close < search_from) return 0;
  return pattern.find(']', search_from) - i + 1;
}

// Whether `c` is in `set`, a whole "[...]" or "[!...]" as set_length() measured it.
bool set_contains(std::string_view set, char c) {
  set = set.substr(1, set.size() - 2);
  const bool negated = set.starts_with('!');
  if (negated) set.remove_prefix(1);
  const auto u = [](char x) { return static_cast<unsigned char>(x); };
  bool found = false;
  for (std::size_t k = 0; k < set.size() && !found;) {
    if (k + 2 < set.size() && set[k + 1] == '-') {
      found = u(set[k]) <= u(c) && u(c) <= u(set[k + 2]);
      k += 3;
    } else {
      found = set[k] == c;
      ++k;
    }
  }
  return found != negated;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view name) {
  const std::size_t last_close = pattern.rfind(']');
  std::size_t p = 0;
  std::size_t n = 0;
  // Where to resume after the last '*' seen: the pattern after it, and the name position it
  // has consumed up to. Each '?' or set consumes exactly one byte, so retrying only from the last
  // '*' finds a match if there is one.
  std::size_t star_p = std::string_view::npos;
  std::size_t star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size()) {
      const char pc = pattern[p];
      if (pc == '*') {
        star_p = ++p;
        star_n = n;
        continue;
      }
      std::size_t step = 1;
      bool matched = false;
      if (pc == '?') {
        matched = true;
      } else if (pc == '[' && (step = set_length(pattern, p, last_close)) != 0) {
        matched = set_contains(pattern.substr(p, step), name[n]);
      } else {
        step = 1;
        matched = pc == name[n];
      }
      if (matched) {
        p += step;
        ++n;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
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
