#include "reloader.h"

#include "pantry/orchestrator/runner/step_stream.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/reconfigurable.h"
#include "pantry/web/front_page.h"

#include <boost/json/parse.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <utility>

namespace pantry::app {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

const std::string kReloads = "pantry_config_reloads_total";
const std::string kReloadsHelp = "Reloads of the config (SIGHUP, pantry reload), by outcome";
constexpr std::string_view kRoute = "/api/v1/admin/reload";
constexpr std::size_t kMaxBody = 64 * 1024;

std::string joined(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys)
    out += (out.empty() ? "" : ", ") + k;
  return out;
}

}  // namespace

reloader::reloader(config::config loaded, std::string token_key,
                   std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
                   std::string control_token, proxy::server& server,
                   std::shared_ptr<cache::store> store)
    : token_key_(std::move(token_key)),
      metrics_(std::move(metrics)),
      blocking_(std::move(blocking)),
      control_token_(std::move(control_token)),
      server_(server),
      store_(std::move(store)),
      loaded_(std::move(loaded)) {
  for (auto o : {config::reload_outcome::applied, config::reload_outcome::needs_restart,
                 config::reload_outcome::refused}) {
    metrics_->add(kReloads, {{"outcome", std::string(config::to_string(o))}}, 0, kReloadsHelp);
  }
}

void reloader::set_services(std::vector<std::shared_ptr<proxy::service>> services) {
  std::lock_guard lock(mutex_);
  services_ = std::move(services);
}

void reloader::set_source(config_source source) {
  std::lock_guard lock(mutex_);
  source_ = std::move(source);
}

std::optional<config::reload_report> reloader::last() const {
  std::lock_guard lock(mutex_);
  return last_;
}

void reloader::stop() noexcept {
  std::lock_guard lock(mutex_);
  stopped_ = true;
}

config::reload_report reloader::reload(const std::optional<std::string>& file) {
  std::lock_guard lock(mutex_);
  const std::string path = file ? *file : source_.file;
  config::reload_report r;
  r.source = path.empty() ? "<embedded defaults>" : path;
  r.outcome = config::reload_outcome::refused;
  if (stopped_) {
    r.error = "pantry is stopping; nothing was reloaded";
    return finish(std::move(r));
  }
  result<config::config> read = source_.load   ? source_.load(path)
                                : path.empty() ? result<config::config>(config::defaults())
                                               : config::load_file(path);
  if (!read) {
    r.error = read.error().message;
    return finish(std::move(r));
  }
  // The largest quota the cache's map, sized at start, holds.
  auto st = store_->get_stats();
  const std::uint64_t cache_limit = st ? st->quota_limit : loaded_.cache.max_size;
  config::reload_plan plan = config::plan_reload(loaded_, *read, cache_limit);
  if (auto checked = config::check_reloaded(plan.next, r.source); !checked) {
    r.error = checked.error().message;
    return finish(std::move(r));
  }
  if (file) source_.file = *file;  // later reloads (SIGHUP) read the file this one read
  return apply(std::move(plan), std::move(r.source));
}

config::reload_report reloader::apply(config::reload_plan plan, std::string source) {
  config::reload_report r;
  r.source = std::move(source);
  config::config running = plan.next;
  if (running.oci.hosted.token_key.empty()) running.oci.hosted.token_key = token_key_;
  for (const auto& s : services_) {
    if (auto role = std::dynamic_pointer_cast<proxy::reconfigurable>(s)) role->reconfigure(running);
  }
  // Only when the file changes them: a command's own pantry (`pantry run`) runs at the level its
  // command line chose, not the file's.
  if (running.server.access_log != loaded_.server.access_log) {
    server_.set_access_log(running.server.access_log);
  }
  if (running.server.log_level != loaded_.server.log_level) {
    set_log_level(running.server.log_level);
  }
  if (running.cache.max_size != loaded_.cache.max_size) {
    // Within the limit plan_reload() capped it at, so the store takes it as it is; a lower quota
    // evicts on the cache's writer thread, after this returns.
    if (auto set = store_->set_max_size(running.cache.max_size); !set) {
      spdlog::error("pantry serve: reload: cache.max_size: {}", set.error().message);
    }
  }
  loaded_ = std::move(plan.next);

  r.outcome = plan.needs_restart.empty() ? config::reload_outcome::applied
                                         : config::reload_outcome::needs_restart;
  r.changed = std::move(plan.changed);
  r.needs_restart = std::move(plan.needs_restart);
  return finish(std::move(r));
}

config::reload_report reloader::finish(config::reload_report r) {
  r.at = std::chrono::system_clock::now();
  metrics_->add(kReloads, {{"outcome", std::string(config::to_string(r.outcome))}}, 1,
                kReloadsHelp);
  if (r.outcome == config::reload_outcome::refused) {
    spdlog::error("pantry serve: reload of {} refused; the running config stays: {}", r.source,
                  r.error);
  } else {
    spdlog::info("pantry serve: reloaded {}: {}", r.source,
                 r.changed.empty() ? "no live setting changed" : "changed " + joined(r.changed));
    for (const auto& c : r.needs_restart) {
      const std::string values =
          c.running.empty() ? "" : " (running " + c.running + ", the file says " + c.wanted + ")";
      spdlog::warn("pantry serve: reload: {} needs a restart to change{}; it keeps its value",
                   c.key, values);
    }
  }
  last_ = r;
  return r;
}

void reloader::install(proxy::server& srv) {
  auto self = shared_from_this();
  srv.route(std::string(kRoute), [self](proxy::exchange& ex) { return self->handle(ex); });
}

asio::awaitable<void> reloader::handle(proxy::exchange& ex) {
  ex.set_route("admin_reload");
  const std::string path(ex.request().target().substr(0, ex.request().target().find('?')));
  if (path != kRoute) {
    co_await orchestrator::runner::respond_text(ex, http::status::not_found,
                                                "not found: no route for path " + path);
    co_return;
  }
  if (ex.request().method() != http::verb::post) {
    co_await orchestrator::runner::respond_text(
        ex, http::status::method_not_allowed,
        std::string(kRoute) + " takes POST (`pantry reload` sends it)");
    co_return;
  }
  if (!co_await orchestrator::runner::authorized(ex, control_token_)) co_return;
  auto body = co_await orchestrator::runner::read_body(ex, kMaxBody);
  if (!body) co_return;
  // {"config": "/abs/path"} reads that file from now on; {} or no body re-reads the same one.
  std::optional<std::string> file;
  if (!body->empty()) {
    boost::system::error_code ec;
    auto v = json::parse(*body, ec);
    const json::value* f = nullptr;
    if (!ec && v.is_object()) f = v.get_object().if_contains("config");
    if (ec || !v.is_object() || (f && (!f->is_string() || f->get_string().empty()))) {
      co_await orchestrator::runner::respond_text(
          ex, http::status::bad_request,
          "the body is not {\"config\": \"/path/of/pantry.yaml\"} or {}: " + *body);
      co_return;
    }
    if (f) file = std::string(f->get_string());
  }
  // Reading and parsing a file blocks: off the I/O thread.
  auto work = [this, &file] { return reload(file); };
  const config::reload_report r = co_await proxy::off_thread(blocking_, work);
  http::response<http::string_body> res{r.outcome == config::reload_outcome::refused
                                            ? http::status::unprocessable_entity
                                            : http::status::ok,
                                        ex.request().version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.body() = web::reload_json(r);
  co_await ex.respond(std::move(res));
}

}  // namespace pantry::app
