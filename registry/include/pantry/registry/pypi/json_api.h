#pragma once

// PyPI's (warehouse's) JSON API: /pypi/<project>/json and /pypi/<project>/<version>/json.

#include "pantry/error.h"
#include "pantry/registry/pypi/simple.h"

#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// Rewrites a JSON API response fetched from `page_url` (absolute): every `url` of `urls[]` and of
// `releases.<version>[]` is resolved against `page_url` and replaced by `rewrite(url)` when it is
// a URL a parser would accept as a file URL (others are left as they are). Everything else is kept
// value for value (key order included; number spelling may change, e.g. 1.50 -> 1.5E0).
// Fails with errc::invalid_argument on malformed JSON or a body that is not an object, or when
// `page_url` is not absolute.
result<std::string> rewrite_json_api(std::string_view body, std::string_view page_url,
                                     const url_rewriter& rewrite);

}  // namespace pantry::registry::pypi
