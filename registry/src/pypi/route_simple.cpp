// /simple/<project>/: a project's page, from the index cache, in the representation the client
// accepts.

#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/simple.h"

#include "keys.h"
#include "routes.h"

#include <map>
#include <unordered_map>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using detail::http_date;
using detail::not_modified;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

simple_route::simple_route(std::shared_ptr<const context> ctx, std::shared_ptr<index_cache> index,
                           std::shared_ptr<hosted_route> hosted)
    : ctx_(ctx),
      index_(index),
      hosted_(hosted),
      list_(std::make_shared<project_list>(ctx, index, hosted)) {}

asio::awaitable<void> simple_route::handle(exchange& ex) {
  ex.set_route("pypi_simple");
  const auto& req = ex.request();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    co_await plain(ex, http::status::method_not_allowed,
                   "the simple index answers GET and HEAD only", {});
    co_return;
  }
  std::string path = detail::path_of(req.target());
  if (path == "/simple") {
    co_await redirect(ex, "/simple/");
    co_return;
  }
  std::string_view rest = std::string_view(path).substr(std::string_view("/simple/").size());
  if (rest.empty()) {
    co_await list_->serve(ex);
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
    co_await not_acceptable(ex);
    co_return;
  }

  // A hosted project shadows every upstream's project of that name (dependency confusion).
  auto hosted = hosted_->find(normal);
  if (!hosted) {
    co_await plain(ex, http::status::service_unavailable,
                   "cannot read hosted project \"" + normal + "\": " + hosted.error().message);
    co_return;
  }
  if (*hosted && !hosted_route::merges(*(*hosted)->index, normal)) {
    ex.set_outcome(cache_outcome::hit);
    co_await hosted_->serve_page(ex, **hosted, *chosen);
    co_return;
  }
  if (*hosted) {
    co_await serve_merged(ex, std::move(**hosted), normal, *chosen);
    co_return;
  }

  std::vector<std::string> asked;
  if (const auto* owner = ctx_->hosted_upstream()) {
    auto said = co_await ask_owner(normal);
    asked.push_back(owner->name);
    if (said.verdict.says == owner_verdict::kind::unknown) {
      co_await plain(ex, http::status::bad_gateway, std::move(said.verdict.why));
      co_return;
    }
    if (said.verdict.says == owner_verdict::kind::hosted) {
      co_await serve_page(ex, *said.page.entry, *chosen, said.page.outcome, said.page.warning);
      co_return;
    }
  }
  for (const auto* u : ctx_->upstreams_for(normal)) {
    auto page = co_await resolve_page(*u, normal);
    asked.push_back(u->name);
    if (!page.entry) {
      // Never fall through on an error: a private name must not be answered by a later index.
      // Named, not a temporary of the co_await expression (CONTRIBUTING.md).
      const error why = page.entry.error();
      co_await index_failure(ex, why);
      co_return;
    }
    if (page.entry->status != 200) continue;  // a definitive 404/410: ask the next index
    co_await serve_page(ex, *page.entry, *chosen, page.outcome, page.warning);
    co_return;
  }
  const std::string list = join_names(asked);
  co_await plain(ex, http::status::not_found,
                 "project \"" + normal + "\" is not on any index pantry asked (" + list + ")");
}

asio::awaitable<void> simple_route::serve_merged(exchange& ex, hosted_route::found f,
                                                 std::string project, negotiated chosen) {
  // The upstreams' page as pantry stored it (JSON, its file links already pantry's /files/
  // paths), read back; the first upstream that has the project, as for any page.
  std::optional<project_page> upstream;
  cache_outcome outcome = cache_outcome::hit;
  for (const auto* u : ctx_->upstreams_for(project)) {
    auto page = co_await resolve_page(*u, project);
    if (!page.entry) {
      const error why = page.entry.error();
      co_await index_failure(ex, why);
      co_return;
    }
    if (page.entry->status != 200) continue;
    outcome = page.outcome;
    auto text = read_blob_text(*ctx_->store, page.entry->attribute(kAttrJson));
    auto parsed =
        text ? parse_project_json(*text, std::string(kMergeBase) + "/simple/" + project + "/")
             : result<project_page>(text.error());
    if (!parsed) {
      const std::string why = "the cached page of \"" + project + "\" of " + u->name +
                              " cannot be read (" + parsed.error().message + "); retry";
      co_await plain(ex, http::status::service_unavailable, why);
      co_return;
    }
    upstream = std::move(*parsed);
    break;
  }
  if (upstream) {
    // Back to the paths pantry wrote.
    for (auto& file : upstream->files) {
      if (file.url.starts_with(kMergeBase)) file.url.erase(0, kMergeBase.size());
    }
  }
  ex.set_outcome(outcome);
  co_await hosted_->serve_page(ex, f, chosen, upstream ? &*upstream : nullptr);
}

