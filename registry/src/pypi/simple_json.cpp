// The PEP 691 JSON representation: parsing with Boost.JSON, rendering by hand (a DOM of PyPI's
// root list would cost hundreds of MiB).

#include "common.h"
#include "json_util.h"
#include "pantry/registry/pypi/simple.h"
#include "text.h"
#include "url.h"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/value.hpp>

namespace pantry::registry::pypi {
namespace {

namespace json = boost::json;

// Error helper: "pypi: project page <url>: files[3].size: expected a non-negative integer".
struct json_errors {
  std::string where;

  pantry::error bad(std::string_view path, std::string_view expected) const {
    return pantry::error(errc::invalid_argument, "pypi: " + where + ": " + std::string(path) +
                                                     ": expected " + std::string(expected));
  }
};

// Checks the `meta` object and returns its api-version ("1.0" when absent).
result<std::string> read_meta(const json::object& root, const json_errors& err) {
  const json::value* meta = root.if_contains("meta");
  if (meta == nullptr || meta->is_null()) return std::string("1.0");
  const json::object* m = meta->if_object();
  if (m == nullptr) return err.bad("meta", "an object");
  const json::value* v = m->if_contains("api-version");
  if (v == nullptr) return std::string("1.0");
  const json::string* s = v->if_string();
  if (s == nullptr) return err.bad("meta.api-version", "a string");
  std::string version(s->data(), s->size());
  if (auto ok = detail::check_api_version(version, err.where); !ok) return ok.error();
  return version;
}

// A hash dict: names lowercased; entries that are not "<name>": "<hex>" are dropped.
result<std::map<std::string, std::string>> read_hashes(const json::value& v, std::string_view path,
                                                       const json_errors& err) {
  const json::object* o = v.if_object();
  if (o == nullptr) return err.bad(path, "an object of hashes");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : *o) {
    std::string name = ascii_lower(std::string_view(key.data(), key.size()));
    const json::string* hex = value.if_string();
    if (hex == nullptr || !detail::is_hash_name(name) ||
        !detail::is_hex(std::string_view(hex->data(), hex->size()))) {
      continue;
    }
    out.emplace(std::move(name), ascii_lower(std::string_view(hex->data(), hex->size())));
  }
  return out;
}

// An optional string key; null counts as absent.
result<std::optional<std::string>> read_optional_string(const json::object& o, std::string_view key,
                                                        const std::string& path,
                                                        const json_errors& err) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  const json::string* s = v->if_string();
  if (s == nullptr) return err.bad(path + "." + std::string(key), "a string");
  return std::optional<std::string>(std::string(s->data(), s->size()));
}

