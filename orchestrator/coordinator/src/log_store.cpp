#include "pantry/orchestrator/coordinator/log_store.h"

#include "keys.h"
#include "meta.h"
#include "pantry/config/config.h"
#include "retention.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

// A read decompresses at most this many chunks (about 1 MiB of lines), so that a filter that
// matches little still returns to its caller (who may be following other jobs) now and then.
constexpr std::size_t kMaxChunksPerRead = 4;

std::string job_name(job_id job) {
  return "ci: log of job " + std::to_string(job);
}

// One line of a chunk: {"s":seq,"t":ms,"o":"o","p":step,"x":text}. JSON escapes what must be
// escaped and keeps other bytes as they are (a step may print invalid UTF-8; the reader allows
// it back).
std::string encode_line(const log_entry& e) {
  json::object o;
  o["s"] = e.seq;
  o["t"] = detail::to_ms(e.time);
  o["o"] = std::string_view(&reinterpret_cast<const char&>(e.stream), 1);
  o["p"] = e.step;
  o["x"] = e.text;
  std::string line = json::serialize(o);
  line += '\n';
  return line;
}

result<log_entry> decode_line(std::string_view line, const std::string& what) {
  json::parse_options opt;
  opt.allow_invalid_utf8 = true;
  boost::system::error_code ec;
  json::value v = json::parse(line, ec, {}, opt);
  auto bad = [&](std::string_view why) {
    return error(errc::corrupt, what + ": " + std::string(why));
  };
  if (ec) return bad("a line is not JSON (" + ec.message() + ")");
  const json::object* o = v.if_object();
  if (o == nullptr) return bad("a line is not a JSON object");
  const auto* s = o->if_contains("s");
  const auto* t = o->if_contains("t");
  const auto* stream = o->if_contains("o");
  const auto* step = o->if_contains("p");
  const auto* text = o->if_contains("x");
  if (s == nullptr || !(s->is_uint64() || s->is_int64()) || t == nullptr || !t->is_int64() ||
      stream == nullptr || !stream->is_string() || stream->get_string().size() != 1 ||
      step == nullptr || !step->is_string() || text == nullptr || !text->is_string()) {
    return bad("a line lacks a member or has one of the wrong type");
  }
  log_entry e;
  e.seq = s->to_number<std::uint64_t>();
  e.time = detail::from_ms(t->get_int64());
  e.stream = static_cast<log_stream>(stream->get_string()[0]);
  e.step = std::string(step->get_string());
  e.text = std::string(text->get_string());
  return e;
}

// The length of the longest prefix of `text` of at most `max` bytes that does not end inside a
// UTF-8 sequence (unless the bytes are not UTF-8 at all: then exactly `max`).
std::size_t utf8_cut(std::string_view text, std::size_t max) {
  if (text.size() <= max) return text.size();
  std::size_t cut = max;
  for (int back = 0; back < 3 && cut > 0; ++back, --cut) {
    if ((static_cast<unsigned char>(text[cut]) & 0xC0) != 0x80) return cut;
  }
  return (static_cast<unsigned char>(text[cut]) & 0xC0) != 0x80 ? cut : max;
}

// The seq of an encoded line without decoding it (encode_line writes it first), or nullopt.
std::optional<std::uint64_t> peek_seq(std::string_view line) {
  constexpr std::string_view kStart = "{\"s\":";
  if (!line.starts_with(kStart)) return std::nullopt;
  line.remove_prefix(kStart.size());
  std::uint64_t seq = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), seq);
  if (ec != std::errc() || end == line.data() + line.size() || *end != ',') return std::nullopt;
  return seq;
}

bool passes(const log_entry& e, const log_filter& f) {
  if (!f.step.empty() && e.step != f.step) return false;
  return f.pattern == nullptr || std::regex_search(e.text, *f.pattern);
}

struct waiter {
  waiter(asio::any_io_executor ex, std::uint64_t from) : from(from), channel(std::move(ex), 1) {}
  const std::uint64_t from;
  // Thread-safe, with room for the one wake-up: append may send before the follower receives.
  asio::experimental::concurrent_channel<void(boost::system::error_code)> channel;
};
using waiter_ptr = std::shared_ptr<waiter>;

