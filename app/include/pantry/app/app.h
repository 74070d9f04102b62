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
#include "pantry/error.h"

#include <cstdint>
#include <memory>

namespace pantry::app {

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

  // Asks run() to finish: the server stops accepting and lets in-flight responses finish within
  // server.shutdown_grace. Safe from any thread (a signal-waiting one), before run() (which
  // then returns at once) and more than once. Does not block.
  virtual void stop() noexcept = 0;
};

}  // namespace pantry::app
