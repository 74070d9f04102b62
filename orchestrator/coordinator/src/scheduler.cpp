#include "pantry/orchestrator/coordinator/scheduler.h"

#include <boost/assert.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

namespace pantry::orchestrator::coordinator {
namespace {

constexpr std::string_view kRestartedReason = "re-queued: pantry restarted while it ran";

double seconds_between(clock::time_point from, clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string last_attempt(int attempts, int max_attempts) {
  return ", on its last attempt (" + std::to_string(attempts) + " of " +
         std::to_string(max_attempts) + ")";
}

// How a job that ended reads in the reason of the jobs that needed it.
std::string_view ended_as(job_state s) {
  switch (s) {
    case job_state::failed:
      return "failed";
    case job_state::cancelled:
      return "was cancelled";
    case job_state::skipped:
      return "was skipped";
    default:
      return "did not pass";
  }
}

// "lint", "lint and test 1/2", "lint, test 1/2, test 2/2 and 2 more".
std::string name_list(const std::vector<std::string>& names) {
  constexpr std::size_t kShown = 3;
  std::string out;
  const std::size_t shown = std::min(names.size(), kShown);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) out += (i + 1 == shown && names.size() <= kShown) ? " and " : ", ";
    out += names[i];
  }
  if (names.size() > kShown) out += " and " + std::to_string(names.size() - kShown) + " more";
  return out;
}

// Past runs of one project + spec name, and its ready jobs. Every ready job of a group has the
// group's priority, so the ready set is ordered group by group: the best ready job is the head
// of the best group, and a history change re-ranks one group instead of every job in it.
struct group {
  struct run {
    bool passed = false;
    double seconds = 0;
  };
  bool image_build = false;
  std::deque<run> runs;  // oldest first, at most scheduler_options::history
  double score = 0;      // failure rate / usual runtime (at least 1 s)
  std::set<std::pair<pipeline_id, job_id>> ready;

  std::optional<double> usual_runtime() const {
    std::vector<double> passed, all;
    for (const run& r : runs) {
      all.push_back(r.seconds);
      if (r.passed) passed.push_back(r.seconds);
    }
    std::vector<double>& v = passed.empty() ? all : passed;
    if (v.empty()) return std::nullopt;
    auto middle = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), middle, v.end());
    return *middle;
  }

  void rescore() {
    if (runs.empty()) {
      score = 0;
      return;
    }
    const auto failures =
        std::count_if(runs.begin(), runs.end(), [](const run& r) { return !r.passed; });
    const double rate = static_cast<double>(failures) / static_cast<double>(runs.size());
    score = rate / std::max(1.0, usual_runtime().value_or(1.0));
  }
};

// A group's place in the ready order: image builds first, the higher score, the older pipeline,
// the older job (the group's head).
struct rank {
  bool not_image_build = true;
  double score = 0;
  pipeline_id pipeline = 0;
  job_id job = 0;
  group* g = nullptr;

  bool operator<(const rank& o) const {
    if (not_image_build != o.not_image_build) return !not_image_build;
    if (score != o.score) return score > o.score;
    return std::tie(pipeline, job) < std::tie(o.pipeline, o.job);
  }
};

std::string group_key(std::string_view project, std::string_view spec_name, bool image_build) {
  std::string key;
  key.reserve(project.size() + spec_name.size() + 2);
  key.append(project).push_back('\0');
  key.append(spec_name).push_back(image_build ? '\1' : '\0');
  return key;
}

// The scheduler's view of one job beyond its record.
struct node {
  std::vector<std::size_t> needs;       // indices, deduplicated
  std::vector<std::size_t> dependents;  // indices of the jobs that need this one
  std::size_t unmet = 0;                // needs not passed yet
  bool ready = false;                   // in its group's ready set
  group* g = nullptr;
};

struct live_pipeline {
  pipeline_record record;
  std::vector<node> nodes;  // parallel to record.jobs
  std::size_t unfinished = 0;
};

void mark_dirty(changes& out, pipeline_id id) {
  if (std::find(out.dirty.begin(), out.dirty.end(), id) == out.dirty.end()) out.dirty.push_back(id);
}

}  // namespace

