#pragma once

// The pin bot inside `pantry serve` (with `pins.enabled`): a bump (bot.h) at each due time of
// `pins.schedule` (cron, UTC; schedule.h), with pull requests for the repositories that name a
// forge, against this pantry's own index, registry and coordinator. One run at a time: a due time
// that passes while a run goes on is skipped and logged. The run's report goes to the log, line by
// line, and a summary line ends it.
//
// A `pantry pins bump` beside it keeps working: both take <data_dir>/pins/bump.lock, so they never
// overlap; a scheduled run that finds it taken logs the holder's pid and waits for the next due
// time.
//
// Threads: the schedule is a thread of its own (the run blocks: git, HTTP to this server), never
// an I/O thread. stop() wakes it; a run under way ends at the next pin it would ask about, so
// stop() waits for at most one git command or one request.

#include "pantry/config/config.h"
#include "pantry/proxy/service.h"

#include <memory>
#include <string>

namespace pantry::orchestrator::pins {

class bot_service : public proxy::service {
 public:
  // `self_url` and `control_token`: this pantry's own routes, as app/control.h publishes them.
  // start() fails (config_error) on a schedule that does not parse or never fires.
  static std::shared_ptr<bot_service> create(const config::config& cfg, std::string self_url,
                                             std::string control_token);
};

}  // namespace pantry::orchestrator::pins
