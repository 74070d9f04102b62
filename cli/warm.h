#pragma once

// `pantry cache warm`: fetches, through a running pantry, every file that pinned requirements
// files name, so that pip finds them in pantry's cache later, also when the upstream is gone.
// It speaks HTTP to pantry (the data dir belongs to `pantry serve`), as pip would.

#include "pantry/error.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pantry::cli {

struct warm_options {
  std::vector<std::string> requirement_files;  // -r FILE, in order
  std::optional<std::string> url;              // --url: pantry's root (or its /simple/)
  std::optional<std::string> config_file;      // --config: where the default URL comes from
  std::vector<std::string> platforms;          // --platform, lowercase, '-' and '.' as '_'
  std::optional<std::pair<unsigned, unsigned>> python_version;  // --python-version X.Y
  unsigned jobs = 4;                                            // concurrent downloads
};

// Parses the arguments after `pantry cache warm`. A usage error comes back as an error whose
// message says what is wrong with which argument.
result<warm_options> parse_warm_args(const std::vector<std::string>& args);

// Runs the command and returns the exit status: 0 when every chosen file was fetched and
// verified, 1 when a pin or a file failed (each failure is one line on stderr) or the config
// cannot be read, 2 when a requirements file cannot be read or holds an unusable line (every
// such line is reported; nothing is fetched then). Progress goes to stderr when it is a
// terminal; the summary line goes to stdout.
int run_warm(const warm_options& opt);

}  // namespace pantry::cli
