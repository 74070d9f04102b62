#include "pantry/registry/pypi/json_api.h"

#include "json_util.h"
#include "pantry/text.h"
#include "url.h"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>

namespace pantry::registry::pypi {
namespace {

namespace json = boost::json;

// Rewrites the `url` of every object in `files` (an array of file objects; anything else is
// left alone).
bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

std::optional<std::string> sha256_of(const json::object& file, std::string_view fragment) {
  std::string hex;
  if (const json::value* d = file.if_contains("digests"); d && d->is_object()) {
    if (const json::value* s = d->get_object().if_contains("sha256"); s && s->is_string()) {
      hex = std::string(s->get_string());
    }
  }
  if (hex.empty() && fragment.starts_with("sha256=")) hex = fragment.substr(7);
  if (hex.size() != 64 || !is_hex(hex)) return std::nullopt;
  return ascii_lower(hex);
}

void rewrite_files(json::value* files, const boost::urls::url& base,
                   const json_api_rewriter& rewrite) {
  if (files == nullptr || !files->is_array()) return;
  for (json::value& file : files->get_array()) {
    json::object* o = file.if_object();
    if (o == nullptr) continue;
    json::value* url = o->if_contains("url");
    if (url == nullptr || !url->is_string()) continue;
    const json::string& s = url->get_string();
    auto resolved = detail::resolve_file(base, std::string_view(s.data(), s.size()));
    if (!resolved) continue;
    json_api_file f;
    f.url = resolved->url;
    f.filename = resolved->filename;
    if (const json::value* name = o->if_contains("filename"); name && name->is_string()) {
      f.filename = std::string(name->get_string());
    }
    f.sha256 = sha256_of(*o, resolved->fragment);
    if (const json::value* size = o->if_contains("size")) {
      if (size->is_uint64()) f.size = size->get_uint64();
      if (size->is_int64() && size->get_int64() >= 0) {
        f.size = static_cast<std::uint64_t>(size->get_int64());
      }
    }
    std::string rewritten = rewrite(f);
    // Keep a hash fragment: some clients read it from the URL rather than from `digests`.
    if (!resolved->fragment.empty()) rewritten += "#" + resolved->fragment;
    *url = json::string(rewritten);
  }
}

}  // namespace

result<std::string> rewrite_json_api(std::string_view body, std::string_view page_url,
                                     const json_api_rewriter& rewrite) {
  auto base = detail::parse_absolute_url(page_url);
  if (!base) {
    return pantry::error(errc::invalid_argument,
                         "pypi: page URL \"" + std::string(page_url) + "\" is not an absolute URL");
  }
  auto doc = detail::parse_json(body, "JSON API page " + std::string(page_url));
  if (!doc) return doc.error();
  json::object* root = doc->if_object();
  if (root == nullptr) {
    return pantry::error(errc::invalid_argument,
                         "pypi: JSON API page " + std::string(page_url) + " is not a JSON object");
  }
  rewrite_files(root->if_contains("urls"), *base, rewrite);
  if (json::value* releases = root->if_contains("releases")) {
    if (json::object* r = releases->if_object()) {
      for (auto& [version, files] : *r)
        rewrite_files(&files, *base, rewrite);
    }
  }
  return json::serialize(*doc);
}

}  // namespace pantry::registry::pypi
