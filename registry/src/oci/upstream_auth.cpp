#include "upstream_auth.h"

#include "pantry/registry/oci/protocol.h"

#include <spdlog/spdlog.h>

namespace pantry::registry::oci {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using steady = std::chrono::steady_clock;

namespace {

// Token answers larger than this are refused.
constexpr std::size_t kMaxTokenAnswer = 1 << 20;

std::string pull_scope(const std::string& repo) {
  return "repository:" + repo + ":pull";
}

const challenge* find_scheme(const std::vector<challenge>& cs, std::string_view scheme) {
  for (const auto& c : cs) {
    if (c.scheme == scheme) return &c;
  }
  return nullptr;
}

std::string param(const challenge& c, const std::string& name) {
  auto it = c.params.find(name);
  return it == c.params.end() ? std::string() : it->second;
}

}  // namespace

upstream_auth::upstream_auth(const config::oci_upstream& up, std::shared_ptr<proxy::client> client,
                             std::shared_ptr<proxy::metrics_registry> metrics)
    : up_(up), client_(std::move(client)), metrics_(std::move(metrics)) {}

std::uint64_t upstream_auth::token_requests() const {
  std::lock_guard g(mutex_);
  return token_requests_;
}

void upstream_auth::forget_token(const std::string& repo) {
  std::lock_guard g(mutex_);
  tokens_.erase(pull_scope(repo));
}

std::string upstream_auth::basic_value() const {
  if (up_.username.empty()) return {};
  return proxy::basic_authorization(up_.username, up_.password);
}

std::optional<std::string> upstream_auth::cached_token(const std::string& scope) {
  std::lock_guard g(mutex_);
  auto it = tokens_.find(scope);
  if (it == tokens_.end()) return std::nullopt;
  if (steady::now() >= it->second.expires) {
    tokens_.erase(it);
    return std::nullopt;
  }
  return it->second.value;
}

proxy::request upstream_auth::make_request(http::verb method, const std::string& path,
                                           const http::fields& headers) const {
  proxy::request req;
  req.method = method;
  req.url = up_.url + path;
  for (const auto& f : headers)
    req.headers.insert(f.name_string(), f.value());
  req.tls.ca_file = up_.ca_file;
  return req;
}

asio::awaitable<result<std::string>> upstream_auth::fetch_token(std::string scope) {
  std::string key = scope;
  bool joined = false;
  auto self = this;
  std::function<asio::awaitable<result<std::string>>()> fn =
      [self, scope]() -> asio::awaitable<result<std::string>> {
    // The double check: the caller found no token before it came here, but a fetch for this
    // scope may have stored one and left the coalescer since.
    if (auto token = self->cached_token(scope)) co_return "Bearer " + *token;
    std::string realm;
    std::string service;
    {
      std::lock_guard g(self->mutex_);
      realm = self->realm_;
      service = self->service_;
      ++self->token_requests_;
    }
    proxy::request req;
    req.url = token_url(realm, service, scope);
    req.tls.ca_file = self->up_.ca_file;
    if (!self->up_.username.empty()) {
      req.headers.set(http::field::authorization, self->basic_value());
    }
    self->metrics_->add("pantry_upstream_token_requests_total", {{"upstream", self->up_.name}}, 1,
                        "Token requests pantry sent to upstream registries' token endpoints");
    auto res = co_await self->client_->send(std::move(req));
    if (!res) co_return error(res.error().code, "token request: " + res.error().message);
    if (res->status() != 200) {
      co_return error(
          errc::io_error,
          "the token endpoint " + realm + " of " + self->up_.name + " answered " +
              std::to_string(res->status()) + " for scope " + scope +
              (self->up_.username.empty() ? std::string(" (no credentials configured)")
                                          : " (check the upstream's username and password)"));
    }
    auto body = co_await res->read_all(kMaxTokenAnswer);
    if (!body) co_return body.error();
    auto token = parse_token_answer(*body);
    if (!token) {
      co_return error(errc::io_error, token.error().message + " (from " + realm + ")");
    }
    // Renew a little before the upstream would refuse it.
    auto margin = std::min<std::chrono::seconds>(std::chrono::seconds(10), token->lifetime / 10);
    std::lock_guard g(self->mutex_);
    self->tokens_[scope] = token_slot{token->token, steady::now() + token->lifetime - margin};
    co_return "Bearer " + token->token;
  };
  auto r = co_await fetches_.run(key, std::move(fn), joined);
  co_return r;
}

asio::awaitable<result<std::string>> upstream_auth::authorization(std::string repo) {
  mode m;
  {
    std::lock_guard g(mutex_);
    m = mode_;
  }
  if (m == mode::basic) co_return basic_value();
  if (m != mode::bearer) co_return std::string();
  const std::string scope = pull_scope(repo);
  if (auto t = cached_token(scope)) co_return "Bearer " + *t;
  auto fetched = co_await fetch_token(scope);
  co_return fetched;
}

asio::awaitable<result<proxy::response>> upstream_auth::send(http::verb method, std::string path,
                                                             std::string repo,
                                                             http::fields headers) {
  auto auth = co_await authorization(repo);
  if (!auth) co_return auth.error();
  proxy::request req = make_request(method, path, headers);
  if (!auth->empty()) req.headers.set(http::field::authorization, *auth);
  auto res = co_await client_->send(req);
  if (!res || res->status() != 401) {
    if (res && res->status() < 400) {
      std::lock_guard g(mutex_);
      if (mode_ == mode::unknown) mode_ = mode::none;
    }
    co_return res;
  }
  // A challenge: learn what the upstream wants and try once more.
  auto challenges = parse_challenges(res->headers()[http::field::www_authenticate]);
  if (const auto* bearer = find_scheme(challenges, "bearer")) {
    std::string realm = param(*bearer, "realm");
    if (realm.empty()) co_return res;
    std::string scope = param(*bearer, "scope");
    if (scope.empty()) scope = pull_scope(repo);
    {
      std::lock_guard g(mutex_);
      mode_ = mode::bearer;
      realm_ = realm;
      service_ = param(*bearer, "service");
      tokens_.erase(scope);  // the one we sent, if any, was refused
    }
    auto token = co_await fetch_token(scope);
    if (!token) co_return token.error();
    proxy::request again = make_request(method, path, headers);
    again.headers.set(http::field::authorization, *token);
    auto second = co_await client_->send(std::move(again));
    co_return second;
  }
  if (find_scheme(challenges, "basic") && !up_.username.empty() && auth->empty()) {
    {
      std::lock_guard g(mutex_);
      mode_ = mode::basic;
    }
    proxy::request again = make_request(method, path, headers);
    again.headers.set(http::field::authorization, basic_value());
    auto second = co_await client_->send(std::move(again));
    co_return second;
  }
  co_return res;
}

}  // namespace pantry::registry::oci
