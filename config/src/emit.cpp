#include "emit.h"

#include "message.h"

namespace pantry::config::detail {

std::string secret(const std::string& value, secrets s) {
  return s == secrets::shown ? value : std::string(kHiddenSecret);
}

std::optional<std::string> placeholder_problem(std::string_view value, std::string_view what) {
  if (value != kHiddenSecret) return std::nullopt;
  return quote(value) + " is the placeholder `pantry config show` prints in place of a " +
         std::string(what) + "; put the real " + std::string(what) +
         " here (`pantry config show --secrets` prints the configured one)";
}

}  // namespace pantry::config::detail
