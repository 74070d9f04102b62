#pragma once

// The image references a repository pins, found where they are written, with the byte range of
// each, so that the pin bot can move a digest without touching anything else: `FROM` (and `COPY
// --from=IMAGE`) in Containerfiles and Dockerfiles, and `image:` in `.pantry.yml`.
//
// Pure code: text in, values out. Image references are the runner's grammar
// (runner/image_reference.h), which `pantry run`, the builder and the coordinator read too.
//
// A Containerfile is scanned the way docker's parser splits it into instructions (parser
// directives such as `# escape=`` ` ``, comments, blank lines, continuation lines, CRLF, a
// UTF-8 byte order mark), but leniently: an instruction pantry's builder refuses (RUN --mount,
// heredocs) is no reason to miss the FROM lines around it. A reference the bot cannot pin is
// listed among the skipped ones with the reason, never an error.

#include "pantry/error.h"
#include "pantry/orchestrator/runner/image_reference.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::pins {

// One image reference as written in a file.
struct image_site {
  std::size_t line = 0;   // 1-based line of the reference
  std::size_t begin = 0;  // byte range of the reference (NAME[:TAG][@DIGEST]) in the text
  std::size_t end = 0;
  std::string written;  // the text of that range
  runner::image_reference reference;
  // Containerfile: "FROM" or "COPY --from"; .pantry.yml: the key path ("image",
  // "jobs.test.image").
  std::string context;
  std::string platform;  // FROM --platform=… as written; "" when none
  std::string stage;     // FROM … AS NAME as written; "" when none
};

// A reference that is not pinned by the bot, and why.
struct skipped_image {
  std::size_t line = 0;
  std::string written;  // the reference (or the whole instruction) as written
  std::string reason;   // "names the earlier stage builder", "comes from ARG BASE: ...", ...
};

struct image_sites {
  std::vector<image_site> images;  // in file order
  std::vector<skipped_image> skipped;
};

// The images of a Containerfile: each FROM's base image, and each COPY --from naming an image
// rather than a stage. Skipped, with the reason: `scratch`, an earlier stage's name (any case),
// a reference holding a variable ($VAR or ${VAR}: its value comes from an ARG, which the bot
// does not evaluate), a reference the image grammar refuses (with its message), and one split
// across continuation lines (it cannot be rewritten in place).
image_sites find_containerfile_images(std::string_view text);

// The images of a `.pantry.yml`: the top-level `image:` and each job's `image:`. Errors
// (invalid_argument) only for text that is not one YAML document ("FILE:LINE:COL: ..."); an image
// that is not a string, not a valid reference, or written so that its bytes differ from its value
// (escapes, a block scalar) is skipped with the reason. The file is not otherwise checked: that
// is the coordinator's reader's job (pipeline_spec.h).
result<image_sites> find_pipeline_images(std::string_view text, std::string_view file);

// `text` with `site`'s reference rewritten to pin `digest` ("sha256:<64 lowercase hex>"):
// NAME[:TAG]@DIGEST, the name and tag as written, everything outside the range byte-identical.
// Errors (invalid_argument): a digest the image grammar refuses; a site whose range no longer
// holds what it was read from (the text changed since: read it again).
result<std::string> replace_digest(std::string_view text, const image_site& site,
                                   std::string_view digest);

}  // namespace pantry::orchestrator::pins
