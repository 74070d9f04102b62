// The `pantry` command: argument parsing and the wiring of the libraries.

#include "build.h"
#include "ci.h"
#include "pantry/app/app.h"
#include "pantry/app/control.h"
#include "pantry/app/handover.h"
#include "pantry/app/human.h"
#include "pantry/app/notify.h"
#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/coordinator/remote_runner.h"
#include "pantry/registry/oci/service.h"
#include "pins.h"
#include "pipelines.h"
#include "reload.h"
#include "run.h"
#include "signals.h"
#include "upgrade.h"
#include "warm.h"

#include <spdlog/spdlog.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace cache = pantry::cache;
namespace config = pantry::config;
namespace registry = pantry::registry;
using pantry::cli::block_stop_signals;
using pantry::cli::signal_waiter;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr std::string_view kUsage = R"(usage: pantry COMMAND [OPTIONS]

commands:
  serve [--config FILE] [--listen HOST:PORT] [--data-dir DIR]
        Run pantry with the config FILE (default: the built-in config), flags overriding it.
  upgrade [--binary PATH] [--config FILE | --data-dir DIR]
             Hand the port and data dir of the `pantry serve` that holds the data dir over to
             PATH (default: the binary it was started from), started with its arguments and
             config, without a failed request: the new process serves at once, the old one
             finishes its in-flight responses and exits; running CI jobs are drained (stopped at
             the end of the drain and re-queued by the new process). If the new process cannot
             start (a bad binary or config), the old one serves on and this says why.
  runner --coordinator URL --token TOKEN [--slots N] [--config FILE] [--listen HOST:PORT]
         [--data-dir DIR]
             Run pantry as a remote runner of the coordinator at URL (a `pantry serve` whose
             ci.tokens gives TOKEN the role runner): N jobs at once (default: one per core),
             images and pip through the coordinator's pantry (added as the OCI upstream
             `coordinator` and the first PyPI upstream unless the config names one so).
  reload [--config FILE] [--data-dir DIR]
             Make the `pantry serve` of the data dir (DIR, else FILE's) read its config again
             (FILE: from now on that file) without dropping a connection or a download, as SIGHUP
             does; print what changed, the settings that need a restart, or why the file was
             refused (exit 1).
  config check FILE     Validate FILE; exit 0 if it is valid, 1 with the error if not.
  config show [--secrets] [FILE]
             Print the effective config (FILE over the built-in defaults) as YAML; passwords
             and tokens print as <hidden> unless --secrets is given.
  cache stats  [--config FILE | --data-dir DIR]   Objects, bytes, entries, counters.
  cache verify [--config FILE | --data-dir DIR]   Re-hash every blob; exit 1 if any is corrupt.
  cache gc     [--config FILE | --data-dir DIR] [--grace DURATION]
             Remove orphan chunks and hosted image blobs that no manifest references (uploaded
             over DURATION ago, default 1h), then enforce the quota. Stop `pantry serve` first.
  cache warm -r FILE... [--url URL | --config FILE] [--platform TAG]... [--python-version X.Y]
             [--jobs N]  Fetch every file the pinned (==) requirements files name through a
                         running pantry (default URL: the config's listen address).
  run --image NAME@sha256:DIGEST [OPTIONS] [--] [COMMAND [ARG...]]
             Run one step in a container of the image (by digest) on the built-in runner of
             the `pantry serve` that holds the data dir, or of a pantry started for the step;
             stream its output and exit with its exit code. OPTIONS: --network isolated|none|host
             (default isolated: only pantry's read-only routes, at 127.0.0.1:8585),
             --memory SIZE, --cpus N, --pids-limit N, --timeout DURATION, --tmpfs-size SIZE
             (0: the step's writes go to disk), --secret NAME=FILE (at /run/secrets/NAME),
             --volume HOST:CONTAINER[:ro], --env KEY=VALUE, --user USER, --workdir DIR,
             --entrypoint CMD, --project DIR (at /workspace), --allow-unpinned,
             --separate-streams, --timestamps, --no-report, --verbose,
             --config FILE | --data-dir DIR.
  build -t NAME:TAG [-t ...] [-f FILE] [--build-arg KEY=VALUE]... [--target STAGE]
        [--no-cache] [--allow-unpinned] [--zstd] [--config FILE | --data-dir DIR] CONTEXT
             Build the Containerfile (default CONTEXT/Containerfile, else Dockerfile) into an
             image in pantry's hosted registry: every step keyed by its inputs and taken from
             the build cache when it can be, RUN steps on the built-in runner; one line per step
             (hit, miss or config, and its time), then NAME:TAG@sha256:DIGEST.
  ci check [FILE]       Validate a pipeline file (default .pantry.yml) without running it;
                        exit 0 with a summary, 2 with every problem (file:line:col: field: ...).
  ci measures [--project P]
             The project's (default: this directory's name) CI measures over its last 100
             pipelines of 7 days: median time to red and to green, queue wait, flaky rate, red
             pipelines red only because of flaky tests, runner CPU, seconds saved, the share of
             the jobs' pip and image traffic served from pantry's cache.
  submit [-f .pantry.yml] [-C DIR] [--project P] [--patch ID] [--commit SHA]
         [--git URL --commit SHA [--auth-secret NAME] [--base SHA]] [--wait] [--no-color]
         [--url URL --token T | --config FILE | --data-dir DIR]
             Submit the pipeline of FILE with the working tree DIR (packed, .gitignore
             respected, sent only if pantry lacks it) or a git commit; print the pipeline's URL.
             A newer submission for the same project and patch cancels the older one. --wait
             streams the jobs' logs and exits 0 green, 1 red; a bad FILE exits 2. --base SHA:
             the commit the change is based on; tests in the files changed since run early.
  jobs [--project P]    The jobs of the newest pipelines, with their states.
  logs [-f] JOB [--grep RE] [--step STEP]
             A job's log (-f: follow it live); --step: setup, report, run (or run N), finish.
  cancel PIPELINE | cancel --job JOB    Cancel a pipeline or one job.
  artifacts JOB -o DIR  Download the files the job kept (its `artifacts:`) into DIR.
  tests [--project P] [--flaky | --slowest N | --quarantined | --quarantine ID | --unquarantine ID]
             The project's (default: this directory's name) tests from their JUnit reports:
             runs, passes, failures, median seconds, last outcome; --flaky: the tests that
             failed and passed on one commit, with the evidence; --slowest N: the N slowest;
             --quarantined: the tests whose failures do not fail their job; --quarantine ID,
             --unquarantine ID: put a test in quarantine or take it out.
             These six reach the `pantry serve` of the data dir, or --url with --token
             (PANTRY_URL, PANTRY_TOKEN: a token of the serve's ci.tokens).
  pins check [--config FILE] [--repo NAME] [--only NAME] [--pantry URL]
             What the pin bot would change in the requirements files of the config's
             pins.repositories, and why: one line per pin (old -> new, co-upgrades, added
             pins), the reasons and the new hashes below it, decided with pantry's own PyPI
             index (the serve of the data dir, PANTRY_URL or --pantry). Changes nothing; exit 0
             when every pin is current, 1 when something is out of date, 2 on an error.
  pins bump [--config FILE] [--repo NAME] [--only NAME] [--pantry URL] [--open-prs]
             As check, and each upgrade becomes a branch pantry/pins/NAME-VERSION with one
             commit, made in a scratch clone and pushed to the repository's path (its working
             tree is not touched); an existing branch is left as it is. When pantry's coordinator
             is at hand (the serve of the data dir, or PANTRY_TOKEN), each branch's commit gets a
             pipeline (its .pantry.yml); --open-prs opens a pull request per branch, with the CI
             result in its description. Exit 0 done, 2 on an error.
  pins status [--config FILE] [--repo NAME] [--pantry URL]
             The branches pins bump made: old -> new, commit, pipeline and its state, pull
             request. Exit 0 when no pipeline failed, 1 when one did, 2 on an error.
  health [--config FILE] [--listen HOST:PORT] [URL]
             GET URL (default: /healthz at the config's listen address, on loopback); exit 0
             when it answers 200, 1 otherwise with the status and the answer. A container's
             HEALTHCHECK runs it, so the image needs no HTTP client of its own.
  version               Print the version.

stats and verify are read-only and safe beside a running `pantry serve`.
)";

struct usage_error {
  std::string message;
};

// Options of the form --name VALUE or --name=VALUE; positional arguments in order.
struct parsed_args {
  std::map<std::string, std::string> options;
  std::vector<std::string> positional;
};

parsed_args parse_args(const std::vector<std::string>& args,
                       const std::vector<std::string_view>& allowed) {
  parsed_args out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!a.starts_with("--")) {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    bool known = false;
    for (auto k : allowed)
      known = known || k == name;
    if (!known) throw usage_error{"unknown option --" + name};
    if (!value) {
      if (i + 1 >= args.size()) throw usage_error{"option --" + name + " needs a value"};
      value = args[++i];
    }
    out.options[name] = *value;
  }
  return out;
}

std::optional<std::string> option(const parsed_args& p, const std::string& name) {
  auto it = p.options.find(name);
  if (it == p.options.end()) return std::nullopt;
  return it->second;
}

// Loads --config FILE (or the built-in defaults) and applies --listen / --data-dir.
pantry::result<config::config> effective_config(const parsed_args& p) {
  config::config c = config::defaults();
  if (auto file = option(p, "config")) {
    auto loaded = config::load_file(*file);
    if (!loaded) return loaded.error();
    c = *loaded;
  }
  if (auto listen = option(p, "listen")) {
    auto addr = config::parse_listen(*listen);
    if (!addr) {
      return pantry::error(pantry::errc::config_error, "--listen: " + addr.error().message);
    }
    c.listen = *addr;
  }
  if (auto dir = option(p, "data-dir")) {
    if (dir->empty()) {
      return pantry::error(pantry::errc::config_error,
                           "--data-dir: the value is empty; give a directory path");
    }
    c.data_dir = *dir;
  }
  return c;
}

// What this process inherited from the pantry it takes over from (an upgrade, app/handover.h),
// until the app takes the readiness pipe; the last error, for the pipe if it never does.
std::optional<pantry::app::handover> g_inherited;
std::string g_last_error;

int fail(const pantry::error& e) {
  std::cerr << "pantry: " << e.message << '\n';
  g_last_error = e.message;
  return kExitFailure;
}

using pantry::app::human_bytes;

// `p` with its --config replaced by `file` ("" for none: the built-in defaults).
parsed_args with_config_file(parsed_args p, const std::string& file) {
  if (file.empty()) {
    p.options.erase("config");
  } else {
    p.options["config"] = file;
  }
  return p;
}

// Runs the app of `c` until SIGINT or SIGTERM (`what` names it in the log); SIGHUP reloads the
// config from `source`.
int serve(const config::config& c, std::string_view what, pantry::app::config_source source) {
  const sigset_t signals = block_stop_signals();  // before create() starts the app's threads
  const sigset_t hangup = pantry::cli::block_hangup();
  pantry::app::set_log_level(c.server.log_level);
  auto served = pantry::app::app::create(c, g_inherited);
  if (!served) return fail(served.error());
  g_inherited.reset();  // the app reports readiness once it serves
  auto& app = **served;
  app.set_config_source(std::move(source));
  // Declared after the app, so they are joined before the app goes.
  signal_waiter waiter(signals, [&app, what](std::string_view name) {
    spdlog::info("{}: {} received, finishing in-flight requests", what, name);
    app.stop();
  });
  pantry::cli::signal_loop reloads(hangup, SIGHUP, [&app, what](int) {
    spdlog::info("{}: SIGHUP received, reloading the config", what);
    pantry::app::notify_service_manager(pantry::app::format_reloading());
    app.reload();
    pantry::app::notify_service_manager("READY=1");
    return true;
  });
  if (auto r = app.run(); !r) return fail(r.error());
  return kExitOk;
}

int cmd_serve(const std::vector<std::string>& args) {
  auto p = parse_args(args, {"config", "listen", "data-dir"});
  if (!p.positional.empty()) throw usage_error{"serve takes no argument " + p.positional[0]};
  auto c = effective_config(p);
  if (!c) return fail(c.error());
  pantry::app::config_source source{option(p, "config").value_or(""), [p](const std::string& f) {
                                      return effective_config(with_config_file(p, f));
                                    }};
  return serve(*c, "pantry serve", std::move(source));
}

// What `pantry runner` lays over its config: the coordinator's pantry first for Python packages
// (a job's pip reaches it through this pantry), and as the registry `coordinator/…` that
// tickets' images are pulled from.
void add_runner_settings(config::config& c, const config::ci_runner_of& of) {
  c.ci.runner_of = of;
  const std::string name(pantry::orchestrator::coordinator::kCoordinatorUpstream);
  auto& pypi = c.pypi.upstreams;
  if (std::none_of(pypi.begin(), pypi.end(), [&](const auto& u) { return u.name == name; })) {
    config::pypi_upstream up;
    up.name = name;
    up.url = of.url + "/simple/";
    pypi.insert(pypi.begin(), up);
  }
  auto& oci = c.oci.upstreams;
  if (std::none_of(oci.begin(), oci.end(), [&](const auto& u) { return u.name == name; })) {
    config::oci_upstream up;
    up.name = name;
    up.url = of.url;
    oci.push_back(up);
  }
}

// `pantry runner`: `pantry serve` whose runner takes jobs from the coordinator at --coordinator
// (ci.runner_of), pulling images and Python packages through it.
int cmd_runner(const std::vector<std::string>& args) {
  auto p = parse_args(args, {"coordinator", "token", "slots", "config", "listen", "data-dir"});
  if (!p.positional.empty()) throw usage_error{"runner takes no argument " + p.positional[0]};
  auto url = option(p, "coordinator");
  auto token = option(p, "token");
  if (!url || !token) throw usage_error{"runner needs --coordinator URL and --token TOKEN"};
  if (!url->starts_with("http://") && !url->starts_with("https://")) {
    throw usage_error{"--coordinator: \"" + *url + "\" is not an http:// or https:// URL"};
  }
  while (url->ends_with('/'))
    url->pop_back();
  auto c = effective_config(p);
  if (!c) return fail(c.error());
  config::ci_runner_of of = c->ci.runner_of;
  of.url = *url;
  of.token = *token;
  if (auto slots = option(p, "slots")) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(slots->data(), slots->data() + slots->size(), n);
    if (ec != std::errc() || end != slots->data() + slots->size() || n > 1024) {
      throw usage_error{"--slots: \"" + *slots + "\" is not a number of slots from 0 to 1024"};
    }
    of.slots = n;
  }
  add_runner_settings(*c, of);
  pantry::app::config_source source{
      option(p, "config").value_or(""),
      [p, of](const std::string& f) -> pantry::result<config::config> {
        auto reloaded = effective_config(with_config_file(p, f));
        if (reloaded) add_runner_settings(*reloaded, of);
        return reloaded;
      }};
  return serve(*c, "pantry runner", std::move(source));
}

