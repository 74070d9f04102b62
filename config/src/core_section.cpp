// The core section: listen:, data_dir:, server: (pantry's HTTP server), upstream: (the client
// every upstream is fetched with) and cache:.

#include "emit.h"
#include "message.h"
#include "section.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cctype>
#include <optional>
#include <string>
#include <utility>

namespace pantry::config {

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::trace:
      return "trace";
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "info";
}

namespace detail {
namespace {

// Ranges of the whole-number settings.
constexpr unsigned kMaxServerThreads = 256;
constexpr unsigned kMaxIdleConnections = 1024;

constexpr std::array<std::string_view, 6> kServerKeys = {
    "threads", "header_timeout", "idle_timeout", "shutdown_grace", "access_log", "log_level"};
constexpr std::array<std::string_view, 4> kClientKeys = {"connect_timeout", "header_timeout",
                                                         "idle_timeout", "max_idle_connections"};
constexpr std::array<std::string_view, 1> kCacheKeys = {"max_size"};

constexpr std::array<log_level, 6> kLogLevels = {log_level::trace, log_level::debug,
                                                 log_level::info,  log_level::warn,
                                                 log_level::error, log_level::off};
constexpr std::string_view kLogLevelNames = "trace, debug, info, warn, error or off";
// Names other loggers use for the same levels (Python's logging, syslog, spdlog's long forms),
// which are suggested, not taken: the file has one spelling of each.
constexpr std::array<std::pair<std::string_view, log_level>, 6> kLogLevelAliases = {{
    {"warning", log_level::warn},
    {"err", log_level::error},
    {"critical", log_level::error},
    {"fatal", log_level::error},
    {"notice", log_level::info},
    {"none", log_level::off},
}};

// The level `word` (any case) most likely means, for "did you mean ...?".
std::optional<log_level> likely_log_level(std::string_view word) {
  std::string lower(word);
  for (char& ch : lower)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& [alias, level] : kLogLevelAliases) {
    if (alias == lower) return level;
  }
  std::array<std::string_view, kLogLevels.size()> names;
  for (std::size_t i = 0; i < kLogLevels.size(); ++i)
    names[i] = to_string(kLogLevels[i]);
  const auto near = nearest(lower, names);
  for (log_level l : kLogLevels) {
    if (near && to_string(l) == *near) return l;
  }
  return std::nullopt;
}

std::optional<log_level> read_log_level(reader& r, const entry& e) {
  auto s = r.as_scalar(e, kLogLevelNames);
  if (!s) return std::nullopt;
  for (log_level l : kLogLevels) {
    if (to_string(l) == *s) return l;
  }
  std::string message = quote(*s) + " is not a log level; use " + std::string(kLogLevelNames);
  if (auto likely = likely_log_level(*s)) {
    message += " (did you mean " + std::string(to_string(*likely)) + "?)";
  }
  r.fail(e, std::move(message));
  return std::nullopt;
}

void read_listen(reader& r, const entry& e, config& c) {
  auto s = r.as_scalar(e, "HOST:PORT, e.g. 0.0.0.0:8585");
  if (!s) return;
  auto addr = parse_listen(*s);
  if (!addr) {
    r.fail(e, addr.error().message);
    return;
  }
  c.listen = *addr;
}

void read_data_dir(reader& r, const entry& e, config& c) {
  if (auto s = r.as_text(e, "a directory, e.g. ./pantry-data")) {
    c.data_dir = std::move(*s);
    // The runner's places are derived from it (runner_section.cpp's check).
    r.note(e.path, e.mark());
  }
}

void read_server(reader& r, const entry& e, config& c) {
  server_config& sc = c.server;
  r.read_map(e, kServerKeys, [&](const entry& f) {
    if (f.key == "threads") {
      const std::string range = "use 0 for one thread per CPU core, or a number from 1 to " +
                                std::to_string(kMaxServerThreads);
      if (auto n = r.read_count(f, 0, kMaxServerThreads, range)) sc.threads = *n;
    } else if (f.key == "header_timeout") {
      if (auto d = r.read_positive_duration(
              f, "would close every connection before its request arrives", "30s")) {
        sc.header_timeout = *d;
      }
    } else if (f.key == "idle_timeout") {
      if (auto d = r.read_positive_duration(
              f, "would close every keep-alive connection between requests", "60s")) {
        sc.idle_timeout = *d;
      }
    } else if (f.key == "shutdown_grace") {
      if (auto d = r.read_positive_duration(
              f, "would cut off every response in flight when pantry stops", "10s")) {
        sc.shutdown_grace = *d;
      }
    } else if (f.key == "access_log") {
      if (auto b = r.read_bool(f)) sc.access_log = *b;
    } else if (f.key == "log_level") {
      if (auto l = read_log_level(r, f)) sc.log_level = *l;
    }
  });
}

void read_upstream(reader& r, const entry& e, config& c) {
  upstream_config& uc = c.upstream;
  r.read_map(e, kClientKeys, [&](const entry& f) {
    if (f.key == "connect_timeout") {
      if (auto d = r.read_positive_duration(f, "would fail every connection", "10s")) {
        uc.connect_timeout = *d;
      }
    } else if (f.key == "header_timeout") {
      if (auto d = r.read_positive_duration(f, "would fail every upstream request", "30s")) {
        uc.header_timeout = *d;
      }
    } else if (f.key == "idle_timeout") {
      if (auto d = r.read_positive_duration(f, "would fail every download", "30s")) {
        uc.idle_timeout = *d;
      }
    } else if (f.key == "max_idle_connections") {
      const std::string range =
          "use a number from 1 to " + std::to_string(kMaxIdleConnections) + ", e.g. 16";
      if (auto n = r.read_count(f, 1, kMaxIdleConnections, range)) uc.max_idle_connections = *n;
    }
  });
}

void read_cache(reader& r, const entry& e, config& c) {
  r.read_map(e, kCacheKeys, [&](const entry& f) {
    auto size = r.read_size(f, "50GiB");
    if (!size) return;
    if (*size == 0) {
      r.fail(f, quote(f.value.Scalar()) +
                    " is zero, which would cache nothing; set a positive size, e.g. 50GiB");
      return;
    }
    c.cache.max_size = *size;
  });
}

void emit_listen(YAML::Emitter& out, const config& c, secrets) {
  out << c.listen.str();
}

void emit_data_dir(YAML::Emitter& out, const config& c, secrets) {
  out << c.data_dir;
}

void emit_server(YAML::Emitter& out, const config& c, secrets) {
  out << YAML::BeginMap;
  emit_key(out, "threads", c.server.threads);
  emit_key(out, "header_timeout", format_duration(c.server.header_timeout));
  emit_key(out, "idle_timeout", format_duration(c.server.idle_timeout));
  emit_key(out, "shutdown_grace", format_duration(c.server.shutdown_grace));
  emit_key(out, "access_log", c.server.access_log);
  emit_key(out, "log_level", std::string(to_string(c.server.log_level)));
  out << YAML::EndMap;
}

void emit_upstream(YAML::Emitter& out, const config& c, secrets) {
  out << YAML::BeginMap;
  emit_key(out, "connect_timeout", format_duration(c.upstream.connect_timeout));
  emit_key(out, "header_timeout", format_duration(c.upstream.header_timeout));
  emit_key(out, "idle_timeout", format_duration(c.upstream.idle_timeout));
  emit_key(out, "max_idle_connections", c.upstream.max_idle_connections);
  out << YAML::EndMap;
}

void emit_cache(YAML::Emitter& out, const config& c, secrets) {
  out << YAML::BeginMap;
  emit_key(out, "max_size", format_size(c.cache.max_size));
  out << YAML::EndMap;
}

constexpr std::array<top_level_key, 5> kKeys = {{
    {"listen", read_listen, emit_listen},
    {"data_dir", read_data_dir, emit_data_dir},
    {"server", read_server, emit_server},
    {"upstream", read_upstream, emit_upstream},
    {"cache", read_cache, emit_cache},
}};

constexpr std::array<key_set, 3> kMaps = {{
    {"server", kServerKeys},
    {"upstream", kClientKeys},
    {"cache", kCacheKeys},
}};

}  // namespace

constinit const section core_section = {.keys = kKeys, .maps = kMaps};

}  // namespace detail
}  // namespace pantry::config
