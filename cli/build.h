#pragma once

// `pantry build`: a Containerfile built into an image in pantry's hosted registry. The step loop
// (orchestrator/builder/build.h) runs here, against the pantry that holds the data dir
// (session.h): images and layers through its /v2/, build-cache keys and RUN steps through its
// /api/v1/build/ routes (orchestrator/builder/service.h).

#include "pantry/error.h"
#include "pantry/orchestrator/builder/build.h"

#include <optional>
#include <string>
#include <vector>

namespace pantry::cli {

struct build_options {
  orchestrator::builder::build_request request;  // context, file text and name, tags, args…
  std::optional<std::string> config_file;        // --config
  std::optional<std::string> data_dir;           // --data-dir
  bool verbose = false;                          // --verbose: the in-process pantry's log too
};

// Parses the arguments after `pantry build` and reads the Containerfile (-f FILE; default
// CONTEXT/Containerfile, else CONTEXT/Dockerfile). SOURCE_DATE_EPOCH comes from
// `--build-arg SOURCE_DATE_EPOCH=N` or the environment variable of that name (default 0), as
// BuildKit takes it. A usage error names the argument.
result<build_options> parse_build_args(const std::vector<std::string>& args);

// Builds and pushes; prints one line per instruction (hit, miss or config, and its time), the
// RUN steps' output indented on stderr, and last the image as NAME:TAG@sha256:… on stdout.
// Returns 0, or 1 with the error on stderr.
int run_build(const build_options& opt);

}  // namespace pantry::cli
