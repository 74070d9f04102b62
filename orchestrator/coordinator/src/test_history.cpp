// The test history in the cache store, and what it says (test_history.h).

#include "pantry/orchestrator/coordinator/test_history.h"

#include "pantry/orchestrator/coordinator/measures.h"

#include "keys.h"
#include "meta.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

constexpr std::int64_t kRecordVersion = 1;
// The largest failure time a runner may send, in ms since the epoch (the year 33658): far past
// any clock, and far from overflowing a time_point.
constexpr std::int64_t kMaxFailedAtMs = 1'000'000'000'000'000;

std::optional<error> check_project(std::string_view project) {
  auto why = keys::project_key_problem(project);
  if (!why) return std::nullopt;
  return error(errc::invalid_argument, "test history: project \"" +
                                           std::string(project.substr(0, 200)) + "\" " + *why +
                                           "; use a project name as `pantry submit` takes it");
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string encode_run(const test_run& run) {
  json::object o;
  o["v"] = kRecordVersion;
  o["project"] = run.project;
  o["job"] = run.job;
  o["pipeline"] = run.pipeline;
  o["job_name"] = run.job_name;
  o["commit"] = run.commit;
  o["patch"] = run.patch;
  o["shard"] = run.shard;
  o["shards"] = run.shards;
  o["time"] = detail::to_ms(run.time);
  json::array results;
  results.reserve(run.results.size());
  for (const test_result& r : run.results) {
    json::object t;
    t["i"] = r.id;
    if (!r.file.empty()) t["f"] = r.file;
    if (!r.classname.empty()) t["c"] = r.classname;
    t["n"] = r.name;
    t["o"] = to_string(r.outcome);
    t["s"] = r.seconds;
    if (r.rerun) t["r"] = to_string(*r.rerun);
    if (!r.message.empty()) t["m"] = r.message;
    if (r.failed_at) t["t"] = detail::to_ms(*r.failed_at);
    results.emplace_back(std::move(t));
  }
  o["results"] = std::move(results);
  return json::serialize(o);
}

result<test_run> decode_run(std::string_view key, std::string_view text) {
  auto bad = [&](const std::string& why) {
    return error(errc::corrupt, "test history: record " + std::string(key) + ": " + why +
                                    "; remove the run (it is rewritten by the next job)");
  };
  json::parse_options opt;
  opt.allow_invalid_utf8 = true;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, {}, opt);
  if (ec) return bad("not JSON (" + ec.message() + ")");
  const json::object* o = v.if_object();
  if (o == nullptr) return bad("not a JSON object");
  const json::value* version = o->if_contains("v");
  if (version == nullptr || !version->is_int64() || version->get_int64() != kRecordVersion) {
    return bad("not a version " + std::to_string(kRecordVersion) + " record");
  }
  auto string_of = [&](const json::object& from, std::string_view name) -> const json::string* {
    const json::value* m = from.if_contains(name);
    return m == nullptr ? nullptr : m->if_string();
  };
  auto number_of = [&](std::string_view name) -> std::optional<std::int64_t> {
    const json::value* m = o->if_contains(name);
    if (m == nullptr || !m->is_number()) return std::nullopt;
    boost::system::error_code number_ec;
    auto n = m->to_number<std::int64_t>(number_ec);
    if (number_ec) return std::nullopt;
    return n;
  };
  test_run run;
  const json::string* project = string_of(*o, "project");
  const json::string* job_name = string_of(*o, "job_name");
  const json::string* commit = string_of(*o, "commit");
  const json::string* patch = string_of(*o, "patch");
  auto job = number_of("job");
  auto pipeline = number_of("pipeline");
  auto shard = number_of("shard");
  auto shards = number_of("shards");
  auto time = number_of("time");
  const json::value* results = o->if_contains("results");
  if (!project || !job_name || !commit || !patch || !job || *job <= 0 || !pipeline || !shard ||
      !shards || !time || results == nullptr || !results->is_array()) {
    return bad("a member is missing or of the wrong type");
  }
  run.project = *project;
  run.job = static_cast<job_id>(*job);
  run.pipeline = static_cast<pipeline_id>(std::max<std::int64_t>(*pipeline, 0));
  run.job_name = *job_name;
  run.commit = *commit;
  run.patch = *patch;
  run.shard = static_cast<int>(*shard);
  run.shards = static_cast<int>(*shards);
  run.time = detail::from_ms(*time);
  run.results.reserve(results->get_array().size());
  for (const json::value& e : results->get_array()) {
    const json::object* t = e.if_object();
    if (t == nullptr) return bad("a result is not an object");
    const json::string* id = string_of(*t, "i");
    const json::string* name = string_of(*t, "n");
    const json::string* outcome = string_of(*t, "o");
    const json::value* seconds = t->if_contains("s");
    if (!id || !name || !outcome || seconds == nullptr || !seconds->is_number()) {
      return bad("a result lacks its id, name, outcome or seconds");
    }
    test_result r;
    r.id = *id;
    r.name = *name;
    auto parsed = parse_test_outcome(*outcome);
    if (!parsed) return bad("a result's outcome \"" + std::string(*outcome) + "\" is unknown");
    r.outcome = *parsed;
    r.seconds = seconds->to_number<double>();
    if (const json::string* f = string_of(*t, "f")) r.file = *f;
    if (const json::string* c = string_of(*t, "c")) r.classname = *c;
    if (const json::string* m = string_of(*t, "m")) r.message = *m;
    if (const json::string* rr = string_of(*t, "r")) {
      r.rerun = parse_test_outcome(*rr);
      if (!r.rerun) return bad("a result's re-run outcome \"" + std::string(*rr) + "\" is unknown");
    }
    if (const json::value* at = t->if_contains("t")) {
      if (!at->is_int64()) return bad("a result's failure time is not a whole number");
      r.failed_at = detail::from_ms(at->get_int64());
    }
    run.results.push_back(std::move(r));
  }
  return run;
}

