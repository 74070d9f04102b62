#pragma once

// Distribution file names (wheel, sdist, egg) -> project and version. Project-name
// normalization and validity (PEP 503, PEP 508) are pantry/text.h's.

#include "pantry/text.h"

#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// What a distribution's file name says.
struct dist_filename {
  std::string project;  // as spelled in the file name (not normalized)
  std::string version;  // as spelled in the file name
  bool wheel = false;   // a .whl; otherwise an sdist or a legacy format (.egg, .exe, ...)

  friend bool operator==(const dist_filename&, const dist_filename&) = default;
};

// Splits a distribution file name into project and version. Wheels
// (`{name}-{version}(-{build})?-{py}-{abi}-{platform}.whl`) need no help; for sdists
// (`{name}-{version}.tar.gz`, .zip, ...) and eggs, whose names may hold '-' in legacy files,
// `project` (any spelling) tells where the name ends. Returns nullopt when the file name is not
// a distribution of `project` (for wheels: not a well-formed wheel name).
std::optional<dist_filename> parse_dist_filename(std::string_view filename,
                                                 std::string_view project);

// The PEP 503 normalized project that the file at `location` (a pantry file location,
// "<host[:port]>/<path>[?<query>]", see file_path.h) belongs to, read off its file name alone:
// the last path segment, percent-decoded, without a PEP 658 ".metadata" suffix, split by the
// wheel and sdist naming rules (parse_dist_filename with no project; an sdist's name ends at its
// last '-'). nullopt when that name is no distribution's or its project part is not a valid
// project name: such a URL can be listed by no page pantry would ask for.
std::optional<std::string> project_of_file_location(std::string_view location);

}  // namespace pantry::registry::pypi
