#pragma once

// Boost.JSON parsing without exceptions.

#include "pantry/error.h"

#include <boost/json/value.hpp>

#include <string_view>

namespace pantry::registry::pypi::detail {

// Parses `body` (strict JSON, valid UTF-8) into a value; `what` names the document in errors.
result<boost::json::value> parse_json(std::string_view body, std::string_view what,
                                      boost::json::storage_ptr storage = {});

}  // namespace pantry::registry::pypi::detail
