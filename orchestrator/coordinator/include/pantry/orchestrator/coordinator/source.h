#pragma once

// A pipeline's source: the working tree a client sends (a reproducible .tar.zst, uploaded
// content-addressed, so the same tree gives the same bytes and the same sha256 on every machine),
// or a commit of a git repository, fetched into a mirror kept per repository.
//
// Every call blocks (file system, libarchive, git): run it off the I/O threads. pack_tree and
// unpack_tree are thread-safe; one git_mirrors may be used from several threads and processes at
// once (fetches into one mirror take turns through a lock file).

#include "pantry/cache/digest.h"
#include "pantry/error.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

// What went into an archive.
struct tree_stats {
  std::uint64_t files = 0;        // regular files
  std::uint64_t directories = 0;  // the root excepted
  std::uint64_t symlinks = 0;
  std::uint64_t bytes = 0;    // the regular files' contents
  std::uint64_t skipped = 0;  // devices, FIFOs and sockets, which an archive does not hold
};

// An archive written by pack_tree.
struct packed_tree {
  std::filesystem::path file;  // the archive (pack_tree's out_file)
  cache::digest sha256;        // of the archive's bytes: its content address
  std::uint64_t size = 0;      // bytes of the archive
  tree_stats stats;
};

// Writes the tree under `dir` to `out_file` (created or truncated; removed on an error) as a
// reproducible tar compressed with zstd: the same files give the same bytes whenever, wherever
// and in whatever order they were written. Entries sorted by path (bytewise), no "./" prefix,
// the root without an entry; modification times 0, owners 0:0 without names; permission bits
// kept (set-id and sticky bits dropped); symlinks kept as links with their targets as written;
// devices, FIFOs and sockets left out (counted in stats.skipped).
//
// Which files: when `dir` is in a git work tree, those `git ls-files -z --cached --others
// --exclude-standard` lists (tracked and untracked files, .gitignore respected; a tracked file
// deleted from the work tree is left out), with their parent directories; else every file and
// directory except any named .git. `out_file` itself is never included. `git` is the git program
// used to tell (a missing git means "not a work tree"; an empty path packs every file without
// asking git, as for a job's artifacts).
//
// Errors: errc::invalid_argument when `dir` is not a directory; errc::io_error naming the file
// and the reason when a file cannot be read, changes while it is read, or git fails.
result<packed_tree> pack_tree(const std::filesystem::path& dir,
                              const std::filesystem::path& out_file,
                              const std::filesystem::path& git = "/usr/bin/git");

// The commit checked out in the git work tree `dir` (`git rev-parse HEAD`: 40 hex digits), or
// nullopt when `dir` is in no work tree, has no commit yet, or git is missing.
std::optional<std::string> head_commit(const std::filesystem::path& dir,
                                       const std::filesystem::path& git = "/usr/bin/git");

// Unpacks an archive of pack_tree's kind (a tar, zstd- or gzip-compressed or not) into `dir`,
// which must be empty or absent (then it is created). Refuses, naming the entry: absolute paths,
// ".." components, symlinks whose target is absolute or leads out of `dir` (also through other
// symlinks), hard links, devices, FIFOs and other file types, an entry that appears twice, and
// any write through a symlink. Files get the archive's permission bits (set-id and sticky bits
// dropped) and this process's owner; times are left as unpacking set them.
//
// Errors: errc::invalid_argument for an archive refused or malformed (the message names the
// entry); errc::already_exists when `dir` is not empty; errc::io_error / errc::no_space for the
// file system. On an error `dir` may hold part of the tree: the caller removes it.
result<tree_stats> unpack_tree(const std::filesystem::path& archive,
                               const std::filesystem::path& dir);

// How git is run.
struct git_options {
  std::filesystem::path git = "/usr/bin/git";
  // A fetch or checkout still running after this long is killed and fails.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // GIT_ALLOW_PROTOCOL: the transports a URL may use ("ext::", which runs a command, never). A
  // service fetching URLs its users give may want to drop "file" (the host's own repositories).
  std::string allowed_protocols = "https:http:ssh:git:file";
};

// Bare mirrors of git repositories, one per URL under `root` (a directory named by the sha256 of
// the URL), for checking out commits: each fetch brings only the objects the mirror lacks, and a
// commit the mirror holds is not fetched again.
//
// git runs with no system or global configuration (GIT_CONFIG_NOSYSTEM=1,
// GIT_CONFIG_GLOBAL=/dev/null), never prompts (GIT_TERMINAL_PROMPT=0), and gets credentials only
// as an http.extraHeader through its environment (GIT_CONFIG_COUNT/KEY/VALUE): never in its
// arguments, never in the URL. Error messages name the URL and the commit and quote git's
// stderr, never the header.
class git_mirrors {
 public:
  explicit git_mirrors(std::filesystem::path root, git_options options = {});

  // Writes the files of `commit` (40 hex digits: a full sha, never a branch or a tag) of the
  // repository at `url` into `dir` (empty or absent; created), fetching the commit into the
  // mirror first unless it is there already. `auth_header` is a whole HTTP header line, e.g.
  // "Authorization: Bearer …", sent with every request of the fetch.
  //
  // Errors: errc::invalid_argument for a commit that is not 40 hex digits, a URL that is empty,
  // starts with '-' or carries credentials (user:password@), or a header with a line break;
  // errc::not_found when the repository does not have the commit or cannot be reached (git's
  // words say which); errc::already_exists when `dir` is not empty; errc::io_error otherwise.
  result<void> checkout(std::string_view url, std::string_view commit,
                        const std::filesystem::path& dir,
                        std::optional<std::string> auth_header = std::nullopt);

  // The paths (relative to the repository root, as git prints them) of the files that differ
  // between commits `base` and `commit` of the repository at `url` (`git diff --name-only
  // --no-renames`: a moved file is its old and its new path), fetching either commit into the
  // mirror first unless it is there. At most some 20,000 paths (the rest are left out). Errors
  // as checkout's, naming both commits.
  result<std::vector<std::string>> changed_files(
      std::string_view url, std::string_view base, std::string_view commit,
      std::optional<std::string> auth_header = std::nullopt);

  // The mirror directory of `url` (it exists once a checkout of that URL began).
  std::filesystem::path mirror_of(std::string_view url) const;

 private:
  // A mirror holding the commits a call needs, and how git runs on it.
  struct session {
    std::filesystem::path mirror;
    std::string git_dir;           // "--git-dir=<mirror>"
    std::vector<std::string> env;  // isolated, with the auth header and allowed protocols
    std::string secret;            // the auth header, masked in messages
    std::string what;              // starts every message
  };
  // Checks the arguments, makes the mirror if needed and fetches each commit it lacks (under
  // the mirror's lock).
  result<session> open_session(std::string_view url, std::span<const std::string_view> commits,
                               const std::optional<std::string>& auth_header,
                               const std::string& what) const;
  // Runs git; its stdout, or an error of `failure` (io_error on a timeout) naming `step`.
  result<std::string> run(const session& s, std::vector<std::string> args, std::string_view step,
                          errc failure) const;

  std::filesystem::path root_;
  git_options options_;
};

}  // namespace pantry::orchestrator::coordinator
