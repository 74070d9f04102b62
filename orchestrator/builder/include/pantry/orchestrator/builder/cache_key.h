#pragma once

// The build cache's keys. Each step of a stage has a key that chains to the one before it:
//
//   key(step) = sha256(format tag, parent key, canonical_form(step after substitution),
//                      the build args the step used, sorted, and for COPY and ADD the digest of
//                      their sources)
//
// and a stage's first parent is its base: an image by its manifest digest, scratch, or the last
// key of the stage it builds on. Equal keys mean equal inputs, so a key found in the cache gives
// the step's layer without running anything, on any machine; a key not found means the step and
// every later step of its stage run.
//
// Pure code: the caller hashes file contents (cache::hasher) and lists the sources.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/builder/containerfile.h"
#include "pantry/orchestrator/builder/substitute.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

// Part of every key, so that a change of the key format or of what a step means (a new field, a
// different canonical form) changes every key instead of reusing layers built under the old
// meaning. Bump it with such a change.
inline constexpr std::string_view kCacheKeyFormat = "pantry-build-cache-v1";

// The first parent of a stage FROM an image: `manifest` is the digest of the image manifest the
// stage starts from (for a multi-platform image, the platform's manifest, not the index).
cache::digest image_base_key(const cache::digest& manifest);

// The first parent of a stage FROM scratch.
cache::digest scratch_base_key();

// The instruction `step` (after substitution) as canonical text: a JSON array of the upper-case
// keyword and the instruction's fields in a fixed order, every field present, written
// compactly. Only what can change the step's result is there: for ARG the names only (values
// count where they are used, through build_args_used); never `line` or `text`.
std::string canonical_form(const instruction& step);

// The key of `step` whose parent key is `parent`. `sources` is the sources_digest of the files a
// COPY or ADD step copies; it must be given for those and only for those, else
// errc::invalid_argument (a COPY keyed without its files would hit the cache whatever they hold).
result<cache::digest> step_key(const cache::digest& parent, const resolved_step& step,
                               const std::optional<cache::digest>& sources);

// What a file of a COPY or ADD source is.
enum class file_type : std::uint8_t {
  regular,
  directory,
  symlink,
  hardlink,  // a second name of a regular file listed before; link_target is its path
  fifo,
  char_device,
  block_device,
  socket,
};

// One file of the sources of a COPY or ADD step, as the caller finds it.
struct source_file {
  // Where the file is, relative to the root the sources are taken from (the build context or the
  // --from stage's root), '/'-separated, e.g. "src/app/main.py".
  std::string path;
  file_type type = file_type::regular;
  std::uint32_t mode = 0;  // permission bits with setuid, setgid and sticky (mode & 07777)
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  cache::digest content;           // regular: the sha256 of the file's bytes; else ignored
  std::string link_target;         // symlink: the target as stored; hardlink: the path linked to
  std::uint32_t device_major = 0;  // char_device, block_device
  std::uint32_t device_minor = 0;

  friend bool operator==(const source_file&, const source_file&) = default;
};

// The digest of a set of source files: over each file's path, type, mode, owner, and content
// digest, link target or device numbers (whichever its type has), in path order (bytewise), so
// the order of the listing does not matter. Modification times and other metadata are never
// part of it, so a fresh checkout of the same files hashes the same. Errors
// (errc::invalid_argument): an empty path, a path listed twice.
result<cache::digest> sources_digest(std::vector<source_file> files);

// The sources of COPY --from=STAGE, whose last key is `stage_key`: the key determines the stage's
// files (each of its layers is the one recorded under its key), so the step is keyed without
// materializing the stage to hash them.
cache::digest stage_sources_digest(const cache::digest& stage_key);

// The sources of COPY --from=IMAGE, whose platform manifest is `manifest`: a manifest by digest
// determines the files.
cache::digest image_sources_digest(const cache::digest& manifest);

}  // namespace pantry::orchestrator::builder
