#pragma once

// A job on a runner, from its ticket to its outcome: the same code for the built-in runner (in
// `pantry serve`) and for `pantry runner` on another machine; only the uplink differs (direct
// calls into the coordinator, or its HTTP API).
//
//   1. a workspace of the job's own under the runner's work root: the source (the uploaded tree,
//      or a checkout of the commit from the runner's git mirror), then the artifacts of the jobs
//      it needs, unpacked over it;
//   2. the image build job: the pipeline's Containerfile built by the builder (its layer cache,
//      pushed to pantry's hosted registry), its outcome the image by digest; any other job: its
//      steps in one shell (`sh -ec`) in a container of the image on the runner, the workspace at
//      /workspace, the job's environment, secrets as files, network and tmpfs as asked;
//   3. the JUnit XML files the steps wrote into PANTRY_JUNIT, read (junit.h) and handed to the
//      uplink for the project's test history, whether the job passed or not (unreadable files
//      are a line in the log each, never a failed job);
//   4. the paths listed in `artifacts`, packed and handed to the uplink when the job passed;
//   5. the workspace removed.
//
// Every step container of a job (not the image build) gets pantry's test files, each a bind
// mount of a directory of the job's own on the runner:
//   kJobJunitDir     read-write, empty: PANTRY_JUNIT names it;
//   kJobPluginDir    read-only: the pytest plugin (pytest_plugin.h), put first on PYTHONPATH and
//                    first in PYTEST_PLUGINS by the job's shell, so that any image with pytest
//                    runs with it and keeps its own PYTHONPATH and plugins after it;
//   kJobTestOrder    read-only: the ticket's order file, named by PANTRY_TEST_ORDER (when the
//                    ticket has one).
//
// The log gets every line: pantry's own ("setup", "finish"), the environment report ("report"),
// the steps' output ("run", or "run 1", "run 2"… when `run` is a list). The runner masks secret
// values before the lines reach the uplink.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/cache_use.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/junit.h"
#include "pantry/orchestrator/coordinator/log_store.h"
#include "pantry/orchestrator/coordinator/scheduler.h"
#include "pantry/orchestrator/coordinator/ticket.h"
#include "pantry/orchestrator/runner/service.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {

class git_mirrors;

// Where a job's container finds pantry's test files (see above).
inline constexpr std::string_view kJobJunitDir = "/run/pantry/junit";
inline constexpr std::string_view kJobPluginDir = "/run/pantry/pytest";
inline constexpr std::string_view kJobTestOrder = "/run/pantry/order/test-order.json";

// The coordinator as a job sees it. Every call may block; the executor makes them on its blocking
// executor, one at a time.
class job_uplink {
 public:
  virtual ~job_uplink() = default;
  // The job's log lines, in order. Returns false when the job is no longer this runner's (the
  // lease was lost: superseded, cancelled, re-queued elsewhere): the executor then cancels it.
  virtual bool log(std::vector<log_entry> entries) = 0;
  // The uploaded tree `digest` ("sha256:…") into `file`.
  virtual result<void> fetch_tree(const std::string& digest, const std::filesystem::path& file) = 0;
  // The artifacts of `job` into `file`; errc::not_found when it kept none.
  virtual result<void> fetch_artifacts(job_id job, const std::filesystem::path& file) = 0;
  // This job's artifacts.
  virtual result<void> put_artifacts(const std::filesystem::path& file) = 0;
  // A secret's value by name (the ticket's git auth_secret); errc::not_found naming it.
  virtual result<std::string> secret(const std::string& name) = 0;
  // The test results of the job's JUnit reports, for the project's test history. Called at most
  // once per job, after its steps and before its outcome is reported, only when there are results.
  virtual result<void> put_test_results(std::vector<test_result> results) = 0;
};

struct executor_context {
  std::shared_ptr<runner::runner_service> runner;
  boost::asio::any_io_executor blocking;  // workspace, git, archives, uplink calls
  std::filesystem::path work_root;        // workspaces are made below it
  std::shared_ptr<git_mirrors> mirrors;
  std::string runner_name;
  // pantry's own API for the image build job's builder backend (the coordinator's pantry).
  std::string pantry_url;
  std::string pantry_token;
};

// Runs the job to its end. Never throws; a failure to prepare (source, artifacts, image) is a
// failed outcome whose reason says what failed, and its message is the log's last line.
boost::asio::awaitable<job_outcome> execute_job(const ticket& t, const executor_context& ctx,
                                                std::shared_ptr<job_uplink> uplink,
                                                std::shared_ptr<runner::step_cancel> cancel);

// The job's traffic through pantry's cache as the runner counted it for `step`: its own
// listener's requests and the pull of its image (count_request). Pure; unit-tested.
cache_use cache_use_of(const runner::step_outcome& step);

// The lines the job's shell runs before its steps: the plugin's directory first on PYTHONPATH
// and the plugin first in PYTEST_PLUGINS, keeping the values the image and the job set. Shell
// expansion, not the container's environment, because only the shell sees the image's values.
std::string test_prelude();

// The script `sh -ec` runs for `steps`: the steps in order, each preceded by a marker line
// (step_marker) that tells the log where it starts. Pure; unit-tested.
std::string job_script(const std::vector<std::string>& steps, std::string_view nonce);
// The marker line of step `index` (1-based) as the job prints it (without the newline).
std::string step_marker(std::string_view nonce, std::size_t index);

}  // namespace pantry::orchestrator::coordinator
