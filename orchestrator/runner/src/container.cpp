#include "pantry/orchestrator/runner/container.h"

#include "host_fs.h"
#include "pantry/text.h"
#include "strings.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <random>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using detail::errno_error;
using detail::invalid;

constexpr std::size_t kMaxSecretSize = std::size_t{1} << 20;
constexpr std::size_t kMaxImageFileSize = std::size_t{4} << 20;  // the image's passwd and group
// runc kill, delete and list return in milliseconds; this only bounds a hung runc.
constexpr auto kRuncCommandTimeout = std::chrono::seconds(30);

// runc's whole environment: nothing of pantry's reaches runc or, through it, the step.
const std::vector<std::string>& runc_environment() {
  static const std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  return env;
}

struct rlimit_type {
  const char* name;
  int resource;
};
constexpr rlimit_type kRlimitTypes[] = {
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

// What every container of a runtime shares; immutable once the runtime is open.
struct host_facts {
  runtime_options options;  // runc_root and state_dir canonical
  cgroup_layout cgroups;
  std::string cgroup_parent;  // "/pantry": absolute, as list_children() takes it
  std::string kernel_release;
  std::map<std::string, std::uint64_t> rlimit_hard;
};

std::string join_args(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

spawn_options runc_command(const host_facts& host, std::vector<std::string> args) {
  spawn_options o;
  o.program = host.options.runc.string();
  o.args = {"--root", host.options.runc_root.string()};
  o.args.insert(o.args.end(), args.begin(), args.end());
  o.env = runc_environment();
  return o;
}

// Runs a short runc command (kill, delete); an error quotes what runc printed.
std::optional<error> runc(const host_facts& host, std::vector<std::string> args) {
  auto out = run_process(runc_command(host, args), kRuncCommandTimeout);
  if (!out) return out.error();
  if (out->timed_out) {
    return error(errc::io_error, "runc " + join_args(args) + " did not return within " +
                                     std::to_string(kRuncCommandTimeout.count()) + " s");
  }
  if (!out->status.success()) {
    return error(errc::io_error, "runc " + join_args(args) + ": " + to_string(out->status) + ": " +
                                     std::string(trim_ascii_space(out->out)));
  }
  return std::nullopt;
}

bool present(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() != fs::file_type::not_found;
}

std::optional<error> make_dir(const fs::path& p, mode_t mode) {
  if (::mkdir(p.c_str(), mode) != 0) {
    const int e = errno;
    return error(e == EEXIST ? errc::already_exists : errc::io_error,
                 "cannot mkdir " + p.string() + ": " + std::strerror(e));
  }
  return std::nullopt;
}

std::string random_id() {
  return "pantry-" + random_hex16();
}

// runc's last error-level message in its --log-format json log, "" when it logged none.
std::string runc_log_error(const fs::path& log) {
  auto text = detail::read_file(log, std::size_t{1} << 20);
  if (!text) return "";
  std::string last;
  for (auto line : detail::split(*text, '\n')) {
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const auto& o = v.get_object();
    auto level = o.if_contains("level");
    auto msg = o.if_contains("msg");
    if (level && msg && level->is_string() && msg->is_string() && level->get_string() == "error") {
      last = std::string(msg->get_string());
    }
  }
  return last;
}

// Waits until `p` has exited (eof), `interrupt_fd` is readable (interrupted) or `deadline`
// passes; does not reap. Errors: errc::io_error when poll fails.
result<pump_status> wait_for_exit(const process& p, int interrupt_fd,
                                  std::optional<steady::time_point> deadline) {
  while (true) {
    std::array<pollfd, 2> fds{pollfd{p.pidfd(), POLLIN, 0}, pollfd{interrupt_fd, POLLIN, 0}};
    int timeout = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - steady::now());
      timeout = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1 << 30));
    }
    const int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errno_error("poll on the step's init", errno);
    if (fds[0].revents != 0) return pump_status::eof;
    if (fds[1].revents != 0) return pump_status::interrupted;
    if (ready == 0) return pump_status::deadline;
  }
}

