#pragma once

// Numbers for people: the start-up line of `pantry serve` (app.cpp) and the pantry command's
// reports (cache stats, cache warm) print sizes the same way.

#include <cstdint>
#include <cstdio>
#include <string>

namespace pantry::app {

// "512 B", "1.5 KiB", "48.3 MiB", … (binary units, one decimal above bytes).
inline std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace pantry::app