// One job's log. Everything but write_mutex is guarded by log_store_impl::mutex_.
struct job_log {
  log_info info;
  std::vector<std::uint64_t> firsts;  // the first seq of each written chunk
  bool active = false;                // written by this process and not closed: never pruned
  std::deque<log_entry> tail;         // lines not in a chunk yet
  std::string tail_ndjson;            // their NDJSON, unless a write of it is under way
  std::chrono::steady_clock::time_point tail_since;  // when the tail's first line came
  // Serializes append, close and remove of this job, held across the store writes so that the
  // chunks of one log are written in order; readers never take it.
  std::mutex write_mutex;
};
using log_ptr = std::shared_ptr<job_log>;

cache::entry encode_meta(const log_info& info, const std::vector<std::uint64_t>& firsts) {
  std::string list;
  for (auto seq : firsts) {
    if (!list.empty()) list += ' ';
    list += std::to_string(seq);
  }
  cache::entry e;
  e.fetched_at = info.created;
  e.expires_at = info.created;
  e.attributes = {
      {"chunks", std::to_string(firsts.size())},
      {"lines", std::to_string(info.lines)},
      {"bytes", std::to_string(info.bytes)},
      {"closed", info.closed ? "1" : "0"},
      {"created", std::to_string(detail::to_ms(info.created))},
      {"cut", info.cut ? "1" : "0"},
      {"dropped_lines", std::to_string(info.dropped_lines)},
      {"dropped_bytes", std::to_string(info.dropped_bytes)},
      {"firsts", std::move(list)},
  };
  return e;
}

result<std::pair<log_info, std::vector<std::uint64_t>>> decode_meta(std::string_view key,
                                                                    const cache::entry& e) {
  detail::attribute_reader r(key, e);
  log_info info;
  auto chunks = r.number("chunks");
  info.lines = r.number("lines");
  info.bytes = r.number("bytes");
  info.closed = r.flag("closed");
  info.created = detail::from_ms(static_cast<std::int64_t>(r.number("created")));
  info.cut = r.flag("cut");
  info.dropped_lines = r.number("dropped_lines");
  info.dropped_bytes = r.number("dropped_bytes");
  auto firsts = r.numbers("firsts");
  if (r.failed()) return r.problem();
  if (firsts.size() != chunks) {
    return error(errc::corrupt, "ci: " + std::string(key) + ": " + std::to_string(chunks) +
                                    " chunks but " + std::to_string(firsts.size()) +
                                    " first lines");
  }
  return std::pair{info, std::move(firsts)};
}

class log_store_impl final : public log_store {
 public:
  log_store_impl(std::shared_ptr<cache::store> store, log_limits limits)
      : store_(std::move(store)), limits_(limits) {}

  result<void> load() {
    std::optional<error> failure;
    auto walked = store_->for_each_entry(keys::kLogMetaPrefix,
                                         [&](std::string_view key, const cache::entry& e) {
                                           auto job = keys::job_of(key, keys::kLogMetaPrefix);
                                           if (!job) return true;  // not ours
                                           auto meta = decode_meta(key, e);
                                           if (!meta) {
                                             failure = meta.error();
                                             return false;
                                           }
                                           auto log = std::make_shared<job_log>();
                                           log->info = meta->first;
                                           log->firsts = std::move(meta->second);
                                           total_ += log->info.bytes;
                                           logs_.emplace(*job, std::move(log));
                                           return true;
                                         });
    if (!walked) return walked.error();
    if (failure) return *failure;
    return {};
  }

  result<void> append(job_id job, std::vector<log_entry> entries) override {
    auto [log, writing] = lock_log(job);
    std::vector<waiter_ptr> wake;
    bool write_now = false;
    {
      std::lock_guard g(mutex_);
      if (log->info.closed) {
        return error(errc::invalid_argument, job_name(job) + " is closed: the job has ended");
      }
      log->active = true;
      for (auto& e : entries) {
        std::string_view text = e.text;
        if (text.size() <= kMaxLineBytes) {
          add_line(*log, std::move(e));
          continue;
        }
        while (!text.empty()) {
          std::size_t n = utf8_cut(text, kMaxLineBytes);
          add_line(*log, log_entry{0, e.time, e.stream, e.step, std::string(text.substr(0, n))});
          text.remove_prefix(n);
        }
      }
      wake = take_waiters_locked(job, log->info.lines, false);
      write_now =
          log->tail_ndjson.size() >= kChunkBytes ||
          (!log->tail.empty() && std::chrono::steady_clock::now() - log->tail_since >= kFlushAge);
    }
    notify(std::move(wake));
    if (write_now) return write_tail(job, *log, false);
    return {};
  }

  result<void> close(job_id job) override {
    auto [log, writing] = lock_log(job);
    {
      std::lock_guard g(mutex_);
      if (log->info.closed) return {};
    }
    return write_tail(job, *log, true);
  }

