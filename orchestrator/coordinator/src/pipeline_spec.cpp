#include "pantry/orchestrator/coordinator/pipeline_spec.h"

#include "pantry/config/config.h"
#include "pantry/config/yaml_reader.h"
#include "pantry/orchestrator/runner/image_reference.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>

namespace pantry::orchestrator::coordinator {
namespace {

namespace yaml = config::yaml;
using yaml::entry;
using yaml::quote;

// A pipeline is a page of YAML; this bounds the parser's time and memory on hostile input.
constexpr std::size_t kMaxInputBytes = 1 << 20;
constexpr yaml::document_kind kPipelineDocument = {"pipeline", errc::invalid_argument,
                                                   kMaxInputBytes};

// More shards than this is a typo, not a plan: each one is a container.
constexpr unsigned kMaxParallel = 100;

constexpr std::array<std::string_view, 5> kTopKeys = {"image", "build", "allow_unpinned",
                                                      "keep_going", "jobs"};
constexpr std::array<std::string_view, 2> kBuildKeys = {"file", "context"};
constexpr std::array<std::string_view, 11> kJobKeys = {"run",   "needs",   "parallel",  "timeout",
                                                       "env",   "secrets", "artifacts", "network",
                                                       "tmpfs", "image",   "fail_fast"};
// A job's keys are under "jobs.NAME": a job key at the top level is suggested there.
constexpr std::array<yaml::key_set, 3> kMaps = {{
    {"", kTopKeys},
    {"build", kBuildKeys},
    {"jobs.NAME", kJobKeys},
}};

constexpr std::string_view kJobExample = "{run: pytest}";
constexpr std::string_view kPinAdvice =
    " is not pinned by digest; write it as NAME@sha256:DIGEST so that every run uses the same "
    "image (`skopeo inspect docker://NAME:TAG` prints the digest, `pantry build` prints it for "
    "an image it built), or set allow_unpinned: true";

// A value read with where it was, for the checks that need the whole file.
struct placed {
  std::string value;
  YAML::Mark mark;
  std::string path;
};

// What the checks after reading need besides the spec.
struct read_state {
  std::vector<placed> images;              // top-level and jobs' image:, as written
  std::vector<std::vector<placed>> needs;  // per job of spec.jobs
  std::optional<YAML::Mark> image_mark;    // where image: was
  std::optional<YAML::Mark> build_mark;    // where build: was
  std::optional<YAML::Mark> jobs_mark;
};

// An entry for item `index` of e's list value `item`, so that messages point at the item.
entry item_entry(const entry& e, const YAML::Node& item, std::size_t index) {
  return entry{e.key, e.key_node, item, e.path + "[" + std::to_string(index) + "]"};
}

// e's value as a list of scalars, or a single scalar as a list of one if `single` is allowed.
// Reports what is wrong and returns nullopt; an empty list is an empty vector.
std::optional<std::vector<placed>> read_scalars(yaml::reader& r, const entry& e,
                                                std::string_view expected, bool single) {
  std::vector<placed> out;
  if (e.value.IsScalar() && single) {
    out.push_back({e.value.Scalar(), e.mark(), e.path});
    return out;
  }
  if (!e.value.IsSequence()) {
    const std::string what = e.value.IsNull()
                                 ? "\"\" has no value"
                                 : yaml::describe(e.value) + " is " + yaml::kind_of(e.value);
    r.fail(e, what + ", expected " + std::string(expected));
    return std::nullopt;
  }
  const std::size_t problems_before = r.problems();
  std::size_t index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    const entry item = item_entry(e, *it, index);
    if (auto s = r.as_scalar(item, expected)) out.push_back({*s, item.mark(), item.path});
  }
  if (r.problems() != problems_before) return std::nullopt;
  return out;
}

// Reports a value of `values` that repeats an earlier one; returns whether all were unique.
bool check_unique(yaml::reader& r, const std::vector<placed>& values, std::string_view what) {
  std::map<std::string_view, int> seen;
  bool unique = true;
  for (const placed& v : values) {
    if (auto [pos, inserted] = seen.emplace(v.value, v.mark.line + 1); !inserted) {
      r.fail(v.mark, v.path,
             quote(v.value) + " is listed twice (first on line " + std::to_string(pos->second) +
                 "); " + std::string(what));
      unique = false;
    }
  }
  return unique;
}

bool is_env_name(std::string_view name) {
  const auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9');
  };
  return !name.empty() && !(name[0] >= '0' && name[0] <= '9') &&
         std::all_of(name.begin(), name.end(), word);
}

