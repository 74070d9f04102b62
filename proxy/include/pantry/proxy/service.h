#pragma once

// A tenant of the server: something that serves routes on it (the PyPI proxy, the container
// registry) and may run background work beside them (the orchestrator's coordinator and its
// timers, a built-in runner, the pin bot). The assembly that runs `pantry serve` (app/) holds a
// list of services and drives each through the same life:
//
//   install(srv)   every service, in list order, before the server runs
//   start()        every service, in list order, after all are installed, before the server runs
//   ... the server serves ...
//   stop()         every started service, in reverse order, once the server has stopped
//
// The assembly makes these calls one at a time, never two at once: install() and start() on the
// thread that creates it, stop() on the thread that ran the server. The handlers a service
// installs run on the server's I/O threads in between, never during install(), start() or stop().

#include "pantry/error.h"

namespace pantry::proxy {

class server;

class service {
 public:
  virtual ~service() = default;

  // Routes this service's prefixes of `srv` to its handlers (server::route). Called once, before
  // srv.run(). Must not block: it only registers handlers.
  virtual void install(server& srv) = 0;

  // Starts background work that is not a request (timers, a scheduler, child processes), for
  // example on the server's executor. Called once, after every service is installed and before
  // the server runs, so a timer armed here fires once the server's threads start. May block
  // briefly for start-up work (sweeping what a crashed run left behind), never on the network:
  // `pantry serve` says it is listening only after every start() returned. An error stops the
  // start-up: the services started before this one are stopped, and `pantry serve` exits with
  // the error's message. The default does nothing.
  virtual result<void> start() { return {}; }

  // Ends what start() began. Called once at shutdown on a service whose start() succeeded, after
  // the server has stopped (its I/O threads have finished: no handler and no timer of the
  // service runs now or later) and before the blocking pool is joined and the server and its
  // io_contexts are destroyed: the place to let go of sockets and timers bound to those contexts
  // (a pooled socket that outlives its io_context is a use-after-free) and to stop queueing
  // blocking work. May block (waiting for a child process to exit); it delays the exit of
  // `pantry serve`, so bound the wait. Must not throw. The default does nothing.
  virtual void stop() noexcept {}
};

}  // namespace pantry::proxy
