#include "pantry/orchestrator/runner/platform.h"

#include "strings.h"

#include <sys/utsname.h>

#include <cerrno>

namespace pantry::orchestrator::runner {
namespace {

// The variant an image without one is built for (containerd's platforms.Normalize).
std::string_view default_variant(std::string_view architecture) noexcept {
  if (architecture == "amd64") return "v1";
  if (architecture == "arm64") return "v8";
  if (architecture == "arm") return "v7";
  return "";
}

std::string_view variant_or_default(const platform& p) noexcept {
  return p.variant.empty() ? default_variant(p.architecture) : std::string_view(p.variant);
}

}  // namespace

std::string platform::str() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) out += "/" + variant;
  return out;
}

result<platform> parse_platform(std::string_view text) {
  const auto parts = detail::split(text, '/');
  bool empty_part = false;
  for (auto p : parts)
    empty_part = empty_part || p.empty();
  if (parts.size() < 2 || parts.size() > 3 || empty_part) {
    return detail::invalid(detail::quoted(text) +
                           " is not a platform: write os/architecture[/variant], e.g. linux/amd64");
  }
  platform out{std::string(parts[0]), std::string(parts[1]), ""};
  if (parts.size() == 3) out.variant = std::string(parts[2]);
  return out;
}

result<platform> platform_of_machine(std::string_view machine) {
  struct known {
    std::string_view machine, architecture, variant;
  };
  constexpr known kMachines[] = {
      {"x86_64", "amd64", ""}, {"amd64", "amd64", ""},     {"aarch64", "arm64", ""},
      {"arm64", "arm64", ""},  {"armv7l", "arm", "v7"},    {"armv6l", "arm", "v6"},
      {"i386", "386", ""},     {"i686", "386", ""},        {"ppc64le", "ppc64le", ""},
      {"s390x", "s390x", ""},  {"riscv64", "riscv64", ""},
  };
  for (const auto& k : kMachines) {
    if (k.machine == machine) {
      return platform{"linux", std::string(k.architecture), std::string(k.variant)};
    }
  }
  return detail::invalid("machine " + detail::quoted(machine) +
                         " has no known image architecture (GOARCH)");
}

result<platform> host_platform() {
  ::utsname u{};
  if (::uname(&u) != 0) return detail::errno_error("uname", errno);
  return platform_of_machine(u.machine);
}

bool platform_runs_on(const platform& image, const platform& host) {
  return image.os == host.os && image.architecture == host.architecture &&
         variant_or_default(image) == variant_or_default(host);
}

}  // namespace pantry::orchestrator::runner
