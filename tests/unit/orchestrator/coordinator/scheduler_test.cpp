#include "pantry/orchestrator/coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <deque>
#include <ostream>

namespace pantry::orchestrator::coordinator {

// gtest prints states by name in failing assertions.
void PrintTo(job_state s, std::ostream* os) {
  *os << to_string(s);
}
void PrintTo(pipeline_state s, std::ostream* os) {
  *os << to_string(s);
}

namespace {

namespace json = boost::json;

// A fixed, millisecond-aligned origin: the records' JSON keeps milliseconds.
clock::time_point at(double seconds) {
  return clock::time_point(std::chrono::milliseconds(1'700'000'000'000)) +
         std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
}

job_plan plan(std::string name, std::vector<std::size_t> needs = {}) {
  job_plan p;
  p.spec_name = name;
  p.name = std::move(name);
  p.needs = std::move(needs);
  return p;
}

job_plan shard(std::string spec_name, int n, int of, std::vector<std::size_t> needs = {}) {
  job_plan p = plan(spec_name, std::move(needs));
  p.name = spec_name + " " + std::to_string(n) + "/" + std::to_string(of);
  p.shard = n;
  p.shards = of;
  return p;
}

submission pipeline_of(std::vector<job_plan> jobs, std::string project = "shop",
                       std::string patch = "", bool keep_going = false) {
  submission s;
  s.project = std::move(project);
  s.patch = std::move(patch);
  s.commit = "0123456789abcdef0123456789abcdef01234567";
  s.keep_going = keep_going;
  s.jobs = std::move(jobs);
  return s;
}

job_outcome passed(int exit_code = 0) {
  job_outcome o;
  o.passed = true;
  o.exit_code = exit_code;
  return o;
}

job_outcome failed(int exit_code = 1) {
  job_outcome o;
  o.exit_code = exit_code;
  return o;
}

template <class T>
bool contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The names of the jobs a claim loop would hand out now, in order, without finishing any.
std::vector<std::string> claim_all(scheduler& s, std::string_view runner, clock::time_point now) {
  std::vector<std::string> names;
  changes out;
  while (auto a = s.claim(runner, now, out))
    names.push_back(s.job(a->job)->name);
  return names;
}

// The job of `p` named `name`.
const job_record& job_named(const scheduler& s, pipeline_id p, std::string_view name) {
  for (const job_record& j : s.pipeline(p)->jobs) {
    if (j.name == name) return j;
  }
  ADD_FAILURE() << "pipeline " << p << " has no job " << name;
  static const job_record none;
  return none;
}

// Runs a one-job pipeline of `project` through the scheduler to build its history.
void run_once(scheduler& s, std::string project, std::string spec_name, bool ok, double seconds,
              double start, bool image_build = false) {
  job_plan p = plan(std::move(spec_name));
  p.image_build = image_build;
  s.submit(pipeline_of({p}, std::move(project)), at(start));
  changes out;
  auto a = s.claim("history", at(start), out);
  ASSERT_TRUE(a.has_value());
  auto r = s.finish(a->job, a->lease, ok ? passed() : failed(), at(start + seconds));
  ASSERT_TRUE(r.has_value()) << r.error().message;
}

TEST(SchedulerTest, StatesAreSpelledAsTheApiSpellsThem) {
  EXPECT_EQ(to_string(job_state::skipped), "skipped");
  EXPECT_EQ(to_string(pipeline_state::cancelled), "cancelled");
  for (auto s : {job_state::queued, job_state::running, job_state::passed, job_state::failed,
                 job_state::cancelled, job_state::skipped}) {
    EXPECT_EQ(parse_job_state(to_string(s)), s) << to_string(s);
  }
  EXPECT_EQ(parse_job_state("Passed"), std::nullopt);
  EXPECT_EQ(parse_pipeline_state("passed"), pipeline_state::passed);
  EXPECT_FALSE(finished(job_state::queued));
  EXPECT_FALSE(finished(job_state::running));
  EXPECT_TRUE(finished(job_state::skipped));
}

TEST(SchedulerTest, JobsRunInDagOrder) {
  scheduler s;
  auto [id, submitted] =
      s.submit(pipeline_of({plan("lint"), plan("test", {0}), plan("package", {0, 1})}), at(0));
  EXPECT_EQ(id, 1u);
  EXPECT_TRUE(submitted.work_ready);
  EXPECT_EQ(submitted.dirty, std::vector<pipeline_id>{id});
  EXPECT_EQ(s.queued(), 3u);
  EXPECT_EQ(s.ready(), 1u);
  const job_record& lint = job_named(s, id, "lint");
  EXPECT_EQ(job_named(s, id, "package").needs, (std::vector<job_id>{lint.id, lint.id + 1}));

  changes out;
  auto a = s.claim("r1", at(1), out);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(s.job(a->job)->name, "lint");
  EXPECT_EQ(a->pipeline, id);
  EXPECT_EQ(s.job(a->job)->state, job_state::running);
  EXPECT_EQ(s.job(a->job)->runner, "r1");
  EXPECT_EQ(s.job(a->job)->attempts, 1);
  EXPECT_EQ(s.job(a->job)->started_at, at(1));
  EXPECT_TRUE(contains(out.dirty, id));
  EXPECT_FALSE(s.claim("r2", at(1), out).has_value()) << "test needs lint, which is running";
  EXPECT_EQ(s.running(), 1u);

  job_outcome ok = passed();
  ok.cpu_seconds = 1.5;
  ok.image = "localhost/python@sha256:" + std::string(64, 'b');
  auto r = s.finish(a->job, a->lease, ok, at(2));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(s.job(a->job)->image, ok.image);
  EXPECT_EQ(s.job(a->job)->cpu_seconds, 1.5);
  EXPECT_TRUE(r->work_ready);
  EXPECT_EQ(r->ended, std::vector<job_id>{a->job});
  EXPECT_TRUE(r->pipelines_ended.empty());
  EXPECT_EQ(claim_all(s, "r1", at(2)), std::vector<std::string>{"test"});

  const job_record& test = job_named(s, id, "test");
  r = s.finish(test.id, test.lease, passed(), at(3));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const job_record& package = job_named(s, id, "package");
  EXPECT_EQ(claim_all(s, "r1", at(3)), std::vector<std::string>{"package"});
  r = s.finish(package.id, package.lease, passed(), at(4));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->pipelines_ended, std::vector<pipeline_id>{id});
  EXPECT_FALSE(r->work_ready);
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::passed);
  EXPECT_EQ(s.pipeline(id)->finished_at, at(4));
  EXPECT_EQ(s.pipeline(id)->reason, "");
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.running(), 0u);
  EXPECT_EQ(package.exit_code, 0);
  EXPECT_EQ(package.finished_at, at(4));
}

