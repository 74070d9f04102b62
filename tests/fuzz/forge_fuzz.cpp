// libFuzzer target for the forges' answers (orchestrator/pins/forge.h's forge_api), which come from
// a GitHub, GitLab or Gitea server over the network. The first byte picks the forge; the rest is
// the answer. Checked for every input: reading it as one pull request and as a listing never
// crashes and either fails with an errc::invalid_argument message that names the forge and
// repository, or gives pull requests with a positive number that are not both open and merged;
// a listing of one object agrees with reading that object alone.

#include "pantry/orchestrator/pins/forge.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace pins = pantry::orchestrator::pins;
using pantry::config::pins_forge_kind;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "forge_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

void check_pr(const pins::pull_request& pr, std::size_t size) {
  check(pr.number > 0, "a positive number", size);
  check(!(pr.open && pr.merged), "open or merged, not both", size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr pins_forge_kind kKinds[] = {pins_forge_kind::github, pins_forge_kind::gitlab,
                                               pins_forge_kind::gitea};
  pantry::config::pins_forge forge;
  forge.kind = kKinds[data[0] % 3];
  forge.api = "http://127.0.0.1:1";
  forge.repository = "team/app";
  forge.token_file = "/dev/null";
  auto api = pins::forge_api::create(forge);
  check(api.has_value(), "creating the forge", size);
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string named = api->name() + ": ";

  auto one = api->parse_one(text);
  if (one) {
    check_pr(*one, size);
    auto listed = api->parse_list("[" + std::string(text) + "]");
    check(listed.has_value() && listed->size() == 1 && listed->front() == *one,
          "a listing of the one pull request", size);
  } else {
    check(one.error().is(pantry::errc::invalid_argument), "the error code", size);
    check(one.error().message.starts_with(named), "the error names the forge", size);
  }
  auto list = api->parse_list(text);
  if (list) {
    for (const auto& pr : *list)
      check_pr(pr, size);
  } else {
    check(list.error().is(pantry::errc::invalid_argument), "the list's error code", size);
    check(list.error().message.starts_with(named), "the list's error names the forge", size);
  }
  api->already_exists(422, text);
  return 0;
}
