#pragma once

// The one retention policy of logs and artifacts: drop what is older than keep_for, then the
// oldest while the total exceeds max_total.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/log_store.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

namespace pantry::orchestrator::coordinator::detail {

// `candidates` are (created, job) of what may be dropped; `total` counts everything kept.
// `remove(job)` drops one and returns its size, or errc::not_found if it went meanwhile (then
// skipped); any other error ends the prune.
template <class Remove>
result<prune_report> prune_oldest(std::vector<std::pair<clock::time_point, job_id>> candidates,
                                  std::uint64_t total, clock::time_point now,
                                  std::chrono::seconds keep_for, std::uint64_t max_total,
                                  Remove&& remove) {
  std::sort(candidates.begin(), candidates.end());
  prune_report report;
  for (const auto& [created, job] : candidates) {
    // Oldest first: once one is young enough and the total fits, so are all after it.
    if (now - created < keep_for && total <= max_total) break;
    result<std::uint64_t> removed = remove(job);
    if (!removed) {
      if (removed.error().is(errc::not_found)) continue;
      return removed.error();
    }
    report.removed.push_back(job);
    report.bytes += *removed;
    total -= std::min(total, *removed);
  }
  return report;
}

}  // namespace pantry::orchestrator::coordinator::detail
