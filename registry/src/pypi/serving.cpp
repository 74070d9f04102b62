#include "serving.h"

#include "pantry/registry/pypi/file_path.h"

#include "../http_serve.h"
#include "keys.h"

#include <zlib.h>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using proxy::exchange;

context::context(const config::pypi_config& cfg_in, std::shared_ptr<cache::store> store_in,
                 std::shared_ptr<proxy::flight_table> flights_in,
                 std::shared_ptr<proxy::metrics_registry> metrics,
                 asio::any_io_executor blocking_in)
    : cfg(cfg_in),
      store(std::move(store_in)),
      flights(std::move(flights_in)),
      report(std::move(metrics), "pypi"),
      blocking(std::move(blocking_in)) {}

freshness::rules context::index_rules() const {
  freshness::rules r;
  r.ttl = cfg.index_ttl;
  r.negative_ttl = cfg.negative_ttl;
  r.offline = cfg.offline;
  return r;
}

const config::pypi_upstream* context::find_upstream(std::string_view name) const {
  for (const auto& u : cfg.upstreams) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

std::vector<const config::pypi_upstream*> context::upstreams_for(std::string_view project) const {
  for (const auto& r : cfg.routes) {
    if (config::glob_match(r.pattern, project)) {
      // The config refuses a route to the hosted upstream, which is asked first anyway.
      if (auto* u = find_upstream(r.upstream); u != nullptr && !u->hosted) return {u};
    }
  }
  std::vector<const config::pypi_upstream*> out;
  for (const auto& u : cfg.upstreams) {
    if (!u.hosted) out.push_back(&u);
  }
  return out;
}

const config::pypi_upstream* context::hosted_upstream() const {
  for (const auto& u : cfg.upstreams) {
    if (u.hosted) return &u;
  }
  return nullptr;
}

asio::awaitable<void> not_acceptable(exchange& ex) {
  co_await plain(ex, http::status::not_acceptable,
                 "none of the Accept header's types is served here; accept "
                 "application/vnd.pypi.simple.v1+json, "
                 "application/vnd.pypi.simple.v1+html or text/html");
}

asio::awaitable<void> plain(exchange& ex, http::status status, std::string body,
                            http::fields extra) {
  http::response<http::string_body> res{status, 11};
  for (const auto& f : extra)
    res.set(f.name_string(), f.value());
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  if (!res.body().ends_with('\n')) res.body() += '\n';
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> redirect(exchange& ex, std::string location) {
  http::response<http::string_body> res{http::status::moved_permanently, 11};
  res.set(http::field::location, location);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = "moved to " + location + "\n";
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> index_failure(exchange& ex, const error& why) {
  const bool gone = why.is(errc::not_found);
  co_await plain(ex, gone ? http::status::not_found : http::status::bad_gateway, why.message);
}

std::string join_names(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& n : names)
    list += (list.empty() ? "" : ", ") + n;
  return list;
}

std::string gzip(std::string_view in, int level) {
  z_stream zs{};
  // 15 + 16: a gzip wrapper instead of zlib's.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return {};
  }
  std::string out(deflateBound(&zs, in.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return rc == Z_STREAM_END ? out : std::string();
}

bool accepts_gzip(const exchange& ex) {
  for (auto v : ex.header_values(http::field::accept_encoding)) {
    // A plain token test: "gzip;q=0" is rare enough to answer with identity, which is always
    // acceptable.
    if (v.find("gzip") != std::string_view::npos && v.find("gzip;q=0") == std::string_view::npos &&
        v.find("gzip; q=0") == std::string_view::npos) {
      return true;
    }
  }
  return false;
}

std::string media_type_of(std::string_view filename) {
  if (filename.ends_with(".whl") || filename.ends_with(".zip")) return "application/zip";
  if (filename.ends_with(".tar.gz") || filename.ends_with(".tgz")) return "application/x-tar";
  if (filename.ends_with(".metadata")) return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::string register_file(const config::pypi_upstream& u, const std::string& url,
                          std::string_view filename, const std::optional<cache::digest>& sha,
                          std::optional<std::uint64_t> size, cache::clock::time_point now,
                          std::vector<std::pair<std::string, cache::entry>>& out) {
  std::string path = file_path_for(u.name, url);
  if (!sha || path.empty()) return {};
  cache::entry fe;
  fe.target = *sha;
  fe.content_type = media_type_of(filename);
  fe.fetched_at = now;
  fe.expires_at = cache::clock::time_point::max();
  fe.attributes.emplace_back(std::string(kAttrUrl), url);
  if (size) fe.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(*size));
  out.emplace_back(keys::file(u.name, location_of(u, path)), std::move(fe));
  return path;
}

std::string location_of(const config::pypi_upstream& u, const std::string& path) {
  return path.substr(std::string_view("/files/").size() + u.name.size() + 1);
}

result<std::string> read_blob_text(cache::store& store, std::string_view digest_text) {
  auto d = cache::digest::parse(digest_text);
  if (!d) return d.error();
  return detail::read_small_blob(store, *d);
}

}  // namespace pantry::registry::pypi
