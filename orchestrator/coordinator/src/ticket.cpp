#include "pantry/orchestrator/coordinator/ticket.h"

#include "pantry/orchestrator/runner/json_read.h"

#include <boost/json/array.hpp>

#include <algorithm>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;
using runner::detail::json_reader;
using runner::detail::to_array;

bool is_lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_tree_digest(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  return s.starts_with(kPrefix) && s.size() == kPrefix.size() + 64 &&
         is_lower_hex(s.substr(kPrefix.size()));
}

result<const json::object*> as_object(const json::value& v, const json_reader& r,
                                      std::string_view what) {
  if (!v.is_object()) return r.fail(what, "expected an object");
  return &v.get_object();
}

result<source_ref> read_source(const json::object& o, const json_reader& r) {
  source_ref s;
  if (auto t = o.if_contains("tree"); t && !t->is_null()) {
    if (!t->is_string() || !is_tree_digest(t->get_string())) {
      return r.fail("source.tree",
                    "expected the sha256:<64 hex digits> of an uploaded tree (pantry submit "
                    "uploads it)");
    }
    s.type = source_ref::kind::tree;
    s.tree = std::string(t->get_string());
  }
  if (auto g = o.if_contains("git"); g && !g->is_null()) {
    if (s.type != source_ref::kind::none) {
      return r.fail("source", "give either tree or git, not both");
    }
    if (!g->is_string() || g->get_string().empty()) {
      return r.fail("source.git", "expected the repository's URL as a string");
    }
    std::string_view url = g->get_string();
    if (url.find('@') != std::string_view::npos && url.find("://") != std::string_view::npos &&
        url.find('@') < url.find('/', url.find("://") + 3)) {
      return r.fail("source.git",
                    "the URL carries credentials; name a secret in source.auth_secret instead, "
                    "so that they never appear in a log or an answer");
    }
    s.type = source_ref::kind::git;
    s.git_url = std::string(url);
    if (auto e = r.read(o, "commit", "source.commit", s.commit)) return *e;
    if (!is_commit_id(s.commit)) {
      return r.fail("source.commit", "\"" + s.commit.substr(0, 80) +
                                         "\" is not a full commit id; give the 40 lowercase "
                                         "hex digits `git rev-parse HEAD` prints");
    }
    if (auto e = r.read(o, "auth_secret", "source.auth_secret", s.git_auth_secret)) return *e;
    if (auto e = r.read(o, "base", "source.base", s.base)) return *e;
    if (!s.base.empty() && !is_commit_id(s.base)) {
      return r.fail("source.base", "\"" + s.base.substr(0, 80) +
                                       "\" is not a full commit id; give the 40 lowercase hex "
                                       "digits of the commit the change is based on");
    }
  }
  return s;
}

}  // namespace

bool is_commit_id(std::string_view s) noexcept {
  return s.size() == 40 && is_lower_hex(s);
}

json::object to_json(const source_ref& s) {
  json::object o;
  switch (s.type) {
    case source_ref::kind::none:
      break;
    case source_ref::kind::tree:
      o["tree"] = s.tree;
      break;
    case source_ref::kind::git:
      o["git"] = s.git_url;
      o["commit"] = s.commit;
      if (!s.git_auth_secret.empty()) o["auth_secret"] = s.git_auth_secret;
      if (!s.base.empty()) o["base"] = s.base;
      break;
  }
  return o;
}

result<source_ref> source_from_json(const json::value& v) {
  json_reader r("source");
  if (v.is_null()) return source_ref{};
  auto o = as_object(v, r, "source");
  if (!o) return o.error();
  return read_source(**o, r);
}

