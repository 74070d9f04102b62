#pragma once

// A role a service (service.h) may take beside its own: it takes the live settings of a reloaded
// config (pantry/config/reload.h says which those are). The app (app/) reloads by handing the
// new config to every service that has this role; a service without it keeps what it was made
// with. Only the implementation of a service includes this header, not its public one.

#include "pantry/config/config.h"

namespace pantry::proxy {

class reconfigurable {
 public:
  virtual ~reconfigurable() = default;

  // Takes the live settings of `cfg` (its restart-only settings equal the ones the service was
  // made with). Called between start() and stop(), one reload at a time, from a thread that is
  // not an I/O thread, while handlers run on the I/O threads: a request that started before
  // keeps the settings it started with, one that starts after sees the new ones, and nothing in
  // flight is dropped (a service swaps an immutable snapshot). Must not block on the network.
  virtual void reconfigure(const config::config& cfg) = 0;
};

}  // namespace pantry::proxy
