#pragma once

// Job logs in the cache store: appended by the runners' streams, read in pages, followed live,
// cut at a size limit, and pruned by age and total size.
//
// Storage: a job's log is a run of chunks, store records `ci/log/<job>/<index>` of about
// kChunkBytes of NDJSON each (put_record compresses them with zstd; a record is always read
// whole, so no record is ever large), plus an in-memory tail not yet written. The tail is written
// as a chunk when it reaches kChunkBytes, when it is older than kFlushAge at the next append or
// flush_idle(), and at close(); readers see the tail from memory, so a follower never waits for a
// flush. The metadata of each log is an entry `ci/logmeta/<job>`; a summary of every log (a few
// words per job) is kept in memory, loaded at open.
//
// Memory: at most one tail (about kChunkBytes) per open log, whatever the job prints; past
// log_limits::max_job further output is only counted.
//
// Thread safety: every call may come from any thread at any time. Appends and close of one job
// are serialized internally (runner threads); reads and waits may run beside them.
// Blocking: append, close, flush_idle, read, prune and remove use the store and may wait for its
// writer thread or read and decompress chunks; call them off the I/O threads (proxy::off_thread).
// wait() and info() never block.

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {

// Where a line came from: the runner's step report, the step's stdout or stderr, or pantry
// itself (the cut notice, the coordinator's own messages).
enum class log_stream : char { report = 'r', out = 'o', err = 'e', pantry = 'p' };

struct log_entry {
  std::uint64_t seq = 0;  // assigned by append: 0, 1, 2, … within the job's log
  clock::time_point time;
  log_stream stream = log_stream::out;
  std::string step;  // the step's name ("" for lines outside any step)
  std::string text;  // one line, without its terminator
};

struct log_limits {
  // A job's stored text (line bytes plus one per line) is cut here.
  std::uint64_t max_job = 64 << 20;
  // Closed logs older than this (since their first line) are dropped by prune().
  std::chrono::seconds keep_for{30 * 86400};
  // prune() then drops the oldest closed logs while all logs together exceed this.
  std::uint64_t max_total = 2ull << 30;
};

struct log_filter {
  std::string step;                     // "" = any step
  const std::regex* pattern = nullptr;  // ECMAScript; a line matches if regex_search finds it
};

// A --grep pattern as a log_filter's regex (ECMAScript). errc::invalid_argument naming the
// pattern and why it is not one. (Compiled in a file of its own: gcc 12 at -O1 with ASan warns
// falsely inside <regex>'s compiler, see orchestrator/coordinator/CMakeLists.txt.)
result<std::shared_ptr<const std::regex>> compile_log_pattern(std::string_view pattern);

// What a prune removed.
struct prune_report {
  std::vector<job_id> removed;  // in the order removed
  std::uint64_t bytes = 0;      // their size, as log_info::bytes / artifact_info::size count it
};

// A summary of one job's log.
struct log_info {
  std::uint64_t lines = 0;  // stored lines (the next seq); includes the cut notice
  std::uint64_t bytes = 0;  // stored text: line bytes plus one per line (the raw download's size)
  bool closed = false;
  bool cut = false;
  std::uint64_t dropped_lines = 0;  // lines counted, not stored, after the cut
  std::uint64_t dropped_bytes = 0;
  clock::time_point created;  // the first append or close
};

// A tail this large is written as a chunk. About 256 KiB: big enough that zstd compresses well
// and a 64 MiB log is 256 records, small enough that reading one line near the end of a log
// decompresses little.
inline constexpr std::size_t kChunkBytes = 256 << 10;
// A tail older than this is written at the next append or flush_idle(), so that a crash loses at
// most about this much of a quiet job's output.
inline constexpr std::chrono::seconds kFlushAge{1};
// A line longer than this is stored as several entries (the runner already cuts its lines at
// 16 KiB; this bounds what any other caller can make one entry hold).
inline constexpr std::size_t kMaxLineBytes = 64 << 10;

class log_store {
 public:
  // Opens the logs kept in `store` (loading the summary of each into memory). Blocks.
  static result<std::shared_ptr<log_store>> open(std::shared_ptr<cache::store> store,
                                                 log_limits limits);

  virtual ~log_store() = default;

  struct page {
    std::vector<log_entry> entries;
    std::uint64_t next = 0;  // the seq to read from next
    bool done = false;       // the log is closed and nothing is at or after `next`
    bool cut = false;        // the log was cut at max_job
  };

  // Appends `entries` to the job's log, assigning their seq (the given seq is ignored); texts
  // longer than kMaxLineBytes become several entries. Past max_job the log gets one closing
  // pantry line ("log cut at 64MiB; the job's further output is dropped") and further entries
  // are counted, not stored. Text is stored as given (the runner masks secrets). Wakes the
  // job's followers. errc::invalid_argument if the log is closed. A store error is returned as
  // it comes, with the lines kept (readable) in the tail, to be written with the next chunk.
  // Blocking.
  virtual result<void> append(job_id job, std::vector<log_entry> entries) = 0;

  // The job ended: writes the tail and marks the log closed (a job that printed nothing gets an
  // empty closed log); followers see the end. Closing a closed log succeeds. Blocking.
  virtual result<void> close(job_id job) = 0;

  // Writes every tail older than kFlushAge (the service calls it every second or so). Blocking.
  virtual result<void> flush_idle() = 0;

  // Up to `max` lines with seq >= from that pass `f`, in order. May return fewer (even none)
  // before the end when the filter skips much: it reads at most a few chunks per call; continue
  // from `next`. A job with no log yet reads as empty and not done. errc::not_found if the log
  // was removed while being read. Blocking.
  virtual result<page> read(job_id job, std::uint64_t from, std::size_t max,
                            const log_filter& f) = 0;

  // Completes when the job's log has a line with seq >= from, is closed, or is removed; at once
  // if it already is. Runs on the caller's executor; cancellable through the caller's
  // cancellation slot (e.g. `wait(...) || timer.async_wait(...)`), which ends it early with no
  // error. Never blocks.
  virtual boost::asio::awaitable<void> wait(job_id job, std::uint64_t from) = 0;

  // The summary of the job's log, or nullopt if it has none. Never blocks.
  virtual std::optional<log_info> info(job_id job) const = 0;

  // Total stored bytes of all logs (log_info::bytes summed). Never blocks.
  virtual std::uint64_t total_bytes() const = 0;
  // Bytes of lines held in memory (the tails), for metrics. Never blocks.
  virtual std::uint64_t buffered_bytes() const = 0;

  // Retention: drops whole logs that are closed (or were left open by an earlier process) and
  // older than keep_for at `now`, then the oldest such logs while the total exceeds max_total.
  // Logs being written in this process are never dropped. Blocking.
  virtual result<prune_report> prune(clock::time_point now) = 0;

  // Drops the job's log and wakes its followers. errc::not_found if it has none. Blocking.
  virtual result<void> remove(job_id job) = 0;
};

}  // namespace pantry::orchestrator::coordinator
