// The PEP 503 HTML representation: parsing with the tokenizer, rendering by hand.

#include "common.h"
#include "html_tokenizer.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/simple.h"
#include "text.h"
#include "url.h"

#include <boost/url/parse.hpp>

namespace pantry::registry::pypi {
namespace {

using detail::html_token;
using detail::html_tokenizer;

constexpr std::string_view kVersionMeta = "pypi:repository-version";

// An anchor as found, before its href is resolved (the <base> may come later).
struct raw_anchor {
  std::string href;
  std::optional<std::string> requires_python;
  std::optional<std::string> yanked;
  std::optional<std::string> core_metadata;
  std::optional<std::string> dist_info_metadata;
  std::string text;
};

std::optional<std::string> attribute_copy(const html_token& tok, std::string_view name) {
  if (auto v = tok.attribute(name)) return std::string(*v);
  return std::nullopt;
}

// Walks a page: collects anchors (with their text when `want_text`), the first <base href> and
// the first repository-version meta tag.
struct page_scan {
  std::vector<raw_anchor> anchors;
  std::optional<std::string> base_href;
  std::optional<std::string> api_version;
};

page_scan scan_page(std::string_view body, bool want_text) {
  page_scan scan;
  html_tokenizer tokenizer(body);
  raw_anchor* open_anchor = nullptr;
  while (auto tok = tokenizer.next()) {
    switch (tok->type) {
      case html_token::kind::start_tag:
        if (tok->name == "a") {
          open_anchor = nullptr;  // HTML5 closes an open <a> when another starts
          auto href = tok->attribute("href");
          if (!href) break;
          raw_anchor& a = scan.anchors.emplace_back();
          a.href = std::string(*href);
          a.requires_python = attribute_copy(*tok, "data-requires-python");
          a.yanked = attribute_copy(*tok, "data-yanked");
          a.core_metadata = attribute_copy(*tok, "data-core-metadata");
          a.dist_info_metadata = attribute_copy(*tok, "data-dist-info-metadata");
          if (want_text) open_anchor = &a;
        } else if (tok->name == "base") {
          if (auto href = tok->attribute("href"); href && !scan.base_href) {
            scan.base_href = std::string(*href);
          }
        } else if (tok->name == "meta") {
          auto name = tok->attribute("name");
          auto content = tok->attribute("content");
          if (name && content && ascii_iequals(*name, kVersionMeta) && !scan.api_version) {
            scan.api_version = std::string(trim_ascii_space(*content));
          }
        }
        break;
      case html_token::kind::end_tag:
        if (tok->name == "a") open_anchor = nullptr;
        break;
      case html_token::kind::text:
        if (open_anchor != nullptr) open_anchor->text += tok->text;
        break;
    }
  }
  return scan;
}

// PEP 658/714 attribute value -> core_metadata. "true" or anything not "<algo>=<hex>" means
// metadata without a usable hash (as pip reads it); "false" means none.
std::optional<std::map<std::string, std::string>> parse_metadata_attribute(std::string_view v) {
  v = trim_ascii_space(v);
  if (ascii_iequals(v, "false")) return std::nullopt;
  std::map<std::string, std::string> hashes;
  if (const std::size_t eq = v.find('='); eq != std::string_view::npos) {
    std::string name = ascii_lower(v.substr(0, eq));
    const std::string_view value = v.substr(eq + 1);
    if (detail::is_hash_name(name) && detail::is_hex(value)) {
      hashes.emplace(std::move(name), ascii_lower(value));
    }
  }
  return hashes;
}

// The normalized project name a page URL ends with ("https://h/simple/Foo_Bar/" -> "foo-bar").
std::string name_from_page_url(const boost::urls::url_view_base& u) {
  std::string_view path = u.encoded_path();
  while (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  const std::string name = detail::percent_decode(path.substr(path.rfind('/') + 1));
  return is_valid_project_name(name) ? normalize_project_name(name) : std::string();
}

void append_attribute(std::string& out, std::string_view name, std::string_view value) {
  out += ' ';
  out += name;
  out += "=\"";
  detail::append_html_escaped(out, value);
  out += '"';
}

}  // namespace

result<project_page> parse_project_html(std::string_view body, std::string_view page_url) {
  auto page = detail::parse_absolute_url(page_url);
  if (!page) {
    return pantry::error(errc::invalid_argument,
                         "pypi: page URL \"" + std::string(page_url) + "\" is not an absolute URL");
  }
  page_scan scan = scan_page(body, /*want_text=*/false);
  project_page out;
  out.from_html = true;
  if (scan.api_version) {
    const std::string where = "page " + std::string(page_url);
    if (auto ok = detail::check_api_version(*scan.api_version, where); !ok) return ok.error();
    out.api_version = std::move(*scan.api_version);
  }
  out.name = name_from_page_url(*page);

  boost::urls::url base = *page;
  if (scan.base_href) {
    // An unusable <base href> is ignored, as browsers do.
    const std::string cleaned = detail::clean_href(*scan.base_href);
    if (auto ref = boost::urls::parse_uri_reference(cleaned)) {
      if (auto resolved = detail::resolve_reference(*page, *ref)) base = std::move(*resolved);
    }
  }

  out.files.reserve(scan.anchors.size());
  for (raw_anchor& a : scan.anchors) {
    auto resolved = detail::resolve_file(base, a.href);
    if (!resolved || resolved->filename.empty()) continue;
    file_entry f;
    f.filename = std::move(resolved->filename);
    f.url = std::move(resolved->url);
    f.hashes = detail::hashes_from_fragment(resolved->fragment);
    f.requires_python = std::move(a.requires_python);
    f.yanked = std::move(a.yanked);
    if (a.core_metadata) {
      f.core_metadata = parse_metadata_attribute(*a.core_metadata);
    } else if (a.dist_info_metadata) {
      f.core_metadata = parse_metadata_attribute(*a.dist_info_metadata);
    }
    out.files.push_back(std::move(f));
  }
  return out;
}

result<std::vector<std::string>> parse_root_html(std::string_view body) {
  page_scan scan = scan_page(body, /*want_text=*/true);
  if (scan.api_version) {
    if (auto ok = detail::check_api_version(*scan.api_version, "root page"); !ok) {
      return ok.error();
    }
  }
  std::vector<std::string> names;
  names.reserve(scan.anchors.size());
  for (const raw_anchor& a : scan.anchors) {
    std::string name = detail::valid_utf8(trim_ascii_space(detail::decode_entities(a.text, false)));
    if (name.empty()) {
      std::string_view href = trim_ascii_space(a.href);
      href = href.substr(0, href.find_first_of("?#"));
      while (!href.empty() && href.back() == '/')
        href.remove_suffix(1);
      name = detail::valid_utf8(
          trim_ascii_space(detail::percent_decode(href.substr(href.rfind('/') + 1))));
    }
    if (!name.empty()) names.push_back(std::move(name));
  }
  return names;
}

std::string render_project_html(const project_page& page, const url_rewriter& rewrite) {
  std::string out;
  out.reserve(512 + page.files.size() * 300);
  out +=
      "<!DOCTYPE html>\n<html>\n  <head>\n"
      "    <meta name=\"pypi:repository-version\" content=\"1.0\">\n"
      "    <title>Links for ";
  detail::append_html_escaped(out, page.name);
  out += "</title>\n  </head>\n  <body>\n    <h1>Links for ";
  detail::append_html_escaped(out, page.name);
  out += "</h1>\n";
  for (const file_entry& f : page.files) {
    std::string href = rewrite(f.url);
    if (const auto* h = detail::preferred_hash(f.hashes)) {
      href += '#';
      href += h->first;
      href += '=';
      href += h->second;
    }
    out += "    <a";
    append_attribute(out, "href", href);
    if (f.requires_python) append_attribute(out, "data-requires-python", *f.requires_python);
    if (f.yanked) append_attribute(out, "data-yanked", *f.yanked);
    if (f.core_metadata) {
      const std::string value = detail::metadata_attribute(*f.core_metadata);
      append_attribute(out, "data-core-metadata", value);
      append_attribute(out, "data-dist-info-metadata", value);
    }
    out += '>';
    detail::append_html_escaped(out, f.filename);
    out += "</a><br />\n";
  }
  out += "  </body>\n</html>\n";
  return out;
}

std::string render_root_html(const std::vector<std::string>& names) {
  std::string out;
  out.reserve(256 + names.size() * 64);
  out +=
      "<!DOCTYPE html>\n<html>\n  <head>\n"
      "    <meta name=\"pypi:repository-version\" content=\"1.0\">\n"
      "    <title>Simple index</title>\n  </head>\n  <body>\n";
  for (const std::string& name : names) {
    out += "    <a";
    append_attribute(out, "href",
                     detail::percent_encode_segment(normalize_project_name(name)) + "/");
    out += '>';
    detail::append_html_escaped(out, name);
    out += "</a>\n";
  }
  out += "  </body>\n</html>\n";
  return out;
}

}  // namespace pantry::registry::pypi