TEST(SchedulerTest, AJobThatNeedsAShardedJobNeedsAllItsShards) {
  scheduler s;
  auto [id, submitted] = s.submit(
      pipeline_of({shard("test", 1, 2), shard("test", 2, 2), plan("package", {0, 1})}), at(0));
  EXPECT_EQ(claim_all(s, "r1", at(0)), (std::vector<std::string>{"test 1/2", "test 2/2"}));
  const job_record& first = job_named(s, id, "test 1/2");
  EXPECT_EQ(first.spec_name, "test");
  EXPECT_EQ(first.shard, 1);
  EXPECT_EQ(first.shards, 2);
  ASSERT_TRUE(s.finish(first.id, first.lease, passed(), at(1)).has_value());
  EXPECT_TRUE(claim_all(s, "r1", at(1)).empty()) << "package still needs test 2/2";
  const job_record& second = job_named(s, id, "test 2/2");
  auto r = s.finish(second.id, second.lease, passed(), at(2));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->work_ready);
  EXPECT_EQ(claim_all(s, "r1", at(2)), std::vector<std::string>{"package"});
}

TEST(SchedulerTest, AFailureCancelsThePipelinesOtherJobsAndKillsTheRunningOnes) {
  scheduler s;
  auto [id, submitted] = s.submit(
      pipeline_of({plan("lint"), plan("test"), plan("docs"), plan("package", {0, 1})}), at(0));
  changes out;
  auto lint = s.claim("r1", at(1), out);
  auto test = s.claim("r2", at(1), out);
  ASSERT_TRUE(lint && test);
  ASSERT_EQ(s.job(test->job)->name, "test");

  auto r = s.finish(lint->job, lint->lease, failed(2), at(2));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->kill, (std::vector<std::pair<job_id, std::string>>{{test->job, "r2"}}));
  EXPECT_EQ(r->ended.size(), 4u);
  EXPECT_EQ(r->pipelines_ended, std::vector<pipeline_id>{id});
  EXPECT_FALSE(r->work_ready);
  EXPECT_EQ(s.job(lint->job)->state, job_state::failed);
  EXPECT_EQ(s.job(lint->job)->reason, "exited with code 2");
  EXPECT_EQ(s.job(lint->job)->exit_code, 2);
  for (const char* name : {"test", "docs", "package"}) {
    EXPECT_EQ(job_named(s, id, name).state, job_state::cancelled) << name;
    EXPECT_EQ(job_named(s, id, name).reason, "cancelled: lint failed") << name;
  }
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::failed);
  EXPECT_EQ(s.pipeline(id)->reason, "lint failed");
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.ready(), 0u);
  EXPECT_EQ(s.running(), 0u);
  EXPECT_FALSE(s.claim("r1", at(2), out).has_value());

  // The killed job's runner reports later: it had lost the job.
  auto late = s.finish(test->job, test->lease, passed(), at(3));
  ASSERT_FALSE(late.has_value());
  EXPECT_TRUE(late.error().is(errc::conflict)) << late.error().message;
  EXPECT_EQ(s.job(test->job)->state, job_state::cancelled);
}