int cmd_upgrade(const std::vector<std::string>& args) {
  auto p = parse_args(args, {"binary", "config", "data-dir"});
  if (!p.positional.empty()) throw usage_error{"upgrade takes no argument " + p.positional[0]};
  auto c = effective_config(p);
  if (!c) return fail(c.error());
  return pantry::cli::run_upgrade(*c, option(p, "binary"));
}

int cmd_config(const std::vector<std::string>& args) {
  if (args.empty()) throw usage_error{"config needs a subcommand: check FILE or show [FILE]"};
  const std::string& sub = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (sub == "check") {
    if (rest.size() != 1) throw usage_error{"config check takes exactly one FILE"};
    auto c = config::load_file(rest[0]);
    if (!c) return fail(c.error());
    std::cout << rest[0] << ": ok\n";
    return kExitOk;
  }
  if (sub == "show") {
    auto shown = config::secrets::hidden;
    if (auto it = std::find(rest.begin(), rest.end(), "--secrets"); it != rest.end()) {
      shown = config::secrets::shown;
      rest.erase(it);
    }
    if (rest.size() > 1) throw usage_error{"config show takes at most one FILE"};
    auto c = rest.empty() ? pantry::result<config::config>(config::defaults())
                          : config::load_file(rest[0]);
    if (!c) return fail(c.error());
    std::cout << config::to_yaml(*c, shown);
    return kExitOk;
  }
  throw usage_error{"unknown config subcommand \"" + sub + "\"; use check or show"};
}

