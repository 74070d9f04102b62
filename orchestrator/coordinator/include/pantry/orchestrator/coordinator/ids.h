#pragma once

// The coordinator's shared vocabulary: its clock and the ids of pipelines and jobs.

#include <chrono>
#include <cstdint>

namespace pantry::orchestrator::coordinator {

// Wall-clock time: records are persisted and shown to people, and survive a restart.
using clock = std::chrono::system_clock;

// Global, increasing from 1, never reused (not even after a restart: the scheduler continues
// after the largest id it restored).
using job_id = std::uint64_t;
using pipeline_id = std::uint64_t;

}  // namespace pantry::orchestrator::coordinator
