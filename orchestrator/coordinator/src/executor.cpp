#include "pantry/orchestrator/coordinator/executor.h"

#include "pantry/orchestrator/builder/build.h"
#include "pantry/orchestrator/builder/http_backend.h"
#include "pantry/orchestrator/coordinator/pytest_plugin.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/coordinator/test_order.h"
#include "pantry/orchestrator/runner/container.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/traffic.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

constexpr std::string_view kStepSetup = "setup";
constexpr std::string_view kStepReport = "report";
constexpr std::string_view kStepFinish = "finish";

std::string step_name(std::size_t index, std::size_t count) {
  return count <= 1 ? std::string("run") : "run " + std::to_string(index);
}

log_entry pantry_line(std::string_view step, std::string text) {
  log_entry e;
  e.time = clock::now();
  e.stream = log_stream::pantry;
  e.step = std::string(step);
  e.text = std::move(text);
  return e;
}

std::string seconds_text(std::chrono::nanoseconds d) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f s", std::chrono::duration<double>(d).count());
  return b;
}

// Why a step that ran did not pass ("" when it passed).
std::string failure_of(const runner::step_result& r, std::chrono::milliseconds timeout) {
  if (!r.runc_error.empty()) return "could not start: " + r.runc_error;
  if (r.cancelled) return "cancelled";
  if (r.timed_out) {
    return timeout.count() > 0 ? "timed out after " + std::to_string(timeout.count() / 1000) + " s"
                               : std::string("timed out");
  }
  if (r.oom_killed) return "OOM-killed (exit code " + std::to_string(r.exit_code) + ")";
  if (r.exit_code != 0) {
    std::string s = "exit code " + std::to_string(r.exit_code);
    if (r.pids_limit_hit) s += " (hit the pids limit)";
    return s;
  }
  return {};
}

// Copies `from` (a file, link or directory) to `to`, links as links.
result<void> copy_tree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec) {
    return error(errc::io_error, "creating " + to.parent_path().string() + ": " + ec.message());
  }
  fs::copy(from, to,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks |
               fs::copy_options::overwrite_existing,
           ec);
  if (ec) return error(errc::io_error, "copying " + from.string() + ": " + ec.message());
  return {};
}

// Everything below `from` into `to`, over what is there.
result<void> merge_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  for (fs::directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    if (auto r = copy_tree(it->path(), to / it->path().filename()); !r) return r;
  }
  if (ec) return error(errc::io_error, "reading " + from.string() + ": " + ec.message());
  return {};
}

class job_run {
 public:
  job_run(const ticket& t, const executor_context& ctx, std::shared_ptr<job_uplink> up,
          std::shared_ptr<runner::step_cancel> cancel)
      : t_(t), ctx_(ctx), up_(std::move(up)), cancel_(std::move(cancel)) {
    dir_ = ctx_.work_root / ("job-" + std::to_string(t_.job) + "-" + std::to_string(t_.lease));
    workspace_ = dir_ / "workspace";
    files_ = dir_ / "files";
  }

  // Blocking: on the blocking executor.
  void say(std::string_view step, std::string text) {
    std::vector<log_entry> v;
    v.push_back(pantry_line(step, std::move(text)));
    if (!up_->log(std::move(v))) cancel_->cancel();
  }