class history_impl final : public test_history {
 public:
  history_impl(std::shared_ptr<cache::store> store, history_options options)
      : store_(std::move(store)), options_(options) {}

  result<void> record(const test_run& run) override {
    if (auto e = check_project(run.project)) return *e;
    if (run.job == 0) {
      return error(errc::invalid_argument,
                   "test history: a run of project " + run.project + " has job id 0");
    }
    const std::string key = keys::test_run(run.project, run.job);
    const std::string bytes = encode_run(run);
    // One writer per history: pruning counts what it lists, so two interleaved records of one
    // project could both keep one run too many (or drop one too many).
    std::lock_guard lock(mutex_);
    // The record first, then the entry that lists it: a walk never finds an entry whose record
    // is not written yet.
    if (auto put = store_->put_record(key, as_bytes(bytes)); !put) return put.error();
    cache::entry index;
    index.fetched_at = run.time;
    index.expires_at = run.time;
    index.attributes = {{"time", std::to_string(detail::to_ms(run.time))},
                        {"tests", std::to_string(run.results.size())}};
    if (auto put = store_->put_entry(key, index); !put) return put.error();
    return prune(run.project);
  }

  result<std::vector<test_run>> runs(std::string_view project, std::size_t newest) override {
    if (auto e = check_project(project)) return *e;
    auto listed = list(project);
    if (!listed) return listed.error();
    const std::size_t skip = listed->size() > newest ? listed->size() - newest : 0;
    std::vector<test_run> out;
    out.reserve(listed->size() - skip);
    for (const std::string& key : std::span(*listed).subspan(skip)) {
      auto bytes = store_->get_record(key);
      if (!bytes) {
        // Pruned between the walk and this read: the run is gone, not broken.
        if (bytes.error().is(errc::not_found)) continue;
        return bytes.error();
      }
      const std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
      auto run = decode_run(key, text);
      if (!run) return run.error();
      out.push_back(std::move(*run));
    }
    return out;
  }

  result<void> remove_run(std::string_view project, job_id job) override {
    if (auto e = check_project(project)) return *e;
    std::lock_guard lock(mutex_);
    return remove(keys::test_run(project, job));
  }

