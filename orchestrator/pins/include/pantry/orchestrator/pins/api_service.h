#pragma once

// GET /api/v1/pins in `pantry serve`: what `pantry pins status` prints, as JSON (status.h's
// to_json): the configured repositories with their branches and each branch's pipeline state,
// the declined versions, and the last bump's time and outcome. A pipeline that had not ended when
// it was recorded is asked about again in the coordinator (in process, no HTTP). `?repo=NAME`
// keeps one repository (404 naming the configured ones for another name).
//
// Access as the coordinator's other GET routes: a token of ci.tokens that may read (read or
// submit) or pantry's control token; without a coordinator (ci.enabled false, or a remote
// runner), the control token alone. 401 without one, 405 for a method other than GET and HEAD.
//
// Threads: the handler runs on an I/O thread and reads the records on the blocking pool.

#include "pantry/config/config.h"
#include "pantry/proxy/service.h"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <string>

namespace pantry::orchestrator::coordinator {
class coordinator_service;
}

namespace pantry::orchestrator::pins {

class api_service : public proxy::service {
 public:
  // `coordinator`: null when this pantry runs none. `blocking`: the pool for file reads.
  static std::shared_ptr<api_service> create(
      const config::config& cfg, std::shared_ptr<coordinator::coordinator_service> coordinator,
      std::string control_token, boost::asio::any_io_executor blocking);
};

}  // namespace pantry::orchestrator::pins
