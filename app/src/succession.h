#pragma once

// The app's side of an upgrade (docs/ARCHITECTURE.md, "Upgrades"): the gate in front of the
// routes of services that a successor starts late, and the control route that starts an upgrade.

#include "pantry/app/app.h"
#include "pantry/proxy/server.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace pantry::app::detail {

// Closed until the services behind it have started (open()) or cannot (fail()).
class service_gate {
 public:
  void open();
  void fail(std::string why);
  // On a connection's strand: waits until the gate opens (nullopt) or fails (the reason).
  boost::asio::awaitable<std::optional<std::string>> pass();

 private:
  std::mutex mutex_;
  bool open_ = false;               // guarded by mutex_
  std::optional<std::string> why_;  // guarded by mutex_
};

// A server that installs every route it is given on `inner` behind `gate`: a request waits at the
// gate, then goes to the handler, or gets 503 with the gate's reason. Everything else is inner's.
std::unique_ptr<proxy::server> gated_server(proxy::server& inner,
                                            std::shared_ptr<service_gate> gate);

// POST /api/v1/upgrade with `Authorization: Bearer <control token>` and an optional JSON body
// {"binary": "/abs/path"}: runs `upgrade` on `blocking` and answers 200 with the report as JSON,
// 409 when this process cannot hand over now (it did already, or has not taken over yet), 500 with
// {"error": …} when the successor did not start.
void install_upgrade_route(proxy::server& srv, std::string token,
                           boost::asio::any_io_executor blocking,
                           std::function<result<upgrade_report>(const std::string&)> upgrade);

}  // namespace pantry::app::detail
