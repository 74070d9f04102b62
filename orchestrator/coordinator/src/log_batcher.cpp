#include "pantry/orchestrator/coordinator/remote_runner.h"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

// One line as the coordinator's log route reads it (service.cpp, runners_route).
void append_line(std::string& out, const log_entry& e) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(e.time.time_since_epoch()).count();
  const json::object o{{"time", ms},
                       {"stream", std::string(1, static_cast<char>(e.stream))},
                       {"step", e.step},
                       {"text", e.text}};
  out += json::serialize(o);
  out += '\n';
}

}  // namespace

std::string remote_image(std::string_view image) {
  if (image.empty()) return {};
  return std::string(kCoordinatorUpstream) + "/" + std::string(image);
}

std::string coordinator_image(std::string_view image) {
  const std::string prefix = std::string(kCoordinatorUpstream) + "/";
  if (image.starts_with(prefix)) image.remove_prefix(prefix.size());
  return std::string(image);
}

log_batcher::log_batcher(send_fn send) : log_batcher(std::move(send), options{}) {}

log_batcher::log_batcher(send_fn send, options opt) : send_(std::move(send)), opt_(opt) {
  thread_ = std::thread([this] { sender(); });
}

log_batcher::~log_batcher() {
  close();
}

bool log_batcher::add(std::vector<log_entry> entries) {
  std::unique_lock lock(mu_);
  // Back-pressure: a job printing faster than the coordinator takes its lines waits here (on
  // the runner's thread that reads its output), rather than growing this buffer without end.
  drained_.wait(lock, [this] { return pending_.size() < opt_.max_pending || lost_ || closing_; });
  if (lost_) return false;
  if (closing_) return true;
  const bool first = pending_.empty();
  if (first) first_at_ = std::chrono::steady_clock::now();
  for (const auto& e : entries)
    append_line(pending_, e);
  // The first line starts the sender's clock (it sleeps while nothing is pending); a full batch
  // goes at once.
  if (first || pending_.size() >= opt_.flush_bytes) wake_.notify_one();
  return true;
}

void log_batcher::close() {
  {
    std::lock_guard lock(mu_);
    if (closing_ && !thread_.joinable()) return;
    closing_ = true;
  }
  wake_.notify_one();
  drained_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool log_batcher::lost() const {
  std::lock_guard lock(mu_);
  return lost_;
}

std::uint64_t log_batcher::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void log_batcher::sender() {
  std::unique_lock lock(mu_);
  std::string batch;  // taken from pending_; kept across failed sends
  int failures = 0;
  for (;;) {
    if (batch.empty()) {
      // Due: a full batch, an old first line, or the end.
      while (!closing_ && !lost_ && pending_.size() < opt_.flush_bytes) {
        if (pending_.empty()) {
          wake_.wait(lock);
        } else if (wake_.wait_until(lock, first_at_ + opt_.flush_after) ==
                   std::cv_status::timeout) {
          break;
        }
      }
      if (lost_ || pending_.empty()) {
        if (closing_ || lost_) return;
        continue;
      }
      batch.swap(pending_);
      drained_.notify_all();
    }
    ++requests_;
    lock.unlock();
    const sent s = send_(batch);
    lock.lock();
    if (s == sent::ok) {
      batch.clear();
      failures = 0;
    } else if (s == sent::lost) {
      lost_ = true;
      pending_.clear();
      drained_.notify_all();
      return;
    } else if (++failures >= opt_.max_failures) {
      // The coordinator has been out of reach for a while: these lines are dropped rather than
      // held for ever; the heartbeat decides whether the job goes on.
      batch.clear();
      failures = 0;
    } else {
      wake_.wait_for(lock, opt_.retry_after, [this] { return lost_; });
      // Lines that came meanwhile join the retried batch, up to a full one.
      if (batch.size() < opt_.flush_bytes && !pending_.empty()) {
        batch += pending_;
        pending_.clear();
        drained_.notify_all();
      }
    }
  }
}

}  // namespace pantry::orchestrator::coordinator
