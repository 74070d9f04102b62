// Steps run in real containers with runc: output, environment, limits, seccomp, timeouts and
// cancels, secrets, networks, overlay roots, and what is left behind after each run and after a
// crash. The root file system is busybox-static's /bin/busybox with its applets as symlinks. Every
// test has its own temporary directory, runc root and cgroup parent, so tests run in parallel.
// Needs root, runc and busybox-static (skipped otherwise).

#include "pantry/orchestrator/runner/container.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using steady = std::chrono::steady_clock;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kBusybox = "/bin/busybox";

spawn_options command(std::string program, std::vector<std::string> args) {
  spawn_options o;
  o.program = std::move(program);
  o.args = std::move(args);
  return o;
}

void write_file(const fs::path& p, std::string_view text, fs::perms perms = fs::perms(0644)) {
  std::ofstream(p, std::ios::binary) << text;
  fs::permissions(p, perms);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A root file system of busybox-static: /bin/busybox, a symlink per applet, /etc/passwd and
// /etc/group with root and an unprivileged "app" user.
void make_busybox_root(const fs::path& root) {
  for (const char* d : {"bin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "home/app"}) {
    fs::create_directories(root / d);
  }
  fs::permissions(root / "tmp", fs::perms(01777));
  fs::copy_file(kBusybox, root / "bin/busybox");
  auto list = run_process(command(kBusybox, {"--list"}));
  ASSERT_TRUE(list && list->status.success());
  std::istringstream applets(list->out);
  for (std::string name; std::getline(applets, name);) {
    if (!name.empty() && name != "busybox") fs::create_symlink("busybox", root / "bin" / name);
  }
  write_file(root / "etc/passwd",
             "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
  write_file(root / "etc/group", "root:x:0:\napp:x:1000:\n");
  ASSERT_EQ(::chown((root / "home/app").c_str(), 1000, 1000), 0);
}

struct captured {
  step_result result;
  std::vector<output_line> lines;

  // The lines of one stream, without timestamps.
  std::vector<std::string> texts(output_stream s = output_stream::out) const {
    std::vector<std::string> out;
    for (const auto& l : lines) {
      if (l.stream == s) out.push_back(l.line.text);
    }
    return out;
  }
  std::string all() const {
    std::string out;
    for (const auto& l : lines)
      out += l.line.text + "\n";
    return out;
  }
};

std::ostream& operator<<(std::ostream& os, const captured& c) {
  const auto& r = c.result;
  os << "exit " << r.exit_code << " signal " << r.signal << " oom " << r.oom_killed << " pids "
     << r.pids_limit_hit << " timed_out " << r.timed_out << " cancelled " << r.cancelled
     << " runc_error \"" << r.runc_error << "\"";
  for (const auto& n : r.notes)
    os << "\n  note: " << n;
  if (r.cleanup_error) os << "\n  cleanup: " << r.cleanup_error->message;
  return os << "\noutput:\n" << c.all();
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runc, mounts, cgroups)";
    if (::access(kRunc, X_OK) != 0 || ::access(kBusybox, X_OK) != 0) {
      GTEST_SKIP() << "needs " << kRunc << " and " << kBusybox << " (busybox-static)";
    }
    char tmpl[] = "/tmp/pantry-container-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    parent_ = "pantry-test-" +
              tmp_.filename().string().substr(std::string("pantry-container-test.").size());
    root_ = tmp_ / "root";
    make_busybox_root(root_);
    options_.runc_root = tmp_ / "runc";
    options_.state_dir = tmp_ / "state";
    options_.cgroup_parent = parent_;
    auto rt = runtime::open(options_);
    ASSERT_TRUE(rt) << rt.error().message;
    runtime_ = std::move(*rt);
  }

  void TearDown() override {
    if (tmp_.empty()) return;
    if (runtime_) {
      auto swept = runtime_->sweep();
      EXPECT_TRUE(swept) << swept.error().message;
      for (const auto& h : runtime_->cgroups().hierarchies())
        ::rmdir((h / parent_).c_str());
    }
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  container_spec spec(std::vector<std::string> argv) {
    container_spec s;
    s.root.directory = root_;
    s.step.argv = std::move(argv);
    s.step.network = network_mode::none;
    return s;
  }

  captured run(container_spec s) {
    captured c;
    auto made = runtime_->create(std::move(s));
    EXPECT_TRUE(made) << made.error().message;
    if (!made) return c;
    auto r = (*made)->run([&](const output_line& l) { c.lines.push_back(l); });
    EXPECT_TRUE(r) << r.error().message;
    if (r) c.result = std::move(*r);
    EXPECT_FALSE(c.result.cleanup_error) << c.result.cleanup_error->message;
    return c;
  }

  // Nothing of any container is left: runc knows none, nothing is mounted under the state
  // directory, no cgroup is under the parent in any hierarchy, the state directory is empty.
  void expect_clean() {
    auto listed =
        run_process(command(kRunc, {"--root", options_.runc_root.string(), "list", "-q"}));
    ASSERT_TRUE(listed) << listed.error().message;
    EXPECT_EQ(listed->out, "") << "runc still lists containers";
    std::string mountinfo = slurp("/proc/self/mountinfo");
    EXPECT_THAT(mounts_under(mountinfo, fs::canonical(options_.state_dir)), IsEmpty());
    auto children = list_children(runtime_->cgroups(), "/" + parent_);
    ASSERT_TRUE(children) << children.error().message;
    EXPECT_THAT(*children, IsEmpty()) << "cgroups left under /" << parent_;
    EXPECT_TRUE(fs::is_empty(options_.state_dir)) << "state directory not empty";
  }

  // Whether the hierarchy can hold a memory+swap limit equal to the memory limit (so that the
  // step cannot escape an OOM kill into swap).
  bool swap_accounted() const { return swap_accounting(runtime_->cgroups(), "/" + parent_); }

  fs::path tmp_;
  fs::path root_;
  std::string parent_;
  runtime_options options_;
  std::unique_ptr<runtime> runtime_;
};

TEST_F(ContainerTest, OutputOfBothStreamsKeepsItsOrderOnOnePipe) {
  auto c = run(spec({"sh", "-c", "echo one; echo two >&2; echo three; echo four >&2; exit 3"}));
  EXPECT_THAT(c.texts(), ElementsAre("one", "two", "three", "four")) << c;
  EXPECT_THAT(c.texts(output_stream::err), IsEmpty());
  EXPECT_EQ(c.result.exit_code, 3) << c;
  EXPECT_EQ(c.result.signal, 0);
  EXPECT_FALSE(c.result.oom_killed);
  EXPECT_FALSE(c.result.timed_out);
  EXPECT_EQ(c.result.runc_error, "");
  EXPECT_GT(c.result.wall_time.count(), 0);
  EXPECT_TRUE(c.result.peak_memory_bytes) << c;
  EXPECT_TRUE(c.result.cpu_seconds) << c;
  // Each line is stamped with the time its bytes arrived.
  for (const auto& l : c.lines) {
    EXPECT_LE(std::chrono::abs(log_clock::now() - l.line.time), std::chrono::minutes(1));
  }
  expect_clean();
}

TEST_F(ContainerTest, SeparateStreamsKeepTheirOwnLines) {
  auto s = spec({"sh", "-c", "echo one; echo two >&2; echo three; printf four >&2"});
  s.output = output_mode::separate;
  auto c = run(std::move(s));
  EXPECT_THAT(c.texts(output_stream::out), ElementsAre("one", "three")) << c;
  EXPECT_THAT(c.texts(output_stream::err), ElementsAre("two", "four")) << c;
  EXPECT_EQ(c.lines.back().line.end, line_end::eof);
  EXPECT_EQ(c.result.exit_code, 0);
  expect_clean();
}

TEST_F(ContainerTest, ImageEnvWorkingDirAndUserAreHonoured) {
  auto s = spec({"sh", "-c", "echo $GREETING; pwd; id -u; id -g; echo $HOME"});
  s.image.env = {"GREETING=hello from the image"};
  s.image.working_dir = "/home/app";
  s.image.user = "app";
  auto c = run(std::move(s));
  EXPECT_THAT(c.texts(),
              ElementsAre("hello from the image", "/home/app", "1000", "1000", "/home/app"))
      << c;
  EXPECT_EQ(c.result.exit_code, 0);
  expect_clean();
}

TEST_F(ContainerTest, NothingOfTheHostEnvironmentIsVisible) {
  ::setenv("PANTRY_CONTAINER_TEST_HOST_ONLY", "leaked", 1);
  auto c = run(spec({"env"}));
  ::unsetenv("PANTRY_CONTAINER_TEST_HOST_ONLY");
  EXPECT_THAT(c.texts(), UnorderedElementsAre(std::string("PATH=") + std::string(kDefaultPath),
                                              "HOSTNAME=pantry", "PIP_NO_CACHE_DIR=1",
                                              "PYTHONUNBUFFERED=1", "HOME=/root"))
      << c;
  expect_clean();
}

TEST_F(ContainerTest, MissingCommandIsRuncsErrorNotTheSteps) {
  auto c = run(spec({"/no/such/program"}));
  EXPECT_NE(c.result.exit_code, 0);
  EXPECT_THAT(c.result.runc_error, HasSubstr("/no/such/program")) << c;
  expect_clean();
}

TEST_F(ContainerTest, AllocatingPastTheMemoryLimitIsOomKilledEvenWhenTheShellExitsZero) {
  // tail keeps the last ten lines; 200 MiB of zeros is one line, so it holds all of it.
  auto s = spec({"sh", "-c", "head -c 200m /dev/zero | tail; echo shell survived; exit 0"});
  s.step.memory_bytes = 32 << 20;
  if (swap_accounted()) s.step.memory_swap_bytes = s.step.memory_bytes;
  auto c = run(std::move(s));
  EXPECT_EQ(c.result.exit_code, 0) << c;
  EXPECT_THAT(c.texts(), Contains("shell survived")) << c;
  EXPECT_TRUE(c.result.oom_killed) << c;
  ASSERT_TRUE(c.result.peak_memory_bytes);
  EXPECT_GE(*c.result.peak_memory_bytes, std::uint64_t{16} << 20);
  EXPECT_LE(*c.result.peak_memory_bytes, std::uint64_t{33} << 20);
  expect_clean();
}

TEST_F(ContainerTest, WithinTheMemoryLimitIsNotOomKilled) {
  auto s = spec({"sh", "-c", "head -c 8m /dev/zero | tail | wc -c"});
  s.step.memory_bytes = 64 << 20;
  auto c = run(std::move(s));
  EXPECT_THAT(c.texts(), ElementsAre("8388608")) << c;
  EXPECT_FALSE(c.result.oom_killed) << c;
  expect_clean();
}

TEST_F(ContainerTest, ForkBombStopsAtThePidsLimit) {
  auto s = spec({"sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 1; echo still here; exit 0"});
  s.step.pids_limit = 32;
  s.timeout = 20s;  // a bound for the test; the shell ends on its own
  auto c = run(std::move(s));
  EXPECT_TRUE(c.result.pids_limit_hit) << c;
  EXPECT_FALSE(c.result.timed_out) << c;
  expect_clean();
}

TEST_F(ContainerTest, SyscallBlockedBySeccompFailsAndSucceedsWithout) {
  fs::copy_file(PANTRY_SECCOMP_PROBE, root_ / "bin/seccomp-probe");
  auto confined = run(spec({"/bin/seccomp-probe"}));
  EXPECT_THAT(confined.texts(), ElementsAre("vmsplice: Operation not permitted")) << confined;
  EXPECT_EQ(confined.result.exit_code, 1);

  auto s = spec({"/bin/seccomp-probe"});
  s.step.seccomp_unconfined = true;
  auto unconfined = run(std::move(s));
  EXPECT_THAT(unconfined.texts(), ElementsAre("vmsplice: ok")) << unconfined;
  EXPECT_EQ(unconfined.result.exit_code, 0);
  expect_clean();
}

TEST_F(ContainerTest, TimeoutKillsTheStep) {
  auto s = spec({"sh", "-c", "echo started; sleep 30; echo not reached"});
  s.timeout = 500ms;
  const auto start = steady::now();
  auto c = run(std::move(s));
  const auto took = steady::now() - start;
  EXPECT_TRUE(c.result.timed_out) << c;
  EXPECT_FALSE(c.result.cancelled);
  EXPECT_EQ(c.result.signal, SIGKILL) << c;
  EXPECT_EQ(c.result.exit_code, 128 + SIGKILL);
  EXPECT_THAT(c.texts(), ElementsAre("started")) << c;
  EXPECT_GE(c.result.wall_time, 500ms);
  EXPECT_LT(took, 5s);
  expect_clean();
}

TEST_F(ContainerTest, StepThatClosesItsOutputStillRunsToItsEndOrItsTimeout) {
  // Longer than kill_grace: the end of the output is not the end of the step.
  const std::string script = "echo closing; exec >/dev/null 2>&1; sleep 3; exit 4";
  auto c = run(spec({"sh", "-c", script}));
  EXPECT_EQ(c.result.exit_code, 4) << c;
  EXPECT_FALSE(c.result.timed_out);
  EXPECT_GE(c.result.wall_time, 3s);
  EXPECT_THAT(c.texts(), ElementsAre("closing"));

  auto s = spec({"sh", "-c", script});
  s.timeout = 500ms;
  auto timed = run(std::move(s));
  EXPECT_TRUE(timed.result.timed_out) << timed;
  EXPECT_EQ(timed.result.signal, SIGKILL) << timed;
  EXPECT_LT(timed.result.wall_time, 3s);
  expect_clean();
}

TEST_F(ContainerTest, CancelFromAnotherThreadStopsTheStepWithinASecond) {
  auto made = runtime_->create(spec({"sh", "-c", "echo started; sleep 30"}));
  ASSERT_TRUE(made) << made.error().message;
  container& c = **made;
  std::promise<void> started;
  std::atomic<bool> announced{false};
  steady::time_point cancelled_at;
  std::thread canceller([&] {
    started.get_future().wait();
    cancelled_at = steady::now();
    c.cancel();
  });
  auto r = c.run([&](const output_line& l) {
    if (l.line.text == "started" && !announced.exchange(true)) started.set_value();
  });
  const auto returned_at = steady::now();
  canceller.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->cancelled);
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(returned_at - cancelled_at, 1s)
      << std::chrono::duration<double>(returned_at - cancelled_at).count() << " s";
  EXPECT_FALSE(r->cleanup_error);
  expect_clean();
}

TEST_F(ContainerTest, CancelBeforeRunStartsNothing) {
  auto made = runtime_->create(spec({"sh", "-c", "echo should not run"}));
  ASSERT_TRUE(made) << made.error().message;
  (*made)->cancel();
  std::vector<std::string> seen;
  auto r = (*made)->run([&](const output_line& l) { seen.push_back(l.line.text); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->cancelled);
  EXPECT_THAT(seen, IsEmpty());
  auto again = (*made)->run([](const output_line&) {});
  EXPECT_FALSE(again);
  expect_clean();
}

TEST_F(ContainerTest, SecretIsAFileInTheContainerAndNeverInTheOutput) {
  const std::string value = "s3cr3t-t0ken-value";
  write_file(tmp_ / "token.txt", value + "\n", fs::perms(0600));
  auto s = spec({"sh", "-c",
                 "cat /run/secrets/token; echo \"inline:$(cat /run/secrets/token):end\"; "
                 "ls -ln /run/secrets/token; env; id -u"});
  s.image.user = "app";
  s.step.secrets = {{"token", (tmp_ / "token.txt").string(), ""}};
  auto c = run(std::move(s));
  EXPECT_EQ(c.result.exit_code, 0) << c;
  EXPECT_THAT(c.all(), Not(HasSubstr(value))) << c;
  EXPECT_THAT(c.all(), Not(HasSubstr("s3cr3t"))) << c;
  const auto texts = c.texts();
  ASSERT_GE(texts.size(), 3u) << c;
  EXPECT_EQ(texts[0], std::string(kMask)) << c;
  EXPECT_EQ(texts[1], "inline:" + std::string(kMask) + ":end") << c;
  // Readable by the step's user only: mode 0400, owned by uid 1000.
  EXPECT_THAT(texts[2], HasSubstr("-r--------")) << c;
  EXPECT_THAT(texts[2], HasSubstr(" 1000 ")) << c;
  EXPECT_EQ(texts.back(), "1000");
  expect_clean();
}

// A TCP listener on the host's 127.0.0.1 that accepts one connection at a time and writes
// `greeting` to it.
class host_listener {
 public:
  explicit host_listener(std::string greeting) : greeting_(std::move(greeting)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    serve(fd_);
  }
  // Serves on `fd` (a listening socket, say one made inside a namespace) instead.
  host_listener(int fd, std::string greeting) : fd_(fd), greeting_(std::move(greeting)) {
    serve(fd_);
  }
  ~host_listener() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

 private:
  void serve(int fd) {
    thread_ = std::thread([this, fd] {
      while (true) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0 || (p.revents & (POLLHUP | POLLERR | POLLNVAL))) return;
        const int conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          return;
        }
        ++accepted_;
        (void)!::write(conn, greeting_.data(), greeting_.size());
        ::close(conn);
      }
    });
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::string greeting_;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST_F(ContainerTest, IsolatedAndNoneNetworksReachNoHostServer) {
  host_listener host("hello from the host\n");
  const std::string connect =
      "nc -w 2 127.0.0.1 " + std::to_string(host.port()) + " </dev/null; echo nc=$?";

  auto s = spec({"sh", "-c", "ls /sys/class/net; ip -o link show lo; " + connect});
  s.step.network = network_mode::isolated;
  auto isolated = run(std::move(s));
  const auto texts = isolated.texts();
  ASSERT_GE(texts.size(), 3u) << isolated;
  EXPECT_EQ(texts[0], "lo") << isolated;  // the only interface
  EXPECT_THAT(texts[1], HasSubstr(",UP")) << isolated;
  EXPECT_THAT(isolated.all(), Not(HasSubstr("hello from the host"))) << isolated;
  EXPECT_EQ(texts.back(), "nc=1") << isolated;
  EXPECT_EQ(host.accepted(), 0);

  // network none: runc makes the namespace (and brings its lo up, as docker's none has it).
  auto n = spec({"sh", "-c", "ls /sys/class/net; " + connect});
  n.step.network = network_mode::none;
  auto none = run(std::move(n));
  EXPECT_THAT(none.texts(), Contains("lo")) << none;
  EXPECT_EQ(none.texts().front(), "lo") << none;
  EXPECT_EQ(none.texts().back(), "nc=1") << none;
  EXPECT_THAT(none.all(), Not(HasSubstr("hello from the host"))) << none;

  // The same command on the host's network does reach it: the listener works.
  auto h = spec({"sh", "-c", connect});
  h.step.network = network_mode::host;
  auto on_host = run(std::move(h));
  EXPECT_THAT(on_host.texts(), ElementsAre("hello from the host", "nc=0")) << on_host;
  EXPECT_EQ(host.accepted(), 1);
  expect_clean();
}

TEST_F(ContainerTest, IsolatedNetworkReachesAListenerPantryOpensInsideIt) {
  auto s = spec({"sh", "-c", "nc -w 2 127.0.0.1 8585 </dev/null; echo nc=$?"});
  s.step.network = network_mode::isolated;
  auto made = runtime_->create(std::move(s));
  ASSERT_TRUE(made) << made.error().message;
  const network_namespace* ns = (*made)->network();
  ASSERT_NE(ns, nullptr);
  auto listener = ns->listen_tcp("127.0.0.1", 8585);
  ASSERT_TRUE(listener) << listener.error().message;
  EXPECT_EQ(listener->port, 8585);
  host_listener inside(listener->fd.release(), "hello from pantry\n");
  captured c;
  auto r = (*made)->run([&](const output_line& l) { c.lines.push_back(l); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(c.texts(), ElementsAre("hello from pantry", "nc=0")) << c;
  EXPECT_EQ(inside.accepted(), 1);
  expect_clean();
}

TEST(NetworkNamespaceTest, ListenerInsideIsNotOnTheHost) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare, setns)";
  auto ns = network_namespace::create(true);
  ASSERT_TRUE(ns) << ns.error().message;
  EXPECT_THAT(ns->path(), HasSubstr("/proc/" + std::to_string(::getpid()) + "/fd/"));
  auto listener = ns->listen_tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener) << listener.error().message;
  ASSERT_NE(listener->port, 0);
  auto connect = [&] {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(listener->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    ::close(s);
    return rc == 0 ? 0 : err;
  };
  EXPECT_EQ(connect(), ECONNREFUSED) << "the host's loopback reached the namespace's";
  int inside = -1;
  ASSERT_TRUE(ns->run_inside([&] { inside = connect(); }));
  EXPECT_EQ(inside, 0);
  auto bad = ns->listen_tcp("localhost", 0);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::invalid_argument));
}

