#include "lexical.h"

#include "pantry/text.h"

namespace pantry::orchestrator::builder::detail {

std::string quote(std::string_view s) {
  return quote_for_message(s);
}

std::string remote_source_refusal(std::string_view source) {
  return quote(source) +
         " is a URL; pantry's ADD takes local files and archives only: download it in a RUN "
         "--network=host step, or put it in the build context";
}

}  // namespace pantry::orchestrator::builder::detail
