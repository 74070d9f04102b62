// The pins: section: the pin bot's schedule, the Pythons and platforms its pins are for, which
// upgrades it proposes (pre-releases, release age, groups, ignores, how many at once) and the
// repositories it keeps current, each with the forge its pull requests go to.

#include "address.h"
#include "chars.h"
#include "emit.h"
#include "message.h"
#include "section.h"

#include "pantry/config/cron.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <set>

namespace pantry::config {

std::string_view to_string(pins_prereleases p) noexcept {
  switch (p) {
    case pins_prereleases::never:
      return "never";
    case pins_prereleases::if_pinned:
      return "if_pinned";
    case pins_prereleases::always:
      return "always";
  }
  return "if_pinned";
}

std::string_view to_string(pins_forge_kind k) noexcept {
  switch (k) {
    case pins_forge_kind::none:
      return "none";
    case pins_forge_kind::github:
      return "github";
    case pins_forge_kind::gitlab:
      return "gitlab";
    case pins_forge_kind::gitea:
      return "gitea";
  }
  return "none";
}

namespace detail {
namespace {

constexpr std::array<std::string_view, 10> kPinsKeys = {
    "enabled",         "schedule", "python", "platforms", "prereleases",
    "min_release_age", "max_open", "groups", "ignore",    "repositories"};
constexpr std::array<std::string_view, 7> kRepositoryKeys = {
    "name", "path", "url", "token_file", "branch", "files", "forge"};
constexpr std::array<std::string_view, 4> kForgeKeys = {"kind", "api", "repository", "token_file"};
constexpr std::array<std::string_view, 2> kGroupKeys = {"name", "match"};
constexpr std::array<pins_prereleases, 3> kPrereleases = {
    pins_prereleases::never, pins_prereleases::if_pinned, pins_prereleases::always};
constexpr std::array<pins_forge_kind, 4> kForges = {pins_forge_kind::none, pins_forge_kind::github,
                                                    pins_forge_kind::gitlab,
                                                    pins_forge_kind::gitea};
constexpr std::array<std::string_view, 3> kPlatforms = {"linux", "macos", "windows"};

// Each open branch costs a CI run; more than this at once is a typo.
constexpr unsigned kMaxOpen = 100;

constexpr std::string_view kRepositoryExample =
    "[{name: app, url: \"https://git.example/team/app.git\", files: [requirements.txt]}]";

// An absolute path of a file holding a secret.
std::optional<std::string> read_secret_file(reader& r, const entry& e) {
  auto s = r.as_text(e, "the absolute path of the file holding the token");
  if (!s) return std::nullopt;
  if (!s->starts_with('/')) {
    r.fail(e, quote(*s) +
                  " is not an absolute path; give the file holding the token, e.g. "
                  "/etc/pantry/secrets/forge_token");
    return std::nullopt;
  }
  return s;
}

// A list of non-empty strings, each checked by `check` (which reports and returns false); the
// list is taken whole or not at all.
template <class Check>
std::optional<std::vector<std::string>> read_strings(reader& r, const entry& e,
                                                     std::string_view example, Check&& check) {
  if (!e.value.IsSequence()) {
    r.fail(e, describe(e.value) + " is " + kind_of(e.value) + ", expected a list, e.g. " +
                  std::string(example));
    return std::nullopt;
  }
  const std::size_t problems_before = r.problems();
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const entry item{e.key, e.key_node, e.value[i], e.path + "[" + std::to_string(i) + "]"};
    auto s = r.as_text(item, "a value, e.g. " + std::string(example));
    if (!s || !check(item, *s)) continue;
    if (!seen.insert(*s).second) {
      r.fail(item, quote(*s) + " is listed twice; list it once");
      continue;
    }
    out.push_back(std::move(*s));
  }
  if (r.problems() != problems_before) return std::nullopt;
  return out;
}

bool python_version_ok(std::string_view v) {
  const std::size_t a = v.find('.');
  if (a == std::string_view::npos || !all_digits(v.substr(0, a))) return false;
  const std::string_view rest = v.substr(a + 1);
  const std::size_t b = rest.find('.');
  if (b == std::string_view::npos) return all_digits(rest);
  return all_digits(rest.substr(0, b)) && all_digits(rest.substr(b + 1));
}

bool platform_ok(std::string_view p) {
  const std::size_t dash = p.find('-');
  if (dash == std::string_view::npos || dash + 1 >= p.size()) return false;
  const std::string_view platform = p.substr(0, dash);
  const std::string_view machine = p.substr(dash + 1);
  return std::find(kPlatforms.begin(), kPlatforms.end(), platform) != kPlatforms.end() &&
         std::all_of(machine.begin(), machine.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '_'; });
}

// A path inside a repository: relative, without "." or ".." components.
bool repository_path_ok(std::string_view p) {
  if (p.empty() || p.starts_with('/')) return false;
  for (std::size_t start = 0; start <= p.size();) {
    std::size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    const std::string_view part = p.substr(start, slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = slash + 1;
  }
  return true;
}

template <class Enum, std::size_t N>
std::optional<Enum> read_enum(reader& r, const entry& e, const std::array<Enum, N>& values,
                              std::string_view what) {
  auto s = r.as_scalar(e, what);
  if (!s) return std::nullopt;
  for (Enum v : values) {
    if (to_string(v) == *s) return v;
  }
  r.fail(e, quote(*s) + " is not one of them; use " + std::string(what));
  return std::nullopt;
}

void read_forge(reader& r, const entry& e, pins_forge& forge) {
  r.read_map(e, kForgeKeys, [&](const entry& f) {
    if (f.key == "kind") {
      if (auto k = read_enum(r, f, kForges, "none, github, gitlab or gitea")) forge.kind = *k;
    } else if (f.key == "api") {
      auto s = r.as_text(f, "the forge's API URL, e.g. https://api.github.com");
      if (!s) return;
      if (auto why = url_problem(*s, url_kind::git_or_api)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      while (s->ends_with('/'))
        s->pop_back();
      forge.api = std::move(*s);
    } else if (f.key == "repository") {
      auto s = r.as_text(f, "OWNER/NAME, e.g. team/app");
      if (!s) return;
      if (s->find('/') == std::string::npos || s->starts_with('/') || s->ends_with('/')) {
        r.fail(f, quote(*s) + " is not OWNER/NAME; write e.g. team/app");
        return;
      }
      forge.repository = std::move(*s);
    } else if (f.key == "token_file") {
      if (auto s = read_secret_file(r, f)) forge.token_file = std::move(*s);
    }
  });
}

std::string repeated_name(std::string_view kind, std::string_view name, std::string_view first_path,
                          int line) {
  return quote(name) + " is already the name of " + std::string(first_path) + " (line " +
         std::to_string(line) + "); give each " + std::string(kind) + " its own name";
}

std::string repeated_repository(std::string_view name, std::string_view first_path, int line) {
  return repeated_name("repository", name, first_path, line);
}

std::string repeated_group(std::string_view name, std::string_view first_path, int line) {
  return repeated_name("group", name, first_path, line);
}

// The path of the list item an entry belongs to ("pins.repositories[2]").
std::string item_path(const entry& f) {
  return f.path.substr(0, f.path.rfind('.'));
}

void read_repositories(reader& r, const entry& e, pins_config& pins) {
  static constexpr std::array<required_key, 2> kRequired = {{
      {"name", "a name, e.g. app"},
      {"files", "the files to pin, e.g. [requirements.txt]"},
  }};
  const std::string not_a_list =
      ", expected a list of repositories, e.g. " + std::string(kRepositoryExample);
  const std::string not_a_map =
      ", expected a map with name, path or url, and files, e.g. " + std::string(kRepositoryExample);
  const list_rules<pins_repository> rules = {
      .not_a_list = not_a_list,
      .not_a_map = not_a_map,
      .keys = kRepositoryKeys,
      .required = kRequired,
      .unique_key = "name",
      .unique_field = &pins_repository::name,
      .repeated = repeated_repository,
  };
  auto repositories = r.read_list(e, rules, [&](pins_repository& repo, const entry& f) {
    // The item's first key marks the item for the checks across its keys.
    if (const std::string item = item_path(f); !r.noted(item)) r.note(item, f.key_node.Mark());
    if (f.key == "name") {
      auto s = r.as_scalar(f, "a repository name, e.g. app");
      if (!s) return;
      if (!is_ci_name(*s)) {
        r.fail(f, quote(*s) +
                      " is not a repository name; use 1 to 63 letters, digits, '_', '.' and "
                      "'-', e.g. app");
        return;
      }
      repo.name = std::move(*s);
    } else if (f.key == "path") {
      auto s = r.as_text(f, "the absolute path of a local clone, e.g. /srv/git/app");
      if (!s) return;
      if (!s->starts_with('/')) {
        r.fail(f, quote(*s) + " is not an absolute path; give the clone's, e.g. /srv/git/app");
        return;
      }
      repo.path = std::move(*s);
    } else if (f.key == "url") {
      auto s = r.as_text(f, "a git URL, e.g. https://git.example/team/app.git");
      if (!s) return;
      if (auto why = url_problem(*s, url_kind::git_or_api)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      repo.url = std::move(*s);
    } else if (f.key == "token_file") {
      if (auto s = read_secret_file(r, f)) repo.token_file = std::move(*s);
    } else if (f.key == "branch") {
      if (auto s = r.as_text(f, "a branch name, e.g. main")) repo.branch = std::move(*s);
    } else if (f.key == "files") {
      auto files = read_strings(r, f, "[requirements.txt, Containerfile]",
                                [&](const entry& item, const std::string& p) {
                                  if (repository_path_ok(p)) return true;
                                  r.fail(item, quote(p) +
                                                   " is not a path inside the repository; give "
                                                   "it relative to the root, without . or .., "
                                                   "e.g. ci/requirements.txt");
                                  return false;
                                });
      if (!files) return;
      if (files->empty()) {
        r.fail(f, "[] names no file; list the files to pin, e.g. [requirements.txt]");
        return;
      }
      repo.files = std::move(*files);
    } else if (f.key == "forge") {
      read_forge(r, f, repo.forge);
    }
  });
  if (repositories) pins.repositories = std::move(*repositories);
}

void read_groups(reader& r, const entry& e, pins_config& pins) {
  static constexpr std::array<required_key, 2> kRequired = {{
      {"name", "a name, e.g. pytest"},
      {"match", "a glob of project names, e.g. \"pytest*\""},
  }};
  const list_rules<pins_group> rules = {
      .not_a_list = ", expected a list of groups, e.g. [{name: pytest, match: \"pytest*\"}]",
      .not_a_map = ", expected a map with name and match, e.g. {name: pytest, match: \"pytest*\"}",
      .keys = kGroupKeys,
      .required = kRequired,
      .unique_key = "name",
      .unique_field = &pins_group::name,
      .repeated = repeated_group,
  };
  auto groups = r.read_list(e, rules, [&](pins_group& g, const entry& f) {
    if (f.key == "name") {
      auto s = r.as_scalar(f, "a group name, e.g. pytest");
      if (!s) return;
      if (!is_ci_name(*s)) {
        r.fail(f, quote(*s) +
                      " is not a group name; use 1 to 63 letters, digits, '_', '.' and '-', "
                      "e.g. pytest");
        return;
      }
      g.name = std::move(*s);
    } else if (f.key == "match") {
      if (auto s = r.as_text(f, "a glob of project names, e.g. \"pytest*\"")) {
        g.match = std::move(*s);
      }
    }
  });
  if (groups) pins.groups = std::move(*groups);
}

void read_pins(reader& r, const entry& e, config& c) {
  pins_config& pins = c.pins;
  r.read_map(e, kPinsKeys, [&](const entry& f) {
    if (f.key == "enabled") {
      if (auto b = r.read_bool(f)) pins.enabled = *b;
    } else if (f.key == "schedule") {
      auto s = r.as_text(f, "a cron schedule, e.g. \"0 6 * * mon-fri\" or \"@daily\"");
      if (!s) return;
      auto schedule = cron_schedule::parse(*s);
      if (!schedule) {
        r.fail(f, schedule.error().message);
        return;
      }
      pins.schedule = schedule->str();
    } else if (f.key == "python") {
      auto versions =
          read_strings(r, f, "[\"3.11\", \"3.12\"]", [&](const entry& item, const std::string& v) {
            if (python_version_ok(v)) return true;
            r.fail(item, quote(v) +
                             " is not a Python version; write "
                             "MAJOR.MINOR, e.g. \"3.12\"");
            return false;
          });
      if (!versions) return;
      if (versions->empty()) {
        r.fail(f, "[] names no Python; list at least one, e.g. [\"3.12\"]");
        return;
      }
      pins.python = std::move(*versions);
    } else if (f.key == "platforms") {
      auto platforms = read_strings(r, f, "[linux-x86_64, macos-arm64]",
                                    [&](const entry& item, const std::string& p) {
                                      if (platform_ok(p)) return true;
                                      r.fail(item, quote(p) +
                                                       " is not a platform; write "
                                                       "PLATFORM-MACHINE with PLATFORM linux, "
                                                       "macos or windows, e.g. linux-x86_64, "
                                                       "linux-aarch64, macos-arm64");
                                      return false;
                                    });
      if (!platforms) return;
      if (platforms->empty()) {
        r.fail(f, "[] names no platform; list at least one, e.g. [linux-x86_64]");
        return;
      }
      pins.platforms = std::move(*platforms);
    } else if (f.key == "prereleases") {
      if (auto p = read_enum(r, f, kPrereleases, "never, if_pinned or always")) {
        pins.prereleases = *p;
      }
    } else if (f.key == "min_release_age") {
      if (auto d = r.read_duration(f)) pins.min_release_age = *d;
    } else if (f.key == "max_open") {
      if (auto n = r.read_count(f, 1, kMaxOpen, "use 1 to " + std::to_string(kMaxOpen))) {
        pins.max_open = *n;
      }
    } else if (f.key == "groups") {
      read_groups(r, f, pins);
    } else if (f.key == "ignore") {
      if (auto globs = read_strings(r, f, "[\"boto*\", numpy]",
                                    [](const entry&, const std::string&) { return true; })) {
        pins.ignore = std::move(*globs);
      }
    } else if (f.key == "repositories") {
      read_repositories(r, f, pins);
    }
  });
}

// What a repository needs as a whole: a place to fetch from, and a forge with all it takes to
// open a pull request.
void check_pins(reader& r, const config& c) {
  for (std::size_t i = 0; i < c.pins.repositories.size(); ++i) {
    const pins_repository& repo = c.pins.repositories[i];
    const std::string path = "pins.repositories[" + std::to_string(i) + "]";
    const auto mark = r.noted(path);
    if (!mark) continue;
    if (repo.path.empty() == repo.url.empty()) {
      r.fail(*mark, path,
             repo.name + ": set exactly one of path (a local clone) and url (a git URL); " +
                 (repo.path.empty() ? std::string("neither is set") : "both are set"));
    }
    if (!repo.token_file.empty() && repo.url.empty()) {
      r.fail(*mark, path, repo.name + ": token_file is for a url; a local path needs none");
    }
    if (repo.forge.kind != pins_forge_kind::none) {
      std::vector<std::string> missing;
      if (repo.forge.api.empty()) missing.emplace_back("api");
      if (repo.forge.repository.empty()) missing.emplace_back("repository");
      if (repo.forge.token_file.empty()) missing.emplace_back("token_file");
      if (!missing.empty()) {
        std::string list;
        for (const auto& m : missing)
          list += (list.empty() ? "" : ", ") + m;
        r.fail(*mark, path + ".forge",
               repo.name + ": a " + std::string(to_string(repo.forge.kind)) +
                   " forge needs api, repository and token_file; missing: " + list);
      }
    }
  }
}

void emit_strings(YAML::Emitter& out, std::string_view key, const std::vector<std::string>& v) {
  out << YAML::Key << std::string(key) << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : v)
    out << YAML::DoubleQuoted << s;
  out << YAML::EndSeq;
}

void emit_pins(YAML::Emitter& out, const config& c, secrets) {
  const pins_config& pins = c.pins;
  out << YAML::BeginMap;
  emit_key(out, "enabled", pins.enabled);
  out << YAML::Key << "schedule" << YAML::Value << YAML::DoubleQuoted << pins.schedule;
  emit_strings(out, "python", pins.python);
  emit_strings(out, "platforms", pins.platforms);
  emit_key(out, "prereleases", std::string(to_string(pins.prereleases)));
  emit_key(out, "min_release_age", format_duration(pins.min_release_age));
  emit_key(out, "max_open", pins.max_open);
  out << YAML::Key << "groups" << YAML::Value;
  emit_list(out, pins.groups, [](YAML::Emitter& o, const pins_group& g) {
    emit_key(o, "name", g.name);
    o << YAML::Key << "match" << YAML::Value << YAML::DoubleQuoted << g.match;
  });
  emit_strings(out, "ignore", pins.ignore);
  out << YAML::Key << "repositories" << YAML::Value;
  emit_list(out, pins.repositories, [](YAML::Emitter& o, const pins_repository& repo) {
    emit_key(o, "name", repo.name);
    if (!repo.path.empty()) emit_key(o, "path", repo.path);
    if (!repo.url.empty()) emit_key(o, "url", repo.url);
    if (!repo.token_file.empty()) emit_key(o, "token_file", repo.token_file);
    if (!repo.branch.empty()) emit_key(o, "branch", repo.branch);
    emit_strings(o, "files", repo.files);
    if (repo.forge.kind != pins_forge_kind::none) {
      o << YAML::Key << "forge" << YAML::Value << YAML::BeginMap;
      emit_key(o, "kind", std::string(to_string(repo.forge.kind)));
      emit_key(o, "api", repo.forge.api);
      emit_key(o, "repository", repo.forge.repository);
      emit_key(o, "token_file", repo.forge.token_file);
      o << YAML::EndMap;
    }
  });
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 1> kKeys = {{{"pins", read_pins, emit_pins}}};
constexpr std::array<key_set, 1> kMaps = {{{"pins", kPinsKeys}}};

}  // namespace

constinit const section pins_section = {.keys = kKeys, .maps = kMaps, .check = check_pins};

}  // namespace detail
}  // namespace pantry::config
