#include "build.h"

#include "pantry/config/config.h"
#include "pantry/orchestrator/builder/http_backend.h"
#include "session.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace pantry::cli {
namespace {

namespace fs = std::filesystem;
namespace builder = orchestrator::builder;

std::string seconds(std::chrono::nanoseconds t) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f s", std::chrono::duration<double>(t).count());
  return b;
}

}  // namespace

int run_build(const build_options& opt) {
  config::config cfg = config::defaults();
  if (opt.config_file) {
    auto loaded = config::load_file(*opt.config_file);
    if (!loaded) {
      std::cerr << "pantry: " << loaded.error().message << '\n';
      return 1;
    }
    cfg = std::move(*loaded);
  }
  if (opt.data_dir) cfg.data_dir = *opt.data_dir;
  if (!opt.verbose) spdlog::set_level(spdlog::level::warn);
  auto s = session::open(cfg);
  if (!s) {
    std::cerr << "pantry: " << s.error().message << '\n';
    return 1;
  }
  builder::build_request request = opt.request;
  // Staging and layer files beside the data dir's disk, not in a small /tmp.
  request.scratch_dir = fs::path(cfg.data_dir) / "build-scratch";
  std::error_code ec;
  fs::create_directories(request.scratch_dir, ec);
  const auto start = std::chrono::steady_clock::now();
  result<builder::build_result> built = error(errc::io_error, "not built");
  {
    builder::http_backend_options bo;
    bo.fresh = request.no_cache;
    bo.user_agent = "pantry-build/" PANTRY_VERSION;
    auto backend = builder::make_http_backend((*s)->endpoint().url, (*s)->endpoint().token, bo);
    builder::build_events events;
    events.step_done = [](const builder::step_report& r) {
      std::printf("[%zu/%zu] %-6s %8s  %s\n", r.stage + 1, r.index + 1,
                  std::string(builder::to_string(r.outcome)).c_str(), seconds(r.time).c_str(),
                  r.text.c_str());
      std::fflush(stdout);
    };
    events.output = [](std::string_view line) {
      std::fprintf(stderr, "  | %.*s\n", static_cast<int>(line.size()), line.data());
    };
    built = builder::build(request, *backend, events);
  }
  if (!built) {
    std::cerr << "pantry: " << built.error().message << '\n';
    return 1;
  }
  for (const auto& name : built->unused_build_args) {
    std::cerr << "pantry: warning: --build-arg " << name << " is not used by any ARG\n";
  }
  for (const auto& tag : request.tags)
    std::printf("%s@%s\n", tag.c_str(), built->manifest_digest.str().c_str());
  std::fprintf(stderr, "pantry: built in %s\n",
               seconds(std::chrono::steady_clock::now() - start).c_str());
  return 0;
}

}  // namespace pantry::cli
