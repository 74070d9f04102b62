#pragma once

// Upgrades without a failed request (docs/ARCHITECTURE.md, "Upgrades"). A running `pantry serve`
// (the predecessor) starts the new binary with its own arguments and two inherited descriptors,
// named in the environment variable PANTRY_HANDOVER in the manner of systemd's LISTEN_FDS: the
// listening socket of its port and the write end of a readiness pipe. The successor serves on
// that socket at once (both processes accept on it until the predecessor stops), then writes one
// line to the pipe: `ready PID`, or `failed WHY` when it cannot start (a bad config), after which
// it exits. Only on `ready` does the predecessor drain and exit; on anything else it keeps serving
// and says why. The data dir's lock passes from one to the other as cache/store.h's
// open_as_successor() (pantry/cache/succession.h) describes.
//
// The formats and their parsers are pure (tests/unit/app/handover_test.cpp); start_successor()
// and take_handover() are the two ends of the process hand-over.

#include "pantry/error.h"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::app {

inline constexpr std::string_view kHandoverEnv = "PANTRY_HANDOVER";

// What a process started by an upgrade inherits from its predecessor.
struct handover {
  long from_pid = 0;   // the predecessor, which holds the data dir's lock until its drain ends
  int listen_fd = -1;  // the main port's listening socket
  int ready_fd = -1;   // the write end of the readiness pipe
};

// "from=PID listen=FD ready=FD"
std::string format_handover(const handover& h);
// The value of PANTRY_HANDOVER. Errors (errc::invalid_argument) quote the value and name the part
// that is wrong or missing.
result<handover> parse_handover(std::string_view value);

// The successor's one line on the readiness pipe.
struct readiness {
  bool ready = false;
  long pid = 0;         // ready: the successor's pid
  std::string message;  // not ready: why
};
// "ready PID\n"
std::string format_ready(long pid);
// "failed WHY\n", WHY on one line.
std::string format_not_ready(std::string_view why);
// What the predecessor read from the pipe until it closed. An empty text (the successor exited
// or exec'd something that never answers, such as /bin/false) is an error, as is anything else
// that is not one of the two lines.
result<readiness> parse_readiness(std::string_view text);

// In the predecessor: starts `binary` with this process's arguments (from /proc/self/cmdline,
// argv[0] replaced by `binary`), its environment plus PANTRY_HANDOVER, `listen_fd` as descriptor
// 3 and the readiness pipe as 4, every other descriptor closed. Blocks until the successor says
// ready (returns its pid), or fails: the binary cannot be started (the error names it and the
// cause), the successor said `failed` or exited before saying anything (its exit status is in the
// message), or it said nothing within `timeout` (it is killed). A successor that did not become
// ready has been reaped when this returns.
result<long> start_successor(const std::string& binary, int listen_fd,
                             std::chrono::milliseconds timeout);

// The binary an upgrade starts when it is not told one: the path this process was started from
// (/proc/self/exe, without the " (deleted)" the kernel adds once a package upgrade replaced it).
std::string own_binary();

// In the successor: PANTRY_HANDOVER parsed and removed from the environment (the processes this
// one starts must not see it), its descriptors made close-on-exec. nullopt when it is not set.
result<std::optional<handover>> take_handover();

// Writes `line` (format_ready, format_not_ready) to the readiness pipe and closes it. Errors are
// ignored: a predecessor that is gone has nothing left to decide.
void report_readiness(int ready_fd, std::string_view line) noexcept;

}  // namespace pantry::app