struct scheduler::impl {
  scheduler_options options;
  std::map<pipeline_id, live_pipeline> pipelines;  // node-based: records and nodes stay put
  std::unordered_map<job_id, std::pair<live_pipeline*, std::size_t>> jobs;
  std::unordered_map<std::string, group> groups;  // node-based: rank::g stays valid
  std::set<rank> ranks;                           // one per group with ready jobs
  // Unfinished pipelines with a patch, by project + patch: what a submit supersedes.
  std::unordered_map<std::string, std::set<pipeline_id>> open_patches;
  std::set<job_id> running_jobs;
  std::size_t queued_count = 0, ready_count = 0;
  job_id next_job = 1;
  pipeline_id next_pipeline = 1;
  std::uint64_t next_lease = 1;

  explicit impl(scheduler_options o) : options(o) {}

  group& group_for(const pipeline_record& p, const job_record& j) {
    auto [it, inserted] = groups.try_emplace(group_key(p.project, j.spec_name, j.image_build));
    if (inserted) it->second.image_build = j.image_build;
    return it->second;
  }

  static rank rank_of(group& g) {
    BOOST_ASSERT(!g.ready.empty());
    const auto& [pipeline, job] = *g.ready.begin();
    return rank{!g.image_build, g.score, pipeline, job, &g};
  }

  void add_ready(live_pipeline& lp, std::size_t i) {
    node& n = lp.nodes[i];
    if (n.ready) return;
    group& g = *n.g;
    if (!g.ready.empty()) ranks.erase(rank_of(g));
    g.ready.emplace(lp.record.id, lp.record.jobs[i].id);
    ranks.insert(rank_of(g));
    n.ready = true;
    ++ready_count;
  }

  void remove_ready(live_pipeline& lp, std::size_t i) {
    node& n = lp.nodes[i];
    if (!n.ready) return;
    group& g = *n.g;
    ranks.erase(rank_of(g));
    g.ready.erase({lp.record.id, lp.record.jobs[i].id});
    if (!g.ready.empty()) ranks.insert(rank_of(g));
    n.ready = false;
    --ready_count;
  }

  void record_run(group& g, bool passed, double seconds) {
    if (options.history == 0) return;
    if (!g.ready.empty()) ranks.erase(rank_of(g));
    g.runs.push_back({passed, std::max(0.0, seconds)});
    while (g.runs.size() > options.history)
      g.runs.pop_front();
    g.rescore();
    if (!g.ready.empty()) ranks.insert(rank_of(g));
  }

  // Moves a job between states, keeping the counters, the running set and the ready set.
  void set_state(live_pipeline& lp, std::size_t i, job_state to) {
    job_record& j = lp.record.jobs[i];
    const job_state from = j.state;
    if (from == job_state::queued) {
      remove_ready(lp, i);
      --queued_count;
    }
    if (from == job_state::running) running_jobs.erase(j.id);
    if (to == job_state::queued) ++queued_count;
    if (to == job_state::running) running_jobs.insert(j.id);
    if (!finished(from) && finished(to)) --lp.unfinished;
    j.state = to;
  }

  // Ends an unfinished job (a running one is stopped by the caller's kill, if `kill`).
  void end_job(live_pipeline& lp, std::size_t i, job_state to, std::string reason,
               clock::time_point now, bool kill, changes& out) {
    job_record& j = lp.record.jobs[i];
    BOOST_ASSERT(!finished(j.state) && finished(to));
    if (kill && j.state == job_state::running) out.kill.emplace_back(j.id, j.runner);
    set_state(lp, i, to);
    j.reason = std::move(reason);
    j.finished_at = now;
    out.ended.push_back(j.id);
    mark_dirty(out, lp.record.id);
    if ((to == job_state::passed || to == job_state::failed) && j.attempts > 0) {
      record_run(*lp.nodes[i].g, to == job_state::passed, seconds_between(j.started_at, now));
    }
  }

