#pragma once

// The reload of `pantry serve`'s config (SIGHUP, `pantry reload`): reads the file again, checks
// it as `pantry config check` does, and hands the settings that may change live
// (pantry/config/reload.h) to every service; a file that does not read is refused and the
// running config stays. A tenant of the server itself: POST /api/v1/admin/reload, with the
// control token (app/control.h), reloads and answers with the report, so that `pantry reload`
// can print it.

#include "pantry/app/app.h"
#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/config/reload.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace pantry::app {

class reloader final : public proxy::service, public std::enable_shared_from_this<reloader> {
 public:
  // `loaded`: the config the app was made from, as the file and flags gave it. `token_key`: the
  // data dir's registry token key, which a file without oci.hosted.token_key runs with. `blocking`
  // reads and parses a file off the I/O threads. Counts pantry_config_reloads_total{outcome} in
  // `metrics` (each outcome at 0 from the start). `server` takes server.access_log, spdlog
  // server.log_level (set_log_level()) and `store` cache.max_size, when a reload changes them;
  // the server must outlive every reload (the reloader is stopped before the server goes).
  reloader(config::config loaded, std::string token_key,
           std::shared_ptr<proxy::metrics_registry> metrics, boost::asio::any_io_executor blocking,
           std::string control_token, proxy::server& server, std::shared_ptr<cache::store> store);

  // The services, in list order: those with the role proxy::reconfigurable take a reloaded
  // config. Once, before the server runs.
  void set_services(std::vector<std::shared_ptr<proxy::service>> services);
  // Where reload() reads from; until set, the built-in defaults with config::load_file().
  void set_source(config_source source);

  // app::reload().
  config::reload_report reload(const std::optional<std::string>& file);
  // The report of the last reload; nullopt before the first.
  std::optional<config::reload_report> last() const;

  // POST /api/v1/admin/reload.
  void install(proxy::server& srv) override;
  // No reload after this: the services are stopping.
  void stop() noexcept override;

 private:
  boost::asio::awaitable<void> handle(proxy::exchange& ex);
  // Applies a plan that checked out; returns the report. Holds mutex_.
  config::reload_report apply(config::reload_plan plan, std::string source);
  config::reload_report finish(config::reload_report r);

  const std::string token_key_;
  const std::shared_ptr<proxy::metrics_registry> metrics_;
  const boost::asio::any_io_executor blocking_;
  const std::string control_token_;
  proxy::server& server_;
  const std::shared_ptr<cache::store> store_;

  mutable std::mutex mutex_;  // one reload at a time; guards what follows
  config::config loaded_;     // the running config, as its file gave it
  config_source source_;
  std::vector<std::shared_ptr<proxy::service>> services_;
  std::optional<config::reload_report> last_;
  bool stopped_ = false;
};

}  // namespace pantry::app