// Why `path` cannot be a path inside the source or workspace, or nullopt.
std::optional<std::string> relative_path_problem(std::string_view path, std::string_view example) {
  if (path.starts_with('/')) {
    return quote(path) + " is an absolute path; give a path relative to the workspace, e.g. " +
           std::string(example);
  }
  std::string_view rest = path;
  while (true) {
    const std::size_t slash = rest.find('/');
    if (rest.substr(0, slash) == "..") {
      return quote(path) + " goes outside the workspace (\"..\"); give a path inside it, e.g. " +
             std::string(example);
    }
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return std::nullopt;
}

std::optional<std::string> read_relative_path(yaml::reader& r, const entry& e,
                                              std::string_view example) {
  auto s = r.as_text(e, "a path relative to the workspace, e.g. " + std::string(example));
  if (!s) return std::nullopt;
  if (auto why = relative_path_problem(*s, example)) {
    r.fail(e, *why);
    return std::nullopt;
  }
  return s;
}

void read_image(yaml::reader& r, const entry& e, std::optional<std::string>& image,
                read_state& st) {
  auto s = r.as_text(e, "an image reference, e.g. docker.io/library/python@sha256:DIGEST");
  if (!s) return;
  st.images.push_back({*s, e.mark(), e.path});
  image = std::move(*s);
}

void read_run(yaml::reader& r, const entry& e, job_spec& job) {
  auto steps =
      read_scalars(r, e, "a script or a list of scripts, e.g. [pip install ., pytest]", true);
  if (!steps) return;
  if (steps->empty()) {
    r.fail(e, "\"[]\" has no steps; give a script, e.g. run: pytest");
    return;
  }
  bool ok = true;
  for (const placed& step : *steps) {
    if (step.value.find_first_not_of(" \t\r\n") == std::string::npos) {
      r.fail(step.mark, step.path, quote(step.value) + " is an empty script; give a command");
      ok = false;
    }
  }
  if (!ok) return;
  job.run.clear();
  for (placed& step : *steps)
    job.run.push_back(std::move(step.value));
}

void read_env(yaml::reader& r, const entry& e, job_spec& job) {
  r.read_named_map(e, "{PYTHONHASHSEED: \"0\"}", [&](const entry& f) {
    if (!is_env_name(f.key)) {
      r.fail(f.key_node.Mark(), f.path,
             quote(f.key) +
                 " is not an environment variable name; use letters, digits and '_', not "
                 "starting with a digit, e.g. PYTHONHASHSEED");
      return;
    }
    if (f.key.starts_with("PANTRY_")) {
      r.fail(f.key_node.Mark(), f.path,
             quote(f.key) +
                 " starts with PANTRY_, which pantry sets itself (PANTRY_SHARD, PANTRY_SHARDS); "
                 "use another name");
      return;
    }
    if (auto v = r.as_scalar(f, "a value, e.g. \"1\"")) job.env.emplace_back(f.key, *v);
  });
}

void read_names(yaml::reader& r, const entry& e, std::vector<std::string>& out,
                std::string_view what, std::string_view example) {
  auto names = read_scalars(
      r, e, "a list of " + std::string(what) + " names, e.g. [" + std::string(example) + "]", true);
  if (!names) return;
  bool ok = true;
  for (const placed& n : *names) {
    if (!config::is_ci_name(n.value)) {
      r.fail(n.mark, n.path,
             quote(n.value) + " is not a " + std::string(what) +
                 " name; use 1 to 63 letters, digits, '_', '.' and '-', e.g. " +
                 std::string(example));
      ok = false;
    }
  }
  if (!ok || !check_unique(r, *names, "remove the repeat")) return;
  out.clear();
  for (placed& n : *names)
    out.push_back(std::move(n.value));
}

void read_artifacts(yaml::reader& r, const entry& e, job_spec& job) {
  auto paths = read_scalars(r, e, "a list of paths relative to the workspace, e.g. [dist]", true);
  if (!paths) return;
  const std::size_t problems_before = r.problems();
  for (const placed& p : *paths) {
    if (p.value.empty() || p.value.find_first_of("\n\r\t") != std::string::npos) {
      r.fail(p.mark, p.path, quote(p.value) + " is not a path; give one, e.g. dist");
    } else if (auto why = relative_path_problem(p.value, "dist")) {
      r.fail(p.mark, p.path, *why);
    }
  }
  if (r.problems() != problems_before || !check_unique(r, *paths, "remove the repeat")) return;
  job.artifacts.clear();
  for (placed& p : *paths)
    job.artifacts.push_back(std::move(p.value));
}

void read_network(yaml::reader& r, const entry& e, job_spec& job) {
  auto s = r.as_scalar(e, "isolated or none");
  if (!s) return;
  for (runner::network_mode m : {runner::network_mode::isolated, runner::network_mode::none}) {
    if (runner::to_string(m) == *s) {
      job.network = m;
      return;
    }
  }
  if (*s == runner::to_string(runner::network_mode::host)) {
    r.fail(e,
           "\"host\" is not allowed for a job: on the host's network it would reach whatever "
           "the host reaches; use isolated (pantry's read-only routes) or none");
    return;
  }
  r.fail(e, quote(*s) +
                " is not a network; use isolated (only pantry's read-only routes) or "
                "none (no network)");
}

void read_job(yaml::reader& r, const entry& e, job_spec& job, std::vector<placed>& needs,
              read_state& st) {
  job.name = std::string(e.key);
  job.line = e.key_node.Mark().line + 1;
  if (!e.value.IsMap()) {
    const std::string what = e.value.IsNull()
                                 ? "\"\" has no value"
                                 : yaml::describe(e.value) + " is " + yaml::kind_of(e.value);
    r.fail(e, what + ", expected a job, a map with at least run:, e.g. " + std::string(e.key) +
                  ": " + std::string(kJobExample));
    return;
  }
  bool has_run = false;
  r.for_each_key(e.value, e.path, kJobKeys, [&](const entry& f) {
    if (f.key == "run") {
      has_run = true;
      read_run(r, f, job);
    } else if (f.key == "needs") {
      auto names = read_scalars(r, f, "a list of job names, e.g. [lint, test]", true);
      if (names) needs = std::move(*names);
    } else if (f.key == "parallel") {
      if (auto n = r.read_count(f, 1, kMaxParallel,
                                "use 1 to " + std::to_string(kMaxParallel) + " shards")) {
        job.parallel = static_cast<int>(*n);
      }
    } else if (f.key == "timeout") {
      if (auto d = r.read_positive_duration(f, "would stop the job before it starts", "10m")) {
        job.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
      }
    } else if (f.key == "env") {
      read_env(r, f, job);
    } else if (f.key == "secrets") {
      read_names(r, f, job.secrets, "secret", "PYPI_TOKEN");
    } else if (f.key == "artifacts") {
      read_artifacts(r, f, job);
    } else if (f.key == "network") {
      read_network(r, f, job);
    } else if (f.key == "tmpfs") {
      if (auto n = r.read_size(f, "1GiB")) job.tmpfs = *n;
    } else if (f.key == "image") {
      read_image(r, f, job.image, st);
    } else if (f.key == "fail_fast") {
      if (auto b = r.read_bool(f)) job.fail_fast = *b;
    }
  });
  if (!has_run) {
    r.fail(e.key_node.Mark(), e.path,
           "the job has no run:; add run: followed by its script, e.g. run: pytest");
  }
}

void read_jobs(yaml::reader& r, const entry& e, pipeline_spec& spec, read_state& st) {
  st.jobs_mark = e.mark();
  if (!e.value.IsMap() || e.value.size() == 0) {
    const std::string what = e.value.IsNull()
                                 ? "\"\" has no value"
                                 : yaml::describe(e.value) + " is " + yaml::kind_of(e.value);
    r.fail(e, what + ", expected a map of jobs by name, e.g. jobs: {test: " +
                  std::string(kJobExample) + "}");
    return;
  }
  r.for_each_name(e.value, e.path, [&](const entry& f) {
    if (!config::is_ci_name(f.key)) {
      r.fail(f.key_node.Mark(), f.path,
             quote(f.key) +
                 " is not a job name; use 1 to 63 letters, digits, '_', '.' and '-', e.g. test");
      return;
    }
    job_spec job;
    std::vector<placed> needs;
    read_job(r, f, job, needs, st);
    spec.jobs.push_back(std::move(job));
    st.needs.push_back(std::move(needs));
  });
}

void read_build(yaml::reader& r, const entry& e, pipeline_spec& spec, read_state& st) {
  st.build_mark = e.key_node.Mark();
  image_build build;
  if (!e.value.IsNull() && !e.value.IsMap()) {
    r.fail(e, yaml::describe(e.value) + " is " + yaml::kind_of(e.value) +
                  ", expected a map, e.g. build: {file: Containerfile, context: .}");
    return;
  }
  r.read_map(e, kBuildKeys, [&](const entry& f) {
    if (auto s = read_relative_path(r, f, f.key == "file" ? "Containerfile" : ".")) {
      (f.key == "file" ? build.file : build.context) = std::move(*s);
    }
  });
  spec.build = std::move(build);
}

// Reports every image that does not parse, and (unless allowed) every one without a digest.
void check_images(yaml::reader& r, const pipeline_spec& spec, const read_state& st) {
  for (const placed& image : st.images) {
    auto ref = runner::parse_image_reference(image.value);
    if (!ref) {
      r.fail(image.mark, image.path, ref.error().message);
    } else if (!ref->pinned() && !spec.allow_unpinned) {
      r.fail(image.mark, image.path, quote(image.value) + std::string(kPinAdvice));
    }
  }
  if (st.image_mark && st.build_mark) {
    r.fail(*st.build_mark, "build",
           "image: (line " + std::to_string(st.image_mark->line + 1) +
               ") and build: are both set; keep the one the jobs run in");
  }
  if (spec.image || spec.build) return;
  const bool none_has_one = std::none_of(spec.jobs.begin(), spec.jobs.end(),
                                         [](const job_spec& j) { return j.image.has_value(); });
  if (none_has_one && !spec.jobs.empty()) {
    r.fail(YAML::Mark(), "image",
           "the file sets neither image: nor build:; add image: NAME@sha256:DIGEST (the image "
           "the jobs run in) or build: {file: Containerfile, context: .}");
    return;
  }
  for (const job_spec& j : spec.jobs) {
    if (j.image) continue;
    YAML::Mark m;
    m.line = j.line - 1;
    m.column = 2;
    r.fail(m, "jobs." + j.name,
           "the job has no image:, and the file sets neither image: nor build:; add image: "
           "NAME@sha256:DIGEST to the job or at the top level");
  }
}

// Resolves needs to job names (reporting unknown ones, with the nearest name) and reports cycles.
void check_needs(yaml::reader& r, pipeline_spec& spec, const read_state& st) {
  std::vector<std::string_view> names;
  std::map<std::string_view, std::size_t> index;
  for (std::size_t i = 0; i < spec.jobs.size(); ++i) {
    names.push_back(spec.jobs[i].name);
    index.emplace(spec.jobs[i].name, i);
  }
  // edges[i]: (need index, where the need was written).
  std::vector<std::vector<std::pair<std::size_t, const placed*>>> edges(spec.jobs.size());
  for (std::size_t i = 0; i < spec.jobs.size(); ++i) {
    if (!check_unique(r, st.needs[i], "remove the repeat")) continue;
    for (const placed& need : st.needs[i]) {
      const auto it = index.find(need.value);
      if (it == index.end()) {
        const auto near = yaml::nearest(need.value, names);
        r.fail(need.mark, need.path,
               quote(need.value) + " is not a job of this file; " +
                   (near ? "did you mean " + std::string(*near) + "?"
                         : "its jobs are " + yaml::join(names)));
        continue;
      }
      if (it->second == i) {
        r.fail(need.mark, need.path,
               quote(need.value) + " is the job itself; a job cannot need itself");
        continue;
      }
      spec.jobs[i].needs.push_back(need.value);
      edges[i].emplace_back(it->second, &need);
    }
  }
  // Depth-first, in file order: an edge to a job on the current path closes a cycle, reported
  // at that need with the whole cycle.
  enum class mark { unseen, on_path, done };
  std::vector<mark> marks(spec.jobs.size(), mark::unseen);
  std::vector<std::size_t> path;
  const auto visit = [&](auto& self, std::size_t job) -> void {
    marks[job] = mark::on_path;
    path.push_back(job);
    for (const auto& [next, need] : edges[job]) {
      if (marks[next] == mark::on_path) {
        std::string cycle;
        const auto start = std::find(path.begin(), path.end(), next);
        for (auto it = start; it != path.end(); ++it)
          cycle += spec.jobs[*it].name + " -> ";
        cycle += spec.jobs[next].name;
        r.fail(need->mark, need->path,
               "the jobs need each other in a cycle, " + cycle +
                   ", so none of them could start; remove one of these needs");
      } else if (marks[next] == mark::unseen) {
        self(self, next);
      }
    }
    path.pop_back();
    marks[job] = mark::done;
  };
  for (std::size_t i = 0; i < spec.jobs.size(); ++i) {
    if (marks[i] == mark::unseen) visit(visit, i);
  }
}

}  // namespace

