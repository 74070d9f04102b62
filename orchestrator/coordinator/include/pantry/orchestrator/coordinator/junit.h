#pragma once

// The JUnit XML files a test job writes into its PANTRY_JUNIT directory, read into test results
// (pugixml; no networking, no clock). Reads pytest's --junitxml (families xunit1 and xunit2),
// the pantry pytest plugin's properties (below), and the shapes other runners write: a root
// `testsuites` or `testsuite`, nested suites, `file` attributes on a suite or a case,
// `failure`, `error`, `skipped`, Maven Surefire's `flakyFailure`/`rerunFailure`. Output
// elements (`system-out`, `system-err`) are ignored. See docs/ARCHITECTURE.md, "Test intelligence".
//
// Never throws and never crashes on malformed or huge XML: every limit is checked, and every
// problem is an error value whose message names the file and says what to do.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::coordinator {

enum class test_outcome {
  passed,
  failed,   // an assertion failed (`failure`)
  error,    // the test could not run to its end (`error`: setup, teardown, collection)
  skipped,  // skipped or expected to fail (`skipped`)
};

// "passed", "failed", "error", "skipped".
std::string_view to_string(test_outcome o) noexcept;
// The outcome named by one of those words, or nullopt.
std::optional<test_outcome> parse_test_outcome(std::string_view text) noexcept;
// True iff `o` makes a job red: failed or error.
bool is_failure(test_outcome o) noexcept;

// The properties the pantry pytest plugin writes on a testcase (orchestrator/coordinator/pytest/).
// kIdProperty holds pytest's node id ("tests/test_a.py::TestX::test_y[1-a]"), byte for byte, so
// that ids in the history, in the order file and in the plugin are the same string.
inline constexpr std::string_view kIdProperty = "pantry.id";
// "1" on the testcase of a failed test's re-run at the end of the session.
inline constexpr std::string_view kRerunProperty = "pantry.rerun";
// On the testcase of a test whose first run failed (not a quarantined test's): the wall time of
// its first failing report, whole milliseconds since the Unix epoch ("1796611766489").
inline constexpr std::string_view kFailedAtProperty = "pantry.failed_at";

// One test's result in one job.
struct test_result {
  // The test's id: kIdProperty when present; otherwise made from the attributes (see
  // junit_test_id). Parametrized ids are kept byte for byte.
  std::string id;
  std::string file;       // the source file relative to the project root, "" when unknown
  std::string classname;  // as the runner wrote it
  std::string name;       // as the runner wrote it
  test_outcome outcome = test_outcome::passed;
  double seconds = 0;                 // summed over the testcases of one id (call + teardown)
  std::optional<test_outcome> rerun;  // the outcome of the re-run, when the test was re-run
  std::string message;                // the first failure's message, at most kMaxMessage bytes
  // When its failure was reported (kFailedAtProperty, the earliest of the id's testcases that
  // are not re-runs), by the clock of the machine that ran it; nullopt when not reported.
  std::optional<clock::time_point> failed_at;
};

// The longest failure message kept per result (a whole traceback belongs in the job's log).
inline constexpr std::size_t kMaxMessage = 512;

struct junit_limits {
  std::uint64_t max_file_bytes = 64ull << 20;  // one XML file; larger files are reported, unread
  std::size_t max_files = 1000;                // XML files read per directory (walk order)
  std::size_t max_test_cases = 200000;         // testcases per file and per directory
  std::size_t max_depth = 32;                  // nested testsuites (and directories)
};

// The test id made from JUnit attributes when no kIdProperty is present: with a file,
// "FILE::NAME", or "FILE::Class::NAME" where Class is what classname adds to the module path of
// FILE ("tests/test_a.py" + "tests.test_a.TestX" → "tests/test_a.py::TestX::NAME"), or
// "FILE::CLASSNAME::NAME" when classname is not under that module; without a file,
// "CLASSNAME::NAME", or NAME alone.
std::string junit_test_id(std::string_view file, std::string_view classname, std::string_view name);

// Reads one JUnit XML document. `source` names it in messages (a file name). Testcases of the
// same id are merged: the worst outcome (error, failed, skipped, passed) and the summed time;
// testcases marked kRerunProperty (or Surefire's flaky/rerun elements) set `rerun`; a
// kFailedAtProperty that is not a whole number of milliseconds is ignored. Results are
// in the document's order of first appearance. errc::invalid_argument when the bytes are not
// XML, the root is not `testsuites`/`testsuite`, a testcase has no name, or a limit is passed.
result<std::vector<test_result>> read_junit_xml(std::string_view bytes, std::string_view source,
                                                const junit_limits& limits = {});

// What a job's JUnit directory held.
struct junit_report {
  std::vector<test_result> results;  // merged over all files as read_junit_xml merges
  std::size_t files = 0;             // XML files read without a problem
  // One message per file that could not be read (or limit passed), for the job's log; those
  // files' results are left out and the rest are kept.
  std::vector<std::string> problems;
};

// Reads every regular `*.xml` file under `dir` (subdirectories too, in name order, never
// following a symbolic link). A missing or empty directory is an empty report: a job that ran
// no tests is not an error. Blocks on the file system; call it off the I/O threads.
junit_report read_junit_dir(const std::filesystem::path& dir, const junit_limits& limits = {});

}  // namespace pantry::orchestrator::coordinator
