#include "ci.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace pantry::cli {
namespace {

namespace coordinator = orchestrator::coordinator;

constexpr int kExitOk = 0;
constexpr int kExitBadSpec = 2;

result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return error(errc::invalid_argument,
                 path + ": cannot open the pipeline file: " + std::strerror(err) +
                     "; give the path of a .pantry.yml");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return error(errc::io_error, path + ": cannot read the pipeline file: " + std::strerror(errno));
  }
  return text.str();
}

std::string plural(std::size_t n, std::string_view one) {
  return std::to_string(n) + " " + std::string(one) + (n == 1 ? "" : "s");
}

}  // namespace

result<ci_check_options> parse_ci_args(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "check") {
    const std::string got = args.empty() ? "nothing" : "\"" + args[0] + "\"";
    return error(errc::invalid_argument,
                 "ci needs a subcommand: check [FILE] or measures [--project P] (got " + got + ")");
  }
  ci_check_options opt;
  if (args.size() > 2) {
    return error(errc::invalid_argument, "ci check takes at most one FILE");
  }
  if (args.size() == 2) {
    if (args[1].empty() || args[1].starts_with("-")) {
      return error(errc::invalid_argument,
                   "ci check: \"" + args[1] + "\" is not a file name; give the pipeline file");
    }
    opt.file = args[1];
  }
  return opt;
}

std::string ci_summary(const coordinator::pipeline_spec& spec, std::string_view file) {
  std::size_t shards = 0;
  for (const coordinator::job_spec& job : spec.jobs)
    shards += static_cast<std::size_t>(job.parallel);
  std::string out = "ci: " + std::string(file) + " is valid: " + plural(spec.jobs.size(), "job");
  if (shards != spec.jobs.size()) out += " (" + std::to_string(shards) + " with shards)";
  if (spec.image) {
    out += ", image " + *spec.image;
  } else if (spec.build) {
    out += ", image built from " + spec.build->file + " (context " + spec.build->context + ")";
  } else {
    out += ", each job with its own image";
  }
  if (spec.keep_going) out += ", keep_going";
  return out;
}

int run_ci_check(const ci_check_options& opt) {
  auto text = read_file(opt.file);
  if (!text) {
    std::cerr << "pantry: " << text.error().message << '\n';
    return kExitBadSpec;
  }
  auto spec = coordinator::parse_pipeline_spec(*text, opt.file);
  if (!spec) {
    std::istringstream lines(spec.error().message);
    for (std::string line; std::getline(lines, line);)
      std::cerr << "pantry: " << line << '\n';
    return kExitBadSpec;
  }
  std::cout << ci_summary(*spec, opt.file) << '\n';
  return kExitOk;
}

}  // namespace pantry::cli
