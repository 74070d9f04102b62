#pragma once

// PyPI's (warehouse's) JSON API: /pypi/<project>/json and /pypi/<project>/<version>/json.

#include "pantry/error.h"
#include "pantry/registry/pypi/simple.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// A file object of a JSON API answer, as the rewriter sees it.
struct json_api_file {
  std::string url;                    // resolved against the page URL, without fragment
  std::string filename;               // `filename`, or the URL's last segment
  std::optional<std::string> sha256;  // `digests.sha256`, else a `#sha256=` fragment; lowercase
  std::optional<std::uint64_t> size;  // `size`
};
using json_api_rewriter = std::function<std::string(const json_api_file&)>;

// Rewrites a JSON API response fetched from `page_url` (absolute): every `url` of `urls[]` and of
// `releases.<version>[]` is resolved against `page_url` and replaced by `rewrite(file)` when it is
// a URL a parser would accept as a file URL (others are left as they are); a `#fragment` is kept.
// Everything else is kept value for value (key order included; number spelling may change, e.g.
// 1.50 -> 1.5E0). Fails with errc::invalid_argument on malformed JSON or a body that is not an
// object, or when `page_url` is not absolute.
result<std::string> rewrite_json_api(std::string_view body, std::string_view page_url,
                                     const json_api_rewriter& rewrite);

}  // namespace pantry::registry::pypi
