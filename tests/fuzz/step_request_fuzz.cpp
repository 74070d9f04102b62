// libFuzzer target for the runner's step requests (runner/step_request.h), the JSON body of
// POST /api/v1/runner/steps. Checked for every input: parsing never crashes and either fails with
// an errc::invalid_argument message that names what is wrong, or succeeds with a request whose
// JSON form parses back to the same JSON form (nothing is lost or invented on the way).

#include "pantry/orchestrator/runner/step_request.h"

#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace runner = pantry::orchestrator::runner;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "step_request_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = runner::parse_step_request(text);
  if (!parsed) {
    check(parsed.error().is(pantry::errc::invalid_argument), "error code", size);
    check(!parsed.error().message.empty(), "error message", size);
    return 0;
  }
  const std::string once = boost::json::serialize(runner::to_json(*parsed));
  auto again = runner::parse_step_request(once);
  check(static_cast<bool>(again), "reparse of the JSON form", size);
  check(boost::json::serialize(runner::to_json(*again)) == once, "round trip", size);
  return 0;
}
