// server.log_level onto spdlog (pantry/app/app.h).

#include "pantry/app/app.h"

#include <spdlog/spdlog.h>

namespace pantry::app {
namespace {

spdlog::level::level_enum spdlog_level(config::log_level level) noexcept {
  switch (level) {
    case config::log_level::trace:
      return spdlog::level::trace;
    case config::log_level::debug:
      return spdlog::level::debug;
    case config::log_level::info:
      return spdlog::level::info;
    case config::log_level::warn:
      return spdlog::level::warn;
    case config::log_level::error:
      return spdlog::level::err;
    case config::log_level::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void set_log_level(config::log_level level) {
  // Each logger's level is an atomic: a line being written on another thread is not torn, and
  // lines started after this call see the new level.
  spdlog::set_level(spdlog_level(level));
}

}  // namespace pantry::app
