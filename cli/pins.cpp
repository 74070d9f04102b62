// `pantry pins check` and `pantry pins bump`: the pin bot's run (orchestrator/pins/bot.h) with its
// report on stdout and its errors on stderr.

#include "pins.h"

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/pins/bot.h"

#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace pantry::cli {
namespace {

namespace pins = orchestrator::pins;

// --pantry, else $PANTRY_URL, else the serve of the config's data dir.
result<std::string> index_url(const pins_check_options& opt, const config::config& cfg) {
  if (opt.pantry) return *opt.pantry;
  if (const char* env = std::getenv("PANTRY_URL"); env && *env) {
    std::string url = env;
    while (url.ends_with("/"))
      url.pop_back();
    return url;
  }
  auto found = app::find_control(cfg.data_dir);
  if (!found) return found.error();
  if (!*found)
    return error(errc::not_found, "no `pantry serve` holds the data dir " + cfg.data_dir +
                                      "; start one, or give --pantry URL of a pantry that runs");
  return (*found)->url;
}

int run_pins(const pins_check_options& opt, bool bump) {
  const std::string command = bump ? "pins bump" : "pins check";
  const pins::bot_output out{[](std::string_view line) { std::cout << line << '\n'; },
                             [&](std::string_view message) {
                               std::cerr << "pantry: " << command << ": " << message << '\n';
                             }};
  config::config cfg = config::defaults();
  if (opt.config_file) {
    auto loaded = config::load_file(*opt.config_file);
    if (!loaded) {
      out.problem(loaded.error().message);
      return pins::kExitError;
    }
    cfg = std::move(*loaded);
  }
  pins::bot_options bot;
  bot.bump = bump;
  bot.open_prs = opt.open_prs;
  bot.repo = opt.repo;
  bot.only = opt.only;
  if (opt.config_file) bot.config_name = *opt.config_file;
  bot.pantry_url = [&] { return index_url(opt, cfg); };
  return pins::run_bot(cfg, bot, out).status;
}

}  // namespace

int run_pins_check(const pins_check_options& opt) {
  return run_pins(opt, false);
}

int run_pins_bump(const pins_check_options& opt) {
  return run_pins(opt, true);
}

}  // namespace pantry::cli