int cmd_cache(const std::vector<std::string>& args) {
  if (args.empty()) throw usage_error{"cache needs a subcommand: stats, verify, gc or warm"};
  const std::string& sub = args[0];
  if (sub == "warm") {
    auto opt = pantry::cli::parse_warm_args({args.begin() + 1, args.end()});
    if (!opt) throw usage_error{opt.error().message};
    return pantry::cli::run_warm(*opt);
  }
  auto p = parse_args({args.begin() + 1, args.end()}, {"config", "data-dir", "grace"});
  if (!p.positional.empty()) {
    throw usage_error{"cache " + sub + " takes no argument " + p.positional[0]};
  }
  std::chrono::seconds grace = std::chrono::hours(1);
  if (auto g = option(p, "grace")) {
    if (sub != "gc") throw usage_error{"--grace is an option of cache gc only"};
    auto d = config::parse_duration(*g);
    if (!d) throw usage_error{"--grace: " + d.error().message};
    grace = *d;
  }
  auto c = effective_config(p);
  if (!c) return fail(c.error());

  cache::options opt;
  opt.data_dir = c->data_dir;
  opt.max_size = c->cache.max_size;

  if (sub == "stats") {
    opt.mode = cache::open_mode::read_only;
    auto store = cache::store::open(opt);
    if (!store) return fail(store.error());
    auto st = (*store)->get_stats();
    if (!st) return fail(st.error());
    std::cout << "data dir:      "
              << std::filesystem::absolute(c->data_dir).lexically_normal().string() << '\n'
              << "blobs:         " << st->objects << " (" << human_bytes(st->bytes) << ")\n"
              << "  pinned:      " << st->pinned_objects << " (" << human_bytes(st->pinned_bytes)
              << ")\n"
              << "quota:         " << human_bytes(c->cache.max_size) << '\n'
              << "entries:       " << st->entries << '\n'
              << "records:       " << st->records << '\n'
              << "disk used:     " << human_bytes(st->used_bytes) << " of "
              << human_bytes(st->map_size) << " map\n"
              << "readers:       " << st->readers_in_use << " of " << st->max_readers << " slots\n"
              << "hits/misses:   " << st->hits << " / " << st->misses << '\n'
              << "evicted:       " << st->evictions << " (" << human_bytes(st->evicted_bytes)
              << ")\n";
    return kExitOk;
  }
  if (sub == "verify") {
    opt.mode = cache::open_mode::read_only;
    auto store = cache::store::open(opt);
    if (!store) return fail(store.error());
    bool tty = isatty(STDERR_FILENO) != 0;
    auto report = (*store)->verify([tty](std::uint64_t done, std::uint64_t total) {
      if (tty) std::cerr << "\rverifying " << done << '/' << total << std::flush;
    });
    if (tty) std::cerr << '\n';
    if (!report) return fail(report.error());
    for (const auto& problem : report->problems) {
      std::cout << "CORRUPT " << problem.id.str() << ": " << problem.what << '\n';
    }
    std::cout << "verified " << report->checked << " blobs (" << human_bytes(report->bytes)
              << "): " << report->problems.size() << " corrupt\n";
    return report->problems.empty() ? kExitOk : kExitFailure;
  }
  if (sub == "gc") {
    opt.mode = cache::open_mode::owner;
    auto store = cache::store::open(opt);
    if (!store) {
      if (store.error().is(pantry::errc::locked)) {
        std::cerr << "pantry: gc refused: " << store.error().message
                  << "\npantry serve removes orphan chunks when it starts and keeps the cache "
                     "under its quota as it runs; stop it to collect by hand\n";
        return kExitFailure;
      }
      return fail(store.error());
    }
    auto hosted = registry::oci::collect_hosted_garbage(**store, grace);
    if (!hosted) return fail(hosted.error());
    std::cout << "hosted: removed " << hosted->references_removed
              << " blob references no manifest uses (uploaded over "
              << config::format_duration(grace) << " ago); removed " << hosted->blobs_removed
              << " blobs (" << human_bytes(hosted->bytes_removed) << "), unpinned "
              << hosted->blobs_unpinned << "\n";
    // Opening as owner already removed orphans; gc() enforces the quota and reports.
    auto report = (*store)->gc();
    if (!report) return fail(report.error());
    std::cout << "removed " << report->orphan_chunks << " orphan chunks of " << report->orphan_blobs
              << " unfinished blobs; evicted " << report->evicted_blobs << " blobs ("
              << human_bytes(report->evicted_bytes) << ")\n";
    return kExitOk;
  }
  throw usage_error{"unknown cache subcommand \"" + sub + "\"; use stats, verify, gc or warm"};
}

