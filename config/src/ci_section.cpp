// The ci: section: the CI coordinator's built-in runner slots, who may do what (tokens), the
// secrets jobs may name, when a silent runner loses its jobs, and how much log and artifact
// output is kept.

#include "address.h"
#include "chars.h"
#include "emit.h"
#include "message.h"
#include "section.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>

namespace pantry::config {

std::string_view to_string(ci_role role) noexcept {
  switch (role) {
    case ci_role::submit:
      return "submit";
    case ci_role::read:
      return "read";
    case ci_role::runner:
      return "runner";
  }
  return "read";
}

bool is_ci_name(std::string_view name) noexcept {
  constexpr std::size_t kMaxName = 63;
  if (name.empty() || name.size() > kMaxName || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return detail::is_alpha(c) || detail::is_digit(c) || c == '_' || c == '.' || c == '-';
  });
}

namespace detail {
namespace {

constexpr std::array<std::string_view, 10> kCiKeys = {
    "enabled", "slots",     "tokens",    "secrets",    "runner_timeout",
    "logs",    "artifacts", "runner_of", "quarantine", "quarantine_exit_passes"};
constexpr std::array<std::string_view, 3> kRunnerOfKeys = {"url", "token", "slots"};
constexpr std::array<std::string_view, 3> kTokenKeys = {"name", "token", "role"};
constexpr std::array<std::string_view, 3> kLimitKeys = {"max_job", "keep_for", "max_total"};
constexpr std::array<ci_role, 3> kRoles = {ci_role::submit, ci_role::read, ci_role::runner};

// More built-in slots than this is a typo: each slot is a container running at once.
constexpr unsigned kMaxSlots = 1024;

constexpr std::string_view kTokenExample =
    "[{name: dev, token: \"a-long-random-secret\", role: submit}]";

std::string repeated_token_name(std::string_view name, std::string_view first_path, int line) {
  return quote(name) + " is already the name of " + std::string(first_path) + " (line " +
         std::to_string(line) + "); give each token its own name";
}

// ci.tokens, replacing the current list if nothing in it is wrong.
void read_tokens(reader& r, const entry& e, ci_config& ci) {
  const std::string not_a_list = ", expected a list of tokens, e.g. " + std::string(kTokenExample);
  const std::string not_a_map =
      ", expected a map with name, token and role, e.g. " + std::string(kTokenExample);
  static constexpr std::array<required_key, 3> kRequired = {{
      {"name", "a name, e.g. dev"},
      {"token", "at least 16 characters, e.g. the output of `openssl rand -hex 24`"},
      {"role", "submit, read or runner"},
  }};
  const list_rules<ci_token> rules = {
      .not_a_list = not_a_list,
      .not_a_map = not_a_map,
      .keys = kTokenKeys,
      .required = kRequired,
      .unique_key = "name",
      .unique_field = &ci_token::name,
      .repeated = repeated_token_name,
  };
  // Tokens are unique too, or a request's token would not say who sent it; the message names
  // the item, never the token.
  unique_values tokens_seen;
  auto tokens = r.read_list(e, rules, [&](ci_token& t, const entry& f) {
    if (f.key == "name") {
      auto s = r.as_scalar(f, "a token name, e.g. dev");
      if (!s) return;
      if (!is_ci_name(*s)) {
        r.fail(f, quote(*s) +
                      " is not a token name; use 1 to 63 letters, digits, '_', '.' and '-', "
                      "e.g. dev");
        return;
      }
      t.name = std::move(*s);
    } else if (f.key == "token") {
      auto s = read_token(r, f);
      if (!s) return;
      const int line = f.mark().line + 1;
      if (auto first = tokens_seen.add(*s, 0, line)) {
        r.fail(f, "the token is the same as the one on line " + std::to_string(first->line) +
                      "; give each token its own value");
        return;
      }
      t.token = std::move(*s);
    } else if (f.key == "role") {
      auto s = r.as_scalar(f, "submit, read or runner");
      if (!s) return;
      const auto role = std::find_if(kRoles.begin(), kRoles.end(),
                                     [&](ci_role role) { return to_string(role) == *s; });
      if (role == kRoles.end()) {
        r.fail(f, quote(*s) +
                      " is not a role; use submit (submit and cancel pipelines), "
                      "read (view them) or runner (take jobs)");
        return;
      }
      t.role = *role;
    }
  });
  if (tokens) ci.tokens = std::move(*tokens);
}

void read_secrets(reader& r, const entry& e, ci_config& ci) {
  const std::size_t problems_before = r.problems();
  std::map<std::string, std::string> secrets;
  r.read_named_map(e, "{PYPI_TOKEN: /etc/pantry/secrets/pypi_token}", [&](const entry& f) {
    if (!is_ci_name(f.key)) {
      r.fail(f.key_node.Mark(), f.path,
             quote(f.key) +
                 " is not a secret name; use 1 to 63 letters, digits, '_', '.' and '-' (a job "
                 "reads the secret at /run/secrets/NAME), e.g. PYPI_TOKEN");
      return;
    }
    auto path = r.as_text(f, "the absolute path of the file holding the secret");
    if (!path) return;
    if (!path->starts_with('/')) {
      r.fail(f, quote(*path) +
                    " is not an absolute path; give the file holding the secret, e.g. "
                    "/etc/pantry/secrets/" +
                    std::string(f.key));
      return;
    }
    secrets.emplace(std::string(f.key), std::move(*path));
  });
  // Like a list, the map is replaced whole or not at all.
  if (r.problems() == problems_before) ci.secrets = std::move(secrets);
}

void read_limits(reader& r, const entry& e, ci_storage_limits& limits, std::string_view max_job,
                 std::string_view max_total) {
  r.read_map(e, kLimitKeys, [&](const entry& f) {
    if (f.key == "max_job" || f.key == "max_total") {
      const std::string_view example = f.key == "max_job" ? max_job : max_total;
      auto n = r.read_size(f, example);
      if (!n) return;
      if (*n == 0) {
        r.fail(f, quote(f.value.Scalar()) + " would keep nothing; set a size, e.g. " +
                      std::string(example));
        return;
      }
      (f.key == "max_job" ? limits.max_job : limits.max_total) = *n;
      r.note(f.path, f.mark());
    } else if (f.key == "keep_for") {
      if (auto d = r.read_positive_duration(f, "would remove every job's output at once", "30d")) {
        limits.keep_for = *d;
      }
    }
  });
}

// The longest test id kept: pytest's node ids of deeply parametrized tests run long, and one
// this long is a pasted log line.
constexpr std::size_t kMaxTestId = 4096;
// Passes in a row to leave quarantine: they are counted over the test history, which keeps a
// project's last 100 runs, so a larger count would keep a test in quarantine for good.
constexpr unsigned kMaxExitPasses = 100;

constexpr std::string_view kQuarantineExample = "{app: [\"tests/test_net.py::test_timeout\"]}";

// A project name as pipelines carry it: 1-200 of A-Z a-z 0-9 . _ - /.
bool is_pipeline_project(std::string_view name) noexcept {
  constexpr std::size_t kMaxProject = 200;
  if (name.empty() || name.size() > kMaxProject) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return detail::is_alpha(c) || detail::is_digit(c) || c == '_' || c == '.' || c == '-' ||
           c == '/';
  });
}