asio::awaitable<index_cache::answer> simple_route::resolve_page(const config::pypi_upstream& u,
                                                                std::string project) {
  const config::pypi_upstream* up = &u;
  auto self = shared_from_this();
  index_cache::fetch_fn fetch = [self, up, project](const std::optional<cache::entry>& existing) {
    return self->fetch_page(*up, project, existing);
  };
  std::string key = keys::page(u.name, project);
  std::string what = "project \"" + project + "\"";
  co_return co_await index_->resolve(u, std::move(key), std::move(what), std::move(fetch));
}

asio::awaitable<simple_route::owner_answer> simple_route::ask_owner(std::string project) {
  const auto* owner = ctx_->hosted_upstream();
  if (owner == nullptr) {
    owner_answer none{{owner_verdict::kind::not_hosted, {}}, {error(errc::not_found, ""), {}, {}}};
    co_return none;
  }
  auto page = co_await resolve_page(*owner, project);
  owner_answer a{judge_owner(*owner, project, page.entry, page.warning), std::move(page)};
  co_return a;
}

namespace {

// Stores `body` (and its gzip) as blobs named `name` and `name`.gz in `e`'s attributes.
result<void> put_representation(cache::store& store, cache::entry& e, std::string_view name,
                                const std::string& body, std::string_view type) {
  auto d = store.put_blob(std::as_bytes(std::span(body)), std::string(type));
  if (!d) return d.error();
  e.attributes.emplace_back(std::string(name), d->str());
  std::string gz = gzip(body);
  if (!gz.empty()) {
    auto dz = store.put_blob(std::as_bytes(std::span(gz)), std::string(type));
    if (!dz) return dz.error();
    e.attributes.emplace_back(std::string(name) + ".gz", dz->str());
  }
  return {};
}

}  // namespace

asio::awaitable<index_cache::answer> simple_route::fetch_page(
    const config::pypi_upstream& u, std::string project, std::optional<cache::entry> existing) {
  const std::string key = keys::page(u.name, project);
  proxy::request req;
  req.url = u.url + project + "/";
  req.headers.set(http::field::accept, kUpstreamAccept);
  auto got = co_await index_->fetch(u, key, req, existing);
  if (auto* settled = std::get_if<index_cache::answer>(&got)) co_return std::move(*settled);
  auto& reply = std::get<index_cache::fetched>(got);
  const auto now = reply.fresh.fetched_at;

  bool is_json = reply.content_type.find("json") != std::string::npos;
  auto page = is_json ? parse_project_json(reply.body, reply.url)
                      : parse_project_html(reply.body, reply.url);
  if (!page) {
    co_return index_->upstream_failed(
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

  cache::entry e = reply.fresh;
  cache::store& store = *ctx_->store;
  auto stored = co_await detail::off_thread(ctx_->blocking, [&]() -> result<void> {
    if (auto r = put_representation(store, e, kAttrHtml, html, kContentTypeHtml); !r) return r;
    if (auto r = put_representation(store, e, kAttrJson, json, kContentTypeJson); !r) return r;
    file_entries.emplace_back(key, e);
    return store.put_entries(file_entries);
  });
  if (!stored) co_return index_cache::storage_failure(key, stored.error());
  co_return index_cache::stored(std::move(e));
}

asio::awaitable<void> simple_route::serve_page(exchange& ex, const cache::entry& e,
                                               const negotiated& chosen, cache_outcome outcome,
                                               std::string_view warning) {
  std::string_view name = chosen.rep == representation::json ? kAttrJson : kAttrHtml;
  bool gz = false;
  std::string gz_name = std::string(name) + ".gz";
  std::string_view digest_text = e.attribute(name);
  if (accepts_gzip(ex) && !e.attribute(gz_name).empty()) {
    digest_text = e.attribute(gz_name);
    gz = true;
  }
  auto d = cache::digest::parse(digest_text);
  auto reader = d ? ctx_->store->open_blob(*d) : result<cache::blob_reader>(d.error());
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
  h.set(http::field::cache_control, "max-age=" + std::to_string(ctx_->cfg.index_ttl.count()));
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

}  // namespace pantry::registry::pypi
