#include "git_run.h"

#include "pantry/text.h"

#include <algorithm>

extern char** environ;

namespace pantry::orchestrator::coordinator::detail {
namespace {

// Enough of git's stderr to say what failed (a fetch's progress and hints are long).
constexpr std::size_t kMaxStderrInMessage = 4096;

}  // namespace

std::vector<std::string> isolated_git_environment(std::optional<std::string_view> extra_header) {
  std::vector<std::string> env = {
      "PATH=/usr/local/bin:/usr/bin:/bin",
      // No user's home: nothing under it is read (~/.gitconfig, ~/.git-credentials, ~/.netrc).
      "HOME=/nonexistent",
      "LC_ALL=C",
      "GIT_CONFIG_NOSYSTEM=1",
      "GIT_CONFIG_GLOBAL=/dev/null",
      // A server asking for credentials fails the fetch (no helper is configured anywhere).
      "GIT_TERMINAL_PROMPT=0",
  };
  if (extra_header) {
    env.emplace_back("GIT_CONFIG_COUNT=1");
    env.emplace_back("GIT_CONFIG_KEY_0=http.extraHeader");
    env.push_back("GIT_CONFIG_VALUE_0=" + std::string(*extra_header));
  }
  return env;
}

std::vector<std::string> caller_git_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry = *e;
    if (!entry.starts_with("GIT_TERMINAL_PROMPT=")) env.emplace_back(entry);
  }
  env.emplace_back("GIT_TERMINAL_PROMPT=0");
  return env;
}

result<runner::process_output> run_git(const std::filesystem::path& git,
                                       std::vector<std::string> args, std::vector<std::string> env,
                                       std::chrono::milliseconds timeout, std::size_t max_output) {
  runner::spawn_options options;
  options.program = git.string();
  options.args = std::move(args);
  options.env = std::move(env);
  options.output = runner::output_mode::separate;
  return runner::run_process(options, timeout, max_output);
}

std::string git_failure(const runner::process_output& out, std::chrono::milliseconds timeout,
                        std::string_view secret) {
  std::string text;
  if (out.timed_out) {
    text = "timed out after " + std::to_string(timeout.count() / 1000) + " s";
  } else if (out.truncated) {
    text = "its output was cut at the limit";
  } else {
    text = runner::to_string(out.status);
  }
  std::string err(trim_ascii_space(out.err));
  if (!secret.empty()) {
    for (std::size_t at = err.find(secret); at != std::string::npos;
         at = err.find(secret, at + 3)) {
      err.replace(at, secret.size(), "***");
    }
  }
  if (err.size() > kMaxStderrInMessage) err = err.substr(0, kMaxStderrInMessage) + "…";
  std::replace(err.begin(), err.end(), '\n', ' ');
  if (!err.empty()) text += ": " + err;
  return text;
}

}  // namespace pantry::orchestrator::coordinator::detail