result<file_entry> read_file(const json::value& v, std::size_t index, const json_errors& err,
                             const boost::urls::url& base, bool& usable) {
  const std::string path = "files[" + std::to_string(index) + "]";
  const json::object* o = v.if_object();
  if (o == nullptr) return err.bad(path, "an object");
  file_entry f;

  const json::value* filename = o->if_contains("filename");
  if (filename == nullptr || !filename->is_string()) return err.bad(path + ".filename", "a string");
  f.filename = std::string(filename->get_string().data(), filename->get_string().size());

  const json::value* url = o->if_contains("url");
  if (url == nullptr || !url->is_string()) return err.bad(path + ".url", "a string");
  auto resolved = detail::resolve_file(
      base, std::string_view(url->get_string().data(), url->get_string().size()));
  usable = resolved.has_value();
  if (!usable) return f;
  f.url = std::move(resolved->url);

  if (const json::value* h = o->if_contains("hashes"); h != nullptr && !h->is_null()) {
    auto hashes = read_hashes(*h, path + ".hashes", err);
    if (!hashes) return hashes.error();
    f.hashes = std::move(*hashes);
  }
  // A hash in the URL's fragment counts too, as in HTML (the dict wins on a clash).
  for (auto& [name, hex] : detail::hashes_from_fragment(resolved->fragment)) {
    f.hashes.emplace(name, hex);
  }

  auto requires_python = read_optional_string(*o, "requires-python", path, err);
  if (!requires_python) return requires_python.error();
  f.requires_python = std::move(*requires_python);

  if (const json::value* y = o->if_contains("yanked"); y != nullptr && !y->is_null()) {
    if (const bool* b = y->if_bool()) {
      if (*b) f.yanked = std::string();
    } else if (const json::string* s = y->if_string()) {
      // pip reads an empty reason as "not yanked" (it is falsy).
      if (!s->empty()) f.yanked = std::string(s->data(), s->size());
    } else {
      return err.bad(path + ".yanked", "a boolean or a string");
    }
  }

  // PEP 714: core-metadata; then the PEP 658 name; then PyPI's misnamed key of 2023.
  for (std::string_view key : {"core-metadata", "dist-info-metadata", "data-dist-info-metadata"}) {
    const json::value* m = o->if_contains(key);
    if (m == nullptr || m->is_null()) continue;
    if (const bool* b = m->if_bool()) {
      if (*b) f.core_metadata.emplace();
    } else if (m->is_object()) {
      auto hashes = read_hashes(*m, path + "." + std::string(key), err);
      if (!hashes) return hashes.error();
      f.core_metadata = std::move(*hashes);
    } else {
      return err.bad(path + "." + std::string(key), "a boolean or an object of hashes");
    }
    break;
  }

  if (const json::value* s = o->if_contains("size"); s != nullptr && !s->is_null()) {
    if (const std::uint64_t* u = s->if_uint64()) {
      f.size = *u;
    } else if (const std::int64_t* i = s->if_int64(); i != nullptr && *i >= 0) {
      f.size = static_cast<std::uint64_t>(*i);
    } else {
      return err.bad(path + ".size", "a non-negative integer");
    }
  }

  auto upload_time = read_optional_string(*o, "upload-time", path, err);
  if (!upload_time) return upload_time.error();
  f.upload_time = std::move(*upload_time);
  return f;
}

std::string_view view(const json::string& s) {
  return {s.data(), s.size()};
}

void append_hashes(std::string& out, const std::map<std::string, std::string>& hashes) {
  out += '{';
  bool first = true;
  for (const auto& [name, hex] : hashes) {
    if (!first) out += ',';
    first = false;
    detail::append_json_string(out, name);
    out += ':';
    detail::append_json_string(out, hex);
  }
  out += '}';
}

}  // namespace

result<project_page> parse_project_json(std::string_view body, std::string_view page_url) {
  const json_errors err{"project page " + std::string(page_url)};
  auto base = detail::parse_absolute_url(page_url);
  if (!base) {
    return pantry::error(errc::invalid_argument,
                         "pypi: page URL \"" + std::string(page_url) + "\" is not an absolute URL");
  }
  json::monotonic_resource arena;
  auto doc = detail::parse_json(body, err.where, &arena);
  if (!doc) return doc.error();
  const json::object* root = doc->if_object();
  if (root == nullptr) return err.bad("the document", "an object");

  project_page page;
  auto version = read_meta(*root, err);
  if (!version) return version.error();
  page.api_version = std::move(*version);

  const json::value* name = root->if_contains("name");
  if (name == nullptr || !name->is_string()) return err.bad("name", "a string");
  page.name = std::string(view(name->get_string()));

  const json::value* files = root->if_contains("files");
  if (files == nullptr || !files->is_array()) return err.bad("files", "an array");
  page.files.reserve(files->get_array().size());
  std::size_t index = 0;
  for (const json::value& v : files->get_array()) {
    bool usable = false;
    auto f = read_file(v, index++, err, *base, usable);
    if (!f) return f.error();
    if (usable) page.files.push_back(std::move(*f));
  }

  if (const json::value* versions = root->if_contains("versions");
      versions != nullptr && !versions->is_null()) {
    const json::array* a = versions->if_array();
    if (a == nullptr) return err.bad("versions", "an array of strings");
    page.versions.reserve(a->size());
    for (const json::value& v : *a) {
      const json::string* s = v.if_string();
      if (s == nullptr) return err.bad("versions", "an array of strings");
      page.versions.emplace_back(view(*s));
    }
  }
  return page;
}

