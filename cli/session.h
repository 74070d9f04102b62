#pragma once

// The pantry that `pantry run` and `pantry build` talk to. When a `pantry serve` holds the data
// dir, they are its clients (app/control.h says where it listens and its token); otherwise they
// start pantry in this process — the same app, on a free loopback port, owning the data dir for
// as long as the command runs — and are its clients all the same, so both ways run one code path.

#include "pantry/app/app.h"
#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/error.h"

#include <memory>
#include <thread>

namespace pantry::cli {

class session {
 public:
  // Finds the serve of cfg.data_dir, else starts pantry in process (cfg with its listen address
  // replaced by 127.0.0.1:0, no access log). Errors: the control file is unreadable, the data
  // dir is locked by a process that published no endpoint (a pantry command that is not a
  // serve: run it after that one ends), the app's own errors.
  static result<std::unique_ptr<session>> open(const config::config& cfg);

  // Stops the in-process pantry, if any, and waits for it.
  ~session();

  const app::control_endpoint& endpoint() const noexcept { return endpoint_; }
  bool in_process() const noexcept { return app_ != nullptr; }

 private:
  session() = default;

  app::control_endpoint endpoint_;
  std::unique_ptr<app::app> app_;
  std::thread thread_;  // runs app_->run()
};

}  // namespace pantry::cli
