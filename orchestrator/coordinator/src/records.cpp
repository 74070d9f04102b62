// The scheduler's records as JSON (the store's form and the API's), and their states' names.

#include "pantry/orchestrator/coordinator/scheduler.h"

#include <boost/json/serialize.hpp>

#include <array>
#include <limits>
#include <unordered_set>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

constexpr std::array<std::pair<job_state, std::string_view>, 6> kJobStates = {{
    {job_state::queued, "queued"},
    {job_state::running, "running"},
    {job_state::passed, "passed"},
    {job_state::failed, "failed"},
    {job_state::cancelled, "cancelled"},
    {job_state::skipped, "skipped"},
}};

constexpr std::array<std::pair<pipeline_state, std::string_view>, 4> kPipelineStates = {{
    {pipeline_state::running, "running"},
    {pipeline_state::passed, "passed"},
    {pipeline_state::failed, "failed"},
    {pipeline_state::cancelled, "cancelled"},
}};

std::int64_t to_ms(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

json::array to_array(const std::vector<job_id>& ids) {
  json::array a;
  a.reserve(ids.size());
  for (job_id id : ids)
    a.emplace_back(id);
  return a;
}

// Reads the members of one JSON object into fields, keeping the first problem. A missing or
// null member leaves the field at its default: records written before a field existed load.
class member_reader {
 public:
  member_reader(const json::object& o, std::string where) : object_(o), where_(std::move(where)) {}

  const json::value* find(std::string_view key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->value().is_null()) return nullptr;
    return &it->value();
  }

  void read(std::string_view key, std::string& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (!v->is_string()) return fail(key, "a string", *v);
    out = v->get_string();
  }

  void read(std::string_view key, bool& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (!v->is_bool()) return fail(key, "true or false", *v);
    out = v->get_bool();
  }

  void read(std::string_view key, std::uint64_t& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (v->is_uint64()) {
      out = v->get_uint64();
    } else if (v->is_int64() && v->get_int64() >= 0) {
      out = static_cast<std::uint64_t>(v->get_int64());
    } else {
      fail(key, "a whole number of at least 0", *v);
    }
  }

  void read(std::string_view key, int& out) {
    const json::value* v = find(key);
    if (!v) return;
    std::int64_t n = 0;
    if (v->is_int64()) {
      n = v->get_int64();
    } else if (v->is_uint64() && v->get_uint64() <= std::numeric_limits<std::int64_t>::max()) {
      n = static_cast<std::int64_t>(v->get_uint64());
    } else {
      return fail(key, "a whole number", *v);
    }
    if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max()) {
      return fail(key, "a whole number in int's range", *v);
    }
    out = static_cast<int>(n);
  }

  void read(std::string_view key, double& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (!v->is_number()) return fail(key, "a number", *v);
    out = v->to_number<double>();
  }

  // Milliseconds since the Unix epoch.
  void read(std::string_view key, clock::time_point& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (!v->is_int64() && !v->is_uint64()) {
      return fail(key, "a time in milliseconds since 1970", *v);
    }
    const auto ms = v->is_int64() ? v->get_int64() : static_cast<std::int64_t>(v->get_uint64());
    out = clock::time_point(
        std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(ms)));
  }

  void read(std::string_view key, std::vector<job_id>& out) {
    const json::value* v = find(key);
    if (!v) return;
    if (!v->is_array()) return fail(key, "an array of job ids", *v);
    for (const json::value& e : v->get_array()) {
      if (!e.is_uint64() && !(e.is_int64() && e.get_int64() > 0)) {
        return fail(key, "an array of job ids", *v);
      }
      out.push_back(e.to_number<job_id>());
    }
  }

  template <class State>
  void read_state(std::string_view key, State& out,
                  std::optional<State> (*parse)(std::string_view) noexcept, std::string_view what) {
    const json::value* v = find(key);
    if (!v) return;
    std::optional<State> s;
    if (v->is_string()) s = parse(v->get_string());
    if (!s) return fail(key, what, *v);
    out = *s;
  }

  void fail(std::string_view key, std::string_view expected, const json::value& got) {
    if (error_) return;
    error_ =
        error(errc::invalid_argument, where_ + std::string(key) + ": expected " +
                                          std::string(expected) + ", got " + json::serialize(got));
  }

  // Records a problem that is not about one member's type.
  void fail(std::string message) {
    if (!error_) error_ = error(errc::invalid_argument, where_ + message);
  }

  std::optional<error>& problem() { return error_; }

 private:
  const json::object& object_;
  std::string where_;  // "pipeline 4: jobs[2]." : the prefix of every message
  std::optional<error> error_;
};

