#include "pantry/app/control.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pantry::app {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

bool process_alive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace

fs::path control_file(const fs::path& data_dir) {
  return data_dir / "serve.json";
}

result<std::optional<control_endpoint>> find_control(const fs::path& data_dir) {
  const fs::path file = control_file(data_dir);
  std::ifstream in(file);
  if (!in) {
    if (errno == ENOENT) return std::optional<control_endpoint>();
    return error(errc::io_error, "cannot read " + file.string() + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto v = json::parse(text.str(), ec);
  auto bad = [&] {
    return error(errc::invalid_argument,
                 file.string() +
                     " is not what `pantry serve` writes there; remove it if no pantry "
                     "serves this data dir");
  };
  if (ec || !v.is_object()) return bad();
  const auto& o = v.get_object();
  auto url = o.if_contains("url");
  auto token = o.if_contains("token");
  auto pid = o.if_contains("pid");
  if (!url || !url->is_string() || !token || !token->is_string() || !pid || !pid->is_int64()) {
    return bad();
  }
  control_endpoint ep{std::string(url->get_string()), std::string(token->get_string()),
                      static_cast<long>(pid->get_int64())};
  if (!process_alive(ep.pid)) return std::optional<control_endpoint>();
  return std::optional<control_endpoint>(std::move(ep));
}

result<void> publish_control(const fs::path& data_dir, const control_endpoint& ep) {
  const fs::path file = control_file(data_dir);
  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  json::object o{{"url", ep.url}, {"token", ep.token}, {"pid", static_cast<std::int64_t>(ep.pid)}};
  const std::string text = json::serialize(o) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return error(errc::io_error, "cannot write " + tmp.string() + ": " + std::strerror(errno));
  }
  ::fchmod(fd, 0600);  // an existing file keeps its mode through O_TRUNC
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return error(errc::io_error, "cannot write " + tmp.string() + ": " + std::strerror(e));
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return error(errc::io_error, "cannot rename " + tmp.string() + " to " + file.string() + ": " +
                                     std::strerror(e));
  }
  return {};
}

void withdraw_control(const fs::path& data_dir, long pid) noexcept {
  try {
    auto found = find_control(data_dir);
    if (found && *found && (*found)->pid == pid) ::unlink(control_file(data_dir).c_str());
  } catch (...) {
  }
}

std::string new_control_token() {
  unsigned char bytes[32];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) std::abort();  // no kernel randomness: nothing safe to fall back on
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::string loopback_url(const std::string& host, unsigned port) {
  std::string h = host;
  if (h.empty() || h == "0.0.0.0") {
    h = "127.0.0.1";
  } else if (h == "::" || h == "[::]") {
    h = "[::1]";
  } else if (h.find(':') != std::string::npos && !h.starts_with('[')) {
    h = "[" + h + "]";
  }
  return "http://" + h + ":" + std::to_string(port);
}

}  // namespace pantry::app
