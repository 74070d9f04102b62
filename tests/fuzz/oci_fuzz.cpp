// libFuzzer target for pantry's OCI distribution protocol code: request paths, names and tags,
// Accept lines, manifests, WWW-Authenticate challenges and token answers -- everything pantry
// reads from a client or an upstream registry. None may crash, hang or throw; what parses must
// keep the promises its header makes.

#include "pantry/registry/oci/protocol.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace oci = pantry::registry::oci;

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "oci_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

void fuzz_path(std::string_view in) {
  auto p = oci::parse_api_path(in);
  if (!p) return;
  if (p->kind == oci::api_kind::ping || p->kind == oci::api_kind::catalog) return;
  check(oci::valid_name(p->name), "a parsed path's name is valid", in);
  if (p->kind == oci::api_kind::manifest) {
    check(oci::valid_tag(p->reference) || oci::is_digest(p->reference),
          "a manifest reference is a tag or a digest", in);
    auto again = oci::parse_api_path("/v2/" + p->name + "/manifests/" + p->reference);
    check(again && again->name == p->name && again->reference == p->reference,
          "a manifest path round-trips", in);
  }
  if (p->kind == oci::api_kind::blob)
    check(oci::is_digest(p->reference), "a blob is by digest", in);
}

void fuzz_accept(std::string_view in) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || in[i] == '\n') {
      lines.push_back(in.substr(start, i - start));
      start = i + 1;
    }
  }
  auto set = oci::accepted_types(lines);
  for (const auto& t : set.types) {
    check(oci::accepts(set, t), "an accepted type is accepted", in);
  }
}

void fuzz_manifest(std::string_view in) {
  auto split = in.find('\n');
  std::string_view type = split == std::string_view::npos ? "" : in.substr(0, split);
  std::string_view body = split == std::string_view::npos ? in : in.substr(split + 1);
  auto m = oci::parse_manifest(body, type);
  if (!m) {
    check(m.error().message.starts_with("MANIFEST_INVALID"), "errors carry the spec code", in);
    return;
  }
  for (const auto& d : m->blobs)
    check(oci::is_digest(d.digest.str()), "blob digests are sha256", in);
  for (const auto& d : m->manifests)
    check(oci::is_digest(d.digest.str()), "manifest digests are sha256", in);
  check(m->is_index || m->manifests.empty(), "only an index lists manifests", in);
}

void fuzz_challenge(std::string_view in) {
  for (const auto& c : oci::parse_challenges(in)) {
    check(!c.scheme.empty(), "a challenge has a scheme", in);
    for (char ch : c.scheme)
      check(!(ch >= 'A' && ch <= 'Z'), "schemes are lowercase", in);
  }
}

void fuzz_token(std::string_view in) {
  auto t = oci::parse_token_answer(in);
  if (t) {
    check(!t->token.empty(), "a token is not empty", in);
    check(t->lifetime.count() >= 1, "a token lives at least a second", in);
  }
  (void)oci::token_url(in, in, in);
  (void)oci::error_body(in, in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      fuzz_path(in);
      break;
    case 1:
      fuzz_accept(in);
      break;
    case 2:
      fuzz_manifest(in);
      break;
    case 3:
      fuzz_challenge(in);
      break;
    default:
      fuzz_token(in);
      break;
  }
  return 0;
}
