#pragma once

// The pin bot's engine: one run of `pantry pins check` or `pantry pins bump` over the configured
// repositories (config's `pins:` section), with pantry's own PyPI index and registry over HTTP.
// check reads the files and changes nothing; bump makes one branch per upgrade in a scratch clone
// and pushes it to the repository, and with open_prs opens or updates its pull request. The same
// run serves the command line (cli/pins.cpp prints its report) and the schedule inside
// `pantry serve` (bot_service.h logs it). Two bumps of one data dir never overlap: each holds
// <data_dir>/pins/bump.lock while it runs (a check takes no lock: it writes nothing).
//
// Blocking: git through the runner's process library, HTTP through the coordinator's blocking
// api_client. Never call it on an I/O thread of a server in the same process: it asks that server.

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/pins/branches.h"
#include "pantry/orchestrator/pins/status.h"

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::pins {

// Exit statuses of a run, as the commands return them.
inline constexpr int kExitCurrent = 0;  // every pin is current (check), or every branch made (bump)
inline constexpr int kExitOutdated = 1;  // check: an upgrade is proposed, or found and skipped
inline constexpr int kExitError = 2;

// The pantry whose index, registry and coordinator a run asks.
struct pantry_endpoint {
  std::string url;  // http(s)://host:port, no trailing '/'
  // bump: a token that may submit pipelines to its coordinator. Each branch made or found then
  // gets a pipeline for its commit (once per commit), whose state later runs follow and record
  // in <data_dir>/pins/branches.json (branches.h), and with open_prs put in the pull request's
  // description when it ends. nullopt: no pipelines.
  std::optional<std::string> token;
};

struct bot_options {
  bool bump = false;      // false: check
  bool open_prs = false;  // bump only: a pull request per branch
  // With open_prs: a repository without a forge gets its branches only (the schedule), instead
  // of an error (`pantry pins bump --open-prs`).
  bool forge_optional = false;
  std::optional<std::string> repo;  // only this configured repository
  std::optional<std::string> only;  // only this project (PEP 503-normalized) or image name
  // How messages name the config ("pins.yaml", "the built-in config").
  std::string config_name = "the built-in config";
  // The pantry to ask, asked once the selection is known to be good: its errors end the run as
  // the config's do.
  std::function<result<pantry_endpoint>()> locate_pantry;
  // Recorded for each branch when locate_pantry gave no token.
  std::string no_ci_reason =
      "no token for pantry's coordinator (set PANTRY_TOKEN, or run beside the `pantry serve` of "
      "the config's data dir)";
  // Asked before each pin and image; true ends the run there, as an error ("stopped").
  std::function<bool()> stop_requested;
};

// Where a run's report goes, line by line (no trailing newline).
struct bot_output {
  // One line of the report: a decision, a reason or hash below it (indented), a branch made.
  std::function<void(std::string_view)> line;
  // One error: what failed and why, without the command's name (the caller prefixes it).
  std::function<void(std::string_view)> problem;
};

// What a run found.
struct bot_outcome {
  int status = kExitCurrent;  // kExitCurrent, kExitOutdated (check only) or kExitError
  std::size_t checked = 0;    // pins and image references asked about
};

// Runs check or bump as `opt` says over `cfg.pins.repositories` (the declined record lives under
// cfg.data_dir). A bump, however it ends, replaces <data_dir>/pins/last_run.json (status.h). Errors
// end up in the outcome's status and in out.problem: a config without pins repositories, an unknown
// opt.repo, a bad policy value, --open-prs for check, an unreadable or malformed file (named with
// file and line; that file is left as it is, the others go on), an unreachable index or registry
// (the run stops: it decides nothing), a git command that failed, a bump while another holds the
// data dir's lock (errc::locked's message names the holder's pid).
bot_outcome run_bot(const config::config& cfg, const bot_options& opt, const bot_output& out);

// What `pantry pins status` shows (status.h): the records under cfg.data_dir (only `repo`'s when
// given), each pipeline that had not ended asked about again at `where` when it has a token (a
// failure to ask is reported through out.problem and leaves the recorded state). Writes nothing.
// Errors: a record's (unreadable, malformed).
result<pins_report> current_status(const config::config& cfg,
                                   const std::optional<std::string>& repo,
                                   const std::optional<pantry_endpoint>& where,
                                   const bot_output& out);

}  // namespace pantry::orchestrator::pins
