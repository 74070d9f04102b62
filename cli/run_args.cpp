// The arguments of `pantry run` (run.h): in pantry_cli, apart from the command, so that unit
// tests link the parser without the client and the in-process pantry.

#include "pantry/config/config.h"
#include "run.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace pantry::cli {
namespace {

namespace runner = orchestrator::runner;

constexpr std::size_t kMaxSecretFile = std::size_t{1} << 20;

error usage(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

result<std::string> read_secret_file(const std::string& name, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return usage("--secret " + name + ": cannot read " + path);
  std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (value.size() > kMaxSecretFile) {
    return usage("--secret " + name + ": " + path +
                 " has over 1 MiB; a secret is a token or a key");
  }
  return value;
}

}  // namespace

result<run_options> parse_run_args(const std::vector<std::string>& args) {
  run_options o;
  auto& req = o.request;
  auto& step = req.step;
  std::size_t i = 0;
  auto value = [&](const std::string& name,
                   std::optional<std::string>& inline_value) -> result<std::string> {
    if (inline_value) return *inline_value;
    if (i + 1 >= args.size()) return usage("option " + name + " needs a value");
    return args[++i];
  };
  for (; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (!a.starts_with("-")) break;  // the command
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    auto flag = [&](std::string_view name) {
      if (a != name) return false;
      if (inline_value) throw std::invalid_argument(std::string(name) + " takes no value");
      return true;
    };
    try {
      if (flag("--allow-unpinned")) {
        req.allow_unpinned = true;
        continue;
      }
      if (flag("--separate-streams")) {
        req.output = runner::output_mode::separate;
        continue;
      }
      if (flag("--timestamps")) {
        o.timestamps = true;
        continue;
      }
      if (flag("--no-report")) {
        req.environment_report = false;
        continue;
      }
      if (flag("--verbose")) {
        o.verbose = true;
        continue;
      }
    } catch (const std::invalid_argument& e) {
      return usage(e.what());
    }
    auto v = value(a, inline_value);
    if (!v) return v.error();
    if (a == "--image") {
      req.image = *v;
    } else if (a == "--network") {
      auto m = runner::parse_network_mode(*v);
      if (!m) return usage("--network " + *v + ": use isolated, none or host");
      step.network = *m;
    } else if (a == "--memory" || a == "--tmpfs-size") {
      auto size = config::parse_size(*v);
      if (!size) return usage(a + ": " + size.error().message);
      if (a == "--memory") {
        step.memory_bytes = *size;
      } else {
        req.tmpfs_size = *size;
      }
    } else if (a == "--cpus") {
      char* end = nullptr;
      double cpus = std::strtod(v->c_str(), &end);
      if (v->empty() || *end != '\0' || !(cpus > 0)) {
        return usage("--cpus " + *v + ": give a number of CPUs above 0, e.g. 1.5");
      }
      step.cpus = cpus;
    } else if (a == "--pids-limit") {
      char* end = nullptr;
      long long n = std::strtoll(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0' || n < 1) {
        return usage("--pids-limit " + *v + ": give a whole number of at least 1");
      }
      step.pids_limit = n;
    } else if (a == "--timeout") {
      auto d = config::parse_duration(*v);
      if (!d) return usage("--timeout: " + d.error().message);
      req.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
    } else if (a == "--secret") {
      auto eq = v->find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == v->size()) {
        return usage("--secret " + *v + ": give NAME=FILE");
      }
      std::string name = v->substr(0, eq);
      auto secret = read_secret_file(name, v->substr(eq + 1));
      if (!secret) return secret.error();
      req.secrets.push_back({name, std::move(*secret)});
    } else if (a == "--volume" || a == "-v") {
      // HOST:CONTAINER[:ro|rw]
      std::vector<std::string> parts;
      std::stringstream ss(*v);
      for (std::string p; std::getline(ss, p, ':');)
        parts.push_back(p);
      if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
          (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw")) {
        return usage(a + " " + *v + ": give HOST:CONTAINER, HOST:CONTAINER:ro or :rw");
      }
      std::error_code ec;
      auto host = std::filesystem::absolute(parts[0], ec).lexically_normal();
      step.volumes.push_back({host.string(), parts[1], parts.size() == 3 && parts[2] == "ro"});
    } else if (a == "--env" || a == "-e") {
      if (v->find('=') == std::string::npos) {
        return usage(a + " " + *v +
                     ": give KEY=VALUE (nothing of this shell's environment is "
                     "passed on)");
      }
      step.env.push_back(*v);
    } else if (a == "--user" || a == "-u") {
      step.user = *v;
    } else if (a == "--workdir" || a == "-w") {
      step.working_dir = *v;
    } else if (a == "--entrypoint") {
      step.entrypoint = std::vector<std::string>{*v};
    } else if (a == "--project") {
      std::error_code ec;
      auto dir = std::filesystem::absolute(*v, ec).lexically_normal();
      if (ec || !std::filesystem::is_directory(dir, ec)) {
        return usage("--project " + *v + ": not a directory");
      }
      step.project_dir = dir.string();
      if (!step.working_dir) step.working_dir = "/workspace";
    } else if (a == "--config") {
      o.config_file = *v;
    } else if (a == "--data-dir") {
      o.data_dir = *v;
    } else {
      return usage("unknown option " + a);
    }
  }
  for (; i < args.size(); ++i)
    step.argv.push_back(args[i]);
  if (req.image.empty()) return usage("run needs --image NAME@sha256:…");
  return o;
}

}  // namespace pantry::cli
