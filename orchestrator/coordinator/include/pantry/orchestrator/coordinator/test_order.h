#pragma once

// The order a test job runs its tests in, and its shards (pure: no store, no clock). From the
// history (test_history.h's summarize), the files the patch changed and, when known, the job's
// test ids: tests that failed recently (most recent first), tests in changed files, tests never
// seen, then the rest fastest first; with N shards, split by past durations (longest first onto
// the least loaded shard), unknown tests by a hash both pantry and the plugin compute.
//
// The order file (format "pantry-test-order", version 2) is JSON:
//   {"format": "pantry-test-order", "version": 2, "shards": 3,
//    "groups": ["failed", "changed", "new", "rest"],
//    "changed_files": ["tests/test_a.py"],
//    "quarantined": ["tests/test_net.py::test_timeout"],
//    "tests": [{"id": "tests/test_a.py::test_x[1]", "shard": 2, "group": "failed",
//               "seconds": 0.25}, ...]}
// `tests` is the run order of the whole job; a shard runs its tests in that order. A reader
// places a test the file does not list as follows: its shard is unknown_test_shard(id, shards);
// its group is "changed" when its file (the id up to the first "::") is in changed_files, else
// "new"; it runs after the listed tests of its group, in the runner's own order. `seconds` is
// absent for a test without a duration. `quarantined` (absent: none) lists the tests whose
// failures must not fail the job (quarantine.h); version 2 added it, so that a reader that would
// ignore it, and fail a job pantry meant to pass, refuses the file instead. Readers ignore members
// they do not know; a new version number means an incompatible change. See docs/ARCHITECTURE.md,
// "Test intelligence".

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/test_history.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

inline constexpr std::string_view kOrderFormat = "pantry-test-order";
inline constexpr int kOrderVersion = 2;
inline constexpr int kMaxShards = 100;  // as .pantry.yml's `parallel`

enum class order_group { failed, changed, new_test, rest };

// "failed", "changed", "new", "rest".
std::string_view to_string(order_group g) noexcept;

struct order_entry {
  std::string id;
  int shard = 1;  // 1..shards
  order_group group = order_group::rest;
  std::optional<double> seconds;  // the history's duration, if any
};

struct test_order {
  int shards = 1;
  std::vector<std::string> changed_files;
  std::vector<std::string> quarantined;  // test ids whose failures do not fail the job
  std::vector<order_entry> tests;        // the run order
  std::vector<double> shard_seconds;     // the estimated seconds of each shard (index shard - 1)
};

// 64-bit FNV-1a of the bytes of `text`: offset basis 14695981039346656037, prime 1099511628211.
std::uint64_t fnv1a64(std::string_view text) noexcept;

// The shard (1..shards) of a test the order does not place: 1 + fnv1a64(id) mod shards.
// Requires shards >= 1.
int unknown_test_shard(std::string_view id, int shards) noexcept;

struct order_request {
  int shards = 1;                          // the job's `parallel`, 1..kMaxShards
  std::vector<std::string> changed_files;  // relative to the project root, as test files are
  // The job's test ids when known (e.g. collected by an earlier run): only these are ordered,
  // and those without history are "new". Without it, every test of the history is ordered.
  std::optional<std::vector<std::string>> known_ids;
};

// The order and shards of a job's tests from `stats` (summarize over the job's runs).
// Failed: failed_recently, by last_failed, most recent first. Changed: in a changed file,
// fastest first. New: no history (only with known_ids), by id. Rest: fastest first, unknown
// durations last, ties by id. Shards: tests without a duration go to unknown_test_shard and
// count as the median known duration; then tests with one, longest first, each onto the least
// loaded shard (ties: the lowest). errc::invalid_argument if shards is out of range.
result<test_order> plan_test_order(std::span<const test_stat> stats, const order_request& request);

// The order file's JSON text.
std::string to_order_file(const test_order& order);

// Reads an order file. errc::invalid_argument naming the problem when it is not JSON, not this
// format or version, or a member is of the wrong type or out of range.
result<test_order> parse_order_file(std::string_view text);

// The ids of one shard (1..order.shards) in run order.
std::vector<std::string> shard_tests(const test_order& order, int shard);

// One line for a job's log on what `order` plans for `shard` (1..order.shards; 1 when not
// sharded): "shard 2 of 3: 67 tests in pantry's order (2 failed recently, 0 in changed files),
// 1.957 s by their past durations; tests it does not list run after them", or, without listed
// tests, that they run in the runner's own order. The seconds are shard_seconds (from the file:
// the listed tests' durations), which a job's recorded durations can be set against.
std::string describe_plan(const test_order& order, int shard);

}  // namespace pantry::orchestrator::coordinator
