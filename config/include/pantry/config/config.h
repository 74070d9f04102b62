#pragma once

// pantry's configuration: YAML in, a typed and validated `config` out.
//
// The defaults are deploy/pantry.example.yaml, compiled into the binary (embedded_defaults()).
// A user's file is laid over them: a key it sets replaces the default, a list replaces the whole
// default list. Every error names the file, line and column, the key and the bad value.
//
// Each top-level section is read, checked and written by its own file, config/src/
// <name>_section.cpp, listed in config/src/sections.def (config/src/section.h tells how to add
// one).

#include "pantry/error.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::config {

struct listen_address {
  std::string host;  // "0.0.0.0", "127.0.0.1", "::", "localhost"
  std::uint16_t port = 0;

  // "host:port", or "[v6]:port" for an IPv6 literal.
  std::string str() const;
  friend bool operator==(const listen_address&, const listen_address&) = default;
};

struct pypi_upstream {
  std::string name;  // appears in file URLs (/files/<name>/…): [a-z0-9._-]+, not only dots
  std::string url;   // simple index root, http:// or https://, ends with '/'
  std::optional<std::string> ca_file;  // PEM bundle to verify the upstream's TLS certificate
  // True: another pantry's hosted index (url http://<owner>/<index>/simple/), asked first for
  // every project, before the routes and the other upstreams. A project it has is served from it
  // alone; a 404 lets the others answer; a failure with no fresh 404 cached answers 502 (never
  // another index's project of that name). At most one per config; no route may name it.
  bool hosted = false;
  friend bool operator==(const pypi_upstream&, const pypi_upstream&) = default;
};

// Pins the projects whose names match `pattern` to one upstream: they are looked up there only,
// never in the other upstreams, so a private name cannot be answered by a public index.
struct pypi_route {
  // A glob (see glob_match) over PEP 503-normalized project names: a-z, 0-9 and '-' (not first or
  // last, never "--"), with '*', '?' and '[...]'; patterns are unique within pypi.routes.
  std::string pattern;
  std::string upstream;  // the name of one of pypi.upstreams
  friend bool operator==(const pypi_route&, const pypi_route&) = default;
};

// A Python package index pantry hosts itself (pypi.hosted): `twine upload --repository-url
// http://<pantry>/<name>/` stores files there, and a project uploaded to it is served on
// /simple/<project>/ from the hosted index alone, never merged with an upstream's files.
struct pypi_hosted {
  // The index's URL prefix /<name>/: [a-z0-9][a-z0-9._-]* (at most 64), unique among the hosted
  // indexes, no pypi.upstreams name and none of pantry's own first path segments (simple, files,
  // pypi, v2, auth, api, healthz, metrics).
  std::string name;
  // The users who may upload and yank: names of oci.hosted.users (same Basic auth, the token as
  // password); at least one.
  std::vector<std::string> uploaders;
  // Globs (as pypi.routes patterns) of the projects whose pages also list the upstreams' files,
  // after the hosted ones (a hosted file name wins); empty: none, every hosted project is served
  // from this index alone.
  std::vector<std::string> merge;
  friend bool operator==(const pypi_hosted&, const pypi_hosted&) = default;
};

struct pypi_config {
  std::vector<pypi_upstream> upstreams;  // priority order; names unique; at most one hosted
  std::chrono::seconds index_ttl{0};     // 0: revalidate an index page on every request
  // How long a 404 or 410 from an index is remembered before asking it again; 0: not remembered.
  std::chrono::seconds negative_ttl{0};
  bool offline = false;
  // The first route whose pattern matches a project's normalized name decides its one upstream;
  // a project no route matches is looked up in `upstreams` in priority order. May be empty.
  std::vector<pypi_route> routes;
  std::vector<pypi_hosted> hosted;  // names unique; checked first for every project
  friend bool operator==(const pypi_config&, const pypi_config&) = default;
};

struct oci_upstream {
  std::string name;  // the registry's name as clients know it: docker.io, ghcr.io, …; [a-z0-9._-]+
  std::string url;   // base URL, http:// or https://, no path (not even a trailing '/')
  std::optional<std::string> ca_file;
  // Credentials for the upstream (Basic, or for its Bearer token endpoint); both or neither.
  // Content pulled with them is served only to clients that authenticate to pantry.
  std::string username;
  std::string password;
  friend bool operator==(const oci_upstream&, const oci_upstream&) = default;
};

