// The assembly of `pantry serve`: an app on 127.0.0.1 port 0 over a temporary data dir, offline,
// spoken to with a plain socket.

#include "pantry/app/app.h"
#include "pantry/cache/store.h"
#include "unit/log_capture.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pantry::app {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A directory under /tmp, removed with the object.
class temp_dir {
 public:
  temp_dir() {
    char tmpl[] = "/tmp/pantry-app-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The built-in config, on any free port of 127.0.0.1, over `data_dir`, with no upstream asked.
config::config test_config(const std::string& data_dir) {
  config::config c = config::defaults();
  c.listen.host = "127.0.0.1";
  c.listen.port = 0;
  c.data_dir = data_dir;
  c.server.threads = 2;
  c.server.access_log = false;
  c.pypi.offline = true;
  return c;
}

// Sends `GET target` with `Connection: close` and returns the whole response as the server
// wrote it, or what went wrong as "error: …".
std::string http_get(std::uint16_t port, std::string_view target) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::string("error: socket: ") + std::strerror(errno);
  timeval tv{10, 0};  // a broken server fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    out = std::string("error: connect: ") + std::strerror(errno);
  } else {
    std::string req =
        "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      out = std::string("error: send: ") + std::strerror(errno);
    } else {
      char buf[4096];
      for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
          out = std::string("error: recv: ") + std::strerror(errno) + " after: " + out;
          break;
        }
        out.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
}

// An app whose run() runs on a thread of its own until finish().
class running_app {
 public:
  explicit running_app(std::unique_ptr<app> a)
      : app_(std::move(a)), thread_([this] { result_ = app_->run(); }) {}
  ~running_app() {
    if (thread_.joinable()) finish();
  }

  std::uint16_t port() const { return app_->port(); }

  // Stops the app, waits for run() and destroys the app; returns what run() returned.
  result<void> finish() {
    app_->stop();
    thread_.join();
    app_.reset();
    return *result_;
  }

 private:
  std::unique_ptr<app> app_;
  std::optional<result<void>> result_;  // written by thread_, read after joining it
  std::thread thread_;                  // last: it uses the members above
};

// True iff the data dir's owner lock can be taken now (and releases it again).
::testing::AssertionResult data_dir_is_free(const std::string& dir) {
  cache::options opt;
  opt.data_dir = dir;
  opt.mode = cache::open_mode::owner;
  auto s = cache::store::open(opt);
  if (s) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the data dir is still held: " << s.error().message;
}

TEST(AppTest, ServesHealthzAndMetricsThenStopsAndReleasesTheDataDir) {
  temp_dir dir;
  auto created = app::create(test_config(dir.path()));
  ASSERT_TRUE(created) << created.error().message;
  ASSERT_NE((*created)->port(), 0);
  running_app running(std::move(*created));

  std::string health = http_get(running.port(), "/healthz");
  EXPECT_THAT(health, StartsWith("HTTP/1.1 200 "));
  EXPECT_THAT(health, HasSubstr("\r\n\r\nok"));
  std::string metrics = http_get(running.port(), "/metrics");
  EXPECT_THAT(metrics, StartsWith("HTTP/1.1 200 "));
  EXPECT_THAT(metrics, HasSubstr("\npantry_cache_bytes 0"));
  EXPECT_THAT(metrics, HasSubstr("\npantry_upstream_flights 0"));
  // The services installed their routes: /v2/ is the registry's version check (open while no
  // hosted user is configured), where a server without tenants answers 404.
  EXPECT_THAT(http_get(running.port(), "/v2/"), StartsWith("HTTP/1.1 200 "));

  auto stopped = running.finish();
  EXPECT_TRUE(stopped) << stopped.error().message;
  EXPECT_TRUE(data_dir_is_free(dir.path()));
}