TEST_F(ContainerTest, OverlayRootKeepsTheLayersUntouched) {
  const fs::path top = tmp_ / "layer-top";
  fs::create_directories(top / "etc");
  write_file(top / "etc/motd", "from the top layer\n");
  auto s = spec({"sh", "-c",
                 "cat /etc/motd; echo written > /new-file; cat /new-file; rm /bin/vi; "
                 "df -k / | tail -1"});
  s.root.directory.clear();
  s.root.layers = {root_, top};
  s.root.tmpfs_size_bytes = 16 << 20;
  auto c = run(std::move(s));
  const auto texts = c.texts();
  ASSERT_EQ(texts.size(), 3u) << c;
  EXPECT_EQ(texts[0], "from the top layer");
  EXPECT_EQ(texts[1], "written");
  EXPECT_THAT(texts[2], HasSubstr("16384")) << "the upper directory is on a 16 MiB tmpfs";
  EXPECT_FALSE(fs::exists(root_ / "new-file"));
  EXPECT_FALSE(fs::exists(top / "new-file"));
  EXPECT_TRUE(fs::is_symlink(root_ / "bin/vi"));
  expect_clean();
}

TEST_F(ContainerTest, OverlayRootWithScratchOnDisk) {
  auto s = spec({"sh", "-c", "echo written > /new-file; cat /new-file"});
  s.root.directory.clear();
  s.root.layers = {root_};
  auto c = run(std::move(s));
  EXPECT_THAT(c.texts(), ElementsAre("written")) << c;
  EXPECT_FALSE(fs::exists(root_ / "new-file"));
  expect_clean();
}

