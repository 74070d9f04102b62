#pragma once

// The pin bot's CI (bot.cpp): a pipeline per branch through the coordinator's API, and the state
// of one later. Blocking (api_client).

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/coordinator/submit.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace pantry::orchestrator::pins {

class bot_ci {
 public:
  // `url`: pantry's URL; `token`: one that may submit (pantry's control token or a ci.tokens
  // entry of role submit).
  bot_ci(std::string url, std::string token);

  // Submits the pipeline of `project`'s `branch` (the patch) at `commit`: the work tree `tree`
  // (a git work tree checked out at `commit`), packed into `archive` and sent, with `spec` (its
  // .pantry.yml). Errors name what failed: packing, sending, the coordinator's refusal.
  result<coordinator::submitted> submit(const std::string& project, const std::string& branch,
                                        const std::string& commit,
                                        const std::filesystem::path& tree,
                                        const std::filesystem::path& archive,
                                        const std::string& spec);

  // Submits the pipeline of `project`'s `branch` (the patch) at `commit` of the repository at
  // `url`, which pantry's runners fetch themselves (with the header line in ci.secrets'
  // `auth_secret`, "" for none), and whose files changed since `base` (a commit id) run their
  // tests first; `spec` is the commit's .pantry.yml. Errors as submit's.
  result<coordinator::submitted> submit_git(const std::string& project, const std::string& branch,
                                            const std::string& commit, const std::string& url,
                                            const std::string& base, const std::string& auth_secret,
                                            const std::string& spec);

  // The pipeline's state now: "queued" (running, no job started yet), "running", "passed",
  // "failed" or "cancelled". Errors: not_found for a pipeline the coordinator no longer holds.
  result<std::string> status(std::uint64_t id);

 private:
  coordinator::api_client client_;
};

}  // namespace pantry::orchestrator::pins