TEST(SchedulerTest, KeepGoingSkipsOnlyTheJobsThatNeedTheFailedOne) {
  scheduler s;
  auto [id, submitted] = s.submit(pipeline_of({plan("lint"), plan("test"), plan("package", {0}),
                                               plan("upload", {2}), plan("docs", {1})},
                                              "shop", "", /*keep_going=*/true),
                                  at(0));
  EXPECT_EQ(claim_all(s, "r1", at(0)), (std::vector<std::string>{"lint", "test"}));
  const job_record& lint = job_named(s, id, "lint");
  job_outcome o = failed();
  o.reason = "flake8 found 3 problems";
  auto r = s.finish(lint.id, lint.lease, o, at(1));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->kill.empty());
  EXPECT_EQ(lint.reason, "flake8 found 3 problems");
  EXPECT_EQ(job_named(s, id, "package").state, job_state::skipped);
  EXPECT_EQ(job_named(s, id, "package").reason, "needs lint, which failed");
  EXPECT_EQ(job_named(s, id, "upload").state, job_state::skipped);
  EXPECT_EQ(job_named(s, id, "upload").reason, "needs package, which was skipped");
  EXPECT_EQ(job_named(s, id, "test").state, job_state::running);
  EXPECT_EQ(job_named(s, id, "docs").state, job_state::queued);
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::running);

  const job_record& test = job_named(s, id, "test");
  ASSERT_TRUE(s.finish(test.id, test.lease, passed(), at(2)).has_value());
  EXPECT_EQ(claim_all(s, "r1", at(2)), std::vector<std::string>{"docs"});
  const job_record& docs = job_named(s, id, "docs");
  r = s.finish(docs.id, docs.lease, passed(), at(3));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->pipelines_ended, std::vector<pipeline_id>{id});
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::failed);
  EXPECT_EQ(s.pipeline(id)->reason, "lint failed");
}

TEST(SchedulerTest, SupersedeCancelsThePatchsOlderPipelinesAndRecordsTheSavedSeconds) {
  scheduler s;
  // Usual runtimes: lint 10 s, test 30 s.
  run_once(s, "shop", "lint", true, 10, 0);
  run_once(s, "shop", "test", true, 30, 0);
  EXPECT_EQ(s.usual_runtime("shop", "lint"), 10.0);

  auto [first, a] = s.submit(pipeline_of({plan("lint"), plan("test", {0})}, "shop", "7"), at(100));
  auto [other_project, b] =
      s.submit(pipeline_of({plan("lint"), plan("test", {0})}, "cart", "7"), at(100));
  auto [no_patch, c] = s.submit(pipeline_of({plan("lint")}, "shop", ""), at(100));
  changes out;
  auto lint = s.claim("r1", at(100), out);
  ASSERT_TRUE(lint.has_value());
  ASSERT_EQ(s.job(lint->job)->pipeline, first);

  auto [second, r] = s.submit(pipeline_of({plan("lint"), plan("test", {0})}, "shop", "7"), at(104));
  EXPECT_EQ(r.kill, (std::vector<std::pair<job_id, std::string>>{{lint->job, "r1"}}));
  EXPECT_EQ(r.pipelines_ended, std::vector<pipeline_id>{first});
  EXPECT_TRUE(contains(r.dirty, first) && contains(r.dirty, second));
  EXPECT_TRUE(r.work_ready);
  const pipeline_record& old = *s.pipeline(first);
  EXPECT_EQ(old.state, pipeline_state::cancelled);
  EXPECT_EQ(old.reason, "superseded by pipeline " + std::to_string(second));
  EXPECT_EQ(old.superseded_by, second);
  // lint ran 4 of its usual 10 s; test had not started (30 s).
  EXPECT_DOUBLE_EQ(old.saved_runner_seconds, 6.0 + 30.0);
  for (const job_record& j : old.jobs) {
    EXPECT_EQ(j.state, job_state::cancelled) << j.name;
    EXPECT_EQ(j.reason, "superseded by pipeline " + std::to_string(second)) << j.name;
  }
  EXPECT_EQ(s.pipeline(other_project)->state, pipeline_state::running);
  EXPECT_EQ(s.pipeline(no_patch)->state, pipeline_state::running);
  EXPECT_EQ(s.pipeline(second)->state, pipeline_state::running);

  // A pipeline without a patch supersedes nothing.
  auto [third, d] = s.submit(pipeline_of({plan("lint")}, "shop", ""), at(105));
  EXPECT_TRUE(d.pipelines_ended.empty());
  EXPECT_EQ(s.pipeline(no_patch)->state, pipeline_state::running);
  EXPECT_EQ(s.pipeline(third)->state, pipeline_state::running);
}

