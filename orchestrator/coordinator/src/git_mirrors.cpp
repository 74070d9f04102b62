#include "empty_dir.h"
#include "git_run.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/runner/fd.h"
#include "pantry/text.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace pantry::orchestrator::coordinator {
namespace {

using runner::unique_fd;

bool is_full_sha(std::string_view commit) {
  if (commit.size() != 40) return false;
  for (char c : commit) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// True when the URL carries credentials: scheme://userinfo@host/…. (An scp-like
// "git@host:path" names an ssh user, not a secret.)
bool has_userinfo(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return false;
  const auto authority = url.substr(scheme_end + 3);
  return authority.substr(0, authority.find('/')).find('@') != std::string_view::npos;
}

// The URL for a message: its userinfo, if any, replaced by "***".
std::string url_for_message(std::string_view url) {
  if (!has_userinfo(url)) return quote_for_message(url);
  const auto start = url.find("://") + 3;
  const auto at = url.substr(0, url.find('/', start)).rfind('@');
  return quote_for_message(std::string(url.substr(0, start)) + "***" + std::string(url.substr(at)));
}

// A lock on one mirror, held while it lives: fetches into one mirror take turns, across threads
// and processes (flock locks belong to the open file description).
class mirror_lock {
 public:
  static result<mirror_lock> take(const std::filesystem::path& file) {
    mirror_lock lock;
    lock.fd_.reset(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock.fd_) {
      return error(errc::io_error, "source: cannot open the lock file " +
                                       quote_for_message(file.string()) + ": " +
                                       std::strerror(errno));
    }
    while (::flock(lock.fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return error(errc::io_error, "source: cannot lock " + quote_for_message(file.string()) +
                                         ": " + std::strerror(errno));
      }
    }
    return lock;
  }

 private:
  unique_fd fd_;  // closing it releases the lock
};

// Names the temporary index of each checkout apart within one process.
std::atomic<std::uint64_t> checkout_counter{0};

}  // namespace

git_mirrors::git_mirrors(std::filesystem::path root, git_options options)
    : root_(std::move(root)), options_(std::move(options)) {}

std::filesystem::path git_mirrors::mirror_of(std::string_view url) const {
  return root_ / cache::digest::of(url).hex();
}

result<git_mirrors::session> git_mirrors::open_session(
    std::string_view url, std::span<const std::string_view> commits,
    const std::optional<std::string>& auth_header, const std::string& what) const {
  for (std::string_view commit : commits) {
    if (!is_full_sha(commit)) {
      return error(errc::invalid_argument,
                   what + ": " + quote_for_message(commit) +
                       " is not a commit: a commit is named by its full sha (40 lowercase hex "
                       "digits), not a branch, a tag or an abbreviation");
    }
  }
  if (url.empty() || url.starts_with('-')) {
    return error(errc::invalid_argument, what + ": not a repository URL");
  }
  if (has_userinfo(url)) {
    return error(errc::invalid_argument,
                 what + ": the URL carries credentials; give them as the auth header instead");
  }
  if (auth_header && auth_header->find_first_of("\r\n") != std::string::npos) {
    return error(errc::invalid_argument, what + ": the auth header has a line break");
  }

  std::error_code ec;
  std::filesystem::create_directories(root_, ec);
  if (ec) {
    return error(errc::io_error, what + ": cannot make the mirror root " +
                                     quote_for_message(root_.string()) + ": " + ec.message());
  }
  session s;
  s.mirror = mirror_of(url);
  s.git_dir = "--git-dir=" + s.mirror.string();
  s.what = what;
  const std::optional<std::string_view> header =
      auth_header ? std::optional<std::string_view>(*auth_header) : std::nullopt;
  s.env = detail::isolated_git_environment(header);
  s.env.push_back("GIT_ALLOW_PROTOCOL=" + options_.allowed_protocols);
  if (auth_header) s.secret = *auth_header;

  auto lock = mirror_lock::take(s.mirror.string() + ".lock");
  if (!lock) return lock.error();
  if (!std::filesystem::exists(s.mirror / "HEAD", ec)) {
    auto made =
        run(s, {"init", "--bare", "--quiet", s.mirror.string()}, "git init", errc::io_error);
    if (!made) return made.error();
  }
  for (std::string_view commit : commits) {
    const std::string sha(commit);
    // A commit the mirror holds is not fetched again; the check reads only the mirror.
    auto held = detail::run_git(options_.git, {s.git_dir, "cat-file", "-e", sha + "^{commit}"},
                                s.env, options_.timeout);
    if (!held) return error(held.error().code, what + ": " + held.error().message);
    if (held->status.success()) continue;
    // Into a ref of its own: the next fetch offers it to the server as something the mirror
    // has, so only newer objects come.
    auto fetched = run(s,
                       {s.git_dir, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
                        std::string(url), "+" + sha + ":refs/pantry/" + sha},
                       "git fetch", errc::not_found);
    if (!fetched) return fetched.error();
  }
  return s;
}

result<std::string> git_mirrors::run(const session& s, std::vector<std::string> args,
                                     std::string_view step, errc failure) const {
  auto out = detail::run_git(options_.git, std::move(args), s.env, options_.timeout);
  if (!out) return error(out.error().code, s.what + ": " + out.error().message);
  if (!out->status.success() || out->timed_out) {
    std::string message = s.what + ": " + std::string(step) +
                          " failed: " + detail::git_failure(*out, options_.timeout, s.secret);
    if (out->err.find("could not read Username") != std::string::npos) {
      message += !s.secret.empty() ? " (the server refused the auth header)"
                                   : " (the server asks for credentials: give an auth header)";
    }
    return error(out->timed_out ? errc::io_error : failure, std::move(message));
  }
  return std::move(out->out);
}

result<void> git_mirrors::checkout(std::string_view url, std::string_view commit,
                                   const std::filesystem::path& dir,
                                   std::optional<std::string> auth_header) {
  const std::string what =
      "source: checkout of commit " + quote_for_message(commit) + " of " + url_for_message(url);
  const std::string_view commits[] = {commit};
  auto s = open_session(url, commits, auth_header, what);
  if (!s) return s.error();

  auto target = detail::open_empty_dir(dir, what + ": " + quote_for_message(dir.string()));
  if (!target) return target.error();
  // A private index for each checkout: checkouts of one mirror run side by side, and the
  // mirror's own HEAD and index are never touched.
  std::error_code ec;
  const std::filesystem::path index =
      s->mirror / ("pantry-index." + std::to_string(::getpid()) + "." +
                   std::to_string(checkout_counter.fetch_add(1)));
  s->env.push_back("GIT_INDEX_FILE=" + index.string());
  auto checked_out = run(*s,
                         {s->git_dir, "--work-tree=" + dir.string(), "read-tree", "--reset", "-u",
                          std::string(commit)},
                         "git read-tree", errc::io_error);
  std::filesystem::remove(index, ec);
  if (!checked_out) return checked_out.error();
  return {};
}

result<std::vector<std::string>> git_mirrors::changed_files(
    std::string_view url, std::string_view base, std::string_view commit,
    std::optional<std::string> auth_header) {
  const std::string what = "source: the files changed from " + quote_for_message(base) + " to " +
                           quote_for_message(commit) + " of " + url_for_message(url);
  const std::string_view commits[] = {base, commit};
  auto s = open_session(url, commits, auth_header, what);
  if (!s) return s.error();
  // -z: paths as they are (no quoting of unusual bytes); --no-renames: a moved file is its old
  // and its new path, both "changed".
  auto out = run(*s,
                 {s->git_dir, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                  std::string(base), std::string(commit), "--"},
                 "git diff", errc::io_error);
  if (!out) return out.error();
  // Each path ends with a NUL: output cut at run_git's limit (some 20,000 paths) ends in a
  // partial one, which is left out with the rest.
  std::vector<std::string> files;
  std::string_view rest = *out;
  for (auto nul = rest.find('\0'); nul != std::string_view::npos; nul = rest.find('\0')) {
    if (nul != 0) files.emplace_back(rest.substr(0, nul));
    rest.remove_prefix(nul + 1);
  }
  return files;
}

}  // namespace pantry::orchestrator::coordinator
