#pragma once

// The destination directory of an unpack or a checkout (source.h). Private to
// pantry_coordinator_source.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/fd.h"

#include <filesystem>
#include <string_view>

namespace pantry::orchestrator::coordinator::detail {

// Makes `dir` (not its parents) if it is absent and opens it. Errors: errc::already_exists when
// it holds anything, errc::io_error otherwise; messages start with `what`.
result<runner::unique_fd> open_empty_dir(const std::filesystem::path& dir, std::string_view what);

}  // namespace pantry::orchestrator::coordinator::detail