  // Blocking: the workspace with the source and the needed jobs' artifacts.
  result<void> prepare() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::create_directories(workspace_, ec);
    if (!ec) fs::create_directories(files_, ec);
    if (ec) return error(errc::io_error, "creating " + dir_.string() + ": " + ec.message());
    switch (t_.source.type) {
      case source_ref::kind::none:
        say(kStepSetup, "source: none (the job starts in an empty /workspace)");
        break;
      case source_ref::kind::tree: {
        auto archive = files_ / "source.tar.zst";
        if (auto r = up_->fetch_tree(t_.source.tree, archive); !r) return r;
        if (auto r = unpack_tree(archive, workspace_); !r) return r.error();
        fs::remove(archive, ec);
        say(kStepSetup, "source: the tree " + t_.source.tree + " as `pantry submit` sent it");
        break;
      }
      case source_ref::kind::git: {
        std::optional<std::string> auth;
        if (!t_.source.git_auth_secret.empty()) {
          auto s = up_->secret(t_.source.git_auth_secret);
          if (!s) return s.error();
          auth = std::move(*s);
        }
        if (!ctx_.mirrors) return error(errc::invalid_argument, "this runner has no git mirrors");
        if (auto r = ctx_.mirrors->checkout(t_.source.git_url, t_.source.commit, workspace_, auth);
            !r) {
          return r;
        }
        say(kStepSetup, "source: " + t_.source.git_url + " at " + t_.source.commit);
        break;
      }
    }
    for (job_id from : t_.artifacts_from) {
      auto archive = files_ / ("artifacts-" + std::to_string(from) + ".tar.zst");
      auto got = up_->fetch_artifacts(from, archive);
      if (!got) {
        if (got.error().code == errc::not_found) continue;
        return got.error();
      }
      auto staging = files_ / ("artifacts-" + std::to_string(from));
      if (auto r = unpack_tree(archive, staging); !r) return r.error();
      if (auto r = merge_into(staging, workspace_); !r) return r;
      fs::remove_all(staging, ec);
      fs::remove(archive, ec);
      say(kStepSetup, "artifacts of job " + std::to_string(from) + " placed in /workspace");
    }
    return {};
  }

  // Blocking: packs and hands over the artifacts.
  result<void> keep_artifacts() {
    auto staging = files_ / "artifacts";
    std::error_code ec;
    fs::create_directories(staging, ec);
    std::size_t found = 0;
    for (const auto& p : t_.artifacts) {
      fs::path src = workspace_ / p;
      if (!fs::exists(fs::symlink_status(src, ec))) {
        say(kStepFinish, "artifacts: " + p + " does not exist; nothing kept of it");
        continue;
      }
      if (auto r = copy_tree(src, staging / p); !r) return r;
      ++found;
    }
    if (found == 0) return {};
    auto archive = files_ / "artifacts.tar.zst";
    auto packed = pack_tree(staging, archive, {});
    if (!packed) return packed.error();
    const tree_stats& stats = packed->stats;
    if (auto r = up_->put_artifacts(archive); !r) return r;
    say(kStepFinish, "artifacts: kept " + std::to_string(stats.files) + " files, " +
                         std::to_string(fs::file_size(archive, ec)) + " bytes compressed");
    return {};
  }

  // Blocking: the directories mounted for the test files (kJobJunitDir…). A problem is a line in
  // the log and a job without them, never a failed job: tests run as they would elsewhere.
  void prepare_tests() {
    auto fail = [this](const std::string& what, const std::error_code& ec) {
      say(kStepSetup, "tests: " + what + ": " + ec.message() +
                          "; the job runs without PANTRY_JUNIT and the pytest plugin");
    };
    std::error_code ec;
    for (const auto& d : {junit_dir(), plugin_dir(), order_dir()}) {
      fs::create_directories(d, ec);
      if (ec) return fail("creating " + d.string(), ec);
    }
    // The step may run as any user of its image: everyone may write the reports.
    fs::permissions(junit_dir(), fs::perms::all, ec);
    if (ec) return fail("opening " + junit_dir().string() + " to the job's user", ec);
    if (auto r = write_pytest_plugin(plugin_dir()); !r) {
      say(kStepSetup, "tests: " + r.error().message + "; the job runs without the pytest plugin");
      return;
    }
    if (!t_.test_order.empty()) {
      auto file = order_dir() / fs::path(kJobTestOrder).filename();
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out << t_.test_order;
      out.close();
      if (!out) {
        say(kStepSetup, "tests: cannot write " + file.string() + "; the job runs without " +
                            std::string(kTestOrderVariable));
      } else {
        have_order_ = true;
        say_plan();
      }
    }
    have_tests_ = true;
  }

  // Blocking: what the order file plans for this job's shard, so that the log can be set
  // against what the shard's tests took (collect_tests).
  void say_plan() {
    auto order = parse_order_file(t_.test_order);
    if (!order) {
      say(kStepSetup, "tests: " + order.error().message);
      return;
    }
    int shard = 1;
    for (const auto& [k, v] : t_.env) {
      if (k == "PANTRY_SHARD") std::from_chars(v.data(), v.data() + v.size(), shard);
    }
    say(kStepSetup, "tests: " + describe_plan(*order, shard));
  }

  // Blocking: the JUnit reports into the uplink. Problems are lines in the log.
  void collect_tests() {
    if (!have_tests_) return;
    junit_report report = read_junit_dir(junit_dir());
    for (const auto& p : report.problems)
      say(kStepFinish, "tests: " + p);
    if (report.results.empty()) return;
    std::size_t passed = 0, failed = 0, skipped = 0, reran = 0;
    double seconds = 0;
    for (const auto& r : report.results) {
      seconds += r.seconds;
      if (is_failure(r.outcome)) {
        ++failed;
      } else if (r.outcome == test_outcome::skipped) {
        ++skipped;
      } else {
        ++passed;
      }
      if (r.rerun) ++reran;
    }
    std::string counts =
        std::to_string(report.results.size()) + " tests in " + std::to_string(report.files) +
        " JUnit files: " + std::to_string(passed) + " passed, " + std::to_string(failed) +
        " failed, " + std::to_string(skipped) + " skipped, " + std::to_string(reran) + " re-run, " +
        seconds_text(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(seconds)));
    if (auto r = up_->put_test_results(std::move(report.results)); !r) {
      say(kStepFinish, "tests: " + counts + "; not recorded: " + r.error().message);
      return;
    }
    say(kStepFinish, "tests: " + counts + "; recorded");
  }

  fs::path junit_dir() const { return files_ / "junit"; }
  fs::path plugin_dir() const { return files_ / "pytest"; }
  fs::path order_dir() const { return files_ / "order"; }

  void clean_up() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    if (ec) spdlog::warn("ci: removing {}: {}", dir_.string(), ec.message());
  }

  runner::step_request step_request() const {
    runner::step_request req;
    req.image = t_.image;
    req.allow_unpinned = t_.allow_unpinned;
    req.step.argv = {"/bin/sh", "-ec",
                     (have_tests_ ? test_prelude() : std::string()) + job_script(t_.steps, nonce_)};
    req.step.entrypoint = std::vector<std::string>{};
    for (const auto& [k, v] : t_.env)
      req.step.env.push_back(k + "=" + v);
    if (have_tests_) {
      req.step.env.push_back(std::string(kJunitVariable) + "=" + std::string(kJobJunitDir));
      req.step.volumes.push_back({junit_dir().string(), std::string(kJobJunitDir), false});
      req.step.volumes.push_back({plugin_dir().string(), std::string(kJobPluginDir), true});
      if (have_order_) {
        req.step.env.push_back(std::string(kTestOrderVariable) + "=" + std::string(kJobTestOrder));
        req.step.volumes.push_back(
            {order_dir().string(), fs::path(kJobTestOrder).parent_path().string(), true});
      }
    }
    req.step.working_dir = "/workspace";
    req.step.network = t_.network;
    req.step.project_dir = workspace_.string();
    req.secrets = t_.secrets;
    req.timeout = t_.timeout;
    req.tmpfs_size = t_.tmpfs;
    req.output = runner::output_mode::merged;
    return req;
  }

  // The step a marker line starts (step_marker()), or nullopt for any other line.
  std::optional<std::size_t> marker_index(std::string_view text) const {
    if (!text.starts_with(marker_prefix_)) return std::nullopt;
    text.remove_prefix(marker_prefix_.size());
    if (text.empty() || text.size() > 4) return std::nullopt;
    std::size_t n = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    return n;
  }

  // Called from the runner's threads, one line at a time.
  void on_event(const runner::step_event& e) {
    log_entry entry;
    entry.time = e.line.time;
    if (e.type == runner::step_event::kind::report) {
      entry.stream = log_stream::report;
      entry.step = std::string(kStepReport);
    } else {
      if (auto index = marker_index(e.line.text)) {
        step_ = step_name(*index, t_.steps.size());
        return;
      }
      entry.stream = e.stream == runner::output_stream::err ? log_stream::err : log_stream::out;
      entry.step = step_;
    }
    entry.text = e.line.text;
    std::vector<log_entry> v;
    v.push_back(std::move(entry));
    if (!up_->log(std::move(v))) cancel_->cancel();
  }

  const ticket& t_;
  const executor_context& ctx_;
  std::shared_ptr<job_uplink> up_;
  std::shared_ptr<runner::step_cancel> cancel_;
  fs::path dir_, workspace_, files_;
  bool have_tests_ = false;  // the test directories are mounted (prepare_tests)
  bool have_order_ = false;  // and the order file with them
  std::string nonce_ = runner::random_hex16();
  std::string marker_prefix_ = "\x1epantry-step " + nonce_ + " ";
  std::string step_ = t_.steps.size() <= 1 ? "run" : "run 1";
};

