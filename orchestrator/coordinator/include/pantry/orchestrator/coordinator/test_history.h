#pragma once

// Per-project test history: each job's test results (junit.h) with its commit, patch, job and
// shard, kept in the cache store as the coordinator keeps its journal, and the questions the
// coordinator asks of it (pure functions over the runs): which tests failed lately, how long each
// takes, which are flaky and why, the slowest, and how often a test passed since a time.
// See docs/ARCHITECTURE.md, "Test intelligence".

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/junit.h"
#include "pantry/orchestrator/coordinator/scheduler.h"

#include <boost/json/object.hpp>

#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

// The test results of one job (one shard of a sharded job).
struct test_run {
  std::string project;  // as in the pipeline (1-200 of A-Z a-z 0-9 . _ - /)
  job_id job = 0;       // unique: a job recorded twice keeps its last run
  pipeline_id pipeline = 0;
  std::string job_name;       // the job's name in .pantry.yml ("test"); its shards share it
  std::string commit;         // the commit tested, "" when unknown (an uploaded tree)
  std::string patch;          // the pipeline's patch (the supersede key), "" if none
  int shard = 0, shards = 0;  // 1-based shard of `shards`; 0, 0 when not sharded
  clock::time_point time;     // when the job finished
  std::vector<test_result> results;
};

// The run of job `j` of pipeline `p` (its project, commit, patch, spec name, shard and finish
// time) with `results`: what the executor records when a test job ends.
test_run make_test_run(const pipeline_record& p, const job_record& j,
                       std::vector<test_result> results);

struct history_options {
  // Runs kept per project; recording one more drops the oldest (by job id). Enough for the
  // durations' medians and for flaky evidence across several days of a busy project, while a
  // whole read of a 10,000-test project stays around a hundred MB.
  std::size_t max_runs_per_project = 100;
};

// The store of runs. Thread-safe; every call blocks on the cache store (call it off the I/O
// threads, as the journal writer does).
class test_history {
 public:
  // The history over `store` (kept, not owned alone). Reads nothing yet.
  static std::unique_ptr<test_history> open(std::shared_ptr<cache::store> store,
                                            history_options options = {});

  virtual ~test_history() = default;

  // Stores `run` (replacing an earlier run of the same job), then drops the project's oldest
  // runs beyond max_runs_per_project. errc::invalid_argument if the project name is not one or
  // the job is 0; store errors as they come.
  virtual result<void> record(const test_run& run) = 0;

  // The project's newest `newest` runs (all by default), oldest first (by job id). Every run is
  // read whole: planning an order needs the recent ones only, so ask for fewer there. A run
  // whose stored record is unreadable is reported as errc::corrupt naming its key; the caller
  // may drop it with remove_run.
  virtual result<std::vector<test_run>> runs(
      std::string_view project, std::size_t newest = std::numeric_limits<std::size_t>::max()) = 0;

  // Deletes one run. errc::not_found if it is not stored.
  virtual result<void> remove_run(std::string_view project, job_id job) = 0;
};

// ---- What the history says (pure: no store, no clock) ----

struct summary_options {
  // A test's duration is the median of its last `duration_window` passing runs.
  std::size_t duration_window = 5;
  // A test "failed recently" when it failed in one of its last `recent_runs` runs.
  std::size_t recent_runs = 10;
  // When set, only runs of this job name count ("" counts every job of the project).
  std::string job_name;
};

// One test over the runs.
struct test_stat {
  std::string id;
  std::string file;
  std::size_t runs = 0;      // runs that include the test
  std::size_t passes = 0;    // outcome passed (re-runs not counted)
  std::size_t failures = 0;  // outcome failed or error
  std::size_t skips = 0;
  // The median of the last duration_window passing runs' seconds; without a passing run, of
  // the last failing ones; nullopt if it never ran to an outcome other than skipped.
  std::optional<double> seconds;
  test_outcome last_outcome = test_outcome::passed;
  clock::time_point first_seen, last_seen;
  std::optional<clock::time_point> last_failed;  // the latest run where it failed or erred
  job_id last_failed_job = 0;
  bool failed_recently = false;  // see summary_options::recent_runs
};

