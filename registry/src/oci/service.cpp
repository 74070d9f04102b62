#include "pantry/registry/oci/service.h"

#include "pantry/registry/oci/protocol.h"

#include "../http_serve.h"
#include "hosted.h"
#include "keys.h"
#include "pantry_auth.h"
#include "respond.h"
#include "upstream_auth.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>

namespace pantry::registry::oci {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

constexpr std::size_t kMaxTagList = 16 << 20;

// Where a request's repository name goes.
struct target {
  upstream_auth* up = nullptr;  // null: hosted
  std::string repo;             // the name upstream, or in hosted storage
  std::string key_prefix;       // the repository key of its cache keys (keys.h)
};

struct manifest_answer {
  std::optional<cache::entry> entry;  // the stored manifest (target set)
  http::status status = http::status::ok;
  std::string code;
  std::string message;
  std::string retry_after;
  bool upstream_failed = false;  // a failure a cached copy may stand in for (5xx, 429, network)
};

class service_impl final : public service, public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::oci_config& cfg, std::shared_ptr<cache::store> store,
               std::shared_ptr<proxy::client> upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking)
      : cfg_(cfg),
        store_(std::move(store)),
        flights_(std::move(flights)),
        metrics_(std::move(metrics)),
        blocking_(std::move(blocking)),
        auth_(cfg_.hosted),
        hosted_(cfg_.hosted, store_, blocking_, auth_,
                [this](std::string_view name) -> std::optional<std::string> {
                  auto t = resolve(name, "");
                  if (!t || t->up == nullptr) return std::nullopt;
                  // What an upstream's credentials pulled is only for clients that log in; a
                  // hosted repository anyone may pull from does not get it by a mount.
                  if (!t->up->upstream().username.empty() && !cfg_.hosted.pull_auth) {
                    return std::nullopt;
                  }
                  return t->key_prefix;
                }) {
    for (const auto& u : cfg_.upstreams) {
      upstreams_.emplace(u.name, std::make_unique<upstream_auth>(u, upstream, metrics_));
    }
  }

  void install(proxy::server& srv) override {
    auto self = shared_from_this();
    srv.route("/v2/", [self](exchange& ex) { return self->handle(ex); });
    srv.route("/v2", [self](exchange& ex) { return self->handle(ex); });
    srv.route("/auth/token", [self](exchange& ex) {
      ex.set_route("oci_token");
      return self->auth_.handle_token(ex);
    });
  }

 private:
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> off_thread(F f) {
    return detail::off_thread(blocking_, std::move(f));
  }

  // A parse error's message starts with the spec's code.
  static asio::awaitable<void> parse_error(exchange& ex, const error& e) {
    const std::string& m = e.message;
    auto space = m.find(' ');
    std::string code = m.substr(0, space);
    std::string text = space == std::string::npos ? m : m.substr(space + 1);
    auto status = code == "NOT_FOUND" ? http::status::not_found : http::status::bad_request;
    if (code == "NOT_FOUND") code = "NAME_UNKNOWN";
    co_await oci_error(ex, status, code, text);
  }

  // Which upstream (or hosted storage) a name belongs to.
  result<target> resolve(std::string_view name, std::string_view ns) {
    target t;
    std::string repo(name);
    upstream_auth* up = nullptr;
    if (!ns.empty()) {
      auto it = upstreams_.find(ns);
      if (it == upstreams_.end()) {
        return error(errc::not_found, "?ns=" + std::string(ns) +
                                          " names no upstream in oci.upstreams; configure it");
      }
      up = it->second.get();
    } else if (!cfg_.hosted.prefix.empty() && repo.starts_with(cfg_.hosted.prefix)) {
      t.repo = repo;
      t.key_prefix = keys::hosted_repo(repo);
      return t;
    } else {
      auto slash = repo.find('/');
      if (slash != std::string::npos) {
        if (auto it = upstreams_.find(repo.substr(0, slash)); it != upstreams_.end()) {
          up = it->second.get();
          repo = repo.substr(slash + 1);
        }
      }
      if (up == nullptr) up = upstreams_.at(cfg_.default_upstream).get();
    }
    // Docker Hub keeps its official images under library/.
    if (up->upstream().name == "docker.io" && repo.find('/') == std::string::npos) {
      repo = "library/" + repo;
    }
    t.up = up;
    t.repo = repo;
    t.key_prefix = keys::proxied_repo(up->upstream().name, repo);
    return t;
  }

  asio::awaitable<void> handle(exchange& ex) {
    const auto& req = ex.request();
    const std::string path = detail::path_of(req.target());
    auto api = parse_api_path(path);
    if (!api) {
      ex.set_route("oci");
      co_await parse_error(ex, api.error());
      co_return;
    }
    if (api->kind == api_kind::ping) {
      ex.set_route("oci_ping");
      co_await ping(ex);
      co_return;
    }
    if (api->kind == api_kind::catalog) {
      ex.set_route("oci");
      co_await oci_error(ex, http::status::not_found, "UNSUPPORTED",
                         "pantry does not list repositories; ask for /v2/<name>/tags/list");
      co_return;
    }
    const std::string ns = query_param(req.target(), "ns");
    auto t = resolve(api->name, ns);
    if (!t) {
      ex.set_route("oci");
      co_await oci_error(ex, http::status::not_found, "NAME_UNKNOWN", t.error().message);
      co_return;
    }
    if (t->up == nullptr) {
      ex.set_route("oci_hosted");
      co_await hosted_.handle(ex, *api);
      co_return;
    }
    if (!t->up->upstream().username.empty()) {
      auto id = auth_.who(ex);
      if (id.user.empty()) {
        ex.set_route("oci");
        co_await auth_.challenge(ex, "repository:" + api->name + ":pull",
                                 api->name + " comes from " + t->up->upstream().name +
                                     " with pantry's credentials; log in to pantry as one of "
                                     "oci.hosted.users to pull it");
        co_return;
      }
    }
    const bool read = req.method() == http::verb::get || req.method() == http::verb::head;
    if (!read) {
      ex.set_route("oci");
      co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                         std::string(req.method_string()) + " " + path +
                             ": proxied repositories are read-only; push to a name under " +
                             cfg_.hosted.prefix);
      co_return;
    }
    switch (api->kind) {
      case api_kind::manifest:
        ex.set_route("oci_manifest");
        co_await handle_manifest(ex, *t, api->reference);
        break;
      case api_kind::blob:
        ex.set_route("oci_blob");
        co_await handle_blob(ex, *t, api->name, api->reference);
        break;
      case api_kind::tags:
        ex.set_route("oci_tags");
        co_await handle_tags(ex, *t, api->name);
        break;
      default:
        ex.set_route("oci");
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "uploads go to names under " + cfg_.hosted.prefix);
        break;
    }
  }

  asio::awaitable<void> ping(exchange& ex) {
    if (auth_.enabled()) {
      // As Docker Hub does: a client without a token is sent to the token endpoint, which gives
      // anonymous clients a pull token and checks a user's password, so `docker login` really
      // checks it.
      auto id = auth_.who(ex);
      if (id.user.empty() && (id.invalid || !has_bearer(ex))) {
        co_await auth_.challenge(ex, {},
                                 "log in with one of oci.hosted.users, or get an "
                                 "anonymous token from /auth/token");
        co_return;
      }
    }
    http::response<http::string_body> res{http::status::ok, 11};
    api_headers(res);
    res.set(http::field::content_type, "application/json");
    res.body() = "{}";
    res.prepare_payload();
    co_await ex.respond(std::move(res));
  }

  static bool has_bearer(const exchange& ex) {
    for (auto v : ex.header_values(http::field::authorization)) {
      if (v.starts_with("Bearer ") || v.starts_with("bearer ")) return true;
    }
    return false;
  }

  // ---- manifests ----

  asio::awaitable<void> answer_failure(exchange& ex, const manifest_answer& a) {
    http::fields extra;
    if (!a.retry_after.empty()) extra.set(http::field::retry_after, a.retry_after);
    co_await oci_error(ex, a.status, a.code, a.message, extra);
  }

  asio::awaitable<void> handle_manifest(exchange& ex, const target& t, const std::string& ref) {
    auto accept_lines = ex.header_values(http::field::accept);
    if (is_digest(ref)) {
      // Immutable: any cached copy serves, whatever the Accept.
      if (auto e = store_->get_entry(keys::manifest(t.key_prefix, ref)); e && e->target) {
        if (auto reader = store_->open_blob(*e->target)) {
          ex.set_outcome(cache_outcome::hit);
          co_await serve_manifest(ex, *reader, *e, false);
          co_return;
        }
      }
      bool joined = false;
      auto a = co_await fetch_manifest(t, ref, accept_lines, joined);
      ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
      if (!a.entry) {
        co_await answer_failure(ex, a);
        co_return;
      }
      co_await serve_manifest(ex, *store_, *a.entry, false);
      co_return;
    }
    const std::string key = keys::tag(t.key_prefix, ref);
    auto cached = store_->get_entry(key);
    // The cached manifest, if this client accepts its type; kept open (so never evicted) while
    // upstream is asked about it.
    std::optional<cache::blob_reader> reader;
    if (cached && cached->target && accepts(accepted_types(accept_lines), cached->content_type)) {
      if (auto r = store_->open_blob(*cached->target)) reader = std::move(*r);
    }
    const bool usable = reader.has_value();
    if (usable && !cached->expired()) {
      ex.set_outcome(cache_outcome::hit);
      co_await serve_manifest(ex, *reader, *cached, true);
      co_return;
    }
    if (usable) {
      // Past tag_ttl: a HEAD tells whether the tag still points at the cached digest (and
      // Docker Hub does not count HEADs against its pull limit).
      bool joined = false;
      auto check = co_await revalidate(t, ref, accept_lines, *cached, joined);
      if (check.entry && check.entry->target == cached->target) {
        ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::revalidated);
        co_await serve_manifest(ex, *reader, *check.entry, true);
        co_return;
      }
      if (check.upstream_failed) {
        ex.set_outcome(cache_outcome::stale);
        co_await serve_manifest(ex, *reader, *cached, true, "stale: " + check.message);
        co_return;
      }
      if (!check.entry && check.status == http::status::not_found) {
        co_await answer_failure(ex, check);
        co_return;
      }
    }
    bool joined = false;
    auto a = co_await fetch_manifest(t, ref, accept_lines, joined);
    if (!a.entry) {
      if (usable && a.upstream_failed) {
        ex.set_outcome(cache_outcome::stale);
        co_await serve_manifest(ex, *reader, *cached, true, "stale: " + a.message);
        co_return;
      }
      co_await answer_failure(ex, a);
      co_return;
    }
    ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
    co_await serve_manifest(ex, *store_, *a.entry, true);
  }

  static http::fields accept_fields(const std::vector<std::string_view>& accept_lines) {
    http::fields h;
    for (auto v : accept_lines)
      h.insert(http::field::accept, v);
    if (accept_lines.empty()) h.set(http::field::accept, kAllManifests);
    return h;
  }

  // What an upstream's failure status means for the client.
  manifest_answer failure(const target& t, const std::string& what, const proxy::response& res,
                          std::string_view unknown_code) {
    return failure(t, what, res.status(), std::string(res.headers()[http::field::retry_after]),
                   unknown_code);
  }
  manifest_answer failure(const target& t, const std::string& what, unsigned s,
                          std::string retry_after, std::string_view unknown_code) {
    manifest_answer a;
    const std::string who = t.up->upstream().name + " (" + t.up->upstream().url + ")";
    if (s == 404) {
      a.status = http::status::not_found;
      a.code = std::string(unknown_code);
      a.message = who + " has no " + what;
    } else if (s == 401 || s == 403) {
      // Docker Hub answers 401 for a repository that does not exist.
      a.status = http::status::not_found;
      a.code = "NAME_UNKNOWN";
      a.message = who + " refused " + what + " (" + std::to_string(s) + "): the repository " +
                  t.repo + " does not exist or needs credentials";
    } else if (s == 429) {
      a.status = http::status::too_many_requests;
      a.code = "TOOMANYREQUESTS";
      a.message = who + " is rate-limiting pantry (429) for " + what;
      a.retry_after = std::move(retry_after);
      a.upstream_failed = true;
    } else {
      a.status = http::status::bad_gateway;
      a.code = "UNAVAILABLE";
      a.message = who + " answered " + std::to_string(s) + " for " + what;
      a.upstream_failed = s >= 500 || s == 408;
    }
    return a;
  }

  static manifest_answer unreachable(const error& e) {
    manifest_answer a;
    a.status = http::status::bad_gateway;
    a.code = "UNAVAILABLE";
    a.message = e.message;
    a.upstream_failed = true;
    return a;
  }

  // Asks upstream, once for every client that asks at the same time with the same Accept,
  // whether an expired tag still points at the cached manifest; if it does, the tag's entry is
  // renewed for another tag_ttl and returned.
  asio::awaitable<manifest_answer> revalidate(const target& t, const std::string& ref,
                                              const std::vector<std::string_view>& accept,
                                              const cache::entry& cached, bool& joined) {
    std::string key = "head " + t.key_prefix + " " + ref;
    for (auto v : accept) {
      key += '\n';
      key += v;
    }
    auto self = shared_from_this();
    http::fields headers = accept_fields(accept);
    std::function<asio::awaitable<manifest_answer>()> fn =
        [self, t, ref, headers, cached]() -> asio::awaitable<manifest_answer> {
      auto check = co_await self->head_manifest(t, ref, headers);
      if (check.entry && check.entry->target == cached.target) {
        cache::entry e = cached;
        e.fetched_at = clock::now();
        e.expires_at = e.fetched_at + self->cfg_.tag_ttl;
        const std::string k = keys::tag(t.key_prefix, ref);
        co_await self->off_thread([&] { return self->store_->put_entry(k, e); });
        check.entry = e;
      }
      co_return check;
    };
    auto a = co_await revalidations_.run(key, std::move(fn), joined);
    co_return a;
  }

  // HEAD of a tag upstream: the entry it returns has only target and content_type.
  asio::awaitable<manifest_answer> head_manifest(const target& t, const std::string& ref,
                                                 http::fields headers) {
    count_upstream(t);
    auto res = co_await t.up->send(http::verb::head, "/v2/" + t.repo + "/manifests/" + ref, t.repo,
                                   headers);
    if (!res) co_return unreachable(res.error());
    if (res->status() != 200) {
      co_return failure(t, "manifest " + t.repo + ":" + ref, *res, "MANIFEST_UNKNOWN");
    }
    auto d = cache::digest::parse(res->headers()["Docker-Content-Digest"]);
    manifest_answer a;
    if (!d) {
      // No digest in the answer: the HEAD cannot revalidate; a GET will.
      a.status = http::status::bad_gateway;
      a.code = "UNAVAILABLE";
      a.message = "no Docker-Content-Digest on HEAD";
      co_return a;
    }
    cache::entry e;
    e.target = *d;
    e.content_type = std::string(res->headers()[http::field::content_type]);
    a.entry = std::move(e);
    co_return a;
  }

  void count_upstream(const target& t) {
    metrics_->add("pantry_upstream_requests_total", {{"upstream", t.up->upstream().name}}, 1,
                  "Requests pantry sent upstream");
  }

  // Fetches a manifest (by tag or digest) once for every client that asks with the same Accept
  // at the same time, verifies it and stores it with its tag and what it references.
  asio::awaitable<manifest_answer> fetch_manifest(const target& t, const std::string& ref,
                                                  const std::vector<std::string_view>& accept,
                                                  bool& joined) {
    std::string key = "manifest " + t.key_prefix + " " + ref;
    for (auto v : accept) {
      key += '\n';
      key += v;
    }
    auto self = shared_from_this();
    http::fields headers = accept_fields(accept);
    std::function<asio::awaitable<manifest_answer>()> fn =
        [self, t, ref, headers]() -> asio::awaitable<manifest_answer> {
      auto a = co_await self->fetch_manifest_now(t, ref, headers);
      co_return a;
    };
    auto a = co_await manifests_.run(key, std::move(fn), joined);
    co_return a;
  }

  asio::awaitable<manifest_answer> fetch_manifest_now(target t, std::string ref,
                                                      http::fields headers) {
    const std::string what = "manifest " + t.repo + (is_digest(ref) ? "@" : ":") + ref;
    count_upstream(t);
    auto res = co_await t.up->send(http::verb::get, "/v2/" + t.repo + "/manifests/" + ref, t.repo,
                                   headers);
    if (!res) co_return unreachable(res.error());
    if (res->status() != 200) co_return failure(t, what, *res, "MANIFEST_UNKNOWN");
    auto body = co_await res->read_all(kMaxManifest);
    if (!body) co_return unreachable(body.error());
    const cache::digest got = cache::digest::of(*body);
    manifest_answer bad;
    bad.status = http::status::bad_gateway;
    bad.code = "MANIFEST_INVALID";
    bad.upstream_failed = true;
    if (is_digest(ref) && got.str() != ref) {
      bad.message = t.up->upstream().name + " sent a " + what + " whose sha256 is " + got.str() +
                    "; nothing was cached";
      co_return bad;
    }
    std::string claimed(res->headers()["Docker-Content-Digest"]);
    if (!claimed.empty() && claimed != got.str()) {
      bad.message = t.up->upstream().name + " sent " + what + " with Docker-Content-Digest " +
                    claimed + " but its sha256 is " + got.str() + "; nothing was cached";
      co_return bad;
    }
    std::string content_type(res->headers()[http::field::content_type]);
    auto refs = parse_manifest(*body, content_type);
    if (content_type.empty()) {
      content_type =
          refs && !refs->media_type.empty() ? refs->media_type : std::string(kOciManifest);
    }
    const auto now = clock::now();
    std::vector<std::pair<std::string, cache::entry>> entries;
    cache::entry m;
    m.target = got;
    m.content_type = content_type;
    m.fetched_at = now;
    m.expires_at = now + kForever;
    entries.emplace_back(keys::manifest(t.key_prefix, got.str()), m);
    if (!is_digest(ref)) {
      cache::entry tag = m;
      tag.expires_at = now + cfg_.tag_ttl;
      entries.emplace_back(keys::tag(t.key_prefix, ref), tag);
    }
    if (refs) {
      // What this repository's manifests reference may be served under its name.
      for (const auto& d : refs->blobs) {
        cache::entry b;
        b.target = d.digest;
        b.content_type = std::string(kBlobType);
        b.fetched_at = now;
        b.expires_at = now + kForever;
        b.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(d.size));
        entries.emplace_back(keys::blob(t.key_prefix, d.digest.str()), std::move(b));
      }
    } else {
      spdlog::warn("oci: {} from {}: {}; its blobs are checked upstream one by one", what,
                   t.up->upstream().name, refs.error().message);
    }
    auto stored = co_await off_thread([&]() -> result<void> {
      auto d = store_->put_blob(std::as_bytes(std::span(*body)), content_type);
      if (!d) return d.error();
      return store_->put_entries(entries);
    });
    if (!stored) {
      manifest_answer a;
      a.status = http::status::service_unavailable;
      a.code = "UNAVAILABLE";
      a.message = "cannot cache " + what + ": " + stored.error().message;
      co_return a;
    }
    manifest_answer a;
    a.entry = m;
    co_return a;
  }

  // ---- blobs ----

  asio::awaitable<void> handle_blob(exchange& ex, const target& t, const std::string& name,
                                    const std::string& ref) {
    const auto id = cache::digest::parse(ref).value();
    const std::string key = keys::blob(t.key_prefix, ref);
    auto known = store_->get_entry(key);
    if (!known) {
      // No manifest of this repository that pantry has seen references the blob: only the
      // upstream can say whether the repository has it.
      count_upstream(t);
      auto res =
          co_await t.up->send(http::verb::head, "/v2/" + t.repo + "/blobs/" + ref, t.repo, {});
      if (!res) {
        co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE",
                           "cannot ask " + t.up->upstream().name + " for blob " + ref + " of " +
                               name + ": " + res.error().message);
        co_return;
      }
      if (res->status() != 200) {
        auto a = failure(t, "blob " + ref + " in " + t.repo, *res, "BLOB_UNKNOWN");
        co_await answer_failure(ex, a);
        co_return;
      }
      cache::entry b;
      b.target = id;
      b.content_type = std::string(kBlobType);
      b.fetched_at = clock::now();
      b.expires_at = b.fetched_at + kForever;
      if (auto n = res->content_length()) {
        b.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(*n));
      }
      co_await off_thread([&] { return store_->put_entry(key, b); });
      known = b;
    }
    http::fields extra;
    api_headers(extra);
    extra.set("Docker-Content-Digest", ref);
    if (auto reader = store_->open_blob(id)) {
      ex.set_outcome(cache_outcome::hit);
      const std::string blob_type(kBlobType);
      co_await detail::serve_blob(ex, *reader, blob_type, extra);
      co_return;
    }
    const std::optional<std::uint64_t> size = detail::recorded_size(*known);
    if (ex.request().method() == http::verb::head && size) {
      // A HEAD needs no download: the size is known from the manifest or upstream's HEAD.
      http::response_header<> h;
      h.version(11);
      h.result(http::status::ok);
      for (const auto& f : extra)
        h.set(f.name_string(), f.value());
      h.set(http::field::content_type, kBlobType);
      ex.set_outcome(cache_outcome::miss);
      if (co_await ex.begin(std::move(h), *size)) co_return;
      co_await ex.end();
      co_return;
    }
    proxy::flight fl;
    // Twice at most: a token the upstream refuses before it should expire (a revoked or
    // rotated key) is renewed once.
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto auth = co_await t.up->authorization(t.repo);
      if (!auth) {
        co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", auth.error().message);
        co_return;
      }
      proxy::fetch_spec spec;
      spec.req.url = t.up->upstream().url + "/v2/" + t.repo + "/blobs/" + ref;
      spec.req.headers.set(http::field::accept_encoding, "identity");
      if (!auth->empty()) spec.req.headers.set(http::field::authorization, *auth);
      spec.req.tls.ca_file = t.up->upstream().ca_file;
      spec.req.authorization_on_redirect = false;
      spec.id = id;
      spec.media_type = std::string(kBlobType);
      spec.size = size;
      bool joined = false;
      fl = flights_->join(spec, co_await asio::this_coro::executor, joined);
      if (!joined) count_upstream(t);
      ex.set_outcome(joined ? cache_outcome::coalesced : cache_outcome::miss);
      auto head = co_await fl.wait_head();
      if (head) break;
      const auto refusal = fl.refusal();
      if (refusal.status == 401 && attempt == 0 && !auth->empty()) {
        t.up->forget_token(t.repo);
        continue;
      }
      // 404 and 5xx keep the flight's own message (502 or 404, below); 401 and 429 mean what
      // they mean for manifests.
      if (refusal.status != 401 && refusal.status != 403 && refusal.status != 429) break;
      auto a = failure(t, "blob " + ref + " in " + t.repo, refusal.status, refusal.retry_after,
                       "BLOB_UNKNOWN");
      co_await answer_failure(ex, a);
      co_return;
    }
    detail::error_responder on_error = [](exchange& x, http::status s,
                                          std::string message) -> asio::awaitable<void> {
      std::string code = s == http::status::not_found ? "BLOB_UNKNOWN" : "UNAVAILABLE";
      co_await oci_error(x, s, code, message);
    };
    const std::string blob_type(kBlobType);
    co_await detail::stream_flight(ex, fl, *store_, id, blob_type, extra, on_error);
  }

  // ---- tags ----

  asio::awaitable<void> handle_tags(exchange& ex, const target& t, const std::string& name) {
    std::string query;
    for (std::string_view p : {"n", "last"}) {
      std::string v = query_param(ex.request().target(), p);
      if (v.empty()) continue;
      query += query.empty() ? '?' : '&';
      query += std::string(p) + "=" + v;
    }
    count_upstream(t);
    http::fields headers;
    headers.set(http::field::accept, "application/json");
    auto res = co_await t.up->send(http::verb::get, "/v2/" + t.repo + "/tags/list" + query, t.repo,
                                   headers);
    if (!res) {
      co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", res.error().message);
      co_return;
    }
    if (res->status() != 200) {
      auto a = failure(t, "tag list of " + t.repo, *res, "NAME_UNKNOWN");
      co_await answer_failure(ex, a);
      co_return;
    }
    auto body = co_await res->read_all(kMaxTagList);
    if (!body) {
      co_await oci_error(ex, http::status::bad_gateway, "UNAVAILABLE", body.error().message);
      co_return;
    }
    http::response<http::string_body> out{http::status::ok, 11};
    api_headers(out);
    out.set(http::field::content_type, "application/json");
    // The next page's link names the repository as the client does.
    std::string link(res->headers()[http::field::link]);
    if (auto p = link.find("last="); p != std::string::npos) {
      std::string last = link.substr(p + 5, link.find_first_of("&>", p + 5) - (p + 5));
      std::string n = query_param(ex.request().target(), "n");
      std::string next = "</v2/" + name + "/tags/list?";
      if (!n.empty()) next += "n=" + n + "&";
      next += "last=" + last + ">; rel=\"next\"";
      out.set(http::field::link, next);
    }
    // The spec wants lexical order; docker-registry sends its storage's order.
    boost::system::error_code ec;
    auto doc = boost::json::parse(*body, ec);
    if (!ec && doc.is_object() && doc.as_object().contains("tags") &&
        doc.as_object()["tags"].is_array()) {
      auto& tags = doc.as_object()["tags"].as_array();
      std::vector<std::string> names;
      for (const auto& t : tags) {
        if (t.is_string()) names.emplace_back(t.get_string());
      }
      std::sort(names.begin(), names.end());
      // An upstream that ignores n and last (docker-registry 2.x) is paged here.
      const std::string last = query_param(ex.request().target(), "last");
      if (!last.empty()) {
        names.erase(names.begin(), std::upper_bound(names.begin(), names.end(), last));
      }
      std::size_t n = names.size();
      const std::string n_text = query_param(ex.request().target(), "n");
      std::from_chars(n_text.data(), n_text.data() + n_text.size(), n);
      if (names.size() > n && out.find(http::field::link) == out.end()) {
        names.resize(n);
        if (!names.empty()) {
          out.set(http::field::link, "</v2/" + name + "/tags/list?n=" + std::to_string(n) +
                                         "&last=" + names.back() + ">; rel=\"next\"");
        }
      }
      tags.clear();
      for (auto& t : names)
        tags.emplace_back(t);
      out.body() = boost::json::serialize(doc);
    } else {
      out.body() = std::move(*body);
    }
    out.prepare_payload();
    co_await ex.respond(std::move(out));
  }

  const config::oci_config cfg_;
  const std::shared_ptr<cache::store> store_;
  const std::shared_ptr<proxy::flight_table> flights_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const asio::any_io_executor blocking_;
  std::map<std::string, std::unique_ptr<upstream_auth>, std::less<>> upstreams_;
  const pantry_auth auth_;
  hosted_repos hosted_;
  detail::coalescer<manifest_answer> manifests_;
  detail::coalescer<manifest_answer> revalidations_;
};

}  // namespace

std::shared_ptr<service> service::create(const config::oci_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         boost::asio::any_io_executor blocking) {
  return std::make_shared<service_impl>(cfg, std::move(store), std::move(upstream),
                                        std::move(flights), std::move(metrics),
                                        std::move(blocking));
}

}  // namespace pantry::registry::oci
