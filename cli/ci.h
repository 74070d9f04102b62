#pragma once

// `pantry ci check [FILE]`: validates a pipeline file (.pantry.yml) without running anything, with
// the messages `pantry submit` would refuse it with.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/pipeline_spec.h"

#include <string>
#include <string_view>
#include <vector>

namespace pantry::cli {

struct ci_check_options {
  std::string file = ".pantry.yml";  // FILE, default in the current directory
};

// Parses the arguments after `pantry ci` (the subcommand, then its own). A usage error comes
// back as an error whose message says what is wrong.
result<ci_check_options> parse_ci_args(const std::vector<std::string>& args);

// The one line `pantry ci check` prints for a valid file: "ci: .pantry.yml is valid: 3 jobs (4
// with shards), image docker.io/library/python@sha256:…".
std::string ci_summary(const orchestrator::coordinator::pipeline_spec& spec, std::string_view file);

// Reads and checks the file: prints ci_summary() on stdout and returns 0, or prints every
// problem on stderr (one per line, "pantry: FILE:LINE:COL: FIELD: ...") and returns 2 (also
// when the file cannot be read), as `pantry submit` does for a bad spec.
int run_ci_check(const ci_check_options& opt);

}  // namespace pantry::cli
