#pragma once

// pantry's index and registry as the pin bot asks them (bot.cpp): one GET per project page and
// per METADATA, one HEAD per image tag, each asked once per run. Blocking (api_client).

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/runner/image_reference.h"
#include "pantry/registry/pypi/simple.h"

#include <map>
#include <string>

namespace pantry::orchestrator::pins {

class http_index {
 public:
  // `base`: pantry's URL, "http://127.0.0.1:8585".
  explicit http_index(std::string base);

  // The index as decide() asks it.
  index_source source();

  // The digest `ref`'s tag points at in pantry's registry now (image_pins.h). Errors name the
  // image and pantry's URL.
  result<std::string> tag_digest(const runner::image_reference& ref);

 private:
  result<registry::pypi::project_page> page(const std::string& name);
  result<std::string> metadata(const std::string& name, const registry::pypi::version& v,
                               const registry::pypi::file_entry& f);

  std::string base_;
  coordinator::api_client client_;
  std::map<std::string, registry::pypi::project_page> pages_;
  std::map<std::string, std::string> tags_;
};

}  // namespace pantry::orchestrator::pins
