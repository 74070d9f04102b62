#include "pantry/registry/pypi/service.h"

#include "pantry/registry/pypi/file_path.h"
#include "pantry/registry/pypi/json_api.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/negotiate.h"
#include "pantry/registry/pypi/simple.h"
#include "pantry/registry/pypi/wheel.h"

#include "../http_serve.h"
#include "keys.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>

#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <map>
#include <mutex>
#include <unordered_map>

namespace pantry::registry::pypi {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using detail::coalescer;
using detail::http_date;
using detail::not_modified;
using detail::path_of;
using detail::serve_blob;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

// Index pages and JSON API answers larger than this are refused (pypi.org's largest project
// pages are a few MiB).
constexpr std::size_t kMaxPageBytes = 64 << 20;
// Body copies (a wheel fetched to make its METADATA) go through buffers of this size.
constexpr std::size_t kCopyBuffer = 256 * 1024;
// What pantry asks upstream for: JSON first (it carries size and upload time), HTML otherwise.
constexpr std::string_view kUpstreamAccept =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01";

constexpr std::string_view kAttrHtml = "html";
constexpr std::string_view kAttrJson = "json";
constexpr std::string_view kAttrUrl = "url";
constexpr std::string_view kAttrNames = "names";        // a project list, one name per line
constexpr std::string_view kAttrGenerate = "generate";  // METADATA made from the cached wheel

// Cached representations are compressed once, so at the best level; answers made per request
// at zlib's default.
std::string gzip(std::string_view in, int level = Z_BEST_COMPRESSION) {
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

struct page_result {
  result<cache::entry> entry;
  cache_outcome outcome = cache_outcome::none;
  std::string warning;  // set when a stale copy is served because upstream failed
};

class service_impl final : public service, public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::pypi_config& cfg, std::shared_ptr<cache::store> store,
               std::shared_ptr<proxy::client> upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking)
      : cfg_(cfg),
        store_(std::move(store)),
        upstream_(std::move(upstream)),
        flights_(std::move(flights)),
        metrics_(std::move(metrics)),
        blocking_(std::move(blocking)) {}

  void install(proxy::server& srv) override {
    auto self = shared_from_this();
    srv.route("/simple/", [self](exchange& ex) { return self->handle_simple(ex); });
    srv.route("/simple", [self](exchange& ex) { return self->handle_simple(ex); });
    srv.route("/files/", [self](exchange& ex) { return self->handle_files(ex); });
    srv.route("/pypi/", [self](exchange& ex) { return self->handle_json_api(ex); });
  }

