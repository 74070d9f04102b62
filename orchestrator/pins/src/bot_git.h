#pragma once

// The git work of `pins bump` (bot.cpp): the git CLI run through the runner's process library, a
// scratch directory for the clone, and one branch with one commit pushed to the clone's origin.
// A repository given by URL gets its token as an http.extraHeader through git's environment
// (GIT_CONFIG_COUNT/KEY/VALUE): never in an argument (which `ps` shows), a URL or a message.

#include "pantry/config/config.h"
#include "pantry/error.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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

// True when origin of the scratch clone `clone` has `branch` already.
result<bool> remote_has(const git_cli& git, const std::filesystem::path& clone,
                        const std::string& branch);

// Branch `branch` from commit `base` in the scratch clone `clone`, with one commit writing
// `files` (path in the repository -> new content) and `message`, pushed to its origin.
result<void> commit_branch(const git_cli& git, const std::filesystem::path& clone,
                           const std::string& base, const std::string& branch,
                           const std::map<std::string, std::string>& files,
                           const std::string& message);

}  // namespace pantry::orchestrator::pins
