#pragma once

// The dashboard's routes (dashboard.h's paths) on the server, reading through the coordinator.
// Private to the web library: web_service installs them.

#include "pantry/orchestrator/coordinator/service.h"
#include "pantry/proxy/server.h"

#include <memory>

namespace pantry::web {

// Installs /pipelines, /jobs/, /projects and the dashboard's script for GET and HEAD (other
// methods get 405), and /favicon.ico (204: no icon). Every page but the script needs a token that
// may read (coordinator_service:: may_read), asked for with a Basic challenge (401). `ci` null:
// this pantry runs no coordinator, and the pages answer 404 saying so.
void install_dashboard(proxy::server& srv,
                       std::shared_ptr<orchestrator::coordinator::coordinator_service> ci);

}  // namespace pantry::web