// A user who may push to hosted repositories (and pull credentialed content): Basic
// "name:token", or a Bearer token from pantry's token endpoint.
struct oci_user {
  std::string name;   // [A-Za-z0-9._-]+, unique
  std::string token;  // at least 16 characters
  friend bool operator==(const oci_user&, const oci_user&) = default;
};

struct oci_hosted {
  // Repository names that start with it are hosted by pantry, not proxied: lowercase, ends with
  // '/'.
  std::string prefix;
  std::vector<oci_user> users;
  bool pull_auth = false;  // true: pulling hosted images needs a user too
  // Signs the tokens /auth/token issues; at least 32 characters. Set the same on every instance
  // behind one load balancer, so that each accepts the tokens the others issued. Empty: a key
  // generated into the data dir (registry-token.key) at first start and kept across restarts.
  std::string token_key;
  friend bool operator==(const oci_hosted&, const oci_hosted&) = default;
};

struct oci_config {
  std::string default_upstream;         // must name one of `upstreams`
  std::vector<oci_upstream> upstreams;  // names unique
  std::chrono::seconds tag_ttl{0};
  oci_hosted hosted;
  friend bool operator==(const oci_config&, const oci_config&) = default;
};

// How much pantry logs (`server.log_level`): spdlog's levels, each also logging those after it;
// `off` logs nothing. The access log (server.access_log) is not bound by it.
enum class log_level { trace, debug, info, warn, error, off };
// "trace", "debug", "info", "warn", "error", "off".
std::string_view to_string(log_level l) noexcept;

// The HTTP server on `listen`.
struct server_config {
  unsigned threads = 0;                    // 0: one per CPU core; else 1..256
  std::chrono::seconds header_timeout{0};  // > 0: time a client has to send a request's header
  std::chrono::seconds idle_timeout{0};    // > 0: a keep-alive connection idle this long closes
  std::chrono::seconds shutdown_grace{0};  // > 0: on SIGTERM, time in-flight responses have left
  bool access_log = false;                 // one log line per request, whatever log_level says
  config::log_level log_level = config::log_level::info;  // pantry's own log lines
  friend bool operator==(const server_config&, const server_config&) = default;
};

// The HTTP client pantry reaches every upstream (PyPI indexes and registries) with.
struct upstream_config {
  std::chrono::seconds connect_timeout{0};  // > 0: TCP connect and TLS handshake
  std::chrono::seconds header_timeout{0};   // > 0: from request sent to response header
  std::chrono::seconds idle_timeout{0};     // > 0: no body byte for this long fails the fetch
  unsigned max_idle_connections = 0;        // pooled keep-alive connections per host, 1..1024
  friend bool operator==(const upstream_config&, const upstream_config&) = default;
};

struct cache_config {
  std::uint64_t max_size = 0;  // bytes of cached blobs kept; LRU eviction above it
  friend bool operator==(const cache_config&, const cache_config&) = default;
};

// What a step gets when neither it nor `pantry run` says otherwise.
struct runner_step_defaults {
  std::uint64_t memory = 0;  // bytes; at least 6MiB (docker's minimum), the tmpfs included
  double cpus = 0;           // CPU time per period, e.g. 1.5; 0: no limit, else at least 0.01
  unsigned pids_limit = 0;   // at least 1
  std::chrono::seconds timeout{0};  // 0: none
  // Bytes of the tmpfs that holds the step's writes (the overlay's upper directory). Its pages
  // are charged to the step's memory cgroup, so they count against `memory`. At least 1MiB.
  std::uint64_t tmpfs_size = 0;
  friend bool operator==(const runner_step_defaults&, const runner_step_defaults&) = default;
};

// The unpacked-layer store (orchestrator/runner's layer_store).
struct runner_layers {
  std::string dir;             // as written; a relative path is relative to data_dir
  std::uint64_t max_size = 0;  // bytes of unpacked layers kept; 0: no limit
  friend bool operator==(const runner_layers&, const runner_layers&) = default;
};

