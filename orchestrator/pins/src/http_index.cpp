#include "http_index.h"

#include "pantry/cache/digest.h"
#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/orchestrator/pins/index_fallback.h"
#include "pantry/proxy/client.h"
#include "pantry/registry/pypi/negotiate.h"

#include <boost/asio/awaitable.hpp>

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

// Bytes read from a file per step while it is hashed: memory stays bounded whatever its size.
constexpr std::size_t kHashChunk = std::size_t{256} << 10;

// GETs `url` and streams its body through sha256: "sha256:<hex>". A status other than 200 is an
// error (404: errc::not_found).
boost::asio::awaitable<result<std::string>> hash_of_download(std::shared_ptr<proxy::client> client,
                                                             std::string url) {
  proxy::request req;
  req.url = url;
  req.headers.set(http::field::accept_encoding, "identity");
  auto sent = co_await client->send(std::move(req));
  if (!sent) co_return sent.error();
  proxy::response res = std::move(*sent);
  if (res.status() != 200) {
    const errc code = res.status() == 404 ? errc::not_found : errc::io_error;
    co_return error(code, "GET " + url + " answered " + std::to_string(res.status()));
  }
  cache::hasher hasher;
  std::vector<std::byte> buf(kHashChunk);
  for (;;) {
    auto n = co_await res.read_some(buf);
    if (!n) co_return n.error();
    if (*n == 0) break;
    hasher.update(std::span<const std::byte>(buf.data(), *n));
  }
  co_return hasher.finish().str();
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
  if (needs_json_api(*parsed)) {
    if (auto filled = fill_from_json_api(name, *parsed); !filled) return filled.error();
  }
  pages_.emplace(name, *parsed);
  return *parsed;
}

result<void> http_index::fill_from_json_api(const std::string& name, pypi::project_page& page) {
  const std::string path = "/pypi/" + name + "/json";
  http::fields headers;
  headers.set(http::field::accept, "application/json");
  auto r = client_.call(http::verb::get, path, {}, headers, kMaxPage);
  if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
  // No JSON API for this project (an upstream without one, a hosted project, a redirect to the
  // normalized name pantry already asked by): the page is all there is, and decide() says what
  // that leaves unknown. A broken answer is the same: a fallback never fails the run.
  if (r->status == 200) (void)merge_json_api(page, r->body);  // a refused answer changes nothing
  return {};
}

result<std::string> http_index::file_sha256(const pypi::file_entry& f) {
  if (auto it = hashes_.find(f.url); it != hashes_.end()) return it->second;
  auto got = client_.run(hash_of_download(client_.http_client(), f.url));
  if (!got) return error(got.error().code, "downloading " + f.url + ": " + got.error().message);
  hashes_.emplace(f.url, *got);
  return *got;
}

result<std::string> http_index::metadata(const std::string& name, const pypi::version& v,
                                         const pypi::file_entry& f) {
  const std::string path = path_of(f.url) + ".metadata";
  if (auto it = metadata_.find(path); it != metadata_.end()) return it->second;
  auto r = client_.call(http::verb::get, path, {}, {}, kMaxMetadata);
  if (!r) return error(r.error().code, "the index at " + base_ + ": " + r.error().message);
  if (r->status != 200)
    return api_client::failure(
        "reading the metadata of " + name + " " + v.str() + " (" + f.filename + ")", *r);
  metadata_.emplace(path, r->body);
  return std::move(r->body);
}

}  // namespace pantry::orchestrator::pins
