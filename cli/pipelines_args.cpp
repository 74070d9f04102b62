// The arguments of the coordinator's commands (pipelines.h): in pantry_cli, apart from the
// commands, so that unit tests link the parsers without the clients.

#include "pipelines.h"

#include "pantry/orchestrator/coordinator/ticket.h"

#include <functional>
#include <map>

namespace pantry::cli {
namespace {

error usage(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

// One option: its names, whether it takes a value, and what it does with it.
struct option_rule {
  std::vector<std::string> names;  // "--url", "-f"
  bool takes_value = true;
  std::function<void(const std::string&)> apply;
};

// Options in any order (--name VALUE, --name=VALUE, -x VALUE); the rest are positional.
result<std::vector<std::string>> parse(const std::string& command,
                                       const std::vector<std::string>& args,
                                       std::vector<option_rule> rules) {
  std::vector<std::string> positional;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                        args.end());
      break;
    }
    if (a.size() < 2 || a[0] != '-') {
      positional.push_back(a);
      continue;
    }
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    const option_rule* rule = nullptr;
    for (const auto& r : rules) {
      for (const auto& n : r.names) {
        if (n == a) rule = &r;
      }
    }
    if (!rule) return usage("pantry " + command + ": unknown option " + a);
    if (!rule->takes_value) {
      if (inline_value) return usage("pantry " + command + ": " + a + " takes no value");
      rule->apply("");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) return usage("pantry " + command + ": " + a + " needs a value");
      inline_value = args[++i];
    }
    rule->apply(*inline_value);
  }
  return positional;
}

void where_rules(coordinator_options& w, std::vector<option_rule>& rules) {
  rules.push_back({{"--url"}, true, [&w](const std::string& v) { w.url = v; }});
  rules.push_back({{"--token"}, true, [&w](const std::string& v) { w.token = v; }});
  rules.push_back({{"--config"}, true, [&w](const std::string& v) { w.config_file = v; }});
  rules.push_back({{"--data-dir"}, true, [&w](const std::string& v) { w.data_dir = v; }});
}

bool is_number(const std::string& s) {
  return !s.empty() && s.size() <= 19 && s.find_first_not_of("0123456789") == std::string::npos &&
         s != "0";
}

}  // namespace

result<submit_options> parse_submit_args(const std::vector<std::string>& args) {
  submit_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"-f", "--file"}, true, [&o](const std::string& v) { o.file = v; }});
  rules.push_back({{"-C"}, true, [&o](const std::string& v) { o.dir = v; }});
  rules.push_back({{"--project"}, true, [&o](const std::string& v) { o.project = v; }});
  rules.push_back({{"--patch"}, true, [&o](const std::string& v) { o.patch = v; }});
  rules.push_back({{"--commit"}, true, [&o](const std::string& v) { o.commit = v; }});
  rules.push_back({{"--git"}, true, [&o](const std::string& v) { o.git = v; }});
  rules.push_back({{"--auth-secret"}, true, [&o](const std::string& v) { o.auth_secret = v; }});
  rules.push_back({{"--base"}, true, [&o](const std::string& v) { o.base = v; }});
  rules.push_back({{"--wait"}, false, [&o](const std::string&) { o.wait = true; }});
  bool no_color = false;
  rules.push_back({{"--no-color"}, false, [&no_color](const std::string&) { no_color = true; }});
  auto rest = parse("submit", args, std::move(rules));
  if (!rest) return rest.error();
  if (!rest->empty()) return usage("pantry submit: unexpected argument " + rest->front());
  if (o.git && !o.commit) {
    return usage("pantry submit: --git needs --commit SHA (the 40 hex digits of the commit)");
  }
  if (o.commit && !orchestrator::coordinator::is_commit_id(*o.commit)) {
    return usage("pantry submit: --commit " + *o.commit +
                 " is not a full commit id; give the 40 hex digits `git rev-parse HEAD` prints");
  }
  if (o.auth_secret && !o.git) return usage("pantry submit: --auth-secret goes with --git");
  if (o.base && !o.git) {
    return usage(
        "pantry submit: --base goes with --git (an uploaded tree has no base pantry "
        "could compare it with)");
  }
  if (o.base && !orchestrator::coordinator::is_commit_id(*o.base)) {
    return usage("pantry submit: --base " + *o.base +
                 " is not a full commit id; give the 40 hex digits `git merge-base` prints");
  }
  o.color = !no_color;
  return o;
}

result<jobs_options> parse_jobs_args(const std::vector<std::string>& args) {
  jobs_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"--project"}, true, [&o](const std::string& v) { o.project = v; }});
  auto rest = parse("jobs", args, std::move(rules));
  if (!rest) return rest.error();
  if (!rest->empty()) return usage("pantry jobs: unexpected argument " + rest->front());
  return o;
}