TEST_F(ContainerTest, KeptUpperDirectoryHoldsWhatTheStepWroteAndDeleted) {
  const fs::path kept = runtime_->options().state_dir / "kept-upper";
  auto s = spec({"sh", "-c", "mkdir -p /opt/app && echo built > /opt/app/out; rm /bin/vi"});
  s.root.directory.clear();
  s.root.layers = {root_};
  s.root.keep_upper = kept;
  auto c = run(std::move(s));
  EXPECT_EQ(c.result.exit_code, 0) << c;
  EXPECT_EQ(slurp(kept / "opt/app/out"), "built\n");
  struct stat st {};
  ASSERT_EQ(::lstat((kept / "bin/vi").c_str(), &st), 0) << "a whiteout for the deleted file";
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == 0) << std::oct << st.st_mode;
  EXPECT_TRUE(fs::is_symlink(root_ / "bin/vi")) << "the layer is untouched";
  fs::remove_all(kept);
  expect_clean();

  auto tmpfs = spec({"true"});
  tmpfs.root.directory.clear();
  tmpfs.root.layers = {root_};
  tmpfs.root.tmpfs_size_bytes = 1 << 20;
  tmpfs.root.keep_upper = kept;
  auto made = runtime_->create(std::move(tmpfs));
  ASSERT_FALSE(made) << "an upper directory on a tmpfs cannot be kept";
  EXPECT_TRUE(made.error().is(errc::invalid_argument)) << made.error().message;
  expect_clean();
}

