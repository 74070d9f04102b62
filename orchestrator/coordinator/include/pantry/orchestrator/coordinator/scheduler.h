#pragma once

// The CI scheduler: pipelines of jobs run as a DAG on whatever runner slots ask for work. Pure
// code: no I/O, no clock (every call is given `now`), no threads, no locks. The caller owns one
// scheduler, serializes every call (the coordinator's strand), persists the pipelines each call
// names in `changes::dirty`, stops the jobs it names in `changes::kill`, and wakes waiting
// runners on `changes::work_ready`.
//
// A job's life: queued -> running (claim) -> passed | failed (finish), or cancelled / skipped
// from queued or running. A running job whose runner is lost (or that was running when pantry
// stopped) is queued again while it has attempts left, else failed. Every hand-out gets a new
// lease; a report under any other lease is refused, so a runner that was cut off and kept running
// its copy learns that it lost the job (and kills it) instead of overwriting the new copy's
// result.
//
// Policy: a job is ready when all its needs passed. A failure cancels the pipeline's other
// queued and running jobs ("cancelled: lint failed") unless the pipeline keeps going, in which
// case only the jobs that need the failed one (directly or not) are skipped ("needs lint, which
// failed"). A job cancelled on its own (cancel_job) skips the jobs that need it, whatever
// keep_going says. A pipeline ends when all its jobs have: failed if any failed, else cancelled
// if any was cancelled or skipped, else passed.
//
// Among ready jobs, image builds come first (every other job waits for them), then the jobs that
// failed most often recently per second of their usual runtime (the history of the last
// `scheduler_options::history` runs per project + spec name), so that a red result arrives as
// early as the DAG allows; ties go to the older pipeline, then the older job. The ready set is
// kept incrementally (a job enters it when its last need passes), so a claim or a finish costs a
// few logarithmic steps, not a scan of the queue.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/cache_use.h"
#include "pantry/orchestrator/coordinator/ids.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::coordinator {

enum class job_state { queued, running, passed, failed, cancelled, skipped };
enum class pipeline_state { running, passed, failed, cancelled };

// "queued", "running", "passed", "failed", "cancelled", "skipped" (the JSON and API spelling).
std::string_view to_string(job_state s) noexcept;
// "running", "passed", "failed", "cancelled".
std::string_view to_string(pipeline_state s) noexcept;
// The state spelled as to_string spells it; nullopt for anything else.
std::optional<job_state> parse_job_state(std::string_view text) noexcept;
std::optional<pipeline_state> parse_pipeline_state(std::string_view text) noexcept;

// True iff `s` is final: passed, failed, cancelled or skipped.
bool finished(job_state s) noexcept;

struct job_record {
  job_id id = 0;
  pipeline_id pipeline = 0;
  std::string name;       // "test 1/2", or the spec name when not sharded
  std::string spec_name;  // the key in .pantry.yml; "image" for the image build job
  bool image_build = false;
  int shard = 0, shards = 0;  // 1-based shard of `shards`; 0, 0 when not sharded
  std::vector<job_id> needs;  // jobs of the same pipeline
  job_state state = job_state::queued;
  // Why it failed, was cancelled, skipped or re-queued ("needs lint, which failed").
  std::string reason;
  int attempts = 0;         // hand-outs so far
  std::string runner;       // the runner that holds / last held it
  std::uint64_t lease = 0;  // changes at every hand-out; reports with another lease are refused
  clock::time_point queued_at{}, started_at{}, finished_at{};  // epoch = not yet
  int exit_code = -1;
  double cpu_seconds = 0;
  std::string image;  // the image as run (NAME@sha256:…); an image build job's result
  cache_use cache;    // its traffic through pantry's cache, as its runner counted it
};

struct pipeline_record {
  pipeline_id id = 0;
  std::string project, patch, commit;
  bool keep_going = false;
  pipeline_state state = pipeline_state::running;
  // Why it failed or was cancelled ("lint failed", "superseded by pipeline 12").
  std::string reason;
  pipeline_id superseded_by = 0;
  // Saved by its supersede: its running jobs' remaining usual runtime + its queued jobs'.
  double saved_runner_seconds = 0;
  clock::time_point created_at{}, finished_at{};
  boost::json::object attachment;  // opaque to the scheduler: the spec and source, kept with it
  std::vector<job_record> jobs;    // in submission order
};

// The records as JSON, for the store and the API alike. Times are integer milliseconds since the
// Unix epoch (0 = not yet), states as to_string spells them; a pipeline carries its jobs under
// "jobs" and its attachment under "attachment".
boost::json::object to_json(const job_record& j);
boost::json::object to_json(const pipeline_record& p);

// A pipeline record read back from to_json's form. Errors (errc::invalid_argument) name the
// member and the bad value: "pipeline 4: jobs[2].state: \"bogus\" is not a job state". Checks
// types, states, ids (non-zero, unique jobs) and that every need names a job of the pipeline;
// unknown members are ignored (a record written by a newer pantry still loads).
result<pipeline_record> pipeline_from_json(const boost::json::value& v);

// One job of a submission: `needs` are indices into submission::jobs.
struct job_plan {
  std::string name, spec_name;
  bool image_build = false;
  int shard = 0, shards = 0;
  std::vector<std::size_t> needs;
};