  result<void> flush_idle() override {
    std::vector<std::pair<job_id, log_ptr>> idle;
    {
      std::lock_guard g(mutex_);
      auto now = std::chrono::steady_clock::now();
      for (const auto& [job, log] : logs_) {
        if (!log->tail.empty() && now - log->tail_since >= kFlushAge) idle.emplace_back(job, log);
      }
    }
    for (auto& [job, log] : idle) {
      // A log being appended to right now is written by that append if it needs to be.
      std::unique_lock writing(log->write_mutex, std::try_to_lock);
      if (!writing) continue;
      if (auto r = write_tail(job, *log, false); !r) return r;
    }
    return {};
  }

  result<page> read(job_id job, std::uint64_t from, std::size_t max, const log_filter& f) override {
    page p;
    p.next = from;
    std::vector<std::uint64_t> firsts;
    std::vector<log_entry> tail;
    std::uint64_t lines = 0;
    std::uint64_t chunks_end = 0;  // the first seq not in a written chunk
    bool closed = false;
    {
      std::lock_guard g(mutex_);
      auto it = logs_.find(job);
      if (it == logs_.end()) return p;
      const job_log& log = *it->second;
      firsts = log.firsts;
      for (const auto& e : log.tail) {
        if (e.seq >= from) tail.push_back(e);
      }
      lines = log.info.lines;
      chunks_end = log.tail.empty() ? lines : log.tail.front().seq;
      closed = log.info.closed;
      p.cut = log.info.cut;
    }
    auto take = [&](log_entry& e) {
      p.next = e.seq + 1;
      if (passes(e, f)) p.entries.push_back(std::move(e));
      return p.entries.size() < max;
    };
    if (max == 0) return p;

    // The written chunks, from the one holding `from`.
    if (!firsts.empty() && from < chunks_end) {
      auto c = static_cast<std::size_t>(std::upper_bound(firsts.begin(), firsts.end(), from) -
                                        firsts.begin());
      c = c == 0 ? 0 : c - 1;
      for (std::size_t read = 0; c < firsts.size(); ++c, ++read) {
        if (read == kMaxChunksPerRead) return p;
        // Lines before p.next are skipped without decoding them, and decoding stops when the
        // page is full: a small page near the end of a chunk costs its decompression only.
        std::string key = keys::log_chunk(job, static_cast<std::uint32_t>(c));
        auto chunk = read_chunk(job, key);
        if (!chunk) return chunk.error();
        std::string_view text(reinterpret_cast<const char*>(chunk->data()), chunk->size());
        std::string what = "ci: " + key;
        while (!text.empty()) {
          auto end = text.find('\n');
          std::string_view one = text.substr(0, end);
          text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
          if (auto seq = peek_seq(one); seq && *seq < p.next) continue;
          auto e = decode_line(one, what);
          if (!e) return e.error();
          if (e->seq < p.next) continue;
          if (!take(*e)) return p;
        }
      }
    }
    for (auto& e : tail) {
      if (e.seq < p.next) continue;
      if (!take(e)) break;
    }
    if (p.entries.size() < max) p.next = std::max(p.next, lines);
    p.done = closed && p.next >= lines;
    return p;
  }

  asio::awaitable<void> wait(job_id job, std::uint64_t from) override {
    auto ex = co_await asio::this_coro::executor;
    auto w = std::make_shared<waiter>(ex, from);
    if (!add_waiter(job, w)) co_return;
    auto [ec] = co_await w->channel.async_receive(asio::as_tuple(asio::use_awaitable));
    (void)ec;  // a wake-up and a cancellation both just end the wait
    drop_waiter(job, w);
  }

  std::optional<log_info> info(job_id job) const override {
    std::lock_guard g(mutex_);
    auto it = logs_.find(job);
    if (it == logs_.end()) return std::nullopt;
    return it->second->info;
  }

  std::uint64_t total_bytes() const override {
    std::lock_guard g(mutex_);
    return total_;
  }

  std::uint64_t buffered_bytes() const override {
    std::lock_guard g(mutex_);
    return buffered_;
  }

  result<prune_report> prune(clock::time_point now) override {
    std::vector<std::pair<clock::time_point, job_id>> candidates;
    std::uint64_t total = 0;
    {
      std::lock_guard g(mutex_);
      for (const auto& [job, log] : logs_) {
        if (log->active) continue;
        candidates.emplace_back(log->info.created, job);
      }
      total = total_;
    }
    return detail::prune_oldest(
        std::move(candidates), total, now, limits_.keep_for, limits_.max_total,
        [&](job_id job) { return remove_log(job, /*only_inactive=*/true); });
  }