// ci.quarantine: project -> test ids; replaced whole or not at all.
void read_quarantine(reader& r, const entry& e, ci_config& ci) {
  const std::size_t problems_before = r.problems();
  std::map<std::string, std::vector<std::string>> quarantine;
  r.read_named_map(e, kQuarantineExample, [&](const entry& f) {
    if (!is_pipeline_project(f.key)) {
      r.fail(f.key_node.Mark(), f.path,
             quote(f.key) +
                 " is not a project name; use the project of its pipelines (1 to 200 letters, "
                 "digits, '_', '.', '-' and '/'), e.g. app");
      return;
    }
    if (!f.value.IsSequence()) {
      r.fail(f, describe(f.value) + " is " + kind_of(f.value) +
                    ", expected a list of test ids, e.g. [\"tests/test_net.py::test_timeout\"]");
      return;
    }
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < f.value.size(); ++i) {
      const entry item{f.key, f.key_node, f.value[i], f.path + "[" + std::to_string(i) + "]"};
      auto id =
          r.as_text(item, "a test id as `pantry tests` shows it, e.g. tests/test_a.py::test_b");
      if (!id) continue;
      if (id->empty() || id->size() > kMaxTestId ||
          id->find_first_of("\r\n") != std::string::npos) {
        r.fail(item, quote(id->substr(0, 80)) +
                         " is not a test id; give one line of at most 4096 bytes as `pantry "
                         "tests` shows it, e.g. tests/test_a.py::test_b");
        continue;
      }
      if (std::find(ids.begin(), ids.end(), *id) != ids.end()) {
        r.fail(item, quote(*id) + " is listed twice; list it once");
        continue;
      }
      ids.push_back(std::move(*id));
    }
    quarantine[std::string(f.key)] = std::move(ids);
  });
  if (r.problems() == problems_before) ci.quarantine = std::move(quarantine);
}

