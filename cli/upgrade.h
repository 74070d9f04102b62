#pragma once

// `pantry upgrade`: asks the `pantry serve` of a data dir to hand its port and data dir over to a
// new binary (app.h's app::upgrade, over its control route), prints what became of it and of the
// running CI jobs, and waits for the old process to exit.

#include "pantry/config/config.h"

#include <optional>
#include <string>

namespace pantry::cli {

// `binary`: the new binary (default: the path the serve was started from). Returns the exit code:
// 0 when the new process serves and the old one has exited, 1 when the upgrade failed (the old
// process serves on; the message says why) or the old process did not exit in time.
int run_upgrade(const config::config& cfg, const std::optional<std::string>& binary);

}  // namespace pantry::cli
