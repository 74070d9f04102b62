#pragma once

// The build backend over pantry's HTTP API (the build routes of service.h and the hosted
// registry): what `pantry build` uses, and what the coordinator's image build job uses against its
// own pantry over loopback. The build loop (build.h) runs in the caller; RUN steps, the build cache
// and pushes happen in the pantry at the other end. materialize() asks that pantry to write into a
// directory of this host: both must share a file system (the same machine).
//
// Each call blocks the calling thread while it runs its requests on a private io_context: call it
// from any thread that is not an I/O thread of a server in the same process.

#include "pantry/orchestrator/builder/build.h"

#include <chrono>
#include <memory>
#include <string>

namespace pantry::orchestrator::builder {

struct http_backend_options {
  // --no-cache: RUN steps run even when their key has a layer (which they replace).
  bool fresh = false;
  std::string user_agent = "pantry-build";
  // No byte for this long fails a request; a RUN step's answer sends a keep-alive event every 2 s.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(2)};
};

// A backend that talks to the pantry at `base_url` ("http://127.0.0.1:8585", no trailing '/')
// with `token` (the control token: the build routes and hosted pushes take it). Nothing is sent
// before the first call. One build at a time; the object is not thread-safe.
std::unique_ptr<build_backend> make_http_backend(std::string base_url, std::string token,
                                                 http_backend_options opt = {});

}  // namespace pantry::orchestrator::builder
