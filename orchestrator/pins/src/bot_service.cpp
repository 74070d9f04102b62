#include "pantry/orchestrator/pins/bot_service.h"

#include "pantry/config/cron.h"
#include "pantry/orchestrator/pins/bot.h"
#include "pantry/orchestrator/pins/schedule.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

namespace chrono = std::chrono;

// "2026-12-07 04:05 UTC".
std::string utc(chrono::sys_seconds t) {
  const auto day = chrono::floor<chrono::days>(t);
  const chrono::year_month_day ymd(day);
  const chrono::hh_mm_ss hms(t - day);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02ld:%02ld UTC", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()));
  return buf;
}

class bot_service_impl final : public bot_service {
 public:
  bot_service_impl(const config::config& cfg, std::string self_url, std::string token)
      : cfg_(cfg), self_url_(std::move(self_url)), token_(std::move(token)) {}

  void install(proxy::server&) override {}

  result<void> start() override {
    auto parsed = config::cron_schedule::parse(cfg_.pins.schedule);
    if (!parsed) return error(errc::config_error, "pins.schedule: " + parsed.error().message);
    schedule_.emplace(std::move(*parsed));
    auto first = plan_next_run(*schedule_, std::nullopt, now());
    if (!first) {
      return error(errc::config_error, "pins.schedule \"" + schedule_->str() +
                                           "\" never fires again; give one that does");
    }
    spdlog::info("pins: schedule \"{}\" (UTC): the first run is at {}", schedule_->str(),
                 utc(first->at));
    thread_ = std::thread([this] { loop(); });
    return {};
  }

  void stop() noexcept override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  static chrono::sys_seconds now() {
    return chrono::floor<chrono::seconds>(chrono::system_clock::now());
  }

  bool stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  void loop() {
    std::optional<chrono::sys_seconds> previous;
    for (;;) {
      auto next = plan_next_run(*schedule_, previous, now());
      if (!next) {
        spdlog::warn("pins: schedule \"{}\" fires no more; the pin bot stops running on it",
                     schedule_->str());
        return;
      }
      if (next->skipped > 0) {
        spdlog::warn(
            "pins: {} due time{} from {} passed while the run due at {} went on: skipped (one "
            "run at a time); the next run is at {}",
            next->skipped, next->skipped == 1 ? "" : "s", utc(*next->first_skipped), utc(*previous),
            utc(next->at));
      }
      {
        std::unique_lock lock(mutex_);
        if (wake_.wait_until(lock, next->at, [this] { return stopping_; })) return;
      }
      previous = next->at;
      run_once(next->at);
    }
  }

  void run_once(chrono::sys_seconds due) {
    spdlog::info("pins: the run due at {} starts", utc(due));
    const auto started = chrono::steady_clock::now();
    bot_options opt;
    opt.bump = true;
    opt.open_prs = true;
    opt.forge_optional = true;
    opt.config_name = "the config";
    opt.locate_pantry = [this]() -> result<pantry_endpoint> {
      pantry_endpoint where{self_url_, std::nullopt};
      if (cfg_.ci.enabled && cfg_.ci.runner_of.url.empty()) where.token = token_;
      return where;
    };
    opt.no_ci_reason = "this pantry runs no coordinator (ci.enabled is false)";
    opt.stop_requested = [this] { return stopping(); };
    std::size_t problems = 0;
    const bot_output out{[](std::string_view line) { spdlog::info("pins: {}", line); },
                         [&](std::string_view message) {
                           ++problems;
                           spdlog::warn("pins: {}", message);
                         }};
    const bot_outcome outcome = run_bot(cfg_, opt, out);
    const auto took = chrono::duration_cast<chrono::seconds>(chrono::steady_clock::now() - started);
    spdlog::info("pins: the run due at {} ended after {} s: {} pins and images checked, {}",
                 utc(due), took.count(), outcome.checked,
                 outcome.status == kExitError
                     ? std::to_string(problems) + (problems == 1 ? " problem" : " problems")
                     : std::string("no problems"));
  }

  const config::config cfg_;
  const std::string self_url_;
  const std::string token_;
  std::optional<config::cron_schedule> schedule_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
};

}  // namespace

std::shared_ptr<bot_service> bot_service::create(const config::config& cfg, std::string self_url,
                                                 std::string control_token) {
  return std::make_shared<bot_service_impl>(cfg, std::move(self_url), std::move(control_token));
}

}  // namespace pantry::orchestrator::pins
