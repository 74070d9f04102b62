#pragma once

// pantry's index and registry as the pin bot asks them (bot.cpp): one GET per project page (and
// per `/pypi/<name>/json` for a page without PEP 700's upload times, index_fallback.h), per
// METADATA, per file the index lists without a digest (downloaded to be hashed), one HEAD per
// image tag, each asked once per run. Blocking (api_client).

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

  // Downloads `f` from the URL the page gives (pantry's `/files/…`, or the upstream's own URL
  // where pantry lists a file it cannot verify), streaming it through sha256, and returns
  // "sha256:<hex>". Each URL is downloaded once per run. Errors name the file and the URL.
  result<std::string> file_sha256(const registry::pypi::file_entry& f);

  // The digest `ref`'s tag points at in pantry's registry now (image_pins.h). Errors name the
  // image and pantry's URL.
  result<std::string> tag_digest(const runner::image_reference& ref);

 private:
  result<registry::pypi::project_page> page(const std::string& name);
  result<std::string> metadata(const std::string& name, const registry::pypi::version& v,
                               const registry::pypi::file_entry& f);

  std::string base_;
  coordinator::api_client client_;
  // The page's gaps filled from `/pypi/<name>/json` when pantry serves it (404: nothing to add).
  result<void> fill_from_json_api(const std::string& name, registry::pypi::project_page& page);

  std::map<std::string, registry::pypi::project_page> pages_;
  std::map<std::string, std::string> metadata_;  // path -> METADATA
  std::map<std::string, std::string> hashes_;    // file URL -> "sha256:<hex>"
  std::map<std::string, std::string> tags_;
};

}  // namespace pantry::orchestrator::pins
