#pragma once

// A reload of the config while `pantry serve` runs (SIGHUP, `pantry reload`): which settings
// change live and which keep their running value until a restart. Pure: no files, no clock.
//
// Live (applied to the requests that start after the reload; a request already running keeps
// the settings it started with): server.access_log and server.log_level (for the log lines
// written from then on, a running request's included), cache.max_size (for the room writes
// reserve from then on; a lower one evicts down to it; a higher one only up to what the cache's
// map, sized at start, holds, the rest reported as needing a restart), pypi.upstreams, .routes,
// .index_ttl, .negative_ttl, .offline and the uploaders and merge lists of pypi.hosted; oci
// .default_upstream, .upstreams, .tag_ttl, and oci.hosted's users, pull_auth and token_key; ci
// .tokens, .secrets, .quarantine and .quarantine_exit_passes.
//
// Restart only (kept at their running value, each reported): listen, data_dir, server (threads,
// timeouts), upstream (the client's timeouts and pool), the set of pypi.hosted indexes (each is
// a route of its own), oci.hosted.prefix, the runner section and the rest of ci (enabled, slots,
// runner_timeout, log and artifact limits, runner_of), the pins section (the schedule inside
// serve runs on the section it started with): they are bound to the listening socket, the data
// dir's lock, threads, routes or the runner's places.

#include "pantry/config/config.h"

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::config {

// A setting the new file changes that cannot change while pantry runs.
struct restart_change {
  std::string key;      // "listen", "server.threads", "runner", "pypi.hosted", …
  std::string running;  // the value kept, as the file writes it ("" for a list or a section)
  std::string wanted;   // the new file's value, likewise
  friend bool operator==(const restart_change&, const restart_change&) = default;
};

struct reload_plan {
  // What runs after the reload: `wanted`, except that every restart-only setting keeps the
  // running value.
  config next;
  // The live settings whose value changes, by key ("pypi.upstreams", "oci.tag_ttl"), in the
  // order of the file. Secrets are named, never shown.
  std::vector<std::string> changed;
  // The restart-only settings whose value differs, in the order of the file.
  std::vector<restart_change> needs_restart;
};

// Compares the running config with the one a reload read (both as parse() returns them) and
// splits the difference into what changes now and what needs a restart. `cache_size_limit` is
// the largest cache.max_size the running cache takes (cache::stats::quota_limit): a larger one
// runs at the limit and needs a restart for the rest (running: the limit). The caller checks
// `next` with check_reloaded() before applying it.
reload_plan plan_reload(const config& running, const config& wanted,
                        std::uint64_t cache_size_limit = std::numeric_limits<std::uint64_t>::max());

// Checks `next` as parse() checks a file: a setting kept at its running value may no longer fit
// the new ones (a kept pypi.hosted index names an uploader the new oci.hosted.users lacks).
// Errors: errc::config_error whose lines name `source` and the key, and say that the
// restart-only settings were kept.
result<void> check_reloaded(const config& next, std::string_view source);

// How a reload ended.
enum class reload_outcome {
  applied,        // the new file is running, every setting of it
  needs_restart,  // the new file is running, but for settings that wait for a restart
  refused,        // the new file is not valid: the running config stays as it was
};
// "applied", "needs_restart", "refused": the label of pantry_config_reloads_total.
std::string_view to_string(reload_outcome o) noexcept;

// What a reload did, as `pantry reload`, /readyz and the log report it.
struct reload_report {
  reload_outcome outcome = reload_outcome::applied;
  std::string source;                // the file read, or "<embedded defaults>"
  std::string error;                 // refused: parse()'s lines (file:line:col: key: message)
  std::vector<std::string> changed;  // live settings now different (reload_plan)
  std::vector<restart_change> needs_restart;  // restart-only settings kept (reload_plan)
  std::chrono::system_clock::time_point at;   // when it ended
};

}  // namespace pantry::config