  result<void> remove(job_id job) override {
    auto r = remove_log(job, false);
    if (!r) return r.error();
    return {};
  }

 private:
  // The job's log (created, empty, if it has none) with its write_mutex held. Retries if the log
  // is removed between the look-up and the lock, so that no write goes to a dropped log.
  std::pair<log_ptr, std::unique_lock<std::mutex>> lock_log(job_id job) {
    for (;;) {
      log_ptr log;
      {
        std::lock_guard g(mutex_);
        auto& slot = logs_[job];
        if (!slot) {
          slot = std::make_shared<job_log>();
          slot->info.created = clock::now();
          slot->active = true;
        }
        log = slot;
      }
      std::unique_lock writing(log->write_mutex);
      std::lock_guard g(mutex_);
      auto it = logs_.find(job);
      if (it != logs_.end() && it->second == log) return {std::move(log), std::move(writing)};
    }
  }

  // Adds one line to the tail, or counts it once the log is cut. Holds mutex_.
  void add_line(job_log& log, log_entry e) {
    std::uint64_t size = e.text.size() + 1;
    if (log.info.cut) {
      ++log.info.dropped_lines;
      log.info.dropped_bytes += size;
      return;
    }
    if (log.info.bytes + size > limits_.max_job) {
      log.info.cut = true;
      ++log.info.dropped_lines;
      log.info.dropped_bytes += size;
      std::string notice = "log cut at " + config::format_size(limits_.max_job) +
                           "; the job's further output is dropped";
      e.stream = log_stream::pantry;
      e.text = std::move(notice);
      size = e.text.size() + 1;  // the notice itself may go past the limit: it is the last line
    }
    e.seq = log.info.lines++;
    log.info.bytes += size;
    total_ += size;
    std::string line = encode_line(e);
    buffered_ += line.size();
    if (log.tail.empty()) log.tail_since = std::chrono::steady_clock::now();
    log.tail_ndjson += line;
    log.tail.push_back(std::move(e));
  }

  // Writes the tail as the next chunk (if it holds lines) and the metadata; with `closing`, marks
  // the log closed and wakes its followers. The caller holds log.write_mutex, so the tail only
  // grows at its end meanwhile and readers keep seeing its lines until the chunk is stored.
  result<void> write_tail(job_id job, job_log& log, bool closing) {
    std::string ndjson;
    std::size_t lines = 0;
    log_info info;
    std::vector<std::uint64_t> firsts;
    {
      std::lock_guard g(mutex_);
      lines = log.tail.size();
      if (lines == 0 && !closing) return {};
      ndjson = std::move(log.tail_ndjson);
      log.tail_ndjson.clear();
      info = log.info;
      info.closed = info.closed || closing;
      firsts = log.firsts;
      if (lines > 0) firsts.push_back(log.tail.front().seq);
    }
    auto restore = [&] {
      std::lock_guard g(mutex_);
      log.tail_ndjson.insert(0, ndjson);
    };
    if (lines > 0) {
      auto index = static_cast<std::uint32_t>(firsts.size() - 1);
      auto put = store_->put_record(keys::log_chunk(job, index), std::as_bytes(std::span(ndjson)));
      if (!put) {
        restore();
        return put.error();
      }
    }
    // A crash here leaves a chunk the metadata does not count: the next write of this log
    // overwrites it, and nothing reads it.
    if (auto put = store_->put_entry(keys::log_meta(job), encode_meta(info, firsts)); !put) {
      restore();
      return put.error();
    }
    std::vector<waiter_ptr> wake;
    {
      std::lock_guard g(mutex_);
      if (lines > 0) {
        log.firsts.push_back(firsts.back());
        log.tail.erase(log.tail.begin(), log.tail.begin() + static_cast<std::ptrdiff_t>(lines));
        buffered_ -= std::min(buffered_, static_cast<std::uint64_t>(ndjson.size()));
        if (!log.tail.empty()) log.tail_since = std::chrono::steady_clock::now();
      }
      if (closing) {
        log.info.closed = true;
        log.active = false;
        wake = take_waiters_locked(job, 0, true);
      }
    }
    notify(std::move(wake));
    return {};
  }

  result<std::vector<std::byte>> read_chunk(job_id job, const std::string& key) {
    auto record = store_->get_record(key);
    if (!record && record.error().is(errc::not_found)) {
      return error(errc::not_found, job_name(job) + " was removed while being read");
    }
    return record;
  }