TEST(SchedulerTest, AReportUnderAStaleLeaseIsRefused) {
  scheduler s;
  auto [id, submitted] = s.submit(pipeline_of({plan("test")}), at(0));
  changes out;
  auto first = s.claim("r1", at(1), out);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(s.holds(first->job, first->lease));
  EXPECT_FALSE(s.holds(first->job, first->lease + 1));

  changes lost = s.runner_lost("r1", "runner r1 silent for 30s", at(2));
  EXPECT_FALSE(s.holds(first->job, first->lease));
  auto second = s.claim("r2", at(3), out);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->job, first->job);
  EXPECT_NE(second->lease, first->lease);
  EXPECT_TRUE(s.holds(second->job, second->lease));

  auto stale = s.finish(first->job, first->lease, passed(), at(4));
  ASSERT_FALSE(stale.has_value());
  EXPECT_TRUE(stale.error().is(errc::conflict)) << stale.error().message;
  EXPECT_NE(stale.error().message.find("lease " + std::to_string(first->lease)), std::string::npos)
      << stale.error().message;
  EXPECT_EQ(s.job(first->job)->state, job_state::running) << "the refused report changed nothing";

  auto unknown = s.finish(999, 1, passed(), at(4));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_TRUE(unknown.error().is(errc::conflict)) << unknown.error().message;

  auto ok = s.finish(second->job, second->lease, passed(), at(5));
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  auto again = s.finish(second->job, second->lease, passed(), at(6));
  ASSERT_FALSE(again.has_value());
  EXPECT_NE(again.error().message.find("is passed, not running"), std::string::npos)
      << again.error().message;
}

TEST(SchedulerTest, ALostRunnersJobsAreRequeuedOnceThenFailed) {
  scheduler s;
  auto [id, submitted] = s.submit(pipeline_of({plan("lint"), plan("test")}), at(0));
  changes out;
  auto lint = s.claim("r1", at(1), out);
  auto test = s.claim("r2", at(1), out);
  ASSERT_TRUE(lint && test);

  changes r = s.runner_lost("r1", "runner r1 silent for 30s", at(2));
  EXPECT_TRUE(r.work_ready);
  EXPECT_TRUE(r.kill.empty());
  EXPECT_TRUE(r.ended.empty());
  EXPECT_EQ(r.dirty, std::vector<pipeline_id>{id});
  EXPECT_EQ(s.job(lint->job)->state, job_state::queued);
  EXPECT_EQ(s.job(lint->job)->reason, "re-queued: runner r1 silent for 30s");
  EXPECT_EQ(s.job(test->job)->state, job_state::running) << "r2's job is not r1's";
  EXPECT_EQ(s.ready(), 1u);

  auto again = s.claim("r3", at(3), out);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->job, lint->job);
  EXPECT_EQ(s.job(lint->job)->attempts, 2);
  r = s.runner_lost("r3", "runner r3 silent for 30s", at(4));
  EXPECT_EQ(s.job(lint->job)->state, job_state::failed);
  EXPECT_EQ(s.job(lint->job)->reason, "runner r3 silent for 30s, on its last attempt (2 of 2)");
  EXPECT_EQ(r.kill, (std::vector<std::pair<job_id, std::string>>{{test->job, "r2"}}))
      << "the failure fails the pipeline fast";
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::failed);
  EXPECT_TRUE(s.runner_lost("r9", "gone", at(5)).dirty.empty()) << "a runner holding nothing";
}

TEST(SchedulerTest, ALostRunnersOtherJobsAreNotKilledOnIt) {
  scheduler s({.max_attempts = 1});
  auto [id, submitted] = s.submit(pipeline_of({plan("lint"), plan("test")}), at(0));
  EXPECT_EQ(claim_all(s, "r1", at(0)).size(), 2u);
  changes r = s.runner_lost("r1", "gone", at(1));
  EXPECT_TRUE(r.kill.empty()) << r.kill.size() << " kills sent to a lost runner";
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::failed);
  EXPECT_EQ(s.running(), 0u);
}

TEST(SchedulerTest, RestoreRequeuesRunningJobsOnceAndKeepsQueuedOnes) {
  std::vector<pipeline_record> saved;
  job_id lint = 0, test = 0, package = 0;
  std::uint64_t lease = 0;
  {
    scheduler s;
    auto [id, submitted] =
        s.submit(pipeline_of({plan("lint"), plan("test"), plan("package", {0, 1})}), at(0));
    changes out;
    auto a = s.claim("builtin", at(1), out);
    auto b = s.claim("builtin", at(1), out);
    ASSERT_TRUE(a && b);
    lint = a->job;
    test = b->job;
    lease = b->lease;
    package = job_named(s, id, "package").id;
    // Through the store's form, as after a real restart.
    auto back = pipeline_from_json(json::parse(json::serialize(to_json(*s.pipeline(id)))));
    ASSERT_TRUE(back.has_value()) << back.error().message;
    saved.push_back(std::move(*back));
  }
  scheduler s;
  changes r = s.restore(saved, at(10));
  EXPECT_TRUE(r.work_ready);
  EXPECT_EQ(r.dirty, std::vector<pipeline_id>{1});
  EXPECT_TRUE(r.ended.empty());
  for (job_id j : {lint, test}) {
    EXPECT_EQ(s.job(j)->state, job_state::queued) << s.job(j)->name;
    EXPECT_EQ(s.job(j)->reason, "re-queued: pantry restarted while it ran") << s.job(j)->name;
    EXPECT_EQ(s.job(j)->attempts, 1) << s.job(j)->name;
  }
  EXPECT_EQ(s.job(package)->state, job_state::queued);
  EXPECT_EQ(s.queued(), 3u);
  EXPECT_EQ(s.ready(), 2u);
  EXPECT_EQ(s.running(), 0u);

  // Ids and leases continue after the largest restored.
  changes out;
  auto a = s.claim("builtin", at(11), out);
  ASSERT_TRUE(a.has_value());
  EXPECT_GT(a->lease, lease);
  auto [next, c] = s.submit(pipeline_of({plan("lint")}), at(11));
  EXPECT_EQ(next, 2u);
  EXPECT_GT(s.pipeline(next)->jobs[0].id, package);

  // Running a second time when pantry stops: failed, and the pipeline with it.
  std::vector<pipeline_record> twice{*s.pipeline(1)};
  scheduler t;
  r = t.restore(twice, at(20));
  EXPECT_EQ(t.job(a->job)->state, job_state::failed);
  EXPECT_EQ(t.job(a->job)->reason, "was running when pantry stopped, on its last attempt (2 of 2)");
  EXPECT_TRUE(contains(r.ended, a->job));
  EXPECT_EQ(t.pipeline(1)->state, pipeline_state::failed);
  EXPECT_EQ(t.pipeline(1)->reason, t.job(a->job)->name + " failed");
  EXPECT_EQ(r.pipelines_ended, std::vector<pipeline_id>{1});
  EXPECT_TRUE(r.kill.empty());
  EXPECT_EQ(t.queued(), 0u);
}

