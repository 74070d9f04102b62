#pragma once

// What `pantry pins status` prints and GET /api/v1/pins answers, read from the records bump keeps
// under <data_dir>/pins/: the branches and their pipelines (branches.h), the declined versions
// (declined.tsv) and the last bump's time and outcome (last_run.json, written whole by every
// bump, from the command line or the schedule, however it ended).
//
// Blocking: small files on the data dir. Not thread-safe per call; keeps no state.

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/pins/branches.h"

#include <boost/json/object.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {

// The last bump: <data_dir>/pins/last_run.json, {"format": "pantry-pins-last-run", "version": 1,
// and the members below}.
struct last_run {
  std::string started;  // UTC, RFC 3339: "2026-12-07T04:05:06Z"
  std::string ended;
  int status = 0;            // the run's exit status: 0 every branch made or found, 2 errors
  std::size_t checked = 0;   // pins and image references asked about
  std::size_t problems = 0;  // errors reported
  std::vector<std::string> first_problems;  // the first kLastRunProblems of them
  friend bool operator==(const last_run&, const last_run&) = default;
};

inline constexpr std::size_t kLastRunProblems = 20;

// "2026-12-07T04:05:06Z".
std::string rfc3339_utc(std::chrono::system_clock::time_point t);

// "ok" for status 0, "outdated" for 1, "errors" for 2.
std::string_view outcome_name(int status) noexcept;

// The record under `data_dir` (absent: nullopt). Errors name the file and what is malformed.
result<std::optional<last_run>> load_last_run(const std::filesystem::path& data_dir);
// Replaces it (write_text_file_atomically). Errors name the file.
result<void> save_last_run(const std::filesystem::path& data_dir, const last_run& run);

// A version bump skips from now on: its pull request was closed without merging.
struct declined_version {
  std::string repository;
  std::string branch;
  std::string url;  // the pull request's, "" when none was recorded
  friend bool operator==(const declined_version&, const declined_version&) = default;
};

// Everything the status shows.
struct pins_report {
  std::vector<branch_record> branches;
  std::vector<declined_version> declined;
  std::optional<last_run> last;
};

// The records under cfg.data_dir, only `repo`'s branches and declined versions when given. The
// branches' pipeline states are as recorded; the callers ask about those that had not ended
// (pipeline_state_of). Errors: a record's (unreadable, malformed), naming the file.
result<pins_report> read_pins_report(const config::config& cfg,
                                     const std::optional<std::string>& repo);

// The state pins records for a pipeline from the coordinator's JSON of it (GET
// /api/v1/pipelines/<id>, scheduler.h's to_json): its `state`, but "queued" for a running one
// none of whose jobs has started. "" when the JSON has no state.
std::string pipeline_state_of(const boost::json::object& pipeline);

// GET /api/v1/pins's answer: {"enabled", "schedule", "repositories": [{"name", "path", "url",
// "branch", "files", "branches": [branch_record…], "declined": [{"branch", "url"}…]}…],
// "last_run": {"started", "ended", "outcome", "status", "checked", "problems",
// "first_problems"} or null}. Repositories in config order (only `repo` when given), then those
// only the records name (a repository the config no longer has), without path, url and files.
boost::json::object to_json(const pins_report& report, const config::pins_config& pins,
                            const std::optional<std::string>& repo);

}  // namespace pantry::orchestrator::pins
