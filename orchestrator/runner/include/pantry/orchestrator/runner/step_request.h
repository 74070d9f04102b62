#pragma once

// A step as `pantry run` asks for it and the runner's route reads it: the image, the command and
// the options, in C++ and as JSON (the body of POST /api/v1/runner/steps). Pure code, fuzzed
// (tests/fuzz/step_request_fuzz.cpp): the route reads what any holder of the control token sends.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/process.h"

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

// A secret given by value: the runner writes it to a private file for the step.
struct secret_value {
  std::string name;  // the file's name under /run/secrets
  std::string value;
};

struct step_request {
  std::string image;  // NAME@sha256:… or NAME:TAG@sha256:…; a bare tag needs allow_unpinned
  bool allow_unpinned = false;
  // argv, entrypoint, env, user, working_dir, network, limits, project_dir, volumes, tmpfs.
  // netns_path, index_url, secrets and seccomp are the runner's to set.
  step_options step;
  std::vector<secret_value> secrets;
  std::chrono::milliseconds timeout{0};  // 0: runner.defaults.timeout
  // Size of the tmpfs holding the step's writes; nullopt: runner.defaults.tmpfs_size; 0: on disk.
  std::optional<std::uint64_t> tmpfs_size;
  output_mode output = output_mode::merged;
  bool environment_report = true;  // the report lines before the step's output
};

// The JSON form of a step request, as `pantry run` sends it; unknown members are errors (a
// newer client's option silently ignored could run a step differently from what was asked).
// Errors (errc::invalid_argument) name the member and the bad value.
result<step_request> parse_step_request(std::string_view json);
boost::json::object to_json(const step_request& request);

}  // namespace pantry::orchestrator::runner
