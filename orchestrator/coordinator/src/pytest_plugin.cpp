// The pytest plugin compiled in (pytest_plugin.h).

#include "pantry/orchestrator/coordinator/pytest_plugin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace pantry::orchestrator::coordinator {
namespace detail {
// Generated from pytest/pantry_pytest.py by this folder's CMakeLists.txt.
extern const char kEmbeddedPytestPlugin[];
extern const std::size_t kEmbeddedPytestPluginSize;
}  // namespace detail

std::string_view pytest_plugin_source() noexcept {
  return {detail::kEmbeddedPytestPlugin, detail::kEmbeddedPytestPluginSize};
}

result<void> write_pytest_plugin(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / kPytestPluginFile;
  const std::filesystem::path temp = dir / (std::string(kPytestPluginFile) + ".tmp");
  auto fail = [&](const std::filesystem::path& p, std::string_view what) {
    return error(errc::io_error, "pytest plugin: " + std::string(what) + " " + p.string() +
                                     " failed: " + std::strerror(errno));
  };
  ::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0) return fail(temp, "creating");
  const std::string_view source = pytest_plugin_source();
  std::size_t done = 0;
  while (done < source.size()) {
    const ssize_t n = ::write(fd, source.data() + done, source.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto e = fail(temp, "writing");
      ::close(fd);
      ::unlink(temp.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    auto e = fail(temp, "writing");
    ::unlink(temp.c_str());
    return e;
  }
  // A rename, so that a job starting meanwhile sees the old file or the new one, never half.
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    auto e = fail(path, "renaming to");
    ::unlink(temp.c_str());
    return e;
  }
  return {};
}

}  // namespace pantry::orchestrator::coordinator
