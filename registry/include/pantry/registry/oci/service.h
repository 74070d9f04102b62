#pragma once

// The container registry: OCI distribution v2 on /v2/. Names under oci.hosted.prefix are hosted
// (pushed to pantry); every other name is pulled through from an upstream registry, chosen by
// the name's first component (/v2/ghcr.io/org/app/…), containerd's ?ns=, or the default
// upstream. Manifests are stored byte-exact and tags resolve with oci.tag_ttl; blobs are fetched
// once by single flight, verified, and served from the cache.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace pantry::registry::oci {

class service : public proxy::service {
 public:
  // `blocking` runs cache writes off the I/O threads. `control_token` (app/control.h; "" for
  // none) is a credential of pantry's own, `Authorization: Bearer <token>`: it may push to and
  // pull from every hosted repository, as `pantry build` and the runner do.
  static std::shared_ptr<service> create(const config::oci_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         boost::asio::any_io_executor blocking,
                                         std::string control_token = {});
  // Routes /v2/ of `srv` to this service.
  void install(proxy::server& srv) override = 0;
};

// The key that signs the registry's tokens when oci.hosted.token_key is not set: the one in
// `<data_dir>/registry-token.key`, made there at first use (64 hex characters of fresh randomness,
// mode 0600, written whole or not at all), so that tokens outlive a restart. A file that holds
// anything else is an error that names it and says to delete it (a new key is then made) or to
// fix it; so is a file that cannot be read or written.
result<std::string> data_dir_token_key(const std::filesystem::path& data_dir);

struct hosted_gc_report {
  std::uint64_t references_removed = 0;  // blob entries of hosted repositories no manifest uses
  std::uint64_t blobs_removed = 0;       // blobs nothing refers to any more
  std::uint64_t bytes_removed = 0;
  std::uint64_t blobs_unpinned = 0;  // still cached for a proxied name: now evictable by LRU
};

// Removes the blobs of hosted repositories that no manifest in that repository references and
// that were uploaded more than `grace` ago (an image being pushed has its blobs before its
// manifest). Owner mode only: run it with `pantry serve` stopped (`pantry cache gc`).
result<hosted_gc_report> collect_hosted_garbage(cache::store& store, std::chrono::seconds grace);

}  // namespace pantry::registry::oci
