#pragma once

// When the pin bot runs inside `pantry serve`: the due times of `pins.schedule` (config's cron,
// UTC), one run at a time. A due time that passes while a run is still going is skipped, not
// queued: the next run starts at the first due time after the running one ends, so a slow run
// never piles up runs behind it. Pure: the caller gives the times (bot_service.h reads the clock).

#include "pantry/config/cron.h"

#include <chrono>
#include <cstddef>
#include <optional>

namespace pantry::orchestrator::pins {

// The next run, and the due times skipped since the last one.
struct next_run {
  std::chrono::sys_seconds at;  // the first due time strictly after `now`
  // Due times in (previous due time, now] that no run took: they passed while a run was going.
  std::size_t skipped = 0;
  std::optional<std::chrono::sys_seconds> first_skipped;  // the earliest of them
};

// The next run after `now`. `previous`: the due time of the run that just ended (nullopt at
// start-up: nothing counts as skipped then). nullopt when the schedule never fires again (cron's
// next_after gives up after 28 years). Counts at most kMaxCounted skipped times.
std::optional<next_run> plan_next_run(const config::cron_schedule& schedule,
                                      std::optional<std::chrono::sys_seconds> previous,
                                      std::chrono::sys_seconds now);

inline constexpr std::size_t kMaxCounted = 1000;

}  // namespace pantry::orchestrator::pins
