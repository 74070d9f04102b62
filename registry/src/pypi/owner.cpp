#include "owner.h"

namespace pantry::registry::pypi {

owner_verdict judge_owner(const config::pypi_upstream& owner, std::string_view project,
                          const result<cache::entry>& answer, std::string_view warning) {
  owner_verdict v;
  if (answer && answer->status == 200) {
    v.says = owner_verdict::kind::hosted;
    return v;
  }
  if (answer && warning.empty()) {
    v.says = owner_verdict::kind::not_hosted;
    return v;
  }
  const std::string name = "\"" + std::string(project) + "\"";
  const std::string cause =
      answer ? "its last answer, a " + std::to_string(answer->status) +
                   ", is older than pypi.negative_ttl and it cannot be asked again now"
             : answer.error().message;
  v.why = "pantry cannot tell whether " + name + " is a hosted project: the hosted upstream " +
          owner.name + " (" + owner.url + ") did not answer (" + cause +
          "); pantry serves no other index's " + name +
          " while the hosted index cannot say. Retry once " + owner.name +
          " answers again, or check that the pantry at " + owner.url + " is up";
  return v;
}

}  // namespace pantry::registry::pypi
