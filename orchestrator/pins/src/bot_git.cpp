#include "bot_git.h"

#include "pantry/orchestrator/runner/process.h"

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

result<std::string> run_git(const std::string& git, std::vector<std::string> args) {
  runner::spawn_options o;
  o.program = git;
  o.args = std::move(args);
  o.output = runner::output_mode::separate;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    o.env.emplace_back(*e);
  o.env.emplace_back("GIT_TERMINAL_PROMPT=0");
  auto out = runner::run_process(o, std::chrono::minutes(10));
  if (!out) return out.error();
  if (!out->status.success()) {
    std::string shown = "git";
    for (const auto& a : o.args)
      shown += " " + a;
    std::string err = out->err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
      err.pop_back();
    return error(errc::io_error,
                 shown + ": " + runner::to_string(out->status) + (err.empty() ? "" : ": " + err));
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

result<bool> remote_has(const std::string& git, const fs::path& clone, const std::string& branch) {
  auto remote = run_git(
      git, {"-C", clone.string(), "ls-remote", "--heads", "origin", "refs/heads/" + branch});
  if (!remote) return remote.error();
  return !remote->empty();
}

result<void> commit_branch(const std::string& git, const fs::path& clone, const std::string& base,
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