json::object to_json(const cache_count& c) {
  return json::object{{"requests", c.requests}, {"bytes", c.bytes}};
}

json::value ratio_json(const std::optional<double>& r) {
  return r ? json::value(*r) : json::value(nullptr);
}

// to_json(cache_use)'s form; `where` ("cache", "pipeline 4: jobs[2].cache") begins each message.
result<cache_use> read_cache_use(const json::value& v, const std::string& where) {
  if (!v.is_object()) {
    return error(errc::invalid_argument,
                 where + ": expected an object of cache counts, got " + json::serialize(v));
  }
  cache_use u;
  const std::pair<std::string_view, cache_split*> splits[] = {
      {"pypi", &u.pypi}, {"oci", &u.oci}, {"image", &u.image}};
  member_reader top(v.get_object(), where + ".");
  for (const auto& [name, split] : splits) {
    const json::value* s = top.find(name);
    if (!s) continue;
    if (!s->is_object()) {
      top.fail(name, "an object of cache, upstream and coalesced counts", *s);
      return *top.problem();
    }
    const std::pair<std::string_view, cache_count*> counts[] = {
        {"cache", &split->cache}, {"upstream", &split->upstream}, {"coalesced", &split->coalesced}};
    member_reader of_split(s->get_object(), where + "." + std::string(name) + ".");
    for (const auto& [from, count] : counts) {
      const json::value* c = of_split.find(from);
      if (!c) continue;
      if (!c->is_object()) {
        of_split.fail(from, "an object of requests and bytes", *c);
        return *of_split.problem();
      }
      member_reader r(c->get_object(),
                      where + "." + std::string(name) + "." + std::string(from) + ".");
      r.read("requests", count->requests);
      r.read("bytes", count->bytes);
      if (r.problem()) return *r.problem();
    }
  }
  return u;
}

}  // namespace

json::object to_json(const cache_use& u) {
  json::object o;
  const std::pair<std::string_view, const cache_split*> splits[] = {
      {"pypi", &u.pypi}, {"oci", &u.oci}, {"image", &u.image}};
  for (const auto& [name, split] : splits) {
    o[name] = json::object{{"cache", to_json(split->cache)},
                           {"upstream", to_json(split->upstream)},
                           {"coalesced", to_json(split->coalesced)}};
  }
  const cache_ratio r = hit_ratio(u);
  o["hit_ratio"] = ratio_json(r.requests);
  o["byte_hit_ratio"] = ratio_json(r.bytes);
  return o;
}

result<cache_use> cache_use_from_json(const json::value& v) {
  return read_cache_use(v, "cache");
}

std::string_view to_string(job_state s) noexcept {
  for (const auto& [state, name] : kJobStates) {
    if (state == s) return name;
  }
  return "unknown";
}

std::string_view to_string(pipeline_state s) noexcept {
  for (const auto& [state, name] : kPipelineStates) {
    if (state == s) return name;
  }
  return "unknown";
}

std::optional<job_state> parse_job_state(std::string_view text) noexcept {
  for (const auto& [state, name] : kJobStates) {
    if (name == text) return state;
  }
  return std::nullopt;
}

std::optional<pipeline_state> parse_pipeline_state(std::string_view text) noexcept {
  for (const auto& [state, name] : kPipelineStates) {
    if (name == text) return state;
  }
  return std::nullopt;
}

bool finished(job_state s) noexcept {
  return s != job_state::queued && s != job_state::running;
}

json::object to_json(const job_record& j) {
  json::object o;
  o["id"] = j.id;
  o["pipeline"] = j.pipeline;
  o["name"] = j.name;
  o["spec_name"] = j.spec_name;
  o["image_build"] = j.image_build;
  o["shard"] = j.shard;
  o["shards"] = j.shards;
  o["needs"] = to_array(j.needs);
  o["state"] = to_string(j.state);
  o["reason"] = j.reason;
  o["attempts"] = j.attempts;
  o["runner"] = j.runner;
  o["lease"] = j.lease;
  o["queued_at"] = to_ms(j.queued_at);
  o["started_at"] = to_ms(j.started_at);
  o["finished_at"] = to_ms(j.finished_at);
  o["exit_code"] = j.exit_code;
  o["cpu_seconds"] = j.cpu_seconds;
  o["image"] = j.image;
  o["cache"] = to_json(j.cache);
  return o;
}

