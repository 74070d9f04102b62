#pragma once

// `pantry serve` as a library: the one place that assembles pantry from a config. It owns the
// cache, the metrics, the HTTP server, the upstream client, the single-flight table and the pool
// for blocking work, and the services that are the server's tenants (proxy/service.h): the PyPI
// proxy and the container registry today, the orchestrator's coordinator and runner next. A new
// service is one line in the list in app/src/app.cpp; the command line (cli/) only parses
// arguments, prints, and turns signals into stop().
//
// Life: create() opens and assembles everything and starts the services; run() serves until
// stop() and then tears down in order; destroying the app releases the data dir.

#include "pantry/app/control.h"
#include "pantry/config/config.h"
#include "pantry/config/reload.h"
#include "pantry/error.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace pantry::app {

// Where a reload reads the config from: `file` ("" for the built-in defaults), through `load`,
// which lays the same command-line settings over it as at start (--listen, --data-dir).
struct config_source {
  std::string file;
  std::function<result<config::config>(const std::string& file)> load;
};

class app {
 public:
  // Assembles pantry from `cfg`: opens the cache in cfg.data_dir as its owner (which removes
  // what a crash left behind, so it may block for a while on a large cache), binds cfg.listen
  // (port 0: any free port, see port()), installs every service's routes, registers the gauges,
  // logs the cache's state and starts every service. Threads start here (the cache's writer, the
  // blocking pool): a caller that wants signals delivered to one thread blocks them first.
  // Errors: errc::locked naming the pid while another process holds the data dir, the cache's
  // other errors, the server's (the address is in use…), or the first service whose start()
  // failed (the ones started before it are stopped).
  static result<std::unique_ptr<app>> create(const config::config& cfg);

  // Tears down what run() did not (a created app that never ran), then releases everything; the
  // data dir's lock goes last.
  virtual ~app() = default;

  // The bound port (the configured one, or the one picked for port 0).
  virtual std::uint16_t port() const noexcept = 0;

  // Where this machine reaches the app and its control token (control.h); create() has
  // published them in the data dir, and teardown withdraws them.
  virtual const control_endpoint& control() const noexcept = 0;

  // Logs "pantry serve: listening on HOST:PORT; PIP_INDEX_URL=…" and serves on the server's
  // threads (this one among them) until stop(). Then tears down in order: every service's
  // stop(), in reverse order of the list; the blocking pool finishes its queued work; the
  // cache writes its batched access times. Returns the error of that last write, if any, else
  // logs "pantry serve: stopped". Blocks; call once.
  virtual result<void> run() = 0;

  // Where reload() reads the config from; until this is called, the built-in defaults (and
  // config::load_file() for a file reload() names), with no command-line settings over them.
  virtual void set_config_source(config_source source) = 0;

  // Reads the config again (`file` instead of the source's file, from now on, when given) and
  // applies it without dropping a connection or a download: a file that does not read or check
  // is refused, logged with its file:line:col errors, and the running config stays; otherwise
  // every live setting (pantry/config/reload.h) goes to the services, for the requests that
  // start from now on, and each restart-only setting the file changes is logged as needing a
  // restart and keeps its value. Counts pantry_config_reloads_total{outcome}; /readyz shows the
  // report. One
  // reload at a time; from any thread but an I/O thread of this app (it blocks while it reads
  // the file). After stop() it refuses. What SIGHUP and POST /api/v1/admin/reload (with the
  // control token; `pantry reload`) call.
  virtual config::reload_report reload(const std::optional<std::string>& file = std::nullopt) = 0;

  // Asks run() to finish: the server stops accepting and lets in-flight responses finish within
  // server.shutdown_grace. Safe from any thread (a signal-waiting one), before run() (which
  // then returns at once) and more than once. Does not block.
  virtual void stop() noexcept = 0;
};

}  // namespace pantry::app