asio::awaitable<job_outcome> build_image(job_run& run) {
  const ticket& t = run.t_;
  auto built = co_await proxy::off_thread(run.ctx_.blocking, [&]() -> result<std::string> {
    auto file = run.workspace_ / t.build->file;
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      return error(errc::not_found, "the pipeline's build.file " + t.build->file +
                                        " is not in the source; add it or fix build.file");
    }
    std::ostringstream text;
    text << in.rdbuf();
    builder::build_request req;
    req.context = run.workspace_ / t.build->context;
    req.containerfile_text = text.str();
    req.containerfile_name = t.build->file;
    req.tags = {t.build->tag};
    req.allow_unpinned = t.allow_unpinned;
    req.scratch_dir = run.files_;
    auto backend = builder::make_http_backend(run.ctx_.pantry_url, run.ctx_.pantry_token);
    builder::build_events events;
    events.step_done = [&run](const builder::step_report& s) {
      run.say("build", "build: " + s.text + ": " + std::string(builder::to_string(s.outcome)));
    };
    events.output = [&run](std::string_view line) { run.say("build", std::string(line)); };
    auto r = builder::build(req, *backend, events);
    if (!r) return r.error();
    auto colon = t.build->tag.rfind(':');
    std::string repo = colon == std::string::npos ? t.build->tag : t.build->tag.substr(0, colon);
    return repo + "@" + r->manifest_digest.str();
  });
  job_outcome out;
  if (!built) {
    out.reason = "image build failed: " + built.error().message;
    co_return out;
  }
  out.passed = true;
  out.exit_code = 0;
  out.image = *built;
  co_return out;
}

}  // namespace

