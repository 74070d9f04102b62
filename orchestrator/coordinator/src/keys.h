#pragma once

// Every store key of the coordinator (its journal, logs, artifacts and test history), in one place.

#include "pantry/orchestrator/coordinator/ids.h"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::orchestrator::coordinator::keys {

// Record: chunk `index` (0, 1, …) of a job's log, NDJSON compressed by the store.
inline std::string log_chunk(job_id job, std::uint32_t index) {
  return "ci/log/" + std::to_string(job) + "/" + std::to_string(index);
}

// Entry: a job log's metadata (attributes chunks, lines, bytes, closed, created, cut, …).
inline constexpr std::string_view kLogMetaPrefix = "ci/logmeta/";
inline std::string log_meta(job_id job) {
  return std::string(kLogMetaPrefix) + std::to_string(job);
}

// Entry: a job's artifacts, targeting the pinned blob of their tar.
inline constexpr std::string_view kArtifactPrefix = "ci/artifact/";
inline std::string artifact(job_id job) {
  return std::string(kArtifactPrefix) + std::to_string(job);
}

// Entry: a pipeline with its jobs as the scheduler last had them (the journal), its JSON in the
// attribute "pipeline". Zero-padded, so that a walk in key order goes oldest first.
inline constexpr std::string_view kPipelinePrefix = "ci/pipeline/";
inline std::string pipeline(pipeline_id id) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(id));
  return std::string(kPipelinePrefix) + digits;
}

// Entry and record: the test results of one job of a project (test_history.h). The entry is the
// index a walk lists (attributes time, tests); the record holds the results' JSON. '#' is in no
// project name, so that one project's prefix never matches another's ("a" and "a/b").
inline constexpr std::string_view kTestRunPrefix = "ci/tests/";
inline std::string test_runs_of(std::string_view project) {
  std::string key(kTestRunPrefix);
  key.append(project).push_back('#');
  return key;
}
inline std::string test_run(std::string_view project, job_id job) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(job));
  return test_runs_of(project) + digits;
}

// Why `project` cannot be part of a test history or quarantine key, or nullopt. The rule only
// keeps keys apart and printable (ticket.h's rule, checked at submit, is stricter): 1-200 bytes,
// no space or control character, no '#' (it ends the project in a test run's key).
inline std::optional<std::string> project_key_problem(std::string_view project) {
  if (project.empty() || project.size() > 200) return "is not 1-200 characters long";
  for (char c : project) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return "holds a space or a control character";
    if (c == '#') return "holds a '#'";
  }
  return std::nullopt;
}

// Entry: a project's quarantine changes (quarantine.h), their JSON in the attribute "changes".
inline std::string quarantine(std::string_view project) {
  return "ci/quarantine/" + std::string(project);
}

// The job id at the end of a key under `prefix`, or nullopt if it is not a number.
inline std::optional<job_id> job_of(std::string_view key, std::string_view prefix) {
  if (!key.starts_with(prefix)) return std::nullopt;
  std::string_view digits = key.substr(prefix.size());
  job_id job = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), job);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) {
    return std::nullopt;
  }
  return job;
}

}  // namespace pantry::orchestrator::coordinator::keys
