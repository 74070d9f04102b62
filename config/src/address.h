#pragma once

// Network addresses in the config: upstream URLs here; `listen` (parse_listen) in config.h.

#include <optional>
#include <string>
#include <string_view>

namespace pantry::config::detail {

enum class url_kind {
  pypi_index,    // an upstream index: its path ends in '/'
  oci_registry,  // an upstream registry: no path (one '/' allowed, which the caller drops)
  git_or_api,    // a git repository or a REST API base (pins:): any path; credentials go in a
                 // token file, never in the URL
};

// Why `url` is not acceptable as a URL of `kind`, or nullopt if it is: "is not an http:// or
// https:// URL; write the full URL, e.g. https://pypi.org/simple/".
std::optional<std::string> url_problem(std::string_view url, url_kind kind);

}  // namespace pantry::config::detail
