#pragma once

// The coordinator's shared vocabulary: the clock and the ids of pipelines and jobs.

#include <chrono>
#include <cstdint>

namespace pantry::orchestrator::coordinator {

using clock = std::chrono::system_clock;
using job_id = std::uint64_t;       // global, increasing from 1, never reused
using pipeline_id = std::uint64_t;  // global, increasing from 1, never reused

}  // namespace pantry::orchestrator::coordinator
