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
#include "pantry/app/handover.h"
#include "pantry/config/config.h"
#include "pantry/config/reload.h"
#include "pantry/error.h"

#include <chrono>
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

// Sets how much pantry logs from now on (server.log_level): the level of spdlog's default logger
// and every registered one. The access log is the server's own logger and is not affected
// (server.access_log switches it). `pantry serve` and `pantry runner` call it at start, before
// create(); a reload that changes server.log_level calls it again. Any thread.
void set_log_level(config::log_level level);

// What app::upgrade() did.
struct upgrade_report {
  long old_pid = 0;  // this process, which drains now
  long new_pid = 0;  // the successor, which serves on the same port
  std::string binary;
  std::chrono::milliseconds drain{0};  // in-flight responses finish within this (shutdown_grace)
  std::string jobs;                    // what becomes of running CI jobs, in a sentence
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
  //
  // With `from` (a process started by an upgrade, handover.h): serves on the inherited listening
  // socket instead of binding (a config whose port differs is refused), opens the cache as the
  // predecessor's successor (cache::open_as_successor) and starts the services that run jobs
  // (the runner, the builder, the coordinator or a remote runner) only once the predecessor has
  // let go of the data dir; until then their routes wait. run() reports readiness on the pipe.
  static result<std::unique_ptr<app>> create(const config::config& cfg,
                                             std::optional<handover> from = std::nullopt);

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

  // Hands this app's port and data dir over to `binary` (empty: own_binary()), started with this
  // process's arguments (handover.h's start_successor). Once it is ready, this app drains: it
  // stops accepting, answers each connection's request in flight or next within
  // server.shutdown_grace, and run() returns as after stop(). If the successor cannot start, this
  // app goes on serving and the error says why. Blocks up to a minute; call it from a thread that
  // may block, not an I/O thread. Also served as POST /api/v1/upgrade with the control token
  // (`pantry upgrade`). Errors: errc::conflict after one succeeded, or while this app has
  // not yet taken the data dir over from its own predecessor.
  virtual result<upgrade_report> upgrade(const std::string& binary) = 0;
};

}  // namespace pantry::app
