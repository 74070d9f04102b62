#pragma once

// The image a build writes: the OCI image config as each step of a stage changes it (docker's
// rules, as BuildKit's Dockerfile frontend applies them), the command and environment of a RUN
// step, and the OCI image manifest that ties the config to its layers.
//
// Pure code: documents in, documents out; no file system, no clock. The time in the documents is
// SOURCE_DATE_EPOCH, given by the caller, so that equal inputs give equal bytes and digests on
// every machine.
//
// The config holds the fields BuildKit writes (the OCI image config plus docker's Healthcheck,
// OnBuild and Shell); a base image's other fields (classic docker's container_config,
// docker_version, …) are dropped when it is read, as BuildKit drops them. Documents are written
// canonically: object members sorted by key (bytewise) at every level, no white space, empty
// optional fields left out (as Go's `omitempty` leaves them out), strings as UTF-8 with invalid
// bytes replaced by U+FFFD (as Go's encoder does).
//
// Decisions where pantry differs from BuildKit, each on purpose:
// - History entries carry the comment kHistoryComment, not "buildkit.dockerfile.v0", and RUN,
//   COPY and ADD entries lack BuildKit's " # buildkit" suffix: pantry built them.
// - WORKDIR changes the config only (an empty-layer history entry). BuildKit also writes a layer
//   that creates the directory; pantry leaves that to whoever runs the image: runc creates a
//   missing working directory for RUN steps (so it lands in that step's layer), and docker and
//   podman create it when they start a container.
// - A RUN, COPY or ADD step always has a layer, even an empty one (an empty tar), so that every
//   such history entry has its diff ID.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/builder/substitute.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

inline constexpr std::string_view kImageConfigMediaType =
    "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kImageManifestMediaType =
    "application/vnd.oci.image.manifest.v1+json";
// The `comment` of every history entry pantry writes. Bump the version when what a step writes
// into the config changes meaning.
inline constexpr std::string_view kHistoryComment = "pantry.containerfile.v1";
// The shell of shell-form RUN, CMD and ENTRYPOINT when the config sets no SHELL (Linux).
inline const std::vector<std::string> kDefaultShell = {"/bin/sh", "-c"};

// How a layer's tar is compressed.
enum class layer_compression { none, gzip, zstd };

// application/vnd.oci.image.layer.v1.tar, …tar+gzip, …tar+zstd.
std::string_view layer_media_type(layer_compression compression) noexcept;

// The OCI media type of a layer listed under `media_type` in a base image's manifest, OCI's or
// docker's (application/vnd.docker.image.rootfs.diff.tar.gzip is …layer.v1.tar+gzip), so that an
// image built on a docker-format base has an all-OCI manifest (as BuildKit writes it). Errors
// (errc::invalid_argument, naming the type): any other type, foreign and non-distributable layers
// included (pantry cannot push what it must not distribute).
result<std::string> oci_layer_media_type(std::string_view media_type);

// docker's HealthcheckConfig. A zero duration or retry count means docker's default.
struct health_check {
  // ["NONE"] (checks disabled), ["CMD", args…] or ["CMD-SHELL", command].
  std::vector<std::string> test;
  std::chrono::nanoseconds interval{0};
  std::chrono::nanoseconds timeout{0};
  std::chrono::nanoseconds start_period{0};
  std::chrono::nanoseconds start_interval{0};
  std::int64_t retries = 0;

  friend bool operator==(const health_check&, const health_check&) = default;
};

// One entry of the config's history; "" and false are absent.
struct history_entry {
  std::string created;  // RFC 3339, e.g. "2024-01-01T00:00:00Z"
  std::string created_by;
  std::string author;
  std::string comment;
  bool empty_layer = false;  // true iff the step wrote no layer (no diff ID of its own)

  friend bool operator==(const history_entry&, const history_entry&) = default;
};

