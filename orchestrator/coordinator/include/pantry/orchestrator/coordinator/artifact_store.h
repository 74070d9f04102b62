#pragma once

// Job artifacts in the cache store: one tar per job (the runner packs the job's `artifacts:`
// paths), kept as a pinned blob, downloadable, pruned by age and total size.
//
// Storage: the tar is a pinned blob (never evicted, outside the cache quota); its metadata is an
// entry `ci/artifact/<job>` targeting it (attributes size, created). Two jobs with identical tars
// share the blob; it is removed with the last job that names it. A summary of every job's
// artifacts is kept in memory, loaded at open.
//
// Thread safety: every call may come from any thread at any time.
// Blocking: put, get, prune and remove use the store; call them off the I/O threads. info() and
// total_bytes() never block.

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/log_store.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>

namespace pantry::orchestrator::coordinator {

struct artifact_limits {
  std::uint64_t max_job = 1ull << 30;  // a bigger tar is refused
  // Artifacts older than this are dropped by prune().
  std::chrono::seconds keep_for{30 * 86400};
  // prune() then drops the oldest while all artifacts together exceed this.
  std::uint64_t max_total = 10ull << 30;
};

struct artifact_info {
  cache::digest id;
  std::uint64_t size = 0;
  clock::time_point created;
};

class artifact_store {
 public:
  // Opens the artifacts kept in `store` (loading the summary of each into memory). Blocks.
  static result<std::shared_ptr<artifact_store>> open(std::shared_ptr<cache::store> store,
                                                      artifact_limits limits);

  virtual ~artifact_store() = default;

  // Stores the tar at `tar_file` as the job's artifacts, streamed from the file (hashed in a
  // first pass, then written), replacing any the job had. errc::quota_exceeded, naming both
  // sizes, if the file is larger than max_job; errc::not_found / errc::io_error if it cannot be
  // read; store errors as they come. Blocking.
  virtual result<artifact_info> put(job_id job, const std::filesystem::path& tar_file) = 0;

  // A reader on the job's tar. errc::not_found if the job has none. Blocking (briefly).
  virtual result<cache::blob_reader> get(job_id job) = 0;

  // The job's artifacts, or nullopt if it has none. Never blocks.
  virtual std::optional<artifact_info> info(job_id job) const = 0;

  // Total size of all jobs' artifacts (a shared blob counts once per job). Never blocks.
  virtual std::uint64_t total_bytes() const = 0;

  // Retention: drops artifacts older than keep_for at `now`, then the oldest while the total
  // exceeds max_total. Blocking.
  virtual result<prune_report> prune(clock::time_point now) = 0;

  // Drops the job's artifacts. errc::not_found if it has none. Blocking.
  virtual result<void> remove(job_id job) = 0;
};

}  // namespace pantry::orchestrator::coordinator
