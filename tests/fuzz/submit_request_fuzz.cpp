// libFuzzer target for pipeline submissions (coordinator/ticket.h), the JSON body of
// POST /api/v1/pipelines that any holder of a submit token sends. Checked for every input:
// parsing never crashes and either fails with an errc::invalid_argument message that names what
// is wrong, or succeeds with a request whose JSON form parses back to the same request.

#include "pantry/orchestrator/coordinator/ticket.h"

#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace coordinator = pantry::orchestrator::coordinator;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "submit_request_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = coordinator::parse_submit_request(text);
  if (!parsed) {
    check(parsed.error().is(pantry::errc::invalid_argument), "the error code", size);
    check(!parsed.error().message.empty(), "the error message", size);
    return 0;
  }
  const std::string once = boost::json::serialize(coordinator::to_json(*parsed));
  auto again = coordinator::parse_submit_request(once);
  check(again.has_value(), "re-parsing the JSON form", size);
  check(boost::json::serialize(coordinator::to_json(*again)) == once, "the round trip", size);
  return 0;
}
