#pragma once

// What the pin bot reads beside a PEP 691 page when that page lacks PEP 700's data: pantry answers
// API version 1.0, without `upload-time` (nor `versions` and `size`), for a project whose upstream
// serves only HTML. The releases are read off the file names anyway (decide.h); the upload times,
// and the yanks and Requires-Python an HTML page may also lack, come from warehouse's JSON API
// (`/pypi/<name>/json`) through pantry when its upstream serves one.
//
// Pure functions: no I/O.

#include "pantry/error.h"
#include "pantry/registry/pypi/simple.h"

#include <cstddef>
#include <string_view>

namespace pantry::orchestrator::pins {

// True iff a file of `page` has no upload time: only the JSON API can give it then.
bool needs_json_api(const registry::pypi::project_page& page);

// Fills in what the files of `page` lack from a `/pypi/<name>/json` answer (`body`), matching its
// file objects (`releases.<version>[]` and `urls[]`) to the page's files by `filename`: the upload
// time (`upload_time_iso_8601`), a yank (`yanked`, with `yanked_reason`) and `requires_python`.
// What the page gives is kept; files the answer does not list, and files only the answer lists,
// are left as they are (only the page's files are installable through the index). Returns how
// many of the page's files gained something. Errors (errc::invalid_argument, naming the key): not
// JSON, not an object, or a `releases` / `urls` of the wrong type.
result<std::size_t> merge_json_api(registry::pypi::project_page& page, std::string_view body);

}  // namespace pantry::orchestrator::pins
