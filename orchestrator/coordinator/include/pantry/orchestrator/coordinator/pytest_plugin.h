#pragma once

// The pytest plugin a test job runs with (orchestrator/coordinator/pytest/pantry_pytest.py),
// compiled into pantry so that a job gets the plugin of the pantry that runs it, and the
// environment variables it reads. See docs/ARCHITECTURE.md, "Test intelligence".

#include "pantry/error.h"

#include <filesystem>
#include <string_view>

namespace pantry::orchestrator::coordinator {

// PYTEST_PLUGINS=kPytestPluginModule with the directory holding kPytestPluginFile on PYTHONPATH
// enables the plugin.
inline constexpr std::string_view kPytestPluginModule = "pantry_pytest";
inline constexpr std::string_view kPytestPluginFile = "pantry_pytest.py";

// The variables the plugin reads (PANTRY_SHARD and PANTRY_SHARDS are every sharded job's).
inline constexpr std::string_view kTestOrderVariable = "PANTRY_TEST_ORDER";  // the order file
inline constexpr std::string_view kJunitVariable = "PANTRY_JUNIT";           // the report dir
inline constexpr std::string_view kRerunVariable = "PANTRY_RERUN";           // "0": no re-runs
inline constexpr std::string_view kFailFastVariable = "PANTRY_FAIL_FAST";    // "1": fail fast

// The plugin's source as built.
std::string_view pytest_plugin_source() noexcept;

// Writes the plugin into `dir` (which must exist) as kPytestPluginFile, read-only for everyone,
// replacing what was there, so that the directory can be mounted read-only into a job and put on
// its PYTHONPATH. errc::io_error naming the path and the system's reason.
result<void> write_pytest_plugin(const std::filesystem::path& dir);

}  // namespace pantry::orchestrator::coordinator
