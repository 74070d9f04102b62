#pragma once

// Image references as a user writes them (`pantry run --image`, a Containerfile's FROM and
// COPY --from): NAME[:TAG][@DIGEST], the distribution reference grammar.
//
// Pure code: no file system, no network.

#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry::orchestrator::runner {

// NAME[:TAG][@DIGEST]. The name is kept as written (not expanded to docker.io/library/...): it is
// the repository path under pantry's /v2/, where pantry's registry routes `docker.io/…`,
// `ghcr.io/…` and hosted names like `local/app` by their prefix.
struct image_reference {
  std::string name;    // "python", "docker.io/library/python", "localhost:5000/team/app"
  std::string tag;     // "3.11"; empty when none
  std::string digest;  // "sha256:<64 lowercase hex>"; empty when none

  // True iff the reference names a digest (what pantry runs without --allow-unpinned).
  bool pinned() const noexcept { return !digest.empty(); }
  // NAME[:TAG][@DIGEST].
  std::string str() const;

  friend bool operator==(const image_reference&, const image_reference&) = default;
};

// Parses NAME[:TAG][@DIGEST]. NAME is an optional registry host (with a dot or a port, or
// `localhost`) and '/'-separated lowercase path components ([a-z0-9] separated by '.', '_', '__'
// or dashes), at most 255 characters; TAG is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; DIGEST is
// sha256:<64 lowercase hex> (the only algorithm pantry stores). Anything else is
// errc::invalid_argument with a message that quotes the text and says what is wrong.
result<image_reference> parse_image_reference(std::string_view text);

}  // namespace pantry::orchestrator::runner