TEST(SchedulerTest, RestoreMakesReadyTheJobsWhoseNeedsPassedAndSkipsBehindFailures) {
  pipeline_record p;
  p.id = 5;
  p.project = "shop";
  p.keep_going = true;
  auto add = [&](job_id id, std::string name, job_state state, std::vector<job_id> needs) {
    job_record j;
    j.id = id;
    j.pipeline = 5;
    j.name = j.spec_name = std::move(name);
    j.state = state;
    j.needs = std::move(needs);
    if (finished(state)) {
      j.attempts = 1;
      j.started_at = at(0);
      j.finished_at = at(8);
    }
    p.jobs.push_back(j);
  };
  add(40, "lint", job_state::passed, {});
  add(41, "test", job_state::failed, {});
  add(42, "package", job_state::queued, {40});
  add(43, "upload", job_state::queued, {41});
  scheduler s;
  changes r = s.restore({p}, at(10));
  EXPECT_EQ(s.job(42)->state, job_state::queued);
  EXPECT_EQ(s.ready(), 1u);
  EXPECT_TRUE(r.work_ready);
  EXPECT_EQ(s.job(43)->state, job_state::skipped);
  EXPECT_EQ(s.job(43)->reason, "needs test, which failed");
  EXPECT_EQ(s.usual_runtime("shop", "lint"), 8.0) << "the history is fed from finished jobs";
  changes out;
  auto a = s.claim("r", at(11), out);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->job, 42u);
  EXPECT_EQ(a->pipeline, 5u);
  auto f = s.finish(a->job, a->lease, passed(), at(12));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(s.pipeline(5)->state, pipeline_state::failed);
  EXPECT_EQ(s.pipeline(5)->reason, "test failed");
  // A pipeline id that is already known is ignored.
  EXPECT_TRUE(s.restore({p}, at(13)).dirty.empty());
}

TEST(SchedulerTest, ReadyJobsThatFailOftenPerSecondStartFirstAndImageBuildsBeforeAll) {
  scheduler s;
  // slow: failed 2 of 2, 100 s -> 0.01/s; flaky: failed 1 of 2, 2 s -> 0.25/s;
  // solid: never failed -> 0; fresh: no history -> 0.
  run_once(s, "shop", "slow", false, 100, 0);
  run_once(s, "shop", "slow", false, 100, 0);
  run_once(s, "shop", "flaky", false, 2, 0);
  run_once(s, "shop", "flaky", true, 2, 0);
  run_once(s, "shop", "solid", true, 1, 0);
  // Another project's history does not count for shop.
  run_once(s, "cart", "solid", false, 1, 0);
  ASSERT_EQ(s.usual_runtime("shop", "flaky"), 2.0) << "the median of passed runs";
  ASSERT_EQ(s.usual_runtime("shop", "slow"), 100.0) << "all runs when none passed";

  job_plan image = plan("image");
  image.image_build = true;
  auto [id, r] = s.submit(
      pipeline_of({plan("fresh"), plan("solid"), plan("slow"), plan("flaky"), image}), at(1000));
  EXPECT_EQ(claim_all(s, "r1", at(1000)),
            (std::vector<std::string>{"image", "flaky", "slow", "fresh", "solid"}));
}

TEST(SchedulerTest, EqualPrioritiesGoToTheOlderPipelineThenTheOlderJob) {
  scheduler s;
  auto [first, a] = s.submit(pipeline_of({plan("b"), plan("a")}, "shop"), at(0));
  auto [second, b] = s.submit(pipeline_of({plan("a"), plan("b")}, "cart"), at(0));
  changes out;
  std::vector<std::pair<pipeline_id, std::string>> order;
  while (auto c = s.claim("r", at(1), out))
    order.emplace_back(c->pipeline, s.job(c->job)->name);
  EXPECT_EQ(order, (std::vector<std::pair<pipeline_id, std::string>>{
                       {first, "b"}, {first, "a"}, {second, "a"}, {second, "b"}}));
}