  // What a job's end means for the rest of its pipeline.
  void after_end(live_pipeline& lp, std::size_t i, clock::time_point now, changes& out) {
    const job_record& j = lp.record.jobs[i];
    if (j.state == job_state::passed) {
      for (std::size_t d : lp.nodes[i].dependents) {
        node& n = lp.nodes[d];
        BOOST_ASSERT(n.unmet > 0);
        if (--n.unmet == 0 && lp.record.jobs[d].state == job_state::queued) {
          add_ready(lp, d);
          out.work_ready = true;
        }
      }
    } else if (j.state == job_state::failed && !lp.record.keep_going &&
               lp.record.state == pipeline_state::running) {
      const std::string name = j.name;
      stop(lp, pipeline_state::failed, name + " failed", "cancelled: " + name + " failed", now,
           out);
      return;
    } else {
      skip_dependents(lp, i, now, out);
    }
    settle(lp, now, out);
  }

  // Skips the queued jobs that need job `i`, directly or not.
  void skip_dependents(live_pipeline& lp, std::size_t i, clock::time_point now, changes& out) {
    std::vector<std::size_t> work{i};
    while (!work.empty()) {
      const std::size_t cause = work.back();
      work.pop_back();
      for (std::size_t d : lp.nodes[cause].dependents) {
        if (lp.record.jobs[d].state != job_state::queued) continue;
        const job_record& c = lp.record.jobs[cause];
        end_job(lp, d, job_state::skipped,
                "needs " + c.name + ", which " + std::string(ended_as(c.state)), now, false, out);
        work.push_back(d);
      }
    }
  }

  // Ends an unfinished pipeline: its unfinished jobs are cancelled with `job_reason`.
  void stop(live_pipeline& lp, pipeline_state state, std::string reason,
            const std::string& job_reason, clock::time_point now, changes& out) {
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      if (!finished(lp.record.jobs[i].state)) {
        end_job(lp, i, job_state::cancelled, job_reason, now, true, out);
      }
    }
    close(lp, state, std::move(reason), now, out);
  }

  void close(live_pipeline& lp, pipeline_state state, std::string reason, clock::time_point now,
             changes& out) {
    lp.record.state = state;
    lp.record.reason = std::move(reason);
    lp.record.finished_at = now;
    if (!lp.record.patch.empty()) {
      auto it = open_patches.find(patch_key(lp.record));
      if (it != open_patches.end() && it->second.erase(lp.record.id) && it->second.empty()) {
        open_patches.erase(it);
      }
    }
    out.pipelines_ended.push_back(lp.record.id);
    mark_dirty(out, lp.record.id);
  }

  // Ends a running pipeline whose jobs have all ended.
  void settle(live_pipeline& lp, clock::time_point now, changes& out) {
    if (lp.record.state != pipeline_state::running || lp.unfinished > 0) return;
    std::vector<std::string> failed;
    const job_record* cancelled = nullptr;
    for (const job_record& j : lp.record.jobs) {
      if (j.state == job_state::failed) failed.push_back(j.name);
      if (!cancelled && (j.state == job_state::cancelled || j.state == job_state::skipped)) {
        cancelled = &j;
      }
    }
    if (!failed.empty()) {
      close(lp, pipeline_state::failed, name_list(failed) + " failed", now, out);
    } else if (cancelled) {
      close(lp, pipeline_state::cancelled,
            cancelled->name +
                (cancelled->state == job_state::skipped ? " was skipped: " : " was cancelled: ") +
                cancelled->reason,
            now, out);
    } else {
      close(lp, pipeline_state::passed, "", now, out);
    }
  }

  // The runner-seconds a pipeline still had before it: its running jobs' remaining usual
  // runtime and its queued jobs' usual runtime (0 for jobs without history).
  double remaining_seconds(const live_pipeline& lp, clock::time_point now) const {
    double total = 0;
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      const job_record& j = lp.record.jobs[i];
      const double usual = lp.nodes[i].g->usual_runtime().value_or(0);
      if (j.state == job_state::queued) total += usual;
      if (j.state == job_state::running) {
        total += std::max(0.0, usual - seconds_between(j.started_at, now));
      }
    }
    return total;
  }

  // Indexes a pipeline just placed in `pipelines`: its jobs, groups and dependents.
  void index(live_pipeline& lp) {
    lp.nodes.resize(lp.record.jobs.size());
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      const job_record& j = lp.record.jobs[i];
      jobs[j.id] = {&lp, i};
      lp.nodes[i].g = &group_for(lp.record, j);
      for (std::size_t n : lp.nodes[i].needs)
        lp.nodes[n].dependents.push_back(i);
      if (j.state == job_state::queued) ++queued_count;
      if (j.state == job_state::running) running_jobs.insert(j.id);
      if (!finished(j.state)) ++lp.unfinished;
    }
  }

  static std::string patch_key(const pipeline_record& p) { return p.project + '\0' + p.patch; }

  void opened(const pipeline_record& p) {
    if (!p.patch.empty()) open_patches[patch_key(p)].insert(p.id);
  }

  live_pipeline* find_pipeline(pipeline_id id) {
    auto it = pipelines.find(id);
    return it == pipelines.end() ? nullptr : &it->second;
  }
};

