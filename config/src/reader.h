#pragma once

// The sections read with the public YAML reader (pantry/config/yaml_reader.h), by its names
// unqualified as before it was public.

#include "pantry/config/yaml_reader.h"

namespace pantry::config::detail {
using namespace pantry::config::yaml;
}  // namespace pantry::config::detail