// `pantry health`: one GET with short timeouts, for a container runtime's health check.
int cmd_health(const std::vector<std::string>& args) {
  auto p = parse_args(args, {"config", "listen"});
  if (p.positional.size() > 1) throw usage_error{"health takes at most one URL"};
  std::string url;
  if (p.positional.empty()) {
    auto c = effective_config(p);
    if (!c) return fail(c.error());
    url = pantry::app::loopback_url(c->listen.host, c->listen.port) + "/healthz";
  } else {
    url = p.positional[0];
  }
  const auto scheme = url.find("://");
  if (scheme == std::string::npos ||
      (!url.starts_with("http://") && !url.starts_with("https://"))) {
    throw usage_error{"health: \"" + url + "\" is not an http:// or https:// URL"};
  }
  const auto path_at = url.find('/', scheme + 3);
  const std::string base = url.substr(0, path_at);
  const std::string path = path_at == std::string::npos ? "/" : url.substr(path_at);
  pantry::orchestrator::coordinator::api_client_options o;
  o.user_agent = "pantry-health/" PANTRY_VERSION;
  // Container runtimes give a check 30 s by default; answer well within it.
  o.connect_timeout = o.header_timeout = o.idle_timeout = std::chrono::seconds(5);
  pantry::orchestrator::coordinator::api_client client(base, "", o);
  auto r = client.call(boost::beast::http::verb::get, path);
  if (!r) return fail(r.error());
  if (r->status != 200) {
    return fail(pantry::orchestrator::coordinator::api_client::failure("health check", *r));
  }
  std::cout << "GET " << url << ": 200 " << r->body << (r->body.ends_with('\n') ? "" : "\n");
  return kExitOk;
}

}  // namespace

