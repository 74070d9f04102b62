#include "pantry/registry/oci/service.h"

#include "pantry/proxy/reconfigurable.h"
#include "pantry/registry/oci/protocol.h"

#include "../http_serve.h"
#include "hosted.h"
#include "keys.h"
#include "pantry_auth.h"
#include "proxied.h"
#include "respond.h"
#include "upstream_auth.h"

#include <atomic>
#include <memory>

namespace pantry::registry::oci {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using proxy::exchange;

// The pull-through side, pantry's auth and the manifests route, made from one config. A request
// holds the state it started with for as long as it runs, so a reload never changes the
// settings (or the upstream a target points into) under it.
struct oci_state {
  oci_state(const config::oci_config& cfg, const std::shared_ptr<cache::store>& store,
            const std::shared_ptr<proxy::client>& upstream,
            std::shared_ptr<proxy::flight_table> flights,
            std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
            std::string control_token)
      : ctx(std::make_shared<proxied_context>(cfg, store, upstream, std::move(flights),
                                              std::move(metrics), std::move(blocking))),
        auth(std::make_shared<const pantry_auth>(cfg.hosted, std::move(control_token))),
        manifests(std::make_shared<proxied_manifests>(ctx)) {}

  const config::oci_config& cfg() const { return ctx->cfg; }