TEST_F(ContainerTest, BadSpecLeavesNothingBehind) {
  auto s = spec({"true"});
  s.root.directory.clear();
  s.root.layers = {root_};
  s.root.tmpfs_size_bytes = 1 << 20;
  s.step.memory_bytes = 1024;  // below runtime_config's minimum: refused after the mounts
  auto made = runtime_->create(std::move(s));
  ASSERT_FALSE(made);
  EXPECT_TRUE(made.error().is(errc::invalid_argument)) << made.error().message;
  expect_clean();

  auto dup = spec({"true"});
  dup.id = "twice";
  auto first = runtime_->create(dup);
  ASSERT_TRUE(first) << first.error().message;
  auto second = runtime_->create(dup);
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(errc::already_exists)) << second.error().message;
  first->reset();
  expect_clean();
}

// The processes whose parent is `pid` (from /proc/*/stat).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = slurp(entry.path() / "stat");
    // PID (COMM) STATE PPID …; COMM may hold spaces and parentheses.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// The pantry of the crash tests: a child process that starts `sh -c 'echo up; sleep 1000'` in a
// container (overlay root on tmpfs, isolated network), writes `ready` once the step said "up",
// and waits to be SIGKILLed by the test. With `foreground_runc` it runs the bundle with a plain
// `runc run` in the foreground instead of container::run(), for the test to kill that runc too.
[[noreturn]] void crashing_pantry(const runtime_options& options, const fs::path& root,
                                  const fs::path& ready, bool foreground_runc) {
  auto rt = runtime::open(options);
  if (!rt) _exit(10);
  container_spec s;
  s.id = "crashed";
  s.root.layers = {root};
  s.root.tmpfs_size_bytes = 8 << 20;
  s.step.argv = {"sh", "-c", "echo up; sleep 1000"};
  s.step.pids_limit = 64;
  auto made = (*rt)->create(std::move(s));
  if (!made) _exit(11);
  auto on_output = [&](std::string_view text) {
    if (text.find("up") != std::string_view::npos) std::ofstream(ready) << "up";
  };
  if (foreground_runc) {
    auto p = process::spawn(command(kRunc, {"--root", options.runc_root.string(), "run", "--bundle",
                                            (*made)->bundle_dir().string(), "crashed"}));
    if (!p) _exit(12);
    (void)p->pump([&](output_stream, std::string_view chunk) { on_output(chunk); });
  } else {
    (void)(*made)->run([&](const output_line& l) { on_output(l.line.text); });
  }
  _exit(13);
}