 private:
  // Runs blocking `f` (cache writes, hashing) on the blocking pool and comes back.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> off_thread(F f) {
    return detail::off_thread(blocking_, std::move(f));
  }

  static asio::awaitable<void> plain(exchange& ex, http::status status, std::string body,
                                     http::fields extra = {}) {
    http::response<http::string_body> res{status, 11};
    for (const auto& f : extra)
      res.set(f.name_string(), f.value());
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = std::move(body);
    if (!res.body().ends_with('\n')) res.body() += '\n';
    res.prepare_payload();
    co_await ex.respond(std::move(res));
  }

  const config::pypi_upstream* find_upstream(std::string_view name) const {
    for (const auto& u : cfg_.upstreams) {
      if (u.name == name) return &u;
    }
    return nullptr;
  }

  // The upstreams to ask for `project`, in order: the routed one alone, or all by priority.
  std::vector<const config::pypi_upstream*> upstreams_for(std::string_view project) const {
    for (const auto& r : cfg_.routes) {
      if (config::glob_match(r.pattern, project)) {
        if (auto* u = find_upstream(r.upstream)) return {u};
      }
    }
    std::vector<const config::pypi_upstream*> out;
    for (const auto& u : cfg_.upstreams)
      out.push_back(&u);
    return out;
  }

  // ---- /simple/ ----

  asio::awaitable<void> handle_simple(exchange& ex) {
    ex.set_route("pypi_simple");
    const auto& req = ex.request();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      co_await plain(ex, http::status::method_not_allowed,
                     "the simple index answers GET and HEAD only", {});
      co_return;
    }
    std::string path = path_of(req.target());
    if (path == "/simple") {
      co_await redirect(ex, "/simple/");
      co_return;
    }
    std::string_view rest = std::string_view(path).substr(std::string_view("/simple/").size());
    if (rest.empty()) {
      co_await serve_root(ex);
      co_return;
    }
    std::string_view name = rest;
    if (name.ends_with('/')) name.remove_suffix(1);
    if (name.empty() || name.find('/') != std::string_view::npos || !is_valid_project_name(name)) {
      co_await plain(ex, http::status::not_found,
                     "\"" + std::string(rest) +
                         "\" is not a project name; request /simple/<project>/, e.g. "
                         "/simple/requests/");
      co_return;
    }
    std::string normal = normalize_project_name(name);
    if (normal != name || !rest.ends_with('/')) {
      co_await redirect(ex, "/simple/" + normal + "/");
      co_return;
    }
    auto chosen = negotiate(ex.header_values(http::field::accept));
    if (!chosen) {
      co_await plain(ex, http::status::not_acceptable,
                     "none of the Accept header's types is served here; accept "
                     "application/vnd.pypi.simple.v1+json, "
                     "application/vnd.pypi.simple.v1+html or text/html");
      co_return;
    }

    std::vector<std::string> asked;
    for (const auto* u : upstreams_for(normal)) {
      auto page = co_await resolve_page(*u, normal);
      asked.push_back(u->name);
      if (!page.entry) {
        // Never fall through on an error: a private name must not be answered by a later index.
        bool gone = page.entry.error().is(errc::not_found);
        co_await plain(ex, gone ? http::status::not_found : http::status::bad_gateway,
                       page.entry.error().message);
        co_return;
      }
      if (page.entry->status != 200) continue;  // a definitive 404/410: ask the next index
      co_await serve_page(ex, *page.entry, *chosen, page.outcome, page.warning);
      co_return;
    }
    std::string list;
    for (const auto& a : asked)
      list += (list.empty() ? "" : ", ") + a;
    co_await plain(ex, http::status::not_found,
                   "project \"" + normal + "\" is not on any index pantry asked (" + list + ")");
  }

  static asio::awaitable<void> redirect(exchange& ex, std::string location) {
    http::response<http::string_body> res{http::status::moved_permanently, 11};
    res.set(http::field::location, location);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "moved to " + location + "\n";
    res.prepare_payload();
    co_await ex.respond(std::move(res));
  }

  // The project list: the union of every upstream's root page (cached with index_ttl, stale when
  // upstream fails) and the projects pantry has pages for, so that it still lists what pantry can
  // serve when the upstreams are down or pypi.offline is true.
  asio::awaitable<void> serve_root(exchange& ex) {
    std::map<std::string, std::string> names;  // normalized -> name as an index spells it
    std::string warning;
    for (const auto& u : cfg_.upstreams) {
      const config::pypi_upstream* up = &u;
      auto self = shared_from_this();
      fetch_fn fetch = [self, up](const std::optional<cache::entry>& existing) {
        return self->fetch_root(*up, existing);
      };
      // Named locals, not temporaries of the co_await expression (see CONTRIBUTING.md).
      std::string key = keys::root(u.name);
      std::string what = "the project list of " + u.name;
      auto got = co_await resolve(u, std::move(key), std::move(what), std::move(fetch));
      if (!got.entry || got.entry->status != 200) {
        if (!got.entry && !cfg_.offline) {
          spdlog::warn("pypi: /simple/ lists only cached projects of {}: {}", u.name,
                       got.entry.error().message);
          warning = "111 pantry \"Revalidation Failed\"";
        }
        continue;
      }
      if (!got.warning.empty()) warning = got.warning;
      auto text = read_blob_text(got.entry->attribute(kAttrNames));
      if (!text) continue;
      for (std::string_view rest = *text; !rest.empty();) {
        auto nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        if (!line.empty()) names.try_emplace(normalize_project_name(line), line);
      }
    }
    auto walked =
        store_->for_each_entry(keys::kPagePrefix, [&](std::string_view key, const cache::entry& e) {
          if (e.status == 200) {
            std::string name(keys::project_of_page(key));
            names.try_emplace(name, name);
          }
          return true;
        });
    if (!walked) {
      co_await plain(ex, http::status::internal_server_error, walked.error().message);
      co_return;
    }
    std::vector<std::string> list;
    list.reserve(names.size());
    for (auto& [normal, name] : names)
      list.push_back(std::move(name));
    auto chosen = negotiate(ex.header_values(http::field::accept));
    if (!chosen) chosen = negotiated{representation::html, kContentTypeTextHtml};
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, chosen->content_type);
    res.set(http::field::vary, "Accept");
    if (!warning.empty()) res.set(http::field::warning, warning);
    res.body() =
        chosen->rep == representation::json ? render_root_json(list) : render_root_html(list);
    res.prepare_payload();
    co_await ex.respond(std::move(res));
  }

  // The whole of a small cached blob (a page or a name list), by its digest's text.
  result<std::string> read_blob_text(std::string_view digest_text) {
    auto d = cache::digest::parse(digest_text);
    if (!d) return d.error();
    return detail::read_small_blob(*store_, *d);
  }

  using fetch_fn =
      std::function<asio::awaitable<page_result>(const std::optional<cache::entry>& existing)>;

  // What `key` (an index page, JSON API answer or project list of `u`) holds: fresh from cache,
  // revalidated, fetched by `fetch` (given the expired entry, if any), or stale when upstream
  // fails. An error only when there is nothing to serve. Concurrent callers share one fetch.
  asio::awaitable<page_result> resolve(const config::pypi_upstream& u, std::string key,
                                       std::string what, fetch_fn fetch) {
    std::optional<cache::entry> existing;
    if (auto e = store_->get_entry(key); e && usable(*e)) existing = std::move(*e);
    if (existing && (!existing->expired() || cfg_.offline)) {
      page_result r{*existing, cache_outcome::hit, {}};
      if (existing->expired()) r.warning = "110 pantry \"Response is Stale\" (offline)";
      co_return r;
    }
    if (cfg_.offline) {
      co_return page_result{
          error(errc::not_found, what +
                                     " is not cached and pypi.offline is true, so pantry does "
                                     "not ask " +
                                     u.name),
          cache_outcome::none,
          {}};
    }
    bool joined = false;
    // Named, not a temporary of the co_await expression: gcc 12 destroys such temporaries twice.
    std::function<asio::awaitable<page_result>()> run =
        [fetch = std::move(fetch), existing]() -> asio::awaitable<page_result> {
      co_return co_await fetch(existing);
    };
    auto r = co_await pages_.run(key, std::move(run), joined);
    if (joined && r.outcome == cache_outcome::miss) r.outcome = cache_outcome::coalesced;
    co_return r;
  }

  asio::awaitable<page_result> resolve_page(const config::pypi_upstream& u, std::string project) {
    const config::pypi_upstream* up = &u;
    auto self = shared_from_this();
    fetch_fn fetch = [self, up, project](const std::optional<cache::entry>& existing) {
      return self->fetch_page(*up, project, existing);
    };
    std::string key = keys::page(u.name, project);
    std::string what = "project \"" + project + "\"";
    co_return co_await resolve(u, std::move(key), std::move(what), std::move(fetch));
  }

  // True iff every blob an entry names (its representations or name list) is still cached.
  bool usable(const cache::entry& e) {
    if (e.status != 200) return true;
    bool any = false;
    for (auto name : {kAttrHtml, kAttrJson, kAttrNames}) {
      auto text = e.attribute(name);
      if (text.empty()) continue;
      auto d = cache::digest::parse(text);
      if (!d || !store_->stat_blob(*d)) return false;
      any = true;
    }
    return any;
  }

  // The stale copy when there is one (counted and logged), else the error.
  page_result stale_or(const config::pypi_upstream& u, const std::optional<cache::entry>& existing,
                       const error& why) {
    metrics_->add("pantry_upstream_failures_total", {{"upstream", u.name}}, 1,
                  "Upstream requests that failed");
    if (existing) {
      spdlog::warn("pypi: serving a stale copy from {}: {}", u.name, why.message);
      return {*existing, cache_outcome::stale, "111 pantry \"Revalidation Failed\""};
    }
    return {why, cache_outcome::none, {}};
  }

  // Sends `req` for `key` and handles what every cached index answer shares: a failure (stale
  // copy), 304 (the entry renewed), 404/410 (remembered for negative_ttl) and other statuses.
  // Returns the response only for a 200 the caller must read; `done` holds the answer otherwise.
  asio::awaitable<std::optional<proxy::response>> send_for(
      const config::pypi_upstream& u, const std::string& key, proxy::request& req,
      const std::optional<cache::entry>& existing, page_result& done) {
    req.tls.ca_file = u.ca_file;
    if (existing && existing->status == 200 && !existing->etag.empty()) {
      req.headers.set(http::field::if_none_match, existing->etag);
    }
    metrics_->add("pantry_upstream_requests_total", {{"upstream", u.name}}, 1,
                  "Requests pantry sent upstream");
    auto sent = co_await upstream_->send(req);
    if (!sent) {
      done = stale_or(u, existing, sent.error());
      co_return std::nullopt;
    }
    const auto now = clock::now();
    const unsigned status = sent->status();
    if (status == 304 && existing) {
      cache::entry e = *existing;
      e.fetched_at = now;
      e.expires_at = now + cfg_.index_ttl;
      auto put = co_await off_thread([&] { return store_->put_entry(key, e); });
      if (!put) spdlog::warn("pypi: {}", put.error().message);
      done = page_result{e, cache_outcome::revalidated, {}};
      co_return std::nullopt;
    }
    if (status == 404 || status == 410) {
      cache::entry e;
      e.status = static_cast<int>(status);
      e.fetched_at = now;
      e.expires_at = now + cfg_.negative_ttl;
      if (cfg_.negative_ttl.count() > 0) {
        auto put = co_await off_thread([&] { return store_->put_entry(key, e); });
        if (!put) spdlog::warn("pypi: {}", put.error().message);
      }
      done = page_result{e, cache_outcome::miss, {}};
      co_return std::nullopt;
    }
    if (status != 200) {
      done = stale_or(u, existing,
                      error(errc::io_error, "index " + u.name + " answered " +
                                                std::to_string(status) + " for GET " + req.url));
      co_return std::nullopt;
    }
    co_return std::move(*sent);
  }

  // Makes the file at `url` fetchable through pantry under the hash `sha` (adding its entry to
  // `out`) and returns pantry's path for it, or "" when it cannot be: no hash, or a URL that
  // pantry does not proxy (it is then left pointing at upstream).
  static std::string register_file(const config::pypi_upstream& u, const std::string& url,
                                   std::string_view filename,
                                   const std::optional<cache::digest>& sha,
                                   std::optional<std::uint64_t> size, clock::time_point now,
                                   std::vector<std::pair<std::string, cache::entry>>& out) {
    std::string path = file_path_for(u.name, url);
    if (!sha || path.empty()) return {};
    cache::entry fe;
    fe.target = *sha;
    fe.content_type = media_type_of(filename);
    fe.fetched_at = now;
    fe.expires_at = clock::time_point::max();
    fe.attributes.emplace_back(std::string(kAttrUrl), url);
    if (size)
      fe.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(*size));
    out.emplace_back(keys::file(u.name, location_of(u, path)), std::move(fe));
    return path;
  }

  // "/files/<upstream>/<location>" -> "<location>".
  static std::string location_of(const config::pypi_upstream& u, const std::string& path) {
    return path.substr(std::string_view("/files/").size() + u.name.size() + 1);
  }

  // Stores `body` (and its gzip) as blobs named `name` and `name`.gz in `e`'s attributes.
  result<void> put_representation(cache::entry& e, std::string_view name, const std::string& body,
                                  std::string_view type) {
    auto d = store_->put_blob(std::as_bytes(std::span(body)), std::string(type));
    if (!d) return d.error();
    e.attributes.emplace_back(std::string(name), d->str());
    std::string gz = gzip(body);
    if (!gz.empty()) {
      auto dz = store_->put_blob(std::as_bytes(std::span(gz)), std::string(type));
      if (!dz) return dz.error();
      e.attributes.emplace_back(std::string(name) + ".gz", dz->str());
    }
    return {};
  }

  // A fresh 200 entry for an index answer `res`.
  cache::entry fresh_entry(const proxy::response& res, clock::time_point now) const {
    cache::entry e;
    e.status = 200;
    e.etag = std::string(res.headers()[http::field::etag]);
    e.last_modified = std::string(res.headers()[http::field::last_modified]);
    e.fetched_at = now;
    e.expires_at = now + cfg_.index_ttl;
    return e;
  }

  // An index answer (page, project list or JSON API) read whole.
  struct index_answer {
    std::string body;
    std::string content_type;
    std::string url;     // after redirects
    cache::entry fresh;  // a 200 entry stamped now, with the answer's ETag and Last-Modified
  };

  // send_for, then the body read whole: empty when `done` holds the answer already (a failure,
  // 304, 404/410) or the body broke off (then `done` is the stale copy or the error).
  asio::awaitable<std::optional<index_answer>> fetch_index(
      const config::pypi_upstream& u, const std::string& key, proxy::request& req,
      const std::optional<cache::entry>& existing, page_result& done) {
    auto sent = co_await send_for(u, key, req, existing, done);
    if (!sent) co_return std::nullopt;
    auto body = co_await sent->read_all(kMaxPageBytes);
    if (!body) {
      done = stale_or(u, existing, body.error());
      co_return std::nullopt;
    }
    index_answer a;
    a.body = std::move(*body);
    a.content_type = std::string(sent->headers()[http::field::content_type]);
    a.url = sent->url();
    a.fresh = fresh_entry(*sent, clock::now());
    co_return a;
  }

  asio::awaitable<page_result> fetch_page(const config::pypi_upstream& u, std::string project,
                                          std::optional<cache::entry> existing) {
    const std::string key = keys::page(u.name, project);
    proxy::request req;
    req.url = u.url + project + "/";
    req.headers.set(http::field::accept, kUpstreamAccept);
    page_result done;
    auto got = co_await fetch_index(u, key, req, existing, done);
    if (!got) co_return done;
    const auto now = got->fresh.fetched_at;

    bool is_json = got->content_type.find("json") != std::string::npos;
    auto page =
        is_json ? parse_project_json(got->body, got->url) : parse_project_html(got->body, got->url);
    if (!page) {
      co_return stale_or(
          u, existing,
          error(errc::io_error, "index " + u.name + " sent a page for \"" + project +
                                    "\" that pantry cannot read: " + page.error().message));
    }

    // The files this page lists become fetchable, each under the hash the page gives.
    std::vector<std::pair<std::string, cache::entry>> file_entries;
    std::unordered_map<std::string, std::string> rewritten;  // upstream url -> pantry url
    for (auto& f : page->files) {
      std::string path = register_file(u, f.url, f.filename, f.sha256(), f.size, now, file_entries);
      if (path.empty()) continue;
      rewritten.emplace(f.url, path);

      cache::entry me;
      me.content_type = media_type_of(".metadata");
      me.fetched_at = now;
      me.expires_at = clock::time_point::max();
      me.attributes.emplace_back(std::string(kAttrUrl), f.url + ".metadata");
      bool is_wheel = f.filename.ends_with(".whl");
      std::optional<cache::digest> meta_sha;
      if (f.core_metadata) {
        auto it = f.core_metadata->find("sha256");
        if (it != f.core_metadata->end()) {
          if (auto d = cache::digest::parse_hex(it->second)) meta_sha = *d;
        }
      }
      const std::string meta_key = keys::metadata(u.name, location_of(u, path));
      if (meta_sha) {
        me.target = *meta_sha;
        file_entries.emplace_back(meta_key, me);
      } else if (is_wheel) {
        // Upstream offers no verifiable metadata file: pantry makes one from the wheel.
        me.attributes.emplace_back(std::string(kAttrGenerate), "1");
        file_entries.emplace_back(meta_key, me);
        f.core_metadata = std::map<std::string, std::string>{};
      } else {
        f.core_metadata.reset();
      }
    }
    auto rewrite = [&rewritten](std::string_view url) -> std::string {
      auto it = rewritten.find(std::string(url));
      return it == rewritten.end() ? std::string(url) : it->second;
    };
    std::string html = render_project_html(*page, rewrite);
    std::string json = render_project_json(*page, rewrite);

    cache::entry e = got->fresh;
    auto stored = co_await off_thread([&]() -> result<void> {
      if (auto r = put_representation(e, kAttrHtml, html, kContentTypeHtml); !r) return r;
      if (auto r = put_representation(e, kAttrJson, json, kContentTypeJson); !r) return r;
      file_entries.emplace_back(key, e);
      return store_->put_entries(file_entries);
    });
    if (!stored) co_return storage_failure(key, stored.error());
    co_return page_result{e, cache_outcome::miss, {}};
  }

  static page_result storage_failure(const std::string& key, const error& why) {
    spdlog::error("pypi: cannot cache {}: {}", key, why.message);
    return page_result{error(errc::storage_error, why.message), cache_outcome::none, {}};
  }

  // An upstream's root page, kept as a list of names, one per line.
  asio::awaitable<page_result> fetch_root(const config::pypi_upstream& u,
                                          std::optional<cache::entry> existing) {
    const std::string key = keys::root(u.name);
    proxy::request req;
    req.url = u.url;
    req.headers.set(http::field::accept, kUpstreamAccept);
    page_result done;
    auto got = co_await fetch_index(u, key, req, existing, done);
    if (!got) co_return done;
    auto names = got->content_type.find("json") != std::string::npos ? parse_root_json(got->body)
                                                                     : parse_root_html(got->body);
    if (!names) {
      co_return stale_or(
          u, existing,
          error(errc::io_error, "index " + u.name + " sent a project list (" + req.url +
                                    ") that pantry cannot read: " + names.error().message));
    }
    std::string text;
    for (const auto& n : *names) {
      if (is_valid_project_name(n)) text += n + "\n";
    }
    cache::entry e = got->fresh;
    auto stored = co_await off_thread([&]() -> result<void> {
      auto d = store_->put_blob(std::as_bytes(std::span(text)), "text/plain; charset=utf-8");
      if (!d) return d.error();
      e.attributes.emplace_back(std::string(kAttrNames), d->str());
      return store_->put_entry(key, e);
    });
    if (!stored) co_return storage_failure(key, stored.error());
    co_return page_result{e, cache_outcome::miss, {}};
  }

  asio::awaitable<void> serve_page(exchange& ex, const cache::entry& e, const negotiated& chosen,
                                   cache_outcome outcome, const std::string& warning) {
    std::string_view name = chosen.rep == representation::json ? kAttrJson : kAttrHtml;
    bool gz = false;
    std::string gz_name = std::string(name) + ".gz";
    std::string_view digest_text = e.attribute(name);
    if (accepts_gzip(ex) && !e.attribute(gz_name).empty()) {
      digest_text = e.attribute(gz_name);
      gz = true;
    }
    auto d = cache::digest::parse(digest_text);
    auto reader = d ? store_->open_blob(*d) : result<cache::blob_reader>(d.error());
    if (!reader) {
      co_await plain(ex, http::status::service_unavailable,
                     "the cached page is gone (" + reader.error().message + "); retry");
      co_return;
    }
    ex.set_outcome(outcome);
    std::string etag = "\"" + d->hex().substr(0, 40) + "\"";
    http::response_header<> h;
    h.version(11);
    h.set(http::field::content_type, chosen.content_type);
    h.set(http::field::vary, "Accept, Accept-Encoding");
    h.set(http::field::etag, etag);
    h.set(http::field::last_modified, http_date(reader->info().created));
    h.set(http::field::cache_control, "max-age=" + std::to_string(cfg_.index_ttl.count()));
    if (gz) h.set(http::field::content_encoding, "gzip");
    if (!warning.empty()) h.set(http::field::warning, warning);
    if (not_modified(ex, etag, reader->info().created)) {
      h.result(http::status::not_modified);
      co_await ex.begin(std::move(h), 0);
      co_await ex.end();
      co_return;
    }
    h.result(http::status::ok);
    auto size = reader->size();
    if (co_await ex.begin(std::move(h), size)) co_return;
    if (ex.request().method() == http::verb::head) {
      co_await ex.end();
      co_return;
    }
    if (co_await ex.write_blob(*reader, 0, size)) co_return;
    co_await ex.end();
  }

  // ---- /pypi/<project>/json, /pypi/<project>/<version>/json ----

  // Where `u` serves warehouse's JSON API: its simple URL with the final "simple/" replaced by
  // "pypi/" (https://pypi.org/simple/ -> https://pypi.org/pypi/); none for other URLs.
  static std::optional<std::string> json_api_base(const config::pypi_upstream& u) {
    constexpr std::string_view tail = "/simple/";
    if (!u.url.ends_with(tail)) return std::nullopt;
    return u.url.substr(0, u.url.size() - tail.size()) + "/pypi/";
  }

  // PEP 440 versions and the legacy spellings warehouse still serves.
  static bool is_version_text(std::string_view v) {
    if (v.empty() || v.size() > 128 || v == "." || v == "..") return false;
    return std::all_of(v.begin(), v.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             c == '.' || c == '-' || c == '_' || c == '+' || c == '!';
    });
  }

  asio::awaitable<void> handle_json_api(exchange& ex) {
    ex.set_route("pypi_json");
    const auto& req = ex.request();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      co_await plain(ex, http::status::method_not_allowed,
                     "the JSON API answers GET and HEAD only");
      co_return;
    }
    const std::string path = path_of(req.target());
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
    std::vector<std::string> asked;
    for (const auto* u : upstreams_for(normal)) {
      auto base = json_api_base(*u);
      if (!base) continue;
      asked.push_back(u->name);
      const config::pypi_upstream* up = u;
      auto self = shared_from_this();
      std::string key = keys::json(u->name, normal, version);
      std::string what = "the JSON API answer for \"" + normal + "\"" +
                         (version.empty() ? std::string() : " " + std::string(version));
      fetch_fn fetch = [self, up, key, url = *base + normal + "/" + suffix](
                           const std::optional<cache::entry>& existing) {
        return self->fetch_json(*up, url, key, existing);
      };
      auto page = co_await resolve(*u, std::move(key), std::move(what), std::move(fetch));
      if (!page.entry) {
        bool gone = page.entry.error().is(errc::not_found);
        co_await plain(ex, gone ? http::status::not_found : http::status::bad_gateway,
                       page.entry.error().message);
        co_return;
      }
      if (page.entry->status != 200) continue;  // a definitive 404/410: ask the next index
      co_await serve_json_api(ex, *page.entry, page.outcome, page.warning);
      co_return;
    }
    std::string list;
    for (const auto& a : asked)
      list += (list.empty() ? "" : ", ") + a;
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

  asio::awaitable<page_result> fetch_json(const config::pypi_upstream& u, std::string url,
                                          std::string key, std::optional<cache::entry> existing) {
    proxy::request req;
    req.url = std::move(url);
    req.headers.set(http::field::accept, "application/json");
    page_result done;
    auto got = co_await fetch_index(u, key, req, existing, done);
    if (!got) co_return done;
    const auto now = got->fresh.fetched_at;

    // Files become fetchable under the sha256 the answer gives, as from an index page. URLs are
    // stored root-relative and made absolute for each client (see serve_json_api).
    std::vector<std::pair<std::string, cache::entry>> file_entries;
    auto json = rewrite_json_api(got->body, got->url, [&](const json_api_file& f) -> std::string {
      std::optional<cache::digest> sha;
      if (f.sha256) {
        if (auto d = cache::digest::parse_hex(*f.sha256)) sha = *d;
      }
      std::string path = register_file(u, f.url, f.filename, sha, f.size, now, file_entries);
      return path.empty() ? f.url : path;
    });
    if (!json) {
      co_return stale_or(
          u, existing,
          error(errc::io_error, "index " + u.name + " sent a JSON API answer (" + req.url +
                                    ") that pantry cannot read: " + json.error().message));
    }
    cache::entry e = got->fresh;
    auto stored = co_await off_thread([&]() -> result<void> {
      auto d = store_->put_blob(std::as_bytes(std::span(*json)), "application/json");
      if (!d) return d.error();
      e.attributes.emplace_back(std::string(kAttrJson), d->str());
      file_entries.emplace_back(key, e);
      return store_->put_entries(file_entries);
    });
    if (!stored) co_return storage_failure(key, stored.error());
    co_return page_result{e, cache_outcome::miss, {}};
  }

  // "http://<Host>" (https when a fronting proxy says X-Forwarded-Proto: https), or "" when the
  // request has no Host a URL may carry.
  static std::string origin_of(const exchange& ex) {
    std::string_view host;
    for (auto v : ex.header_values(http::field::host))
      host = v;
    bool ok = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    });
    if (!ok) return {};
    auto proto = ex.request().find("X-Forwarded-Proto");
    bool https = proto != ex.request().end() && proto->value() == "https";
    return std::string(https ? "https://" : "http://") + std::string(host);
  }

  asio::awaitable<void> serve_json_api(exchange& ex, const cache::entry& e, cache_outcome outcome,
                                       const std::string& warning) {
    auto d = cache::digest::parse(e.attribute(kAttrJson));
    auto stored = d ? read_blob_text(e.attribute(kAttrJson)) : result<std::string>(d.error());
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
    if (auto info = store_->stat_blob(*d)) stored_at = info->created;
    res.set(http::field::last_modified, http_date(stored_at));
    res.set(http::field::cache_control, "max-age=" + std::to_string(cfg_.index_ttl.count()));
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

  // ---- /files/ ----

  asio::awaitable<void> handle_files(exchange& ex) {
    ex.set_route("pypi_files");
    const auto& req = ex.request();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      co_await plain(ex, http::status::method_not_allowed, "files answer GET and HEAD only");
      co_return;
    }
    auto loc = parse_file_path(req.target());
    if (!loc) {
      co_await plain(ex, http::status::bad_request, loc.error().message);
      co_return;
    }
    const auto* u = find_upstream(loc->upstream);
    if (!u) {
      co_await plain(ex, http::status::not_found,
                     "\"" + loc->upstream + "\" is not a configured PyPI upstream");
      co_return;
    }
    const std::string key = keys::file(u->name, loc->location);
    auto e = store_->get_entry(key);
    if (!e) {
      co_await plain(ex, http::status::not_found,
                     std::string(req.target()) +
                         " is not a file that an index page served by pantry listed; pantry "
                         "fetches only listed files: ask for the project's /simple/ page first");
      co_return;
    }
    if (!e->attribute(kAttrGenerate).empty() && !e->target) {
      co_await serve_generated_metadata(ex, *u, key, *e);
      co_return;
    }
    if (!e->target) {
      co_await plain(ex, http::status::not_found,
                     "no verifiable file at " + std::string(req.target()));
      co_return;
    }
    co_await serve_file(ex, *u, *e);
  }

  asio::awaitable<void> serve_file(exchange& ex, const config::pypi_upstream& u,
                                   const cache::entry& e) {
    const cache::digest id = *e.target;
    if (auto reader = store_->open_blob(id)) {
      ex.set_outcome(cache_outcome::hit);
      co_await serve_blob(ex, *reader, e.content_type);
      co_return;
    }
    if (cfg_.offline) {
      co_await plain(ex, http::status::not_found,
                     "the file " + id.str() + " is not cached and pypi.offline is true");
      co_return;
    }
    proxy::fetch_spec spec;
    spec.req.url = std::string(e.attribute(kAttrUrl));
    spec.req.headers.set(http::field::accept_encoding, "identity");
    spec.req.tls.ca_file = u.ca_file;
    spec.id = id;
    spec.media_type = e.content_type;
    spec.size = detail::recorded_size(e);
    bool joined = false;
    auto fl = flights_->join(spec, co_await asio::this_coro::executor, joined);
    if (!joined) {
      metrics_->add("pantry_upstream_requests_total", {{"upstream", u.name}}, 1,
                    "Requests pantry sent upstream");
    }
    ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
    const detail::error_responder on_error = [](exchange& x, http::status s,
                                                std::string message) -> asio::awaitable<void> {
      co_await plain(x, s, std::move(message));
    };
    const http::fields no_extra;
    co_await detail::stream_flight(ex, fl, *store_, id, e.content_type, no_extra, on_error);
  }

  // A wheel's METADATA that upstream does not offer: made from the cached wheel (fetched first
  // if needed) and cached itself.
  asio::awaitable<void> serve_generated_metadata(exchange& ex, const config::pypi_upstream& u,
                                                 const std::string& key, cache::entry e) {
    const std::string wheel_key = keys::file_of_metadata(key);
    auto we = store_->get_entry(wheel_key);
    if (!we || !we->target) {
      co_await plain(ex, http::status::not_found, "the wheel of " + key + " is not listed");
      co_return;
    }
    auto wheel = store_->open_blob(*we->target);
    if (!wheel && !cfg_.offline) {
      proxy::fetch_spec spec;
      spec.req.url = std::string(we->attribute(kAttrUrl));
      spec.req.headers.set(http::field::accept_encoding, "identity");
      spec.req.tls.ca_file = u.ca_file;
      spec.id = *we->target;
      spec.media_type = we->content_type;
      bool joined = false;
      auto fl = flights_->join(spec, co_await asio::this_coro::executor, joined);
      std::vector<std::byte> buf(kCopyBuffer);
      std::uint64_t offset = 0;
      for (;;) {
        auto n = co_await fl.read(offset, buf);
        if (!n) {
          co_await plain(ex, http::status::bad_gateway, n.error().message);
          co_return;
        }
        if (*n == 0) break;
        offset += *n;
      }
      wheel = store_->open_blob(*we->target);
    }
    if (!wheel) {
      co_await plain(ex, http::status::not_found, wheel.error().message);
      co_return;
    }
    std::string url(we->attribute(kAttrUrl));
    std::string filename = url.substr(url.rfind('/') + 1);
    auto made = co_await off_thread([&]() -> result<cache::digest> {
      byte_source src;
      src.size = wheel->size();
      src.read_at = [&](std::uint64_t offset, std::span<std::byte> out) {
        return wheel->read(offset, out);
      };
      auto text = extract_wheel_metadata(src, filename);
      if (!text) return text.error();
      auto d = store_->put_blob(std::as_bytes(std::span(*text)), e.content_type);
      if (!d) return d.error();
      e.target = *d;
      if (auto put = store_->put_entry(key, e); !put) return put.error();
      return *d;
    });
    if (!made) {
      co_await plain(ex, http::status::bad_gateway, made.error().message);
      co_return;
    }
    auto reader = store_->open_blob(*made);
    if (!reader) {
      co_await plain(ex, http::status::service_unavailable, reader.error().message);
      co_return;
    }
    ex.set_outcome(cache_outcome::miss);
    co_await serve_blob(ex, *reader, e.content_type);
  }

  const config::pypi_config cfg_;
  const std::shared_ptr<cache::store> store_;
  const std::shared_ptr<proxy::client> upstream_;
  const std::shared_ptr<proxy::flight_table> flights_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const asio::any_io_executor blocking_;
  coalescer<page_result> pages_;
};

}  // namespace

std::shared_ptr<service> service::create(const config::pypi_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         asio::any_io_executor blocking) {
  return std::make_shared<service_impl>(cfg, std::move(store), std::move(upstream),
                                        std::move(flights), std::move(metrics),
                                        std::move(blocking));
}

}  // namespace pantry::registry::pypi
