#include "pantry/orchestrator/coordinator/remote_runner.h"

#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/coordinator/executor.h"
#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/coordinator/test_history.h"
#include "pantry/orchestrator/coordinator/ticket.h"
#include "pantry/proxy/server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/host_name.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <optional>

namespace pantry::orchestrator::coordinator {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

// A claim waits this long for work: short enough that stop() returns soon, long enough that an
// idle runner costs the coordinator one request per slot every few seconds. A job still starts
// within milliseconds of being queued: the coordinator answers the waiting claim at once.
constexpr std::chrono::milliseconds kClaimWait{5'000};
// The coordinator learns a runner is alive, and the runner that it lost a job, this often.
constexpr std::chrono::milliseconds kHeartbeat{500};
// After a failed claim (the coordinator unreachable or refusing), before the next.
constexpr std::chrono::milliseconds kRetry{1'000};

std::string job_path(job_id job, std::uint64_t lease, std::string_view what) {
  return "/api/v1/runners/jobs/" + std::to_string(job) + "/" + std::string(what) +
         "?lease=" + std::to_string(lease);
}

// A job on this runner, as the slot, the heartbeat and stop() share it.
struct held_job {
  job_id job = 0;
  std::uint64_t lease = 0;
  std::shared_ptr<runner::step_cancel> cancel = std::make_shared<runner::step_cancel>();
};

// The coordinator as a remote job sees it: its HTTP API. The executor calls everything but log()
// one at a time on its blocking executor; log() comes from the runner's threads and only queues.
class remote_uplink final : public job_uplink {
 public:
  remote_uplink(const std::string& url, const std::string& token, job_id job, std::uint64_t lease,
                std::shared_ptr<runner::step_cancel> cancel)
      : job_(job), lease_(lease), files_(url, token), cancel_(std::move(cancel)) {
    auto logs = std::make_shared<api_client>(url, token);
    std::string path = job_path(job, lease, "log");
    batcher_.emplace([logs, path](const std::string& body) {
      http::fields h;
      h.set(http::field::content_type, "application/x-ndjson");
      auto r = logs->call(http::verb::post, path, body, h);
      if (!r) return log_batcher::sent::failed;
      if (r->status == 409) return log_batcher::sent::lost;
      return r->status / 100 == 2 ? log_batcher::sent::ok : log_batcher::sent::failed;
    });
  }

  bool log(std::vector<log_entry> entries) override { return batcher_->add(std::move(entries)); }

  result<void> fetch_tree(const std::string& digest, const fs::path& file) override {
    auto r = files_.download(job_path(job_, lease_, "source"), file);
    if (!r) return lease_check(r.error(), "the source tree " + digest);
    return {};
  }

  result<void> fetch_artifacts(job_id job, const fs::path& file) override {
    auto r = files_.download(job_path(job_, lease_, "artifacts/" + std::to_string(job)), file);
    if (!r) return lease_check(r.error(), "the artifacts of job " + std::to_string(job));
    return {};
  }

  result<void> put_artifacts(const fs::path& file) override {
    auto r = files_.put_file(http::verb::put, job_path(job_, lease_, "artifacts"), file,
                             "application/zstd");
    if (!r) return r.error();
    if (r->status / 100 != 2) return lease_check(api_client::failure("", *r), "the artifacts");
    return {};
  }

  result<std::string> secret(const std::string& name) override {
    auto r = files_.call(http::verb::get, job_path(job_, lease_, "secrets/" + name));
    if (!r) return r.error();
    if (r->status != 200) return lease_check(api_client::failure("", *r), "the secret " + name);
    return std::move(r->body);
  }

  result<void> put_test_results(std::vector<test_result> results) override {
    json::array a;
    a.reserve(results.size());
    for (const auto& r : results)
      a.emplace_back(to_json(r));
    http::fields h;
    h.set(http::field::content_type, "application/json");
    auto r = files_.call(http::verb::post, job_path(job_, lease_, "tests"), json::serialize(a), h);
    if (!r) return r.error();
    if (r->status / 100 != 2) return lease_check(api_client::failure("", *r), "the test results");
    return {};
  }

  // Every line sent (before the job's finish is reported); true unless the lease was lost.
  bool close() {
    batcher_->close();
    return !batcher_->lost();
  }

 private:
  // A 409 is the lost lease: the job is cancelled, as a log line answered 409 would.
  error lease_check(error e, const std::string& what) {
    if (e.code == errc::already_exists) {
      cancel_->cancel();
      return error(errc::conflict, "the coordinator took the job back while fetching " + what);
    }
    return error(e.code, "fetching " + what + ": " + e.message);
  }

  job_id job_;
  std::uint64_t lease_;
  api_client files_;
  std::shared_ptr<runner::step_cancel> cancel_;
  std::optional<log_batcher> batcher_;
};

class remote_runner_impl final : public remote_runner_service,
                                 public std::enable_shared_from_this<remote_runner_impl> {
 public:
  remote_runner_impl(const config::config& cfg, std::shared_ptr<runner::runner_service> runner)
      : cfg_(cfg), runner_(std::move(runner)) {}

  void install(proxy::server& srv) override { io_ = srv.executor(); }

  result<void> start() override {
    const auto& of = cfg_.ci.runner_of;
    if (!runner_ || runner_->keep_upper_dir().empty()) {
      return error(errc::invalid_argument,
                   "ci.runner_of: this pantry has no runner to run jobs on; enable runner: (it "
                   "needs root and runc)");
    }
    bool has_upstream = false;
    for (const auto& u : cfg_.oci.upstreams)
      has_upstream = has_upstream || u.name == kCoordinatorUpstream;
    if (!has_upstream) {
      return error(errc::invalid_argument,
                   "ci.runner_of: oci.upstreams has no upstream named coordinator, through which "
                   "jobs pull their images; add {name: coordinator, url: \"" +
                       of.url + "\"}");
    }
    unsigned slots = of.slots ? of.slots : std::max(1u, std::thread::hardware_concurrency());
    work_root_ = fs::path(cfg_.data_dir) / "ci" / "work";
    // What a killed runner left in its workspaces is of no use: its jobs are re-queued.
    std::error_code ec;
    fs::remove_all(work_root_, ec);
    mirrors_ = std::make_shared<git_mirrors>(fs::path(cfg_.data_dir) / "ci" / "git");
    pool_.emplace(slots + 1);
    boost::system::error_code hec;
    name_ = asio::ip::host_name(hec);
    if (hec || name_.empty()) name_ = "a remote runner";
    for (unsigned i = 0; i < slots; ++i)
      threads_.emplace_back([self = shared_from_this()] { self->slot(); });
    threads_.emplace_back([self = shared_from_this()] { self->heartbeat(); });
    spdlog::info("pantry runner: {} slots taking jobs from {}", slots, of.url);
    return {};
  }

  void stop() noexcept override {
    stopping_ = true;
    {
      std::lock_guard lock(mu_);
      for (auto& [id, h] : held_)
        h->cancel->cancel();
    }
    stopped_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
    if (pool_) pool_->join();
  }

 private:
  // Sleeps up to `d`; false when the service is stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !stopped_.wait_for(lock, d, [this] { return stopping_.load(); });
  }

  void slot() {
    api_client client(cfg_.ci.runner_of.url, cfg_.ci.runner_of.token);
    bool warned = false;
    const std::string claim = "/api/v1/runners/claim?wait_ms=" + std::to_string(kClaimWait.count());
    while (!stopping_) {
      auto r = client.call(http::verb::post, claim);
      if (!r || (r->status != 200 && r->status != 204)) {
        if (!warned) {
          spdlog::warn("pantry runner: claiming a job failed: {}",
                       r ? api_client::failure("", *r).message : r.error().message);
          warned = true;
        }
        pause(kRetry);
        continue;
      }
      if (warned) spdlog::info("pantry runner: the coordinator answers again");
      warned = false;
      if (r->status == 204) continue;
      boost::system::error_code ec;
      auto v = json::parse(r->body, ec);
      auto t = ec ? result<ticket>(error(errc::invalid_argument, "the ticket is not JSON"))
                  : ticket_from_json(v);
      if (!t) {
        // A coordinator of another version: nothing here can run it, so it should not wait for
        // this runner's silence to go elsewhere.
        spdlog::error("pantry runner: a claimed job cannot be read: {}", t.error().message);
        continue;
      }
      run(client, std::move(*t));
    }
  }

  void run(api_client& client, ticket t) {
    auto h = std::make_shared<held_job>();
    h->job = t.job;
    h->lease = t.lease;
    {
      std::lock_guard lock(mu_);
      held_[t.job] = h;
    }
    spdlog::info("pantry runner: job {} ({}, pipeline {}, attempt {})", t.job, t.name, t.pipeline,
                 t.attempt);
    t.image = remote_image(t.image);

    // The coroutine frame owns everything execute_job() refers to: if the server's threads stop
    // before it ends (stop()), it is destroyed with the context, not left with dangling refs.
    struct job_state {
      ticket t;
      executor_context ctx;
      std::shared_ptr<remote_uplink> uplink;
      std::shared_ptr<runner::step_cancel> cancel;
    };
    auto st = std::make_shared<job_state>();
    st->t = std::move(t);
    st->ctx.runner = runner_;
    st->ctx.blocking = pool_->get_executor();
    st->ctx.work_root = work_root_;
    st->ctx.mirrors = mirrors_;
    st->ctx.runner_name = name_;
    st->cancel = h->cancel;
    st->uplink = std::make_shared<remote_uplink>(cfg_.ci.runner_of.url, cfg_.ci.runner_of.token,
                                                 h->job, h->lease, h->cancel);
    auto done = std::make_shared<std::promise<job_outcome>>();
    auto outcome = done->get_future();
    asio::co_spawn(
        asio::make_strand(io_),
        [st, done]() -> asio::awaitable<void> {
          auto out = co_await execute_job(st->t, st->ctx, st->uplink, st->cancel);
          done->set_value(std::move(out));
        },
        [done](std::exception_ptr e) {
          if (e) done->set_exception(e);
        });
    std::optional<job_outcome> out;
    while (!out) {
      if (outcome.wait_for(std::chrono::milliseconds(100)) == std::future_status::ready) {
        try {
          out = outcome.get();
        } catch (const std::exception& e) {
          out.emplace();
          out->reason = std::string("the runner failed: ") + e.what();
        }
      } else if (stopping_ &&
                 outcome.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
        // The server's threads are gone and the job with them; the coordinator re-queues it
        // when this runner's silence passes its ci.runner_timeout.
        break;
      }
    }
    bool kept = st->uplink->close();
    {
      std::lock_guard lock(mu_);
      held_.erase(h->job);
    }
    if (!out) return;
    if (!kept || h->cancel->cancelled()) {
      spdlog::info("pantry runner: job {} was taken back by the coordinator", h->job);
      if (!kept) return;
    }
    out->image = coordinator_image(out->image);
    const json::object body{
        {"passed", out->passed}, {"exit_code", out->exit_code}, {"cpu_seconds", out->cpu_seconds},
        {"reason", out->reason}, {"image", out->image},         {"cache", to_json(out->cache)}};
    const std::string text = json::serialize(body);
    http::fields headers;
    headers.set(http::field::content_type, "application/json");
    for (int attempt = 0; attempt < 10; ++attempt) {
      auto r = client.call(http::verb::post, job_path(h->job, h->lease, "finish"), text, headers);
      if (r && r->status == 409) return;  // re-queued meanwhile: the outcome is not wanted
      if (r && r->status / 100 == 2) {
        spdlog::info("pantry runner: job {} {}", h->job, out->passed ? "passed" : "failed");
        return;
      }
      spdlog::warn("pantry runner: reporting job {}'s end failed: {}", h->job,
                   r ? api_client::failure("", *r).message : r.error().message);
      if (!pause(kRetry)) return;
    }
  }

  void heartbeat() {
    api_client client(cfg_.ci.runner_of.url, cfg_.ci.runner_of.token);
    http::fields headers;
    headers.set(http::field::content_type, "application/json");
    while (pause(kHeartbeat)) {
      json::array jobs;
      {
        std::lock_guard lock(mu_);
        for (const auto& [id, h] : held_)
          jobs.push_back(json::object{{"job", h->job}, {"lease", h->lease}});
      }
      const json::object body{{"jobs", std::move(jobs)}};
      auto r = client.call(http::verb::post, "/api/v1/runners/heartbeat", json::serialize(body),
                           headers);
      if (!r || r->status != 200) continue;  // the slots warn about an unreachable coordinator
      boost::system::error_code ec;
      auto v = json::parse(r->body, ec);
      if (ec || !v.is_object()) continue;
      const auto* lost = v.get_object().if_contains("lost");
      if (!lost || !lost->is_array()) continue;
      std::lock_guard lock(mu_);
      for (const auto& id : lost->get_array()) {
        if (!id.is_number()) continue;
        auto it = held_.find(id.to_number<job_id>());
        if (it == held_.end() || it->second->cancel->cancelled()) continue;
        // "A runner that was only cut off kills its jobs when it finds it lost its lease."
        spdlog::warn("pantry runner: job {} is no longer this runner's; killing it", it->first);
        it->second->cancel->cancel();
      }
    }
  }

  config::config cfg_;
  std::shared_ptr<runner::runner_service> runner_;
  asio::any_io_executor io_;
  fs::path work_root_;
  std::shared_ptr<git_mirrors> mirrors_;
  std::optional<asio::thread_pool> pool_;  // the jobs' blocking work and uplink calls
  std::string name_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable stopped_;
  std::map<job_id, std::shared_ptr<held_job>> held_;  // guarded by mu_
};

}  // namespace

std::shared_ptr<remote_runner_service> remote_runner_service::create(
    const config::config& cfg, std::shared_ptr<runner::runner_service> runner) {
  return std::make_shared<remote_runner_impl>(cfg, std::move(runner));
}

}  // namespace pantry::orchestrator::coordinator