// The built-in runner: `pantry run`, the RUN steps of `pantry build`, jobs.
//
// runc_root, state_dir and cgroup_parent are pantry's own places on the host: a runner removes
// whatever a crashed pantry left in them when it starts, so two pantrys must never share them.
// Left unset (nullopt) they are derived from data_dir (runner_places_for()), so pantrys with
// different data dirs never collide. A value equal to the derived one reads as unset, so the
// output of to_yaml() keeps following data_dir.
struct runner_config {
  bool enabled = false;
  std::string runc;                          // absolute path of the runc binary
  std::optional<std::string> runc_root;      // absolute; `runc --root`
  std::optional<std::string> state_dir;      // absolute; bundles and scratch; best on a tmpfs
  std::optional<std::string> cgroup_parent;  // one path component: [A-Za-z0-9_.-]+
  runner_layers layers;
  std::uint16_t job_port = 0;  // 1..65535: where pantry listens in an isolated job's netns
  std::uint64_t max_line = 0;  // bytes; longer output lines are cut; at least 80
  runner_step_defaults defaults;
  friend bool operator==(const runner_config&, const runner_config&) = default;
};

// What a CI token lets its holder do (`ci.tokens`).
enum class ci_role {
  submit,  // submit and cancel pipelines, and everything `read` may
  read,    // list pipelines and jobs, follow logs, download artifacts
  runner,  // register as a remote runner and take jobs
};
// "submit", "read", "runner".
std::string_view to_string(ci_role role) noexcept;

struct ci_token {
  std::string name;   // is_ci_name(); unique; names who did what in logs and records
  std::string token;  // at least 16 characters; unique
  ci_role role = ci_role::read;
  friend bool operator==(const ci_token&, const ci_token&) = default;
};

// How much of one kind of job output (logs, artifacts) the coordinator keeps.
struct ci_storage_limits {
  std::uint64_t max_job = 0;         // bytes per job, > 0: a log is cut there, artifacts refused
  std::chrono::seconds keep_for{0};  // > 0: a finished job's output older than this is removed
  std::uint64_t max_total = 0;       // bytes of all jobs, >= max_job: the oldest go first above it
  friend bool operator==(const ci_storage_limits&, const ci_storage_limits&) = default;
};

// `ci.runner_of`: this pantry as a remote runner (`pantry runner`) of another pantry's
// coordinator. With `url` set, its own coordinator is off: its runner takes jobs from there.
struct ci_runner_of {
  std::string url;     // the coordinator's base URL, "http(s)://HOST[:PORT]"; "" for none
  std::string token;   // a token of role runner in the coordinator's ci.tokens; set iff url is
  unsigned slots = 0;  // jobs run at once: 0 = one per CPU core; <= 1024
  friend bool operator==(const ci_runner_of&, const ci_runner_of&) = default;
};

// The CI coordinator (orchestrator/coordinator): pipelines from .pantry.yml on the built-in
// runner and remote ones.
struct ci_config {
  bool enabled = false;
  unsigned slots = 0;            // the built-in runner's job slots: 0 = one per CPU core; <= 1024
  std::vector<ci_token> tokens;  // may be empty; names and tokens unique
  // Secret name (is_ci_name()) -> absolute path of the file holding its value, read when a job
  // that names the secret in its `secrets:` starts.
  std::map<std::string, std::string> secrets;
  std::chrono::seconds runner_timeout{0};  // > 0: a runner silent this long loses its jobs
  ci_storage_limits log_limits;
  ci_storage_limits artifact_limits;
  ci_runner_of runner_of;
  // `ci.quarantine`: project (as its pipelines name it) -> test ids (the JUnit/pytest ids that
  // `pantry tests` shows) whose failures do not fail their job; merged with the API's list.
  std::map<std::string, std::vector<std::string>> quarantine;
  // A quarantined test that passed this many of its runs in a row leaves quarantine; >= 1.
  unsigned quarantine_exit_passes = 10;
  friend bool operator==(const ci_config&, const ci_config&) = default;
};

// True iff `name` can name a CI job, secret or token: 1 to 63 of [A-Za-z0-9_.-], not "." or "..",
// so that it is a file name (a secret is the file /run/secrets/NAME in a job) and safe in URLs,
// keys and messages as it is.
bool is_ci_name(std::string_view name) noexcept;