std::string step_marker(std::string_view nonce, std::size_t index) {
  return "\x1epantry-step " + std::string(nonce) + " " + std::to_string(index);
}

cache_use cache_use_of(const runner::step_outcome& step) {
  cache_use u;
  for (bool image_pull : {false, true}) {
    for (const auto& e : image_pull ? step.image_pull : step.traffic) {
      count_request(u, e.route, proxy::outcome_label(e.outcome), image_pull,
                    cache_count{e.count.requests, e.count.bytes});
    }
  }
  return u;
}

std::string test_prelude() {
  return "export PYTHONPATH=\"" + std::string(kJobPluginDir) +
         "${PYTHONPATH:+:$PYTHONPATH}\"\n"
         "export PYTEST_PLUGINS=\"" +
         std::string(kPytestPluginModule) + "${PYTEST_PLUGINS:+,$PYTEST_PLUGINS}\"\n";
}

std::string job_script(const std::vector<std::string>& steps, std::string_view nonce) {
  if (steps.size() == 1) return steps.front();
  std::string s;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    // printf's format is fixed; the marker goes as its argument so that no % in it matters.
    s += "printf '%s\\n' '" + step_marker(nonce, i + 1) + "'\n";
    s += steps[i];
    if (s.back() != '\n') s += '\n';
  }
  return s;
}

asio::awaitable<job_outcome> execute_job(const ticket& t, const executor_context& ctx,
                                         std::shared_ptr<job_uplink> uplink,
                                         std::shared_ptr<runner::step_cancel> cancel) {
  job_run run(t, ctx, std::move(uplink), cancel);
  auto started = clock::now();
  auto prepared = co_await proxy::off_thread(ctx.blocking, [&] {
    run.say(kStepSetup, "job " + t.name + " (pipeline " + std::to_string(t.pipeline) +
                            ", attempt " + std::to_string(t.attempt) + ") on runner " +
                            ctx.runner_name);
    return run.prepare();
  });
  job_outcome out;
  if (!prepared) {
    out.reason = "preparing the workspace failed: " + prepared.error().message;
  } else if (cancel->cancelled()) {
    out.reason = "cancelled";
  } else if (t.build) {
    out = co_await build_image(run);
  } else if (!ctx.runner) {
    out.reason = "this pantry has no runner (runc and root are needed)";
  } else {
    co_await proxy::off_thread(ctx.blocking, [&] {
      run.prepare_tests();
      return 0;
    });
    auto sink = [&run](const runner::step_event& e) { run.on_event(e); };
    auto step = co_await ctx.runner->run_step(run.step_request(), sink, cancel);
    if (!step) {
      out.reason = step.error().message;
    } else {
      const auto& r = step->result;
      out.image = step->image;
      out.exit_code = r.exit_code;
      out.cpu_seconds = r.cpu_seconds.value_or(0.0);
      out.cache = cache_use_of(*step);
      out.reason = failure_of(r, t.timeout);
      out.passed = out.reason.empty();
      for (const auto& note : r.notes)
        co_await proxy::off_thread(ctx.blocking, [&] {
          run.say(kStepFinish, "note: " + note);
          return 0;
        });
      // A cancelled job's reports are partial, and its lease may be gone: not recorded.
      if (!cancel->cancelled()) {
        co_await proxy::off_thread(ctx.blocking, [&] {
          run.collect_tests();
          return 0;
        });
      }
    }
  }
  co_await proxy::off_thread(ctx.blocking, [&] {
    if (out.passed && !t.artifacts.empty()) {
      if (auto r = run.keep_artifacts(); !r) {
        out.passed = false;
        out.reason = "keeping the artifacts failed: " + r.error().message;
      }
    }
    run.say(kStepFinish, std::string("job ") + (out.passed ? "passed" : "failed") +
                             (out.reason.empty() ? "" : ": " + out.reason) + " after " +
                             seconds_text(clock::now() - started));
    run.clean_up();
    return 0;
  });
  co_return out;
}

}  // namespace pantry::orchestrator::coordinator
