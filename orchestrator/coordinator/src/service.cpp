#include "pantry/orchestrator/coordinator/service.h"

#include "hub.h"
#include "keys.h"
#include "pantry/orchestrator/coordinator/artifact_store.h"
#include "pantry/orchestrator/coordinator/executor.h"
#include "pantry/orchestrator/coordinator/log_store.h"
#include "pantry/orchestrator/coordinator/measures.h"
#include "pantry/orchestrator/coordinator/pipeline_spec.h"
#include "pantry/orchestrator/coordinator/pytest_plugin.h"
#include "pantry/orchestrator/coordinator/quarantine.h"
#include "pantry/orchestrator/coordinator/scheduler.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/coordinator/test_history.h"
#include "pantry/orchestrator/coordinator/test_order.h"
#include "pantry/orchestrator/coordinator/ticket.h"
#include "pantry/orchestrator/runner/step_stream.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/off_thread.h"
#include "pantry/proxy/reconfigurable.h"
#include "pantry/proxy/server.h"
#include "pantry/text.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>

namespace pantry::orchestrator::coordinator {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using proxy::exchange;
using runner::respond_json;
using runner::respond_text;

constexpr std::size_t kMaxSubmit = std::size_t{1} << 20;
constexpr std::size_t kMaxTree = std::size_t{2} << 30;
// A job's test results as a remote runner posts them: about 300 bytes a test, a 100,000-test
// job with long failure messages fits.
constexpr std::size_t kMaxTestResults = std::size_t{64} << 20;
// The runs a job's order is planned from: the durations' median needs 5 passing runs and
// "failed recently" 10 runs of the job; the rest of a project's jobs and shards share the window.
constexpr std::size_t kPlanRuns = 50;
constexpr std::string_view kBuiltinRunner = "built-in";
// Jobs of finished pipelines the scheduler keeps in memory (about 5 KiB each; answers list the
// newest pipelines; the journal keeps them all).
constexpr std::size_t kFinishedJobsInMemory = 20'000;
// The default window of a project's measures (GET .../measures and /metrics): its newest 100
// ended pipelines of the last 7 days, among those the scheduler still holds.
constexpr std::size_t kMeasuresPipelines = 100;
constexpr int kMeasuresDays = 7;

enum class role { read = 1, submit = 2, runner = 3, admin = 4 };

std::optional<std::uint64_t> parse_id(std::string_view s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0) return std::nullopt;
  return v;
}

// The path's segments after `prefix` ("/api/v1/jobs/7/log?x" → {"7", "log"}), and its query.
struct target_parts {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

target_parts split_target(std::string_view target, std::string_view prefix) {
  target_parts out;
  std::string_view path = target.substr(0, target.find('?'));
  if (path.starts_with(prefix)) path.remove_prefix(prefix.size());
  while (!path.empty()) {
    auto slash = path.find('/');
    auto seg = path.substr(0, slash);
    if (!seg.empty()) out.segments.emplace_back(seg);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  if (target.find('?') != std::string_view::npos) {
    auto parsed = boost::urls::parse_relative_ref(target);
    if (parsed) {
      for (auto p : parsed->params())
        out.query[std::string(p.key)] = std::string(p.value);
    }
  }
  return out;
}

// Whether what travels on this connection stays private: TLS terminated by a proxy in front
// (X-Forwarded-Proto: https), or a peer on this machine.
bool over_tls_or_local(exchange& ex) {
  if (ascii_iequals(ex.request()["X-Forwarded-Proto"], "https")) return true;
  const std::string& peer = ex.peer();
  return peer.starts_with("127.") || peer.starts_with("[::1]") || peer.starts_with("::1");
}

asio::awaitable<void> fail(exchange& ex, http::status status, std::string message) {
  const json::object answer{{"error", std::move(message)}};
  co_await respond_json(ex, status, answer);
}

// An answer computed off the I/O threads: 200 with it, or the error (400 for a bad argument, 503
// when the store failed).
asio::awaitable<void> respond_answer(exchange& ex, const result<json::object>& answer) {
  if (!answer) {
    const auto status = answer.error().code == errc::invalid_argument
                            ? http::status::bad_request
                            : http::status::service_unavailable;
    co_await fail(ex, status, answer.error().message);
    co_return;
  }
  co_await respond_json(ex, http::status::ok, *answer);
}

// The project of /api/v1/projects/<project>/<what>: every segment before the last.
std::string project_of(const target_parts& t) {
  std::string project;
  for (std::size_t i = 0; i + 1 < t.segments.size(); ++i)
    project += (i ? "/" : "") + t.segments[i];
  return project;
}

// The query's count `name` (1 to `max`), `fallback` when absent; errc::invalid_argument naming
// the value and the range otherwise.
result<std::uint64_t> count_param(const target_parts& t, const std::string& name,
                                  std::uint64_t fallback, std::uint64_t max) {
  auto it = t.query.find(name);
  if (it == t.query.end()) return fallback;
  auto v = parse_id(it->second);
  if (!v || *v > max) {
    return error(errc::invalid_argument, name + ": \"" + it->second.substr(0, 40) +
                                             "\" is not a count from 1 to " + std::to_string(max) +
                                             "; give ?" + name + "=N");
  }
  return *v;
}

double seconds_between(clock::time_point a, clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::int64_t millis(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// "<hosted prefix>ci/<project>" as a repository name (the builder pushes to pantry's hosted
// registry): lowercase, other characters as '-'.
std::string image_repo_of(std::string_view hosted_prefix, std::string_view project) {
  std::string out = std::string(hosted_prefix) + "ci/";
  for (char c : project) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      out += c;
    } else if (c >= 'A' && c <= 'Z') {
      out += static_cast<char>(c - 'A' + 'a');
    } else if (out.back() != '-' && out.back() != '/') {
      out += '-';
    }
  }
  while (out.back() == '-')
    out.pop_back();
  if (out.ends_with("ci/")) out += "project";
  return out;
}

std::string str_member(const json::object& o, std::string_view k) {
  auto v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

json::object log_entry_json(const log_entry& e) {
  return json::object{{"seq", e.seq},
                      {"time", millis(e.time)},
                      {"stream", std::string(1, static_cast<char>(e.stream))},
                      {"step", e.step},
                      {"text", e.text}};
}

// The compiled grep of a log query (null when it has none); errc::invalid_argument naming a bad
// pattern. The filter keeps a pointer into it.
result<std::shared_ptr<const std::regex>> filter_of(const log_query& q) {
  if (q.grep.empty()) return std::shared_ptr<const std::regex>();
  auto compiled = compile_log_pattern(q.grep);
  if (!compiled) return error(errc::invalid_argument, "grep: " + compiled.error().message);
  return std::move(*compiled);
}

// A blob of the cache into a file.
result<void> copy_blob(cache::blob_reader& reader, const fs::path& file) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) return error(errc::io_error, "cannot write " + file.string());
  auto n = reader.visit(0, reader.size(), [&out](std::span<const std::byte> piece) {
    out.write(reinterpret_cast<const char*>(piece.data()),
              static_cast<std::streamsize>(piece.size()));
    return piece.size();
  });
  if (!n) return n.error();
  out.close();
  if (!out) return error(errc::io_error, "writing " + file.string() + " failed");
  return {};
}

class coordinator_impl;

// The built-in runner's way to the coordinator: direct calls.
class local_uplink final : public job_uplink {
 public:
  local_uplink(std::shared_ptr<coordinator_impl> c, job_id job, pipeline_id pipeline)
      : c_(std::move(c)), job_(job), pipeline_(pipeline) {}
  bool log(std::vector<log_entry> entries) override;
  result<void> fetch_tree(const std::string& digest, const fs::path& file) override;
  result<void> fetch_artifacts(job_id job, const fs::path& file) override;
  result<void> put_artifacts(const fs::path& file) override;
  result<std::string> secret(const std::string& name) override;
  result<void> put_test_results(std::vector<test_result> results) override;

  // The results put, once the job has run (the executor's calls are done).
  std::vector<test_result> take_test_results() { return std::move(tests_); }