TEST(SchedulerTest, AFinishedRunReRanksTheReadyJobsOfItsName) {
  scheduler s;
  auto [first, a] = s.submit(pipeline_of({plan("lint")}), at(0));
  auto [second, b] = s.submit(pipeline_of({plan("test"), plan("lint")}), at(0));
  changes out;
  auto lint = s.claim("r", at(0), out);
  ASSERT_TRUE(lint.has_value());
  ASSERT_EQ(s.job(lint->job)->pipeline, first);
  // Until lint fails, the second pipeline's test comes first (older job); after, lint does.
  ASSERT_TRUE(s.finish(lint->job, lint->lease, failed(), at(5)).has_value());
  EXPECT_EQ(claim_all(s, "r", at(5)), (std::vector<std::string>{"lint", "test"}));
}

TEST(SchedulerTest, CancellingAJobSkipsTheJobsThatNeedIt) {
  scheduler s;
  auto [id, submitted] =
      s.submit(pipeline_of({plan("lint"), plan("test"), plan("package", {1})}), at(0));
  changes out;
  auto lint = s.claim("r1", at(0), out);
  auto test = s.claim("r2", at(0), out);
  ASSERT_TRUE(lint && test);
  changes r = s.cancel_job(test->job, "cancelled by dev", at(1));
  EXPECT_EQ(r.kill, (std::vector<std::pair<job_id, std::string>>{{test->job, "r2"}}));
  EXPECT_EQ(s.job(test->job)->reason, "cancelled by dev");
  EXPECT_EQ(job_named(s, id, "package").state, job_state::skipped);
  EXPECT_EQ(job_named(s, id, "package").reason, "needs test, which was cancelled");
  EXPECT_EQ(s.job(lint->job)->state, job_state::running) << "not a failure: nothing else stops";
  EXPECT_FALSE(s.holds(test->job, test->lease));
  EXPECT_TRUE(s.cancel_job(test->job, "again", at(2)).dirty.empty());
  EXPECT_TRUE(s.cancel_job(12345, "unknown", at(2)).dirty.empty());

  ASSERT_TRUE(s.finish(lint->job, lint->lease, passed(), at(3)).has_value());
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::cancelled);
  EXPECT_EQ(s.pipeline(id)->reason, "test was cancelled: cancelled by dev");
}

TEST(SchedulerTest, CancellingAPipelineKillsItsRunningJobs) {
  scheduler s;
  auto [id, submitted] = s.submit(pipeline_of({plan("lint"), plan("test", {0})}), at(0));
  changes out;
  auto lint = s.claim("r1", at(0), out);
  ASSERT_TRUE(lint.has_value());
  changes r = s.cancel_pipeline(id, "cancelled by dev", at(1));
  EXPECT_EQ(r.kill, (std::vector<std::pair<job_id, std::string>>{{lint->job, "r1"}}));
  EXPECT_EQ(r.ended.size(), 2u);
  EXPECT_EQ(r.pipelines_ended, std::vector<pipeline_id>{id});
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::cancelled);
  EXPECT_EQ(s.pipeline(id)->reason, "cancelled by dev");
  EXPECT_EQ(s.pipeline(id)->superseded_by, 0u);
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.running(), 0u);
  EXPECT_TRUE(s.cancel_pipeline(id, "again", at(2)).dirty.empty()) << "already ended";
  EXPECT_TRUE(s.cancel_pipeline(77, "unknown", at(2)).dirty.empty());
}

TEST(SchedulerTest, NeedsOutOfRangeOrInACycleFailTheJobNamingTheProblem) {
  scheduler s;
  auto [id, r] = s.submit(
      pipeline_of({plan("a", {1}), plan("b", {0}), plan("c", {7}), plan("d", {3}), plan("e")},
                  "shop", "", /*keep_going=*/true),
      at(0));
  EXPECT_EQ(job_named(s, id, "a").state, job_state::failed);
  EXPECT_EQ(job_named(s, id, "a").reason, "is in a needs cycle, or behind one");
  EXPECT_EQ(job_named(s, id, "c").reason, "needs job #7, which is not in the pipeline (5 jobs)");
  EXPECT_EQ(job_named(s, id, "d").reason, "needs itself");
  EXPECT_EQ(job_named(s, id, "e").state, job_state::queued);
  EXPECT_EQ(claim_all(s, "r", at(0)), std::vector<std::string>{"e"});
}

TEST(SchedulerTest, AnEmptyPipelinePassesAtOnce) {
  scheduler s;
  auto [id, r] = s.submit(pipeline_of({}), at(0));
  EXPECT_EQ(r.pipelines_ended, std::vector<pipeline_id>{id});
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::passed);
  EXPECT_FALSE(r.work_ready);
}

