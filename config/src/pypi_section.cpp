// The pypi: section: the PyPI indexes pantry proxies, how long their answers are kept, the
// routes that pin projects to one of them, and the indexes pantry hosts itself.

#include "chars.h"
#include "emit.h"
#include "message.h"
#include "section.h"
#include "upstreams.h"

#include "pantry/text.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>

namespace pantry::config::detail {
namespace {

constexpr std::string_view kPatternExample = "e.g. \"mycorp-*\"";

constexpr std::array<std::string_view, 6> kPypiKeys = {"upstreams", "index_ttl", "negative_ttl",
                                                       "offline",   "routes",    "hosted"};
constexpr std::array<std::string_view, 2> kRouteKeys = {"pattern", "upstream"};
constexpr std::array<std::string_view, 3> kHostedKeys = {"name", "uploaders", "merge"};

constexpr std::string_view kHostedExample = "[{name: team, uploaders: [ci]}]";

// The first path segments pantry's own routes take: a hosted index named like one would never
// see its uploads.
constexpr std::array<std::string_view, 8> kReservedNames = {
    "simple", "files", "pypi", "v2", "auth", "api", "healthz", "metrics"};

// Why `name` cannot be a hosted index's name (its URL prefix /<name>/), or nullopt.
std::optional<std::string> hosted_name_problem(std::string_view name) {
  constexpr std::string_view hint = "use lowercase letters, digits, '.', '_' and '-', e.g. team";
  if (name.empty() || name.size() > 64)
    return "is not 1 to 64 characters long; " + std::string(hint);
  if (!(is_lower_alpha(name[0]) || is_digit(name[0]))) {
    return "does not start with a lowercase letter or digit; " + std::string(hint);
  }
  if (!std::all_of(name.begin(), name.end(), [](char c) {
        return is_lower_alpha(c) || is_digit(c) || c == '.' || c == '_' || c == '-';
      })) {
    return "is not lowercase letters, digits, '.', '_' and '-'; " + std::string(hint);
  }
  if (std::find(kReservedNames.begin(), kReservedNames.end(), name) != kReservedNames.end()) {
    return "is the first path segment of one of pantry's own routes (" + join(kReservedNames) +
           "); choose another name, e.g. team";
  }
  return std::nullopt;
}

std::string repeated_hosted(std::string_view name, std::string_view first_path, int first_line) {
  return quote(name) + " is already the name of " + std::string(first_path) + " (line " +
         std::to_string(first_line) + "); give each hosted index its own name";
}

std::optional<std::string> route_pattern_problem(std::string_view pattern);

// A list of scalars, each at most once: a hosted index's uploaders (user names, checked against
// oci.hosted.users later) or its merge patterns (`problem` says why one is wrong, or nullopt).
// `what` names an item ("a user name from oci.hosted.users"), `example` a good list.
std::optional<std::vector<std::string>> read_scalar_list(
    reader& r, const entry& f, std::string_view what, std::string_view example,
    std::optional<std::string> (*problem)(std::string_view)) {
  if (!f.value.IsSequence()) {
    r.fail(f, "is " + kind_of(f.value) + ", expected a list of " + std::string(what) + ", e.g. " +
                  std::string(example));
    return std::nullopt;
  }
  std::vector<std::string> items;
  bool ok = true;
  for (std::size_t i = 0; i < f.value.size(); ++i) {
    const YAML::Node& n = f.value[i];
    const std::string path = f.path + "[" + std::to_string(i) + "]";
    if (!n.IsScalar() || n.Scalar().empty()) {
      r.fail(n.Mark(), path,
             "is " + kind_of(n) + ", expected " + std::string(what) + ", e.g. " +
                 std::string(example));
      ok = false;
      continue;
    }
    const std::string& item = n.Scalar();
    if (std::find(items.begin(), items.end(), item) != items.end()) {
      r.fail(n.Mark(), path, quote(item) + " is listed twice; list each once");
      ok = false;
      continue;
    }
    if (problem != nullptr) {
      if (auto why = problem(item)) {
        r.fail(n.Mark(), path, quote(item) + " " + *why);
        ok = false;
        continue;
      }
    }
    r.note(path, n.Mark());
    items.push_back(item);
  }
  if (!ok) return std::nullopt;
  return items;
}

// pypi.hosted, replacing the current list if nothing in it is wrong. Whether the names clash
// with an upstream's and whether the uploaders exist is checked in check_pypi(), once the whole
// config is known.
void read_hosted(reader& r, const entry& e, config& c) {
  static constexpr std::array<required_key, 2> kRequired = {{
      {"name", "the index's URL prefix, e.g. team"},
      {"uploaders", "a list of names from oci.hosted.users, e.g. [ci]"},
  }};
  const std::string not_a_list =
      ", expected a list of hosted indexes; write [] for none, e.g. " + std::string(kHostedExample);
  const std::string not_a_map =
      ", expected a map with name and uploaders, e.g. " + std::string(kHostedExample);
  const list_rules<pypi_hosted> rules = {
      .not_a_list = not_a_list,
      .not_a_map = not_a_map,
      .keys = kHostedKeys,
      .required = kRequired,
      .unique_key = "name",
      .unique_field = &pypi_hosted::name,
      .repeated = repeated_hosted,
  };
  auto hosted = r.read_list(e, rules, [&](pypi_hosted& h, const entry& f) {
    if (f.key == "name") {
      auto s = r.as_scalar(f, "the index's URL prefix, e.g. team");
      if (!s) return;
      if (auto why = hosted_name_problem(*s)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      h.name = std::move(*s);
      r.note(f.path, f.mark());
    } else if (f.key == "uploaders") {
      auto names = read_scalar_list(r, f, "names from oci.hosted.users", "[ci, alice]", nullptr);
      if (names && names->empty()) {
        r.fail(f,
               "is empty, so no one could upload to the index; list at least one name from "
               "oci.hosted.users, e.g. [ci, alice]");
        return;
      }
      if (names) h.uploaders = std::move(*names);
    } else if (f.key == "merge") {
      auto patterns = read_scalar_list(r, f, "globs over normalized project names",
                                       "[\"numpy\", \"mycorp-*\"]", route_pattern_problem);
      if (patterns) h.merge = std::move(*patterns);
    }
  });
  if (!hosted) return;
  c.pypi.hosted = std::move(*hosted);
  r.note(e.path, e.key_node.Mark());
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

std::string repeated_pattern(std::string_view pattern, std::string_view first_path,
                             int first_line) {
  return quote(pattern) + " is already the pattern of " + std::string(first_path) + " (line " +
         std::to_string(first_line) + "), which wins as the first match; remove one of them";
}

// pypi.routes, replacing the current routes if nothing in the list is wrong. Whether each
// route's upstream exists is checked in check_routes(), once the upstreams are known.
void read_routes(reader& r, const entry& e, config& c) {
  static constexpr std::array<required_key, 2> kRequired = {{
      {"pattern", "a glob over normalized project names, e.g. \"mycorp-*\""},
      {"upstream", "the name of one of pypi.upstreams"},
  }};
  const list_rules<pypi_route> rules = {
      .not_a_list =
          ", expected a list of routes; write [] for none, or one \"- pattern: ...\" "
          "entry per route, e.g. [{pattern: \"mycorp-*\", upstream: internal}]",
      .not_a_map =
          ", expected a map with pattern and upstream; write it as \"- pattern: ...\" "
          "with \"upstream: ...\" on the next line, indented",
      .keys = kRouteKeys,
      .required = kRequired,
      .unique_key = "pattern",
      .unique_field = &pypi_route::pattern,
      .repeated = repeated_pattern,
  };
  auto routes = r.read_list(e, rules, [&](pypi_route& route, const entry& f) {
    if (f.key == "pattern") {
      auto s =
          r.as_text(f, "a glob over normalized project names, " + std::string(kPatternExample));
      if (!s) return;
      if (auto why = route_pattern_problem(*s)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      route.pattern = std::move(*s);
    } else if (f.key == "upstream") {
      auto s = r.as_text(f, "the name of one of pypi.upstreams, e.g. pypi");
      if (!s) return;
      route.upstream = std::move(*s);
      // For check_routes(): where this document names the route's upstream.
      r.note(f.path, f.mark());
    }
  });
  if (!routes) return;
  c.pypi.routes = std::move(*routes);
  r.note(e.path, e.key_node.Mark());
}

void read_pypi(reader& r, const entry& e, config& c) {
  r.read_map(e, kPypiKeys, [&](const entry& f) {
    if (f.key == "upstreams") {
      if (auto ups = read_pypi_upstreams(r, f)) {
        c.pypi.upstreams = std::move(*ups);
        r.note(f.path, f.key_node.Mark());
      }
    } else if (f.key == "index_ttl") {
      if (auto d = r.read_duration(f)) c.pypi.index_ttl = *d;
    } else if (f.key == "negative_ttl") {
      if (auto d = r.read_duration(f)) c.pypi.negative_ttl = *d;
    } else if (f.key == "offline") {
      if (auto b = r.read_bool(f)) c.pypi.offline = *b;
    } else if (f.key == "routes") {
      read_routes(r, f, c);
    } else if (f.key == "hosted") {
      read_hosted(r, f, c);
    }
  });
}

// Every route must name one of pypi.upstreams, whether this document set the routes, the
// upstreams or both.
void check_routes(reader& r, const config& c) {
  const bool routes_set = r.noted("pypi.routes").has_value();
  const std::optional<YAML::Mark> upstreams_mark = r.noted("pypi.upstreams");
  if (!routes_set && !upstreams_mark) return;
  std::vector<std::string_view> names;
  for (const auto& u : c.pypi.upstreams)
    names.push_back(u.name);
  for (std::size_t i = 0; i < c.pypi.routes.size(); ++i) {
    const pypi_route& route = c.pypi.routes[i];
    const std::string path = "pypi.routes[" + std::to_string(i) + "].upstream";
    const auto named =
        std::find_if(c.pypi.upstreams.begin(), c.pypi.upstreams.end(),
                     [&](const pypi_upstream& u) { return u.name == route.upstream; });
    if (named != c.pypi.upstreams.end() && named->hosted) {
      r.fail(r.noted(path).value_or(
                 r.noted("pypi.routes").value_or(upstreams_mark.value_or(YAML::Mark()))),
             path,
             quote(route.upstream) +
                 " is the hosted upstream, which is asked first for every project already; "
                 "route the pattern to another upstream or remove the route");
      continue;
    }
    if (named != c.pypi.upstreams.end()) continue;
    if (routes_set) {
      r.fail(r.noted(path).value_or(*r.noted("pypi.routes")), path,
             quote(route.upstream) +
                 " names no upstream in pypi.upstreams; set it to one of: " + join(names));
    } else {
      r.fail(*upstreams_mark, path,
             quote(route.upstream) +
                 " (a default route) names no upstream in pypi.upstreams; add an upstream named " +
                 printable(route.upstream) + " or set pypi.routes to routes for: " + join(names));
    }
  }
}

// A hosted index's name must not be an upstream's (both name an index in messages and the
// project list), and each uploader must be one of oci.hosted.users, whichever documents set them.
void check_hosted(reader& r, const config& c) {
  const std::optional<YAML::Mark> hosted_mark = r.noted("pypi.hosted");
  const std::optional<YAML::Mark> upstreams_mark = r.noted("pypi.upstreams");
  const std::optional<YAML::Mark> users_mark = r.noted("oci.hosted.users");
  if (!hosted_mark && !upstreams_mark && !users_mark) return;
  for (std::size_t i = 0; i < c.pypi.hosted.size(); ++i) {
    const pypi_hosted& h = c.pypi.hosted[i];
    const std::string path = "pypi.hosted[" + std::to_string(i) + "]";
    for (const auto& u : c.pypi.upstreams) {
      if (u.name != h.name) continue;
      const YAML::Mark at = r.noted(path + ".name")
                                .value_or(hosted_mark.value_or(
                                    upstreams_mark.value_or(users_mark.value_or(YAML::Mark()))));
      r.fail(at, path + ".name",
             quote(h.name) +
                 " is also the name of an upstream in pypi.upstreams; give the hosted index "
                 "another name, e.g. " +
                 printable(h.name + "-hosted"));
    }
    std::vector<std::string_view> users;
    for (const auto& u : c.oci.hosted.users)
      users.push_back(u.name);
    for (std::size_t k = 0; k < h.uploaders.size(); ++k) {
      if (std::find(users.begin(), users.end(), h.uploaders[k]) != users.end()) continue;
      const std::string upath = path + ".uploaders[" + std::to_string(k) + "]";
      const YAML::Mark at = r.noted(upath).value_or(
          users_mark.value_or(hosted_mark.value_or(upstreams_mark.value_or(YAML::Mark()))));
      r.fail(at, upath,
             quote(h.uploaders[k]) +
                 " is not a user of oci.hosted.users, whose names and tokens hosted indexes "
                 "share; add {name: " +
                 printable(h.uploaders[k]) + ", token: ...} there" +
                 (users.empty() ? std::string() : ", or use one of: " + join(users)));
    }
  }
}

void check_pypi(reader& r, const config& c) {
  check_routes(r, c);
  check_hosted(r, c);
}

void emit_pypi(YAML::Emitter& out, const config& c, secrets s) {
  out << YAML::BeginMap;
  out << YAML::Key << "upstreams" << YAML::Value;
  emit_upstreams(out, c.pypi.upstreams, s);
  emit_key(out, "index_ttl", format_duration(c.pypi.index_ttl));
  emit_key(out, "negative_ttl", format_duration(c.pypi.negative_ttl));
  emit_key(out, "offline", c.pypi.offline);
  out << YAML::Key << "routes" << YAML::Value;
  emit_list(out, c.pypi.routes, [](YAML::Emitter& o, const pypi_route& route) {
    emit_key(o, "pattern", route.pattern);
    emit_key(o, "upstream", route.upstream);
  });
  out << YAML::Key << "hosted" << YAML::Value;
  emit_list(out, c.pypi.hosted, [](YAML::Emitter& o, const pypi_hosted& h) {
    emit_key(o, "name", h.name);
    o << YAML::Key << "uploaders" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& u : h.uploaders)
      o << u;
    o << YAML::EndSeq;
    o << YAML::Key << "merge" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& m : h.merge)
      o << m;
    o << YAML::EndSeq;
  });
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 1> kKeys = {{{"pypi", read_pypi, emit_pypi}}};
constexpr std::array<key_set, 1> kMaps = {{{"pypi", kPypiKeys}}};

}  // namespace

constinit const section pypi_section = {.keys = kKeys, .maps = kMaps, .check = check_pypi};

}  // namespace pantry::config::detail