// ci.runner_of: the coordinator this pantry takes jobs from.
void read_runner_of(reader& r, const entry& e, ci_runner_of& of) {
  r.read_map(e, kRunnerOfKeys, [&](const entry& f) {
    if (f.key == "url") {
      auto s = r.as_scalar(f, "the coordinator's URL, e.g. https://ci.example:8585");
      if (!s) return;
      if (s->empty()) {
        of.url.clear();
        return;
      }
      if (auto why = url_problem(*s, url_kind::oci_registry)) {
        r.fail(f, quote(*s) + " " + *why);
        return;
      }
      if (s->ends_with('/')) s->pop_back();
      of.url = std::move(*s);
      r.note(f.path, f.mark());
    } else if (f.key == "token") {
      if (auto s = read_token(r, f)) of.token = std::move(*s);
      r.note(f.path, f.mark());
    } else if (f.key == "slots") {
      if (auto n =
              r.read_count(f, 0, kMaxSlots,
                           "use 0 for one per CPU core, or 1 to " + std::to_string(kMaxSlots))) {
        of.slots = *n;
      }
    }
  });
}

void read_ci(reader& r, const entry& e, config& c) {
  ci_config& ci = c.ci;
  r.read_map(e, kCiKeys, [&](const entry& f) {
    if (f.key == "enabled") {
      if (auto b = r.read_bool(f)) ci.enabled = *b;
    } else if (f.key == "slots") {
      if (auto n =
              r.read_count(f, 0, kMaxSlots,
                           "use 0 for one per CPU core, or 1 to " + std::to_string(kMaxSlots))) {
        ci.slots = *n;
      }
    } else if (f.key == "tokens") {
      read_tokens(r, f, ci);
    } else if (f.key == "secrets") {
      read_secrets(r, f, ci);
    } else if (f.key == "runner_timeout") {
      if (auto d = r.read_positive_duration(
              f, "would take every job from every remote runner at once", "30s")) {
        ci.runner_timeout = *d;
      }
    } else if (f.key == "logs") {
      read_limits(r, f, ci.log_limits, "64MiB", "2GiB");
    } else if (f.key == "artifacts") {
      read_limits(r, f, ci.artifact_limits, "1GiB", "10GiB");
    } else if (f.key == "runner_of") {
      read_runner_of(r, f, ci.runner_of);
    } else if (f.key == "quarantine") {
      read_quarantine(r, f, ci);
    } else if (f.key == "quarantine_exit_passes") {
      if (auto n = r.read_count(f, 1, kMaxExitPasses,
                                "use 1 to " + std::to_string(kMaxExitPasses) + ", e.g. 10")) {
        ci.quarantine_exit_passes = *n;
      }
    }
  });
}