 private:
  std::shared_ptr<coordinator_impl> c_;
  job_id job_;
  pipeline_id pipeline_;
  std::vector<test_result> tests_;  // recorded by run_builtin before the job's finish
};

class coordinator_impl final : public coordinator_service,
                               public proxy::reconfigurable,
                               public std::enable_shared_from_this<coordinator_impl> {
 public:
  coordinator_impl(const config::config& cfg, std::shared_ptr<cache::store> store,
                   std::shared_ptr<runner::runner_service> runner,
                   std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
                   std::string self_url, std::string token)
      : ci_(cfg.ci),
        live_(std::make_shared<const config::ci_config>(cfg.ci)),
        hosted_prefix_(cfg.oci.hosted.prefix),
        data_dir_(cfg.data_dir),
        store_(std::move(store)),
        runner_(std::move(runner)),
        metrics_(std::move(metrics)),
        blocking_(std::move(blocking)),
        self_url_(std::move(self_url)),
        control_token_(std::move(token)) {}

  void install(proxy::server& srv) override {
    io_ = srv.executor();
    strand_.emplace(asio::make_strand(io_));
    auto self = shared_from_this();
    srv.route("/api/v1/pipelines", [self](exchange& ex) { return self->pipelines_route(ex); });
    srv.route("/api/v1/jobs", [self](exchange& ex) { return self->jobs_route(ex); });
    srv.route("/api/v1/sources/", [self](exchange& ex) { return self->sources_route(ex); });
    srv.route("/api/v1/runners/", [self](exchange& ex) { return self->runners_route(ex); });
    srv.route("/api/v1/projects/", [self](exchange& ex) { return self->projects_route(ex); });
  }

  result<void> start() override;
  void stop() noexcept override;
  // Takes ci.tokens, ci.secrets, ci.quarantine and ci.quarantine_exit_passes.
  void reconfigure(const config::config& cfg) override {
    live_.store(std::make_shared<const config::ci_config>(cfg.ci));
  }

  // --- the dashboard's reads (service.h) ---
  bool may_read(const exchange& ex) const override;
  asio::awaitable<std::vector<pipeline_record>> recent_pipelines(std::string project,
                                                                 std::size_t limit) override;
  asio::awaitable<std::optional<pipeline_record>> find_pipeline(pipeline_id id) override;
  asio::awaitable<std::optional<pipeline_record>> pipeline_of_job(job_id id) override;
  asio::awaitable<result<log_store::page>> read_log(job_id id, log_query query,
                                                    std::size_t max) override;
  asio::awaitable<void> stream_log(exchange& ex, job_id id, log_query query) override;
  asio::awaitable<result<project_tests>> tests_of(std::string project) override;
  asio::awaitable<result<measured_window>> measures_of(std::string project, std::size_t pipelines,
                                                       int days) override;

  // --- used by the uplinks (any thread) ---
  std::shared_ptr<log_store> logs() const { return logs_; }
  std::shared_ptr<artifact_store> artifacts() const { return artifacts_; }
  const std::shared_ptr<cache::store>& store() const { return store_; }
  void notify(pipeline_id p) { hub_.notify(p); }
  result<std::string> read_secret(const std::string& name) const {
    const auto ci = live_.load();
    auto it = ci->secrets.find(name);
    if (it == ci->secrets.end()) {
      return error(errc::not_found,
                   "secret " + name + " is not in this pantry's ci.secrets; add it there");
    }
    std::ifstream in(it->second, std::ios::binary);
    if (!in) {
      return error(errc::not_found, "secret " + name + ": cannot read " + it->second);
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  // --- the strand ---
  template <class F>
  auto on_strand(F f) -> asio::awaitable<std::invoke_result_t<F>> {
    co_return co_await proxy::off_thread(*strand_, std::move(f));
  }
  template <class F>
  auto blocking(F f) -> asio::awaitable<std::invoke_result_t<F>> {
    co_return co_await proxy::off_thread(blocking_, std::move(f));
  }

  // On the strand: memory stays bounded, the oldest finished pipelines beyond
  // kFinishedJobsInMemory jobs leave the scheduler (their journal entries stay, with the history
  // later features read).
  void forget_old_pipelines() {
    std::size_t keep = 0;
    std::size_t jobs = 0;
    for (const auto* p : sched_.pipelines("", SIZE_MAX)) {  // newest first
      if (p->state == pipeline_state::running) continue;
      jobs += p->jobs.size();
      if (jobs > kFinishedJobsInMemory && keep > 0) break;
      ++keep;
    }
    for (auto id : sched_.forget_finished(keep))
      specs_.erase(id);
  }

  // On the strand: acts on what a scheduler call changed.
  void commit(const changes& ch);
  // On the strand: the journal writer, when it is idle and something is dirty.
  void flush_journal();
  // Waits until the journal holds everything changed before the call.
  asio::awaitable<void> journal_barrier();

  // On the strand: the ticket of an assignment (secret values filled in later, off the strand).
  ticket make_ticket(const assignment& a, std::vector<std::string>& secret_names) const;
  const pipeline_spec* spec_of(pipeline_id id) const {
    auto it = specs_.find(id);
    return it == specs_.end() ? nullptr : it->second.get();
  }

  asio::awaitable<void> slot_loop(std::string name);
  // Blocking: the values of the secrets `names` into the ticket.
  result<void> fill_secrets(ticket& t, const std::vector<std::string>& names) const;
  // A claimed job that cannot start (a secret is unreadable) fails with `reason`.
  asio::awaitable<void> fail_unstarted(assignment a, std::string reason);
  // Waits up to `wait` for a job `runner` may take; `secure`: the runner is reached over TLS or
  // on this machine, so secrets may travel to it.
  asio::awaitable<std::optional<std::pair<assignment, ticket>>> claim_wait(
      std::string runner, std::chrono::milliseconds wait, std::vector<std::string>& secrets,
      bool secure);
  bool needs_secrets(const job_record& j) const;  // on the strand
  asio::awaitable<void> run_builtin(assignment a, ticket t);
  // The order file of a claimed job from its project's test history into the ticket ("" for the
  // image build, or when the history cannot be read: the job then runs in pytest's own order).
  asio::awaitable<void> plan_tests(const assignment& a, ticket& t);
  // Blocking: the order file of job `spec_name` (of `shards`) of `project`, with
  // `changed_files` first after the recent failures.
  std::string plan_order_file(const std::string& project, const std::string& spec_name, int shards,
                              std::vector<std::string> changed_files) const;
  // Blocking (git, maybe a fetch): the files a git source changed since its base; empty when
  // the source has no base (an uploaded tree never has one: no repository to compare it with)
  // or git fails (a warning: the job then runs without a "changed" group).
  std::vector<std::string> changed_files(const source_ref& source) const;
  // Records the test results of `job` (still running: its finish comes after) in the history,
  // then lets its quarantined tests that passed enough runs in a row out (a line in its log).
  asio::awaitable<std::optional<error>> record_tests(job_id job, std::vector<test_result> results);
  // Blocking: the project's test history; `flaky`: with its flaky tests, `summary`: with every
  // test's summary and the 100 recent failures (each costs a pass over the runs).
  result<project_tests> collect_tests(const std::string& project, bool flaky, bool summary) const;
  // Blocking: the project's quarantined tests, the config's merged with the API's changes.
  result<std::vector<quarantined_test>> quarantined_tests(const std::string& project) const;
  // Blocking: takes the quarantined tests of `run` that passed ci.quarantine_exit_passes runs in
  // a row out of quarantine; the lines to log, one per test.
  std::vector<std::string> release_passing(const test_run& run);
  // Blocking: one line in a job's log (the pantry stream, step "finish").
  void log_line(job_id job, std::string text);
  void record_end(const job_record& j, const pipeline_record& p);

  // A project's measures window (measures.h), copied off the scheduler on the strand: its
  // newest `limit` ended pipelines that ended at or after `since` (without their attachments),
  // and the usual runtime of each job a failure stopped, keyed by job id.
  struct measures_window {
    std::string project;
    std::vector<pipeline_record> pipelines;
    std::map<job_id, double> usual;
  };
  // On the strand.
  measures_window window_of(const std::string& project, std::size_t limit,
                            clock::time_point since) const;
  // Blocking (reads the test history and the quarantine): the window's measures, each
  // pipeline's and the aggregate; with `publish` (the default window only, so that the gauges
  // always mean the same window) the aggregate is also set as the project's /metrics gauges.
  result<std::pair<project_measures, std::vector<pipeline_measures>>> compute_measures(
      const measures_window& w, bool publish);
  // On the strand: recomputes the measures of `project` on the blocking pool (a pipeline of it
  // ended), so that /metrics follows.
  void refresh_measures(const std::string& project);

  // --- HTTP ---
  // The role of the request's token: "Bearer TOKEN", and with `basic` also HTTP Basic with
  // TOKEN as the password (the dashboard's pages only; see may_read).
  std::optional<role> role_of(const exchange& ex, std::string* name, bool basic = false) const;
  asio::awaitable<bool> allowed(exchange& ex, role need, std::string* name = nullptr);
  asio::awaitable<void> pipelines_route(exchange& ex);
  asio::awaitable<void> jobs_route(exchange& ex);
  asio::awaitable<void> sources_route(exchange& ex);
  asio::awaitable<void> runners_route(exchange& ex);
  asio::awaitable<void> projects_route(exchange& ex);
  // GET (read), PUT and DELETE ?test=ID (submit) of /api/v1/projects/<project>/quarantine.
  asio::awaitable<void> quarantine_route(exchange& ex, const target_parts& t);
  asio::awaitable<void> measures_route(exchange& ex, const target_parts& t);
  asio::awaitable<void> submit(exchange& ex);
  asio::awaitable<void> follow_pipeline(exchange& ex, pipeline_id id, const target_parts& t);

  // The ci section as it started: what a reload cannot change (slots, limits, runner_timeout).
  config::ci_config ci_;
  // Its live settings now (tokens, secrets, quarantine, quarantine_exit_passes): a reload swaps
  // it (reconfigure()); a request reads it once and keeps what it got.
  std::atomic<std::shared_ptr<const config::ci_config>> live_;
  std::string hosted_prefix_;
  fs::path data_dir_;
  std::shared_ptr<cache::store> store_;
  std::shared_ptr<runner::runner_service> runner_;
  std::shared_ptr<proxy::metrics_registry> metrics_;
  asio::any_io_executor blocking_;
  std::string self_url_;
  std::string control_token_;

  asio::any_io_executor io_;
  std::optional<asio::strand<asio::any_io_executor>> strand_;
  std::shared_ptr<log_store> logs_;
  std::shared_ptr<artifact_store> artifacts_;
  std::shared_ptr<test_history> history_;
  std::shared_ptr<quarantine_store> quarantine_;
  std::optional<asio::thread_pool> job_pool_;  // the jobs' blocking work (workspaces, git, builds)
  std::shared_ptr<git_mirrors> mirrors_;
  detail::hub hub_;       // log lines and state changes, by pipeline
  detail::hub work_hub_;  // key 0: a job became ready
  std::atomic<bool> stopping_{false};

  // Strand-only state.
  scheduler sched_;
  std::map<pipeline_id, std::shared_ptr<const pipeline_spec>> specs_;
  std::map<job_id, std::shared_ptr<runner::step_cancel>> builtin_running_;
  std::map<std::string, clock::time_point, std::less<>> runner_seen_;
  std::set<pipeline_id> dirty_;
  bool journal_busy_ = false;
  std::uint64_t journal_round_ = 0;  // rounds started
  std::uint64_t journal_done_ = 0;   // rounds written
  detail::hub journal_hub_;          // key 0: a round was written
  std::optional<asio::steady_timer> reaper_;
  unsigned slots_ = 0;
};

// --- uplink ---

bool local_uplink::log(std::vector<log_entry> entries) {
  if (auto r = c_->logs()->append(job_, std::move(entries)); !r) {
    spdlog::warn("ci: job {}: {}", job_, r.error().message);
  }
  c_->notify(pipeline_);
  return true;  // a cancelled built-in job is cancelled directly (its step_cancel)
}

result<void> local_uplink::fetch_tree(const std::string& digest, const fs::path& file) {
  auto d = cache::digest::parse(digest);
  if (!d) return d.error();
  auto reader = c_->store()->open_blob(*d);
  if (!reader) {
    return error(errc::not_found, "the uploaded tree " + digest +
                                      " is no longer in the cache; submit the pipeline again");
  }
  return copy_blob(*reader, file);
}

result<void> local_uplink::fetch_artifacts(job_id job, const fs::path& file) {
  auto reader = c_->artifacts()->get(job);
  if (!reader) return reader.error();
  return copy_blob(*reader, file);
}

result<void> local_uplink::put_artifacts(const fs::path& file) {
  auto r = c_->artifacts()->put(job_, file);
  if (!r) return r.error();
  return {};
}

result<std::string> local_uplink::secret(const std::string& name) {
  return c_->read_secret(name);
}

result<void> local_uplink::put_test_results(std::vector<test_result> results) {
  tests_ = std::move(results);
  return {};
}

// --- life ---

result<void> coordinator_impl::start() {
  log_limits ll;
  ll.max_job = ci_.log_limits.max_job;
  ll.keep_for = ci_.log_limits.keep_for;
  ll.max_total = ci_.log_limits.max_total;
  auto logs = log_store::open(store_, ll);
  if (!logs) return logs.error();
  logs_ = std::move(*logs);
  artifact_limits al;
  al.max_job = ci_.artifact_limits.max_job;
  al.keep_for = ci_.artifact_limits.keep_for;
  al.max_total = ci_.artifact_limits.max_total;
  auto arts = artifact_store::open(store_, al);
  if (!arts) return arts.error();
  artifacts_ = std::move(*arts);
  history_ = test_history::open(store_);
  quarantine_ = quarantine_store::open(store_);
  // Never file: (a submitter would read this machine's repositories) nor ssh (with this
  // machine's keys); credentials for https come from ci.secrets (source.auth_secret).
  git_options git;
  git.allowed_protocols = "https:http:git";
  mirrors_ = std::make_shared<git_mirrors>(data_dir_ / "ci" / "git", git);

  // The journal back: every pipeline as it was last written.
  std::vector<pipeline_record> loaded;
  std::vector<std::string> problems;
  auto walked = store_->for_each_entry(
      keys::kPipelinePrefix, [&](std::string_view key, const cache::entry& e) {
        boost::system::error_code ec;
        auto v = json::parse(e.attribute("pipeline"), ec);
        if (ec) {
          problems.push_back(std::string(key) + ": not JSON");
          return true;
        }
        auto p = pipeline_from_json(v);
        if (!p) {
          problems.push_back(std::string(key) + ": " + p.error().message);
          return true;
        }
        loaded.push_back(std::move(*p));
        return true;
      });
  if (!walked) return walked.error();
  for (const auto& p : problems)
    spdlog::error("ci: a journal entry cannot be read and is ignored: {}", p);
  for (const auto& p : loaded) {
    auto spec = p.attachment.if_contains("spec");
    auto file = p.attachment.if_contains("spec_file");
    if (!spec || !spec->is_string()) continue;
    auto parsed = parse_pipeline_spec(spec->get_string(), file && file->is_string()
                                                              ? std::string_view(file->get_string())
                                                              : std::string_view(".pantry.yml"));
    if (parsed) specs_[p.id] = std::make_shared<const pipeline_spec>(std::move(*parsed));
  }
  auto now = clock::now();
  std::size_t count = loaded.size();
  auto ch = sched_.restore(std::move(loaded), now);
  forget_old_pipelines();
  // Pipelines whose spec no longer parses (a newer pantry's) cannot run: cancel them.
  for (const auto* p : sched_.pipelines("", SIZE_MAX)) {
    if (p->state == pipeline_state::running && !spec_of(p->id)) {
      auto c = sched_.cancel_pipeline(p->id, "its .pantry.yml cannot be read by this pantry", now);
      ch.dirty.insert(ch.dirty.end(), c.dirty.begin(), c.dirty.end());
      ch.ended.insert(ch.ended.end(), c.ended.begin(), c.ended.end());
    }
  }
  if (count > 0) {
    spdlog::info("ci: {} pipelines restored, {} jobs queued", count, sched_.queued());
  }

  slots_ = 0;
  if (runner_ && !runner_->keep_upper_dir().empty()) {
    slots_ = ci_.slots ? ci_.slots : std::max(1u, std::thread::hardware_concurrency());
  } else {
    spdlog::warn("ci: no built-in runner (the runner is disabled); jobs wait for `pantry runner`");
  }
  job_pool_.emplace(slots_ + 2);
  asio::post(*strand_, [self = shared_from_this(), ch] { self->commit(ch); });
  for (unsigned i = 0; i < slots_; ++i) {
    asio::co_spawn(asio::make_strand(io_), slot_loop(std::string(kBuiltinRunner)), asio::detached);
  }
  // Runners silent past ci.runner_timeout lose their jobs; retention once an hour.
  reaper_.emplace(*strand_);
  asio::co_spawn(
      *strand_,
      [self = shared_from_this()]() -> asio::awaitable<void> {
        auto last_prune = clock::time_point{};
        auto last_forget = clock::time_point{};
        while (!self->stopping_) {
          self->reaper_->expires_after(std::chrono::milliseconds(500));
          boost::system::error_code ec;
          co_await self->reaper_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (self->stopping_) break;
          auto now = clock::now();
          // A quiet job's last lines reach the store within a second (readers see them at once).
          asio::post(self->blocking_, [logs = self->logs_] {
            if (auto r = logs->flush_idle(); !r) spdlog::warn("ci: {}", r.error().message);
          });
          for (auto it = self->runner_seen_.begin(); it != self->runner_seen_.end();) {
            if (now - it->second > self->ci_.runner_timeout) {
              auto ch =
                  self->sched_.runner_lost(it->first, "runner " + it->first + " went silent", now);
              spdlog::warn("ci: runner {} silent for longer than {} s; its jobs are re-queued",
                           it->first, self->ci_.runner_timeout.count());
              self->commit(ch);
              it = self->runner_seen_.erase(it);
            } else {
              ++it;
            }
          }
          if (now - last_forget > std::chrono::minutes(1)) {
            last_forget = now;
            self->forget_old_pipelines();
          }
          if (now - last_prune > std::chrono::hours(1)) {
            last_prune = now;

            auto logs = self->logs_;
            auto arts = self->artifacts_;
            asio::post(self->blocking_, [logs, arts, now] {
              if (auto r = logs->prune(now); !r) spdlog::warn("ci: {}", r.error().message);
              if (auto r = arts->prune(now); !r) spdlog::warn("ci: {}", r.error().message);
            });
          }
        }
      },
      asio::detached);
  return {};
}

void coordinator_impl::stop() noexcept {
  stopping_ = true;
  // The server's threads are gone: nothing runs on the strand any more. Cancel the built-in jobs
  // (their containers are killed by the runner, which stops after this service).
  for (auto& [id, cancel] : builtin_running_)
    cancel->cancel();
  if (job_pool_) job_pool_->join();
  // The last journal round, synchronously.
  for (auto id : dirty_) {
    const auto* p = sched_.pipeline(id);
    if (!p) continue;
    cache::entry e;
    e.attributes.emplace_back("pipeline", json::serialize(to_json(*p)));
    e.expires_at = clock::time_point::max();
    if (auto r = store_->put_entry(keys::pipeline(id), e); !r) {
      spdlog::error("ci: journal: {}", r.error().message);
    }
  }
  dirty_.clear();
}

// --- the strand ---

void coordinator_impl::record_end(const job_record& j, const pipeline_record& p) {
  proxy::labels l{{"project", p.project}, {"outcome", std::string(to_string(j.state))}};
  metrics_->add("pantry_ci_jobs_total", l, 1, "CI jobs ended, by project and outcome");
  proxy::labels lp{{"project", p.project}};
  if (j.started_at != clock::time_point{} && j.finished_at >= j.started_at) {
    metrics_->add("pantry_ci_job_milliseconds_total", lp,
                  static_cast<std::uint64_t>(seconds_between(j.started_at, j.finished_at) * 1000),
                  "Milliseconds CI jobs ran, by project");
  }
  metrics_->add("pantry_ci_cpu_milliseconds_total", lp,
                static_cast<std::uint64_t>(j.cpu_seconds * 1000),
                "Runner CPU-milliseconds of CI jobs");
}

coordinator_impl::measures_window coordinator_impl::window_of(const std::string& project,
                                                              std::size_t limit,
                                                              clock::time_point since) const {
  measures_window w;
  w.project = project;
  for (const auto* p : sched_.pipelines(project, SIZE_MAX)) {  // newest first
    if (w.pipelines.size() >= limit) break;
    if (p->state == pipeline_state::running || p->finished_at < since) continue;
    pipeline_record copy = *p;
    copy.attachment = {};
    for (const job_record& j : copy.jobs) {
      if (j.state != job_state::cancelled && j.state != job_state::skipped) continue;
      if (auto u = sched_.usual_runtime(project, j.spec_name, j.image_build)) w.usual[j.id] = *u;
    }
    w.pipelines.push_back(std::move(copy));
  }
  return w;
}

result<std::pair<project_measures, std::vector<pipeline_measures>>>
coordinator_impl::compute_measures(const measures_window& w, bool publish) {
  auto runs = history_->runs(w.project);
  if (!runs) return runs.error();
  auto quarantined = quarantined_tests(w.project);
  if (!quarantined) return quarantined.error();
  // Flaky per the whole kept history (more evidence than the window alone), counted among the
  // tests the window's pipelines ran.
  std::set<std::string, std::less<>> flaky, quarantine_ids, window_tests;
  for (const auto& f : flaky_tests(*runs))
    flaky.insert(f.id);
  for (const auto& q : *quarantined)
    quarantine_ids.insert(q.id);
  std::set<pipeline_id> in_window;
  for (const auto& p : w.pipelines)
    in_window.insert(p.id);
  for (const auto& r : *runs) {
    if (!in_window.contains(r.pipeline)) continue;
    for (const auto& t : r.results)
      window_tests.insert(t.id);
  }
  std::size_t flaky_in_window = 0;
  for (const auto& id : window_tests)
    flaky_in_window += flaky.contains(id) ? 1 : 0;
  const usual_runtime_fn usual = [&w](const job_record& j) -> std::optional<double> {
    auto it = w.usual.find(j.id);
    if (it == w.usual.end()) return std::nullopt;
    return it->second;
  };
  std::vector<pipeline_measures> each;
  each.reserve(w.pipelines.size());
  for (const auto& p : w.pipelines)
    each.push_back(measure_pipeline(p, *runs, flaky, quarantine_ids, usual));
  project_measures a = aggregate_measures(w.project, each, window_tests.size(), flaky_in_window);
  if (!publish) return std::make_pair(std::move(a), std::move(each));

  // The gauges: one series per project (and per kind of saving), set whenever they are
  // computed; a median still unknown is left unset rather than shown as 0.
  const proxy::labels l{{"project", w.project}};
  metrics_->set("pantry_ci_window_pipelines", l, static_cast<double>(a.pipelines),
                "Ended CI pipelines in the project's measures window");
  metrics_->set("pantry_ci_flaky_tests", l, static_cast<double>(a.flaky_tests),
                "Flaky tests among those the window's pipelines ran");
  metrics_->set("pantry_ci_red_only_flaky_pipelines", l, static_cast<double>(a.red_only_flaky),
                "Failed pipelines in the window red only because of flaky or quarantined tests");
  const auto set_known = [&](const char* name, const std::optional<double>& v, const char* help) {
    if (v) metrics_->set(name, l, *v, help);
  };
  set_known("pantry_ci_flaky_test_ratio", a.flaky_test_rate,
            "Flaky tests / tests run in the window");
  set_known("pantry_ci_red_only_flaky_ratio", a.red_only_flaky_rate,
            "Red-only-because-flaky pipelines / failed pipelines in the window");
  set_known("pantry_ci_time_to_red_seconds", a.median_time_to_red,
            "Median seconds from submit to the first failure (a failing test's report, else a "
            "failed job's end), over the window");
  set_known("pantry_ci_time_to_green_seconds", a.median_time_to_green,
            "Median seconds from submit to a green result, over the window");
  set_known("pantry_ci_queue_wait_seconds", a.median_queue_wait,
            "Median of a pipeline's summed queue wait, over the window");
  metrics_->set("pantry_ci_window_cpu_seconds", l, a.cpu_seconds,
                "Runner CPU-seconds of the window's pipelines");
  metrics_->set("pantry_ci_window_saved_seconds", {{"project", w.project}, {"by", "supersede"}},
                a.saved_by_supersede,
                "Runner seconds the window's pipelines saved, by supersede or stopping early");
  metrics_->set("pantry_ci_window_saved_seconds",
                {{"project", w.project}, {"by", "stopping_early"}}, a.saved_by_stopping_early);
  const cache_ratio hits = hit_ratio(a.cache);
  set_known("pantry_ci_cache_hit_ratio", hits.requests,
            "Share of the window's jobs' pip and image requests served from pantry's cache");
  set_known("pantry_ci_cache_byte_hit_ratio", hits.bytes,
            "Share of the window's jobs' pip and image response bytes served from pantry's cache");
  const cache_split all = a.cache.all();
  const std::pair<const char*, const cache_count*> sources[] = {
      {"cache", &all.cache}, {"upstream", &all.upstream}, {"coalesced", &all.coalesced}};
  for (const auto& [from, count] : sources) {
    const proxy::labels by{{"project", w.project}, {"from", from}};
    metrics_->set("pantry_ci_window_cache_requests", by, static_cast<double>(count->requests),
                  "The window's jobs' pip and image requests, by where the answer came from");
    metrics_->set("pantry_ci_window_cache_bytes", by, static_cast<double>(count->bytes),
                  "The window's jobs' pip and image response bytes, by where they came from");
  }
  return std::make_pair(std::move(a), std::move(each));
}

void coordinator_impl::refresh_measures(const std::string& project) {
  auto w = std::make_shared<measures_window>(
      window_of(project, kMeasuresPipelines, clock::now() - std::chrono::days(kMeasuresDays)));
  asio::post(blocking_, [w, self = shared_from_this()] {
    if (auto r = self->compute_measures(*w, true); !r) {
      spdlog::warn("ci: measures of {}: {}", w->project, r.error().message);
    }
  });
}

void coordinator_impl::commit(const changes& ch) {
  for (auto id : ch.dirty) {
    dirty_.insert(id);
    hub_.notify(id);
  }
  for (const auto& [job, runner] : ch.kill) {
    if (auto it = builtin_running_.find(job); it != builtin_running_.end()) it->second->cancel();
  }
  for (auto id : ch.ended) {
    const auto* j = sched_.job(id);
    if (!j) continue;
    const auto* p = sched_.pipeline(j->pipeline);
    if (p) record_end(*j, *p);
    // A job no built-in slot runs any more: its log ends now, with the reason when it did not
    // run to its end here.
    bool running_here = builtin_running_.count(id) != 0;
    std::string reason = j->reason;
    job_state state = j->state;
    auto logs = logs_;
    asio::post(blocking_, [logs, id, running_here, reason, state, pid = j->pipeline,
                           self = shared_from_this()] {
      if ((state == job_state::cancelled || state == job_state::skipped) && !reason.empty()) {
        std::vector<log_entry> v(1);
        v[0].time = clock::now();
        v[0].stream = log_stream::pantry;
        v[0].step = "finish";
        v[0].text = std::string("job ") + std::string(to_string(state)) + ": " + reason;
        (void)logs->append(id, std::move(v));
      }
      if (!running_here) (void)logs->close(id);
      self->notify(pid);
    });
  }
  for (auto id : ch.pipelines_ended) {
    const auto* p = sched_.pipeline(id);
    if (!p) continue;
    proxy::labels l{{"project", p->project}, {"outcome", std::string(to_string(p->state))}};
    metrics_->add("pantry_ci_pipelines_total", l, 1, "CI pipelines ended, by project and outcome");
    refresh_measures(p->project);
    if (p->superseded_by != 0) {
      proxy::labels lp{{"project", p->project}};
      metrics_->add("pantry_ci_superseded_total", lp, 1, "CI pipelines cancelled by a newer one");
      metrics_->add("pantry_ci_saved_runner_milliseconds_total", lp,
                    static_cast<std::uint64_t>(p->saved_runner_seconds * 1000),
                    "Runner-milliseconds that supersede saved");
    }
  }
  if (ch.work_ready) work_hub_.notify(0);
  flush_journal();
}

void coordinator_impl::flush_journal() {
  if (journal_busy_ || dirty_.empty() || stopping_) return;
  journal_busy_ = true;
  ++journal_round_;
  std::vector<std::pair<std::string, cache::entry>> batch;
  for (auto id : dirty_) {
    const auto* p = sched_.pipeline(id);
    if (!p) continue;
    cache::entry e;
    e.attributes.emplace_back("pipeline", json::serialize(to_json(*p)));
    e.fetched_at = clock::now();
    e.expires_at = clock::time_point::max();
    batch.emplace_back(keys::pipeline(id), std::move(e));
  }
  dirty_.clear();
  asio::post(blocking_, [self = shared_from_this(), batch = std::move(batch)] {
    if (auto r = self->store_->put_entries(batch); !r) {
      spdlog::error("ci: writing the journal failed: {}", r.error().message);
    }
    asio::post(*self->strand_, [self] {
      self->journal_busy_ = false;
      self->journal_done_ = self->journal_round_;
      self->journal_hub_.notify(0);
      self->flush_journal();
    });
  });
}

asio::awaitable<void> coordinator_impl::journal_barrier() {
  // What changed before this call is in the round under way, or, when one was under way already,
  // still dirty and so in the next one.
  std::uint64_t target =
      co_await on_strand([&] { return dirty_.empty() ? journal_round_ : journal_round_ + 1; });
  for (;;) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    timer->expires_after(std::chrono::seconds(5));
    bool written = co_await on_strand([&] {
      if (journal_done_ >= target) return true;
      journal_hub_.add(0, timer);
      return false;
    });
    if (written) co_return;
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) co_return;
  }
}

ticket coordinator_impl::make_ticket(const assignment& a,
                                     std::vector<std::string>& secret_names) const {
  const job_record* j = sched_.job(a.job);
  const pipeline_record* p = sched_.pipeline(a.pipeline);
  const pipeline_spec* spec = spec_of(a.pipeline);
  ticket t;
  t.job = a.job;
  t.pipeline = a.pipeline;
  t.lease = a.lease;
  t.attempt = j->attempts;
  t.name = j->name;
  t.project = p->project;
  t.patch = p->patch;
  t.commit = p->commit;
  if (auto s = p->attachment.if_contains("source")) {
    if (auto src = source_from_json(*s)) t.source = std::move(*src);
  }
  if (!spec) return t;
  t.allow_unpinned = spec->allow_unpinned;
  if (j->image_build) {
    t.build = build_ticket{
        spec->build ? spec->build->file : "Containerfile", spec->build ? spec->build->context : ".",
        image_repo_of(hosted_prefix_, p->project) + ":pipeline-" + std::to_string(p->id)};
    return t;
  }
  const job_spec* js = nullptr;
  for (const auto& candidate : spec->jobs) {
    if (candidate.name == j->spec_name) js = &candidate;
  }
  if (!js) return t;
  if (js->image) {
    t.image = *js->image;
  } else if (spec->image) {
    t.image = *spec->image;
  } else {
    for (const auto& other : p->jobs) {
      if (other.image_build) t.image = other.image;
    }
  }
  t.steps = js->run;
  t.env = js->env;
  auto add = [&t](std::string k, std::string v) { t.env.emplace_back(std::move(k), std::move(v)); };
  add("CI", "true");
  add("PANTRY_CI", "true");
  add("PANTRY_PIPELINE", std::to_string(p->id));
  add("PANTRY_JOB", std::to_string(j->id));
  add("PANTRY_JOB_NAME", j->name);
  add("PANTRY_PROJECT", p->project);
  add("PANTRY_PATCH", p->patch);
  add("PANTRY_COMMIT", p->commit);
  if (j->shards > 0) {
    add("PANTRY_SHARD", std::to_string(j->shard));
    add("PANTRY_SHARDS", std::to_string(j->shards));
  }
  // The pytest plugin stops at the first failure that fails its re-run too (pytest_plugin.h).
  if (js->fail_fast) add(std::string(kFailFastVariable), "1");
  secret_names = js->secrets;
  t.artifacts = js->artifacts;
  for (auto need : j->needs) {
    const auto* n = sched_.job(need);
    if (!n || n->image_build) continue;
    for (const auto& candidate : spec->jobs) {
      if (candidate.name == n->spec_name && !candidate.artifacts.empty()) {
        t.artifacts_from.push_back(need);
      }
    }
  }
  t.network = js->network;
  t.tmpfs = js->tmpfs;
  if (js->timeout) t.timeout = *js->timeout;
  return t;
}

bool coordinator_impl::needs_secrets(const job_record& j) const {
  const auto* p = sched_.pipeline(j.pipeline);
  if (p) {
    if (auto s = p->attachment.if_contains("source")) {
      auto src = source_from_json(*s);
      if (src && !src->git_auth_secret.empty()) return true;
    }
  }
  const auto* spec = spec_of(j.pipeline);
  if (!spec) return false;
  for (const auto& js : spec->jobs) {
    if (js.name == j.spec_name) return !js.secrets.empty();
  }
  return false;
}

asio::awaitable<std::optional<std::pair<assignment, ticket>>> coordinator_impl::claim_wait(
    std::string runner, std::chrono::milliseconds wait, std::vector<std::string>& secrets,
    bool secure) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    timer->expires_at(deadline);
    auto got = co_await on_strand([&]() -> std::optional<std::pair<assignment, ticket>> {
      if (stopping_) return std::nullopt;
      auto now = clock::now();
      if (runner != kBuiltinRunner) runner_seen_[runner] = now;
      changes ch;
      // A remote runner takes no image build (the builder is this pantry's) and, unless it
      // reached us over TLS (or from this machine), no job with secrets.
      job_filter accept;
      if (runner != kBuiltinRunner) {
        accept = [this, secure](const job_record& j) {
          if (j.image_build) return false;
          return secure || !needs_secrets(j);
        };
      }
      auto a = sched_.claim(runner, now, ch, accept);
      if (!a) {
        work_hub_.add(0, timer);
        return std::nullopt;
      }
      auto t = make_ticket(*a, secrets);
      if (const auto* j = sched_.job(a->job); j && j->queued_at != clock::time_point{}) {
        proxy::labels l{{"project", t.project}};
        metrics_->add(
            "pantry_ci_queue_wait_milliseconds_total", l,
            static_cast<std::uint64_t>(std::max(0.0, seconds_between(j->queued_at, now) * 1000)),
            "Milliseconds CI jobs waited in the queue before they started, by project");
        metrics_->add("pantry_ci_jobs_started_total", l, 1, "CI jobs handed to a runner");
      }
      if (runner == kBuiltinRunner) {
        builtin_running_[a->job] = std::make_shared<runner::step_cancel>();
      }
      commit(ch);
      return std::make_pair(*a, std::move(t));
    });
    if (got || stopping_) co_return got;
    if (std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

result<void> coordinator_impl::fill_secrets(ticket& t,
                                            const std::vector<std::string>& names) const {
  for (const auto& name : names) {
    auto v = read_secret(name);
    if (!v) return v.error();
    t.secrets.push_back(runner::secret_value{name, std::move(*v)});
  }
  return {};
}

asio::awaitable<void> coordinator_impl::fail_unstarted(assignment a, std::string reason) {
  job_outcome out;
  out.reason = std::move(reason);
  co_await on_strand([&] {
    builtin_running_.erase(a.job);
    if (auto ch = sched_.finish(a.job, a.lease, out, clock::now())) commit(*ch);
    return 0;
  });
}

asio::awaitable<void> coordinator_impl::slot_loop(std::string name) {
  while (!stopping_) {
    std::vector<std::string> secret_names;
    auto got = co_await claim_wait(name, std::chrono::seconds(30), secret_names, true);
    if (!got) continue;
    auto& [a, t] = *got;
    auto filled = co_await blocking([&] { return fill_secrets(t, secret_names); });
    if (!filled) {
      co_await fail_unstarted(a, filled.error().message);
      continue;
    }
    co_await plan_tests(a, t);
    co_await run_builtin(a, std::move(t));
  }
}

asio::awaitable<void> coordinator_impl::run_builtin(assignment a, ticket t) {
  auto cancel = co_await on_strand([&] {
    auto it = builtin_running_.find(a.job);
    return it == builtin_running_.end() ? std::make_shared<runner::step_cancel>() : it->second;
  });
  executor_context ctx;
  ctx.runner = runner_;
  ctx.blocking = job_pool_->get_executor();
  ctx.work_root = data_dir_ / "ci" / "work";
  ctx.mirrors = mirrors_;
  ctx.runner_name = std::string(kBuiltinRunner);
  ctx.pantry_url = self_url_;
  ctx.pantry_token = control_token_;
  auto self = shared_from_this();
  auto uplink = std::make_shared<local_uplink>(self, a.job, a.pipeline);
  job_outcome out = co_await execute_job(t, ctx, uplink, cancel);
  // Before the finish, so that whoever sees the job end finds its tests in the history.
  if (auto tests = uplink->take_test_results(); !tests.empty()) {
    auto failed = co_await record_tests(a.job, std::move(tests));
    if (failed) {
      co_await blocking([&] {
        log_line(a.job, "tests: not recorded: " + failed->message);
        return 0;
      });
    }
  }
  auto final_state = co_await on_strand([&] {
    builtin_running_.erase(a.job);
    auto ch = sched_.finish(a.job, a.lease, out, clock::now());
    if (ch) commit(*ch);
    const auto* j = sched_.job(a.job);
    return j ? finished(j->state) : true;
  });
  if (final_state) {
    co_await blocking([&] {
      (void)logs_->close(a.job);
      return 0;
    });
  }
  hub_.notify(a.pipeline);
}

asio::awaitable<void> coordinator_impl::plan_tests(const assignment& a, ticket& t) {
  auto job = co_await on_strand([&]() -> std::optional<std::pair<std::string, int>> {
    const auto* j = sched_.job(a.job);
    if (!j || j->image_build) return std::nullopt;
    return std::make_pair(j->spec_name, std::max(1, j->shards));
  });
  if (!job) co_return;
  // Only a git source with a base has changed files. Its fetch (the built-in runner's checkout
  // then finds the commit in the mirror) runs on the blocking pool, as the history's reads do:
  // the jobs' pool may be taken by running jobs, and the claim waits for this.
  std::vector<std::string> changed;
  if (t.source.type == source_ref::kind::git && !t.source.base.empty()) {
    changed = co_await blocking([&] { return changed_files(t.source); });
  }
  t.test_order = co_await blocking(
      [&] { return plan_order_file(t.project, job->first, job->second, std::move(changed)); });
}

std::vector<std::string> coordinator_impl::changed_files(const source_ref& source) const {
  if (source.type != source_ref::kind::git || source.base.empty()) return {};
  std::optional<std::string> auth;
  if (!source.git_auth_secret.empty()) {
    auto s = read_secret(source.git_auth_secret);
    if (!s) {
      spdlog::warn("ci: the changed files of {}: {}", source.git_url, s.error().message);
      return {};
    }
    auth = std::move(*s);
  }
  auto files = mirrors_->changed_files(source.git_url, source.base, source.commit, auth);
  if (!files) {
    spdlog::warn("ci: {}; its tests run without a \"changed\" group", files.error().message);
    return {};
  }
  return std::move(*files);
}

std::string coordinator_impl::plan_order_file(const std::string& project,
                                              const std::string& spec_name, int shards,
                                              std::vector<std::string> changed_files) const {
  summary_options so;
  so.job_name = spec_name;
  std::vector<test_stat> stats;
  if (auto runs = history_->runs(project, kPlanRuns)) {
    stats = summarize(*runs, so);
  } else {
    spdlog::warn("ci: {}: the test history cannot be read ({}); its job {} runs in its own order",
                 project, runs.error().message, spec_name);
  }
  order_request req;
  req.shards = std::clamp(shards, 1, kMaxShards);
  req.changed_files = std::move(changed_files);
  auto plan = plan_test_order(stats, req);
  if (!plan) {
    spdlog::warn("ci: {}: planning the order of job {}: {}", project, spec_name,
                 plan.error().message);
    return {};
  }
  if (auto quarantined = quarantined_tests(project)) {
    for (const auto& q : *quarantined)
      plan->quarantined.push_back(q.id);
  } else {
    // The config's list still holds: a job fails for a quarantined test only when the cache is
    // unreadable and the test was added through the API.
    spdlog::warn("ci: {}: the quarantine cannot be read ({}); job {} gets ci.quarantine's list",
                 project, quarantined.error().message, spec_name);
    const auto ci = live_.load();
    if (auto it = ci->quarantine.find(project); it != ci->quarantine.end())
      plan->quarantined = it->second;
  }
  return to_order_file(*plan);
}

result<std::vector<quarantined_test>> coordinator_impl::quarantined_tests(
    const std::string& project) const {
  auto changes = quarantine_->changes(project);
  if (!changes) return changes.error();
  static const std::vector<std::string> kNone;
  const auto ci = live_.load();
  auto it = ci->quarantine.find(project);
  return merge_quarantine(it == ci->quarantine.end() ? kNone : it->second, *changes);
}

std::vector<std::string> coordinator_impl::release_passing(const test_run& run) {
  std::vector<std::string> lines;
  auto quarantined = quarantined_tests(run.project);
  if (!quarantined) {
    lines.push_back("tests: the quarantine cannot be read: " + quarantined.error().message);
    return lines;
  }
  std::optional<std::vector<test_run>> runs;  // read once, when a quarantined test ran
  for (const quarantined_test& q : *quarantined) {
    const bool ran = std::any_of(run.results.begin(), run.results.end(), [&](const test_result& r) {
      return r.id == q.id && r.outcome == test_outcome::passed;
    });
    if (!ran) continue;
    if (!runs) {
      auto read = history_->runs(run.project);
      if (!read) {
        lines.push_back("tests: the history cannot be read to let tests out of quarantine: " +
                        read.error().message);
        return lines;
      }
      runs = std::move(*read);
    }
    const std::size_t passes = passes_in_a_row(*runs, q.id, q.since);
    const unsigned exit_passes = live_.load()->quarantine_exit_passes;
    if (passes < exit_passes) continue;
    auto removed = quarantine_->remove(run.project, q.id, q.from_config);
    if (!removed) {
      lines.push_back("tests: " + q.id + " passed " + std::to_string(passes) +
                      " runs in a row but cannot leave quarantine: " + removed.error().message);
      continue;
    }
    lines.push_back("tests: " + q.id + " leaves quarantine: it passed " + std::to_string(passes) +
                    " runs in a row (ci.quarantine_exit_passes: " + std::to_string(exit_passes) +
                    ")");
  }
  return lines;
}

void coordinator_impl::log_line(job_id job, std::string text) {
  std::vector<log_entry> v(1);
  v[0].time = clock::now();
  v[0].stream = log_stream::pantry;
  v[0].step = "finish";
  v[0].text = std::move(text);
  (void)logs_->append(job, std::move(v));
}

asio::awaitable<std::optional<error>> coordinator_impl::record_tests(
    job_id job, std::vector<test_result> results) {
  auto run = co_await on_strand([&]() -> std::optional<test_run> {
    const auto* j = sched_.job(job);
    const auto* p = j ? sched_.pipeline(j->pipeline) : nullptr;
    if (!p) return std::nullopt;
    test_run r = make_test_run(*p, *j, std::move(results));
    r.time = clock::now();  // the job is finishing: its finished_at is not set yet
    return r;
  });
  if (!run) co_return std::nullopt;
  auto recorded = co_await blocking([&] { return history_->record(*run); });
  if (!recorded) {
    spdlog::warn("ci: job {}: recording its tests: {}", job, recorded.error().message);
    co_return recorded.error();
  }
  co_await blocking([&] {
    for (auto& line : release_passing(*run)) {
      spdlog::info("ci: job {}: {}", job, line);
      log_line(job, std::move(line));
    }
    return 0;
  });
  co_return std::nullopt;
}

result<project_tests> coordinator_impl::collect_tests(const std::string& project, bool flaky,
                                                      bool summary) const {
  auto runs = history_->runs(project);
  if (!runs) return runs.error();
  auto quarantined = quarantined_tests(project);
  if (!quarantined) return quarantined.error();
  project_tests out;
  out.project = project;
  out.runs = runs->size();
  out.quarantined = std::move(*quarantined);
  if (flaky) out.flaky = flaky_tests(*runs);
  if (summary) {
    out.tests = summarize(*runs, {});
    out.recent_failures = recent_failures(*runs, 100);
  }
  return out;
}

// --- The dashboard's reads ---

bool coordinator_impl::may_read(const exchange& ex) const {
  const auto r = role_of(ex, nullptr, true);
  return r && *r != role::runner;
}

asio::awaitable<std::vector<pipeline_record>> coordinator_impl::recent_pipelines(
    std::string project, std::size_t limit) {
  co_return co_await on_strand([&] {
    std::vector<pipeline_record> out;
    for (const auto* p : sched_.pipelines(project, limit)) {
      out.push_back(*p);
      out.back().attachment = {};
    }
    return out;
  });
}

asio::awaitable<std::optional<pipeline_record>> coordinator_impl::find_pipeline(pipeline_id id) {
  co_return co_await on_strand([&]() -> std::optional<pipeline_record> {
    const auto* p = sched_.pipeline(id);
    if (!p) return std::nullopt;
    pipeline_record copy = *p;
    copy.attachment = {};
    return copy;
  });
}

asio::awaitable<std::optional<pipeline_record>> coordinator_impl::pipeline_of_job(job_id id) {
  auto pid = co_await on_strand([&]() -> pipeline_id {
    const auto* j = sched_.job(id);
    return j ? j->pipeline : 0;
  });
  if (pid == 0) co_return std::nullopt;
  co_return co_await find_pipeline(pid);
}

asio::awaitable<result<log_store::page>> coordinator_impl::read_log(job_id id, log_query query,
                                                                    std::size_t max) {
  auto compiled = filter_of(query);
  if (!compiled) co_return compiled.error();
  const log_filter filter{query.step, compiled->get()};
  co_return co_await blocking([&] { return logs_->read(id, query.from, max, filter); });
}

asio::awaitable<result<project_tests>> coordinator_impl::tests_of(std::string project) {
  co_return co_await blocking([&] { return collect_tests(project, true, true); });
}

asio::awaitable<result<measured_window>> coordinator_impl::measures_of(std::string project,
                                                                       std::size_t pipelines,
                                                                       int days) {
  const clock::time_point since = clock::now() - std::chrono::days(days);
  auto window = co_await on_strand([&] { return window_of(project, pipelines, since); });
  co_return co_await blocking([&] {
    return compute_measures(window, pipelines == kMeasuresPipelines && days == kMeasuresDays);
  });
}

// --- HTTP ---

std::optional<role> coordinator_impl::role_of(const exchange& ex, std::string* name,
                                              bool basic) const {
  auto values = ex.header_values(http::field::authorization);
  if (values.size() != 1) return std::nullopt;
  std::string_view v = values.front();
  constexpr std::string_view kBearer = "Bearer ";
  std::optional<std::pair<std::string, std::string>> user_password;
  if (v.size() > kBearer.size() && ascii_iequals(v.substr(0, kBearer.size()), kBearer)) {
    v.remove_prefix(kBearer.size());
  } else if (basic && (user_password = proxy::parse_basic_authorization(v))) {
    v = user_password->second;
  } else {
    return std::nullopt;
  }
  auto same = [v](std::string_view t) {
    return t.size() == v.size() && CRYPTO_memcmp(t.data(), v.data(), v.size()) == 0;
  };
  if (same(control_token_)) {
    if (name) *name = "pantry";
    return role::admin;
  }
  const auto ci = live_.load();
  for (const auto& t : ci->tokens) {
    if (!same(t.token)) continue;
    if (name) *name = t.name;
    switch (t.role) {
      case config::ci_role::read:
        return role::read;
      case config::ci_role::submit:
        return role::submit;
      case config::ci_role::runner:
        return role::runner;
    }
  }
  return std::nullopt;
}

asio::awaitable<bool> coordinator_impl::allowed(exchange& ex, role need, std::string* name) {
  auto r = role_of(ex, name);
  if (!r) {
    co_await fail(ex, http::status::unauthorized,
                  "this route needs a token of ci.tokens (Authorization: Bearer TOKEN)");
    co_return false;
  }
  bool ok = *r == role::admin || *r == need || (need == role::read && *r == role::submit);
  if (!ok) {
    co_await fail(ex, http::status::forbidden, "this token may not do that");
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> coordinator_impl::pipelines_route(exchange& ex) {
  auto t = split_target(ex.request().target(), "/api/v1/pipelines");
  auto method = ex.request().method();
  if (t.segments.empty()) {
    if (method == http::verb::post) {
      if (!co_await allowed(ex, role::submit)) co_return;
      co_await submit(ex);
      co_return;
    }
    if (method != http::verb::get) {
      co_await fail(ex, http::status::method_not_allowed,
                    std::string(ex.request().method_string()) +
                        " is not allowed on /api/v1/pipelines; use GET or POST");
      co_return;
    }
    if (!co_await allowed(ex, role::read)) co_return;
    std::string project = t.query.count("project") ? t.query["project"] : "";
    auto list = co_await on_strand([&] {
      json::array a;
      for (const auto* p : sched_.pipelines(project, 100)) {
        auto o = to_json(*p);
        o.erase("attachment");
        a.push_back(std::move(o));
      }
      return a;
    });
    const json::object answer{{"pipelines", std::move(list)}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  auto id = parse_id(t.segments[0]);
  if (!id) {
    co_await fail(ex, http::status::not_found,
                  "no pipeline " + t.segments[0] + ": a pipeline id is a number");
    co_return;
  }
  if (t.segments.size() == 2 && t.segments[1] == "cancel" && method == http::verb::post) {
    if (!co_await allowed(ex, role::submit)) co_return;
    auto found = co_await on_strand([&] {
      if (!sched_.pipeline(*id)) return false;
      commit(sched_.cancel_pipeline(*id, "cancelled by request", clock::now()));
      return true;
    });
    if (!found) {
      co_await fail(ex, http::status::not_found, "no pipeline " + std::to_string(*id));
      co_return;
    }
    co_await journal_barrier();
    const json::object answer{{"cancelled", *id}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (!co_await allowed(ex, role::read)) co_return;
  if (t.segments.size() == 2 && t.segments[1] == "log") {
    co_await follow_pipeline(ex, *id, t);
    co_return;
  }
  if (t.segments.size() != 1 || method != http::verb::get) {
    co_await fail(ex, http::status::not_found, "no such route");
    co_return;
  }
  auto body = co_await on_strand([&]() -> std::optional<json::object> {
    const auto* p = sched_.pipeline(*id);
    if (!p) return std::nullopt;
    auto o = to_json(*p);
    if (auto a = o.if_contains("attachment"); a && a->is_object()) {
      // The source and spec are the submitter's; secrets are never in them (names only).
      json::object keep;
      if (auto s = a->get_object().if_contains("source")) keep["source"] = *s;
      if (auto f = a->get_object().if_contains("spec_file")) keep["spec_file"] = *f;
      o["attachment"] = std::move(keep);
    }
    return o;
  });
  if (!body) {
    co_await fail(ex, http::status::not_found, "no pipeline " + std::to_string(*id));
    co_return;
  }
  co_await respond_json(ex, http::status::ok, *body);
}

// GET /api/v1/projects/<project>/tests[?flaky=1|?slowest=N]: the project's test history; its
// /measures and /quarantine routes.
asio::awaitable<void> coordinator_impl::projects_route(exchange& ex) {
  auto t = split_target(ex.request().target(), "/api/v1/projects");
  if (t.segments.size() >= 2 && t.segments.back() == "quarantine") {
    co_await quarantine_route(ex, t);
    co_return;
  }
  if (t.segments.size() < 2 || (t.segments.back() != "tests" && t.segments.back() != "measures")) {
    co_await fail(ex, http::status::not_found,
                  "no such route; a project's tests are /api/v1/projects/<project>/tests, its "
                  "quarantine /api/v1/projects/<project>/quarantine, its measures "
                  "/api/v1/projects/<project>/measures");
    co_return;
  }
  if (ex.request().method() != http::verb::get) {
    co_await fail(ex, http::status::method_not_allowed,
                  std::string(ex.request().method_string()) + " is not allowed here; use GET");
    co_return;
  }
  if (!co_await allowed(ex, role::read)) co_return;
  if (t.segments.back() == "measures") {
    co_await measures_route(ex, t);
    co_return;
  }
  const std::string project = project_of(t);
  bool flaky = false;
  std::optional<std::size_t> slowest_n;
  if (auto f = t.query.find("flaky"); f != t.query.end()) {
    if (f->second != "1" && f->second != "0" && f->second != "true" && f->second != "false") {
      co_await fail(ex, http::status::bad_request,
                    "flaky: \"" + f->second.substr(0, 40) + "\" is not 1 or 0");
      co_return;
    }
    flaky = f->second == "1" || f->second == "true";
  }
  if (t.query.contains("slowest")) {
    auto v = count_param(t, "slowest", 0, 100'000);
    if (!v) {
      co_await fail(ex, http::status::bad_request, v.error().message);
      co_return;
    }
    slowest_n = static_cast<std::size_t>(*v);
  }
  auto answer = co_await blocking([&]() -> result<json::object> {
    auto pt = collect_tests(project, flaky, !flaky);
    if (!pt) return pt.error();
    json::object o;
    o["project"] = project;
    o["runs"] = pt->runs;
    json::array q;
    for (const auto& test : pt->quarantined)
      q.emplace_back(to_json(test));
    o["quarantined"] = std::move(q);
    if (flaky) {
      json::array list;
      for (const auto& f : pt->flaky)
        list.emplace_back(to_json(f));
      o["flaky"] = std::move(list);
      return o;
    }
    if (slowest_n) pt->tests = slowest(pt->tests, *slowest_n);
    json::array tests;
    for (const auto& st : pt->tests)
      tests.emplace_back(to_json(st));
    o["tests"] = std::move(tests);
    if (!slowest_n) {
      json::array failures;
      for (const auto& f : pt->recent_failures)
        failures.emplace_back(to_json(f));
      o["recent_failures"] = std::move(failures);
    }
    return o;
  });
  co_await respond_answer(ex, answer);
}

// GET /api/v1/projects/<project>/measures[?pipelines=N][&days=N]: the project's CI measures
// over its newest N ended pipelines (default 100, at most 1000) of the last N days (default 7),
// the aggregate and each pipeline's. projects_route has checked the method and the token.
asio::awaitable<void> coordinator_impl::measures_route(exchange& ex, const target_parts& t) {
  const std::string project = project_of(t);
  auto limit = count_param(t, "pipelines", kMeasuresPipelines, 1000);
  auto days = count_param(t, "days", kMeasuresDays, 3650);
  for (const auto* r : {&limit, &days}) {
    if (!*r) {
      co_await fail(ex, http::status::bad_request, r->error().message);
      co_return;
    }
  }
  auto m = co_await measures_of(project, *limit, static_cast<int>(*days));
  auto answer = [&]() -> result<json::object> {
    if (!m) return m.error();
    json::object o = to_json(m->first);
    o["window_pipelines"] = *limit;
    o["window_days"] = *days;
    json::array each;
    for (const auto& pm : m->second)
      each.emplace_back(to_json(pm));
    o["each"] = std::move(each);
    return o;
  }();
  co_await respond_answer(ex, answer);
}

asio::awaitable<void> coordinator_impl::quarantine_route(exchange& ex, const target_parts& t) {
  const auto method = ex.request().method();
  if (method != http::verb::get && method != http::verb::put && method != http::verb::delete_) {
    co_await fail(ex, http::status::method_not_allowed,
                  std::string(ex.request().method_string()) +
                      " is not allowed here; use GET, or PUT or DELETE with ?test=ID");
    co_return;
  }
  std::string who;
  if (!co_await allowed(ex, method == http::verb::get ? role::read : role::submit, &who)) {
    co_return;
  }
  const std::string project = project_of(t);
  std::string test;
  if (method != http::verb::get) {
    auto it = t.query.find("test");
    if (it == t.query.end()) {
      co_await fail(ex, http::status::bad_request,
                    "give the test id as ?test=ID (percent-encoded), as `pantry tests` shows it");
      co_return;
    }
    test = it->second;
    if (auto bad = check_test_id(test)) {
      co_await fail(ex, http::status::bad_request, bad->message);
      co_return;
    }
  }
  auto answer = co_await blocking([&]() -> result<json::object> {
    std::optional<bool> changed;
    if (method != http::verb::get) {
      const auto ci = live_.load();
      auto in = ci->quarantine.find(project);
      const bool in_config =
          in != ci->quarantine.end() &&
          std::find(in->second.begin(), in->second.end(), test) != in->second.end();
      auto done = method == http::verb::put
                      ? quarantine_->add(project, test, in_config, who, clock::now())
                      : quarantine_->remove(project, test, in_config);
      if (!done) return done.error();
      changed = *done;
      spdlog::info("ci: {}: {} {} quarantine by {}{}", project, test,
                   method == http::verb::put ? "put in" : "taken out of", who,
                   *done ? "" : " (no change)");
    }
    auto list = quarantined_tests(project);
    if (!list) return list.error();
    json::object o;
    o["project"] = project;
    if (changed) {
      o["test"] = test;
      o["changed"] = *changed;
    }
    json::array q;
    for (const auto& entry : *list)
      q.emplace_back(to_json(entry));
    o["quarantined"] = std::move(q);
    return o;
  });
  co_await respond_answer(ex, answer);
}

asio::awaitable<void> coordinator_impl::submit(exchange& ex) {
  auto text = co_await runner::read_body(ex, kMaxSubmit);
  if (!text) co_return;
  auto request = parse_submit_request(*text);
  if (!request) {
    co_await fail(ex, http::status::bad_request, request.error().message);
    co_return;
  }
  auto spec = parse_pipeline_spec(request->spec, request->spec_file);
  if (!spec) {
    co_await fail(ex, http::status::unprocessable_entity, spec.error().message);
    co_return;
  }
  auto* spec_file = &request->spec_file;
  const source_ref& source = request->source;
  const auto ci = live_.load();
  for (const auto& j : spec->jobs) {
    for (const auto& s : j.secrets) {
      if (!ci->secrets.count(s)) {
        co_await fail(ex, http::status::unprocessable_entity,
                      *spec_file + ": jobs." + j.name + ".secrets: " + s +
                          " is not a secret of this pantry; add it to ci.secrets in the "
                          "config (name: file)");
        co_return;
      }
    }
  }
  if (source.type == source_ref::kind::git && !source.git_auth_secret.empty() &&
      !ci->secrets.count(source.git_auth_secret)) {
    co_await fail(ex, http::status::unprocessable_entity,
                  "source.auth_secret: " + source.git_auth_secret +
                      " is not a secret of this pantry; add it to ci.secrets");
    co_return;
  }
  if (source.type == source_ref::kind::tree) {
    auto d = cache::digest::parse(source.tree);
    bool have = d && co_await blocking([&] { return store_->stat_blob(*d).has_value(); });
    if (!have) {
      co_await fail(ex, http::status::unprocessable_entity,
                    "source.tree: " + source.tree +
                        " was not uploaded; PUT it to /api/v1/sources/" + source.tree + " first");
      co_return;
    }
  }
  if (spec->build && source.type == source_ref::kind::none) {
    co_await fail(ex, http::status::unprocessable_entity,
                  *spec_file +
                      ": image.build needs a source holding the Containerfile; submit "
                      "with a tree or a git commit");
    co_return;
  }

  submission sub;
  sub.project = request->project;
  sub.patch = request->patch;
  sub.commit = request->commit;
  sub.keep_going = spec->keep_going;
  sub.attachment =
      json::object{{"spec", request->spec}, {"spec_file", *spec_file}, {"source", to_json(source)}};
  std::size_t offset = 0;
  if (spec->build) {
    job_plan b;
    b.name = "image";
    b.spec_name = "image";
    b.image_build = true;
    sub.jobs.push_back(std::move(b));
    offset = 1;
  }
  for (auto& pj : plan_jobs(*spec)) {
    job_plan jp;
    jp.name = std::move(pj.name);
    jp.spec_name = std::move(pj.spec_name);
    jp.shard = pj.shard;
    jp.shards = pj.shards;
    for (auto n : pj.needs)
      jp.needs.push_back(n + offset);
    if (offset) jp.needs.push_back(0);
    sub.jobs.push_back(std::move(jp));
  }
  auto shared_spec = std::make_shared<const pipeline_spec>(std::move(*spec));
  auto body = co_await on_strand([&] {
    auto [id, ch] = sched_.submit(std::move(sub), clock::now());
    specs_[id] = shared_spec;
    commit(ch);
    auto o = to_json(*sched_.pipeline(id));
    o.erase("attachment");
    o["url"] = self_url_ + "/api/v1/pipelines/" + std::to_string(id);
    return o;
  });
  co_await journal_barrier();
  co_await respond_json(ex, http::status::created, body);
}

asio::awaitable<void> coordinator_impl::jobs_route(exchange& ex) {
  auto t = split_target(ex.request().target(), "/api/v1/jobs");
  auto method = ex.request().method();
  if (t.segments.empty()) {
    if (!co_await allowed(ex, role::read)) co_return;
    std::string project = t.query.count("project") ? t.query["project"] : "";
    auto list = co_await on_strand([&] {
      json::array a;
      for (const auto* p : sched_.pipelines(project, 20)) {
        for (const auto& j : p->jobs) {
          auto o = to_json(j);
          o["project"] = p->project;
          o["patch"] = p->patch;
          o["commit"] = p->commit;
          a.push_back(std::move(o));
        }
      }
      return a;
    });
    const json::object answer{{"jobs", std::move(list)}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  auto id = parse_id(t.segments[0]);
  auto exists = id ? co_await on_strand([&] { return sched_.job(*id) != nullptr; }) : false;
  if (!exists) {
    co_await fail(ex, http::status::not_found, "no job " + t.segments[0]);
    co_return;
  }
  if (t.segments.size() == 2 && t.segments[1] == "cancel" && method == http::verb::post) {
    if (!co_await allowed(ex, role::submit)) co_return;
    co_await on_strand([&] {
      commit(sched_.cancel_job(*id, "cancelled by request", clock::now()));
      return 0;
    });
    co_await journal_barrier();
    const json::object answer{{"cancelled", *id}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (!co_await allowed(ex, role::read)) co_return;
  if (t.segments.size() == 1) {
    auto o = co_await on_strand([&] { return to_json(*sched_.job(*id)); });
    co_await respond_json(ex, http::status::ok, o);
    co_return;
  }
  if (t.segments.size() == 2 && t.segments[1] == "log") {
    log_query q;
    if (auto s = t.query.find("step"); s != t.query.end()) q.step = s->second;
    if (auto g = t.query.find("grep"); g != t.query.end()) q.grep = g->second;
    q.follow = t.query.count("follow") && t.query.at("follow") != "0";
    q.ndjson = t.query.count("format") && t.query.at("format") == "ndjson";
    if (auto f = t.query.find("from"); f != t.query.end() && f->second != "0") {
      auto from = parse_id(f->second);
      if (!from) {
        co_await fail(ex, http::status::bad_request,
                      "from: \"" + f->second.substr(0, 40) +
                          "\" is not a line's seq (a number, 0 for the first line)");
        co_return;
      }
      q.from = *from;
    }
    co_await stream_log(ex, *id, std::move(q));
    co_return;
  }
  if (t.segments.size() == 2 && t.segments[1] == "artifacts") {
    auto reader = co_await blocking([&] { return artifacts_->get(*id); });
    if (!reader) {
      co_await fail(ex, http::status::not_found,
                    "job " + std::to_string(*id) + " kept no artifacts: " + reader.error().message);
      co_return;
    }
    http::response_header<> h;
    h.result(http::status::ok);
    h.set(http::field::content_type, "application/zstd");
    h.set(http::field::content_disposition,
          "attachment; filename=\"job-" + std::to_string(*id) + "-artifacts.tar.zst\"");
    auto size = reader->size();
    if (co_await ex.begin(std::move(h), size)) co_return;
    if (co_await ex.write_blob(*reader, 0, size)) co_return;
    co_await ex.end();
    co_return;
  }
  co_await fail(ex, http::status::not_found, "no such route");
}

asio::awaitable<void> coordinator_impl::stream_log(exchange& ex, job_id job, log_query query) {
  auto compiled = filter_of(query);
  if (!compiled) {
    co_await fail(ex, http::status::bad_request, compiled.error().message);
    co_return;
  }
  const log_filter filter{query.step, compiled->get()};
  const bool follow = query.follow;
  const bool ndjson = query.ndjson;
  pipeline_id pid = co_await on_strand([&] { return sched_.job(job)->pipeline; });
  http::response_header<> h;
  h.result(http::status::ok);
  h.set(http::field::content_type, ndjson ? "application/x-ndjson" : "text/plain; charset=utf-8");
  h.set(http::field::cache_control, "no-store");
  h.set("X-Content-Type-Options", "nosniff");
  if (!query.attachment.empty()) {
    h.set(http::field::content_disposition, "attachment; filename=\"" + query.attachment + "\"");
  }
  if (co_await ex.begin(std::move(h), std::nullopt)) co_return;
  std::uint64_t from = query.from;
  for (;;) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    timer->expires_after(std::chrono::seconds(2));
    hub_.add(pid, timer);
    auto page = co_await blocking([&] { return logs_->read(job, from, 2000, filter); });
    if (!page) {
      spdlog::warn("ci: reading the log of job {}: {}", job, page.error().message);
      ex.reset();
      co_return;
    }
    std::string out;
    for (const auto& e : page->entries) {
      if (ndjson) {
        out += json::serialize(log_entry_json(e));
      } else {
        out += e.text;
      }
      out += '\n';
    }
    bool advanced = page->next != from;
    from = page->next;
    if (!out.empty()) {
      if (co_await ex.write(std::as_bytes(std::span(out.data(), out.size())))) co_return;
    }
    if (page->done) break;
    if (advanced) continue;  // a page ends before the log does: read on at once
    if (!follow) break;
    // A job that ended without a log (never ran, its log already pruned) ends the follow too.
    bool ended = co_await on_strand([&] {
      const auto* j = sched_.job(job);
      return !j || (finished(j->state) && !builtin_running_.count(job));
    });
    if (ended) {
      auto again = co_await blocking([&] { return logs_->read(job, from, 2000, filter); });
      if (again && again->entries.empty()) break;
      continue;
    }
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
  }
  co_await ex.end();
}

asio::awaitable<void> coordinator_impl::follow_pipeline(exchange& ex, pipeline_id id,
                                                        const target_parts& t) {
  bool follow = t.query.count("follow") && t.query.at("follow") != "0";
  struct tracked {
    std::string state;
    std::uint64_t from = 0;
    bool log_done = false;
  };
  std::map<job_id, tracked> jobs;
  auto exists = co_await on_strand([&] { return sched_.pipeline(id) != nullptr; });
  if (!exists) {
    co_await fail(ex, http::status::not_found, "no pipeline " + std::to_string(id));
    co_return;
  }
  http::response_header<> h;
  h.result(http::status::ok);
  h.set(http::field::content_type, "application/x-ndjson");
  h.set(http::field::cache_control, "no-store");
  if (co_await ex.begin(std::move(h), std::nullopt)) co_return;
  auto idle_since = std::chrono::steady_clock::now();
  for (;;) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
    timer->expires_after(std::chrono::seconds(2));
    hub_.add(id, timer);
    struct job_view {
      job_id id;
      std::string name, state, reason;
      bool started;  // handed to a runner at least once: it may have a log
      bool quiet;    // ended, and no built-in slot writes its log any more
    };
    struct snapshot {
      std::vector<job_view> jobs;
      std::string state, reason;
      bool finished = false;
    };
    auto snap = co_await on_strand([&] {
      snapshot s;
      const auto* p = sched_.pipeline(id);
      s.jobs.reserve(p->jobs.size());
      for (const auto& j : p->jobs) {
        s.jobs.push_back(job_view{j.id, j.name, std::string(to_string(j.state)), j.reason,
                                  j.attempts > 0,
                                  finished(j.state) && !builtin_running_.count(j.id)});
      }
      s.state = std::string(to_string(p->state));
      s.reason = p->reason;
      s.finished = p->state != pipeline_state::running;
      return s;
    });
    // Every started job's new lines in one trip to the blocking pool.
    bool advanced = false;
    std::string out = co_await blocking([&] {
      std::string lines;
      for (const auto& j : snap.jobs) {
        auto& tr = jobs[j.id];
        if (tr.log_done || !j.started) continue;
        auto page = logs_->read(j.id, tr.from, 2000, {});
        if (!page) continue;
        for (const auto& e : page->entries) {
          auto o = log_entry_json(e);
          o["type"] = "line";
          o["job"] = j.id;
          o["name"] = j.name;
          lines += json::serialize(o);
          lines += '\n';
        }
        bool moved = page->next != tr.from;
        advanced = advanced || moved;
        tr.from = page->next;
        if (page->done || (j.quiet && !moved)) tr.log_done = true;
      }
      return lines;
    });
    bool all_quiet = true;
    for (const auto& j : snap.jobs) {
      auto& tr = jobs[j.id];
      if (j.state != tr.state) {
        tr.state = j.state;
        const json::object event{{"type", "job"},
                                 {"job", j.id},
                                 {"name", j.name},
                                 {"state", j.state},
                                 {"reason", j.reason}};
        out += json::serialize(event);
        out += '\n';
      }
      if (!j.quiet || (j.started && !tr.log_done)) all_quiet = false;
    }
    if (!out.empty()) {
      idle_since = std::chrono::steady_clock::now();
      if (co_await ex.write(std::as_bytes(std::span(out.data(), out.size())))) co_return;
    }
    if (snap.finished && all_quiet) {
      std::string end = json::serialize(json::object{
                            {"type", "end"}, {"state", snap.state}, {"reason", snap.reason}}) +
                        "\n";
      if (co_await ex.write(std::as_bytes(std::span(end.data(), end.size())))) co_return;
      break;
    }
    if (!follow) break;
    if (!out.empty() || advanced) continue;
    if (std::chrono::steady_clock::now() - idle_since > std::chrono::seconds(2)) {
      static constexpr std::string_view kKeepalive = "{\"type\":\"keepalive\"}\n";
      if (co_await ex.write(std::as_bytes(std::span(kKeepalive.data(), kKeepalive.size())))) {
        co_return;
      }
      idle_since = std::chrono::steady_clock::now();
    }
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) break;
  }
  co_await ex.end();
}

asio::awaitable<void> coordinator_impl::sources_route(exchange& ex) {
  auto t = split_target(ex.request().target(), "/api/v1/sources");
  auto method = ex.request().method();
  if (t.segments.size() != 1) {
    co_await fail(ex, http::status::not_found, "a source is /api/v1/sources/sha256:<hex>");
    co_return;
  }
  auto d = cache::digest::parse(t.segments[0]);
  if (!d) {
    co_await fail(ex, http::status::bad_request,
                  "\"" + t.segments[0].substr(0, 100) + "\" is not a sha256:<64 hex> digest");
    co_return;
  }
  if (method == http::verb::head || method == http::verb::get) {
    if (!co_await allowed(ex, method == http::verb::head ? role::submit : role::runner)) co_return;
    auto reader = co_await blocking([&] { return store_->open_blob(*d); });
    if (!reader) {
      co_await fail(ex, http::status::not_found, "no source " + d->str());
      co_return;
    }
    http::response_header<> h;
    h.result(http::status::ok);
    h.set(http::field::content_type, "application/zstd");
    auto size = reader->size();
    if (co_await ex.begin(std::move(h), size)) co_return;
    if (method == http::verb::get && co_await ex.write_blob(*reader, 0, size)) co_return;
    co_await ex.end();
    co_return;
  }
  if (method != http::verb::put) {
    co_await fail(ex, http::status::method_not_allowed,
                  std::string(ex.request().method_string()) +
                      " is not allowed on a source; use HEAD, GET or PUT");
    co_return;
  }
  if (!co_await allowed(ex, role::submit)) co_return;
  auto writer = co_await blocking([&] {
    return store_->begin_blob(*d, "application/vnd.pantry.tree.v1.tar+zstd", std::nullopt);
  });
  if (!writer) {
    if (writer.error().code == errc::already_exists) {
      const json::object answer{{"digest", d->str()}};
      co_await respond_json(ex, http::status::ok, answer);
    } else {
      co_await fail(ex, http::status::service_unavailable, writer.error().message);
    }
    co_return;
  }
  std::vector<std::byte> buf(256 * 1024);
  std::uint64_t total = 0;
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return;
    if (*n == 0) break;
    total += *n;
    if (total > kMaxTree) {
      co_await fail(ex, http::status::payload_too_large, "a source tree is at most 2 GiB");
      co_return;
    }
    auto w = co_await blocking([&] { return writer->write(std::span(buf.data(), *n)); });
    if (!w) {
      co_await fail(ex, http::status::service_unavailable, w.error().message);
      co_return;
    }
  }
  auto c = co_await blocking([&] { return writer->commit(); });
  if (!c) {
    co_await fail(ex,
                  c.error().code == errc::digest_mismatch ? http::status::bad_request
                                                          : http::status::service_unavailable,
                  c.error().message);
    co_return;
  }
  const json::object answer{{"digest", d->str()}};
  co_await respond_json(ex, http::status::created, answer);
}

asio::awaitable<void> coordinator_impl::runners_route(exchange& ex) {
  std::string runner_name;
  if (!co_await allowed(ex, role::runner, &runner_name)) co_return;
  auto t = split_target(ex.request().target(), "/api/v1/runners");
  auto method = ex.request().method();
  auto now = clock::now();
  co_await on_strand([&] {
    runner_seen_[runner_name] = now;
    return 0;
  });
  if (t.segments.size() == 1 && t.segments[0] == "heartbeat" && method == http::verb::post) {
    auto text = co_await runner::read_body(ex, kMaxSubmit);
    if (!text) co_return;
    boost::system::error_code ec;
    auto v = json::parse(*text, ec);
    const json::array* held = nullptr;
    if (!ec && v.is_object()) {
      if (auto j = v.get_object().if_contains("jobs")) held = j->if_array();
    }
    if (!held) {
      co_await fail(ex, http::status::bad_request, "jobs: expected [{job, lease}, …]");
      co_return;
    }
    auto lost = co_await on_strand([&] {
      json::array out;
      for (const auto& e : *held) {
        const auto* o = e.if_object();
        if (!o) continue;
        auto job = o->if_contains("job");
        auto lease = o->if_contains("lease");
        if (!job || !lease || !job->is_number() || !lease->is_number()) continue;
        auto id = job->to_number<std::uint64_t>();
        if (!sched_.holds(id, lease->to_number<std::uint64_t>())) out.push_back(id);
      }
      return out;
    });
    const json::object answer{{"lost", std::move(lost)}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (t.segments.size() == 1 && t.segments[0] == "claim" && method == http::verb::post) {
    std::chrono::milliseconds wait{25'000};
    if (auto w = t.query.find("wait_ms"); w != t.query.end()) {
      auto n = parse_id(w->second);
      wait = std::chrono::milliseconds(n ? std::min<std::uint64_t>(*n, 60'000) : 0);
    }
    std::vector<std::string> secret_names;
    auto got = co_await claim_wait(runner_name, wait, secret_names, over_tls_or_local(ex));
    if (!got) {
      http::response<http::string_body> res(http::status::no_content, 11);
      co_await ex.respond(std::move(res));
      co_return;
    }
    auto& [a, tk] = *got;
    auto filled = co_await blocking([&] { return fill_secrets(tk, secret_names); });
    if (!filled) {
      co_await fail_unstarted(a, filled.error().message);
      http::response<http::string_body> res(http::status::no_content, 11);
      co_await ex.respond(std::move(res));
      co_return;
    }
    co_await plan_tests(a, tk);
    const json::object answer = to_json(tk);
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  // /api/v1/runners/jobs/<id>/<what>[/<arg>]?lease=L
  if (t.segments.size() < 3 || t.segments[0] != "jobs") {
    co_await fail(ex, http::status::not_found, "no such runner route");
    co_return;
  }
  auto id = parse_id(t.segments[1]);
  std::optional<std::uint64_t> lease;
  if (auto l = t.query.find("lease"); l != t.query.end()) lease = parse_id(l->second);
  if (!id || !lease) {
    co_await fail(ex, http::status::bad_request, "a runner route names a job and its ?lease=");
    co_return;
  }
  auto held = co_await on_strand([&] { return sched_.holds(*id, *lease); });
  if (!held) {
    co_await fail(ex, http::status::conflict,
                  "job " + std::to_string(*id) +
                      " is no longer yours (cancelled, superseded or re-queued); stop it");
    co_return;
  }
  pipeline_id pid = co_await on_strand([&] { return sched_.job(*id)->pipeline; });
  const std::string& what = t.segments[2];
  if (what == "log" && method == http::verb::post) {
    auto text = co_await runner::read_body(ex, std::size_t{16} << 20);
    if (!text) co_return;
    std::vector<log_entry> entries;
    std::string_view rest = *text;
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      auto line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      if (line.empty()) continue;
      boost::system::error_code ec;
      auto v = json::parse(line, ec);
      if (ec || !v.is_object()) continue;
      const auto& o = v.get_object();
      log_entry e;
      auto time = o.if_contains("time");
      e.time = time && time->is_number()
                   ? clock::time_point(std::chrono::milliseconds(time->to_number<std::int64_t>()))
                   : clock::now();
      auto stream = str_member(o, "stream");
      e.stream = stream == "e"   ? log_stream::err
                 : stream == "r" ? log_stream::report
                 : stream == "p" ? log_stream::pantry
                                 : log_stream::out;
      e.step = str_member(o, "step").substr(0, 100);
      e.text = str_member(o, "text");
      entries.push_back(std::move(e));
    }
    auto appended = co_await blocking([&] { return logs_->append(*id, std::move(entries)); });
    hub_.notify(pid);
    if (!appended) {
      co_await fail(ex, http::status::service_unavailable, appended.error().message);
      co_return;
    }
    const json::object answer{{"ok", true}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (what == "tests" && method == http::verb::post) {
    auto text = co_await runner::read_body(ex, kMaxTestResults);
    if (!text) co_return;
    boost::system::error_code ec;
    auto v = json::parse(*text, ec);
    if (ec) {
      co_await fail(ex, http::status::bad_request,
                    "the test results are not JSON (" + ec.message() + ")");
      co_return;
    }
    auto results = test_results_from_json(v);
    if (!results) {
      co_await fail(ex, http::status::unprocessable_entity, results.error().message);
      co_return;
    }
    const std::size_t count = results->size();
    auto failed = co_await record_tests(*id, std::move(*results));
    if (failed) {
      co_await fail(ex, http::status::service_unavailable, failed->message);
      co_return;
    }
    const json::object answer{{"recorded", count}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (what == "finish" && method == http::verb::post) {
    auto text = co_await runner::read_body(ex, kMaxSubmit);
    if (!text) co_return;
    boost::system::error_code ec;
    auto v = json::parse(*text, ec);
    if (ec || !v.is_object()) {
      co_await fail(ex, http::status::bad_request, "the outcome is not a JSON object");
      co_return;
    }
    const auto& o = v.get_object();
    job_outcome out;
    if (auto p = o.if_contains("passed"); p && p->is_bool()) out.passed = p->get_bool();
    if (auto c = o.if_contains("exit_code"); c && c->is_number()) {
      out.exit_code = static_cast<int>(c->to_number<std::int64_t>());
    }
    if (auto c = o.if_contains("cpu_seconds"); c && c->is_number()) {
      out.cpu_seconds = c->to_number<double>();
    }
    out.reason = str_member(o, "reason");
    out.image = str_member(o, "image");
    if (const json::value* c = o.if_contains("cache"); c && !c->is_null()) {
      auto cache = cache_use_from_json(*c);
      if (!cache) {
        co_await fail(ex, http::status::bad_request, cache.error().message);
        co_return;
      }
      out.cache = *cache;
    }
    auto done = co_await on_strand([&] {
      auto ch = sched_.finish(*id, *lease, out, clock::now());
      if (ch) commit(*ch);
      return ch.has_value();
    });
    // Only the holder's report ends the log: a stale one (the job re-queued and running
    // elsewhere) must not close the log the new holder writes.
    if (done) {
      co_await blocking([&] {
        (void)logs_->close(*id);
        return 0;
      });
    }
    hub_.notify(pid);
    if (!done) {
      co_await fail(ex, http::status::conflict, "job " + std::to_string(*id) + " is not yours");
      co_return;
    }
    co_await journal_barrier();
    const json::object answer{{"ok", true}};
    co_await respond_json(ex, http::status::ok, answer);
    co_return;
  }
  if (what == "artifacts" && t.segments.size() == 3 && method == http::verb::put) {
    fs::path file = data_dir_ / "ci" /
                    ("upload-" + std::to_string(*id) + "-" + std::to_string(*lease) + ".tar.zst");
    std::error_code fec;
    fs::create_directories(file.parent_path(), fec);
    std::ofstream outf(file, std::ios::binary | std::ios::trunc);
    if (!outf) {
      co_await fail(ex, http::status::service_unavailable, "cannot write " + file.string());
      co_return;
    }
    std::vector<std::byte> buf(256 * 1024);
    std::uint64_t total = 0;
    bool too_big = false;
    for (;;) {
      auto n = co_await ex.read_body(buf);
      if (!n) {
        fs::remove(file, fec);
        co_return;
      }
      if (*n == 0) break;
      total += *n;
      if (total > ci_.artifact_limits.max_job) {
        too_big = true;
        break;
      }
      co_await blocking([&] {
        outf.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(*n));
        return 0;
      });
    }
    outf.close();
    if (too_big) {
      fs::remove(file, fec);
      co_await fail(ex, http::status::payload_too_large,
                    "artifacts over ci.artifacts.max_job (" +
                        std::to_string(ci_.artifact_limits.max_job) + " bytes)");
      co_return;
    }
    auto put = co_await blocking([&] {
      auto r = artifacts_->put(*id, file);
      std::error_code e2;
      fs::remove(file, e2);
      return r;
    });
    if (!put) {
      co_await fail(ex, http::status::unprocessable_entity, put.error().message);
      co_return;
    }
    const json::object answer{{"ok", true}};
    co_await respond_json(ex, http::status::created, answer);
    co_return;
  }
  if ((what == "artifacts" && t.segments.size() == 4) || what == "source") {
    std::optional<cache::blob_reader> reader;
    std::string missing;
    if (what == "source") {
      auto digest = co_await on_strand([&]() -> std::string {
        const auto* p = sched_.pipeline(pid);
        auto s = p->attachment.if_contains("source");
        if (!s) return {};
        auto src = source_from_json(*s);
        return src && src->type == source_ref::kind::tree ? src->tree : std::string();
      });
      auto d = cache::digest::parse(digest);
      if (d) {
        auto r = co_await blocking([&] { return store_->open_blob(*d); });
        if (r) reader.emplace(std::move(*r));
      }
      missing = "the pipeline's source tree is not in the cache";
    } else {
      auto from = parse_id(t.segments[3]);
      if (from) {
        auto r = co_await blocking([&] { return artifacts_->get(*from); });
        if (r) reader.emplace(std::move(*r));
      }
      missing = "job " + t.segments[3] + " kept no artifacts";
    }
    if (!reader) {
      co_await fail(ex, http::status::not_found, missing);
      co_return;
    }
    http::response_header<> h;
    h.result(http::status::ok);
    h.set(http::field::content_type, "application/zstd");
    auto size = reader->size();
    if (co_await ex.begin(std::move(h), size)) co_return;
    if (co_await ex.write_blob(*reader, 0, size)) co_return;
    co_await ex.end();
    co_return;
  }
  if (what == "secrets" && t.segments.size() == 4 && method == http::verb::get) {
    // As claim_wait() hands out: only the secrets this job needs, and only over TLS (or to this
    // machine); a runner's lease on one job is no key to every secret.
    const std::string& name = t.segments[3];
    auto needed = co_await on_strand([&] {
      const job_record* j = sched_.job(*id);
      if (!j) return false;
      if (const auto* p = sched_.pipeline(j->pipeline)) {
        if (auto s = p->attachment.if_contains("source")) {
          auto src = source_from_json(*s);
          if (src && src->git_auth_secret == name) return true;
        }
      }
      const auto* spec = spec_of(j->pipeline);
      if (!spec) return false;
      for (const auto& js : spec->jobs) {
        if (js.name == j->spec_name) {
          return std::find(js.secrets.begin(), js.secrets.end(), name) != js.secrets.end();
        }
      }
      return false;
    });
    if (!needed || !over_tls_or_local(ex)) {
      std::string why = "job " + std::to_string(*id) + " does not name the secret " + name;
      if (needed) why = "secrets travel only over TLS (or to this machine)";
      co_await fail(ex, http::status::forbidden, std::move(why));
      co_return;
    }
    auto value = co_await blocking([&] { return read_secret(t.segments[3]); });
    if (!value) {
      co_await fail(ex, http::status::not_found, value.error().message);
      co_return;
    }
    http::response<http::string_body> res(http::status::ok, 11);
    res.set(http::field::content_type, "application/octet-stream");
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(*value);
    co_await ex.respond(std::move(res));
    co_return;
  }
  co_await fail(ex, http::status::not_found, "no such runner route");
}

}  // namespace

std::shared_ptr<coordinator_service> coordinator_service::create(
    const config::config& cfg, std::shared_ptr<cache::store> store,
    std::shared_ptr<runner::runner_service> runner,
    std::shared_ptr<proxy::metrics_registry> metrics, asio::any_io_executor blocking,
    std::string self_url, std::string control_token) {
  return std::make_shared<coordinator_impl>(cfg, std::move(store), std::move(runner),
                                            std::move(metrics), std::move(blocking),
                                            std::move(self_url), std::move(control_token));
}

}  // namespace pantry::orchestrator::coordinator