 private:
  // The keys of the project's runs, oldest first.
  result<std::vector<std::string>> list(std::string_view project) {
    const std::string prefix = keys::test_runs_of(project);
    std::vector<std::string> keys;
    auto walked = store_->for_each_entry(prefix, [&](std::string_view key, const cache::entry&) {
      keys.emplace_back(key);
      return true;
    });
    if (!walked) return walked.error();
    return keys;
  }

  result<void> remove(const std::string& key) {
    // The entry first: once it is gone no walk lists the run, whatever happens to the record.
    auto entry = store_->remove_entry(key);
    if (!entry) return entry.error();
    auto record = store_->remove_record(key);
    if (!record && !record.error().is(errc::not_found)) return record.error();
    return {};
  }

  result<void> prune(std::string_view project) {
    auto listed = list(project);
    if (!listed) return listed.error();
    const std::size_t keep = std::max<std::size_t>(options_.max_runs_per_project, 1);
    for (std::size_t i = 0; i + keep < listed->size(); ++i) {
      auto removed = remove((*listed)[i]);
      if (!removed && !removed.error().is(errc::not_found)) return removed.error();
    }
    return {};
  }

  std::shared_ptr<cache::store> store_;
  history_options options_;
  std::mutex mutex_;
};

// Runs in the order their results happened: by time, then by job id.
std::vector<const test_run*> in_time_order(std::span<const test_run> runs,
                                           std::string_view job_name = {}) {
  std::vector<const test_run*> order;
  order.reserve(runs.size());
  for (const test_run& r : runs) {
    if (job_name.empty() || r.job_name == job_name) order.push_back(&r);
  }
  std::sort(order.begin(), order.end(), [](const test_run* a, const test_run* b) {
    return std::tie(a->time, a->job) < std::tie(b->time, b->job);
  });
  return order;
}

}  // namespace

test_run make_test_run(const pipeline_record& p, const job_record& j,
                       std::vector<test_result> results) {
  test_run run;
  run.project = p.project;
  run.job = j.id;
  run.pipeline = p.id;
  run.job_name = j.spec_name;
  run.commit = p.commit;
  run.patch = p.patch;
  run.shard = j.shard;
  run.shards = j.shards;
  run.time = j.finished_at;
  run.results = std::move(results);
  return run;
}

std::unique_ptr<test_history> test_history::open(std::shared_ptr<cache::store> store,
                                                 history_options options) {
  return std::make_unique<history_impl>(std::move(store), options);
}

std::string_view to_string(flake_kind k) noexcept {
  return k == flake_kind::rerun ? "rerun" : "same_commit";
}

std::vector<test_stat> summarize(std::span<const test_run> runs, const summary_options& options) {
  struct history {
    test_stat stat;
    std::vector<double> passing, failing;  // seconds, oldest first
    std::vector<bool> failed;              // per run, oldest first
  };
  std::map<std::string, history, std::less<>> tests;
  for (const test_run* run : in_time_order(runs, options.job_name)) {
    for (const test_result& r : run->results) {
      auto [it, inserted] = tests.try_emplace(r.id);
      history& h = it->second;
      test_stat& s = h.stat;
      if (inserted) {
        s.id = r.id;
        s.first_seen = run->time;
      }
      if (!r.file.empty()) s.file = r.file;
      ++s.runs;
      s.last_seen = run->time;
      s.last_outcome = r.outcome;
      const bool failed = is_failure(r.outcome);
      h.failed.push_back(failed);
      if (r.outcome == test_outcome::passed) {
        ++s.passes;
        h.passing.push_back(r.seconds);
      } else if (failed) {
        ++s.failures;
        h.failing.push_back(r.seconds);
        s.last_failed = run->time;
        s.last_failed_job = run->job;
      } else {
        ++s.skips;
      }
    }
  }
  std::vector<test_stat> out;
  out.reserve(tests.size());
  const std::size_t window = std::max<std::size_t>(options.duration_window, 1);
  for (auto& [id, h] : tests) {
    const std::vector<double>& source = h.passing.empty() ? h.failing : h.passing;
    if (!source.empty()) {
      const std::size_t from = source.size() > window ? source.size() - window : 0;
      h.stat.seconds = median(std::vector<double>(source.begin() + from, source.end()));
    }
    const std::size_t recent = std::min(options.recent_runs, h.failed.size());
    h.stat.failed_recently = std::any_of(h.failed.end() - static_cast<std::ptrdiff_t>(recent),
                                         h.failed.end(), [](bool f) { return f; });
    out.push_back(std::move(h.stat));
  }
  return out;
}

