#include "json_util.h"

#include <boost/json/parse.hpp>

#include <string>

namespace pantry::registry::pypi::detail {

result<boost::json::value> parse_json(std::string_view body, std::string_view what,
                                      boost::json::storage_ptr storage) {
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 64;
  boost::json::value v = boost::json::parse(body, ec, std::move(storage), options);
  if (ec) {
    return pantry::error(errc::invalid_argument,
                         "pypi: " + std::string(what) + " is not valid JSON: " + ec.message());
  }
  return v;
}

}  // namespace pantry::registry::pypi::detail