// Starts crashing_pantry in a child process and returns its pid once the step runs.
pid_t start_crashing_pantry(const runtime_options& options, const fs::path& root,
                            const fs::path& ready, bool foreground_runc) {
  const pid_t child = ::fork();
  if (child == 0) crashing_pantry(options, root, ready, foreground_runc);
  const auto deadline = steady::now() + 30s;
  while (child > 0 && !fs::exists(ready) && steady::now() < deadline)
    std::this_thread::sleep_for(20ms);
  return child;
}

// Reaps the processes reparented to the test (a subreaper, as pantry is) and left as zombies.
void reap_orphans() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

class SweepAfterCrashTest : public ContainerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SweepAfterCrashTest, RemovesWhatAKilledPantryLeft) {
  const bool foreground_runc = GetParam();
  const fs::path ready = tmp_ / "ready";
  const pid_t child = start_crashing_pantry(options_, root_, ready, foreground_runc);
  ASSERT_GT(child, 0);
  ASSERT_TRUE(fs::exists(ready)) << "the step never started";

  // pantry dies, and the runc run it started when there is one.
  const std::vector<pid_t> children = children_of(child);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  if (foreground_runc) {
    ASSERT_EQ(children.size(), 1u) << "the killed pantry had no runc run child";
    ASSERT_EQ(::kill(children[0], SIGKILL), 0);
  }