// Which pre-releases the pin bot proposes (`pins.prereleases`).
enum class pins_prereleases {
  never,      // none, even for a pin that is one
  if_pinned,  // only as the upgrade of a pin that is itself a pre-release (PEP 440's rule)
  always,     // any newer version
};
// "never", "if_pinned", "always".
std::string_view to_string(pins_prereleases p) noexcept;

// Where the pin bot opens pull requests (`pins.repositories[].forge`).
enum class pins_forge_kind { none, github, gitlab, gitea };
// "none", "github", "gitlab", "gitea".
std::string_view to_string(pins_forge_kind k) noexcept;

struct pins_forge {
  pins_forge_kind kind = pins_forge_kind::none;  // none: branches only, no pull requests
  std::string api;         // the REST API's base URL, http(s)://, e.g. https://api.github.com
  std::string repository;  // "OWNER/NAME" (GitLab: the project's path, groups included)
  std::string token_file;  // absolute path of the file holding the API token (a secret)
  friend bool operator==(const pins_forge&, const pins_forge&) = default;
};

// A repository whose pins the pin bot keeps current (`pins.repositories`).
struct pins_repository {
  std::string name;        // is_ci_name(); unique; the project of its pipelines
  std::string path;        // an absolute path of a local clone; or
  std::string url;         // a git URL (http(s)://), without credentials; exactly one is set
  std::string token_file;  // url only: absolute path of the file holding an HTTP token; "" none
  std::string branch;      // the base branch; "" for the remote's default
  // The files it pins, relative to the repository root, without "..": requirements files,
  // Containerfiles, .pantry.yml. At least one; unique.
  std::vector<std::string> files;
  pins_forge forge;
  friend bool operator==(const pins_repository&, const pins_repository&) = default;
};

// Upgrades whose names match `match` (glob_match on PEP 503-normalized names) go into one patch,
// on the branch pantry/pins/group/<name>-<hash of its upgrades>.
struct pins_group {
  std::string name;   // is_ci_name(); unique
  std::string match;  // a glob, e.g. "pytest*"
  friend bool operator==(const pins_group&, const pins_group&) = default;
};

// The pin bot (orchestrator/pins): one CI-checked patch per upgrade, on a schedule.
struct pins_config {
  bool enabled = false;
  std::string schedule;  // cron syntax (pantry/config/cron.h), as written, trimmed
  // The Python versions the pins are for, "MAJOR.MINOR" (or "MAJOR.MINOR.MICRO"); at least one.
  std::vector<std::string> python;
  // The platforms the pins are for, "PLATFORM-MACHINE" with PLATFORM linux, macos or windows
  // (e.g. linux-x86_64, macos-arm64); at least one.
  std::vector<std::string> platforms;
  pins_prereleases prereleases = pins_prereleases::if_pinned;
  std::chrono::seconds min_release_age{0};    // a release younger than this is not proposed yet
  unsigned max_open = 0;                      // open branches at once (each costs a CI run), 1..100
  std::vector<pins_group> groups;             // names unique
  std::vector<std::string> ignore;            // globs of names never upgraded
  std::vector<pins_repository> repositories;  // names unique
  friend bool operator==(const pins_config&, const pins_config&) = default;
};

struct config {
  listen_address listen;
  std::string data_dir;
  server_config server;
  upstream_config upstream;
  cache_config cache;
  pypi_config pypi;
  oci_config oci;
  runner_config runner;
  ci_config ci;
  pins_config pins;
  friend bool operator==(const config&, const config&) = default;
};

// The YAML text of the compiled-in defaults (deploy/pantry.example.yaml, comments included).
std::string_view embedded_defaults();

// The runner's places on the host, every one settled.
struct runner_places {
  std::string runc_root;
  std::string state_dir;
  std::string cgroup_parent;
  std::string layers_dir;  // absolute
  friend bool operator==(const runner_places&, const runner_places&) = default;
};

// "3f2a9c0d1e4b": the first 12 hex digits of the sha256 of `data_dir` made absolute (against the
// current directory) and lexically normal, without a trailing '/'. The same directory written
// two ways ("./d", "d/") gives the same ID; symbolic links are not resolved.
std::string data_dir_id(std::string_view data_dir);

