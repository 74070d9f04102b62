#pragma once

// The git work of `pins bump` (bot.cpp): the git CLI run through the runner's process library, a
// scratch directory for the clone, and one branch with one commit pushed to the clone's origin.

#include "pantry/error.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pantry::orchestrator::pins {

// The git CLI, found on PATH; errc::not_found saying that bump needs it.
result<std::string> git_program();

// Runs git with `args` in this process's environment (prompts off); its stdout, or an error
// naming the command and git's own message.
result<std::string> run_git(const std::string& git, std::vector<std::string> args);

// A scratch directory, removed with everything in it when this goes.
class scratch_dir {
 public:
  // Made under $TMPDIR (else /tmp); errors name the directory and the cause.
  static result<std::unique_ptr<scratch_dir>> make();
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  explicit scratch_dir(std::filesystem::path p) : path_(std::move(p)) {}
  std::filesystem::path path_;
};

// True when origin of the scratch clone `clone` has `branch` already.
result<bool> remote_has(const std::string& git, const std::filesystem::path& clone,
                        const std::string& branch);

// Branch `branch` from commit `base` in the scratch clone `clone`, with one commit writing
// `files` (path in the repository -> new content) and `message`, pushed to its origin.
result<void> commit_branch(const std::string& git, const std::filesystem::path& clone,
                           const std::string& base, const std::string& branch,
                           const std::map<std::string, std::string>& files,
                           const std::string& message);

}  // namespace pantry::orchestrator::pins