std::vector<test_failure> recent_failures(std::span<const test_run> runs, std::size_t limit) {
  std::unordered_map<std::string, test_failure> latest;
  for (const test_run* run : in_time_order(runs)) {
    for (const test_result& r : run->results) {
      if (!is_failure(r.outcome)) continue;
      test_failure f;
      f.id = r.id;
      f.outcome = r.outcome;
      f.rerun = r.rerun;
      f.job = run->job;
      f.pipeline = run->pipeline;
      f.commit = run->commit;
      f.time = run->time;
      f.message = r.message;
      latest.insert_or_assign(r.id, std::move(f));
    }
  }
  std::vector<test_failure> out;
  out.reserve(latest.size());
  for (auto& [id, f] : latest)
    out.push_back(std::move(f));
  std::sort(out.begin(), out.end(), [](const test_failure& a, const test_failure& b) {
    if (a.time != b.time) return a.time > b.time;
    return a.id < b.id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<flaky_test> flaky_tests(std::span<const test_run> runs) {
  struct seen {
    const test_run* run;
    const test_result* result;
  };
  // Per test, its runs in time order.
  std::map<std::string, std::vector<seen>, std::less<>> by_test;
  for (const test_run* run : in_time_order(runs)) {
    for (const test_result& r : run->results)
      by_test[r.id].push_back({run, &r});
  }
  std::vector<flaky_test> out;
  for (const auto& [id, history] : by_test) {
    std::vector<flake> flakes;
    // On each commit, the latest pass so far: a later failure on that commit pairs with it.
    std::map<std::string, const test_run*, std::less<>> passed_on;
    // Failures on a commit that no pass preceded yet: they pair with the first later pass.
    std::map<std::string, std::vector<const test_run*>, std::less<>> unpaired;
    for (const seen& s : history) {
      const test_result& r = *s.result;
      if (is_failure(r.outcome) && r.rerun == test_outcome::passed) {
        // Evidence already; pairing it with a pass on its commit too would count one flake twice.
        flakes.push_back({flake_kind::rerun, s.run->commit, s.run->job, s.run->job, s.run->time});
        continue;
      }
      if (s.run->commit.empty()) continue;
      if (r.outcome == test_outcome::passed) {
        passed_on[s.run->commit] = s.run;
        auto waiting = unpaired.find(s.run->commit);
        if (waiting != unpaired.end()) {
          for (const test_run* failed : waiting->second) {
            flakes.push_back(
                {flake_kind::same_commit, s.run->commit, failed->job, s.run->job, s.run->time});
          }
          unpaired.erase(waiting);
        }
      } else if (is_failure(r.outcome)) {
        auto pass = passed_on.find(s.run->commit);
        if (pass != passed_on.end()) {
          flakes.push_back(
              {flake_kind::same_commit, s.run->commit, s.run->job, pass->second->job, s.run->time});
        } else {
          unpaired[s.run->commit].push_back(s.run);
        }
      }
    }
    if (flakes.empty()) continue;
    std::stable_sort(flakes.begin(), flakes.end(),
                     [](const flake& a, const flake& b) { return a.time > b.time; });
    flaky_test t;
    t.id = id;
    for (const seen& s : history) {
      if (!s.result->file.empty()) t.file = s.result->file;
    }
    t.runs = history.size();
    t.flakes = flakes.size();
    t.rate = static_cast<double>(t.flakes) / static_cast<double>(t.runs);
    t.first_seen = history.front().run->time;
    t.last_flaked = flakes.front().time;
    t.first_flaked = flakes.back().time;
    for (const flake& f : flakes) {
      if (!f.commit.empty() &&
          std::find(t.commits.begin(), t.commits.end(), f.commit) == t.commits.end()) {
        t.commits.push_back(f.commit);
      }
    }
    if (flakes.size() > kMaxEvidence) flakes.resize(kMaxEvidence);
    t.evidence = std::move(flakes);
    out.push_back(std::move(t));
  }
  std::stable_sort(out.begin(), out.end(), [](const flaky_test& a, const flaky_test& b) {
    return a.last_flaked > b.last_flaked;
  });
  return out;
}

std::vector<test_stat> slowest(std::span<const test_stat> stats, std::size_t n) {
  std::vector<test_stat> out(stats.begin(), stats.end());
  std::sort(out.begin(), out.end(), [](const test_stat& a, const test_stat& b) {
    if (a.seconds.has_value() != b.seconds.has_value()) return a.seconds.has_value();
    if (a.seconds && *a.seconds != *b.seconds) return *a.seconds > *b.seconds;
    return a.id < b.id;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

std::size_t passes_since(std::span<const test_run> runs, std::string_view id,
                         clock::time_point since) {
  std::size_t n = 0;
  for (const test_run& run : runs) {
    if (run.time < since) continue;
    for (const test_result& r : run.results) {
      if (r.id == id && r.outcome == test_outcome::passed) ++n;
    }
  }
  return n;
}

std::size_t passes_in_a_row(std::span<const test_run> runs, std::string_view id,
                            std::optional<clock::time_point> since) {
  const auto order = in_time_order(runs);
  std::size_t n = 0;
  for (auto run = order.rbegin(); run != order.rend(); ++run) {
    if (since && (*run)->time < *since) break;
    for (const test_result& r : (*run)->results) {
      if (r.id != id) continue;
      if (is_failure(r.outcome)) return n;
      if (r.outcome == test_outcome::passed) ++n;
    }
  }
  return n;
}

namespace {

json::value outcome_or_null(const std::optional<test_outcome>& o) {
  return o ? json::value(to_string(*o)) : json::value(nullptr);
}

json::value ms_or_null(const std::optional<clock::time_point>& t) {
  return t ? json::value(detail::to_ms(*t)) : json::value(nullptr);
}

}  // namespace

json::object to_json(const test_result& r) {
  json::object o;
  o["id"] = r.id;
  o["file"] = r.file;
  o["classname"] = r.classname;
  o["name"] = r.name;
  o["outcome"] = to_string(r.outcome);
  o["seconds"] = r.seconds;
  o["rerun"] = outcome_or_null(r.rerun);
  o["message"] = r.message;
  o["failed_at"] = ms_or_null(r.failed_at);
  return o;
}

result<std::vector<test_result>> test_results_from_json(const json::value& v,
                                                        std::size_t max_results) {
  auto bad = [](const std::string& where, const std::string& why) {
    return error(errc::invalid_argument, "test results: " + where + ": " + why);
  };
  const json::array* a = v.if_array();
  if (a == nullptr) return bad("(document)", "expected an array of results");
  if (a->size() > max_results) {
    return bad("(document)", std::to_string(a->size()) + " results; at most " +
                                 std::to_string(max_results) + " are taken from one job");
  }
  std::vector<test_result> out;
  out.reserve(a->size());
  for (std::size_t i = 0; i < a->size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    const json::object* o = (*a)[i].if_object();
    if (o == nullptr) return bad(at, "expected an object");
    test_result r;
    // Required strings first, then the optional ones (absent or null is "").
    for (auto [key, into, required] :
         {std::tuple<std::string_view, std::string*, bool>{"id", &r.id, true},
          {"name", &r.name, true},
          {"file", &r.file, false},
          {"classname", &r.classname, false},
          {"message", &r.message, false}}) {
      const json::value* m = o->if_contains(key);
      if (m == nullptr || m->is_null()) {
        if (required) return bad(at + "." + std::string(key), "missing");
        continue;
      }
      if (!m->is_string()) return bad(at + "." + std::string(key), "expected a string");
      *into = m->get_string();
    }
    if (r.id.empty()) return bad(at + ".id", "empty");
    if (r.message.size() > kMaxMessage) r.message.resize(kMaxMessage);
    auto outcome_at = [&](std::string_view key) -> result<std::optional<test_outcome>> {
      const json::value* m = o->if_contains(key);
      if (m == nullptr || m->is_null()) return std::optional<test_outcome>();
      const json::string* text = m->if_string();
      auto parsed = text ? parse_test_outcome(*text) : std::nullopt;
      if (!parsed) {
        return bad(at + "." + std::string(key),
                   (text ? "\"" + std::string(text->subview().substr(0, 40)) + "\""
                         : std::string("a non-string")) +
                       " is not passed, failed, error or skipped");
      }
      return std::optional<test_outcome>(*parsed);
    };
    auto outcome = outcome_at("outcome");
    if (!outcome) return outcome.error();
    if (!*outcome) return bad(at + ".outcome", "missing");
    r.outcome = **outcome;
    auto rerun = outcome_at("rerun");
    if (!rerun) return rerun.error();
    r.rerun = *rerun;
    const json::value* seconds = o->if_contains("seconds");
    if (seconds == nullptr || !seconds->is_number()) {
      return bad(at + ".seconds", "expected a number");
    }
    r.seconds = seconds->to_number<double>();
    if (!std::isfinite(r.seconds) || r.seconds < 0) {
      return bad(at + ".seconds", "expected a non-negative number");
    }
    if (const json::value* f = o->if_contains("failed_at"); f != nullptr && !f->is_null()) {
      std::int64_t ms = -1;
      if (f->is_number()) {
        boost::system::error_code number_ec;
        ms = f->to_number<std::int64_t>(number_ec);
        if (number_ec) ms = -1;
      }
      if (ms < 0 || ms > kMaxFailedAtMs) {
        return bad(at + ".failed_at",
                   "expected milliseconds since the Unix epoch (a whole number up to 10^15)");
      }
      r.failed_at = detail::from_ms(ms);
    }
    out.push_back(std::move(r));
  }
  return out;
}

json::object to_json(const test_stat& s) {
  json::object o;
  o["id"] = s.id;
  o["file"] = s.file;
  o["runs"] = s.runs;
  o["passes"] = s.passes;
  o["failures"] = s.failures;
  o["skips"] = s.skips;
  o["seconds"] = s.seconds ? json::value(*s.seconds) : json::value(nullptr);
  o["last_outcome"] = to_string(s.last_outcome);
  o["first_seen"] = detail::to_ms(s.first_seen);
  o["last_seen"] = detail::to_ms(s.last_seen);
  o["last_failed"] = ms_or_null(s.last_failed);
  o["last_failed_job"] = s.last_failed_job;
  o["failed_recently"] = s.failed_recently;
  return o;
}

json::object to_json(const test_failure& f) {
  json::object o;
  o["id"] = f.id;
  o["outcome"] = to_string(f.outcome);
  o["rerun"] = outcome_or_null(f.rerun);
  o["job"] = f.job;
  o["pipeline"] = f.pipeline;
  o["commit"] = f.commit;
  o["time"] = detail::to_ms(f.time);
  o["message"] = f.message;
  return o;
}

json::object to_json(const flaky_test& t) {
  json::object o;
  o["id"] = t.id;
  o["file"] = t.file;
  o["runs"] = t.runs;
  o["flakes"] = t.flakes;
  o["rate"] = t.rate;
  json::array commits;
  for (const std::string& c : t.commits)
    commits.emplace_back(c);
  o["commits"] = std::move(commits);
  o["first_seen"] = detail::to_ms(t.first_seen);
  o["first_flaked"] = detail::to_ms(t.first_flaked);
  o["last_flaked"] = detail::to_ms(t.last_flaked);
  json::array evidence;
  for (const flake& f : t.evidence) {
    json::object e;
    e["kind"] = to_string(f.kind);
    e["commit"] = f.commit;
    e["failed_job"] = f.failed_job;
    e["passed_job"] = f.passed_job;
    e["time"] = detail::to_ms(f.time);
    evidence.emplace_back(std::move(e));
  }
  o["evidence"] = std::move(evidence);
  return o;
}

}  // namespace pantry::orchestrator::coordinator