TEST(AppTest, ReloadAppliesLiveSettingsRefusesABadFileAndKeepsRestartOnlyOnes) {
  temp_dir dir;
  const config::config start = test_config(dir.path());
  auto created = app::create(start);
  ASSERT_TRUE(created) << created.error().message;
  app& a = **created;
  config::config next = start;
  std::optional<error> broken;
  a.set_config_source({"pantry.yaml", [&](const std::string& file) -> result<config::config> {
                         EXPECT_EQ(file, "pantry.yaml");
                         if (broken) return *broken;
                         return next;
                       }});
  running_app running(std::move(*created));
  ASSERT_THAT(http_get(running.port(), "/v2/"), StartsWith("HTTP/1.1 200 "));

  // A hosted user: /v2/ now asks for a login.
  next.oci.hosted.users = {{"ci", "ci-token-0123456789abcdef"}};
  config::reload_report r = a.reload();
  EXPECT_EQ(r.outcome, config::reload_outcome::applied) << r.error;
  EXPECT_EQ(r.changed, std::vector<std::string>{"oci.hosted.users"});
  EXPECT_THAT(http_get(running.port(), "/v2/"), StartsWith("HTTP/1.1 401 "));

  // A file that does not read: refused, the user stays.
  broken = error(errc::config_error, "pantry.yaml:3:12: cache.max_size: \"lots\" is not a size");
  r = a.reload();
  EXPECT_EQ(r.outcome, config::reload_outcome::refused);
  EXPECT_EQ(r.error, broken->message);
  EXPECT_THAT(http_get(running.port(), "/v2/"), StartsWith("HTTP/1.1 401 "));
  std::string ready = http_get(running.port(), "/readyz");
  EXPECT_THAT(ready, StartsWith("HTTP/1.1 200 "));
  EXPECT_THAT(ready, HasSubstr("\"valid\":false"));
  EXPECT_THAT(ready, HasSubstr("pantry.yaml:3:12: cache.max_size"));
  broken.reset();

  // A new port and a new quota wait for a restart; the rest (no user any more) is applied.
  next.listen.port = 1;
  next.cache.max_size = start.cache.max_size * 4;
  next.oci.hosted.users.clear();
  r = a.reload();
  EXPECT_EQ(r.outcome, config::reload_outcome::needs_restart);
  ASSERT_EQ(r.needs_restart.size(), 2u);
  EXPECT_EQ(r.needs_restart[0].key, "listen");
  EXPECT_EQ(r.needs_restart[0].wanted, "127.0.0.1:1");
  EXPECT_EQ(r.needs_restart[1].key, "cache.max_size");
  EXPECT_EQ(r.changed, std::vector<std::string>{"oci.hosted.users"});
  EXPECT_THAT(http_get(running.port(), "/v2/"), StartsWith("HTTP/1.1 200 "));

  std::string metrics = http_get(running.port(), "/metrics");
  EXPECT_THAT(metrics, HasSubstr("\npantry_config_reloads_total{outcome=\"applied\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("\npantry_config_reloads_total{outcome=\"refused\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("\npantry_config_reloads_total{outcome=\"needs_restart\"} 1"));

  // A lower quota is live (the store's tests show its eviction).
  next.listen.port = start.listen.port;
  next.cache.max_size = start.cache.max_size / 2;
  r = a.reload();
  EXPECT_EQ(r.outcome, config::reload_outcome::applied) << r.error;
  EXPECT_EQ(r.changed, std::vector<std::string>{"cache.max_size"});

  EXPECT_TRUE(running.finish());
}

TEST(AppTest, ReloadChangesTheLogLevelAndTheAccessLogLive) {
  test_util::log_capture log;
  temp_dir dir;
  const config::config start = test_config(dir.path());  // access_log off, log_level info
  set_log_level(start.server.log_level);                 // as `pantry serve` does
  auto created = app::create(start);
  ASSERT_TRUE(created) << created.error().message;
  app& a = **created;
  config::config next = start;
  a.set_config_source({"pantry.yaml", [&](const std::string&) { return next; }});
  running_app running(std::move(*created));
  ASSERT_THAT(http_get(running.port(), "/healthz?before"), StartsWith("HTTP/1.1 200 "));

  next.server.access_log = true;
  next.server.log_level = config::log_level::debug;
  config::reload_report r = a.reload();
  EXPECT_EQ(r.outcome, config::reload_outcome::applied) << r.error;
  EXPECT_EQ(r.changed, (std::vector<std::string>{"server.access_log", "server.log_level"}));
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  ASSERT_THAT(http_get(running.port(), "/healthz?after"), StartsWith("HTTP/1.1 200 "));
  EXPECT_TRUE(log.wait_for("GET /healthz?after 200 ")) << log.dump();

  // At warn the reload's own report (info) is not logged; the access log goes on.
  next.server.log_level = config::log_level::warn;
  r = a.reload();
  EXPECT_EQ(r.changed, std::vector<std::string>{"server.log_level"});
  EXPECT_EQ(spdlog::get_level(), spdlog::level::warn);
  EXPECT_EQ(log.count("pantry serve: reloaded pantry.yaml: changed server.log_level"), 0u)
      << log.dump();
  ASSERT_THAT(http_get(running.port(), "/healthz?at-warn"), StartsWith("HTTP/1.1 200 "));
  EXPECT_TRUE(log.wait_for("GET /healthz?at-warn 200 ")) << log.dump();

  // Back to info: the report is logged again.
  next.server.log_level = config::log_level::info;
  r = a.reload();
  EXPECT_EQ(spdlog::get_level(), spdlog::level::info);
  EXPECT_EQ(log.count("pantry serve: reloaded pantry.yaml: changed server.log_level"), 1u)
      << log.dump();
  EXPECT_TRUE(running.finish());
  EXPECT_EQ(log.count("GET /healthz?before "), 0u) << log.dump();
}

TEST(AppTest, SecondAppOnTheSameDataDirIsRefusedWhileTheFirstRuns) {
  temp_dir dir;
  auto first = app::create(test_config(dir.path()));
  ASSERT_TRUE(first) << first.error().message;
  running_app running(std::move(*first));

  auto second = app::create(test_config(dir.path()));
  ASSERT_FALSE(second) << "a second app opened " << dir.path() << " while the first runs";
  EXPECT_TRUE(second.error().is(errc::locked)) << second.error().message;
  EXPECT_THAT(second.error().message, HasSubstr("process " + std::to_string(::getpid())));
  // The refused app took nothing from the running one.
  EXPECT_THAT(http_get(running.port(), "/healthz"), StartsWith("HTTP/1.1 200 "));

  auto stopped = running.finish();
  EXPECT_TRUE(stopped) << stopped.error().message;
  EXPECT_TRUE(data_dir_is_free(dir.path()));
}

TEST(AppTest, StopBeforeRunMakesRunReturnAtOnce) {
  temp_dir dir;
  auto created = app::create(test_config(dir.path()));
  ASSERT_TRUE(created) << created.error().message;
  (*created)->stop();
  auto ran = (*created)->run();
  EXPECT_TRUE(ran) << ran.error().message;
  created->reset();
  EXPECT_TRUE(data_dir_is_free(dir.path()));
}

TEST(AppTest, AppThatNeverRanReleasesTheDataDir) {
  temp_dir dir;
  {
    auto created = app::create(test_config(dir.path()));
    ASSERT_TRUE(created) << created.error().message;
  }
  EXPECT_TRUE(data_dir_is_free(dir.path()));
}

}  // namespace
}  // namespace pantry::app
