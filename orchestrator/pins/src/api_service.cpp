#include "pantry/orchestrator/pins/api_service.h"

#include "pantry/orchestrator/coordinator/service.h"
#include "pantry/orchestrator/pins/status.h"
#include "pantry/orchestrator/runner/step_stream.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/server.h"

#include <boost/json/object.hpp>
#include <boost/url/parse.hpp>

#include <atomic>
#include <optional>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace asio = boost::asio;
namespace http = proxy::http;
namespace json = boost::json;
using proxy::exchange;

constexpr std::string_view kRoute = "/api/v1/pins";

asio::awaitable<void> fail(exchange& ex, http::status status, std::string message) {
  const json::object answer{{"error", std::move(message)}};
  co_await runner::respond_json(ex, status, answer);
}

class api_service_impl final : public api_service,
                               public std::enable_shared_from_this<api_service_impl> {
 public:
  api_service_impl(const config::config& cfg,
                   std::shared_ptr<coordinator::coordinator_service> coordinator,
                   std::string control_token, asio::any_io_executor blocking)
      : cfg_(cfg),
        coordinator_(std::move(coordinator)),
        control_token_(std::move(control_token)),
        blocking_(std::move(blocking)) {}

  void install(proxy::server& srv) override {
    std::weak_ptr<api_service_impl> weak = shared_from_this();
    srv.route(std::string(kRoute), [weak](exchange& ex) -> asio::awaitable<void> {
      auto self = weak.lock();
      if (!self) co_return;
      co_await self->handle(ex);
    });
  }

 private:
  asio::awaitable<void> handle(exchange& ex) {
    ex.set_route("pins_api");
    auto target = boost::urls::parse_origin_form(ex.request().target());
    if (!target || target->path() != kRoute) {
      co_await fail(
          ex, http::status::not_found,
          "no such route; the pin bot's state is GET " + std::string(kRoute) + "[?repo=NAME]");
      co_return;
    }
    const auto method = ex.request().method();
    if (method != http::verb::get && method != http::verb::head) {
      co_await fail(ex, http::status::method_not_allowed,
                    std::string(ex.request().method_string()) + " is not allowed on " +
                        std::string(kRoute) + "; use GET");
      co_return;
    }
    // The coordinator knows the read tokens (and takes reloads); without one, only pantry's own.
    if (coordinator_) {
      if (!coordinator_->may_read(ex)) {
        co_await fail(ex, http::status::unauthorized,
                      "this route needs a token of ci.tokens that may read (Authorization: "
                      "Bearer TOKEN)");
        co_return;
      }
    } else {
      const bool ok = co_await runner::authorized(ex, control_token_);
      if (!ok) co_return;
    }
    std::optional<std::string> repo;
    for (const auto& p : target->params()) {
      if (p.key == "repo") repo = std::string(p.value);
    }
    if (repo) {
      bool known = false;
      std::string names;
      for (const auto& r : cfg_.pins.repositories) {
        known = known || r.name == *repo;
        names += (names.empty() ? "" : ", ") + r.name;
      }
      if (!known) {
        if (names.empty()) names = "none";
        std::string why =
            "repo \"" + *repo + "\" is not a repository of pins (the config has " + names + ")";
        co_await fail(ex, http::status::not_found, std::move(why));
        co_return;
      }
    }
    // References only, in a named local: a capture with a destructor in a co_await expression is
    // the gcc 12 double-destruction trap (CONTRIBUTING.md).
    const config::config& cfg = cfg_;
    const auto read = [&cfg, &repo] { return read_pins_report(cfg, repo); };
    auto report = co_await proxy::off_thread(blocking_, read);
    if (!report) {
      const std::string why = report.error().message;
      co_await fail(ex, http::status::internal_server_error, why);
      co_return;
    }
    if (coordinator_) {
      for (auto& b : report->branches) {
        if (b.pipeline == 0 || pipeline_ended(b.status)) continue;
        auto now = co_await coordinator_->find_pipeline(b.pipeline);
        if (!now) continue;  // forgotten: the recorded state stands, as pins status keeps it
        const std::string state = pipeline_state_of(coordinator::to_json(*now));
        if (!state.empty()) b.status = state;
      }
    }
    const json::object answer = to_json(*report, cfg_.pins, repo);
    co_await runner::respond_json(ex, http::status::ok, answer);
  }

  const config::config cfg_;
  const std::shared_ptr<coordinator::coordinator_service> coordinator_;
  const std::string control_token_;
  const asio::any_io_executor blocking_;
};

}  // namespace

std::shared_ptr<api_service> api_service::create(
    const config::config& cfg, std::shared_ptr<coordinator::coordinator_service> coordinator,
    std::string control_token, asio::any_io_executor blocking) {
  return std::make_shared<api_service_impl>(cfg, std::move(coordinator), std::move(control_token),
                                            std::move(blocking));
}

}  // namespace pantry::orchestrator::pins
