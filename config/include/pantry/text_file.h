#pragma once

// Reading a text file whole, as the commands and the pin bot read requirements files.

#include "pantry/error.h"

#include <string>

namespace pantry {

// The whole of the file at `path` (requirements files, the pin bot's files), or errc::not_found /
// errc::io_error naming the path and the cause.
result<std::string> read_text_file(const std::string& path);

}  // namespace pantry
