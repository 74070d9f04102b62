#pragma once

// HTTP content negotiation for the simple API (PEP 691).

#include <optional>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

enum class representation { html, json };

inline constexpr std::string_view kContentTypeJson = "application/vnd.pypi.simple.v1+json";
inline constexpr std::string_view kContentTypeHtml = "application/vnd.pypi.simple.v1+html";
// The legacy alias of kContentTypeHtml, for clients that asked for text/html or anything.
inline constexpr std::string_view kContentTypeTextHtml = "text/html; charset=utf-8";

// What to send: the body's representation and the Content-Type to label it with.
struct negotiated {
  representation rep;
  std::string_view content_type;  // one of the kContentType* constants

  friend bool operator==(const negotiated&, const negotiated&) = default;
};

// Chooses a representation from a request's Accept header lines (each may hold a comma-separated
// list; pass every line, in order). Each offer takes the quality of the most specific media range
// that matches it (RFC 9110); q=0 excludes. The JSON offer is matched by
// application/vnd.pypi.simple.{v1,latest}+json, application/* and */*; the HTML offer by
// application/vnd.pypi.simple.{v1,latest}+html, text/html, application/*, text/* and */*.
// The higher quality wins; on a tie the offer matched by the more specific range wins; on a tie
// between exact media types JSON wins (PEP 691: the most featureful format), between wildcards
// HTML wins (`*/*` clients such as poetry expect HTML). No header, or only empty ones, means HTML.
// Returns nullopt when nothing is acceptable (answer 406).
std::optional<negotiated> negotiate(const std::vector<std::string_view>& accept_lines);

}  // namespace pantry::registry::pypi
