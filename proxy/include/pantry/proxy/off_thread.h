#pragma once

// Blocking work from a coroutine: cache writes, hashing, processes and mounts run on a pool of
// their own, never on an I/O thread, where they would stall every connection of that thread.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <type_traits>

namespace pantry::proxy {

// Runs `f` on `blocking` and resumes the caller on its own executor with f's result.
//
// Why bind_executor: `co_await asio::post(blocking, use_awaitable)` alone completes through the
// coroutine's own executor, so `f` would run on the caller's I/O thread after all; the handler
// bound to `blocking` is what makes the coroutine resume there.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F>> off_thread(boost::asio::any_io_executor blocking,
                                                           F f) {
  auto io = co_await boost::asio::this_coro::executor;
  co_await boost::asio::post(boost::asio::bind_executor(blocking, boost::asio::use_awaitable));
  auto r = f();
  co_await boost::asio::post(boost::asio::bind_executor(io, boost::asio::use_awaitable));
  co_return r;
}

}  // namespace pantry::proxy
