// /pypi/<project>/json and /pypi/<project>/<version>/json: warehouse's JSON API, from the index
// cache.

#include "pantry/registry/pypi/json_api.h"
#include "pantry/registry/pypi/names.h"

#include "keys.h"
#include "routes.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <functional>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using detail::http_date;
using detail::not_modified;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

namespace {

// Where `u` serves warehouse's JSON API: its simple URL with the final "simple/" replaced by
// "pypi/" (https://pypi.org/simple/ -> https://pypi.org/pypi/); none for other URLs.
std::optional<std::string> json_api_base(const config::pypi_upstream& u) {
  constexpr std::string_view tail = "/simple/";
  if (!u.url.ends_with(tail)) return std::nullopt;
  return u.url.substr(0, u.url.size() - tail.size()) + "/pypi/";
}

// PEP 440 versions and the legacy spellings warehouse still serves.
bool is_version_text(std::string_view v) {
  if (v.empty() || v.size() > 128 || v == "." || v == "..") return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == '_' || c == '+' || c == '!';
  });
}

// "http://<Host>" (https when a fronting proxy says X-Forwarded-Proto: https), or "" when the
// request has no Host a URL may carry.
std::string origin_of(const exchange& ex) {
  std::string_view host;
  for (auto v : ex.header_values(http::field::host))
    host = v;
  bool ok = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '-' || c == ':' || c == '[' || c == ']';
  });
  if (!ok) return {};
  auto proto = ex.request().find("X-Forwarded-Proto");
  bool https = proto != ex.request().end() && proto->value() == "https";
  return std::string(https ? "https://" : "http://") + std::string(host);
}

}  // namespace

json_api_route::json_api_route(std::shared_ptr<const context> ctx,
                               std::shared_ptr<index_cache> index,
                               std::shared_ptr<const hosted_route> hosted,
                               std::shared_ptr<simple_route> pages)
    : ctx_(std::move(ctx)),
      index_(std::move(index)),
      hosted_(std::move(hosted)),
      pages_(std::move(pages)) {}

