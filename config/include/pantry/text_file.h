#pragma once

// Reading a text file whole, as the commands and the pin bot read requirements files; writing
// one whole, so that a reader never sees half of it (the pin bot's records).

#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry {

// The whole of the file at `path` (requirements files, the pin bot's files), or errc::not_found /
// errc::io_error naming the path and the cause.
result<std::string> read_text_file(const std::string& path);

// Replaces the file at `path` with `text`: written to a temporary file beside it (named with the
// process id) and renamed over it, making its directory first. Errors (errc::io_error) name the
// path and the cause; the temporary file is removed then.
result<void> write_text_file_atomically(const std::string& path, std::string_view text);

}  // namespace pantry
