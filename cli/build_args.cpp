// The arguments of `pantry build` (build.h): in pantry_cli, apart from the command, so that unit
// tests link the parser without the client and the in-process pantry.

#include "build.h"
#include "pantry/orchestrator/builder/image_config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace pantry::cli {
namespace {

namespace builder = orchestrator::builder;
namespace fs = std::filesystem;

error usage(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

}  // namespace

result<build_options> parse_build_args(const std::vector<std::string>& args) {
  build_options o;
  auto& req = o.request;
  std::optional<std::string> file;
  std::optional<std::string> context;
  std::optional<std::string> epoch_arg;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    auto value = [&]() -> result<std::string> {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) return usage("option " + a + " needs a value");
      return args[++i];
    };
    if (a == "--no-cache" || a == "--allow-unpinned" || a == "--verbose" || a == "--zstd") {
      if (inline_value) return usage(a + " takes no value");
      if (a == "--no-cache") req.no_cache = true;
      if (a == "--allow-unpinned") req.allow_unpinned = true;
      if (a == "--verbose") o.verbose = true;
      if (a == "--zstd") req.compression = builder::layer_compression::zstd;
      continue;
    }
    if (!a.starts_with("-")) {
      if (context) return usage("build takes one CONTEXT, not also " + a);
      context = a;
      continue;
    }
    auto v = value();
    if (!v) return v.error();
    if (a == "-f" || a == "--file") {
      file = *v;
    } else if (a == "-t" || a == "--tag") {
      req.tags.push_back(*v);
    } else if (a == "--build-arg") {
      auto eq = v->find('=');
      if (eq == std::string::npos || eq == 0)
        return usage("--build-arg " + *v + ": give KEY=VALUE");
      req.build_args.push_back({v->substr(0, eq), v->substr(eq + 1)});
      if (v->substr(0, eq) == "SOURCE_DATE_EPOCH") epoch_arg = v->substr(eq + 1);
    } else if (a == "--target") {
      req.target = *v;
    } else if (a == "--config") {
      o.config_file = *v;
    } else if (a == "--data-dir") {
      o.data_dir = *v;
    } else {
      return usage("unknown option " + a);
    }
  }
  if (!context) return usage("build needs a CONTEXT directory (e.g. .)");
  if (req.tags.empty()) return usage("build needs -t NAME:TAG (e.g. -t local/app:1)");
  std::error_code ec;
  req.context = fs::absolute(*context, ec).lexically_normal();
  if (ec || !fs::is_directory(req.context, ec))
    return usage("CONTEXT " + *context + " is not a directory");
  fs::path path;
  if (file) {
    path = *file;
  } else {
    path = req.context / "Containerfile";
    if (!fs::exists(path, ec)) path = req.context / "Dockerfile";
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return usage("cannot read " + path.string() + " (give the Containerfile with -f FILE)");
  std::ostringstream text;
  text << in.rdbuf();
  req.containerfile_text = text.str();
  req.containerfile_name = file ? *file : path.filename().string();
  const char* env_epoch = std::getenv("SOURCE_DATE_EPOCH");
  std::string epoch = epoch_arg ? *epoch_arg : (env_epoch ? env_epoch : "0");
  auto parsed = builder::parse_source_date_epoch(epoch);
  if (!parsed) return usage("SOURCE_DATE_EPOCH: " + parsed.error().message);
  req.source_date_epoch = *parsed;
  return o;
}

}  // namespace pantry::cli
