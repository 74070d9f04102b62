#pragma once

// Grouping rules (`pins.groups`): every upgrade of a repository whose name a group's glob matches
// goes into one branch with one commit (and one pull request, one CI run, one place against
// pins.max_open) instead of one each.
//
// Pure code: the plans come from decide() (decide.h), the documents are the caller's; nothing
// here touches git, the network or the disk.

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/requirements_file.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::pins {

// The first group of `groups` whose `match` globs the (normalized) project `name`, or nullptr.
const config::pins_group* group_of(const std::vector<config::pins_group>& groups,
                                   std::string_view name);

// One upgrade of a group: the file it is in (relative to the repository root), that file's
// document as it was read, and the plan (an upgrade) decided on it.
struct grouped_upgrade {
  std::string file;
  requirements_file doc;
  pin_plan plan;
};

// The branch of `group`'s upgrades `plans`: "pantry/pins/group/<group>-<12 hex digits>", the
// digits the start of the sha256 of the sorted, distinct "name==version\n" lines of every pin the
// plans set (their changes, co-upgrades and added pins): the same set of versions is the same
// branch on every run, a new version is a new branch.
std::string group_branch(std::string_view group, const std::vector<const pin_plan*>& plans);

// The group's files edited: each upgrade applied (apply()) in order to its file's document, the
// documents of one file shared, so that the second plan edits what the first left. An upgrade
// that sets a pin an earlier one set to another version, or that apply() refuses, is left out
// and named with the reason.
struct group_edit {
  std::vector<std::pair<std::string, requirements_file>> files;  // file -> edited document
  std::vector<std::size_t> applied;                              // indexes into the upgrades
  std::vector<std::pair<std::size_t, std::string>> left_out;     // index, why
};
group_edit apply_group(const std::vector<grouped_upgrade>& upgrades);

// "group NAME: <summary of each upgrade, "; "-joined>" (summary() of each plan).
std::string group_summary(std::string_view group, const std::vector<const pin_plan*>& plans);

// The commit message of the upgrades `plans` of `group`, each with the file it is in: subject
// "pins: " + group_summary(), then per upgrade its summary and file, its reasons, its upload
// time and whether its old pin was yanked (describe()).
std::string group_commit_message(std::string_view group,
                                 const std::vector<std::pair<std::string, const pin_plan*>>& plans);

// What a commit message says about one upgrade under its subject: the reasons (one a line), then
// "Uploaded: …" when the index gave the time, and "Pinned version yanked: yes (reason)" or "no".
std::string describe(const pin_plan& plan);

}  // namespace pantry::orchestrator::pins
