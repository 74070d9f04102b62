#include "pantry/proxy/small_body.h"

#include <span>
#include <vector>

namespace pantry::proxy {

boost::asio::awaitable<result<std::optional<std::string>>> read_small_body(exchange& ex,
                                                                           std::size_t limit) {
  std::string body;
  std::vector<std::byte> buf(16 * 1024);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return n.error();
    if (*n == 0) break;
    body.append(reinterpret_cast<const char*>(buf.data()), *n);
    if (body.size() > limit) co_return std::optional<std::string>();
  }
  co_return std::optional<std::string>(std::move(body));
}

}  // namespace pantry::proxy
