#pragma once

// The versions declined on a forge (a pull request closed without merging), which bump skips
// from then on: <data_dir>/pins/declined.tsv, one "REPOSITORY<TAB>BRANCH<TAB>URL" a line, appended
// to as they are found. A person may delete a line to have the version proposed again.

#include "pantry/error.h"

#include <filesystem>
#include <map>
#include <string>
#include <utility>

namespace pantry::orchestrator::pins {

class declined_record {
 public:
  // Reads `file` (absent: nothing declined). Errors name the file.
  static result<declined_record> load(std::filesystem::path file);

  bool has(const std::string& repo, const std::string& branch) const {
    return entries_.contains({repo, branch});
  }

  // (repository, branch) -> the declined pull request's URL ("" when the line gives none).
  const std::map<std::pair<std::string, std::string>, std::string>& entries() const noexcept {
    return entries_;
  }

  // Appends one line (making the directory). Errors name the file.
  result<void> add(const std::string& repo, const std::string& branch, const std::string& url);

  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  std::filesystem::path file_;
  std::map<std::pair<std::string, std::string>, std::string> entries_;
};

}  // namespace pantry::orchestrator::pins
