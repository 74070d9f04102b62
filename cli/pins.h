#pragma once

// `pantry pins check`: what the pin bot would change in the configured repositories' requirements
// files, and why, decided with pantry's own PyPI index (orchestrator/pins/decide.h), and which
// pinned image tags moved in pantry's registry (orchestrator/pins/image_pins.h). It reads the
// files and changes nothing. `pantry pins bump` makes those changes as git branches.

#include "pantry/error.h"

#include <optional>
#include <string>
#include <vector>

namespace pantry::cli {

struct pins_check_options {
  std::optional<std::string> config_file;  // --config: the `pins:` section and the data dir
  std::optional<std::string> repo;         // --repo NAME: only this configured repository
  std::optional<std::string> only;         // --only NAME: only this project (normalized)
  std::optional<std::string> pantry;       // --pantry URL: the index's pantry, else the serve's
  bool open_prs = false;                   // --open-prs (bump only): a pull request per branch
};

// Parses the arguments after `pantry pins check` (and `pantry pins bump`, which takes the same).
// Errors (invalid_argument) name the argument: an unknown option, one without its value, a
// positional argument, an --only that is not a project name, a --pantry that is not an http(s) URL,
// and --open-prs for check.
result<pins_check_options> parse_pins_check_args(const std::vector<std::string>& args);

// Runs the check and returns the exit status: 0 when every pin is current, 1 when an upgrade is
// proposed (or found and skipped, with the reason) or a pinned image tag moved ("image NAME:TAG:
// OLD → NEW"; a reference without a tag or a digest is listed as not checked, with the reason), 2
// on an error (a config without pins repositories, an unknown --repo, an unreadable or malformed
// requirements file or .pantry.yml, which is reported with file and line, an unreachable index, a
// registry that refuses or cannot be reached, named with the image). With --only NAME, only the
// images named exactly NAME are checked. One line per decision on stdout, each
// reason and new hash indented below it; errors on stderr.
int run_pins_check(const pins_check_options& opt);

// `pantry pins bump`: for each upgrade the check proposes, one branch
// `pantry/pins/<name>-<version>` with one commit (the file with that pin, its co-upgrades and
// added pins, and their hashes; the message gives old -> new, the reasons, the upload time and the
// yanked status), made with the git CLI in a scratch clone of the repository's path and pushed
// back to it; the user's working tree and checked-out branch are never touched. A branch that
// already exists is left as it is (the same upgrade is not made twice). Exit 0 when every branch
// was made or existed, 2 on an error (as check's, or a git command that failed, named with its
// output). Each moved image tag is one branch `pantry/pins/<name>-<tag>` (image_branch()) whose
// one commit, "image NAME:TAG: OLD → NEW", replaces that digest at every reference to the tag in
// the repository's files (replace_digest()) and nothing else.
//
// With --open-prs, each branch (made now or before) also gets its pull request on the
// repository's forge (pins.repositories[].forge, orchestrator/pins/forge.h), titled with the
// commit's first line and described with the rest; one that is open already is updated, and its
// URL is printed. No more than pins.max_open pull requests of pantry/pins/* branches are open at
// once (counted on the forge first; 0: no limit); the branches beyond it are made without one.
// A pull request closed without merging declines that version: it is written to
// <data_dir>/pins/declined.tsv (repository, branch, URL) and that version is skipped from then on.
int run_pins_bump(const pins_check_options& opt);

// Parses the arguments after `pantry pins status`: --config, --repo and --pantry as check's;
// --only and --open-prs are refused, naming them.
result<pins_check_options> parse_pins_status_args(const std::vector<std::string>& args);

// `pantry pins status`: each branch pins bump made (<data_dir>/pins/branches.json): repository,
// branch, old -> new, commit, pipeline id and state (queued, running, passed, failed,
// cancelled; "-" with the reason when none ran), pull request URL, and whether it was declined.
// A pipeline not ended when recorded is asked about again when a pantry is at hand (--pantry with
// PANTRY_TOKEN, PANTRY_URL, or the serve of the data dir); nothing is written. Exit 0 when no
// shown pipeline failed or was cancelled, 1 when one did, 2 on an error (an unknown --repo, an
// unreadable record).
int run_pins_status(const pins_check_options& opt);

}  // namespace pantry::cli