  // Removes the job's log; returns its size. With `only_inactive`, errc::not_found if the log is
  // being written by this process (prune never drops those).
  result<std::uint64_t> remove_log(job_id job, bool only_inactive) {
    log_ptr log;
    {
      std::lock_guard g(mutex_);
      auto it = logs_.find(job);
      if (it == logs_.end()) return error(errc::not_found, job_name(job) + " does not exist");
      log = it->second;
    }
    std::lock_guard writing(log->write_mutex);
    std::size_t chunks = 0;
    {
      std::lock_guard g(mutex_);
      auto it = logs_.find(job);
      if (it == logs_.end() || it->second != log || (only_inactive && log->active)) {
        return error(errc::not_found, job_name(job) + " is not there to remove");
      }
      chunks = log->firsts.size();
    }
    // The metadata first: a crash in between leaves unreferenced chunks, never a log that
    // names chunks that are gone.
    if (auto r = store_->remove_entry(keys::log_meta(job)); !r && !r.error().is(errc::not_found)) {
      return r.error();
    }
    for (std::size_t c = 0; c < chunks; ++c) {
      auto r = store_->remove_record(keys::log_chunk(job, static_cast<std::uint32_t>(c)));
      if (!r && !r.error().is(errc::not_found)) return r.error();
    }
    std::vector<waiter_ptr> wake;
    std::uint64_t bytes = 0;
    {
      std::lock_guard g(mutex_);
      bytes = log->info.bytes;
      total_ -= std::min(total_, bytes);
      buffered_ -= std::min(buffered_, static_cast<std::uint64_t>(log->tail_ndjson.size()));
      logs_.erase(job);
      wake = take_waiters_locked(job, 0, true);
    }
    notify(std::move(wake));
    return bytes;
  }

  // Registers `w` unless the log already has what it waits for; returns whether it did.
  bool add_waiter(job_id job, const waiter_ptr& w) {
    std::lock_guard g(mutex_);
    auto it = logs_.find(job);
    if (it != logs_.end() && (it->second->info.closed || it->second->info.lines > w->from)) {
      return false;
    }
    waiters_[job].push_back(w);
    return true;
  }

  void drop_waiter(job_id job, const waiter_ptr& w) {
    std::lock_guard g(mutex_);
    auto it = waiters_.find(job);
    if (it == waiters_.end()) return;
    std::erase(it->second, w);
    if (it->second.empty()) waiters_.erase(it);
  }

  // Removes and returns the job's waiters that `lines` lines (or, with `all`, the end) satisfy.
  // Holds mutex_.
  std::vector<waiter_ptr> take_waiters_locked(job_id job, std::uint64_t lines, bool all) {
    std::vector<waiter_ptr> out;
    auto it = waiters_.find(job);
    if (it == waiters_.end()) return out;
    auto& list = it->second;
    auto keep = std::partition(list.begin(), list.end(),
                               [&](const waiter_ptr& w) { return !all && w->from >= lines; });
    out.assign(keep, list.end());
    list.erase(keep, list.end());
    if (list.empty()) waiters_.erase(it);
    return out;
  }

  // Outside mutex_. Each wake-up runs on the waiter's own executor and takes the notifier's
  // reference with it: the waiter (its channel is bound to that executor) is then never released
  // last on this thread, after the follower finished and its io_context may be gone (ASan saw
  // exactly that in LogStoreTest.ConcurrentWritersAndFollowersSeeEveryLine).
  static void notify(std::vector<waiter_ptr> wake) {
    for (auto& w : wake) {
      auto ex = w->channel.get_executor();
      asio::post(ex, [w = std::move(w)] { w->channel.try_send(boost::system::error_code{}); });
    }
  }

  const std::shared_ptr<cache::store> store_;
  const log_limits limits_;
  mutable std::mutex mutex_;
  std::map<job_id, log_ptr> logs_;                               // guarded by mutex_
  std::unordered_map<job_id, std::vector<waiter_ptr>> waiters_;  // guarded by mutex_
  std::uint64_t total_ = 0;                                      // guarded by mutex_
  std::uint64_t buffered_ = 0;                                   // guarded by mutex_
};

}  // namespace

result<std::shared_ptr<log_store>> log_store::open(std::shared_ptr<cache::store> store,
                                                   log_limits limits) {
  auto s = std::make_shared<log_store_impl>(std::move(store), limits);
  if (auto r = s->load(); !r) return r.error();
  return std::shared_ptr<log_store>(std::move(s));
}

}  // namespace pantry::orchestrator::coordinator
