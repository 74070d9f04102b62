// The public entry points: the embedded defaults, parse() and load_file() (the text as a whole:
// its size, encoding and YAML syntax; the sections read the rest, see section.h), and to_yaml().

#include "pantry/config/config.h"

#include "chars.h"
#include "message.h"
#include "reader.h"
#include "section.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <utility>

namespace pantry::config {
namespace detail {
extern const char kEmbeddedDefaults[];
extern const std::size_t kEmbeddedDefaultsSize;
}  // namespace detail

namespace {

constexpr std::string_view kDefaultsSource = "<embedded defaults>";

// A config file is a page or two of YAML; anything this large is the wrong file, and refusing it
// bounds the parser's time and memory on hostile input.
constexpr std::size_t kMaxInputBytes = 1 << 20;

constexpr yaml::document_kind kConfigDocument = {"config", errc::config_error, kMaxInputBytes};

result<config> config_error(std::string msg) {
  return pantry::error(errc::config_error, std::move(msg));
}

// Parses `yaml` laid over `base`. Never throws.
result<config> parse_over(std::string_view yaml, std::string_view source, const config& base) {
  const std::string src(source);
  try {
    auto root = yaml::load_document(yaml, source, kConfigDocument);
    if (!root) return root.error();
    config c = base;
    detail::reader r(source, detail::all_maps());
    detail::read_document(r, *root, c);
    if (r.problems() > 0) return config_error(r.report());
    return c;
  } catch (const YAML::Exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()) +
                        "; this is a bug in pantry, please report it with the file");
  } catch (const std::exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()));
  }
}

// Whether the defaults set every runner key that has no derived value.
bool runner_set(const runner_config& r) {
  return !r.runc.empty() && !r.layers.dir.empty() && r.job_port != 0 && r.max_line != 0 &&
         r.defaults.memory != 0 && r.defaults.pids_limit != 0 && r.defaults.tmpfs_size != 0;
}

// Whether the defaults set every ci key that must not be zero.
bool ci_set(const ci_config& ci) {
  const auto limits_set = [](const ci_storage_limits& l) {
    return l.max_job != 0 && l.keep_for.count() > 0 && l.max_total != 0;
  };
  return ci.runner_timeout.count() > 0 && limits_set(ci.log_limits) &&
         limits_set(ci.artifact_limits);
}

}  // namespace

std::string_view embedded_defaults() {
  return {detail::kEmbeddedDefaults, detail::kEmbeddedDefaultsSize};
}

config defaults() {
  static const config kDefaults = [] {
    auto c = parse_over(embedded_defaults(), kDefaultsSource, config{});
    // The defaults are part of the binary: if they do not parse, the build is broken.
    if (!c) {
      std::fprintf(stderr, "pantry: the embedded default config is invalid:\n%s\n",
                   c.error().message.c_str());
      std::abort();
    }
    const config& d = *c;
    const bool timeouts_set =
        d.server.header_timeout.count() > 0 && d.server.idle_timeout.count() > 0 &&
        d.server.shutdown_grace.count() > 0 && d.upstream.connect_timeout.count() > 0 &&
        d.upstream.header_timeout.count() > 0 && d.upstream.idle_timeout.count() > 0;
    if (d.listen.host.empty() || d.data_dir.empty() || d.cache.max_size == 0 ||
        d.pypi.upstreams.empty() || d.oci.upstreams.empty() || d.oci.default_upstream.empty() ||
        d.oci.hosted.prefix.empty() || !timeouts_set || d.upstream.max_idle_connections == 0 ||
        !runner_set(d.runner) || !ci_set(d.ci)) {
      std::fprintf(stderr, "pantry: the embedded default config leaves a required key unset\n");
      std::abort();
    }
    return d;
  }();
  return kDefaults;
}

result<config> parse(std::string_view yaml, std::string_view source) {
  try {
    return parse_over(yaml, source, defaults());
  } catch (const std::exception& e) {
    return config_error(std::string(source) + ": cannot read the config: " + e.what());
  }
}

result<config> load_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    return config_error(path + ": cannot open the config file: " + std::strerror(err) +
                        "; check the path and its permissions");
  }
  std::string text;
  std::array<char, 16384> buf;
  int read_errno = 0;
  while (text.size() <= kMaxInputBytes) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
    text.append(buf.data(), n);
    if (n < buf.size()) {
      if (std::ferror(f)) read_errno = errno;
      break;
    }
  }
  std::fclose(f);
  if (read_errno != 0) {
    return config_error(path + ": cannot read the config file: " + std::strerror(read_errno) +
                        "; give the path of a YAML file");
  }
  return parse(text, path);
}

std::string to_yaml(const config& c, secrets shown) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  detail::emit_document(out, c, shown);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace pantry::config