// serve and runner, whose failures an upgrade's predecessor hears of (g_inherited).
int serve_command(const std::string& command, const std::vector<std::string>& rest) {
  try {
    return command == "serve" ? cmd_serve(rest) : cmd_runner(rest);
  } catch (const usage_error& e) {
    std::cerr << "pantry: " << e.message << "\n\n" << kUsage;
    g_last_error = e.message;
    return kExitUsage;
  }
}

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  std::string command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "serve" || command == "runner") {
    // Before any thread starts: they edit the environment.
    pantry::app::take_notify_socket();
    auto inherited = pantry::app::take_handover();
    if (!inherited) return fail(inherited.error());
    g_inherited = *inherited;
    int code = serve_command(command, rest);
    // Not ready, and the predecessor waits for a word: say why.
    if (g_inherited) {
      pantry::app::report_readiness(
          g_inherited->ready_fd,
          pantry::app::format_not_ready(
              g_last_error.empty() ? "exited with code " + std::to_string(code) : g_last_error));
    }
    return code;
  }
  try {
    if (command == "upgrade") return cmd_upgrade(rest);
    if (command == "config") return cmd_config(rest);
    if (command == "reload") {
      auto p = parse_args(rest, {"config", "data-dir"});
      if (!p.positional.empty()) throw usage_error{"reload takes no argument " + p.positional[0]};
      return pantry::cli::run_reload(option(p, "config"), option(p, "data-dir"));
    }
    if (command == "cache") return cmd_cache(rest);
    if (command == "health") return cmd_health(rest);
    if (command == "build") {
      auto opt = pantry::cli::parse_build_args(rest);
      if (!opt) throw usage_error{opt.error().message};
      return pantry::cli::run_build(*opt);
    }
    if (command == "run") {
      auto opt = pantry::cli::parse_run_args(rest);
      if (!opt) throw usage_error{opt.error().message};
      return pantry::cli::run_step_command(*opt);
    }
    if (command == "ci" && (rest.empty() || rest[0] != "measures")) {
      auto opt = pantry::cli::parse_ci_args(rest);
      if (!opt) throw usage_error{opt.error().message};
      return pantry::cli::run_ci_check(*opt);
    }
    if (command == "pins") {
      if (rest.empty() || (rest[0] != "check" && rest[0] != "bump" && rest[0] != "status")) {
        throw usage_error{"pins needs a subcommand: check, bump or status (got " +
                          (rest.empty() ? std::string("nothing") : "\"" + rest[0] + "\"") + ")"};
      }
      if (rest[0] == "status") {
        auto opt = pantry::cli::parse_pins_status_args({rest.begin() + 1, rest.end()});
        if (!opt) throw usage_error{opt.error().message};
        return pantry::cli::run_pins_status(*opt);
      }
      auto opt = pantry::cli::parse_pins_check_args({rest.begin() + 1, rest.end()});
      if (!opt) throw usage_error{opt.error().message};
      return rest[0] == "bump" ? pantry::cli::run_pins_bump(*opt)
                               : pantry::cli::run_pins_check(*opt);
    }
    if (auto code = pantry::cli::pipeline_command(command, rest)) {
      if (!*code) throw usage_error{code->error().message};
      return **code;
    }
    if (command == "version" || command == "--version") {
      std::cout << "pantry " << PANTRY_VERSION << '\n';
      return kExitOk;
    }
    throw usage_error{"unknown command \"" + command + "\""};
  } catch (const usage_error& e) {
    std::cerr << "pantry: " << e.message << "\n\n" << kUsage;
    return kExitUsage;
  }
}
