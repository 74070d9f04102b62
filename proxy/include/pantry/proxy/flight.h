#pragma once

// Single flight: the first miss for a blob starts one upstream fetch that belongs to the flight,
// not to the request that started it, so a client that disconnects never stops it. Every client
// that asks while it runs streams the body from its first byte as it arrives: the part already
// committed comes from the cache, the not-yet-committed tail from memory. The fetch never waits
// for a client. The last byte is held back until size and sha256 check out; on a mismatch or a
// broken upstream every reader gets an error (the server then resets its connection) and nothing
// is cached. See docs/ARCHITECTURE.md, "The single flight".

#include "pantry/cache/store.h"
#include "pantry/error.h"
#include "pantry/proxy/client.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

namespace pantry::proxy {

// What a flight fetches.
struct fetch_spec {
  request req;                        // the upstream request (GET)
  cache::digest id;                   // the sha256 the body must have
  std::optional<std::uint64_t> size;  // the size it must have, when known beforehand
  std::string media_type;             // stored with the blob
  // Upstream statuses other than 200 fail the flight with errc::not_found (404, 410) or
  // errc::io_error (anything else); the message names the URL and the status.
};

// The upstream's answer, as far as readers need it.
struct flight_head {
  std::optional<std::uint64_t> length;  // Content-Length, or the expected size
  std::string content_type;
};

// An upstream's answer that failed a flight before any body byte: its status (0 when the flight
// did not fail that way) and its Retry-After.
struct flight_refusal {
  unsigned status = 0;
  std::string retry_after;
};

// Body bytes a reader got: in the flight's memory (then `hold` keeps them alive and unchanged
// for as long as the reader keeps it, so they can be written to a socket without a copy), or
// copied into the caller's scratch buffer (`hold` empty). No bytes: the end of the body.
struct flight_bytes {
  std::shared_ptr<const std::byte[]> hold;
  std::span<const std::byte> bytes;
};

// A reader's handle on one flight. Cheap to copy.
class flight {
 public:
  class impl;
  flight() = default;
  explicit flight(std::shared_ptr<impl> p) : impl_(std::move(p)) {}

  // Waits for the upstream's response header. An error means the fetch failed before any body
  // byte could be served (connect, status, size, quota): the request can still get a status.
  asio::awaitable<result<flight_head>> wait_head();

  // Copies body bytes from `offset` into `out`, waiting until some are available. Returns 0 at
  // the end of a verified body. Until the whole body is verified its last byte is withheld, so a
  // client never holds a complete-looking body that may be wrong. An error after bytes were
  // sent means the client's connection must be reset.
  asio::awaitable<result<std::size_t>> read(std::uint64_t offset, std::span<std::byte> out);

  // read() without the copy where it can: at most scratch.size() bytes from `offset`, as a view
  // of the in-memory tail, or copied into `scratch` (bytes the fetch has already committed to
  // the cache and dropped from memory, or a verified body). Same waiting and errors as read().
  asio::awaitable<result<flight_bytes>> read_some(std::uint64_t offset,
                                                  std::span<std::byte> scratch);

  // True once the body is verified and committed: from then on a reader can serve the rest
  // from the cache like any hit (straight from the map) instead of through read().
  bool verified() const;

  // Once wait_head() failed: the upstream status that failed it, if it was one (a protocol
  // decides what 401 or 429 means to its client).
  flight_refusal refusal() const;

 private:
  std::shared_ptr<impl> impl_;
};

// Threads: a flight's fetch runs on the executor it was started on and ends there, and with it
// goes everything the flight holds that belongs to an io_context (the upstream response, a timer,
// its hold on the table's client). The cache's writer thread, which commits the body, only posts
// the outcome back to that executor; it never holds a flight. A flight that readers still hold
// keeps nothing of an io_context, so the last reader may let go of it on any thread.
class flight_table {
 public:
  flight_table(std::shared_ptr<cache::store> store, std::shared_ptr<client> upstream);
  // Waits until every commit handed to the cache's writer thread has been posted back to its
  // flight's executor (the writer thread does that without the I/O threads), so that none
  // reaches an io_context destroyed after the table. Destroy the table before the io_contexts its
  // flights run on; flights still running then end with their io_context.
  ~flight_table();

  // Returns the running flight for spec.id, or starts one on `ex`; `joined` tells which (a
  // joined request is COALESCED in the access log). The flight leaves the table when its fetch
  // ends, committed or failed: on `ex`, in the handler that then lets go of what the fetch held;
  // committed, only once readers see the blob in the cache. So a caller that looked in the cache
  // before a flight committed, and comes here after it left, is not sent upstream again: it gets
  // a flight verified over the cached blob (`joined` true).
  flight join(const fetch_spec& spec, asio::any_io_executor ex, bool& joined);

  // Flights running now.
  std::size_t size() const;

  struct state;  // shared with the flights; defined in flight.cpp

 private:
  std::shared_ptr<state> state_;
};

}  // namespace pantry::proxy
