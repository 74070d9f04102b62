#pragma once

// The builder's side in `pantry serve` (a proxy::service): the build cache and the builder's RUN
// steps, for `pantry build` (the step loop, build.h, runs in the client; see http_backend.h).
// Every route needs the control token (app/control.h), as the runner's do.
//
//   GET  /api/v1/build/cache/<key>        the layer recorded under a step key: 200 with its
//                                          descriptor (JSON: digest, diff_id, size, media_type),
//                                          or 404 when there is none or its blob was evicted
//   POST /api/v1/build/cache/<key>        stores the layer in the body (X-Pantry-Layer-Digest,
//                                          X-Pantry-Layer-Diff-Id, Content-Type: its media type;
//                                          the digest is checked) and records it under the key
//   POST /api/v1/build/run                runs a RUN step on the runner (JSON: the key, the base
//                                          image, the layers built so far, the command), writes
//                                          the upper directory as a reproducible layer, stores
//                                          and records it; the answer streams the step's output
//                                          as the runner's route does and ends with the layer.
//                                          One key runs once at a time: a second request for a
//                                          key being built waits for that build's layer.
//   POST /api/v1/build/materialize        the merged file system of a base image and layers,
//                                          written into a directory of this host (COPY --from)
//   GET  /api/v1/build/layers/<digest>    a layer blob the build cache holds
//
// Storage: a layer is an ordinary, evictable blob of the cache; the step key's entry
// `build/step/<64 hex>` points at it (attributes diff_id and size, the media type as its content
// type). An evicted blob makes its key a miss. A pushed image's layers are pinned by its hosted
// manifest, as every hosted blob is.

#include "pantry/orchestrator/runner/service.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <memory>

namespace pantry::cache {
class store;
}  // namespace pantry::cache

namespace pantry::orchestrator::builder {

class build_service : public proxy::service {
 public:
  // `runner`: the built-in runner (its token guards these routes too); `blocking`: for cache
  // writes and layer writing.
  static std::shared_ptr<build_service> create(std::shared_ptr<runner::runner_service> runner,
                                               std::shared_ptr<cache::store> store,
                                               boost::asio::any_io_executor blocking);
};

}  // namespace pantry::orchestrator::builder
