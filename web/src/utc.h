#pragma once

// Times as the web pages print them: UTC, through strftime. Private to the web library.

#include <chrono>
#include <ctime>
#include <string>

namespace pantry::web::detail {

// `t` in UTC as `format` (strftime's) spells it, to the second.
inline std::string utc_text(std::chrono::system_clock::time_point t, const char* format) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

}  // namespace pantry::web::detail
