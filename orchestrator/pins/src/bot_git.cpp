#include "bot_git.h"

#include "pantry/orchestrator/runner/process.h"
#include "pantry/proxy/client.h"
#include "pantry/text.h"
#include "pantry/text_file.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>
#include <utility>

extern char** environ;

namespace pantry::orchestrator::pins {

namespace fs = std::filesystem;

result<std::string> git_program() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path && *path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const std::size_t colon = dirs.find(':');
    const fs::path candidate = fs::path(dirs.substr(0, colon)) / "git";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
  }
  return error(errc::not_found, "git is not on PATH; pins bump makes its branches with it");
}

std::string git_auth_header(config::pins_forge_kind kind, std::string_view token) {
  switch (kind) {
    case config::pins_forge_kind::github:
      return "Authorization: " + proxy::basic_authorization("x-access-token", token);
    case config::pins_forge_kind::gitlab:
      return "Authorization: " + proxy::basic_authorization("oauth2", token);
    case config::pins_forge_kind::gitea:
    case config::pins_forge_kind::none:
      break;
  }
  return "Authorization: Bearer " + std::string(token);
}

result<git_cli> git_for(const std::string& program, const config::pins_repository& repo) {
  git_cli git{program, std::nullopt, repo.url, repo.token_file};
  if (repo.url.empty() || repo.token_file.empty()) return git;
  auto text = read_text_file(repo.token_file);
  if (!text)
    return error(text.error().code, "the token file of " + repo.url + ": " + text.error().message +
                                        "; give token_file a file it can read");
  const std::string_view token = trim_ascii_space(*text);
  if (token.empty())
    return error(errc::invalid_argument, repo.token_file + " (token_file of " + repo.url +
                                             ") is empty; put the token in it");
  if (token.find_first_of("\r\n") != std::string_view::npos)
    return error(errc::invalid_argument,
                 repo.token_file + " (token_file of " + repo.url +
                     ") holds more than one line; put only the token in it");
  git.auth_header = git_auth_header(repo.forge.kind, token);
  return git;
}

namespace {

bool mentions(std::string_view text, std::initializer_list<std::string_view> needles) {
  const std::string lower = ascii_lower(text);
  for (auto n : needles) {
    if (lower.find(n) != std::string::npos) return true;
  }
  return false;
}

// What to do about a failure to reach `git.url`, from git's words; "" when they say nothing known.
std::string remote_advice(const git_cli& git, std::string_view err) {
  if (git.url.empty()) return {};
  if (mentions(err, {"could not read username", "could not read password", "authentication failed",
                     "error: 401", "error: 403", "http 401", "http 403", "permission denied",
                     "access denied"})) {
    if (git.token_file.empty())
      return git.url +
             " asks for credentials: set token_file to a file holding a token that may "
             "read and push it";
    return git.url + " refused the token in " + git.token_file +
           ": check that it is current and may read and push there (and forge.kind, which "
           "decides how it is sent)";
  }
  if (mentions(err, {"not found", "error: 404", "does not appear to be a git repository"}))
    return "no repository at " + git.url + ": check pins.repositories[].url";
  if (mentions(err, {"could not resolve", "failed to connect", "couldn't connect",
                     "connection refused", "timed out", "unable to access"}))
    return git.url +
           " cannot be reached: check the URL and that the server is up; nothing was "
           "changed";
  return {};
}

}  // namespace

result<std::string> run_git(const git_cli& git, std::vector<std::string> args) {
  runner::spawn_options o;
  o.program = git.program;
  o.args = std::move(args);
  o.output = runner::output_mode::separate;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry = *e;
    // Ours replace the caller's: a GIT_CONFIG_COUNT of its own would hide the header.
    if (entry.starts_with("GIT_TERMINAL_PROMPT=") ||
        (git.auth_header && entry.starts_with("GIT_CONFIG_")))
      continue;
    o.env.emplace_back(entry);
  }
  o.env.emplace_back("GIT_TERMINAL_PROMPT=0");
  if (git.auth_header) {
    o.env.emplace_back("GIT_CONFIG_COUNT=1");
    o.env.emplace_back("GIT_CONFIG_KEY_0=http.extraHeader");
    o.env.push_back("GIT_CONFIG_VALUE_0=" + *git.auth_header);
  }
  auto out = runner::run_process(o, std::chrono::minutes(10));
  if (!out) return out.error();
  if (!out->status.success()) {
    std::string shown = "git";
    for (const auto& a : o.args)
      shown += " " + a;
    std::string err(trim_ascii_space(out->err));
    if (git.auth_header) {
      // The credentials: what follows the scheme ("Basic …", "Bearer …").
      std::string_view value = *git.auth_header;
      value = value.substr(value.rfind(' ') + 1);
      for (std::size_t at = err.find(value); !value.empty() && at != std::string::npos;
           at = err.find(value, at + 3))
        err.replace(at, value.size(), "***");
    }
    std::string message =
        shown + ": " + runner::to_string(out->status) + (err.empty() ? "" : ": " + err);
    if (const std::string advice = remote_advice(git, err); !advice.empty())
      message = advice + " (" + message + ")";
    return error(errc::io_error, message);
  }
  return std::move(out->out);
}

result<std::unique_ptr<scratch_dir>> scratch_dir::make() {
  const fs::path base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::string templ = (base / "pantry-pins-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr)
    return error(errc::io_error, "cannot make a scratch directory in " + base.string() + ": " +
                                     std::strerror(errno));
  return std::unique_ptr<scratch_dir>(new scratch_dir(templ));
}

scratch_dir::~scratch_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

result<bool> remote_has(const git_cli& git, const fs::path& clone, const std::string& branch) {
  auto remote = run_git(
      git, {"-C", clone.string(), "ls-remote", "--heads", "origin", "refs/heads/" + branch});
  if (!remote) return remote.error();
  return !remote->empty();
}

result<void> commit_branch(const git_cli& git, const fs::path& clone, const std::string& base,
                           const std::string& branch,
                           const std::map<std::string, std::string>& files,
                           const std::string& message) {
  const std::string dir = clone.string();
  if (auto r = run_git(git, {"-C", dir, "checkout", "--quiet", "-B", branch, base}); !r)
    return r.error();
  std::vector<std::string> add = {"-C", dir, "add", "--"};
  for (const auto& [file, content] : files) {
    std::ofstream out(clone / file, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) return error(errc::io_error, (clone / file).string() + ": write failed");
    add.push_back(file);
  }
  const std::vector<std::vector<std::string>> steps = {
      add,
      {"-C", dir, "-c", "user.name=pantry", "-c", "user.email=pantry@localhost", "commit",
       "--quiet", "--no-verify", "-m", message},
      {"-C", dir, "push", "--quiet", "origin", "refs/heads/" + branch + ":refs/heads/" + branch},
  };
  for (const auto& args : steps) {
    if (auto r = run_git(git, args); !r) return r.error();
  }
  return {};
}

}  // namespace pantry::orchestrator::pins