scheduler::scheduler(scheduler_options options) : impl_(std::make_unique<impl>(options)) {}
scheduler::~scheduler() = default;

std::pair<pipeline_id, changes> scheduler::submit(submission s, clock::time_point now) {
  impl& m = *impl_;
  changes out;
  const pipeline_id id = m.next_pipeline++;
  live_pipeline& lp = m.pipelines[id];
  pipeline_record& p = lp.record;
  p.id = id;
  p.project = std::move(s.project);
  p.patch = std::move(s.patch);
  p.commit = std::move(s.commit);
  p.keep_going = s.keep_going;
  p.created_at = now;
  p.attachment = std::move(s.attachment);

  // Needs out of range or on the job itself fail the job; so do cycles, found by Kahn's
  // algorithm: what it cannot order is in a cycle or behind one.
  const std::size_t count = s.jobs.size();
  std::vector<std::string> invalid(count);
  std::vector<std::vector<std::size_t>> needs(count);
  p.jobs.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    job_plan& plan = s.jobs[i];
    job_record& j = p.jobs[i];
    j.id = m.next_job++;
    j.pipeline = id;
    j.name = std::move(plan.name);
    j.spec_name = std::move(plan.spec_name);
    j.image_build = plan.image_build;
    j.shard = plan.shard;
    j.shards = plan.shards;
    j.queued_at = now;
    for (std::size_t n : plan.needs) {
      if (n >= count || n == i) {
        if (invalid[i].empty()) {
          invalid[i] = n == i ? "needs itself"
                              : "needs job #" + std::to_string(n) +
                                    ", which is not in the pipeline (" + std::to_string(count) +
                                    " jobs)";
        }
      } else if (std::find(needs[i].begin(), needs[i].end(), n) == needs[i].end()) {
        needs[i].push_back(n);
      }
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t n : needs[i])
      p.jobs[i].needs.push_back(p.jobs[n].id);
  }
  lp.nodes.resize(count);
  for (std::size_t i = 0; i < count; ++i)
    lp.nodes[i].needs = std::move(needs[i]);
  m.index(lp);
  {
    std::vector<std::size_t> waiting(count), order;
    for (std::size_t i = 0; i < count; ++i) {
      waiting[i] = lp.nodes[i].needs.size();
      if (waiting[i] == 0) order.push_back(i);
    }
    for (std::size_t k = 0; k < order.size(); ++k) {
      for (std::size_t d : lp.nodes[order[k]].dependents) {
        if (--waiting[d] == 0) order.push_back(d);
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (waiting[i] > 0 && invalid[i].empty()) invalid[i] = "is in a needs cycle, or behind one";
    }
  }
  mark_dirty(out, id);
  for (std::size_t i = 0; i < count; ++i)
    lp.nodes[i].unmet = lp.nodes[i].needs.size();
  for (std::size_t i = 0; i < count; ++i) {
    if (!invalid[i].empty() && p.jobs[i].state == job_state::queued) {
      m.end_job(lp, i, job_state::failed, std::move(invalid[i]), now, false, out);
      m.after_end(lp, i, now, out);
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    if (p.jobs[i].state == job_state::queued && lp.nodes[i].unmet == 0) {
      m.add_ready(lp, i);
      out.work_ready = true;
    }
  }
  m.settle(lp, now, out);

  if (auto it = m.open_patches.find(impl::patch_key(p)); it != m.open_patches.end()) {
    // stop() edits the set: take the ids first.
    const std::vector<pipeline_id> older(it->second.begin(), it->second.end());
    const std::string reason = "superseded by pipeline " + std::to_string(id);
    for (pipeline_id o : older) {
      live_pipeline& other = m.pipelines.at(o);
      other.record.superseded_by = id;
      other.record.saved_runner_seconds = m.remaining_seconds(other, now);
      m.stop(other, pipeline_state::cancelled, reason, reason, now, out);
    }
  }
  if (p.state == pipeline_state::running) m.opened(p);
  return {id, std::move(out)};
}

std::optional<assignment> scheduler::claim(std::string_view runner, clock::time_point now,
                                           changes& out, const job_filter& accept) {
  impl& m = *impl_;
  auto best = m.ranks.begin();
  // Ready jobs this runner may not take (a filter's) are passed over, in order.
  while (best != m.ranks.end() && accept) {
    auto [fp, fi] = m.jobs.at(best->job);
    if (accept(fp->record.jobs[fi])) break;
    ++best;
  }
  if (best == m.ranks.end()) return std::nullopt;
  auto [lp, i] = m.jobs.at(best->job);
  job_record& j = lp->record.jobs[i];
  m.set_state(*lp, i, job_state::running);
  ++j.attempts;
  j.lease = m.next_lease++;
  j.runner = std::string(runner);
  j.started_at = now;
  mark_dirty(out, j.pipeline);
  return assignment{j.id, j.pipeline, j.lease};
}

result<changes> scheduler::finish(job_id job, std::uint64_t lease, job_outcome outcome,
                                  clock::time_point now) {
  impl& m = *impl_;
  const std::string what = "job " + std::to_string(job);
  auto it = m.jobs.find(job);
  if (it == m.jobs.end()) {
    return error(errc::conflict, what + " is unknown: the runner lost it (or it was forgotten)");
  }
  auto [lp, i] = it->second;
  job_record& j = lp->record.jobs[i];
  if (j.state != job_state::running) {
    return error(errc::conflict, what + " is " + std::string(to_string(j.state)) + ", not running" +
                                     (j.reason.empty() ? "" : " (" + j.reason + ")") +
                                     ": the runner lost it");
  }
  if (j.lease != lease) {
    return error(errc::conflict, what + ": lease " + std::to_string(lease) +
                                     " is not the job's lease (" + std::to_string(j.lease) +
                                     "): the job was handed out again, to " + j.runner);
  }
  changes out;
  std::string reason = std::move(outcome.reason);
  if (!outcome.passed && reason.empty()) {
    reason = "exited with code " + std::to_string(outcome.exit_code);
  }
  j.exit_code = outcome.exit_code;
  j.cpu_seconds = outcome.cpu_seconds;
  j.cache = outcome.cache;
  if (!outcome.image.empty()) j.image = std::move(outcome.image);
  m.end_job(*lp, i, outcome.passed ? job_state::passed : job_state::failed, std::move(reason), now,
            false, out);
  m.after_end(*lp, i, now, out);
  return out;
}

changes scheduler::cancel_pipeline(pipeline_id id, std::string reason, clock::time_point now) {
  changes out;
  live_pipeline* lp = impl_->find_pipeline(id);
  if (!lp || lp->record.state != pipeline_state::running) return out;
  impl_->stop(*lp, pipeline_state::cancelled, reason, reason, now, out);
  return out;
}

changes scheduler::cancel_job(job_id id, std::string reason, clock::time_point now) {
  changes out;
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end()) return out;
  auto [lp, i] = it->second;
  if (finished(lp->record.jobs[i].state)) return out;
  impl_->end_job(*lp, i, job_state::cancelled, std::move(reason), now, true, out);
  impl_->after_end(*lp, i, now, out);
  return out;
}

