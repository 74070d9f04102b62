#pragma once

// Project names (PEP 503 normalization, PEP 508 validity) and distribution file names
// (wheel, sdist, egg) -> project and version.

#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The PEP 503 normalized form of `name`: ASCII letters lowercased, every run of '-', '_' and '.'
// replaced by one '-'. Other bytes are kept as they are (`is_valid_name` says whether the name
// is worth normalizing at all).
std::string normalize_name(std::string_view name);

// True iff `name` equals `normalize_name(name)`.
bool is_normalized(std::string_view name) noexcept;

// True iff `name` is a valid project name (PEP 508): ASCII letters, digits, '-', '_' and '.',
// starting and ending with a letter or digit. Such a name is safe in a URL path and a cache key.
bool is_valid_name(std::string_view name) noexcept;

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

}  // namespace pantry::registry::pypi
