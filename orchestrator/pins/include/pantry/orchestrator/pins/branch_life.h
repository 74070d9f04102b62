#pragma once

// The life of a pin branch once bump has made it, as pure decisions over what git says (bot.cpp
// runs git and asks these): whose commits a branch carries, whether a branch origin has already
// is kept, rebuilt on the current base or left alone, and which older branches a newer upgrade
// supersedes. No git, no network, no clock.
//
// The bot's commits: bump makes every commit with author and committer `pantry
// <pantry@localhost>` (kBotName, kBotEmail) and ends its message with the trailer
// `Pantry-Pins: <branch>` (kBotTrailer). A commit is the bot's only when all three hold: git
// makes whoever amends, rebases or cherry-picks a commit its committer, so a person's hand shows
// in the identity; the trailer tells the bot's commits from ones another tool or person made
// under the same name. bump force-pushes (rebuilds) or deletes (supersedes) a branch only when
// every commit on it beyond its merge base with the base branch is the bot's.

#include "pantry/error.h"
#include "pantry/registry/pypi/pep440.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::pins {

inline constexpr std::string_view kBotName = "pantry";
inline constexpr std::string_view kBotEmail = "pantry@localhost";
inline constexpr std::string_view kBotTrailer = "Pantry-Pins";

// The branch of an upgrade of project `name` (normalized) to `version`:
// "pantry/pins/<name>-<version>", the version as version::str() writes it.
std::string upgrade_branch(std::string_view name, const registry::pypi::version& version);

// `message` (a commit message) with the bot's trailer naming `branch` as its last paragraph.
std::string with_bot_trailer(std::string message, std::string_view branch);

// One commit of a branch, as `git log --format=<kCommitLogFormat>` describes it.
struct branch_commit {
  std::string id;         // 40 hex digits
  std::string author;     // "Name <email>"
  std::string committer;  // "Name <email>"
  bool trailer = false;   // its message ends with a Pantry-Pins trailer
  friend bool operator==(const branch_commit&, const branch_commit&) = default;
};

// The `git log` format that parse_commit_log() reads: id, author, committer and the trailer's
// values, separated by 0x1f; each commit ends with 0x1e.
inline constexpr std::string_view kCommitLogFormat =
    "%H%x1f%an <%ae>%x1f%cn <%ce>%x1f%(trailers:key=Pantry-Pins,valueonly,separator=%x2C)%x1e";

// The commits of `log` (git log's output with kCommitLogFormat), in its order. Errors
// (invalid_argument) quote the record that does not have four fields.
result<std::vector<branch_commit>> parse_commit_log(std::string_view log);

// True when `c` is the bot's: author and committer `pantry <pantry@localhost>`, and the trailer.
bool made_by_bot(const branch_commit& c);

// Whoever else made a commit of `commits`, once each in order of first appearance: the committer
// of a commit committed by someone else, the author of one the bot committed for someone else,
// and `pantry <pantry@localhost> (without the Pantry-Pins trailer)` for a commit under the bot's
// name without the trailer. Empty: every commit is the bot's.
std::vector<std::string> other_committers(const std::vector<branch_commit>& commits);

// A branch that origin has already, as the scratch clone sees it.
struct existing_branch {
  std::vector<branch_commit> commits;  // base..tip: beyond the merge base with the base branch
  std::string tip_parent;              // the first parent of its tip ("" for a root commit)
  std::string tip_tree;                // its tip's tree
};

// What bump does with an existing branch.
struct branch_verdict {
  enum class fate {
    keep,     // it is what bump would write now, on the current base: no push
    rebuild,  // all its commits are the bot's: its one commit is made again and force-pushed
    leave,    // someone else committed to it: left as it is
  };
  fate what = fate::keep;
  // rebuild: why ("its base branch moved", "its files differ from what bump writes now");
  // leave: "has commits by A <a@x>, B <b@y>".
  std::string why;
  friend bool operator==(const branch_verdict&, const branch_verdict&) = default;
};

// The verdict on `branch` when bump would make its commit on `base` (a commit id) with the tree
// `new_tree`. Kept only when it is one commit of the bot's whose parent is `base` and whose tree
// is `new_tree` (the commit message is not compared: a new reason line alone is no reason to
// push and run CI again).
branch_verdict judge_existing(const existing_branch& branch, std::string_view base,
                              std::string_view new_tree);

// The heads of `git ls-remote --heads` output whose name starts with `prefix`: (branch without
// "refs/heads/", commit id), in its order.
std::vector<std::pair<std::string, std::string>> parse_heads(std::string_view ls_remote,
                                                             std::string_view prefix);

// The branches of `heads` that are upgrades of project `name` to a version older than
// `version`: "pantry/pins/<name>-<v>" where <v> is a PEP 440 version written as version::str()
// writes it (so "pantry/pins/a-b-1.0", the upgrade of a-b, is not taken for one of a). In the
// order of `heads`.
std::vector<std::string> older_upgrades(const std::vector<std::string>& heads,
                                        std::string_view name,
                                        const registry::pypi::version& version);

// The other branches of group `group` among `heads` (origin's branch names): every
// "pantry/pins/group/<group>-<12 hex digits>" (groups.h's group_branch()) but `branch`, the one a
// bump proposes now. A group has one branch per run, so the others are of versions that are not
// the newest any more. "group/a-b-<hash>", a branch of group a-b, is not taken for one of a. In
// the order of `heads`.
std::vector<std::string> other_group_branches(const std::vector<std::string>& heads,
                                              std::string_view group, std::string_view branch);

}  // namespace pantry::orchestrator::pins
