#pragma once

// The runner's images: manifests, configs and layers fetched from pantry's own registry over HTTP
// (`<base>/v2/<name>/manifests/<digest>`, `<base>/v2/<name>/blobs/<digest>`) with pantry's upstream
// client, and the layers unpacked into the layer store. Going through /v2/ rather than calling the
// registry's code applies every rule of the registry unchanged: the cache, pull-through from the
// upstream the name's prefix routes to (single flight, digests verified), hosted repositories,
// pull authentication; and it is the same path whether the runner runs inside `pantry serve` or
// `pantry run` talks to one.
//
// Everything fetched is verified again here against the digest it was asked by (manifests,
// configs, compressed layers); the layer store verifies each layer's diff ID while unpacking.
//
// The pure parts (the pick from an index, a config's platform and diff IDs) are declared first and
// do no I/O; platform.h has the host's platform, layer_store.h what a layer's media type allows.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/image_reference.h"
#include "pantry/orchestrator/runner/layer_store.h"
#include "pantry/orchestrator/runner/platform.h"
#include "pantry/proxy/traffic.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::proxy {
class client;
}

namespace pantry::orchestrator::runner {

namespace asio = boost::asio;

// ---- pure parts ---------------------------------------------------------------------------------

// One manifest an index lists, picked for a platform.
struct platform_manifest {
  cache::digest digest;
  std::string media_type;  // as the index's descriptor gives it; may be empty
  std::uint64_t size = 0;
  std::string platform;  // "os/arch[/variant]" as the index names it
};

// The first manifest of the image index `index_json` (an OCI index or a docker manifest list;
// `content_type` decides the kind when the body names no mediaType) whose platform runs on `host`
// (platform_runs_on). Errors (errc::invalid_argument): a malformed index, a body that is no
// index, and no manifest for the host, whose message lists the platforms the index has: "it has
// no manifest for linux/amd64, only for linux/arm64, linux/arm/v7".
result<platform_manifest> pick_platform(std::string_view index_json, std::string_view content_type,
                                        const platform& host);

// What an image config says the image is for and what its layers must unpack to.
struct image_rootfs {
  runner::platform platform;            // os, architecture, variant; "" where the config has none
  std::vector<cache::digest> diff_ids;  // rootfs.diff_ids, base layer first
};

// Reads the top-level "os", "architecture" and "variant" and rootfs.diff_ids of an image config.
// Errors (errc::invalid_argument, "image config: rootfs.diff_ids[2]: …"): not a JSON object, no
// rootfs, a rootfs.type other than "layers", a member of the wrong type, a diff ID that is not
// sha256:<64 hex>.
result<image_rootfs> parse_image_rootfs(std::string_view config_json);

// ---- the puller ---------------------------------------------------------------------------------

struct resolved_layer {
  cache::digest digest;  // of the blob as stored (compressed), from the manifest
  std::string media_type;
  std::uint64_t size = 0;  // the blob's bytes, from the manifest
  cache::digest diff_id;   // of the uncompressed tar, from the config's rootfs.diff_ids
};

// An image resolved to one platform's manifest, its config and its layers.
struct resolved_image {
  image_reference reference;  // as given
  std::string repository;     // the path under /v2/: the reference's name as written
  // The image manifest run: the one asked for, or the host's from the index asked for.
  cache::digest manifest_digest;
  std::optional<cache::digest> index_digest;  // the index it was picked from, if any
  std::string platform;  // "os/arch[/variant]": the index entry's, else the config's
  // NAME@sha256:… of what was asked (the index when there was one): what to print and store so
  // that the same image is run again.
  std::string pinned;
  cache::digest config_digest;
  std::string config_json;             // the config blob's bytes, verified against config_digest
  image_config config;                 // parse_image_config(config_json)
  std::vector<resolved_layer> layers;  // base first
};

// Thread safety: one puller serves any number of coroutines at once, on any executors. A
// coroutine that calls it must run on a strand or a single-threaded context (the upstream client's
// timeouts need it), as every pantry connection does.
class image_puller {
 public:
  // `base_url`: pantry's own registry, "http://127.0.0.1:8585" (no trailing '/'); the requests go
  // to `base_url + "/v2/…"`. `authorization`: the Authorization header value sent with each
  // request, when pantry wants one. `blocking`: where layer unpacks run (they block on disk and
  // CPU); it must not be an executor of the threads that run the puller's callers, or an unpack
  // waiting for the network would wait for itself.
  static std::shared_ptr<image_puller> create(std::shared_ptr<proxy::client> client,
                                              std::string base_url,
                                              std::optional<std::string> authorization,
                                              std::shared_ptr<layer_store> layers,
                                              asio::any_io_executor blocking);

  virtual ~image_puller() = default;

  // GETs the manifest `ref` names (by its digest when it has one: a tag next to a digest is only a
  // label, as in docker), verifies its bytes against that digest, picks the host's manifest when
  // it is an index (fetched by digest and verified too), fetches and verifies the config, and
  // reads the config's diff IDs (one per layer). A reference with a tag and no digest is refused
  // (errc::invalid_argument) unless `allow_unpinned`, with a message that gives the digest the tag
  // resolves to now: "image python:3.11 is not pinned: it resolves to python:3.11@sha256:… now;
  // name it by that digest, or pass --allow-unpinned"; a reference with neither is that of the
  // tag "latest". With `tally`, each manifest and config fetched is counted into it (route
  // oci_manifest or oci_blob, the outcome pantry's X-Pantry-Cache header gave, the body's bytes),
  // so that a job's image pull is counted with the job's traffic. Errors name the reference, and
  // for a failed request the URL and what the server answered (status and the first bytes of its
  // body): errc::not_found for a 404, errc::digest_mismatch for bytes that are not what their
  // digest promised, errc::invalid_argument for a malformed manifest or config, an index with no
  // manifest for this host, an image manifest whose config names another platform than this
  // host's, a layer whose media type cannot be run (named), or a layer count that differs from the
  // diff ID count; errc::io_error for any other status; the client's own errors with their codes.
  // `ref` must live until the returned awaitable completes.
  virtual asio::awaitable<result<resolved_image>> resolve(
      const image_reference& ref, bool allow_unpinned,
      std::shared_ptr<proxy::traffic_tally> tally = nullptr) = 0;

  // Leases on `img`'s layers, base first, each unpacked into the layer store unless it is there:
  // the blob is streamed from /v2/ into layer_store::unpack() on the blocking executor (a few
  // layers at once), its sha256 checked against the manifest's digest as it streams
  // (errc::digest_mismatch naming both at its end; errc::size_mismatch as soon as it runs past
  // the manifest's size), its diff ID by the store. The awaiting coroutine's thread is never
  // blocked. A layer present already costs no request. Errors name the image and the layer, then
  // the URL; on an error the leases taken are released. With `tally`, each layer blob fetched
  // whole is counted into it as resolve() counts. `img` must live until the returned awaitable
  // completes.
  virtual asio::awaitable<result<std::vector<layer_lease>>> unpack_layers(
      const resolved_image& img, std::shared_ptr<proxy::traffic_tally> tally = nullptr) = 0;
};

}  // namespace pantry::orchestrator::runner
