#include "pantry/orchestrator/coordinator/log_store.h"

#include <string>

namespace pantry::orchestrator::coordinator {

result<std::shared_ptr<const std::regex>> compile_log_pattern(std::string_view pattern) {
  try {
    return std::make_shared<const std::regex>(std::string(pattern), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return error(errc::invalid_argument, "\"" + std::string(pattern.substr(0, 200)) +
                                             "\" is not a regular expression: " + e.what());
  }
}

}  // namespace pantry::orchestrator::coordinator
