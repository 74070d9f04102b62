#pragma once

// The branches the pin bot made, and the CI run of each: <data_dir>/pins/branches.json, written by
// bump (under the data dir's bump lock) and read by `pantry pins status` and GET /api/v1/pins.
// JSON: {"format": "pantry-pins-branches", "version": 1, "branches": [branch_record…]}, each
// record's members as below; written whole to a temporary file and renamed, so a reader never
// sees half of one.

#include "pantry/error.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {

struct branch_record {
  std::string repository;      // pins.repositories[].name
  std::string branch;          // "pantry/pins/<name>-<version>"
  std::string change;          // old -> new, as the commit's subject says it
  std::string commit;          // the branch's commit (40 hex digits)
  std::string base;            // the base branch's commit it was made from
  std::uint64_t pipeline = 0;  // the coordinator's pipeline id; 0: none submitted
  std::string pipeline_url;
  // "queued", "running", "passed", "failed", "cancelled", or "none" (no pipeline: `note` says why)
  std::string status = "none";
  std::string note;         // why there is no pipeline ("no .pantry.yml", "no token …")
  std::string pr_url;       // its pull request, "" none
  bool declined = false;    // its pull request was closed without merging
  std::string title, body;  // the commit message, for the pull request's description
  // The branch of the newer upgrade that superseded this one (its pull request closed, the branch
  // deleted), "" while it is current. Not a decline.
  std::string superseded_by;
  std::uint64_t rebuilds = 0;  // times bump made its commit again (its base moved, new files)
  // Why bump leaves the branch as it is ("has commits by A <a@x>; not rebased"), "" when it
  // does not.
  std::string left_alone;
  friend bool operator==(const branch_record&, const branch_record&) = default;
};

// True for the states a pipeline ends in: passed, failed, cancelled.
bool pipeline_ended(const std::string& status) noexcept;

boost::json::object to_json(const branch_record& r);

class branch_records {
 public:
  // The record at <data_dir>/pins/branches.json (absent: none). Errors name the file and what
  // in it is malformed.
  static result<branch_records> load(const std::filesystem::path& data_dir);

  // The record of `repository`'s `branch`, or null.
  branch_record* find(const std::string& repository, const std::string& branch);
  // Adds `r`, or replaces the record of its repository and branch.
  branch_record& put(branch_record r);

  // Writes the file (making <data_dir>/pins). Errors name the file.
  result<void> save() const;

  const std::vector<branch_record>& all() const noexcept { return records_; }
  const std::filesystem::path& file() const noexcept { return file_; }
  // The whole file's JSON.
  boost::json::object to_json() const;

 private:
  std::filesystem::path file_;
  std::vector<branch_record> records_;
};

}  // namespace pantry::orchestrator::pins
