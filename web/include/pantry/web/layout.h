#pragma once

// The frame every page of pantry's web interface shares: one HTML document with a header, a
// navigation bar over the pages and a small inline style sheet. No inline script and no external
// asset, so a page works offline, behind any proxy and with a strict Content-Security-Policy
// (kContentSecurityPolicy). A top-level page adds itself to kPages and renders its body into
// html_document(); a page may load the dashboard's one same-origin script (dashboard.h), which
// only adds live updates to what the page already shows.

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
    {"/pipelines", "Pipelines"},
    {"/projects", "Projects"},
};

// What the pages allow the browser to load: their own inline style, and scripts, requests and
// form submissions of their own origin only (the dashboard's script file and the streams it
// reads; its filter forms). No inline script, no other origin.
inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// A whole HTML document titled `title` ("pantry" prefixed), with the navigation (the page at
// `current_path` marked as current) and `body_html`, which the caller has escaped already.
// `script`: the same-origin path of a script to load (deferred); none when empty.
std::string html_document(std::string_view title, std::string_view current_path,
                          std::string_view body_html, std::string_view script = {});

}  // namespace pantry::web
