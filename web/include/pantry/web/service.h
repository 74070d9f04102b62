#pragma once

// The web interface as a tenant of the server (proxy/service.h): the front page, `GET /`
// (front_page.h), as HTML, or as JSON for `Accept: application/json`, and the CI dashboard's
// pages (dashboard.h). It reads the config, the cache's totals, the server's cache counters, the
// upstream client's health and the coordinator; it changes nothing and starts no background work.

#include "pantry/config/config.h"
#include "pantry/config/reload.h"
#include "pantry/orchestrator/coordinator/service.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace pantry::cache {
class store;
}
namespace pantry::proxy {
class metrics_registry;
class service;
class upstream_health;
}  // namespace pantry::proxy

namespace pantry::web {

class web_service {
 public:
  // A service that installs "/" (which matches the path "/" alone: other paths still get the
  // server's 404) for GET and HEAD; other methods get 405. `health` is the one the app's
  // upstream client records into (client_options::health); `metrics` the server's registry, whose
  // pantry_cache_requests_total gives the hits and misses. `coordinator`: the one the dashboard
  // reads (null when this pantry runs none: its pages then say so). `version` is shown as is.
  // `last_reload` gives what the last reload of the config did, for /readyz (nullopt before the
  // first; empty function: never reloaded). reconfigure() takes a reloaded config whole.
  static std::shared_ptr<proxy::service> create(
      const config::config& cfg, std::shared_ptr<cache::store> store,
      std::shared_ptr<proxy::metrics_registry> metrics,
      std::shared_ptr<proxy::upstream_health> health,
      std::shared_ptr<orchestrator::coordinator::coordinator_service> coordinator,
      std::string version, std::function<std::optional<config::reload_report>()> last_reload = {});
};

}  // namespace pantry::web