// The first error of a sequence of cleanup steps that all run whatever fails.
class first_error {
 public:
  void note(std::optional<error> e) {
    if (e && !first_) first_ = std::move(e);
  }
  const std::optional<error>& get() const { return first_; }

 private:
  std::optional<error> first_;
};

class container_impl final : public container {
 public:
  container_impl(std::shared_ptr<const host_facts> host, std::string id, std::string cgroups_path)
      : host_(std::move(host)),
        id_(std::move(id)),
        dir_(host_->options.state_dir / id_),
        cgroups_path_(std::move(cgroups_path)) {}

  ~container_impl() override { (void)remove(); }

  // Everything runtime::create() does for the container after making its directory.
  std::optional<error> prepare(container_spec& spec);

  const std::string& id() const noexcept override { return id_; }
  const fs::path& bundle_dir() const noexcept override { return dir_; }
  const network_namespace* network() const noexcept override { return netns_ ? &*netns_ : nullptr; }
  const std::vector<std::string>& environment() const noexcept override { return environment_; }
  bool has_executable(std::string_view name) const override;
  const std::vector<std::string>& secret_values() const noexcept override { return secrets_; }

  result<step_result> run(const output_sink& sink) override;

  void cancel() noexcept override {
    cancelled_.store(true);
    const std::uint64_t one = 1;
    if (cancel_fd_) (void)!::write(cancel_fd_.get(), &one, sizeof one);
  }

  result<void> remove() override;

 private:
  // The output of one stream: masked first, so that a secret is masked whatever lines it spans.
  struct stream_filter {
    secret_masker masker;
    line_splitter splitter;
  };

  // The step's init, from the pid file `runc run --detach` wrote.
  result<process> adopt_init(const fs::path& pid_file);
  void fill_accounting(step_result& r);

  std::shared_ptr<const host_facts> host_;
  std::string id_;
  fs::path dir_;
  std::string cgroups_path_;
  unique_fd cancel_fd_;  // an eventfd that cancel() makes readable, watched by run()
  std::atomic<bool> cancelled_{false};
  bool ran_ = false;
  std::optional<network_namespace> netns_;
  std::vector<fs::path> mounts_;  // what prepare() mounted, in order
  std::vector<std::string> secrets_;
  std::vector<std::string> environment_;
  fs::path rootfs_;
  fs::path keep_upper_;
  std::chrono::milliseconds timeout_{0};
  output_mode output_ = output_mode::merged;
  std::size_t max_line_ = kDefaultMaxLine;
  std::vector<std::string> notes_;
};