result<pipeline_spec> parse_pipeline_spec(std::string_view text, std::string_view file_name) {
  const std::string source(file_name);
  try {
    auto root = yaml::load_document(text, file_name, kPipelineDocument);
    if (!root) return root.error();
    yaml::reader r(source, kMaps);
    pipeline_spec spec;
    read_state st;
    if (!root->IsMap()) {
      const std::string what = root->IsNull()
                                   ? std::string("the file is empty")
                                   : yaml::describe(*root) + " is " + yaml::kind_of(*root);
      r.fail(root->Mark(), "(top level)",
             what + ", expected a pipeline: a map with image: and jobs:, e.g. jobs: {test: " +
                 std::string(kJobExample) + "}");
      return error(errc::invalid_argument, r.report());
    }
    r.for_each_key(*root, "", kTopKeys, [&](const entry& e) {
      if (e.key == "image") {
        st.image_mark = e.key_node.Mark();
        read_image(r, e, spec.image, st);
      } else if (e.key == "build") {
        read_build(r, e, spec, st);
      } else if (e.key == "allow_unpinned") {
        if (auto b = r.read_bool(e)) spec.allow_unpinned = *b;
      } else if (e.key == "keep_going") {
        if (auto b = r.read_bool(e)) spec.keep_going = *b;
      } else if (e.key == "jobs") {
        read_jobs(r, e, spec, st);
      }
    });
    if (!st.jobs_mark) {
      r.fail(root->Mark(), "jobs",
             "the file has no jobs:; add jobs: with at least one, e.g. jobs: {test: " +
                 std::string(kJobExample) + "}");
    }
    check_images(r, spec, st);
    check_needs(r, spec, st);
    if (r.problems() > 0) return error(errc::invalid_argument, r.report());
    return spec;
  } catch (const std::exception& e) {
    return error(errc::invalid_argument, source + ": cannot read the pipeline: " + e.what() +
                                             "; this is a bug in pantry, please report it with "
                                             "the file");
  }
}