// An OCI image config (application/vnd.oci.image.config.v1+json; docker's
// application/vnd.docker.container.image.v1+json has the same fields). Empty strings, vectors
// and maps are absent fields.
struct oci_image_config {
  std::string created;  // RFC 3339; "" while a stage is built (the image gets SOURCE_DATE_EPOCH)
  std::string author;   // MAINTAINER
  std::string architecture;
  std::string os;
  std::string os_version;
  std::vector<std::string> os_features;
  std::string variant;

  // "config": what a container of the image runs with.
  std::string user;
  std::set<std::string> exposed_ports;  // "PORT/PROTO"
  std::vector<std::string> env;         // "NAME=VALUE", in order
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::set<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  bool args_escaped = false;  // docker's Windows flag, set by CMD as BuildKit sets it
  std::optional<health_check> healthcheck;
  std::vector<std::string> on_build;  // ONBUILD triggers of a base image (pantry writes none)
  std::vector<std::string> shell;     // SHELL; empty: kDefaultShell

  // "rootfs" (type "layers"): the diff IDs of the layers, base first.
  std::vector<cache::digest> diff_ids;
  std::vector<history_entry> history;

  friend bool operator==(const oci_image_config&, const oci_image_config&) = default;
};

// Reads an image config blob. Unknown members are ignored and null is an absent member, as Go's
// decoder does. Errors are errc::invalid_argument naming the member and what was expected, e.g.
// "image config: config.Env: expected an array of strings"; diff IDs must be sha256 digests.
result<oci_image_config> parse_image_config(std::string_view json);

// The config as canonical JSON (see the top of this header): equal configs give equal bytes.
// "architecture", "os", "config" and "rootfs" are always written.
std::string serialize(const oci_image_config& config);

// `seconds` since 1970 in RFC 3339 as Go writes a whole second in UTC: "1970-01-01T00:00:00Z".
// `seconds` must be in [0, kMaxSourceDateEpoch].
std::string rfc3339(std::int64_t seconds);

// The last second RFC 3339's four-digit years can write (9999-12-31T23:59:59Z).
inline constexpr std::int64_t kMaxSourceDateEpoch = 253402300799;

// Parses SOURCE_DATE_EPOCH: decimal digits only (as reproducible-builds.org defines it), at most
// kMaxSourceDateEpoch. Anything else is errc::invalid_argument quoting the value.
result<std::int64_t> parse_source_date_epoch(std::string_view text);

// The config a stage FROM scratch starts from, as BuildKit makes it: os "linux", the given
// architecture (GOARCH, e.g. "amd64") and variant (e.g. "v7", or ""), WorkingDir "/", Env
// PATH=<docker's default PATH>.
oci_image_config scratch_config(std::string_view architecture, std::string_view variant = {});

// The config a stage FROM an image starts from, `base` being the image's config as read: its
// `created` dropped, docker's default PATH appended to Env when Env has no PATH (as docker and
// stage_scope do), WorkingDir cleaned. Errors (errc::invalid_argument): a base with ONBUILD
// triggers (docker would run them in this stage; pantry refuses ONBUILD, so it says which
// triggers the base has instead of silently skipping them).
result<oci_image_config> base_image_config(oci_image_config base);

// True iff `step` writes a layer: RUN, COPY and ADD.
bool makes_layer(const instruction& step) noexcept;

// The image config of one stage as its resolved steps are applied in order. A stage built on an
// earlier stage starts from that stage's config() (docker carries its config over, but not
// whether a CMD was set, see apply). Not thread-safe: a value, one per stage being built.
class stage_image {
 public:
  // `start`: scratch_config(), base_image_config(), or an earlier stage's config().
  // `source_date_epoch`: the time every history entry and the image get, in
  // [0, kMaxSourceDateEpoch] (parse_source_date_epoch).
  stage_image(oci_image_config start, std::int64_t source_date_epoch);

