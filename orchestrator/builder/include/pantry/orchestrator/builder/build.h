#pragma once

// `pantry build`: a Containerfile and a build context in, an image in pantry's hosted registry
// out. The step loop (which stages, which keys, hit or miss, what runs) and COPY/ADD are here;
// everything that needs pantry's registry, cache or runner goes through build_backend, so that
// the loop is tested with a fake backend and runs the same in process or against a server.
//
// The loop, stage by stage (only the stages the target needs, in file order):
// - A stage starts from its base: an image (resolve_base; its config and layers; first key
//   image_base_key of its platform manifest), scratch (scratch_config; scratch_base_key), or an
//   earlier stage (its config, layers, variables and last key).
// - Each instruction is substituted (stage_scope), keyed (step_key, chained from the previous
//   key), and applied to the stage's image config (stage_image). ENV, LABEL, WORKDIR and the other
//   config-only instructions change the key chain and the config but write no layer and look
//   nothing up.
// - RUN, COPY and ADD write a layer. Unless the build is --no-cache, the layer recorded under the
//   step's key is looked up first; a hit reuses it and runs nothing. A miss runs the step, and
//   every later layer step of the stage runs too without a lookup (docker's rule): the layer a
//   step wrote may differ from the one the cached later layers were built on. The same holds for
//   a stage built on a stage that had a miss, and for COPY --from such a stage. What ran is
//   recorded under its key, with or without --no-cache.
// - COPY from the build context is keyed by the content of what it copies (sources_digest over
//   find_sources' listing), so that an unchanged context hits whenever and wherever it is checked
//   out, and a changed, added or removed copied file misses; files that no source names or that
//   the ignore file excludes never change the key. COPY --from a stage is keyed by that stage's
//   last key and COPY --from an image by its manifest digest (stage_sources_digest,
//   image_sources_digest): either determines the files, and a hit then needs no materialized copy.
// - The image: the target stage's config with `created` = SOURCE_DATE_EPOCH, its layers (base
//   first), an OCI manifest, pushed under each tag.
//
// The ignore file is read by the builder: `.containerignore`, else `.dockerignore`, at the root of
// the context (kIgnoreFiles); its errors name it and the line.
//
// Errors name the Containerfile, the line and the instruction, as the parser's do:
// "Containerfile:7: COPY: cannot find \"src/missing.py\" in the build context". A backend error
// gets the same prefix ("Containerfile:9: RUN: " + the backend's message).
//
// Threads: build() runs on the calling thread and blocks; it keeps no global state, so several
// builds may run at once on several threads with one backend, if the backend allows that.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/builder/containerfile.h"
#include "pantry/orchestrator/builder/image_config.h"
#include "pantry/orchestrator/builder/layer_writer.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

// A layer blob as the registry has it.
struct layer_ref {
  cache::digest digest;    // of the blob
  cache::digest diff_id;   // of the uncompressed tar
  std::uint64_t size = 0;  // of the blob
  std::string media_type;  // as the base image's manifest lists it, or layer_media_type()

  friend bool operator==(const layer_ref&, const layer_ref&) = default;
};

// An image a FROM or COPY --from names, as the backend resolved it.
struct base_image {
  std::string pinned_reference;   // NAME@sha256:… of the platform manifest
  cache::digest manifest_digest;  // the platform manifest's (image_base_key's input)
  std::string config_json;        // its config blob (parse_image_config)
  std::vector<layer_ref> layers;  // base first, in the config's diff ID order
};

// One RUN step to run on top of `layers`.
struct run_request {
  // The step's cache key. The backend records the layer under it, and runs one key once at a time
  // across builds (a second request for a key being run waits for that run's layer).
  cache::digest key;
  std::vector<layer_ref> layers;  // the stage's layers so far, base first
  // run_command_for(): argv, environment (with SOURCE_DATE_EPOCH and PIP_NO_CACHE_DIR=1 already
  // added unless the stage set them: the builder adds them, the backend passes env through as is),
  // working directory (runc creates it when missing), user (resolved in the image by the runner).
  run_command command;
  network_mode network = network_mode::isolated;  // RUN --network
  std::int64_t source_date_epoch = 0;             // for the layer's mtimes
  layer_compression compression = layer_compression::gzip;
};

// What a build needs from pantry. The builder calls it from the thread that runs build(), one call
// at a time.
class build_backend {
 public:
  virtual ~build_backend() = default;

  // The image `ref` names, for this machine's platform. A reference without a digest is refused
  // (with the digest its tag resolves to now, for the user to paste) unless `allow_unpinned`.
  virtual result<base_image> resolve_base(const image_reference& ref, bool allow_unpinned) = 0;

  // The layer recorded under the step key `key`, or nullopt when there is none or its blob is no
  // longer stored (an evicted layer is a miss, never an error).
  virtual result<std::optional<layer_ref>> lookup(const cache::digest& key) = 0;

