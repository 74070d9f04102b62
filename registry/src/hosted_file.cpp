#include "hosted_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>
#include <thread>
#include <vector>

namespace pantry::registry::detail {

int write_all(int fd, std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  return 0;
}

result<void> store_pinned_file(cache::store& store, const cache::digest& id,
                               const std::string& media_type, int fd, std::uint64_t size,
                               const std::filesystem::path& path) {
  const auto give_up = std::chrono::steady_clock::now() + kConcurrentWriteWait;
  result<cache::blob_writer> w = error(errc::already_exists, "");
  for (;;) {
    if (store.stat_blob(id)) return store.set_pinned(id, true);
    w = store.begin_blob(id, media_type, size, true);
    if (w || !w.error().is(errc::already_exists)) break;
    if (std::chrono::steady_clock::now() > give_up) {
      return error(errc::io_error, "another upload of " + id.str() + " has been writing it for " +
                                       std::to_string(kConcurrentWriteWait.count()) +
                                       " s; send it again");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!w) return w.error();
  std::vector<std::byte> buf(1 << 20);
  std::uint64_t offset = 0;
  while (offset < size) {
    ssize_t r = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return error(errc::io_error, "cannot read back " + path.string() + ": " +
                                       (r < 0 ? std::strerror(errno) : "short file"));
    }
    if (auto wr = w->write(std::span(buf).first(static_cast<std::size_t>(r))); !wr) {
      return wr.error();
    }
    offset += static_cast<std::uint64_t>(r);
  }
  auto info = w->commit();
  if (!info) return info.error();
  return {};
}

}  // namespace pantry::registry::detail
