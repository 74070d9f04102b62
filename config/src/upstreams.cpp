#include "upstreams.h"

#include "address.h"
#include "chars.h"
#include "emit.h"
#include "message.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <type_traits>

namespace pantry::config::detail {
namespace {

constexpr std::string_view kNameHint = "use lowercase letters, digits, '.', '_' and '-', e.g. pypi";

constexpr std::array<std::string_view, 4> kPypiUpstreamKeys = {"name", "url", "ca_file", "hosted"};
constexpr std::array<std::string_view, 5> kOciUpstreamKeys = {"name", "url", "ca_file", "username",
                                                              "password"};

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

std::string repeated_name(std::string_view name, std::string_view first_path, int first_line) {
  return quote(name) + " is already the name of " + std::string(first_path) + " (line " +
         std::to_string(first_line) + "); give each upstream its own name";
}

// Reads the keys both kinds of upstream have; false for a key only a registry has.
template <class Upstream>
bool read_common_key(reader& r, const entry& f, url_kind kind, Upstream& up) {
  if (f.key == "name") {
    auto s = r.as_scalar(f, "a name, e.g. pypi");
    if (!s) return true;
    if (auto why = upstream_name_problem(*s)) {
      r.fail(f, quote(*s) + " " + *why);
      return true;
    }
    up.name = std::move(*s);
  } else if (f.key == "url") {
    auto s = r.as_scalar(f, "a URL");
    if (!s) return true;
    if (auto why = url_problem(*s, kind)) {
      r.fail(f, quote(*s) + " " + *why);
      return true;
    }
    if (kind == url_kind::oci_registry && s->ends_with('/')) s->pop_back();
    up.url = std::move(*s);
  } else if (f.key == "ca_file") {
    if (auto s = r.as_text(f, "the path of a PEM file")) up.ca_file = std::move(*s);
  } else {
    return false;
  }
  return true;
}

// True iff the path of `url` (checked by url_problem) is "/<index>/simple/", after any prefix:
// "http://host/simple/" is a pantry's /simple/, which serves every upstream's projects.
bool is_hosted_index_url(std::string_view url) {
  constexpr std::string_view tail = "/simple/";
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  const std::size_t path = url.find('/', scheme + 3);
  if (path == std::string_view::npos) return false;
  const std::string_view p = url.substr(path);
  return p.ends_with(tail) && p.size() > tail.size();
}

template <class Upstream>
std::optional<std::vector<Upstream>> read_upstreams(reader& r, const entry& e) {
  constexpr bool kOci = std::is_same_v<Upstream, oci_upstream>;
  constexpr url_kind kind = kOci ? url_kind::oci_registry : url_kind::pypi_index;
  const std::string example = kOci ? "[{name: docker.io, url: \"https://registry-1.docker.io\"}]"
                                   : "[{name: pypi, url: \"https://pypi.org/simple/\"}]";
  const std::string not_a_list =
      ", expected a list of upstreams; write one \"- name: ...\" entry per upstream, e.g. " +
      example;
  const std::string name_hint = "a name (" + std::string(kNameHint.substr(4)) + ")";
  const std::array<required_key, 2> required = {
      {{"name", name_hint}, {"url", "the upstream's URL"}}};
  const list_rules<Upstream> rules = {
      .not_a_list = not_a_list,
      .not_a_map =
          ", expected a map with name and url; write it as \"- name: ...\" with \"url: "
          "...\" on the next line, indented",
      .if_empty = "\"[]\" is an empty list; list at least one upstream, e.g. " + example,
      .keys = kOci ? std::span<const std::string_view>(kOciUpstreamKeys)
                   : std::span<const std::string_view>(kPypiUpstreamKeys),
      .required = required,
      .unique_key = "name",
      .unique_field = &Upstream::name,
      .repeated = repeated_name,
  };
  return r.read_list(
      e, rules,
      [&](Upstream& up, const entry& f) {
        if (read_common_key(r, f, kind, up)) return;
        if constexpr (!kOci) {
          if (auto b = r.read_bool(f)) {
            up.hosted = *b;
            r.note(f.path, f.mark());
          }
        } else {
          auto s = r.as_scalar(f, f.key == "username" ? "a user name" : "a password or token");
          if (!s) return;
          if (f.key == "password") {
            if (auto why = placeholder_problem(*s, "password")) {
              r.fail(f, *why);
              return;
            }
          }
          (f.key == "username" ? up.username : up.password) = std::move(*s);
        }
      },
      [&](Upstream& up, const list_item& item) {
        if constexpr (!kOci) {
          // The owner's hosted index answers 404 for a project it lacks; any other page (its
          // /simple/ root, which serves every upstream's projects) would pass public projects
          // off as hosted ones.
          if (up.hosted && !up.url.empty() && !is_hosted_index_url(up.url)) {
            r.fail(r.noted(item.path + ".hosted").value_or(item.node.Mark()), item.path + ".url",
                   quote(up.url) +
                       " is not a hosted index's page; a hosted upstream is another pantry's "
                       "hosted index, http://<pantry>/<index>/simple/, e.g. "
                       "\"http://pantry1:8585/team/simple/\"");
          }
        } else {
          if (up.username.empty() == up.password.empty()) return;
          // Never render the item: it holds a secret.
          r.fail(item.node.Mark(), item.path + (up.username.empty() ? ".username" : ".password"),
                 std::string("the upstream ") + quote(up.name) + " has " +
                     (up.username.empty() ? "a password but no username"
                                          : "a username but no password") +
                     "; give both, or neither for anonymous pulls");
        }
      });
}

template <class Upstream>
void emit(YAML::Emitter& out, const std::vector<Upstream>& ups, secrets s) {
  emit_list(out, ups, [&](YAML::Emitter& o, const Upstream& u) {
    emit_key(o, "name", u.name);
    emit_key(o, "url", u.url);
    if (u.ca_file) emit_key(o, "ca_file", *u.ca_file);
    if constexpr (std::is_same_v<Upstream, pypi_upstream>) {
      if (u.hosted) emit_key(o, "hosted", true);
    } else {
      if (!u.username.empty()) {
        emit_key(o, "username", u.username);
        emit_key(o, "password", secret(u.password, s));
      }
    }
  });
}

}  // namespace

std::optional<std::vector<pypi_upstream>> read_pypi_upstreams(reader& r, const entry& e) {
  auto ups = read_upstreams<pypi_upstream>(r, e);
  if (!ups) return ups;
  // Two owners could disagree about a name, and which would win is no rule anyone could guess.
  const pypi_upstream* first = nullptr;
  std::size_t first_index = 0;
  for (std::size_t i = 0; i < ups->size(); ++i) {
    const pypi_upstream& u = (*ups)[i];
    if (!u.hosted) continue;
    if (first == nullptr) {
      first = &u;
      first_index = i;
      continue;
    }
    const std::string path = e.path + "[" + std::to_string(i) + "].hosted";
    r.fail(r.noted(path).value_or(e.mark()), path,
           "the upstream " + quote(u.name) + " is a second hosted upstream (" + e.path + "[" +
               std::to_string(first_index) + "], " + quote(first->name) +
               ", is one); pantry asks one owner first, so mark one upstream hosted: true");
    return std::nullopt;
  }
  return ups;
}

std::optional<std::vector<oci_upstream>> read_oci_upstreams(reader& r, const entry& e) {
  return read_upstreams<oci_upstream>(r, e);
}

void emit_upstreams(YAML::Emitter& out, const std::vector<pypi_upstream>& ups, secrets s) {
  emit(out, ups, s);
}

void emit_upstreams(YAML::Emitter& out, const std::vector<oci_upstream>& ups, secrets s) {
  emit(out, ups, s);
}

}  // namespace pantry::config::detail
