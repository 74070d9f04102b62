#pragma once

// The server's side of an upgrade (docs/ARCHITECTURE.md, "Upgrades"): a new process serves on the
// listening socket of the one it takes over from, which drains without failing a request.

#include "pantry/error.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"

#include <chrono>
#include <memory>

namespace pantry::proxy {

// How long, in drain(), a connection waiting for its next request stays open for it.
inline constexpr std::chrono::milliseconds kDrainIdle{1'000};

// server::create(), serving on `listen_fd` — a listening TCP socket that the process this one
// takes over from passed down — instead of binding opt.host and opt.port. Takes ownership of the
// descriptor (closed on error too). Errors: errc::invalid_argument saying what the descriptor is
// not (a listening TCP socket).
result<std::unique_ptr<server>> create_on_socket(const server_options& opt,
                                                 std::shared_ptr<metrics_registry> metrics,
                                                 int listen_fd);

// The main port's listening socket of a server made by create() or create_on_socket(), to hand to
// a successor (which accepts on it while this server drains); it stays the server's. -1 for any
// other server.
int listening_socket(const server& srv) noexcept;

// stop() for a hand-over to a process that accepts on the same listening socket, so that no client
// sees a failed request: a connection accepted as the server stops is served too, and one waiting
// for its next request keeps waiting for up to kDrainIdle (a keep-alive client may have sent it
// already) and gets its answer with `Connection: close`, instead of being closed at once.
// Responses in flight finish within shutdown_grace, as with stop(). For a server that create()
// did not make, stop().
void drain(server& srv) noexcept;

}  // namespace pantry::proxy
