#pragma once

// Submitting a pipeline over pantry's API (service.h's POST /api/v1/pipelines): the steps that
// `pantry submit` and the pin bot share. Blocking, as api_client is.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/api_client.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace pantry::orchestrator::coordinator {

// Sends the archive `archive` (pack_tree's, whose content address is `digest`, "sha256:<hex>")
// with PUT /api/v1/sources/<digest>, unless pantry has it already (its HEAD answers 200). True
// when it was sent, false when pantry had it. Errors: api_client's, and
// api_client::failure("uploading the tree" / "checking for the tree", …) for another answer.
result<bool> send_tree(api_client& client, const std::filesystem::path& archive,
                       const std::string& digest);

// A pipeline the coordinator took.
struct submitted {
  std::uint64_t id = 0;
  std::string url;  // its API URL, as the coordinator names it
};

// POSTs `body` (submit_request's JSON, ticket.h) to /api/v1/pipelines. A 422 (the .pantry.yml
// refused) is errc::invalid_argument whose message is the coordinator's alone (it names file, line
// and field); any other answer but 201 is api_client::failure("submitting", …); a 201 that is
// not the pipeline's JSON is errc::io_error.
result<submitted> submit_pipeline(api_client& client, const std::string& body);

}  // namespace pantry::orchestrator::coordinator