TEST(SchedulerTest, PipelinesAreListedNewestFirstAndFinishedOnesForgottenBeyondTheNewest) {
  scheduler s;
  for (int i = 0; i < 4; ++i)
    s.submit(pipeline_of({plan("lint")}, i % 2 ? "cart" : "shop"), at(i));
  changes out;
  // Pipelines 1, 2 and 3 end; 4 keeps running.
  for (int i = 0; i < 3; ++i) {
    auto a = s.claim("r", at(5), out);
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(s.finish(a->job, a->lease, passed(), at(6)).has_value());
  }
  std::vector<pipeline_id> ids;
  for (const pipeline_record* p : s.pipelines("", 10))
    ids.push_back(p->id);
  EXPECT_EQ(ids, (std::vector<pipeline_id>{4, 3, 2, 1}));
  ids.clear();
  for (const pipeline_record* p : s.pipelines("shop", 1))
    ids.push_back(p->id);
  EXPECT_EQ(ids, std::vector<pipeline_id>{3});

  const job_id first_job = s.pipeline(1)->jobs[0].id;
  EXPECT_EQ(s.forget_finished(1), (std::vector<pipeline_id>{2, 1}));
  EXPECT_EQ(s.pipeline(1), nullptr);
  EXPECT_EQ(s.job(first_job), nullptr);
  ASSERT_NE(s.pipeline(3), nullptr);
  ASSERT_NE(s.pipeline(4), nullptr) << "running pipelines are never forgotten";
  EXPECT_EQ(s.usual_runtime("shop", "lint"), 1.0) << "the history stays";
  EXPECT_TRUE(s.forget_finished(1).empty());
}

TEST(SchedulerTest, RecordsRoundTripThroughJson) {
  pipeline_record p;
  p.id = 9;
  p.project = "shop";
  p.patch = "7";
  p.commit = "0123456789abcdef0123456789abcdef01234567";
  p.keep_going = true;
  p.state = pipeline_state::cancelled;
  p.reason = "superseded by pipeline 10";
  p.superseded_by = 10;
  p.saved_runner_seconds = 36.5;
  p.created_at = at(1);
  p.finished_at = at(2.5);
  p.attachment["spec"] = json::object{{"jobs", json::array{"lint"}}};
  job_record j;
  j.id = 30;
  j.pipeline = 9;
  j.name = "test 1/2";
  j.spec_name = "test";
  j.shard = 1;
  j.shards = 2;
  j.state = job_state::cancelled;
  j.reason = "superseded by pipeline 10";
  j.attempts = 2;
  j.runner = "builtin";
  j.lease = 77;
  j.queued_at = at(1);
  j.started_at = at(1.25);
  j.finished_at = at(2.5);
  j.exit_code = 137;
  j.cpu_seconds = 0.75;
  j.image = "localhost/python@sha256:" + std::string(64, 'a');
  j.cache.pypi.cache = {3, 4096};
  j.cache.pypi.upstream = {1, 1000};
  j.cache.oci.coalesced = {2, 20};
  j.cache.image.cache = {2, 5000};
  job_record image;
  image.id = 29;
  image.pipeline = 9;
  image.name = image.spec_name = "image";
  image.image_build = true;
  image.state = job_state::passed;
  p.jobs = {image, j};
  p.jobs[1].needs = {29};

  const json::object o = to_json(p);
  EXPECT_EQ(o.at("state"), "cancelled");
  EXPECT_EQ(o.at("created_at"), 1'700'000'001'000);
  EXPECT_EQ(o.at("jobs").at(1).at("state"), "cancelled");
  EXPECT_EQ(o.at("jobs").at(1).at("needs"), json::array{29});
  auto back = pipeline_from_json(json::parse(json::serialize(o)));
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(json::serialize(to_json(*back)), json::serialize(o));
  EXPECT_EQ(back->finished_at, at(2.5));
  EXPECT_EQ(back->jobs[1].started_at, at(1.25));
  EXPECT_EQ(back->attachment, p.attachment);
  const json::object& cache = o.at("jobs").at(1).at("cache").as_object();
  EXPECT_EQ(cache.at("pypi").at("upstream").at("bytes"), 1000) << json::serialize(cache);
  // 5 of 8 requests, 9096 of 10116 bytes from the cache.
  EXPECT_DOUBLE_EQ(cache.at("hit_ratio").as_double(), 5.0 / 8) << json::serialize(cache);
  EXPECT_DOUBLE_EQ(cache.at("byte_hit_ratio").as_double(), 9096.0 / 10116);
  EXPECT_EQ(back->jobs[1].cache.image.cache.bytes, 5000u);
  EXPECT_TRUE(o.at("jobs").at(0).at("cache").at("hit_ratio").is_null())
      << "a job without traffic has no ratio: " << json::serialize(o.at("jobs").at(0));
}

