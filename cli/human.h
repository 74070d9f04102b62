#pragma once

// Small text helpers shared by the pantry command's subcommands.

#include <cstdint>
#include <cstdio>
#include <string>

namespace pantry::cli {

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

}  // namespace pantry::cli
