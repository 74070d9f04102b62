#pragma once

// The hosted upstream: a pypi.upstreams item with `hosted: true`, another pantry's hosted index
// (http://<owner>/<index>/simple/). In a fleet only the owner holds the hosted projects, so every
// other instance asks it first for every project, before the routes and the other upstreams
// (docs/ARCHITECTURE.md, "Hosted indexes in a fleet"). What the owner's answer means is decided
// here, from the index cache's answer alone: no I/O, no clock.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry::registry::pypi {

struct owner_verdict {
  enum class kind {
    hosted,      // the owner has the project (fresh, revalidated or stale): serve its page alone
    not_hosted,  // a 404/410 just had or still fresh: ask the routes and the other upstreams
    unknown,     // the owner cannot say (failed, or only an expired 404 is cached): fail closed
  };
  kind says = kind::unknown;
  // unknown: what the client is told (with a 502): the project, the owner and what to do.
  std::string why;
};

// What `answer` (the index cache's answer for `project`'s page of the hosted upstream `owner`:
// the entry or why there is none, and its Warning, "" unless it was served past its TTL) means.
// A page of the owner is trusted however old (a stale page is still the owner's project); a
// negative answer only when it is not stale, because an expired 404 says nothing about an upload
// since, and answering from the public index then is the dependency confusion the owner prevents.
owner_verdict judge_owner(const config::pypi_upstream& owner, std::string_view project,
                          const result<cache::entry>& answer, std::string_view warning);

}  // namespace pantry::registry::pypi
