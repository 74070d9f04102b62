#pragma once

// Image pins: whether the tag a pinned image reference names (`NAME:TAG@DIGEST`) still points at
// that digest in pantry's registry, and if not, the new digest. Pure code: the request to send,
// the answer read, the decision made; the caller (bot.h's run) does the HTTP.
//
// The tag is resolved through pantry's registry, pull-through or hosted: the reference's name is
// the repository path under pantry's /v2/ (runner/image_reference.h), and pantry asks the
// upstream again once the tag is older than oci.tag_ttl. The Accept lists every manifest type, so
// a multi-arch tag answers with its index's digest (what a multi-arch image is pinned by), not one
// platform's.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/image_reference.h"

#include <optional>
#include <string>
#include <string_view>

namespace pantry::orchestrator::pins {

// HEAD /v2/<name>/manifests/<tag>, asking for every manifest type.
struct tag_request {
  std::string path;    // "/v2/library/python/manifests/3.12"
  std::string accept;  // the OCI index, Docker list, OCI manifest and Docker v2 manifest types
};

// The request that resolves `ref`'s tag. Precondition: ref.tag is not empty.
tag_request tag_digest_request(const runner::image_reference& ref);

// The tag's digest from the registry's answer to tag_digest_request(): the status and the
// Docker-Content-Digest header (nullopt when absent). Errors name the image as NAME:TAG:
// not_found for a 404 (the registry has no such tag); io_error for any other non-200 status
// (401 and 403 saying that pantry refuses the name to an anonymous reader); invalid_argument for a
// 200 without the header or with a value that is not "sha256:<64 lowercase hex>".
result<std::string> read_tag_digest(const runner::image_reference& ref, unsigned status,
                                    std::optional<std::string_view> content_digest);

// What the bot does with one image reference.
struct image_plan {
  enum class outcome {
    current,      // the tag still points at the pinned digest
    moved,        // the tag points at new_digest now: bump
    not_checked,  // no tag or no digest: reason says which
  };
  outcome result = outcome::not_checked;
  std::string name;        // the reference's name as written
  std::string tag;         // "" when none
  std::string old_digest;  // the pinned digest; "" when none
  std::string new_digest;  // moved: the tag's digest now
  std::string reason;      // not_checked: why
};

// The plan of a reference that cannot be checked (no tag or no digest), or nullopt when it names
// both and must be resolved (tag_digest_request, then decide_image).
std::optional<image_plan> unchecked_image(const runner::image_reference& ref);

// The plan of `ref` (which has a tag and a digest) when its tag now points at `current_digest`.
image_plan decide_image(const runner::image_reference& ref, std::string_view current_digest);

// One line: "image NAME:TAG: OLD → NEW" (moved), "image NAME:TAG: DIGEST is current" (current),
// "image REF: not checked: REASON" (not_checked).
std::string summary(const image_plan& plan);

// The branch of a moved image's bump: "pantry/pins/<name>-<tag>", the name's '/' and ':' (a
// registry port) replaced by '-' so that the name is one path component of a valid git ref.
std::string image_branch(const image_plan& plan);

}  // namespace pantry::orchestrator::pins
