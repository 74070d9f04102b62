#pragma once

// The PyPI proxy: /simple/ (PEP 503 HTML and PEP 691 JSON) and /files/ (wheels, sdists and PEP
// 658 .metadata files, verified against the hash the index gave), served from the cache and
// fetched from the configured upstream indexes once; and the indexes pantry hosts (pypi.hosted),
// fed by twine at /<index>/, whose projects /simple/ serves in place of any upstream's.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/client.h"
#include "pantry/proxy/flight.h"
#include "pantry/proxy/metrics.h"
#include "pantry/proxy/server.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <memory>

namespace pantry::registry::pypi {

class service : public proxy::service {
 public:
  // `blocking` runs cache writes off the I/O threads; `accounts` (oci.hosted) holds the users
  // who upload to hosted indexes, as the uploaders of cfg.hosted name them.
  static std::shared_ptr<service> create(const config::pypi_config& cfg,
                                         std::shared_ptr<cache::store> store,
                                         std::shared_ptr<proxy::client> upstream,
                                         std::shared_ptr<proxy::flight_table> flights,
                                         std::shared_ptr<proxy::metrics_registry> metrics,
                                         boost::asio::any_io_executor blocking,
                                         const config::oci_hosted& accounts = {});
  // Routes /simple/, /files/, /pypi/ and each hosted index's /<name>/ of `srv` to this service.
  void install(proxy::server& srv) override = 0;
};

}  // namespace pantry::registry::pypi