  // Left behind: the running container, its mounts, its cgroups, its state directory.
  auto listed = run_process(command(kRunc, {"--root", options_.runc_root.string(), "list"}));
  ASSERT_TRUE(listed);
  EXPECT_THAT(listed->out, HasSubstr("crashed"));
  EXPECT_THAT(listed->out, HasSubstr("running"));
  EXPECT_THAT(mounts_under(slurp("/proc/self/mountinfo"), fs::canonical(options_.state_dir)),
              Not(IsEmpty()));
  auto children_left = list_children(runtime_->cgroups(), "/" + parent_);
  ASSERT_TRUE(children_left);
  EXPECT_THAT(*children_left, ElementsAre("crashed"));

  // The restarted pantry sweeps.
  auto restarted = runtime::open(options_);
  ASSERT_TRUE(restarted) << restarted.error().message;
  auto report = (*restarted)->sweep();
  reap_orphans();
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_THAT(report->containers, ElementsAre("crashed"));
  EXPECT_EQ(report->mounts.size(), 2u) << "the overlay root and its scratch tmpfs";
  expect_clean();
}

INSTANTIATE_TEST_SUITE_P(PantryOnlyOrPantryAndRunc, SweepAfterCrashTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "ForegroundRuncKilledToo" : "DetachedStep";
                         });

