#pragma once

// The PyPI "simple" repository API: project pages and the root project list, in both
// representations (PEP 503 HTML with the PEP 592/629/658/714 attributes, PEP 691 JSON with the
// PEP 700 fields). Parsing turns an upstream page into a `project_page` whose file URLs are
// absolute; rendering writes a page for pantry's clients, with every file URL passed through a
// `url_rewriter` so that clients fetch files through pantry.
//
// Pure functions: no I/O, no exceptions (allocation failure aside).

#include "pantry/cache/digest.h"
#include "pantry/error.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// One file of a project, as an index lists it. Every string is valid UTF-8.
struct file_entry {
  // The file's name: JSON's `filename`; for HTML, the percent-decoded last path segment of the
  // URL (what pip uses; nginx's autoindex truncates long anchor texts).
  std::string filename;
  // Absolute http(s) URL without fragment, resolved against the page (and its `<base href>`).
  // Parsers only produce URLs that `file_path_for` can represent (see file_path.h); anchors and
  // files whose URL is not such a URL are left out of the page.
  std::string url;
  // Hash algorithm (lowercase, e.g. "sha256") -> lowercase hex digest.
  std::map<std::string, std::string> hashes;
  // The Requires-Python specifier, entities already decoded.
  std::optional<std::string> requires_python;
  // nullopt: not yanked; "": yanked without a reason; otherwise the reason.
  std::optional<std::string> yanked;
  // PEP 658/714 core metadata (`<url>.metadata`): nullopt when none is advertised; an empty map
  // when it is advertised without a hash; otherwise algorithm -> hex. A caller that will generate
  // METADATA from the wheel itself sets this (ideally with the sha256 of what it will serve).
  std::optional<std::map<std::string, std::string>> core_metadata;
  // PEP 700 (JSON 1.1 only): size in bytes and upload time ("yyyy-mm-ddThh:mm:ss.ffffffZ").
  std::optional<std::uint64_t> size;
  std::optional<std::string> upload_time;

  // The sha256 the index gives for the file, if any (and well-formed).
  std::optional<cache::digest> sha256() const;

  friend bool operator==(const file_entry&, const file_entry&) = default;
};

// A project's page, from either representation.
struct project_page {
  // JSON's `name`; for HTML, the normalized last path segment of the page URL.
  std::string name;
  std::vector<file_entry> files;
  // PEP 700 `versions` (JSON 1.1); empty when the source did not give them.
  std::vector<std::string> versions;
  // The source's API version ("1.0" when the source did not say).
  std::string api_version = "1.0";
  // True iff the page was parsed from HTML (which carries no size, upload time or versions).
  bool from_html = false;

  friend bool operator==(const project_page&, const project_page&) = default;
};

// Maps a file's absolute upstream URL (file_entry::url) to the URL pantry's clients should use,
// absolute or relative to the page (e.g. "/files/pypi/files.pythonhosted.org/packages/...";
// see file_path_for). Renderers add the `#<algo>=<hex>` fragment themselves.
using url_rewriter = std::function<std::string(std::string_view upstream_url)>;

// Parses a PEP 503 project page served at `page_url` (absolute). Finds every `<a href>` (tags and
// attribute names in any case, values quoted either way or unquoted, comments, scripts and
// character references handled as HTML5 does), resolves hrefs against the first
// `<base href>` (itself resolved against `page_url`) or `page_url`, takes the hash from the URL
// fragment (`#sha256=...`), and reads data-requires-python, data-yanked and data-core-metadata
// (falling back to data-dist-info-metadata). Fails with errc::invalid_argument when `page_url`
// is not an absolute URL or the page declares a repository version with a major other than 1.
result<project_page> parse_project_html(std::string_view body, std::string_view page_url);

// Parses a PEP 691 project page (API 1.x) served at `page_url`; relative file URLs resolve
// against it. Reads core-metadata, falling back to dist-info-metadata and PyPI's
// data-dist-info-metadata (each a bool or a hash dict). Fails with errc::invalid_argument, naming
// the offending key, on malformed JSON, a missing or mistyped required key, or API major != 1.
result<project_page> parse_project_json(std::string_view body, std::string_view page_url);

// Writes `page` as a PEP 503 HTML5 page (repository version 1.0). Each anchor's href is
// `rewrite(file.url)` plus the preferred hash as `#<algo>=<hex>` (sha256 first); attribute values
// are escaped; core metadata is given as both data-core-metadata and data-dist-info-metadata.
std::string render_project_html(const project_page& page, const url_rewriter& rewrite);

// Writes `page` as a PEP 691 JSON page. It claims API 1.1, with `versions`, `size` and
// `upload-time`, only when the page is not from HTML, `versions` is not empty and every file has
// a size; otherwise it claims 1.0 and writes none of those keys. Metadata goes out as
// `core-metadata` and `data-dist-info-metadata`, never `dist-info-metadata` (pip 23.0 crashes on
// that key holding a dict). `yanked` is false, true or the reason.
std::string render_project_json(const project_page& page, const url_rewriter& rewrite);

// Parses the PEP 503 root page: the project names, one per anchor (the anchor's text, or when it
// is empty the last segment of its href), in page order. Fails only on a repository version with
// a major other than 1.
result<std::vector<std::string>> parse_root_html(std::string_view body);

// Parses the PEP 691 root page (`projects[].name`). Fails with errc::invalid_argument on malformed
// JSON or a wrong shape.
result<std::vector<std::string>> parse_root_json(std::string_view body);

// Writes the root page; each project links to "<normalized name>/", relative to the root page.
std::string render_root_html(const std::vector<std::string>& names);
std::string render_root_json(const std::vector<std::string>& names);

}  // namespace pantry::registry::pypi
