#include "pantry/registry/oci/service.h"

#include "pantry/registry/oci/protocol.h"

#include "../http_serve.h"
#include "hosted.h"
#include "keys.h"
#include "pantry_auth.h"
#include "proxied.h"
#include "respond.h"
#include "upstream_auth.h"

namespace pantry::registry::oci {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using proxy::exchange;

class service_impl final : public service, public std::enable_shared_from_this<service_impl> {
 public:
  service_impl(const config::oci_config& cfg, std::shared_ptr<cache::store> store,
               const std::shared_ptr<proxy::client>& upstream,
               std::shared_ptr<proxy::flight_table> flights,
               std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
               std::string control_token)
      : ctx_(std::make_shared<proxied_context>(cfg, store, upstream, std::move(flights),
                                               std::move(metrics), blocking)),
        cfg_(ctx_->cfg),
        auth_(cfg_.hosted, std::move(control_token)),
        hosted_(
            cfg_.hosted, std::move(store), std::move(blocking), auth_,
            [this](std::string_view name) -> std::optional<std::string> {
              auto t = resolve(name, "");
              if (!t || t->up == nullptr) return std::nullopt;
              // What an upstream's credentials pulled is only for clients that log in; a
              // hosted repository anyone may pull from does not get it by a mount.
              if (!t->up->upstream().username.empty() && !cfg_.hosted.pull_auth) {
                return std::nullopt;
              }
              return t->key_prefix;
            },
            [this](std::string_view upstream) {
              auto it = ctx_->upstreams.find(upstream);
              if (it == ctx_->upstreams.end()) return false;
              return it->second->upstream().username.empty() || cfg_.hosted.pull_auth;
            }),
        manifests_(std::make_shared<proxied_manifests>(ctx_)) {}

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
  result<target> resolve(std::string_view name, std::string_view ns) {
    target t;
    std::string repo(name);
    upstream_auth* up = nullptr;
    const auto& upstreams = ctx_->upstreams;
    if (!ns.empty()) {
      auto it = upstreams.find(ns);
      if (it == upstreams.end()) {
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
        if (auto it = upstreams.find(repo.substr(0, slash)); it != upstreams.end()) {
          up = it->second.get();
          repo = repo.substr(slash + 1);
        }
      }
      if (up == nullptr) up = upstreams.at(cfg_.default_upstream).get();
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
    auto api =
        parse_api_path(path, req.method() == http::verb::get || req.method() == http::verb::head);
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
        co_await manifests_->handle(ex, *t, api->reference);
        break;
      case api_kind::blob:
        ex.set_route("oci_blob");
        co_await serve_proxied_blob(ctx_, ex, *t, api->name, api->reference);
        break;
      case api_kind::tags:
        ex.set_route("oci_tags");
        co_await serve_proxied_tags(*ctx_, ex, *t, api->name);
        break;
      case api_kind::referrers:
        ex.set_route("oci_referrers");
        co_await serve_proxied_referrers(ctx_, ex, *t, api->reference);
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

  const std::shared_ptr<const proxied_context> ctx_;
  const config::oci_config& cfg_;  // ctx_'s
  const pantry_auth auth_;
  hosted_repos hosted_;
  const std::shared_ptr<proxied_manifests> manifests_;
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