json::object to_json(const ticket& t) {
  json::object o;
  o["job"] = t.job;
  o["pipeline"] = t.pipeline;
  o["lease"] = t.lease;
  o["attempt"] = t.attempt;
  o["name"] = t.name;
  o["project"] = t.project;
  o["patch"] = t.patch;
  o["commit"] = t.commit;
  o["source"] = to_json(t.source);
  if (t.build) {
    o["build"] =
        json::object{{"file", t.build->file}, {"context", t.build->context}, {"tag", t.build->tag}};
  }
  o["image"] = t.image;
  if (t.allow_unpinned) o["allow_unpinned"] = true;
  o["steps"] = to_array(t.steps);
  json::array env;
  for (const auto& [k, v] : t.env)
    env.emplace_back(json::array{json::string(k), json::string(v)});
  o["env"] = std::move(env);
  json::array secrets;
  for (const auto& s : t.secrets)
    secrets.emplace_back(json::object{{"name", s.name}, {"value", s.value}});
  o["secrets"] = std::move(secrets);
  o["artifacts"] = to_array(t.artifacts);
  json::array from;
  for (auto j : t.artifacts_from)
    from.emplace_back(j);
  o["artifacts_from"] = std::move(from);
  o["network"] = runner::to_string(t.network);
  if (t.tmpfs) o["tmpfs"] = *t.tmpfs;
  o["timeout_ms"] = static_cast<std::int64_t>(t.timeout.count());
  if (!t.test_order.empty()) o["test_order"] = t.test_order;
  return o;
}

result<ticket> ticket_from_json(const json::value& v) {
  json_reader r("job ticket");
  auto obj = as_object(v, r, "(document)");
  if (!obj) return obj.error();
  const json::object& o = **obj;
  ticket t;
  auto num = [&](std::string_view key, std::uint64_t& into, bool required) -> std::optional<error> {
    auto n = r.uint_at(o, key, key);
    if (!n) return n.error();
    if (!*n) {
      if (required) return r.fail(key, "missing");
      return std::nullopt;
    }
    into = **n;
    return std::nullopt;
  };
  std::uint64_t attempt = 1;
  std::uint64_t timeout = 0;
  if (auto e = num("job", t.job, true)) return *e;
  if (auto e = num("pipeline", t.pipeline, true)) return *e;
  if (auto e = num("lease", t.lease, true)) return *e;
  if (auto e = num("attempt", attempt, false)) return *e;
  if (auto e = num("timeout_ms", timeout, false)) return *e;
  t.attempt = static_cast<int>(std::min<std::uint64_t>(attempt, 1000));
  t.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(
      std::min<std::uint64_t>(timeout, std::uint64_t{365} * 86400 * 1000)));
  for (auto [key, into] : {std::pair<std::string_view, std::string*>{"name", &t.name},
                           {"project", &t.project},
                           {"patch", &t.patch},
                           {"commit", &t.commit},
                           {"image", &t.image},
                           {"test_order", &t.test_order}}) {
    if (auto e = r.read(o, key, key, *into)) return *e;
  }
  if (auto s = o.if_contains("source")) {
    auto src = source_from_json(*s);
    if (!src) return src.error();
    t.source = std::move(*src);
  }
  auto build = r.object_at(o, "build", "build");
  if (!build) return build.error();
  if (*build) {
    build_ticket b;
    if (auto e = r.read(**build, "file", "build.file", b.file)) return *e;
    if (auto e = r.read(**build, "context", "build.context", b.context)) return *e;
    if (auto e = r.read(**build, "tag", "build.tag", b.tag)) return *e;
    t.build = std::move(b);
  }
  if (auto u = o.if_contains("allow_unpinned"); u && u->is_bool()) t.allow_unpinned = u->get_bool();
  if (auto e = r.read(o, "steps", "steps", t.steps)) return *e;
  if (auto e = r.read(o, "artifacts", "artifacts", t.artifacts)) return *e;
  if (auto env = o.if_contains("env"); env && !env->is_null()) {
    if (!env->is_array()) return r.fail("env", "expected an array of [name, value] pairs");
    for (const auto& p : env->get_array()) {
      const auto* a = p.if_array();
      if (!a || a->size() != 2 || !(*a)[0].is_string() || !(*a)[1].is_string()) {
        return r.fail("env", "expected an array of [name, value] pairs");
      }
      t.env.emplace_back(std::string((*a)[0].get_string()), std::string((*a)[1].get_string()));
    }
  }
  if (auto secrets = o.if_contains("secrets"); secrets && !secrets->is_null()) {
    if (!secrets->is_array()) return r.fail("secrets", "expected an array of {name, value}");
    for (const auto& s : secrets->get_array()) {
      const auto* so = s.if_object();
      if (!so) return r.fail("secrets", "expected an array of {name, value}");
      runner::secret_value sv;
      if (auto e = r.read(*so, "name", "secrets[].name", sv.name)) return *e;
      if (auto e = r.read(*so, "value", "secrets[].value", sv.value)) return *e;
      t.secrets.push_back(std::move(sv));
    }
  }
  if (auto from = o.if_contains("artifacts_from"); from && !from->is_null()) {
    if (!from->is_array()) return r.fail("artifacts_from", "expected an array of job ids");
    for (const auto& j : from->get_array()) {
      if (!j.is_uint64() && !(j.is_int64() && j.get_int64() > 0)) {
        return r.fail("artifacts_from", "expected an array of job ids");
      }
      t.artifacts_from.push_back(j.is_uint64() ? j.get_uint64()
                                               : static_cast<std::uint64_t>(j.get_int64()));
    }
  }
  std::string network = "isolated";
  if (auto e = r.read(o, "network", "network", network)) return *e;
  auto mode = runner::parse_network_mode(network);
  if (!mode) return r.fail("network", mode.error().message);
  t.network = *mode;
  auto tmpfs = r.uint_at(o, "tmpfs", "tmpfs");
  if (!tmpfs) return tmpfs.error();
  t.tmpfs = *tmpfs;
  return t;
}

