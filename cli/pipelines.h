#pragma once

// The coordinator's commands: `pantry submit`, `pantry jobs`, `pantry logs`, `pantry cancel`,
// `pantry artifacts`, `pantry tests` — clients of a running `pantry serve` (its /api/v1/, see
// orchestrator/coordinator/service.h), found through the data dir's control file or given with
// --url and --token (or PANTRY_URL and PANTRY_TOKEN).

#include "pantry/error.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace pantry::cli {

// Where the coordinator is.
struct coordinator_options {
  std::optional<std::string> url;          // --url, else $PANTRY_URL
  std::optional<std::string> token;        // --token, else $PANTRY_TOKEN
  std::optional<std::string> config_file;  // --config: its data dir's serve
  std::optional<std::string> data_dir;     // --data-dir
};

struct submit_options {
  coordinator_options where;
  std::string file = ".pantry.yml";    // -f, relative to dir
  std::string dir = ".";               // -C: the working tree
  std::optional<std::string> project;  // default: the directory's name
  std::optional<std::string> patch;
  std::optional<std::string> commit;  // default: `git rev-parse HEAD` in dir, when it is a repo
  std::optional<std::string> git;     // --git URL: the runner fetches the commit from there
  std::optional<std::string> auth_secret;  // --auth-secret NAME: ci.secrets entry for --git
  // --base SHA (with --git): the commit the change is based on; tests in the files changed
  // since run early.
  std::optional<std::string> base;
  bool wait = false;
  bool color = false;  // set from isatty(1) unless --no-color
};

struct jobs_options {
  coordinator_options where;
  std::optional<std::string> project;
};

struct logs_options {
  coordinator_options where;
  std::string job;
  bool follow = false;
  std::optional<std::string> grep;
  std::optional<std::string> step;
};

struct cancel_options {
  coordinator_options where;
  std::string id;
  bool job = false;  // --job: the id is a job's
};

struct artifacts_options {
  coordinator_options where;
  std::string job;
  std::string out_dir;
};

// `pantry tests`: a project's test history (GET /api/v1/projects/<project>/tests).
struct tests_options {
  coordinator_options where;
  std::optional<std::string> project;  // default: the current directory's name, as submit's
  bool flaky = false;                  // --flaky: the flaky tests with their evidence
  std::optional<std::size_t> slowest;  // --slowest N: the N slowest tests
  bool quarantined = false;            // --quarantined: the quarantined tests
  // --quarantine ID / --unquarantine ID: puts a test in quarantine or takes it out (PUT or
  // DELETE /api/v1/projects/<project>/quarantine?test=ID), then lists the quarantined tests.
  std::optional<std::string> quarantine, unquarantine;
};

// `pantry ci measures`: a project's CI measures (GET /api/v1/projects/<project>/measures).
struct measures_options {
  coordinator_options where;
  std::optional<std::string> project;  // default: the current directory's name, as submit's
};

// Parsers of the arguments after the command's name; errors name the argument.
result<submit_options> parse_submit_args(const std::vector<std::string>& args);
result<jobs_options> parse_jobs_args(const std::vector<std::string>& args);
result<logs_options> parse_logs_args(const std::vector<std::string>& args);
result<cancel_options> parse_cancel_args(const std::vector<std::string>& args);
result<artifacts_options> parse_artifacts_args(const std::vector<std::string>& args);
result<tests_options> parse_tests_args(const std::vector<std::string>& args);
// The arguments after `pantry ci measures`.
result<measures_options> parse_measures_args(const std::vector<std::string>& args);

// Runs `command` when it is one of these six or `ci measures`: its exit status, or the usage error
// naming the bad argument; nullopt when it is another command.
std::optional<result<int>> pipeline_command(const std::string& command,
                                            const std::vector<std::string>& args);

// The commands. Exit status: 0 done (submit --wait: the pipeline passed), 1 failed (red
// pipeline, or the coordinator's error), 2 a bad .pantry.yml or bad arguments.
int submit_command(const submit_options& o);
int jobs_command(const jobs_options& o);
int logs_command(const logs_options& o);
int cancel_command(const cancel_options& o);
int artifacts_command(const artifacts_options& o);
int tests_command(const tests_options& o);
int measures_command(const measures_options& o);

}  // namespace pantry::cli