changes scheduler::runner_lost(std::string_view runner, std::string reason, clock::time_point now) {
  impl& m = *impl_;
  changes out;
  std::vector<job_id> lost;
  for (job_id id : m.running_jobs) {
    auto [lp, i] = m.jobs.at(id);
    if (lp->record.jobs[i].runner == runner) lost.push_back(id);
  }
  // Re-queues first and fails after, so that a failure's fail-fast finds the lost runner's
  // other jobs already off it (not in `kill`).
  std::vector<job_id> failed;
  for (job_id id : lost) {
    auto [lp, i] = m.jobs.at(id);
    job_record& j = lp->record.jobs[i];
    if (j.attempts < m.options.max_attempts) {
      m.set_state(*lp, i, job_state::queued);
      j.reason = "re-queued: " + reason;
      m.add_ready(*lp, i);
      out.work_ready = true;
      mark_dirty(out, lp->record.id);
    } else {
      m.end_job(*lp, i, job_state::failed,
                reason + last_attempt(j.attempts, m.options.max_attempts), now, false, out);
      failed.push_back(id);
    }
  }
  for (job_id id : failed) {
    auto [lp, i] = m.jobs.at(id);
    m.after_end(*lp, i, now, out);
  }
  return out;
}

changes scheduler::restore(std::vector<pipeline_record> records, clock::time_point now) {
  impl& m = *impl_;
  changes out;
  std::sort(records.begin(), records.end(),
            [](const pipeline_record& a, const pipeline_record& b) { return a.id < b.id; });
  std::vector<live_pipeline*> loaded;
  // Broken needs (pipeline_from_json refuses them; a caller may build records by hand).
  std::vector<std::pair<live_pipeline*, std::size_t>> broken;
  struct past_run {
    clock::time_point at;
    group* g;
    bool passed;
    double seconds;
  };
  std::vector<past_run> runs;
  for (pipeline_record& record : records) {
    if (record.id == 0 || m.pipelines.contains(record.id)) continue;
    bool duplicate = false;
    for (const job_record& j : record.jobs)
      duplicate = duplicate || j.id == 0 || m.jobs.contains(j.id);
    if (duplicate) continue;
    const pipeline_id id = record.id;
    m.next_pipeline = std::max(m.next_pipeline, id + 1);
    live_pipeline& lp = m.pipelines[id];
    lp.record = std::move(record);
    lp.nodes.resize(lp.record.jobs.size());
    std::unordered_map<job_id, std::size_t> at;
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      job_record& j = lp.record.jobs[i];
      j.pipeline = id;
      at.emplace(j.id, i);
      m.next_job = std::max(m.next_job, j.id + 1);
      m.next_lease = std::max(m.next_lease, j.lease + 1);
    }
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      for (job_id need : lp.record.jobs[i].needs) {
        auto it = at.find(need);
        if (it == at.end() || it->second == i) {
          broken.emplace_back(&lp, i);
        } else if (std::find(lp.nodes[i].needs.begin(), lp.nodes[i].needs.end(), it->second) ==
                   lp.nodes[i].needs.end()) {
          lp.nodes[i].needs.push_back(it->second);
        }
      }
    }
    m.index(lp);
    for (std::size_t i = 0; i < lp.record.jobs.size(); ++i) {
      const job_record& j = lp.record.jobs[i];
      if ((j.state == job_state::passed || j.state == job_state::failed) && j.attempts > 0 &&
          j.finished_at >= j.started_at) {
        runs.push_back({j.finished_at, lp.nodes[i].g, j.state == job_state::passed,
                        seconds_between(j.started_at, j.finished_at)});
      }
    }
    if (lp.record.state == pipeline_state::running) m.opened(lp.record);
    loaded.push_back(&lp);
  }
  std::stable_sort(runs.begin(), runs.end(),
                   [](const past_run& a, const past_run& b) { return a.at < b.at; });
  for (const past_run& r : runs)
    m.record_run(*r.g, r.passed, r.seconds);

  for (live_pipeline* lp : loaded) {
    pipeline_record& p = lp->record;
    if (p.state != pipeline_state::running) {
      // A record persisted whole cannot have this; end what a hand-made one left open.
      for (std::size_t i = 0; i < p.jobs.size(); ++i) {
        if (!finished(p.jobs[i].state)) {
          m.end_job(*lp, i, job_state::cancelled, "its pipeline had ended when pantry restarted",
                    now, false, out);
        }
      }
      continue;
    }
    for (std::size_t i = 0; i < p.jobs.size(); ++i) {
      job_record& j = p.jobs[i];
      if (j.state != job_state::running) continue;
      if (j.attempts < m.options.max_attempts) {
        m.set_state(*lp, i, job_state::queued);
        j.reason = std::string(kRestartedReason);
        mark_dirty(out, p.id);
      } else {
        m.end_job(
            *lp, i, job_state::failed,
            "was running when pantry stopped" + last_attempt(j.attempts, m.options.max_attempts),
            now, false, out);
      }
    }
    for (std::size_t i = 0; i < p.jobs.size(); ++i) {
      for (std::size_t n : lp->nodes[i].needs) {
        if (p.jobs[n].state != job_state::passed) ++lp->nodes[i].unmet;
      }
    }
  }
  for (auto [lp, i] : broken) {
    if (lp->record.state == pipeline_state::running && !finished(lp->record.jobs[i].state)) {
      m.end_job(*lp, i, job_state::failed, "needs a job that is not in its pipeline", now, false,
                out);
    }
  }
  for (live_pipeline* lp : loaded) {
    pipeline_record& p = lp->record;
    for (std::size_t i = 0; i < p.jobs.size() && p.state == pipeline_state::running; ++i) {
      const job_state s = p.jobs[i].state;
      if (finished(s) && s != job_state::passed) m.after_end(*lp, i, now, out);
    }
    for (std::size_t i = 0; i < p.jobs.size(); ++i) {
      if (p.jobs[i].state == job_state::queued && lp->nodes[i].unmet == 0) {
        m.add_ready(*lp, i);
        out.work_ready = true;
      }
    }
    m.settle(*lp, now, out);
  }
  return out;
}

