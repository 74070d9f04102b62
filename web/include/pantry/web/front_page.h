#pragma once

// The front page (`GET /`): what this pantry serves, the settings that point each client at it
// as the request reached it, its upstreams' last answers and failures, and the cache's totals.
// Pure: no sockets, no clock (the caller passes the time and the state it gathered);
// front_service (service.h) gathers and serves it. Every string from the config or the request
// is escaped in the HTML form, and neither form ever holds a secret: no token, no password, no
// user info of an upstream's URL.

#include "pantry/config/config.h"
#include "pantry/config/reload.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::web {

using system_clock = std::chrono::system_clock;

// Where a client reached pantry.
struct base_address {
  std::string scheme = "http";  // "https" behind a TLS proxy that says so
  std::string authority;        // host[:port] as the client named it ("pantry.internal:8585")
  // "scheme://authority", no trailing '/'.
  std::string url() const { return scheme + "://" + authority; }
  // The authority without its port ("pantry.internal", "[::1]").
  std::string host() const;
};

// The address a request reached pantry at: `host_header` when it is a host name, an IPv4
// address or a bracketed IPv6 literal, with an optional port (anything else, such as user info,
// a path or spaces, is not trusted), else `fallback`. `forwarded_proto` is the request's
// X-Forwarded-Proto: "https" (any case) makes the scheme https.
base_address base_address_of(std::string_view host_header, std::string_view forwarded_proto,
                             std::string_view fallback);

// `url` without its user info ("https://u:p@host/simple/" -> "https://host/simple/"). A string
// that does not parse as an absolute URL gives "(not a URL)", so nothing in it can leak.
std::string without_user_info(std::string_view url);

// One configured upstream and what the upstream client last saw from it.
struct upstream_state {
  std::string protocol;      // "pypi" or "oci"
  std::string name;          // as configured
  std::string url;           // without user info
  bool credentials = false;  // pantry authenticates to it (how is never shown)
  std::optional<system_clock::time_point> last_success;
  std::optional<system_clock::time_point> last_failure;
  std::string failure;  // the last failure's message
};

// The configured upstreams, PyPI's first, each in config order, with no health recorded yet.
std::vector<upstream_state> upstreams_of(const config::config& cfg);

// The cache's totals. Hits and misses count answers since this pantry started.
struct cache_totals {
  std::uint64_t bytes = 0;  // of cached blobs
  std::uint64_t quota = 0;  // cache.max_size
  std::uint64_t objects = 0;
  std::uint64_t entries = 0;
  std::uint64_t hits = 0;    // answered from the cache: hit, revalidated, stale
  std::uint64_t misses = 0;  // waited for an upstream fetch: miss, coalesced
};

// The settings for one client: a file to write or a command to run.
struct client_setting {
  std::string id;      // stable, for JSON readers: "pip", "uv", "poetry", "dockerd", …
  std::string client;  // for people: "pip", "containerd (ghcr.io)"
  std::string where;   // "/etc/pip.conf", "shell", "pyproject.toml"
  std::string text;    // exactly what to write or run
};

// The settings that point pip, uv, poetry, dockerd, podman and containerd at this pantry as
// reached at `base`: PyPI's when cfg.pypi has upstreams, one containerd hosts.toml per OCI
// upstream, dockerd's mirror only when the default upstream is docker.io (dockerd mirrors Docker
// Hub alone). Over plain HTTP they carry the insecure/trusted-host lines the clients need.
std::vector<client_setting> client_settings(const config::config& cfg, const base_address& base);

// Everything the page shows.
struct front_page {
  std::string version;
  base_address base;
  std::vector<client_setting> settings;
  std::vector<upstream_state> upstreams;
  cache_totals cache;
  std::string default_oci_upstream;      // served at the registry's root
  std::string oci_hosted_prefix;         // "" when nothing is hosted
  std::vector<std::string> pypi_hosted;  // names of the hosted Python indexes (pypi.hosted)
  bool runner = false;                   // pantry run / pantry build
  bool ci = false;                       // the coordinator's API at /api/v1/
  std::string runner_of;                 // a coordinator this pantry runs jobs for (no user info)
  system_clock::time_point now;
};

// The page's model: the config's parts (settings, upstreams without health, services) at `base`.
// The caller fills in upstream health, cache totals and the time.
front_page make_front_page(const config::config& cfg, const base_address& base,
                           std::string version);

// What `GET /readyz` answers, for load balancers and Kubernetes' readiness probe. pantry is
// ready while its cache answers a read (`cache_problem` is empty): an upstream that fails does
// not make it unready, since it keeps serving what it has cached; such an upstream is listed as
// "failing" (its last request failed), beside "up" (its last one got an answer) and "unknown"
// (not asked since start), and the answer then says "degraded": true. The JSON holds no secret
// (the upstreams as upstreams_of gives them). "config" reports the last reload of the config
// (SIGHUP, `pantry reload`; null before the first): a refused one makes "valid" false, since the
// file on disk is not what runs, but not unready — the config that runs was checked and serves.
struct readiness {
  bool ready = false;  // 200 when true, else 503
  std::string json;    // {"ready", "degraded", "cache", "upstreams": [{protocol, name, url, state,
                       //  last_success, last_failure, failure}], "config": {"valid",
                       //  "last_reload": reload_json()'s object or null}}
};
readiness assess_readiness(const std::vector<upstream_state>& upstreams,
                           const std::string& cache_problem,
                           const std::optional<config::reload_report>& last_reload = {});

// A reload's report as JSON: {"outcome", "source", "at", "error" (refused only), "changed":
// [key…], "needs_restart": [{"key", "running", "wanted"}]}, and a newline. Holds no secret: keys
// only, and values only of the restart-only settings, none of which is a secret.
std::string reload_json(const config::reload_report& report);

// True iff the Accept header lines prefer JSON: application/json is named with q > 0 and at
// least text/html's q (0 when not named). Browsers, curl's `*/*` and no header get HTML.
bool wants_json(const std::vector<std::string_view>& accept_lines);

// The page as a whole HTML document (no scripts, no external assets; see layout.h).
std::string render_html(const front_page& page);
// The same content as a JSON object (times as RFC 3339 UTC strings or null).
std::string render_json(const front_page& page);

}  // namespace pantry::web