TEST(SchedulerTest, AFinishedJobKeepsItsCacheUse) {
  scheduler s;
  auto [id, submitted] = s.submit(pipeline_of({plan("test")}), at(0));
  changes out;
  auto c = s.claim("builtin", at(1), out);
  ASSERT_TRUE(c.has_value());
  job_outcome o = passed();
  o.cache.pypi.cache = {4, 400};
  o.cache.pypi.upstream = {1, 100};
  auto r = s.finish(c->job, c->lease, o, at(2));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  const pipeline_record* p = s.pipeline(id);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->jobs[0].cache.pypi.cache.requests, 4u);
  EXPECT_EQ(p->jobs[0].cache.pypi.upstream.bytes, 100u);
}

TEST(SchedulerTest, ARecordThatDoesNotReadBackNamesTheMember) {
  auto message = [](std::string_view text) {
    auto r = pipeline_from_json(json::parse(text));
    EXPECT_FALSE(r.has_value()) << text;
    if (r) return std::string();
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
    return r.error().message;
  };
  EXPECT_EQ(message("[]"), "pipeline: expected a JSON object, got []");
  EXPECT_EQ(message(R"({"project":"shop"})"), "pipeline: id: missing or 0");
  EXPECT_EQ(message(R"({"id":4,"state":"green"})"),
            "pipeline 4: state: expected one of running, passed, failed, cancelled, got \"green\"");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1},{"id":2,"state":"bogus"}]})"),
            "pipeline 4: jobs[1].state: expected one of queued, running, passed, failed, "
            "cancelled, skipped, got \"bogus\"");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1,"attempts":"two"}]})"),
            "pipeline 4: jobs[0].attempts: expected a whole number, got \"two\"");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1},{"id":1}]})"),
            "pipeline 4: jobs[1].id: job 1 appears twice");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1,"needs":[3]}]})"),
            "pipeline 4: jobs[0].needs: job 3 is not in the pipeline");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1,"cache":[]}]})"),
            "pipeline 4: jobs[0].cache: expected an object of cache counts, got []");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1,"cache":{"pypi":{"upstream":{"bytes":-1}}}}]})"),
            "pipeline 4: jobs[0].cache.pypi.upstream.bytes: expected a whole number of at least "
            "0, got -1");
  EXPECT_EQ(message(R"({"id":4,"jobs":[{"id":1,"cache":{"oci":7}}]})"),
            "pipeline 4: jobs[0].cache.oci: expected an object of cache, upstream and coalesced "
            "counts, got 7");
  EXPECT_EQ(
      message(R"({"id":4,"created_at":"yesterday"})"),
      "pipeline 4: created_at: expected a time in milliseconds since 1970, got \"yesterday\"");
  // Unknown members are ignored (a newer pantry's record still loads); missing ones default.
  auto lenient = pipeline_from_json(json::parse(R"({"id":4,"labels":["x"],"jobs":[{"id":1}]})"));
  ASSERT_TRUE(lenient.has_value()) << lenient.error().message;
  EXPECT_EQ(lenient->jobs[0].pipeline, 4u) << "a job's pipeline defaults to its record's";
  EXPECT_EQ(lenient->jobs[0].state, job_state::queued);
}

// 1,000 jobs on two slots: one setup job, 998 that need it, one that needs them all. The ready
// set is kept incrementally, so this is linear-ish work (a quadratic scan would show as a slow
// test, not as a failure: no timing is asserted).
TEST(SchedulerTest, AThousandJobPipelineRunsOnTwoSlots) {
  constexpr std::size_t kJobs = 1000;
  std::vector<job_plan> jobs{plan("setup")};
  std::vector<std::size_t> all;
  for (std::size_t i = 1; i + 1 < kJobs; ++i) {
    jobs.push_back(shard("test", static_cast<int>(i), static_cast<int>(kJobs - 2), {0}));
    all.push_back(i);
  }
  jobs.push_back(plan("report", all));
  scheduler s;
  auto [id, r] = s.submit(pipeline_of(std::move(jobs)), at(0));
  EXPECT_EQ(s.ready(), 1u);

  std::deque<assignment> slots;
  std::size_t claims = 0, most_ready = 0;
  double now = 0;
  changes out;
  for (;;) {
    while (slots.size() < 2) {
      auto a = s.claim(slots.empty() ? "slot1" : "slot2", at(now), out);
      if (!a) break;
      slots.push_back(*a);
      ++claims;
    }
    if (slots.empty()) break;
    now += 0.001;
    auto f = s.finish(slots.front().job, slots.front().lease, passed(), at(now));
    ASSERT_TRUE(f.has_value()) << f.error().message;
    slots.pop_front();
    most_ready = std::max(most_ready, s.ready());
  }
  EXPECT_EQ(claims, kJobs);
  EXPECT_EQ(most_ready, kJobs - 2) << "every test shard ready once setup passed";
  EXPECT_EQ(s.pipeline(id)->state, pipeline_state::passed);
  EXPECT_EQ(s.pipeline(id)->jobs.back().name, "report");
  EXPECT_EQ(s.pipeline(id)->jobs.back().state, job_state::passed);
  EXPECT_EQ(s.queued(), 0u);
  EXPECT_EQ(s.ready(), 0u);
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