// c.runner's places with the unset ones derived from c.data_dir (ID = data_dir_id(c.data_dir)):
// runc_root /run/pantry/ID/runc, state_dir /run/pantry/ID/containers, cgroup_parent pantry-ID;
// and layers.dir made absolute (a relative one is under data_dir). Call it with the data_dir the
// process will use (after a --data-dir flag is applied), from the directory it runs in.
runner_places runner_places_for(const config& c);

// The compiled-in defaults, parsed.
config defaults();

// Parses `yaml` laid over the defaults. `source` names the text in errors (a file path, or
// "<embedded defaults>"). Errors are errc::config_error with one line per problem (up to 20), in
// document order (the checks that need the whole file, such as a route naming an upstream that
// does not exist, run once it reads without a problem, section by section), each of the form
//   "pantry.yaml:4:14: cache.max_size: \"50 GB\" is not a size; use a number with B, KiB, MiB,
//    GiB or TiB, e.g. 50GiB".
// Rules beyond the field comments above: an empty file or an empty section (`cache:` with nothing
// under it) keeps the defaults; an empty scalar (`max_size:`) is an error; booleans are YAML 1.2's
// true/false (YAML 1.1's yes/no/on/off are errors, not guesses); an upstream list must not be
// empty (pypi.routes may be); a repeated key is an error; the text must be UTF-8, at most 1MiB,
// one YAML document.
// An OCI url's single trailing '/' is dropped. The runner's runc_root and state_dir must not be
// the root, a top-level directory or runc's own /run/runc, and no one of runc_root, state_dir
// and layers.dir may be or hold another (checked with the file's data_dir: a --data-dir applied
// later is not checked). Never throws.
result<config> parse(std::string_view yaml, std::string_view source);

// Reads and parses a file. A missing or unreadable file is errc::config_error naming the path
// and the OS error.
result<config> load_file(const std::string& path);

// What to_yaml() writes in place of a secret (an oci upstream's password, a hosted user's token)
// when asked to hide them. parse() refuses it as a secret's value, naming the key, so a config
// copied from `pantry config show` cannot run with the placeholder as its password.
inline constexpr std::string_view kHiddenSecret = "<hidden>";

enum class secrets { hidden, shown };

// The effective config as YAML. With secrets::shown, parse() reads it back to an equal config
// (for any config that parse() can return, in the same current directory); with secrets::hidden
// every secret is kHiddenSecret. The runner's unset places are written as runner_places_for()
// derives them, with a comment "# derived from data_dir", and a relative layers.dir with the
// absolute path it comes to.
std::string to_yaml(const config& c, secrets s = secrets::hidden);

// "512MiB", "50GiB", "1TiB", "4096", "4096B", "1.5GiB" (binary units; KB/MB/GB are taken as
// their binary counterparts too, as most tools do for cache sizes; units are case-insensitive, and
// a fraction of a unit rounds down to whole bytes). Rejects negatives, overflow, and unknown units
// with a message that quotes the value and shows an example.
result<std::uint64_t> parse_size(std::string_view text);
// "90s", "10m", "2h", "7d", "1h30m", "0s": whole numbers of s, m, h, d, each unit at most once,
// largest first, at most 36500d. A bare number is rejected (say which unit).
result<std::chrono::seconds> parse_duration(std::string_view text);
// "50GiB", "512MiB", "1536KiB", "123B": the largest binary unit that represents `bytes` exactly.
std::string format_size(std::uint64_t bytes);
// "10m", "1h30m", "7d", "0s".
std::string format_duration(std::chrono::seconds d);
// "host:port" or "[v6]:port" with a port in 1..65535 (0 allowed: any free port).
result<listen_address> parse_listen(std::string_view text);

// Whether `name` matches the fnmatch-style glob `pattern`, as pypi.routes are applied: '*' matches
// any run of characters (also none), '?' any one character, "[...]" one character of the set
// ("[a-z0-9]"; "[!...]" negates it; a ']' right after "[" or "[!" is a member; a backwards range
// matches nothing), and any other character itself. A '[' with no ']' after it is a literal '['.
// Byte-wise and case-sensitive: pass the PEP 503-normalized name ("mycorp-tools", not
// "MyCorp_Tools"), as route patterns are written for it. Whole-string match; time at most
// O(pattern size × name size), for any input.
bool glob_match(std::string_view pattern, std::string_view name);

}  // namespace pantry::config