result<logs_options> parse_logs_args(const std::vector<std::string>& args) {
  logs_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"-f", "--follow"}, false, [&o](const std::string&) { o.follow = true; }});
  rules.push_back({{"--grep"}, true, [&o](const std::string& v) { o.grep = v; }});
  rules.push_back({{"--step"}, true, [&o](const std::string& v) { o.step = v; }});
  auto rest = parse("logs", args, std::move(rules));
  if (!rest) return rest.error();
  if (rest->size() != 1) return usage("pantry logs: give one JOB id (pantry jobs lists them)");
  if (!is_number(rest->front())) {
    return usage("pantry logs: " + rest->front() + " is not a job id (a number)");
  }
  o.job = rest->front();
  return o;
}

result<cancel_options> parse_cancel_args(const std::vector<std::string>& args) {
  cancel_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"--job"}, false, [&o](const std::string&) { o.job = true; }});
  auto rest = parse("cancel", args, std::move(rules));
  if (!rest) return rest.error();
  if (rest->size() != 1) {
    return usage("pantry cancel: give one PIPELINE id, or --job JOB");
  }
  if (!is_number(rest->front())) {
    return usage("pantry cancel: " + rest->front() + " is not an id (a number)");
  }
  o.id = rest->front();
  return o;
}

result<artifacts_options> parse_artifacts_args(const std::vector<std::string>& args) {
  artifacts_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"-o", "--output"}, true, [&o](const std::string& v) { o.out_dir = v; }});
  auto rest = parse("artifacts", args, std::move(rules));
  if (!rest) return rest.error();
  if (rest->size() != 1 || !is_number(rest->front())) {
    return usage("pantry artifacts: give one JOB id (a number) and -o DIR");
  }
  if (o.out_dir.empty()) return usage("pantry artifacts: -o DIR says where the files go");
  o.job = rest->front();
  return o;
}

result<tests_options> parse_tests_args(const std::vector<std::string>& args) {
  tests_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  std::optional<std::string> slowest;
  rules.push_back({{"--project"}, true, [&o](const std::string& v) { o.project = v; }});
  rules.push_back({{"--flaky"}, false, [&o](const std::string&) { o.flaky = true; }});
  rules.push_back({{"--slowest"}, true, [&slowest](const std::string& v) { slowest = v; }});
  rules.push_back({{"--quarantined"}, false, [&o](const std::string&) { o.quarantined = true; }});
  rules.push_back({{"--quarantine"}, true, [&o](const std::string& v) { o.quarantine = v; }});
  rules.push_back({{"--unquarantine"}, true, [&o](const std::string& v) { o.unquarantine = v; }});
  auto rest = parse("tests", args, std::move(rules));
  if (!rest) return rest.error();
  if (!rest->empty()) return usage("pantry tests: unexpected argument " + rest->front());
  if (o.project && o.project->empty()) return usage("pantry tests: --project needs a name");
  if (slowest) {
    if (!is_number(*slowest) || slowest->size() > 6) {
      return usage("pantry tests: --slowest " + *slowest +
                   " is not a count; give a number from 1 to 999999");
    }
    o.slowest = static_cast<std::size_t>(std::stoul(*slowest));
  }
  const int views = int(o.flaky) + int(o.slowest.has_value()) + int(o.quarantined) +
                    int(o.quarantine.has_value()) + int(o.unquarantine.has_value());
  if (views > 1) {
    return usage(
        "pantry tests: give one of --flaky, --slowest N, --quarantined, --quarantine ID and "
        "--unquarantine ID");
  }
  for (const auto* id : {&o.quarantine, &o.unquarantine}) {
    if (*id && (*id)->empty()) {
      return usage(
          "pantry tests: --quarantine and --unquarantine need a test id as `pantry "
          "tests` shows it, e.g. tests/test_a.py::test_b");
    }
  }
  return o;
}

result<measures_options> parse_measures_args(const std::vector<std::string>& args) {
  measures_options o;
  std::vector<option_rule> rules;
  where_rules(o.where, rules);
  rules.push_back({{"--project"}, true, [&o](const std::string& v) { o.project = v; }});
  auto rest = parse("ci measures", args, std::move(rules));
  if (!rest) return rest.error();
  if (!rest->empty()) return usage("pantry ci measures: unexpected argument " + rest->front());
  if (o.project && o.project->empty()) return usage("pantry ci measures: --project needs a name");
  return o;
}

}  // namespace pantry::cli
