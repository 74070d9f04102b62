#include "http_index.h"

#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/registry/pypi/negotiate.h"

#include <chrono>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace http = boost::beast::http;
namespace pypi = registry::pypi;
using coordinator::api_client;

// PyPI's largest JSON pages are tens of MiB; a METADATA is at most a few hundred KiB.
constexpr std::size_t kMaxPage = std::size_t{256} << 20;
constexpr std::size_t kMaxMetadata = std::size_t{16} << 20;

coordinator::api_client_options options() {
  coordinator::api_client_options o;
  o.user_agent = "pantry-pins/" PANTRY_VERSION;
  // pantry answers a page once its upstreams have; these leave its own timeouts to report first.
  o.header_timeout = std::chrono::seconds(120);
  o.idle_timeout = std::chrono::seconds(60);
  return o;
}

// The path part of an absolute URL ("/files/..."); pantry's pages point at pantry itself.
std::string path_of(const std::string& url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const std::size_t slash = url.find('/', scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

}  // namespace

http_index::http_index(std::string base) : base_(base), client_(std::move(base), "", options()) {}

index_source http_index::source() {
  return {[this](const std::string& name) { return page(name); },
          [this](const std::string& name, const pypi::version& v, const pypi::file_entry& f) {
            return metadata(name, v, f);
          }};
}

result<std::string> http_index::tag_digest(const runner::image_reference& ref) {
  const std::string key = ref.name + ":" + ref.tag;
  if (auto it = tags_.find(key); it != tags_.end()) return it->second;
  const tag_request request = tag_digest_request(ref);
  http::fields headers;
  headers.set(http::field::accept, request.accept);
  auto r = client_.call(http::verb::head, request.path, {}, headers);
  if (!r) {
    return error(r.error().code,
                 "image " + key + ": pantry's registry at " + base_ + ": " + r.error().message);
  }
  std::optional<std::string_view> digest;
  if (auto it = r->headers.find("Docker-Content-Digest"); it != r->headers.end())
    digest = it->value();
  auto read = read_tag_digest(ref, r->status, digest);
  if (!read) return read.error();
  tags_.emplace(key, *read);
  return *read;
}

result<pypi::project_page> http_index::page(const std::string& name) {
  if (auto it = pages_.find(name); it != pages_.end()) return it->second;
  const std::string path = "/simple/" + name + "/";
  http::fields headers;
  headers.set(http::field::accept, std::string(pypi::kContentTypeJson));
  auto r = client_.call(http::verb::get, path, {}, headers, kMaxPage);
  if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
  if (r->status == 404) return error(errc::not_found, "the index has no project " + name);
  if (r->status != 200) return api_client::failure("reading the project page of " + name, *r);
  auto parsed = pypi::parse_project_json(r->body, base_ + path);
  if (!parsed) return error(parsed.error().code, base_ + path + ": " + parsed.error().message);
  pages_.emplace(name, *parsed);
  return *parsed;
}

result<std::string> http_index::metadata(const std::string& name, const pypi::version& v,
                                         const pypi::file_entry& f) {
  const std::string path = path_of(f.url) + ".metadata";
  auto r = client_.call(http::verb::get, path, {}, {}, kMaxMetadata);
  if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
  if (r->status != 200)
    return api_client::failure(
        "reading the metadata of " + name + " " + v.str() + " (" + f.filename + ")", *r);
  return std::move(r->body);
}

}  // namespace pantry::orchestrator::pins
