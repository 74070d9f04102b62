#pragma once

// Platforms as image indexes name them (os, architecture, variant), and the host's own: the
// runner runs images natively, so from an index it takes the manifest built for this host.
//
// Pure, except host_platform(), which asks uname.

#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry::orchestrator::runner {

struct platform {
  std::string os;            // "linux"
  std::string architecture;  // GOARCH: "amd64", "arm64", "arm"…
  std::string variant;       // "v7", "v8"; "" when none is named

  // "os/architecture[/variant]".
  std::string str() const;
  friend bool operator==(const platform&, const platform&) = default;
};

// Parses "os/architecture[/variant]" (each part non-empty). Errors are errc::invalid_argument
// quoting the text.
result<platform> parse_platform(std::string_view text);

// linux and the GOARCH (and variant) of `machine`, uname's machine field: x86_64 → linux/amd64,
// aarch64 and arm64 → linux/arm64, armv7l → linux/arm/v7, armv6l → linux/arm/v6, i386 and i686 →
// linux/386, ppc64le, s390x and riscv64 as they are. Anything else is errc::invalid_argument
// naming it.
result<platform> platform_of_machine(std::string_view machine);

// platform_of_machine() of this host (uname).
result<platform> host_platform();

// True iff an image built for `image` runs on `host`: the same os and architecture, and the same
// variant, where no variant means the architecture's first one (amd64 v1, arm64 v8, arm v7), as
// containerd compares them. So a host without a variant takes only that first variant: an
// amd64/v3 image may use instructions this CPU lacks.
bool platform_runs_on(const platform& image, const platform& host);

}  // namespace pantry::orchestrator::runner
