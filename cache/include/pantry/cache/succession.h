#pragma once

// The cache's side of an upgrade (docs/ARCHITECTURE.md, "Upgrades"): a process that takes the data
// dir over from a running pantry opens the store before that one has let go of it.

#include "pantry/cache/store.h"
#include "pantry/error.h"

#include <chrono>
#include <memory>

namespace pantry::cache {

// store::open() in owner mode, for the successor of process `predecessor`. While that process holds
// the data dir's lock (its pid is in the lock file), the store opens without it: reads work at
// once, writes queue, and the writer thread takes the lock as soon as that process lets it go;
// then it does what an owner does at open (reclaims dead readers' slots, loads the counters,
// removes orphan chunks) before the first queued write. So one process at a time writes, evicts
// and sweeps. When the lock is free it opens as store::open() does; when another process holds it,
// it fails with errc::locked as store::open() does.
result<std::shared_ptr<store>> open_as_successor(const options& opt, long predecessor);

// Waits up to `timeout` until `s` holds the data dir's lock (an owner opened by store::open() does
// at once). False when the time ran out or the store closed first, and for a read-only store.
bool wait_for_lock(store& s, std::chrono::milliseconds timeout);

}  // namespace pantry::cache