  const std::shared_ptr<const proxied_context> ctx;
  const std::shared_ptr<const pantry_auth> auth;
  const std::shared_ptr<proxied_manifests> manifests;
};

class service_impl final : public service,
                           public proxy::reconfigurable,
                           public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::oci_config& cfg, std::shared_ptr<cache::store> store,
               std::shared_ptr<proxy::client> upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
               std::string control_token)
      : store_(std::move(store)),
        upstream_(std::move(upstream)),
        flights_(std::move(flights)),
        metrics_(std::move(metrics)),
        blocking_(std::move(blocking)),
        control_token_(std::move(control_token)),
        hosted_(
            cfg.hosted.prefix, store_, blocking_,
            [this] {
              auto st = state_.load();
              return hosted_repos::access{st->auth, st->cfg().hosted.pull_auth};
            },
            [this](std::string_view name) -> std::optional<std::string> {
              auto st = state_.load();
              auto t = resolve(*st, name, "");
              if (!t || t->up == nullptr) return std::nullopt;
              // What an upstream's credentials pulled is only for clients that log in; a
              // hosted repository anyone may pull from does not get it by a mount.
              if (!t->up->upstream().username.empty() && !st->cfg().hosted.pull_auth) {
                return std::nullopt;
              }
              return t->key_prefix;
            },
            [this](std::string_view upstream) {
              auto st = state_.load();
              auto it = st->ctx->upstreams.find(upstream);
              if (it == st->ctx->upstreams.end()) return false;
              return it->second->upstream().username.empty() || st->cfg().hosted.pull_auth;
            }) {
    state_.store(make_state(cfg));
  }

  void install(proxy::server& srv) override {
    auto self = shared_from_this();
    srv.route("/v2/", [self](exchange& ex) { return self->handle(ex); });
    srv.route("/v2", [self](exchange& ex) { return self->handle(ex); });
    srv.route("/auth/token", [self](exchange& ex) { return self->token(ex); });
  }

  // oci.hosted.prefix stays what it was at start (config/reload.h): hosted_ holds it.
  void reconfigure(const config::config& cfg) override { state_.store(make_state(cfg.oci)); }

 private:
  // A parse error's message starts with the spec's code.
  static asio::awaitable<void> parse_error(exchange& ex, const error& e) {
    const std::string& m = e.message;
    auto space = m.find(' ');
    std::string code = m.substr(0, space);
    std::string text = space == std::string::npos ? m : m.substr(space + 1);
    const bool unknown = code == "NOT_FOUND" || code == "MANIFEST_UNKNOWN";
    auto status = unknown ? http::status::not_found : http::status::bad_request;
    if (code == "NOT_FOUND") code = "NAME_UNKNOWN";
    co_await oci_error(ex, status, code, text);
  }

  // Which upstream (or hosted storage) a name belongs to.
  static result<target> resolve(const oci_state& st, std::string_view name, std::string_view ns) {
    const config::oci_config& cfg = st.cfg();
    target t;
    std::string repo(name);
    upstream_auth* up = nullptr;
    const auto& upstreams = st.ctx->upstreams;
    if (!ns.empty()) {
      auto it = upstreams.find(ns);
      if (it == upstreams.end()) {
        return error(errc::not_found, "?ns=" + std::string(ns) +
                                          " names no upstream in oci.upstreams; configure it");
      }
      up = it->second.get();
    } else if (!cfg.hosted.prefix.empty() && repo.starts_with(cfg.hosted.prefix)) {
      t.repo = repo;
      t.key_prefix = keys::hosted_repo(repo);
      return t;
    } else {
      auto slash = repo.find('/');
      if (slash != std::string::npos) {
        if (auto it = upstreams.find(repo.substr(0, slash)); it != upstreams.end()) {
          up = it->second.get();
          repo = repo.substr(slash + 1);
        }
      }
      if (up == nullptr) up = upstreams.at(cfg.default_upstream).get();
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

  std::shared_ptr<const oci_state> make_state(const config::oci_config& cfg) const {
    return std::make_shared<const oci_state>(cfg, store_, upstream_, flights_, metrics_, blocking_,
                                             control_token_);
  }

  asio::awaitable<void> token(exchange& ex) {
    ex.set_route("oci_token");
    auto st = state_.load();
    co_await st->auth->handle_token(ex);
  }

  asio::awaitable<void> handle(exchange& ex) {
    // Held until the request ends: the target below points into it.
    const auto st = state_.load();
    const pantry_auth& auth = *st->auth;
    const config::oci_config& cfg = st->cfg();
    const auto& req = ex.request();
    const std::string path = detail::path_of(req.target());
    auto api =
        parse_api_path(path, req.method() == http::verb::get || req.method() == http::verb::head);
    if (!api) {
      ex.set_route("oci");
      co_await parse_error(ex, api.error());
      co_return;
    }
    if (api->kind == api_kind::ping) {
      ex.set_route("oci_ping");
      co_await ping(ex, auth);
      co_return;
    }
    if (api->kind == api_kind::catalog) {
      ex.set_route("oci");
      co_await oci_error(ex, http::status::not_found, "UNSUPPORTED",
                         "pantry does not list repositories; ask for /v2/<name>/tags/list");
      co_return;
    }
    const std::string ns = query_param(req.target(), "ns");
    auto t = resolve(*st, api->name, ns);
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
      auto id = auth.who(ex);
      if (id.user.empty()) {
        ex.set_route("oci");
        co_await auth.challenge(ex, "repository:" + api->name + ":pull",
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
                             cfg.hosted.prefix);
      co_return;
    }
    switch (api->kind) {
      case api_kind::manifest:
        ex.set_route("oci_manifest");
        co_await st->manifests->handle(ex, *t, api->reference);
        break;
      case api_kind::blob:
        ex.set_route("oci_blob");
        co_await serve_proxied_blob(st->ctx, ex, *t, api->name, api->reference);
        break;
      case api_kind::tags:
        ex.set_route("oci_tags");
        co_await serve_proxied_tags(*st->ctx, ex, *t, api->name);
        break;
      case api_kind::referrers:
        ex.set_route("oci_referrers");
        co_await serve_proxied_referrers(st->ctx, ex, *t, api->reference);
        break;
      default:
        ex.set_route("oci");
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "uploads go to names under " + cfg.hosted.prefix);
        break;
    }
  }

  static asio::awaitable<void> ping(exchange& ex, const pantry_auth& auth) {
    if (auth.enabled()) {
      // As Docker Hub does: a client without a token is sent to the token endpoint, which gives
      // anonymous clients a pull token and checks a user's password, so `docker login` really
      // checks it.
      auto id = auth.who(ex);
      if (id.user.empty() && (id.invalid || !has_bearer(ex))) {
        co_await auth.challenge(ex, {},
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

  const std::shared_ptr<cache::store> store_;
  const std::shared_ptr<proxy::client> upstream_;
  const std::shared_ptr<proxy::flight_table> flights_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const asio::any_io_executor blocking_;
  const std::string control_token_;
  std::atomic<std::shared_ptr<const oci_state>> state_;
  // Uploads in progress live here, across reloads; it reads the auth of the state now.
  hosted_repos hosted_;
};

}  // namespace

std::shared_ptr<service> service::create(const config::oci_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         boost::asio::any_io_executor blocking,
                                         std::string control_token) {
  return std::make_shared<service_impl>(cfg, std::move(store), std::move(upstream),
                                        std::move(flights), std::move(metrics), std::move(blocking),
                                        std::move(control_token));
}

}  // namespace pantry::registry::oci