std::optional<error> container_impl::prepare(container_spec& spec) {
  cancel_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!cancel_fd_) return errno_error("container " + id_ + ": eventfd", errno);
  timeout_ = spec.timeout;
  output_ = spec.output;
  max_line_ = spec.max_line;
  step_options& step = spec.step;

  // --- the root file system
  bundle_context context;
  const root_filesystem& root = spec.root;
  if (!root.directory.empty() && !root.layers.empty()) {
    return invalid("container " + id_ + ": the root is a directory or layers, not both");
  }
  if (!root.directory.empty()) {
    std::error_code ec;
    if (!root.directory.is_absolute() || !fs::is_directory(root.directory, ec)) {
      return invalid("container " + id_ + ": root directory " +
                     detail::quoted(root.directory.string()) +
                     " is not an absolute path of a directory");
    }
    context.rootfs = root.directory.string();
  } else if (!root.layers.empty()) {
    if (!root.keep_upper.empty() && (root.tmpfs_size_bytes > 0 || !root.keep_upper.is_absolute())) {
      return invalid("container " + id_ + ": keep_upper " +
                     detail::quoted(root.keep_upper.string()) +
                     " needs an absolute path and the upper directory on disk (no tmpfs)");
    }
    keep_upper_ = root.keep_upper;
    const fs::path rootfs = dir_ / "rootfs";
    const fs::path scratch = dir_ / "scratch";
    for (const auto& d : {rootfs, scratch, dir_ / "layers"}) {
      if (auto e = make_dir(d, 0700)) return e;
    }
    if (root.tmpfs_size_bytes > 0) {
      if (auto e = detail::mount_tmpfs(scratch, root.tmpfs_size_bytes)) return e;
      mounts_.push_back(scratch);
    }
    if (auto e = make_dir(scratch / "upper", 0755)) return e;
    if (auto e = make_dir(scratch / "work", 0700)) return e;
    if (auto e = detail::mount_overlay(rootfs, root.layers, dir_ / "layers", scratch / "upper",
                                       scratch / "work")) {
      return e;
    }
    mounts_.push_back(rootfs);
    context.rootfs = rootfs.string();
  } else {
    return invalid("container " + id_ + ": no root file system (a directory or layers)");
  }

  // --- the image's users, read inside the root so that its symlinks cannot lead out
  for (auto [name, out] :
       {std::pair{"etc/passwd", &context.passwd}, {"etc/group", &context.group}}) {
    auto text = detail::read_in_root(context.rootfs, name, kMaxImageFileSize);
    if (!text) return text.error();
    if (*text) *out = std::move(**text);
  }
  auto user = resolve_user(step.user ? *step.user : spec.image.user, context.passwd, context.group);
  if (!user) return user.error();
  auto env = step_environment(spec.image, step, *user);
  if (!env) return env.error();
  environment_ = std::move(*env);
  rootfs_ = context.rootfs;

  // --- the generated /etc files
  std::string host_resolv;
  if (step.network == network_mode::host) {
    auto text = detail::read_file(host_->options.host_resolv_conf, std::size_t{1} << 20);
    if (text) host_resolv = std::move(*text);
  }
  context.hosts_path = (dir_ / "hosts").string();
  context.hostname_path = (dir_ / "hostname").string();
  context.resolv_conf_path = (dir_ / "resolv.conf").string();
  for (const auto& [path, text] :
       {std::pair{context.hosts_path, hosts_file(step.hostname)},
        {context.hostname_path, hostname_file(step.hostname)},
        {context.resolv_conf_path, resolv_conf(step.network, host_resolv)}}) {
    if (auto e = detail::write_new_file(path, text, 0644)) return e;
  }

  // --- secrets: copies the step's user can read and nobody else, never in the environment
  if (!step.secrets.empty()) {
    const fs::path secrets_dir = dir_ / "secrets";
    if (auto e = make_dir(secrets_dir, 0700)) return e;
    for (auto& s : step.secrets) {
      // runtime_config() words the rules for names; this only keeps the copy in its directory.
      if (s.name.empty() || s.name == "." || s.name == ".." ||
          s.name.find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
        return invalid("secret name " + detail::quoted(s.name) + " is not a file name");
      }
      result<std::string> value = s.value;
      if (!s.source.empty()) {
        value = detail::read_file(s.source, kMaxSecretSize);
      } else if (s.value.size() > kMaxSecretSize) {
        value = invalid("the value is over " + std::to_string(kMaxSecretSize) + " bytes");
      }
      if (!value) {
        return error(value.error().code, "secret " + s.name + ": " + value.error().message);
      }
      const fs::path copy = secrets_dir / s.name;
      if (auto e = detail::write_new_file(copy, *value, 0400, std::pair{user->uid, user->gid})) {
        return e;
      }
      s.source = copy.string();
      // The masker would also mask a value's final newline, and with it a line break of the
      // output: the newline is no part of the secret.
      std::string_view masked = *value;
      if (masked.ends_with('\n')) masked.remove_suffix(1);
      if (masked.ends_with('\r')) masked.remove_suffix(1);
      secrets_.emplace_back(masked);
    }
    const secret_masker masker(secrets_);
    for (std::size_t i : masker.too_short()) {
      notes_.push_back("secret " + step.secrets[i].name + " is shorter than " +
                       std::to_string(kMinSecretLength) + " bytes and is not masked in the output");
    }
  }

  // --- the network namespace pantry listens in
  if (step.network == network_mode::isolated && step.netns_path.empty()) {
    auto ns = network_namespace::create(/*loopback_up=*/true);
    if (!ns) return ns.error();
    netns_.emplace(std::move(*ns));
    step.netns_path = netns_->path();
  }

  // --- config.json
  context.cgroups_path = cgroups_path_;
  context.rlimit_hard = host_->rlimit_hard;
  context.kernel_release = host_->kernel_release;
  // docker's default: a private cgroup namespace on v2, the host's on v1.
  context.cgroup_namespace = host_->cgroups.version == cgroup_version::v2;
  auto config = runtime_config(spec.image, step, context);
  if (!config) return config.error();
  return detail::write_new_file(dir_ / "config.json", boost::json::serialize(*config), 0600);
}

