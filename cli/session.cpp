#include "session.h"

#include <spdlog/spdlog.h>

namespace pantry::cli {

result<std::unique_ptr<session>> session::open(const config::config& cfg) {
  std::unique_ptr<session> s(new session());
  auto found = app::find_control(cfg.data_dir);
  if (!found) return found.error();
  if (*found) {
    s->endpoint_ = std::move(**found);
    return s;
  }
  config::config local = cfg;
  local.listen = config::listen_address{"127.0.0.1", 0};
  local.server.access_log = false;
  local.pins.enabled = false;  // a command's own pantry runs no schedule
  auto made = app::app::create(local);
  if (!made) {
    if (made.error().is(errc::locked)) {
      return error(errc::locked, made.error().message +
                                     "; it is not a `pantry serve` (none published its address "
                                     "there): wait for it to finish, or start `pantry serve`");
    }
    return made.error();
  }
  s->app_ = std::move(*made);
  s->endpoint_ = s->app_->control();
  s->thread_ = std::thread([a = s->app_.get()] {
    if (auto r = a->run(); !r) spdlog::error("pantry: {}", r.error().message);
  });
  return s;
}

session::~session() {
  if (!app_) return;
  app_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace pantry::cli