  // Stores the layer file `file` (write_layer_file's output, described by `info`) and records it
  // under `key`, replacing what was recorded there. The backend may move the file away; the
  // builder removes what is left.
  virtual result<layer_ref> store_layer(const cache::digest& key, const std::filesystem::path& file,
                                        const layer_info& info) = 0;

  // Runs a RUN step through the runner (its root file system on disk, not on tmpfs), writes the
  // upper directory as a layer (write_layer with the request's epoch and compression), stores it
  // and records it under request.key. Each line of the step's output goes to `output` as it
  // comes. A step that does not succeed is an error naming the command and the exit code, or
  // "oom-killed", or the timeout; the builder puts the Containerfile and line in front.
  virtual result<layer_ref> run(const run_request& request,
                                const std::function<void(std::string_view line)>& output) = 0;

  // Writes the merged file system of `layers` (base first, whiteouts applied; owners, modes and
  // links as stored) into the empty directory `dir`, for COPY --from and for the stage a COPY or
  // ADD writes into (its destination, /etc/passwd and /etc/group for --chown names). `paths`
  // (absolute, cleaned) says what the builder will read: when it is not empty, writing each of
  // those paths with everything below it, the directories above it and the symbolic links met on
  // the way with what they point to is enough. Writing everything is always correct. The builder
  // removes `dir` afterwards.
  virtual result<void> materialize(const std::vector<layer_ref>& layers,
                                   const std::filesystem::path& dir,
                                   const std::vector<std::string>& paths) = 0;

  // Stores the image (the config blob `config_json` and the OCI manifest `manifest_json`, whose
  // layers are `layers`) under `tag` ("local/NAME:TAG") in pantry's hosted registry; returns the
  // manifest's digest.
  virtual result<cache::digest> push_image(const std::string& tag, const std::string& config_json,
                                           const std::string& manifest_json,
                                           const std::vector<layer_ref>& layers) = 0;
};

struct build_request {
  std::filesystem::path context;      // the build context directory
  std::string containerfile_text;     // the Containerfile's bytes
  std::string containerfile_name;     // how errors name it: "Containerfile", "docker/Dockerfile"
  std::vector<std::string> tags;      // "local/NAME:TAG", at least one
  std::vector<key_value> build_args;  // --build-arg K=V, in order (a later K wins)
  std::string target;                 // --target: a stage name; "" for the last stage
  bool no_cache = false;        // every layer step runs (no lookups); results are still recorded
  bool allow_unpinned = false;  // FROM and COPY --from may name an image without a digest
  std::int64_t source_date_epoch = 0;  // SOURCE_DATE_EPOCH: the mtime clamp and `created`
  layer_compression compression = layer_compression::gzip;
  std::string architecture = "amd64";  // GOARCH of this machine: FROM scratch, TARGETARCH, …
  // Where staging directories, materialized stages and layer files are made (in a directory of
  // the build's own, removed at the end); "" for the system's temporary directory. Put it on the
  // file system of the backend's store so that a layer file can be moved there.
  std::filesystem::path scratch_dir;
};

// How one instruction of a stage went.
enum class step_outcome {
  hit,          // the layer was found under the step's key
  miss,         // the step ran (or its files were staged) and its layer was recorded
  config_only,  // the step changes the image config only: no layer, no lookup
};

// "hit", "miss", "config".
std::string_view to_string(step_outcome outcome) noexcept;

struct step_report {
  std::size_t stage = 0;  // the stage's index in the file
  std::size_t index = 0;  // the instruction's index in the stage (FROM not counted)
  std::string text;       // the instruction as written: "RUN pip install -r requirements.txt"
  step_outcome outcome = step_outcome::config_only;
  std::chrono::nanoseconds time{0};
  std::optional<layer_ref> layer;  // the step's layer (hit or miss)
  cache::digest key;               // the step's cache key
};

struct build_result {
  cache::digest manifest_digest;
  std::string config_json;    // the config blob as pushed
  std::string manifest_json;  // the manifest as pushed
  std::vector<step_report> steps;
  std::vector<std::string> unused_build_args;  // --build-arg names no ARG declares (docker warns)
};

// Progress, called on the building thread; either may be empty.
struct build_events {
  std::function<void(const step_report&)> step_done;  // each instruction, once it ends
  std::function<void(std::string_view line)> output;  // each output line of a RUN step
};

// Builds `request`'s target stage and pushes the image under every tag (see the top of this
// header). Errors: the parser's and substitution's; the ignore file's; COPY/ADD errors; the
// backend's, prefixed with the Containerfile, line and instruction; errc::invalid_argument for a
// request without tags, an unknown --target, or a SOURCE_DATE_EPOCH out of range.
result<build_result> build(const build_request& request, build_backend& backend,
                           const build_events& events = {});

}  // namespace pantry::orchestrator::builder