TEST_F(ContainerTest, SweepLeavesOtherRuncRootsAndCgroupsAlone) {
  // A container of "another tool": its own runc root and cgroup parent.
  runtime_options other = options_;
  other.runc_root = tmp_ / "other-runc";
  other.state_dir = tmp_ / "other-state";
  other.cgroup_parent = parent_ + "-other";
  auto other_rt = runtime::open(other);
  ASSERT_TRUE(other_rt) << other_rt.error().message;
  auto s = spec({"sh", "-c", "echo up; sleep 30"});
  s.timeout = 20s;
  auto made = (*other_rt)->create(std::move(s));
  ASSERT_TRUE(made) << made.error().message;
  std::promise<void> up;
  std::thread runner([&] {
    bool said = false;
    (void)(*made)->run([&](const output_line& l) {
      if (l.line.text == "up" && !said) {
        said = true;
        up.set_value();
      }
    });
  });
  up.get_future().wait();
  auto report = runtime_->sweep();
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_THAT(report->containers, IsEmpty());
  auto listed = run_process(command(kRunc, {"--root", other.runc_root.string(), "list", "-q"}));
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->out, (*made)->id() + "\n") << "the other container must still run";
  (*made)->cancel();
  runner.join();
  made->reset();
  EXPECT_TRUE((*other_rt)->sweep());
  for (const auto& h : (*other_rt)->cgroups().hierarchies())
    ::rmdir((h / other.cgroup_parent).c_str());
  expect_clean();
}