result<std::vector<std::string>> parse_root_json(std::string_view body) {
  const json_errors err{"root page"};
  json::monotonic_resource arena;
  auto doc = detail::parse_json(body, err.where, &arena);
  if (!doc) return doc.error();
  const json::object* root = doc->if_object();
  if (root == nullptr) return err.bad("the document", "an object");
  if (auto version = read_meta(*root, err); !version) return version.error();
  const json::value* projects = root->if_contains("projects");
  if (projects == nullptr || !projects->is_array()) return err.bad("projects", "an array");
  std::vector<std::string> names;
  names.reserve(projects->get_array().size());
  std::size_t index = 0;
  for (const json::value& v : projects->get_array()) {
    const std::string path = "projects[" + std::to_string(index++) + "]";
    const json::object* o = v.if_object();
    if (o == nullptr) return err.bad(path, "an object");
    const json::value* name = o->if_contains("name");
    if (name == nullptr || !name->is_string()) return err.bad(path + ".name", "a string");
    names.emplace_back(view(name->get_string()));
  }
  return names;
}

std::string render_project_json(const project_page& page, const url_rewriter& rewrite) {
  bool v11 = !page.from_html && !page.versions.empty();
  for (const file_entry& f : page.files)
    v11 = v11 && f.size.has_value();

  std::string out;
  out.reserve(256 + page.files.size() * 400);
  out += "{\"meta\":{\"api-version\":";
  out += v11 ? "\"1.1\"" : "\"1.0\"";
  out += "},\"name\":";
  detail::append_json_string(out, page.name);
  out += ",\"files\":[";
  bool first = true;
  for (const file_entry& f : page.files) {
    if (!first) out += ',';
    first = false;
    out += "{\"filename\":";
    detail::append_json_string(out, f.filename);
    out += ",\"url\":";
    detail::append_json_string(out, rewrite(f.url));
    out += ",\"hashes\":";
    append_hashes(out, f.hashes);
    if (f.requires_python) {
      out += ",\"requires-python\":";
      detail::append_json_string(out, *f.requires_python);
    }
    out += ",\"yanked\":";
    if (!f.yanked) {
      out += "false";
    } else if (f.yanked->empty()) {
      out += "true";
    } else {
      detail::append_json_string(out, *f.yanked);
    }
    if (f.core_metadata) {
      std::string value;
      if (f.core_metadata->empty()) {
        value = "true";
      } else {
        append_hashes(value, *f.core_metadata);
      }
      out += ",\"core-metadata\":";
      out += value;
      out += ",\"data-dist-info-metadata\":";
      out += value;
    }
    if (v11) {
      out += ",\"size\":";
      out += std::to_string(*f.size);
      if (f.upload_time) {
        out += ",\"upload-time\":";
        detail::append_json_string(out, *f.upload_time);
      }
    }
    out += '}';
  }
  out += ']';
  if (v11) {
    out += ",\"versions\":[";
    first = true;
    for (const std::string& v : page.versions) {
      if (!first) out += ',';
      first = false;
      detail::append_json_string(out, v);
    }
    out += ']';
  }
  out += "}";
  return out;
}

std::string render_root_json(const std::vector<std::string>& names) {
  std::string out;
  out.reserve(64 + names.size() * 32);
  out += "{\"meta\":{\"api-version\":\"1.0\"},\"projects\":[";
  bool first = true;
  for (const std::string& name : names) {
    if (!first) out += ',';
    first = false;
    out += "{\"name\":";
    detail::append_json_string(out, name);
    out += '}';
  }
  out += "]}";
  return out;
}

}  // namespace pantry::registry::pypi
