#pragma once

// The HTTP side shared by the routes that run steps (the runner's /api/v1/runner/steps, the
// builder's /api/v1/build/run): the control token check, small text answers, JSON bodies, and a
// step's log streamed as newline-delimited JSON while it runs:
//
//   {"type":"report","stream":"out","time":<µs since 1970>,"text":"image: …"}
//   {"type":"line","stream":"out"|"err","time":…,"text":"…"[,"end":"crlf"|"cut"|"eof"]}
//   {"type":"keepalive"}                       after 2 s without a line
//   {"type":"result", …}                       last: what the step's function returned
//   {"type":"error","message":"…"}             last, instead, when it failed
//
// A client that goes away is noticed at the next line or keep-alive, and the step is cancelled.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/server.h"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pantry::orchestrator::runner {

// True when the request carries `Authorization: Bearer <token>` (compared in constant time);
// otherwise answers 401 and returns false.
boost::asio::awaitable<bool> authorized(proxy::exchange& ex, std::string_view token);

// A text/plain answer (a newline is added).
boost::asio::awaitable<void> respond_text(proxy::exchange& ex, proxy::http::status status,
                                          std::string text);

// A JSON answer.
boost::asio::awaitable<void> respond_json(proxy::exchange& ex, proxy::http::status status,
                                          const boost::json::object& body);

// The request body, at most `limit` bytes; nullopt when an answer was sent (413) or the
// connection is gone.
boost::asio::awaitable<std::optional<std::string>> read_body(proxy::exchange& ex,
                                                             std::size_t limit);

// The event line of a log line.
boost::json::object event_json(const step_event& e);

// Answers 200 with the stream above: runs `step` in a coroutine of its own (on the connection's
// executor) with a sink that queues events and a cancel that fires when the client goes away, and
// ends the stream with its result (type "result" added) or its error.
using streamed_step = std::function<boost::asio::awaitable<result<boost::json::object>>(
    step_event_sink sink, std::shared_ptr<step_cancel> cancel)>;
boost::asio::awaitable<void> stream_step(proxy::exchange& ex, streamed_step step);

}  // namespace pantry::orchestrator::runner
