#pragma once

// A request body small enough to hold in memory whole (a JSON document of a few fields), read by
// routes that parse it as one piece.

#include "pantry/error.h"
#include "pantry/proxy/server.h"

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace pantry::proxy {

// Reads the body of ex's request whole. nullopt when it is longer than `limit` bytes (the rest is
// left unread: answer 413, and the server closes the connection if too much is left); an error
// when the client went away or stalled (the caller resets the exchange: no one to answer).
boost::asio::awaitable<result<std::optional<std::string>>> read_small_body(exchange& ex,
                                                                           std::size_t limit);

}  // namespace pantry::proxy