std::vector<planned_job> plan_jobs(const pipeline_spec& spec) {
  const std::size_t n = spec.jobs.size();
  std::map<std::string_view, std::size_t> index;
  for (std::size_t i = 0; i < n; ++i)
    index.emplace(spec.jobs[i].name, i);
  std::vector<std::vector<std::size_t>> needs(n);
  std::vector<std::vector<std::size_t>> needed_by(n);
  std::vector<std::size_t> waiting(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    for (const std::string& name : spec.jobs[i].needs) {
      const auto it = index.find(name);
      if (it == index.end() || it->second == i) continue;
      needs[i].push_back(it->second);
      needed_by[it->second].push_back(i);
      ++waiting[i];
    }
  }
  // Kahn's algorithm, taking the ready job that comes first in the file.
  std::set<std::size_t> ready;
  for (std::size_t i = 0; i < n; ++i) {
    if (waiting[i] == 0) ready.insert(i);
  }
  std::vector<std::vector<std::size_t>> shards_of(n);  // planned indices of each spec job
  std::vector<planned_job> plan;
  while (!ready.empty()) {
    const std::size_t i = *ready.begin();
    ready.erase(ready.begin());
    const job_spec& job = spec.jobs[i];
    std::vector<std::size_t> resolved;
    for (std::size_t need : needs[i])
      resolved.insert(resolved.end(), shards_of[need].begin(), shards_of[need].end());
    const int shards = std::max(job.parallel, 1);
    for (int shard = 1; shard <= shards; ++shard) {
      shards_of[i].push_back(plan.size());
      plan.push_back({
          .name = shards == 1
                      ? job.name
                      : job.name + " " + std::to_string(shard) + "/" + std::to_string(shards),
          .spec_name = job.name,
          .shard = shard,
          .shards = shards,
          .needs = resolved,
      });
    }
    for (std::size_t next : needed_by[i]) {
      if (--waiting[next] == 0) ready.insert(next);
    }
  }
  return plan;
}

}  // namespace pantry::orchestrator::coordinator
