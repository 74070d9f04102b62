// The oci: section: the registries pantry proxies, the one a bare image name means, how long a
// tag is kept, and the repositories pantry hosts itself with the users who may push to them.

#include "chars.h"
#include "emit.h"
#include "message.h"
#include "section.h"
#include "upstreams.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>

namespace pantry::config::detail {
namespace {

constexpr std::array<std::string_view, 4> kOciKeys = {"default_upstream", "upstreams", "tag_ttl",
                                                      "hosted"};
constexpr std::array<std::string_view, 4> kHostedKeys = {"prefix", "users", "pull_auth",
                                                         "token_key"};
constexpr std::array<std::string_view, 2> kUserKeys = {"name", "token"};

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

std::optional<std::string> user_name_problem(std::string_view name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return is_lower_alpha(c) || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
               c == '-';
      })) {
    return "is not a user name; use letters, digits, '.', '_' and '-', e.g. ci";
  }
  return std::nullopt;
}

std::string repeated_user(std::string_view name, std::string_view, int) {
  return quote(name) + " is listed twice; give each user its own name";
}

// oci.hosted.users, replacing the current list if nothing in it is wrong.
void read_users(reader& r, const entry& e, config& c) {
  constexpr std::string_view example = "[{name: ci, token: \"a-long-random-secret\"}]";
  const std::string not_a_list = ", expected a list of users, e.g. " + std::string(example);
  const std::string not_a_map =
      ", expected a map with name and token, e.g. " + std::string(example);
  const list_rules<oci_user> rules = {
      .not_a_list = not_a_list,
      .not_a_map = not_a_map,
      .keys = kUserKeys,
      .unique_key = "name",
      .unique_field = &oci_user::name,
      .repeated = repeated_user,
  };
  auto users = r.read_list(
      e, rules,
      [&](oci_user& u, const entry& f) {
        if (f.key == "name") {
          auto s = r.as_scalar(f, "a user name");
          if (!s) return;
          if (auto why = user_name_problem(*s)) {
            r.fail(f, quote(*s) + " " + *why);
            return;
          }
          u.name = std::move(*s);
        } else if (auto token = read_token(r, f)) {
          u.token = std::move(*token);
        }
      },
      [&](oci_user& u, const list_item& item) {
        // One message for the list's first incomplete user: a key that is there but wrong has
        // been reported already.
        if ((u.name.empty() || u.token.empty()) && r.problems() == item.problems_before_list) {
          r.fail(item.node.Mark(), item.path,
                 "a user needs both name and token, e.g. " + std::string(example));
        }
      });
  if (!users) return;
  c.oci.hosted.users = std::move(*users);
  // For pypi.hosted's uploaders, which must name these users.
  r.note(e.path, e.key_node.Mark());
}

void read_hosted(reader& r, const entry& e, config& c) {
  r.read_map(e, kHostedKeys, [&](const entry& f) {
    if (f.key == "prefix") {
      auto s = r.as_scalar(f, "a repository name prefix ending in '/', e.g. local/");
      if (!s) return;
      if (auto why = hosted_prefix_problem(*s)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      c.oci.hosted.prefix = std::move(*s);
    } else if (f.key == "users") {
      read_users(r, f, c);
    } else if (f.key == "pull_auth") {
      if (auto b = r.read_bool(f)) c.oci.hosted.pull_auth = *b;
    } else if (f.key == "token_key") {
      if (auto k = read_token(r, f, 32)) c.oci.hosted.token_key = std::move(*k);
    }
  });
}

void read_oci(reader& r, const entry& e, config& c) {
  r.read_map(e, kOciKeys, [&](const entry& f) {
    if (f.key == "upstreams") {
      if (auto ups = read_oci_upstreams(r, f)) {
        c.oci.upstreams = std::move(*ups);
        r.note(f.path, f.key_node.Mark());
      }
    } else if (f.key == "default_upstream") {
      if (auto s = r.as_text(f, "the name of one of oci.upstreams, e.g. docker.io")) {
        c.oci.default_upstream = std::move(*s);
        r.note(f.path, f.mark());
      }
    } else if (f.key == "tag_ttl") {
      if (auto d = r.read_duration(f)) c.oci.tag_ttl = *d;
    } else if (f.key == "hosted") {
      read_hosted(r, f, c);
    }
  });
}

void check_default_upstream(reader& r, const config& c) {
  const std::optional<YAML::Mark> default_mark = r.noted("oci.default_upstream");
  const std::optional<YAML::Mark> upstreams_mark = r.noted("oci.upstreams");
  if (!default_mark && !upstreams_mark) return;
  const auto& ups = c.oci.upstreams;
  const bool found = std::any_of(ups.begin(), ups.end(), [&](const oci_upstream& u) {
    return u.name == c.oci.default_upstream;
  });
  if (found) return;
  std::vector<std::string_view> names;
  for (const auto& u : ups)
    names.push_back(u.name);
  if (default_mark) {
    r.fail(*default_mark, "oci.default_upstream",
           quote(c.oci.default_upstream) +
               " names no upstream in oci.upstreams; set it to one of: " + join(names));
  } else {
    r.fail(*upstreams_mark, "oci.default_upstream",
           quote(c.oci.default_upstream) +
               " (the default) names no upstream in oci.upstreams; add an upstream named " +
               printable(c.oci.default_upstream) +
               " or set oci.default_upstream to one of: " + join(names));
  }
}

// Content pulled with an upstream's credentials is served only to pantry's own users, so such
// an upstream without users could never be pulled from.
void check_credentialed_upstreams(reader& r, const config& c) {
  const std::optional<YAML::Mark> upstreams_mark = r.noted("oci.upstreams");
  if (!c.oci.hosted.users.empty() || !upstreams_mark) return;
  for (const auto& u : c.oci.upstreams) {
    if (u.username.empty()) continue;
    r.fail(*upstreams_mark, "oci.upstreams",
           quote(u.name) +
               " has credentials, and what is pulled with them is served only to clients that "
               "log in to pantry; add a user to oci.hosted.users");
    return;
  }
}

void check_oci(reader& r, const config& c) {
  check_default_upstream(r, c);
  check_credentialed_upstreams(r, c);
}

void emit_oci(YAML::Emitter& out, const config& c, secrets s) {
  out << YAML::BeginMap;
  emit_key(out, "default_upstream", c.oci.default_upstream);
  out << YAML::Key << "upstreams" << YAML::Value;
  emit_upstreams(out, c.oci.upstreams, s);
  emit_key(out, "tag_ttl", format_duration(c.oci.tag_ttl));
  out << YAML::Key << "hosted" << YAML::Value << YAML::BeginMap;
  emit_key(out, "prefix", c.oci.hosted.prefix);
  out << YAML::Key << "users" << YAML::Value;
  emit_list(out, c.oci.hosted.users, [&](YAML::Emitter& o, const oci_user& u) {
    emit_key(o, "name", u.name);
    emit_key(o, "token", secret(u.token, s));
  });
  emit_key(out, "pull_auth", c.oci.hosted.pull_auth);
  if (!c.oci.hosted.token_key.empty())
    emit_key(out, "token_key", secret(c.oci.hosted.token_key, s));
  out << YAML::EndMap;
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 1> kKeys = {{{"oci", read_oci, emit_oci}}};
constexpr std::array<key_set, 2> kMaps = {{{"oci", kOciKeys}, {"oci.hosted", kHostedKeys}}};

}  // namespace

constinit const section oci_section = {.keys = kKeys, .maps = kMaps, .check = check_oci};

}  // namespace pantry::config::detail
