// libFuzzer target for the .pantry.yml reader (coordinator/pipeline_spec.h). Checked for every
// input: parsing never crashes and either fails with an errc::invalid_argument message whose
// every line names the file, or succeeds with a spec that has jobs, each runnable, and a plan in
// which every job comes after the jobs it needs.

#include "pantry/orchestrator/coordinator/pipeline_spec.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace coordinator = pantry::orchestrator::coordinator;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "pipeline_spec_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = coordinator::parse_pipeline_spec(text, "f.yml");
  if (!parsed) {
    check(parsed.error().is(pantry::errc::invalid_argument), "error code", size);
    const std::string msg = parsed.error().message;
    check(!msg.empty() && msg.starts_with("f.yml"), "error message names the file", size);
    for (std::size_t nl = msg.find('\n'); nl != std::string_view::npos; nl = msg.find('\n', nl + 1))
      check(msg.substr(nl + 1).starts_with("f.yml"), "every line names the file", size);
    return 0;
  }
  check(!parsed->jobs.empty(), "at least one job", size);
  std::size_t shards = 0;
  for (const auto& job : parsed->jobs) {
    check(!job.run.empty(), "a job has steps", size);
    check(job.parallel >= 1 && job.parallel <= 100, "parallel in range", size);
    shards += static_cast<std::size_t>(job.parallel);
  }
  const auto plan = coordinator::plan_jobs(*parsed);
  check(plan.size() == shards, "one planned job per shard", size);
  for (std::size_t i = 0; i < plan.size(); ++i) {
    for (std::size_t need : plan[i].needs)
      check(need < i, "needs come first", size);
  }
  return 0;
}