// A job may store up to max_job, so a total below it could not hold even one job's output.
void check_ci(reader& r, const config& c) {
  struct kind {
    std::string_view path;
    const ci_storage_limits* limits;
  };
  for (const kind& k :
       {kind{"ci.logs", &c.ci.log_limits}, kind{"ci.artifacts", &c.ci.artifact_limits}}) {
    if (k.limits->max_total >= k.limits->max_job) continue;
    const std::string total_path = std::string(k.path) + ".max_total";
    const std::string job_path = std::string(k.path) + ".max_job";
    std::optional<YAML::Mark> mark = r.noted(total_path);
    std::string at = total_path;
    if (!mark) {
      mark = r.noted(job_path);
      at = job_path;
    }
    if (!mark) continue;
    r.fail(*mark, at,
           quote(format_size(k.limits->max_total)) + " (max_total) is less than " +
               quote(format_size(k.limits->max_job)) +
               " (max_job), so one job's output could not be kept; make max_total at least "
               "max_job");
  }
  // A runner without a token would be refused by its coordinator; a token without a URL is a
  // half-written section.
  const ci_runner_of& of = c.ci.runner_of;
  if (of.url.empty() != of.token.empty()) {
    const std::string missing = of.url.empty() ? "ci.runner_of.url" : "ci.runner_of.token";
    const std::string given = of.url.empty() ? "ci.runner_of.token" : "ci.runner_of.url";
    if (auto mark = r.noted(given)) {
      r.fail(*mark, missing,
             "ci.runner_of needs both url and token (a token of role runner in the "
             "coordinator's ci.tokens); " +
                 missing + " is not set");
    }
  }
}

void emit_limits(YAML::Emitter& out, std::string_view key, const ci_storage_limits& limits) {
  out << YAML::Key << std::string(key) << YAML::Value << YAML::BeginMap;
  emit_key(out, "max_job", format_size(limits.max_job));
  emit_key(out, "keep_for", format_duration(limits.keep_for));
  emit_key(out, "max_total", format_size(limits.max_total));
  out << YAML::EndMap;
}

void emit_ci(YAML::Emitter& out, const config& c, secrets s) {
  const ci_config& ci = c.ci;
  out << YAML::BeginMap;
  emit_key(out, "enabled", ci.enabled);
  emit_key(out, "slots", ci.slots);
  out << YAML::Key << "tokens" << YAML::Value;
  emit_list(out, ci.tokens, [&](YAML::Emitter& o, const ci_token& t) {
    emit_key(o, "name", t.name);
    emit_key(o, "token", secret(t.token, s));
    emit_key(o, "role", std::string(to_string(t.role)));
  });
  out << YAML::Key << "secrets" << YAML::Value;
  if (ci.secrets.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
  } else {
    out << YAML::BeginMap;
    for (const auto& [name, file] : ci.secrets)
      emit_key(out, name, file);
    out << YAML::EndMap;
  }
  emit_key(out, "runner_timeout", format_duration(ci.runner_timeout));
  emit_limits(out, "logs", ci.log_limits);
  emit_limits(out, "artifacts", ci.artifact_limits);
  out << YAML::Key << "quarantine" << YAML::Value;
  if (ci.quarantine.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
  } else {
    out << YAML::BeginMap;
    for (const auto& [project, ids] : ci.quarantine) {
      out << YAML::Key << project << YAML::Value << YAML::BeginSeq;
      for (const auto& id : ids)
        out << YAML::DoubleQuoted << id;
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  emit_key(out, "quarantine_exit_passes", ci.quarantine_exit_passes);
  // Only when set: the defaults leave it out, so that `pantry config show` prints what reads back.
  if (!ci.runner_of.url.empty()) {
    out << YAML::Key << "runner_of" << YAML::Value << YAML::BeginMap;
    emit_key(out, "url", ci.runner_of.url);
    emit_key(out, "token", secret(ci.runner_of.token, s));
    emit_key(out, "slots", ci.runner_of.slots);
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 1> kKeys = {{{"ci", read_ci, emit_ci}}};
constexpr std::array<key_set, 4> kMaps = {{
    {"ci", kCiKeys},
    {"ci.logs", kLimitKeys},
    {"ci.artifacts", kLimitKeys},
    {"ci.runner_of", kRunnerOfKeys},
}};

}  // namespace

constinit const section ci_section = {.keys = kKeys, .maps = kMaps, .check = check_ci};

}  // namespace detail
}  // namespace pantry::config
