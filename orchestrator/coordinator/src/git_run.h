#pragma once

// Running the git CLI for the source part (source.h): its environment and its failures as
// messages. Private to pantry_coordinator_source; every call blocks.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/process.h"

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator::detail {

// The environment of a git that must not depend on the host's or a user's configuration: no
// system or global config, no prompts, the C locale (its messages are quoted to users as they
// are), and `extra_header` as http.extraHeader through GIT_CONFIG_COUNT, where no `ps` shows it.
std::vector<std::string> isolated_git_environment(std::optional<std::string_view> extra_header);

// This process's own environment with GIT_TERMINAL_PROMPT=0 added: a client's git, which should
// see the user's own ignore files and safe.directory settings.
std::vector<std::string> caller_git_environment();

// Runs `git` with `args` (stdout and stderr apart). Errors only when git cannot be started
// (errc::not_found when the program is missing) or its pipes fail; a non-zero exit is for the
// caller to judge (see git_failure).
result<runner::process_output> run_git(const std::filesystem::path& git,
                                       std::vector<std::string> args, std::vector<std::string> env,
                                       std::chrono::milliseconds timeout,
                                       std::size_t max_output = std::size_t{1} << 20);

// How a git run that did not succeed ended, for a message: "exit code 128: fatal: …" (stderr
// trimmed, cut at a few KiB, with every occurrence of `secret` replaced by "***"), "timed out
// after 600 s", or "its output was cut".
std::string git_failure(const runner::process_output& out, std::chrono::milliseconds timeout,
                        std::string_view secret = {});

}  // namespace pantry::orchestrator::coordinator::detail
