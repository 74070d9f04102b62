#pragma once

// Network addresses in the config: upstream URLs here; `listen` (parse_listen) in config.h.

#include <optional>
#include <string>
#include <string_view>

namespace pantry::config::detail {

enum class url_kind { pypi_index, oci_registry };

// Why `url` is not acceptable as an upstream URL of `kind`, or nullopt if it is: "is not an
// http:// or https:// URL; write the full URL, e.g. https://pypi.org/simple/". A PyPI index URL
// ends in '/'; an OCI base URL has no path but may end in one '/', which the caller drops.
std::optional<std::string> url_problem(std::string_view url, url_kind kind);

}  // namespace pantry::config::detail
