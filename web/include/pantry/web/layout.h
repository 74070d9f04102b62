#pragma once

// The frame every page of pantry's web interface shares: one HTML document with a header, a
// navigation bar over the pages and a small inline style sheet. No scripts and no external
// assets, so a page works offline, behind any proxy and with a strict Content-Security-Policy
// (kContentSecurityPolicy). A new page (the orchestrator's dashboard) adds itself to kPages and
// renders its body into html_document().

#include <string>
#include <string_view>

namespace pantry::web {

struct page_link {
  std::string_view path;
  std::string_view title;
};

// The pages of the web interface, in the navigation's order.
inline constexpr page_link kPages[] = {
    {"/", "Overview"},
};

// What the pages allow the browser to load: nothing but their own inline style.
inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

// A whole HTML document titled `title` ("pantry" prefixed), with the navigation (the page at
// `current_path` marked as current) and `body_html`, which the caller has escaped already.
std::string html_document(std::string_view title, std::string_view current_path,
                          std::string_view body_html);

}  // namespace pantry::web
