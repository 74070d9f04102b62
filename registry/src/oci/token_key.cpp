// The registry token key kept in the data dir (service.h).

#include "pantry/registry/oci/service.h"

#include <openssl/rand.h>
#include <boost/algorithm/hex.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace pantry::registry::oci {
namespace {

constexpr std::string_view kFileName = "registry-token.key";
constexpr std::size_t kHexChars = 64;

bool is_key_text(std::string_view s) {
  return s.size() == kHexChars && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string errno_text(int e) {
  return std::strerror(e);
}

// The key in `path`, or an error that names the file.
result<std::string> read_key(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return error(errc::io_error,
                 "cannot read the registry token key " + path.string() + ": " + errno_text(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string key = text.str();
  if (!key.empty() && key.back() == '\n') key.pop_back();
  if (!is_key_text(key)) {
    return error(errc::invalid_argument,
                 "the registry token key " + path.string() + " is not " +
                     std::to_string(kHexChars) +
                     " lowercase hex characters; delete it (pantry makes a new one, and tokens "
                     "issued before stop working) or set oci.hosted.token_key");
  }
  return key;
}

}  // namespace

result<std::string> data_dir_token_key(const std::filesystem::path& data_dir) {
  const auto path = data_dir / kFileName;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return read_key(path);

  unsigned char raw[kHexChars / 2];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return error(errc::io_error, "no randomness for a new registry token key");
  }
  std::string key;
  boost::algorithm::hex_lower(std::begin(raw), std::end(raw), std::back_inserter(key));
  // Written to a temporary file and linked into place: a crash leaves the whole key or none,
  // and of two processes racing, the second to link finds the first's key and uses it.
  const auto tmp = data_dir / (std::string(kFileName) + ".tmp." + std::to_string(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return error(errc::io_error, "cannot write a new registry token key in " + data_dir.string() +
                                     ": " + errno_text(errno));
  }
  const std::string text = key + "\n";
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       ::fsync(fd) == 0;
  const int write_errno = errno;
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return error(errc::io_error, "cannot write a new registry token key " + tmp.string() + ": " +
                                     errno_text(write_errno));
  }
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked != 0) {
    if (link_errno == EEXIST) return read_key(path);
    return error(errc::io_error, "cannot place the registry token key at " + path.string() + ": " +
                                     errno_text(link_errno));
  }
  return key;
}

}  // namespace pantry::registry::oci