result<submit_request> parse_submit_request(std::string_view text) {
  json_reader r("pipeline submission");
  auto parsed = r.parse_object(text);
  if (!parsed) return parsed.error();
  const json::object& o = *parsed;
  static constexpr std::string_view kKnown[] = {"project", "patch",     "commit",
                                                "spec",    "spec_file", "source"};
  for (const auto& [key, value] : o) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return r.fail(std::string(key).substr(0, 100),
                    "not a member of a submission (project, patch, commit, spec, spec_file, "
                    "source)");
    }
  }
  submit_request out;
  for (auto [key, into] : {std::pair<std::string_view, std::string*>{"project", &out.project},
                           {"patch", &out.patch},
                           {"commit", &out.commit},
                           {"spec", &out.spec},
                           {"spec_file", &out.spec_file}}) {
    if (auto e = r.read(o, key, key, *into)) return *e;
  }
  auto valid_project = [](std::string_view p) {
    return !p.empty() && p.size() <= 200 && std::all_of(p.begin(), p.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-' || c == '/';
    });
  };
  if (!valid_project(out.project)) {
    return r.fail("project", "\"" + out.project.substr(0, 100) +
                                 "\" is not a project name; use 1-200 of A-Z a-z 0-9 . _ - /");
  }
  if (out.patch.size() > 200) return r.fail("patch", "longer than 200 characters");
  if (out.commit.size() > 200) return r.fail("commit", "longer than 200 characters");
  if (out.spec.empty()) return r.fail("spec", "missing: send the .pantry.yml text");
  if (out.spec_file.empty()) out.spec_file = ".pantry.yml";
  if (out.spec_file.size() > 200 || out.spec_file.find('\n') != std::string::npos) {
    return r.fail("spec_file", "a file name of at most 200 characters on one line");
  }
  if (auto s = o.if_contains("source")) {
    auto src = source_from_json(*s);
    if (!src) return src.error();
    out.source = std::move(*src);
  }
  return out;
}

json::object to_json(const submit_request& r) {
  json::object o{{"project", r.project}, {"spec", r.spec}, {"spec_file", r.spec_file}};
  if (!r.patch.empty()) o["patch"] = r.patch;
  if (!r.commit.empty()) o["commit"] = r.commit;
  if (r.source.type != source_ref::kind::none) o["source"] = to_json(r.source);
  return o;
}

}  // namespace pantry::orchestrator::coordinator
