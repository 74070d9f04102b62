#pragma once

// `pantry run`: one step in a container of an image named by digest, on the built-in runner of
// the pantry that holds the data dir (session.h), with its output streamed here and its exit code
// returned as this command's.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/service.h"

#include <optional>
#include <string>
#include <vector>

namespace pantry::cli {

struct run_options {
  orchestrator::runner::step_request request;
  std::optional<std::string> config_file;  // --config
  std::optional<std::string> data_dir;     // --data-dir
  bool timestamps = false;                 // --timestamps: each line prefixed with its time
  bool verbose = false;                    // --verbose: the in-process pantry's log lines too
};

// Parses the arguments after `pantry run` (options, then `--` or the first non-option, then the
// command). Reads the --secret files (their values travel to the runner; a file is read by the
// user who runs the command, not by the server). A usage error comes back as an error whose
// message names the argument.
result<run_options> parse_run_args(const std::vector<std::string>& args);

// Runs the step and returns the exit status: the step's exit code; 137 when it was OOM-killed
// (whatever its shell returned), 124 when it timed out, 130 when it was cancelled (^C), 127 when
// its command was not found, 126 when runc could not start it otherwise, 125 when pantry could
// not run it (the image, the options, the runner). Output lines go to stdout (stderr's too unless
// --separate-streams); the report and the summary line go to stderr.
int run_step_command(const run_options& opt);

}  // namespace pantry::cli
