#pragma once

// `pantry reload`: asks the `pantry serve` of a data dir to read its config again (POST
// /api/v1/admin/reload with the control token of the data dir's serve.json) and prints what the
// reload did.

#include "pantry/config/config.h"

#include <optional>
#include <string>

namespace pantry::cli {

// Reloads the serve of the data dir: `data_dir`, else the one `config_file` names, else the
// built-in default; with `config_file`, from that file (made absolute here: the serve runs in
// another directory) from now on. A file that does not parse, without `data_dir`, is refused here
// (the serve cannot be found through it). Prints the changed settings and those that need a
// restart; exit 0 when the file runs, 1 when it was refused (its errors printed), no serve holds
// the data dir, or the request failed.
int run_reload(const std::optional<std::string>& config_file,
               const std::optional<std::string>& data_dir);

}  // namespace pantry::cli
