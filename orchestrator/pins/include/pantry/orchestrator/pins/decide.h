#pragma once

// The pin bot's decisions: for one pinned requirement of a requirements file and what pantry's
// PyPI index says about its project (a PEP 691 page with the PEP 700 fields, each version's core
// metadata), the upgrade to propose and why, with its co-upgrades, the pins it must add and all
// the hashes; then the requirements_file edits that apply it.
//
// Pure code: the index's answers come through an `index_source` the caller gives (pantry's
// index over HTTP in `pantry pins check`, maps in the tests); nothing here touches the network,
// the disk or a clock (the time is given). Not thread-safe per call; decide() keeps no state.

#include "pantry/config/config.h"
#include "pantry/error.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/registry/pypi/markers.h"
#include "pantry/registry/pypi/pep440.h"
#include "pantry/registry/pypi/simple.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::pins {

// The rules a proposed version must meet (from the `pins:` section).
struct upgrade_policy {
  // The environments the pins are for: each configured Python on each configured platform.
  std::vector<registry::pypi::marker_environment> targets;
  config::pins_prereleases prereleases = config::pins_prereleases::if_pinned;
  std::chrono::seconds min_release_age{0};
  std::vector<std::string> ignore;            // globs of normalized names never upgraded
  std::chrono::system_clock::time_point now;  // what "younger than min_release_age" counts from

  // The policy of `pins` at time `now`: its pythons × platforms as marker environments
  // (marker_environment::for_target). Errors name a bad python or platform value.
  static result<upgrade_policy> from_config(const config::pins_config& pins,
                                            std::chrono::system_clock::time_point now);
};

// What the index says, asked for lazily: decide() asks only for the projects and versions it
// looks at. An error from either function (an unreachable index) ends decide() with that error.
struct index_source {
  // The project page of the PEP 503-normalized `name`. An error with errc::not_found means the
  // index has no such project.
  std::function<result<registry::pypi::project_page>(const std::string& name)> page;
  // The core metadata (METADATA text) of `name`'s `version`, e.g. the PEP 658 `.metadata` of
  // `file`, one of the version's files on the page that advertises it (or any of them).
  std::function<result<std::string>(const std::string& name, const registry::pypi::version& version,
                                    const registry::pypi::file_entry& file)>
      metadata;
};

// One pin at a version, as a plan changes or adds it.
struct pin_change {
  std::string name;                  // normalized
  std::optional<std::size_t> index;  // into requirements(); nullopt for an added pin
  std::optional<registry::pypi::version> old_version;  // nullopt for an added pin
  registry::pypi::version new_version;
  // "sha256:HEX" of every file of new_version the index lists that is not yanked, sorted (as
  // pip-compile --generate-hashes writes them).
  std::vector<std::string> hashes;
  // The files of new_version listed without a sha256, until hash_missing_files() hashes them.
  std::vector<registry::pypi::file_entry> missing_digests;
  std::optional<std::string> upload_time;  // the earliest upload time of its files (PEP 700)
  std::string via;                         // an added pin: the project that requires it
  std::string reason;                      // why this change (a co-upgrade's or addition's cause)
};

// The decision for one pinned requirement.
struct pin_plan {
  enum class outcome {
    up_to_date,  // no version meets the rules that is better than the pin
    upgrade,     // `change` (with co_upgrades and added) should be applied
    skipped,     // a version was chosen but cannot be applied; `reasons` says why
    ignored,     // the name matches pins.ignore
    unpinned,    // not one `==` clause (a range or a URL): nothing to move
  };
  outcome result = outcome::up_to_date;
  std::size_t index = 0;  // into requirements_file::requirements()
  std::string name;       // normalized
  std::optional<registry::pypi::version> old_version;
  bool old_yanked = false;      // every file of the pinned version is yanked
  std::string old_yank_reason;  // the index's reason, "" when it gave none
  // upgrade and skipped: the version chosen, its hashes, upload time.
  std::optional<pin_change> change;
  std::vector<pin_change> co_upgrades;  // other pins of the file moved to satisfy the new version
  std::vector<pin_change> added;        // new requirements of the new version, pinned
  // Why: the reason for the version chosen (or for skipping), then one line per newer version
  // not proposed ("2.1.0: yanked (bad wheel)", "3.0.0: requires Python >=3.12, not 3.11").
  std::vector<std::string> reasons;
};

std::string_view to_string(pin_plan::outcome o) noexcept;

// Decides the upgrade of the requirement at `index` of `doc`, as the pin bot does: the newest
// version newer than the pin that is not yanked, has files, is not younger than
// min_release_age (a version without an upload time cannot be checked when that is set: it is
// passed over, and when nothing else newer qualifies the plan is `skipped` with the reason),
// whose files admit every target Python (Requires-Python of at least one of its files), and is
// not a pre-release unless the policy allows it (if_pinned: when the pin is one). When the
// pinned version is yanked and nothing newer qualifies, the newest qualifying older version. The
// new version's Requires-Dist, with markers evaluated for each target (and each extra the
// requirement names), is checked against the file's other pins: a pin it does not admit is
// co-upgraded to the newest qualifying version that it admits, a project no requirement of the
// file names is added at the newest qualifying version it admits (with its own requirements
// checked the same way), otherwise the plan is `skipped` with the reason. Then every pin of the
// file the plan keeps is checked the other way: its pinned version's own Requires-Dist must admit
// the new version of each project the plan moves, else the plan is `skipped`. Targets where the
// requirement's own marker is false are left out. Errors: `index` out of range, or an error of
// `source` (nothing is decided then).
result<pin_plan> decide(const requirements_file& doc, std::size_t index,
                        const upgrade_policy& policy, const index_source& source);

// Applies an `upgrade` plan to `doc`: set_pin for the change and each co-upgrade, add_pin for each
// added pin (with its `via`). Errors (invalid_argument for a plan that is not an upgrade or whose
// changes still have missing_digests — the caller hashes those files into `hashes` first — or
// set_pin/add_pin's): `doc` is left as it was.
result<void> apply(requirements_file& doc, const pin_plan& plan);

// Downloads one file the index lists without a sha256 and returns "sha256:<hex>" of its bytes.
using file_hasher = std::function<result<std::string>(const registry::pypi::file_entry& file)>;

// Hashes every file of `plan`'s changes (the change, its co-upgrades and added pins) that the
// index lists without a sha256, as pip-compile does: `hash` downloads it. Each digest joins its
// change's `hashes` (kept sorted and unique), `missing_digests` is cleared, and the reason line
// that named the file says it was downloaded and hashed. Files with a digest are never
// downloaded. Returns how many files were hashed. Errors: the first of `hash`'s, naming the
// project, version and file; `plan` is then left as it was.
result<std::size_t> hash_missing_files(pin_plan& plan, const file_hasher& hash);

// One line for people: "requests 2.31.0 -> 2.32.3", "idna 3.6 up to date", "six skipped".
std::string summary(const pin_plan& plan);

}  // namespace pantry::orchestrator::pins
