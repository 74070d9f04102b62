#pragma once

// The git work of `pins bump` (bot.cpp): the git CLI run through the runner's process library, a
// scratch directory for the clone, and one branch with one commit pushed to the clone's origin:
// made, kept, rebuilt on a newer base, or deleted when a newer upgrade supersedes it.
// A repository given by URL gets its token as an http.extraHeader through git's environment
// (GIT_CONFIG_COUNT/KEY/VALUE): never in an argument (which `ps` shows), a URL or a message.

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/pins/branch_life.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::pins {

// The git CLI, found on PATH; errc::not_found saying that bump needs it.
result<std::string> git_program();

// How git runs for one repository.
struct git_cli {
  std::string program;  // git_program()'s
  // The header every HTTP request of git carries ("Authorization: …"); nullopt for none.
  std::optional<std::string> auth_header;
  // For messages about a failure to reach the repository: its URL ("" for a local path) and the
  // file its token came from.
  std::string url;
  std::string token_file;
};

// The header line that sends `token` to the git server of a repository whose forge is `kind`:
// GitHub "Authorization: Basic base64(x-access-token:<token>)", GitLab "Authorization: Basic
// base64(oauth2:<token>)" (the users their docs give for token access over HTTPS), Gitea and no
// forge "Authorization: Bearer <token>".
std::string git_auth_header(config::pins_forge_kind kind, std::string_view token);

// The git_cli of `repo` with `program`: for a url with a token_file, the header of the token in
// that file (surrounding white space trimmed). Errors name the file, never its content: unreadable,
// empty, or holding a line break inside the token.
result<git_cli> git_for(const std::string& program, const config::pins_repository& repo);

// Runs git with `args` in this process's environment (prompts off, `git.auth_header` through
// GIT_CONFIG_COUNT); its stdout, or an error naming the command and git's own message, the
// header's credentials replaced by "***". A failure to reach `git.url` also says what to do: a
// refused token (naming its file), a repository that is not there, a server that cannot be
// reached.
result<std::string> run_git(const git_cli& git, std::vector<std::string> args);

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

// The heads of origin of the scratch clone `clone` whose name starts with `prefix`: (branch,
// commit id).
result<std::vector<std::pair<std::string, std::string>>> remote_heads(
    const git_cli& git, const std::filesystem::path& clone, std::string_view prefix);

// Origin's branch `branch` fetched into the scratch clone `clone`: its tip's commit id, or ""
// when origin has no such branch.
result<std::string> fetch_branch(const git_cli& git, const std::filesystem::path& clone,
                                 const std::string& branch);

// What the clone says about commit `tip` (fetched) against the base commit `base`: the commits
// beyond their merge base, its tip's first parent and tree.
result<existing_branch> read_branch(const git_cli& git, const std::filesystem::path& clone,
                                    const std::string& base, const std::string& tip);

// What put_branch() did with a branch.
struct branch_put {
  enum class done {
    made,     // origin had no such branch: made and pushed
    kept,     // origin's is what bump would write now: no push
    rebuilt,  // origin's was the bot's alone: made again on the base and force-pushed
    left,     // origin's has someone else's commits: left as it is
  };
  done what = done::made;
  std::string why;       // rebuilt and left: branch_verdict::why
  std::string previous;  // rebuilt: the commit it replaced
};

// Branch `branch` as bump writes it: one commit on commit `base` writing `files` (path in the
// repository -> new content) with `message` and the bot's identity and trailer (branch_life.h),
// in the scratch clone `clone`. Pushed when origin has no such branch; when it has, judged by
// judge_existing() and force-pushed only to rebuild it, with a lease on the commit read, so that
// a push someone made meanwhile makes this fail instead of being overwritten. Leaves the clone's
// HEAD detached at `base`.
result<branch_put> put_branch(const git_cli& git, const std::filesystem::path& clone,
                              const std::string& base, const std::string& branch,
                              const std::map<std::string, std::string>& files,
                              const std::string& message);

// Deletes origin's `branch`, leased on its commit `tip` (a push meanwhile makes this fail).
result<void> delete_branch(const git_cli& git, const std::filesystem::path& clone,
                           const std::string& branch, const std::string& tip);

}  // namespace pantry::orchestrator::pins
