// `pantry pins check` and `pantry pins bump`: the pin bot's run (orchestrator/pins/bot.h) with its
// report on stdout and its errors on stderr.

#include "pins.h"

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/pins/bot.h"
#include "pantry/text.h"

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::cli {
namespace {

namespace pins = orchestrator::pins;

// --pantry, else $PANTRY_URL, else the serve of the config's data dir; the token for its
// coordinator is $PANTRY_TOKEN with the first two, the serve's control token with the last.
result<pins::pantry_endpoint> locate_pantry(const pins_check_options& opt,
                                            const config::config& cfg) {
  pins::pantry_endpoint where;
  const char* env_url = std::getenv("PANTRY_URL");
  if (opt.pantry || (env_url && *env_url)) {
    where.url = opt.pantry ? *opt.pantry : env_url;
    while (where.url.ends_with("/"))
      where.url.pop_back();
    if (const char* token = std::getenv("PANTRY_TOKEN"); token && *token) where.token = token;
    return where;
  }
  auto found = app::find_control(cfg.data_dir);
  if (!found) return found.error();
  if (!*found)
    return error(errc::not_found, "no `pantry serve` holds the data dir " + cfg.data_dir +
                                      "; start one, or give --pantry URL of a pantry that runs");
  where.url = (*found)->url;
  where.token = (*found)->token;
  return where;
}

// The config of --config, or the built-in one; errors name the file.
result<config::config> load_config(const pins_check_options& opt) {
  if (!opt.config_file) return config::defaults();
  return config::load_file(*opt.config_file);
}

int run_pins(const pins_check_options& opt, bool bump) {
  const std::string command = bump ? "pins bump" : "pins check";
  const pins::bot_output out{[](std::string_view line) { std::cout << line << '\n'; },
                             [&](std::string_view message) {
                               std::cerr << "pantry: " << command << ": " << message << '\n';
                             }};
  auto loaded = load_config(opt);
  if (!loaded) {
    out.problem(loaded.error().message);
    return pins::kExitError;
  }
  const config::config& cfg = *loaded;
  pins::bot_options bot;
  bot.bump = bump;
  bot.open_prs = opt.open_prs;
  bot.repo = opt.repo;
  bot.only = opt.only;
  if (opt.config_file) bot.config_name = *opt.config_file;
  bot.locate_pantry = [&] { return locate_pantry(opt, cfg); };
  return pins::run_bot(cfg, bot, out).status;
}

}  // namespace

int run_pins_status(const pins_check_options& opt) {
  const auto problem = [](std::string_view message) {
    std::cerr << "pantry: pins status: " << message << '\n';
  };
  auto cfg = load_config(opt);
  if (!cfg) {
    problem(cfg.error().message);
    return pins::kExitError;
  }
  if (opt.repo) {
    bool known = false;
    for (const auto& r : cfg->pins.repositories)
      known = known || r.name == *opt.repo;
    if (!known) {
      problem("--repo " + quote_for_message(*opt.repo) + " is not a repository of pins in " +
              (opt.config_file ? *opt.config_file : std::string("the built-in config")));
      return pins::kExitError;
    }
  }
  // A pantry to ask about pipelines that had not ended, when one is at hand.
  std::optional<pins::pantry_endpoint> where;
  if (auto found = locate_pantry(opt, *cfg)) where = std::move(*found);
  auto shown = pins::current_status(*cfg, opt.repo, where, {[](std::string_view) {}, problem});
  if (!shown) {
    problem(shown.error().message);
    return pins::kExitError;
  }
  if (shown->branches.empty()) {
    std::cout << "no branches made by pins bump" << (opt.repo ? " in " + *opt.repo : std::string())
              << '\n';
  }
  bool failed = false;
  for (const auto& r : shown->branches) {
    // A superseded branch's pipeline is history: its failure is no longer the repository's.
    failed =
        failed || (r.superseded_by.empty() && (r.status == "failed" || r.status == "cancelled"));
    std::cout << r.repository << " " << r.branch << ": " << r.change << '\n';
    std::cout << "    commit " << (r.commit.empty() ? "-" : r.commit.substr(0, 12)) << '\n';
    if (r.pipeline != 0) {
      std::cout << "    pipeline " << r.pipeline << " " << r.status << " " << r.pipeline_url
                << '\n';
    } else {
      std::cout << "    pipeline - " << (r.note.empty() ? "none" : r.note) << '\n';
    }
    if (!r.pr_url.empty())
      std::cout << "    pull request " << r.pr_url << (r.declined ? " (declined)" : "") << '\n';
    if (!r.superseded_by.empty())
      std::cout << "    superseded by " << r.superseded_by
                << " (pull request closed, branch deleted)\n";
    if (r.rebuilds != 0)
      std::cout << "    rebased " << r.rebuilds << (r.rebuilds == 1 ? " time" : " times")
                << ", now on base " << (r.base.empty() ? "-" : r.base.substr(0, 12)) << '\n';
    if (!r.left_alone.empty()) std::cout << "    left alone: " << r.left_alone << '\n';
  }
  for (const auto& d : shown->declined) {
    std::cout << d.repository << " " << d.branch << ": declined"
              << (d.url.empty() ? std::string() : " (" + d.url + ")") << '\n';
  }
  if (shown->last) {
    const auto& last = *shown->last;
    std::cout << "last bump: " << last.started << " to " << last.ended << ", "
              << pins::outcome_name(last.status) << ": " << last.checked << " checked, "
              << last.problems << (last.problems == 1 ? " problem" : " problems") << '\n';
    for (const auto& p : last.first_problems)
      std::cout << "    " << p << '\n';
  } else {
    std::cout << "last bump: none recorded\n";
  }
  return failed ? pins::kExitOutdated : pins::kExitCurrent;
}

int run_pins_check(const pins_check_options& opt) {
  return run_pins(opt, false);
}

int run_pins_bump(const pins_check_options& opt) {
  return run_pins(opt, true);
}

}  // namespace pantry::cli
