#include "pantry/registry/pypi/json_api.h"

#include "json_util.h"
#include "url.h"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace pantry::registry::pypi {
namespace {

namespace json = boost::json;

// Rewrites the `url` of every object in `files` (an array of file objects; anything else is
// left alone).
void rewrite_files(json::value* files, const boost::urls::url& base, const url_rewriter& rewrite) {
  if (files == nullptr || !files->is_array()) return;
  for (json::value& file : files->get_array()) {
    json::object* o = file.if_object();
    if (o == nullptr) continue;
    json::value* url = o->if_contains("url");
    if (url == nullptr || !url->is_string()) continue;
    const json::string& s = url->get_string();
    auto resolved = detail::resolve_file(base, std::string_view(s.data(), s.size()));
    if (!resolved) continue;
    std::string rewritten = rewrite(resolved->url);
    // Keep a hash fragment: some clients read it from the URL rather than from `digests`.
    if (!resolved->fragment.empty()) rewritten += "#" + resolved->fragment;
    *url = json::string(rewritten);
  }
}

}  // namespace

result<std::string> rewrite_json_api(std::string_view body, std::string_view page_url,
                                     const url_rewriter& rewrite) {
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