  // Applies `step` (from stage_scope::resolve, for this stage, in order) to the config and adds
  // its history entry, the instruction as BuildKit writes it in `created_by` (e.g.
  // `RUN |1 V=2 /bin/sh -c make`, `ENV A=1 B=2`, `CMD ["/bin/sh" "-c" "serve"]`).
  // `layer` is the diff ID of the layer the step wrote: required when makes_layer(step.step)
  // (appended to the diff IDs), refused otherwise (errc::invalid_argument naming the line and
  // keyword). What each instruction sets:
  // - ENV: each NAME=VALUE in order, replacing NAME's entry in place or appending it.
  // - WORKDIR: a relative path is joined to the current WorkingDir; the result cleaned ("." and
  //   ".." resolved, no trailing '/').
  // - USER, STOPSIGNAL, SHELL, MAINTAINER (author): replaced. LABEL: each label set.
  //   EXPOSE: ports added to ExposedPorts; VOLUME: paths added to Volumes.
  // - CMD: Cmd replaced (shell form: the config's shell, or kDefaultShell, + the text);
  //   ArgsEscaped set, as BuildKit sets it.
  // - ENTRYPOINT: Entrypoint replaced likewise; Cmd cleared unless a CMD came before it in this
  //   stage (so an inherited CMD does not become the new entrypoint's arguments: docker's rule).
  // - HEALTHCHECK: replaced; NONE is Test ["NONE"].
  // - ARG, RUN, COPY, ADD: history (and the layer) only.
  result<void> apply(const resolved_step& step, const std::optional<cache::digest>& layer);

  // The config so far, `created` empty (what a later stage built on this one starts from).
  const oci_image_config& config() const noexcept { return config_; }

  // The image: config() with `created` set to SOURCE_DATE_EPOCH.
  oci_image_config image() const;

 private:
  oci_image_config config_;
  std::string created_;
  bool cmd_set_ = false;  // a CMD was applied in this stage
};

// What a RUN step executes.
struct run_command {
  // Shell form: the config's shell (or kDefaultShell) + the command text; exec form: the args as
  // written.
  std::vector<std::string> argv;
  // "NAME=VALUE", in order: the config's Env; then the build args the step uses
  // (resolved_step::build_args_used: ARGs with values that no ENV overrides, sorted by name), as
  // docker puts them in a RUN's environment (and never in the image); then SOURCE_DATE_EPOCH and
  // PIP_NO_CACHE_DIR=1 unless one of those set them. SOURCE_DATE_EPOCH makes Python write
  // hash-based .pyc files, without which no two venvs are equal; pip's cache would only grow the
  // layer. Hand it to the runner as the step's environment (so its defaults do not replace these
  // values).
  std::vector<std::string> env;
  std::string working_dir;  // the config's WorkingDir, "/" when it has none
  std::string user;         // the config's User, "" for root
};

// The command of `step`, a resolved RUN, on top of `config` (the stage's config before the step).
// Errors: errc::invalid_argument when `step` is no RUN or its argv is empty.
result<run_command> run_command_for(const oci_image_config& config, const resolved_step& step,
                                    std::int64_t source_date_epoch);

// A content descriptor in a manifest.
struct descriptor {
  std::string media_type;
  cache::digest digest;
  std::uint64_t size = 0;

  friend bool operator==(const descriptor&, const descriptor&) = default;
};

// The OCI image manifest (schemaVersion 2, mediaType kImageManifestMediaType) of the config blob
// `config` (serialize()'s output is of media type kImageConfigMediaType) and `layers` (base
// first, in the order of the config's diff IDs; layer_info::to_descriptor() for built ones,
// oci_layer_media_type() for a base image's), with `annotations` when there are any, in the
// canonical form of serialize().
std::string image_manifest(const descriptor& config, const std::vector<descriptor>& layers,
                           const std::map<std::string, std::string>& annotations = {});

}  // namespace pantry::orchestrator::builder