struct submission {
  std::string project, patch, commit;
  bool keep_going = false;
  std::vector<job_plan> jobs;
  boost::json::object attachment;
};

// A runner's report of a job's end.
struct job_outcome {
  bool passed = false;
  int exit_code = -1;
  double cpu_seconds = 0;
  std::string reason;  // why it failed ("exited with code 1" when empty and it failed)
  std::string image;   // the image as run; an image build job's result
  cache_use cache;     // the job's traffic through its runner's pantry (cache_use.h)
};

// What a call changed, for the caller to act on.
struct changes {
  std::vector<pipeline_id> dirty;                    // persist these pipelines now
  std::vector<std::pair<job_id, std::string>> kill;  // running jobs to stop, with their runner
  std::vector<job_id> ended;                         // jobs that reached a final state in this call
  std::vector<pipeline_id> pipelines_ended;
  bool work_ready = false;  // some job became ready: wake waiting runners
};

struct assignment {
  job_id job = 0;
  pipeline_id pipeline = 0;
  std::uint64_t lease = 0;
};

struct scheduler_options {
  int max_attempts = 2;      // hand-outs of one job: the first run + one re-queue
  std::size_t history = 20;  // runs remembered per project + spec name, for the priority
};

// Whether a runner may take a ready job.
using job_filter = std::function<bool(const job_record&)>;

class scheduler {
 public:
  explicit scheduler(scheduler_options options = {});
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // Loads persisted pipelines (after a restart; call once, before anything else; a pipeline
  // whose id is already known is ignored). Running jobs: re-queued if attempts < max_attempts
  // ("re-queued: pantry restarted while it ran"), else failed ("was running when pantry stopped,
  // on its last attempt (2 of 2)"), with the usual consequences for the pipeline. Feeds the
  // history from finished jobs, oldest first. Ids and leases continue after the largest loaded.
  changes restore(std::vector<pipeline_record> pipelines, clock::time_point now);

  // A new pipeline, its jobs queued and those without needs ready. Supersedes (cancels, reason
  // "superseded by pipeline N") every unfinished pipeline of the same project + patch (non-empty
  // patch only), recording superseded_by and saved_runner_seconds. A job whose needs are out of
  // range or form a cycle (plan_jobs never gives such) fails at once, naming the problem.
  std::pair<pipeline_id, changes> submit(submission s, clock::time_point now);

  // The best ready job (see the header comment for the order) that `accept` takes (every one
  // when empty), now running on `runner` under a new lease; nullopt when none is ready. Marks its
  // pipeline dirty in `out`. A filter passes over the jobs it refuses one by one: keep it for the
  // few kinds a runner cannot take (image builds and secrets on a remote runner).
  std::optional<assignment> claim(std::string_view runner, clock::time_point now, changes& out,
                                  const job_filter& accept = {});

  // A runner's report of a job's end. errc::conflict when the job is unknown, not running, or
  // `lease` is not its current lease: the runner lost it and should stop its copy.
  result<changes> finish(job_id job, std::uint64_t lease, job_outcome outcome,
                         clock::time_point now);

  // Cancels an unfinished pipeline: its queued and running jobs end cancelled with `reason`
  // (running ones in `kill`), and so does the pipeline. Nothing for an unknown or finished one.
  changes cancel_pipeline(pipeline_id id, std::string reason, clock::time_point now);

  // Cancels one unfinished job (running: in `kill`); the jobs that need it are skipped. Nothing
  // for an unknown or finished job.
  changes cancel_job(job_id id, std::string reason, clock::time_point now);

  // A runner went silent or was lost: each job it runs is re-queued ("re-queued: " + reason)
  // while it has attempts left, else failed (reason + ", on its last attempt (2 of 2)"). Its jobs
  // are not in `kill`: the runner cannot be reached, and kills its copies when it finds its
  // leases gone.
  changes runner_lost(std::string_view runner, std::string reason, clock::time_point now);

  // True iff `job` is running under `lease`.
  bool holds(job_id job, std::uint64_t lease) const noexcept;

  // The records, or nullptr when unknown (or forgotten). Valid until the next non-const call.
  const pipeline_record* pipeline(pipeline_id id) const;
  const job_record* job(job_id id) const;

  // Newest first; project "" = all. At most `limit`.
  std::vector<const pipeline_record*> pipelines(std::string_view project, std::size_t limit) const;

  // Jobs queued (ready or waiting for needs), jobs ready to be claimed, jobs running.
  std::size_t queued() const noexcept;
  std::size_t ready() const noexcept;
  std::size_t running() const noexcept;

  // The usual runtime of project + spec name in seconds (the median of its remembered passed
  // runs, else of all its remembered runs), nullopt with no history.
  std::optional<double> usual_runtime(std::string_view project, std::string_view spec_name,
                                      bool image_build = false) const;

  // Forgets finished pipelines beyond the newest `keep` finished ones (memory bound) and returns
  // their ids (the caller deletes their records and logs per retention). Their history stays.
  std::vector<pipeline_id> forget_finished(std::size_t keep);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace pantry::orchestrator::coordinator
