#include "empty_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace pantry::orchestrator::coordinator::detail {

using runner::unique_fd;

result<unique_fd> open_empty_dir(const std::filesystem::path& dir, std::string_view what) {
  const std::string label(what);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return error(errc::io_error, label + ": mkdir: " + std::strerror(errno));
  }
  unique_fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return error(errc::io_error, label + ": " + std::strerror(errno));
  unique_fd probe(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  DIR* d = probe ? ::fdopendir(probe.get()) : nullptr;
  if (d == nullptr) return error(errc::io_error, label + ": " + std::strerror(errno));
  probe.release();  // the DIR owns it now
  bool empty = true;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  if (!empty) return error(errc::already_exists, label + ": the directory is not empty");
  return fd;
}

}  // namespace pantry::orchestrator::coordinator::detail