asio::awaitable<void> json_api_route::handle(exchange& ex) {
  ex.set_route("pypi_json");
  const auto& req = ex.request();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    co_await plain(ex, http::status::method_not_allowed, "the JSON API answers GET and HEAD only");
    co_return;
  }
  const std::string path = detail::path_of(req.target());
  std::string_view rest = std::string_view(path).substr(std::string_view("/pypi/").size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    auto slash = rest.find('/', start);
    parts.push_back(rest.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string_view name;
  std::string_view version;
  if ((parts.size() == 2 || parts.size() == 3) && parts.back() == "json") {
    name = parts[0];
    if (parts.size() == 3) version = parts[1];
  }
  if (name.empty() || !is_valid_project_name(name) ||
      (parts.size() == 3 && !is_version_text(version))) {
    co_await plain(ex, http::status::not_found,
                   "\"" + path +
                       "\" is not a JSON API URL; request /pypi/<project>/json or "
                       "/pypi/<project>/<version>/json");
    co_return;
  }
  const std::string normal = normalize_project_name(name);
  const std::string suffix = version.empty() ? "json" : std::string(version) + "/json";
  if (normal != name) {
    co_await redirect(ex, "/pypi/" + normal + "/" + suffix);
    co_return;
  }
  // An upstream's answer for a hosted project's name would describe someone else's files.
  auto hosted = hosted_->find(normal);
  if (!hosted || *hosted) {
    const std::string why =
        hosted ? "project \"" + normal + "\" is hosted in " + (*hosted)->index->name +
                     ", which the JSON API does not serve; its files are on /simple/" + normal + "/"
               : "cannot read hosted project \"" + normal + "\": " + hosted.error().message;
    co_await plain(ex, hosted ? http::status::not_found : http::status::service_unavailable, why);
    co_return;
  }
  auto owner = co_await pages_->ask_owner(normal);
  if (owner.verdict.says == owner_verdict::kind::unknown) {
    co_await plain(ex, http::status::bad_gateway, std::move(owner.verdict.why));
    co_return;
  }
  if (owner.verdict.says == owner_verdict::kind::hosted) {
    const std::string why =
        "project \"" + normal + "\" is hosted in " + ctx_->hosted_upstream()->name +
        ", which the JSON API does not serve; its files are on /simple/" + normal + "/";
    co_await plain(ex, http::status::not_found, why);
    co_return;
  }
  std::vector<std::string> asked;
  for (const auto* u : ctx_->upstreams_for(normal)) {
    auto base = json_api_base(*u);
    if (!base) continue;
    asked.push_back(u->name);
    const config::pypi_upstream* up = u;
    auto self = shared_from_this();
    std::string key = keys::json(u->name, normal, version);
    std::string what = "the JSON API answer for \"" + normal + "\"" +
                       (version.empty() ? std::string() : " " + std::string(version));
    index_cache::fetch_fn fetch = [self, up, key, url = *base + normal + "/" + suffix](
                                      const std::optional<cache::entry>& existing) {
      return self->fetch_json(*up, url, key, existing);
    };
    auto page = co_await index_->resolve(*u, std::move(key), std::move(what), std::move(fetch));
    if (!page.entry) {
      // Never fall through on an error: a private name must not be answered by a later index.
      // Named, not a temporary of the co_await expression (CONTRIBUTING.md).
      const error why = page.entry.error();
      co_await index_failure(ex, why);
      co_return;
    }
    if (page.entry->status != 200) continue;  // a definitive 404/410: ask the next index
    co_await serve_json_api(ex, *page.entry, page.outcome, page.warning);
    co_return;
  }
  const std::string list = join_names(asked);
  // Built in a named local: a conditional of strings inside a co_await expression is the gcc
  // 12 double-destruction trap (CONTRIBUTING.md).
  std::string why;
  if (asked.empty()) {
    why = "no index pantry may ask for \"" + normal +
          "\" serves the JSON API (pantry derives it from an index URL ending in /simple/)";
  } else {
    why = "\"" + normal + "\"" + (version.empty() ? "" : " " + std::string(version)) +
          " is not on any index pantry asked (" + list + ")";
  }
  co_await plain(ex, http::status::not_found, std::move(why));
}

asio::awaitable<index_cache::answer> json_api_route::fetch_json(
    const config::pypi_upstream& u, std::string url, std::string key,
    std::optional<cache::entry> existing) {
  proxy::request req;
  req.url = std::move(url);
  req.headers.set(http::field::accept, "application/json");
  auto got = co_await index_->fetch(u, key, req, existing);
  if (auto* settled = std::get_if<index_cache::answer>(&got)) co_return std::move(*settled);
  auto& reply = std::get<index_cache::fetched>(got);
  const auto now = reply.fresh.fetched_at;

  // Files become fetchable under the sha256 the answer gives, as from an index page. URLs are
  // stored root-relative and made absolute for each client (see serve_json_api).
  std::vector<std::pair<std::string, cache::entry>> file_entries;
  auto json = rewrite_json_api(reply.body, reply.url, [&](const json_api_file& f) -> std::string {
    std::optional<cache::digest> sha;
    if (f.sha256) {
      if (auto d = cache::digest::parse_hex(*f.sha256)) sha = *d;
    }
    std::string path = register_file(u, f.url, f.filename, sha, f.size, now, file_entries);
    return path.empty() ? f.url : path;
  });
  if (!json) {
    co_return index_->upstream_failed(
        u, existing,
        error(errc::io_error, "index " + u.name + " sent a JSON API answer (" + req.url +
                                  ") that pantry cannot read: " + json.error().message));
  }
  cache::entry e = reply.fresh;
  auto stored = co_await detail::off_thread(ctx_->blocking, [&]() -> result<void> {
    auto d = ctx_->store->put_blob(std::as_bytes(std::span(*json)), "application/json");
    if (!d) return d.error();
    e.attributes.emplace_back(std::string(kAttrJson), d->str());
    file_entries.emplace_back(key, e);
    return ctx_->store->put_entries(file_entries);
  });
  if (!stored) co_return index_cache::storage_failure(key, stored.error());
  co_return index_cache::stored(std::move(e));
}

asio::awaitable<void> json_api_route::serve_json_api(exchange& ex, const cache::entry& e,
                                                     cache_outcome outcome,
                                                     std::string_view warning) {
  auto d = cache::digest::parse(e.attribute(kAttrJson));
  auto stored =
      d ? read_blob_text(*ctx_->store, e.attribute(kAttrJson)) : result<std::string>(d.error());
  if (!stored) {
    co_await plain(ex, http::status::service_unavailable,
                   "the cached JSON API answer is gone (" + stored.error().message + "); retry");
    co_return;
  }
  ex.set_outcome(outcome);
  // Clients of the JSON API download `url`s as they stand, so they must be absolute.
  const std::string origin = origin_of(ex);
  std::string body;
  if (origin.empty()) {
    body = std::move(*stored);
  } else {
    constexpr std::string_view from = "\"url\":\"/files/";
    const std::string to = "\"url\":\"" + origin + "/files/";
    body.reserve(stored->size() + stored->size() / 8);
    std::size_t pos = 0;
    for (auto hit = stored->find(from); hit != std::string::npos; hit = stored->find(from, pos)) {
      body.append(*stored, pos, hit - pos).append(to);
      pos = hit + from.size();
    }
    body.append(*stored, pos);
  }
  char host_hash[17];
  std::snprintf(host_hash, sizeof host_hash, "%016zx", std::hash<std::string>{}(origin));
  const std::string etag = "\"" + d->hex().substr(0, 40) + "-" + host_hash + "\"";
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::vary, "Accept-Encoding");
  res.set(http::field::etag, etag);
  auto stored_at = clock::now();
  if (auto info = ctx_->store->stat_blob(*d)) stored_at = info->created;
  res.set(http::field::last_modified, http_date(stored_at));
  res.set(http::field::cache_control, "max-age=" + std::to_string(ctx_->cfg.index_ttl.count()));
  if (!warning.empty()) res.set(http::field::warning, warning);
  if (not_modified(ex, etag, stored_at)) {
    res.result(http::status::not_modified);
    res.content_length(0);
    co_await ex.respond(std::move(res));
    co_return;
  }
  if (accepts_gzip(ex) && body.size() > 1024) {
    if (std::string gz = gzip(body, Z_DEFAULT_COMPRESSION); !gz.empty()) {
      body = std::move(gz);
      res.set(http::field::content_encoding, "gzip");
    }
  }
  res.body() = std::move(body);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

}  // namespace pantry::registry::pypi