bool container_impl::has_executable(std::string_view name) const {
  std::string_view path = kDefaultPath;
  for (const auto& kv : environment_) {
    if (std::string_view(kv).starts_with("PATH=")) path = std::string_view(kv).substr(5);
  }
  while (!rootfs_.empty()) {
    auto colon = path.find(':');
    auto dir = path.substr(0, colon);
    if (dir.starts_with('/')) {
      std::string rel = std::string(dir.substr(1)) + "/" + std::string(name);
      if (detail::is_executable_in_root(rootfs_, rel)) return true;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return false;
}

result<step_result> container_impl::run(const output_sink& sink) {
  if (ran_) return invalid("container " + id_ + " has already run");
  ran_ = true;
  step_result r;
  r.notes = notes_;
  auto finish = [&]() -> step_result {
    auto removed = remove();
    if (!removed) r.cleanup_error = removed.error();
    return std::move(r);
  };
  auto fail = [&](error e) -> result<step_result> {
    (void)remove();
    return e;
  };
  if (cancelled_.load()) {
    r.cancelled = true;
    return finish();
  }

  std::vector<stream_filter> filters;
  for (int i = 0; i < 2; ++i)
    filters.push_back(stream_filter{secret_masker(secrets_), line_splitter(max_line_)});
  std::vector<log_line> lines;
  auto deliver = [&](output_stream s) {
    for (auto& l : lines)
      sink(output_line{s, std::move(l)});
    lines.clear();
  };
  auto on_chunk = [&](output_stream s, std::string_view chunk) {
    auto& f = filters[static_cast<std::size_t>(s)];
    f.splitter.feed(f.masker.feed(chunk), log_clock::now(), lines);
    deliver(s);
  };

  auto pipe = output_pipe::create(output_);
  if (!pipe) return fail(pipe.error());
  const fs::path log = dir_ / "runc.log";
  const fs::path pid_file = dir_ / "init.pid";
  // Detached, runc hands the step our pipe as it is; in the foreground it would copy stdout and
  // stderr through two pipes of its own and lose their order. The step's init then outlives
  // runc and is reparented to this process, a child subreaper (runtime::open), which reaps it for
  // its exit status.
  spawn_options o =
      runc_command(*host_, {"--log", log.string(), "--log-format", "json", "run", "--detach",
                            "--pid-file", pid_file.string(), "--bundle", dir_.string(), id_});
  o.output_to = &*pipe;
  // ^C at a terminal reaches pantry, which then stops the container itself.
  o.new_process_group = true;
  const auto start = steady::now();
  std::optional<process> init;
  {
    auto runc_run = process::spawn(o);
    pipe->close_writers();
    if (!runc_run) return fail(runc_run.error());
    auto started = runc_run->wait_until(start + kRuncCommandTimeout);
    if (!started) return fail(started.error());
    if (!*started) {
      r.runc_error =
          "runc run did not return within " + std::to_string(kRuncCommandTimeout.count()) + " s";
    } else if (!(*started)->success()) {
      r.runc_error = runc_log_error(log);
      if (r.runc_error.empty()) r.runc_error = "runc run: " + to_string(**started);
    } else {
      auto adopted = adopt_init(pid_file);
      if (adopted) {
        init.emplace(std::move(*adopted));
      } else {
        r.notes.push_back("the step's exit status is unknown: " + adopted.error().message);
      }
    }
  }  // a runc that did not return is killed here

  // Reading the output to its end (every process of the step has closed the pipe); at the
  // timeout or a cancel, the step's init is killed (the kernel kills the rest of its pid
  // namespace), and if even then the output does not end within kill_grace, it is abandoned.
  std::optional<steady::time_point> deadline;
  if (timeout_.count() > 0) deadline = start + timeout_;
  bool killing = false;
  if (!init) {
    // No step to wait for: whatever runc left holding the pipe goes with the container.
    (void)runc(*host_, {"delete", "--force", id_});
    killing = true;
    deadline = steady::now() + host_->options.kill_grace;
  }
  std::optional<error> failed;
  while (true) {
    auto pumped = pipe->pump(on_chunk, deadline, killing ? -1 : cancel_fd_.get());
    if (!pumped) {
      failed = pumped.error();
      break;
    }
    if (*pumped == pump_status::eof) break;
    if (killing) {
      if (init) {
        r.notes.push_back("the step's output did not end within " +
                          std::to_string(host_->options.kill_grace.count()) +
                          " ms of killing it; the rest is not logged");
      }
      break;
    }
    (*pumped == pump_status::interrupted ? r.cancelled : r.timed_out) = true;
    (void)init->signal(SIGKILL);
    killing = true;
    deadline = steady::now() + host_->options.kill_grace;
  }
  pipe->close_readers();
  if (init && !killing && !failed) {
    // The output ended; the step may still run (it closed its stdout and stderr): it still has
    // its time, and a cancel still stops it.
    auto ended = wait_for_exit(*init, cancel_fd_.get(), deadline);
    if (!ended) {
      failed = ended.error();
    } else if (*ended != pump_status::eof) {
      (*ended == pump_status::interrupted ? r.cancelled : r.timed_out) = true;
      (void)init->signal(SIGKILL);
    }
  }
  if (init) {
    auto status = init->wait_until(steady::now() + host_->options.kill_grace);
    if (status && !*status) {
      // Killed, or the wait above failed: it must go before its container is removed.
      (void)init->signal(SIGKILL);
      status = init->wait_until(steady::now() + host_->options.kill_grace);
    }
    if (!status) {
      r.notes.push_back("the step's exit status is unknown: " + status.error().message);
    } else if (*status && (*status)->exited()) {
      r.exit_code = (*status)->code;
    } else if (*status) {
      r.signal = (*status)->signal;
      r.exit_code = 128 + r.signal;
    }
    init.reset();
  }
  r.wall_time = steady::now() - start;

  for (std::size_t i = 0; i < filters.size(); ++i) {
    auto& f = filters[i];
    f.splitter.feed(f.masker.finish(), log_clock::now(), lines);
    f.splitter.finish(lines);
    deliver(static_cast<output_stream>(i));
  }
  if (failed) return fail(*failed);
  fill_accounting(r);
  return finish();
}

result<process> container_impl::adopt_init(const fs::path& pid_file) {
  auto text = detail::read_file(pid_file, 64);
  if (!text) return text.error();
  const std::string_view digits = trim_ascii_space(*text);
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (ec != std::errc() || end != digits.data() + digits.size() || pid <= 0) {
    return error(errc::io_error,
                 "runc's pid file " + pid_file.string() + " holds \"" + *text + "\"");
  }
  // A step that has already ended is a zombie until reaped: still ours to adopt.
  return process::adopt(pid);
}

void container_impl::fill_accounting(step_result& r) {
  auto acc = read_accounting(host_->cgroups, cgroups_path_);
  if (!acc) {
    // runc failed before it made the cgroup, or a hierarchy is not readable.
    r.notes.push_back("no cgroup accounting: " + acc.error().message);
    return;
  }
  r.oom_killed = acc->oom_killed;
  r.pids_limit_hit = acc->pids_limit_hit;
  r.peak_memory_bytes = acc->peak_memory;
  r.cpu_seconds = acc->cpu_seconds;
  for (const auto& m : acc->missing)
    r.notes.push_back("cgroup accounting: " + m + " is missing");
}

result<void> container_impl::remove() {
  first_error errors;
  const fs::path state = host_->options.runc_root / id_;
  if (present(state)) errors.note(runc(*host_, {"delete", "--force", id_}));
  // What runc did not remove: the cgroups of a container it never finished making, processes
  // that outlived it.
  const auto deadline = steady::now() + host_->options.kill_grace;
  for (const auto& dir : cgroup_dirs(host_->cgroups, cgroups_path_))
    errors.note(detail::remove_cgroup(dir, deadline));
  if (present(state) && !errors.get()) {
    // Its processes are gone with the cgroups: runc's record of it is all that is left.
    std::error_code ec;
    fs::remove_all(state, ec);
    if (ec)
      errors.note(error(errc::io_error, "cannot remove " + state.string() + ": " + ec.message()));
  }
  netns_.reset();
  while (!mounts_.empty()) {
    auto e = detail::unmount(mounts_.back());
    errors.note(e);
    if (e) break;
    mounts_.pop_back();
  }
  if (present(dir_)) {
    auto info = detail::read_mountinfo();
    if (!info) {
      errors.note(std::optional<error>(info.error()));
    } else if (auto left = mounts_under(*info, dir_); !left.empty()) {
      // Never remove files through a mount: it could reach an image's layers.
      errors.note(error(errc::io_error, "container " + id_ + ": " + left.front().string() +
                                            " is still mounted; its state directory is kept"));
    } else {
      std::error_code ec;
      if (!keep_upper_.empty() && present(dir_ / "scratch" / "upper")) {
        fs::rename(dir_ / "scratch" / "upper", keep_upper_, ec);
        if (ec) {
          errors.note(error(errc::io_error, "cannot move the upper directory of " + id_ + " to " +
                                                keep_upper_.string() + ": " + ec.message()));
        }
        ec.clear();
      }
      fs::remove_all(dir_, ec);
      if (ec) {
        errors.note(error(errc::io_error, "cannot remove " + dir_.string() + ": " + ec.message()));
      }
    }
  }
  if (errors.get()) return *errors.get();
  return {};
}

class runtime_impl final : public runtime {
 public:
  explicit runtime_impl(std::shared_ptr<const host_facts> host) : host_(std::move(host)) {}
  // The parent cgroup goes with the runtime where it is empty (rmdir removes nothing else): a
  // stopped pantry leaves no directory of its own in the cgroup tree.
  ~runtime_impl() override {
    for (const auto& dir : cgroup_dirs(host_->cgroups, host_->cgroup_parent))
      ::rmdir(dir.c_str());
  }

  result<std::unique_ptr<container>> create(container_spec spec) override;
  result<sweep_report> sweep() override;
  const runtime_options& options() const noexcept override { return host_->options; }
  const cgroup_layout& cgroups() const noexcept override { return host_->cgroups; }

 private:
  std::shared_ptr<const host_facts> host_;
};

result<std::unique_ptr<container>> runtime_impl::create(container_spec spec) {
  std::string id = spec.id.empty() ? random_id() : spec.id;
  auto path = cgroups_path(host_->cgroup_parent, id);
  if (!path) return path.error();
  if (present(host_->options.runc_root / id)) {
    return error(errc::already_exists, "container " + id + " already exists in runc's state");
  }
  if (auto e = make_dir(host_->options.state_dir / id, 0700)) return *e;
  auto c = std::make_unique<container_impl>(host_, std::move(id), std::move(*path));
  if (auto e = c->prepare(spec)) return *e;  // the destructor removes what prepare() made
  return std::unique_ptr<container>(std::move(c));
}

result<sweep_report> runtime_impl::sweep() {
  sweep_report report;
  first_error errors;
  const auto& o = host_->options;
  const auto deadline = [&] { return steady::now() + o.kill_grace; };
  std::error_code ec;

  // Containers in runc's state: running ones whose pantry died, stopped ones never deleted.
  for (fs::directory_iterator it(o.runc_root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string id = it->path().filename().string();
    auto deleted = runc(*host_, {"delete", "--force", id});
    if (present(it->path())) {
      // runc could not: a container it never finished making. Its processes go with its cgroups,
      // and then runc's record of it is all that is left.
      std::optional<error> e;
      if (auto path = cgroups_path(host_->cgroup_parent, id)) {
        for (const auto& dir : cgroup_dirs(host_->cgroups, *path)) {
          if (!e) e = detail::remove_cgroup(dir, deadline());
        }
      }
      std::error_code rm;
      if (!e) fs::remove_all(it->path(), rm);
      if (e || rm) {
        errors.note(deleted);
        errors.note(e);
        continue;
      }
    }
    report.containers.push_back(id);
  }
  if (ec)
    errors.note(error(errc::io_error, "cannot list " + o.runc_root.string() + ": " + ec.message()));

  // Cgroups under the parent that runc no longer knows of.
  auto children = list_children(host_->cgroups, host_->cgroup_parent);
  if (!children) {
    errors.note(std::optional<error>(children.error()));
  } else {
    for (const auto& child : *children) {
      for (const auto& dir : cgroup_dirs(host_->cgroups, host_->cgroup_parent + "/" + child)) {
        if (!present(dir)) continue;
        auto e = detail::remove_cgroup(dir, deadline());
        if (!e) report.cgroups.push_back(dir.string());
        errors.note(e);
      }
    }
  }

  // Root file systems and scratch tmpfs mounts.
  auto info = detail::read_mountinfo();
  bool mounted = true;
  if (!info) {
    errors.note(std::optional<error>(info.error()));
  } else {
    mounted = false;
    for (const auto& m : mounts_under(*info, o.state_dir)) {
      if (m == o.state_dir) continue;
      auto e = detail::unmount(m);
      if (e)
        mounted = true;
      else
        report.mounts.push_back(m.string());
      errors.note(e);
    }
  }

  // Bundles, only once nothing is mounted in them.
  if (!mounted) {
    for (fs::directory_iterator it(o.state_dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
      if (rm) {
        errors.note(
            error(errc::io_error, "cannot remove " + it->path().string() + ": " + rm.message()));
      } else {
        report.entries.push_back(it->path().string());
      }
    }
  }
  if (errors.get()) return *errors.get();
  return report;
}

}  // namespace

std::string random_hex16() {
  std::random_device rd;  // the kernel's getrandom() on Linux
  const std::uint64_t n = (std::uint64_t{rd()} << 32) | rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(n));
  return hex;
}

result<std::unique_ptr<runtime>> runtime::open(runtime_options options) {
  for (auto [what, p] :
       {std::pair{"runc_root", &options.runc_root}, {"state_dir", &options.state_dir}}) {
    if (p->empty() || !p->is_absolute()) {
      return invalid(std::string("runtime: ") + what + " " + detail::quoted(p->string()) +
                     " is not an absolute path");
    }
    std::error_code ec;
    fs::create_directories(*p, ec);
    if (ec)
      return error(errc::io_error, "runtime: cannot create " + p->string() + ": " + ec.message());
    fs::permissions(*p, fs::perms::owner_all, ec);
    *p = fs::canonical(*p, ec);
    if (ec)
      return error(errc::io_error, "runtime: cannot resolve " + p->string() + ": " + ec.message());
  }
  if (::access(options.runc.c_str(), X_OK) != 0) {
    return error(errc::not_found, "runtime: runc " + detail::quoted(options.runc.string()) +
                                      " is not an executable file");
  }
  auto host = std::make_shared<host_facts>();
  auto probe = cgroups_path(options.cgroup_parent, "x");
  if (!probe) return probe.error();
  host->cgroup_parent = probe->substr(0, probe->size() - 2);
  if (options.cgroups) {
    host->cgroups = *options.cgroups;
  } else {
    auto info = detail::read_mountinfo();
    if (!info) return info.error();
    auto layout = layout_from_mountinfo(*info);
    if (!layout) return layout.error();
    host->cgroups = std::move(*layout);
  }
  // The step's init outlives `runc run --detach`; as a subreaper this process becomes its parent
  // and can reap it for its exit status.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return errno_error("runtime: prctl(PR_SET_CHILD_SUBREAPER)", errno);
  }
  utsname uts{};
  if (::uname(&uts) == 0) host->kernel_release = uts.release;
  for (const auto& t : kRlimitTypes) {
    rlimit limit{};
    if (::getrlimit(t.resource, &limit) == 0) {
      host->rlimit_hard[t.name] = limit.rlim_max;  // RLIM_INFINITY is UINT64_MAX, as in OCI
    }
  }
  host->options = std::move(options);
  return std::unique_ptr<runtime>(std::make_unique<runtime_impl>(std::move(host)));
}

}  // namespace pantry::orchestrator::runner