bool scheduler::holds(job_id job, std::uint64_t lease) const noexcept {
  auto it = impl_->jobs.find(job);
  if (it == impl_->jobs.end()) return false;
  const job_record& j = it->second.first->record.jobs[it->second.second];
  return j.state == job_state::running && j.lease == lease;
}

const pipeline_record* scheduler::pipeline(pipeline_id id) const {
  const live_pipeline* lp = impl_->find_pipeline(id);
  return lp ? &lp->record : nullptr;
}

const job_record* scheduler::job(job_id id) const {
  auto it = impl_->jobs.find(id);
  if (it == impl_->jobs.end()) return nullptr;
  return &it->second.first->record.jobs[it->second.second];
}

std::vector<const pipeline_record*> scheduler::pipelines(std::string_view project,
                                                         std::size_t limit) const {
  std::vector<const pipeline_record*> out;
  for (auto it = impl_->pipelines.rbegin(); it != impl_->pipelines.rend() && out.size() < limit;
       ++it) {
    if (project.empty() || it->second.record.project == project) out.push_back(&it->second.record);
  }
  return out;
}

std::size_t scheduler::queued() const noexcept {
  return impl_->queued_count;
}
std::size_t scheduler::ready() const noexcept {
  return impl_->ready_count;
}
std::size_t scheduler::running() const noexcept {
  return impl_->running_jobs.size();
}

std::optional<double> scheduler::usual_runtime(std::string_view project, std::string_view spec_name,
                                               bool image_build) const {
  auto it = impl_->groups.find(group_key(project, spec_name, image_build));
  if (it == impl_->groups.end()) return std::nullopt;
  return it->second.usual_runtime();
}

std::vector<pipeline_id> scheduler::forget_finished(std::size_t keep) {
  impl& m = *impl_;
  std::vector<pipeline_id> forgotten;
  std::size_t kept = 0;
  for (auto it = m.pipelines.rbegin(); it != m.pipelines.rend(); ++it) {
    if (it->second.record.state == pipeline_state::running) continue;
    if (kept < keep) {
      ++kept;
      continue;
    }
    forgotten.push_back(it->first);
  }
  for (pipeline_id id : forgotten) {
    auto it = m.pipelines.find(id);
    for (const job_record& j : it->second.record.jobs)
      m.jobs.erase(j.id);
    m.pipelines.erase(it);
  }
  return forgotten;
}

}  // namespace pantry::orchestrator::coordinator
