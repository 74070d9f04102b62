#pragma once

// The upstream lists of pypi: and oci:, read and written the same way: a name, a URL and a CA
// file for each, and credentials for a registry.

#include "reader.h"

#include "pantry/config/config.h"

#include <yaml-cpp/emitter.h>

#include <optional>
#include <vector>

namespace pantry::config::detail {

// pypi.upstreams: the whole list, or nullopt if anything in it is wrong (reported to `r`).
std::optional<std::vector<pypi_upstream>> read_pypi_upstreams(reader& r, const entry& e);
// oci.upstreams: the whole list, or nullopt if anything in it is wrong. A URL's trailing '/' is
// dropped.
std::optional<std::vector<oci_upstream>> read_oci_upstreams(reader& r, const entry& e);

// Writes the list (not its key); an oci upstream's password as secret(password, s).
void emit_upstreams(YAML::Emitter& out, const std::vector<pypi_upstream>& ups, secrets s);
void emit_upstreams(YAML::Emitter& out, const std::vector<oci_upstream>& ups, secrets s);

}  // namespace pantry::config::detail
