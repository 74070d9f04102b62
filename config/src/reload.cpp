// Which settings a reload changes live and which wait for a restart (pantry/config/reload.h).

#include "pantry/config/reload.h"

#include <algorithm>
#include <sstream>
#include <string_view>
#include <utility>

namespace pantry::config {
namespace {

std::string text(bool b) {
  return b ? "true" : "false";
}
std::string text(unsigned n) {
  return std::to_string(n);
}
std::string text(std::chrono::seconds d) {
  return format_duration(d);
}
std::string text(const std::string& s) {
  return s;
}
std::string text(const listen_address& a) {
  return a.str();
}

std::string text(const std::vector<pypi_hosted>& hosted) {
  std::string out = "[";
  for (const auto& h : hosted) {
    if (out.size() > 1) out += ", ";
    out += h.name;
  }
  return out + "]";
}

// The names of the hosted indexes, in order.
std::vector<std::string> names_of(const std::vector<pypi_hosted>& hosted) {
  std::vector<std::string> names;
  for (const auto& h : hosted)
    names.push_back(h.name);
  return names;
}

// The runner section but `enabled`, for comparing the rest of it whole.
runner_config without_enabled(runner_config r) {
  r.enabled = false;
  return r;
}

}  // namespace

std::string_view to_string(reload_outcome o) noexcept {
  switch (o) {
    case reload_outcome::applied:
      return "applied";
    case reload_outcome::needs_restart:
      return "needs_restart";
    case reload_outcome::refused:
      return "refused";
  }
  return "refused";
}

reload_plan plan_reload(const config& running, const config& wanted,
                        std::uint64_t cache_size_limit) {
  reload_plan plan{wanted, {}, {}};
  config& next = plan.next;
  const auto live = [&](std::string_view key, bool same) {
    if (!same) plan.changed.emplace_back(key);
  };
  // A restart-only setting: a difference is reported and `next` gets the running value back.
  const auto keep = [&]<class T>(std::string_view key, const T& now, T& want) {
    if (now == want) return;
    restart_change c{std::string(key), {}, {}};
    if constexpr (requires { text(now); }) {
      c.running = text(now);
      c.wanted = text(want);
    }
    plan.needs_restart.push_back(std::move(c));
    want = now;
  };

  keep("listen", running.listen, next.listen);
  keep("data_dir", running.data_dir, next.data_dir);
  keep("server.threads", running.server.threads, next.server.threads);
  keep("server.header_timeout", running.server.header_timeout, next.server.header_timeout);
  keep("server.idle_timeout", running.server.idle_timeout, next.server.idle_timeout);
  keep("server.shutdown_grace", running.server.shutdown_grace, next.server.shutdown_grace);
  // The server reads both per request (an atomic flag and spdlog's atomic level).
  live("server.access_log", running.server.access_log == next.server.access_log);
  live("server.log_level", running.server.log_level == next.server.log_level);
  keep("upstream.connect_timeout", running.upstream.connect_timeout, next.upstream.connect_timeout);
  keep("upstream.header_timeout", running.upstream.header_timeout, next.upstream.header_timeout);
  keep("upstream.idle_timeout", running.upstream.idle_timeout, next.upstream.idle_timeout);
  keep("upstream.max_idle_connections", running.upstream.max_idle_connections,
       next.upstream.max_idle_connections);
  // The cache's map size is fixed at open, from the quota: a larger quota than it holds is
  // capped, and the rest waits for a restart.
  if (next.cache.max_size > cache_size_limit && next.cache.max_size != running.cache.max_size) {
    const std::uint64_t capped = std::max(cache_size_limit, running.cache.max_size);
    plan.needs_restart.push_back(
        {"cache.max_size", format_size(capped), format_size(next.cache.max_size)});
    next.cache.max_size = capped;
  }
  live("cache.max_size", running.cache.max_size == next.cache.max_size);

  const pypi_config& rp = running.pypi;
  pypi_config& np = next.pypi;
  live("pypi.upstreams", rp.upstreams == np.upstreams);
  live("pypi.index_ttl", rp.index_ttl == np.index_ttl);
  live("pypi.negative_ttl", rp.negative_ttl == np.negative_ttl);
  live("pypi.offline", rp.offline == np.offline);
  live("pypi.routes", rp.routes == np.routes);
  // Each hosted index is a route of the server, installed once: its name needs a restart, its
  // uploaders and merge list do not.
  if (names_of(rp.hosted) == names_of(np.hosted)) {
    live("pypi.hosted", rp.hosted == np.hosted);
  } else {
    keep("pypi.hosted", rp.hosted, np.hosted);
  }

  const oci_config& ro = running.oci;
  oci_config& no = next.oci;
  live("oci.default_upstream", ro.default_upstream == no.default_upstream);
  live("oci.upstreams", ro.upstreams == no.upstreams);
  live("oci.tag_ttl", ro.tag_ttl == no.tag_ttl);
  keep("oci.hosted.prefix", ro.hosted.prefix, no.hosted.prefix);
  live("oci.hosted.users", ro.hosted.users == no.hosted.users);
  live("oci.hosted.pull_auth", ro.hosted.pull_auth == no.hosted.pull_auth);
  live("oci.hosted.token_key", ro.hosted.token_key == no.hosted.token_key);

  keep("runner.enabled", running.runner.enabled, next.runner.enabled);
  if (without_enabled(running.runner) != without_enabled(next.runner)) {
    keep("runner", running.runner, next.runner);
  }

  const ci_config& rc = running.ci;
  ci_config& nc = next.ci;
  keep("ci.enabled", rc.enabled, nc.enabled);
  keep("ci.slots", rc.slots, nc.slots);
  live("ci.tokens", rc.tokens == nc.tokens);
  live("ci.secrets", rc.secrets == nc.secrets);
  keep("ci.runner_timeout", rc.runner_timeout, nc.runner_timeout);
  keep("ci.logs", rc.log_limits, nc.log_limits);
  keep("ci.artifacts", rc.artifact_limits, nc.artifact_limits);
  keep("ci.runner_of", rc.runner_of, nc.runner_of);
  live("ci.quarantine", rc.quarantine == nc.quarantine);
  live("ci.quarantine_exit_passes", rc.quarantine_exit_passes == nc.quarantine_exit_passes);

  // The schedule inside serve (pins.enabled) runs on the section it started with.
  keep("pins", running.pins, next.pins);
  return plan;
}

result<void> check_reloaded(const config& next, std::string_view source) {
  auto again = parse(to_yaml(next, secrets::shown), source);
  if (again) return {};
  // The positions are of the merged text, which is nobody's file: drop them, keep the keys.
  std::istringstream lines(again.error().message);
  std::string out, line;
  const std::string prefix = std::string(source) + ":";
  while (std::getline(lines, line)) {
    if (line.starts_with(prefix)) {
      auto rest = std::string_view(line).substr(prefix.size());
      // "LINE:COL: "
      for (int colons = 0; colons < 2 && !rest.empty();) {
        if (rest.front() == ':') ++colons;
        rest.remove_prefix(1);
      }
      if (rest.starts_with(' ')) rest.remove_prefix(1);
      line = std::string(rest);
    }
    out += std::string(source) + ": " + line +
           " (with the settings that need a restart kept at their running values)\n";
  }
  if (!out.empty()) out.pop_back();
  return error(errc::config_error, out);
}

}  // namespace pantry::config
