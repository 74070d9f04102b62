#pragma once

// The user a container's process runs as, from the image's (or step's) `User` and the image's own
// /etc/passwd and /etc/group, resolved the way runc and docker resolve it. Pure: the caller reads
// the two files out of the image's layers (an image may lack them: pass "").

#include "pantry/error.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::runner {

struct exec_user {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  // The groups of /etc/group that list the user by name; only when the user was found in
  // /etc/passwd and `User` named no group (as runc does).
  std::vector<std::uint32_t> additional_gids;
  std::string name;        // from /etc/passwd; "" when the uid has no entry
  std::string home = "/";  // from /etc/passwd; "/" when the uid has no entry
};

// Resolves `user`: "" (root), "uid", "name", "uid:gid", "uid:group", "name:gid" or "name:group".
// A numeric uid needs no passwd entry (gid 0, home "/" without one); a name must have one, and a
// group name must be in /etc/group. Numbers are at most 2147483647. Malformed lines of the two
// files are skipped, as libc skips them. Errors are errc::invalid_argument naming the value:
// "user \"app\" is not in the image's /etc/passwd".
result<exec_user> resolve_user(std::string_view user, std::string_view passwd,
                               std::string_view group);

}  // namespace pantry::orchestrator::runner