json::object to_json(const pipeline_record& p) {
  json::object o;
  o["id"] = p.id;
  o["project"] = p.project;
  o["patch"] = p.patch;
  o["commit"] = p.commit;
  o["keep_going"] = p.keep_going;
  o["state"] = to_string(p.state);
  o["reason"] = p.reason;
  o["superseded_by"] = p.superseded_by;
  o["saved_runner_seconds"] = p.saved_runner_seconds;
  o["created_at"] = to_ms(p.created_at);
  o["finished_at"] = to_ms(p.finished_at);
  o["attachment"] = p.attachment;
  json::array jobs;
  jobs.reserve(p.jobs.size());
  for (const job_record& j : p.jobs)
    jobs.emplace_back(to_json(j));
  o["jobs"] = std::move(jobs);
  return o;
}

result<pipeline_record> pipeline_from_json(const json::value& v) {
  if (!v.is_object()) {
    return error(errc::invalid_argument,
                 "pipeline: expected a JSON object, got " + json::serialize(v).substr(0, 80));
  }
  const json::object& o = v.get_object();
  pipeline_record p;
  member_reader top(o, "pipeline: ");
  top.read("id", p.id);
  if (top.problem()) return *top.problem();
  if (p.id == 0) return error(errc::invalid_argument, "pipeline: id: missing or 0");

  const std::string where = "pipeline " + std::to_string(p.id) + ": ";
  member_reader r(o, where);
  r.read("project", p.project);
  r.read("patch", p.patch);
  r.read("commit", p.commit);
  r.read("keep_going", p.keep_going);
  r.read_state("state", p.state, &parse_pipeline_state,
               "one of running, passed, failed, cancelled");
  r.read("reason", p.reason);
  r.read("superseded_by", p.superseded_by);
  r.read("saved_runner_seconds", p.saved_runner_seconds);
  r.read("created_at", p.created_at);
  r.read("finished_at", p.finished_at);
  if (const json::value* a = r.find("attachment")) {
    if (a->is_object()) {
      p.attachment = a->get_object();
    } else {
      r.fail("attachment", "an object", *a);
    }
  }
  const json::value* jobs = r.find("jobs");
  if (jobs && !jobs->is_array()) r.fail("jobs", "an array of jobs", *jobs);
  if (r.problem()) return *r.problem();
  if (!jobs) return p;

  std::unordered_set<job_id> ids;
  const json::array& array = jobs->get_array();
  for (std::size_t i = 0; i < array.size(); ++i) {
    const std::string at = where + "jobs[" + std::to_string(i) + "]";
    if (!array[i].is_object()) {
      return error(errc::invalid_argument,
                   at + ": expected a job object, got " + json::serialize(array[i]).substr(0, 80));
    }
    job_record j;
    member_reader jr(array[i].get_object(), at + ".");
    jr.read("id", j.id);
    jr.read("pipeline", j.pipeline);
    jr.read("name", j.name);
    jr.read("spec_name", j.spec_name);
    jr.read("image_build", j.image_build);
    jr.read("shard", j.shard);
    jr.read("shards", j.shards);
    jr.read("needs", j.needs);
    jr.read_state("state", j.state, &parse_job_state,
                  "one of queued, running, passed, failed, cancelled, skipped");
    jr.read("reason", j.reason);
    jr.read("attempts", j.attempts);
    jr.read("runner", j.runner);
    jr.read("lease", j.lease);
    jr.read("queued_at", j.queued_at);
    jr.read("started_at", j.started_at);
    jr.read("finished_at", j.finished_at);
    jr.read("exit_code", j.exit_code);
    jr.read("cpu_seconds", j.cpu_seconds);
    jr.read("image", j.image);
    if (const json::value* c = jr.find("cache"); c && !jr.problem()) {
      auto u = read_cache_use(*c, at + ".cache");
      if (u) {
        j.cache = *u;
      } else {
        jr.problem() = u.error();
      }
    }
    if (!jr.problem()) {
      if (j.id == 0) {
        jr.fail("id: missing or 0");
      } else if (!ids.insert(j.id).second) {
        jr.fail("id: job " + std::to_string(j.id) + " appears twice");
      } else if (j.pipeline != 0 && j.pipeline != p.id) {
        jr.fail("pipeline: " + std::to_string(j.pipeline) + " is not the job's pipeline");
      }
    }
    if (jr.problem()) return *jr.problem();
    j.pipeline = p.id;
    p.jobs.push_back(std::move(j));
  }
  for (std::size_t i = 0; i < p.jobs.size(); ++i) {
    for (job_id need : p.jobs[i].needs) {
      if (!ids.contains(need) || need == p.jobs[i].id) {
        return error(errc::invalid_argument,
                     where + "jobs[" + std::to_string(i) + "].needs: job " + std::to_string(need) +
                         (need == p.jobs[i].id ? " is the job itself" : " is not in the pipeline"));
      }
    }
  }
  return p;
}

}  // namespace pantry::orchestrator::coordinator
