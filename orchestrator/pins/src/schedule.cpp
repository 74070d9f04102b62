#include "pantry/orchestrator/pins/schedule.h"

namespace pantry::orchestrator::pins {

std::optional<next_run> plan_next_run(const config::cron_schedule& schedule,
                                      std::optional<std::chrono::sys_seconds> previous,
                                      std::chrono::sys_seconds now) {
  auto at = schedule.next_after(now);
  if (!at) return std::nullopt;
  next_run next;
  next.at = *at;
  if (!previous) return next;
  for (auto due = schedule.next_after(*previous); due && *due <= now && next.skipped < kMaxCounted;
       due = schedule.next_after(*due)) {
    if (!next.first_skipped) next.first_skipped = *due;
    ++next.skipped;
  }
  return next;
}

}  // namespace pantry::orchestrator::pins