double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms(steady::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Prints, does not assert: the median start-to-exit time of `true` through the runtime (seccomp,
// cgroup limits, a network namespace of pantry's, an overlay root on tmpfs) against plain
// `runc run` of the same bundle, with the runc root and the state directory on disk (the test's
// /tmp) and on a tmpfs (as /run is on most hosts: rmdir on this machine's ext4, mounted with
// discard, takes milliseconds).
TEST_F(ContainerTest, StartToExitOfTrueComparedWithPlainRunc) {
  constexpr int kRuns = 21;
  const fs::path run_tmpfs = tmp_ / "run";
  fs::create_directories(run_tmpfs);
  ASSERT_EQ(::mount("tmpfs", run_tmpfs.c_str(), "tmpfs", 0, "size=64m"), 0) << std::strerror(errno);
  struct unmount_at_end {
    fs::path p;
    ~unmount_at_end() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{run_tmpfs};

  for (const bool on_tmpfs : {false, true}) {
    runtime_options o = options_;
    if (on_tmpfs) {
      o.runc_root = run_tmpfs / "runc";
      o.state_dir = run_tmpfs / "state";
    }
    const fs::path plain_root = (on_tmpfs ? run_tmpfs : tmp_) / "plain-runc";
    auto rt = runtime::open(o);
    ASSERT_TRUE(rt) << rt.error().message;
    auto bench_spec = [&] {
      auto s = spec({"true"});
      s.root.directory.clear();
      s.root.layers = {root_};
      s.root.tmpfs_size_bytes = 64 << 20;
      s.step.network = network_mode::isolated;
      s.step.memory_bytes = 256 << 20;
      s.step.cpus = 1.0;
      s.step.pids_limit = 256;
      return s;
    };
    // Plain runc runs the bundle of a container made the same way (the same config.json:
    // seccomp, limits, the same network namespace, the same overlay root). The two kinds of run
    // alternate, so that the machine's load weighs on both alike.
    auto plain_bundle = (*rt)->create(bench_spec());
    ASSERT_TRUE(plain_bundle) << plain_bundle.error().message;
    std::vector<double> total, create, run_call, runc_part, plain;
    for (int i = 0; i < kRuns; ++i) {
      const auto t0 = steady::now();
      auto made = (*rt)->create(bench_spec());
      ASSERT_TRUE(made) << made.error().message;
      const auto t1 = steady::now();
      auto r = (*made)->run([](const output_line&) {});
      const auto t2 = steady::now();
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_EQ(r->exit_code, 0) << r->runc_error;
      made->reset();
      total.push_back(ms(t2 - t0));
      create.push_back(ms(t1 - t0));
      run_call.push_back(ms(t2 - t1));
      runc_part.push_back(ms(r->wall_time));

      spawn_options p =
          command(kRunc, {"--root", plain_root.string(), "run", "--bundle",
                          (*plain_bundle)->bundle_dir().string(), (*plain_bundle)->id()});
      const auto p0 = steady::now();
      auto out = run_process(p);
      const auto p1 = steady::now();
      ASSERT_TRUE(out) << out.error().message;
      ASSERT_TRUE(out->status.success()) << out->out;
      plain.push_back(ms(p1 - p0));
    }
    plain_bundle->reset();

    std::printf(
        "start-to-exit of `true`, median of %d (seccomp, memory/cpu/pids limits, own netns, "
        "overlay root on tmpfs), runc root and state dir %s:\n"
        "  pantry create+run+remove: %.1f ms (create %.1f, run() %.1f: start to exit %.1f, then "
        "accounting and removal)\n"
        "  plain `runc run` of the same bundle: %.1f ms; ratio %.2f\n",
        kRuns, on_tmpfs ? "on a tmpfs" : "on disk", median_ms(total), median_ms(create),
        median_ms(run_call), median_ms(runc_part), median_ms(plain),
        median_ms(total) / median_ms(plain));
  }
  expect_clean();
}

}  // namespace
}  // namespace pantry::orchestrator::runner
