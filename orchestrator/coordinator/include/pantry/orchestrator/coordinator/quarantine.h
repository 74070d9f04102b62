#pragma once

// Quarantined tests (issue 16): per project, the tests whose failures do not fail their job.
// A quarantined test still runs and is recorded; the pytest plugin learns the list from the
// order file (test_order.h) and leaves quarantined failures out of the session's exit status.
// The list is the config's (`ci.quarantine`) merged with the one kept here in the cache store
// (through PUT/DELETE /api/v1/projects/<p>/quarantine), so that it survives a restart. A test
// leaves quarantine when it passed `ci.quarantine_exit_passes` of its runs in a row, decided
// when a job's results are recorded. See docs/ARCHITECTURE.md, "Test intelligence".

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/coordinator/test_history.h"

#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

inline constexpr std::size_t kMaxQuarantinedId = 4096;  // as ci.quarantine's ids

// One quarantined test of a project.
struct quarantined_test {
  std::string id;
  bool from_config = false;  // listed in ci.quarantine (else added through the API)
  std::string by;            // the API token's name that added it; "" for the config's
  std::optional<clock::time_point> since;  // when the API added it; nullopt for the config's
};

// The project's API-kept changes to its quarantine, as stored.
struct quarantine_changes {
  // Added through the API (PUT), in the order they were added.
  std::vector<quarantined_test> added;
  // Config-listed ids taken out (DELETE, or leaving after passing): a config list cannot be
  // edited from here, so its removals are kept beside it. A PUT of the id undoes one.
  std::vector<std::string> released;
};

// The effective list: `config_ids` (ci.quarantine's for the project) without the released ones,
// then the added ones not already listed.
std::vector<quarantined_test> merge_quarantine(std::span<const std::string> config_ids,
                                               const quarantine_changes& changes);

// errc::invalid_argument naming the problem unless `id` is a test id to quarantine: 1 to
// kMaxQuarantinedId bytes, one line.
std::optional<error> check_test_id(std::string_view id);

// The store of each project's quarantine_changes. Thread-safe; blocks on the cache store.
class quarantine_store {
 public:
  static std::unique_ptr<quarantine_store> open(std::shared_ptr<cache::store> store);
  virtual ~quarantine_store() = default;

  // The project's changes (empty when none are stored). errc::corrupt naming the key when the
  // stored form cannot be read; errc::invalid_argument for a bad project name.
  virtual result<quarantine_changes> changes(std::string_view project) = 0;

  // Puts `id` in quarantine: un-releases it and, unless `in_config`, adds it (by `by` at `now`).
  // True iff the effective list changed.
  virtual result<bool> add(std::string_view project, std::string_view id, bool in_config,
                           std::string_view by, clock::time_point now) = 0;

  // Takes `id` out: drops it from the added ones and, when `in_config`, releases it. True iff
  // the effective list changed.
  virtual result<bool> remove(std::string_view project, std::string_view id, bool in_config) = 0;
};

// {"id", "source": "config" | "api", "by" (api only), "since" (ms, api only, else null)}.
boost::json::object to_json(const quarantined_test& q);

}  // namespace pantry::orchestrator::coordinator
