#pragma once

// A project's pipeline, `.pantry.yml`: the image its jobs run in (by digest, or built from a
// Containerfile), its jobs and how they depend on each other. Read with config's YAML reader, so
// a mistake is reported as `pantry config check` reports one:
//   ".pantry.yml:4:15: jobs.test.parallel: \"200\" is out of range; use 1 to 100"
//
// Pure code: no file system, no network, no clock.
//
//   image: docker.io/library/python@sha256:…     # or build: {file: Containerfile, context: .}
//   keep_going: false
//   jobs:
//     lint: {run: flake8 .}
//     test:
//       run: [pip install -e ., pytest]
//       parallel: 2                              # PANTRY_SHARD=1..2, PANTRY_SHARDS=2
//       fail_fast: true                          # PANTRY_FAIL_FAST=1
//       timeout: 10m
//       env: {PYTHONHASHSEED: "0"}
//     package: {run: python -m build, needs: [lint, test], artifacts: [dist]}

#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::coordinator {

// `build:`: the image is built by the builder from a Containerfile of the source.
struct image_build {
  std::string file = "Containerfile";  // relative to the source root, no ".."
  std::string context = ".";           // relative to the source root, no ".."
  friend bool operator==(const image_build&, const image_build&) = default;
};

struct job_spec {
  std::string name;                // the key under jobs:, config::is_ci_name()
  std::vector<std::string> run;    // the steps, each a shell script; `run:` a string is one step
  std::vector<std::string> needs;  // names of other jobs of the file, no repeats
  int parallel = 1;                // shards, 1..100
  // true: PANTRY_FAIL_FAST=1, so that the pytest plugin stops the job's tests at the first
  // failure that fails its re-run too (with failures first, seconds after the start).
  bool fail_fast = false;
  std::optional<std::chrono::milliseconds> timeout;      // > 0; unset: the runner's default
  std::vector<std::pair<std::string, std::string>> env;  // in file order; names unique
  std::vector<std::string> secrets;    // names the coordinator's ci.secrets maps to files
  std::vector<std::string> artifacts;  // paths relative to the workspace, no "..", unique
  // isolated or none: `host` is refused in a pipeline (the config does not allow it for jobs).
  runner::network_mode network = runner::network_mode::isolated;
  std::optional<std::uint64_t> tmpfs;  // bytes of the tmpfs for the job's writes; 0: on disk
  std::optional<std::string> image;    // the job's own image, NAME@sha256:… unless unpinned
  int line = 0;                        // 1-based line of the job's key, for messages
  friend bool operator==(const job_spec&, const job_spec&) = default;
};

struct pipeline_spec {
  std::optional<std::string> image;  // NAME@sha256:… (any reference with allow_unpinned)
  std::optional<image_build> build;  // never both image and build
  bool allow_unpinned = false;       // true: images by tag are accepted
  bool keep_going = false;           // true: a failure skips only the jobs that need it
  std::vector<job_spec> jobs;        // in file order; at least one
  friend bool operator==(const pipeline_spec&, const pipeline_spec&) = default;
};

// Reads `.pantry.yml` text; `file_name` starts every message ("ci.yml:4:9: jobs.test.parallel:
// ..."). Collects every problem, as config's reader does, and returns them all in one
// errc::invalid_argument error, one message per line (at most 20, then a count). Checks: the
// text is one YAML document of at most 1MiB of UTF-8; unknown keys (with the nearest known key
// suggested) and wrong types; job names (config::is_ci_name()); at least one job; `needs` naming
// an unknown job (with the nearest name), the job itself, or a cycle (the message names it: "a ->
// b -> a"); images not pinned by digest unless allow_unpinned (the message says how to pin one);
// an image for every job (top-level image: or build:, or the job's own); env names
// ([A-Za-z_][A-Za-z0-9_]*, not PANTRY_*, which pantry sets); secret names; artifact paths;
// network isolated|none. Never throws.
result<pipeline_spec> parse_pipeline_spec(std::string_view text, std::string_view file_name);

// One job as it runs: a shard of a job_spec.
struct planned_job {
  std::string name;                // "test 1/2" for a shard of a job with parallel > 1, else "test"
  std::string spec_name;           // "test": the job_spec's name
  int shard = 0;                   // 1..shards (PANTRY_SHARD)
  int shards = 0;                  // the job_spec's parallel (PANTRY_SHARDS); 1 when not sharded
  std::vector<std::size_t> needs;  // indices into the plan, each smaller than this job's own
  friend bool operator==(const planned_job&, const planned_job&) = default;
};

// The jobs of `spec` as they run: one per shard, in an order where every job comes after the
// jobs it needs (file order where the needs allow it), needs resolved to indices. A job that
// needs a sharded job needs all its shards. Requires a spec from parse_pipeline_spec() (needs
// name existing jobs, no cycles); a need that does not resolve is left out.
std::vector<planned_job> plan_jobs(const pipeline_spec& spec);

}  // namespace pantry::orchestrator::coordinator