// Every test in `runs`, sorted by id.
std::vector<test_stat> summarize(std::span<const test_run> runs, const summary_options& options);

// A test's latest failure.
struct test_failure {
  std::string id;
  test_outcome outcome = test_outcome::failed;
  std::optional<test_outcome> rerun;
  job_id job = 0;
  pipeline_id pipeline = 0;
  std::string commit;
  clock::time_point time;
  std::string message;
};

// The latest failure of each test that failed in `runs`, most recent first (ties by id), at
// most `limit`.
std::vector<test_failure> recent_failures(std::span<const test_run> runs, std::size_t limit);

enum class flake_kind {
  rerun,        // failed, then passed on the re-run in the same job
  same_commit,  // passed in one job and failed in another on the same commit
};

// "rerun" or "same_commit".
std::string_view to_string(flake_kind k) noexcept;

struct flake {
  flake_kind kind = flake_kind::rerun;
  std::string commit;
  job_id failed_job = 0;   // the job where it failed
  job_id passed_job = 0;   // the job where it passed (the same job for a re-run)
  clock::time_point time;  // when the later of the two jobs finished
};

struct flaky_test {
  std::string id;
  std::string file;
  std::size_t runs = 0;              // runs of the test in the history
  std::size_t flakes = 0;            // evidence items (all of them, even beyond `evidence`)
  double rate = 0;                   // flakes / runs
  std::vector<std::string> commits;  // distinct commits with evidence, most recent first
  clock::time_point first_seen;      // the test's first run in the history
  clock::time_point first_flaked, last_flaked;
  std::vector<flake> evidence;  // most recent first, at most kMaxEvidence
};

inline constexpr std::size_t kMaxEvidence = 20;

// The flaky tests in `runs` with their evidence, most recently flaked first. Each failing job
// counts once: a failure that passed its re-run is a rerun flake; any other failure on a commit
// where the test also passed is a same_commit flake, paired with the latest pass before it (or,
// without one, the first pass after it).
std::vector<flaky_test> flaky_tests(std::span<const test_run> runs);

// The `n` slowest tests of `stats` by seconds (unknown durations last, then by id).
std::vector<test_stat> slowest(std::span<const test_stat> stats, std::size_t n);

// How many runs in `runs` at or after `since` the test `id` passed (outcome passed, no re-run
// needed): the count that lets a quarantined test out.
std::size_t passes_since(std::span<const test_run> runs, std::string_view id,
                         clock::time_point since);

// How many of the test's latest runs in `runs` (of any job name; by finish time) at or after
// `since` it passed in a row, newest backwards: a run where it failed or erred (even if its
// re-run passed) ends the count; a skip neither counts nor ends it. The count that takes a test
// out of quarantine (quarantine.h).
std::size_t passes_in_a_row(std::span<const test_run> runs, std::string_view id,
                            std::optional<clock::time_point> since);

// ---- The API's forms: times as integer milliseconds since the Unix epoch, outcomes as
// to_string spells them, seconds as numbers, a missing value as null ----

boost::json::object to_json(const test_result& r);
// A job's results as a remote runner sends them: a JSON array of to_json(test_result) objects
// (file, classname, message, rerun and failed_at may be absent or null; failed_at is whole
// milliseconds since the Unix epoch, at most 10^15). At most `max_results`. Untrusted input (any
// holder of a runner token): errc::invalid_argument naming the element and member, e.g.
// "test results: [3].outcome: \"broken\" is not passed, failed, error or skipped".
result<std::vector<test_result>> test_results_from_json(const boost::json::value& v,
                                                        std::size_t max_results = 200000);
boost::json::object to_json(const test_stat& s);
boost::json::object to_json(const test_failure& f);
boost::json::object to_json(const flaky_test& t);

}  // namespace pantry::orchestrator::coordinator
