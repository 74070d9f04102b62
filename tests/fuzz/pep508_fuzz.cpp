// libFuzzer target for pantry's PEP 440 and PEP 508 code: versions, specifier sets, markers and
// requirements. None may crash, hang or throw; whatever parses must print a spelling that parses
// back to the same value, the order must be a total order, and a clause must take the version it
// names. The input is read whole by each parser, and its first two lines as a pair of versions.

#include "pantry/registry/pypi/markers.h"
#include "pantry/registry/pypi/pep440.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace pypi = pantry::registry::pypi;

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "pep508_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

void check_version(std::string_view text) {
  auto v = pypi::version::parse(text);
  if (!v) return;
  auto again = pypi::version::parse(v->str());
  check(again.has_value(), "a canonical version parses", text);
  check(again->str() == v->str(), "the canonical spelling is a fixed point", text);
  check(*again == *v, "a version equals its canonical spelling", text);
  check(v->public_version() <= *v, "a public version sorts at or below its local ones", text);
  check(!v->public_version().has_local(), "a public version has no local label", text);
  // A version satisfies the clauses that name it.
  for (std::string_view op : {"==", "===", "<=", ">="}) {
    if (v->has_local() && (op == "<=" || op == ">=")) continue;
    auto clause = pypi::specifier::parse(std::string(op) + v->str());
    check(clause.has_value(), "a clause of a canonical version parses", text);
    check(clause->matches(*v), "a clause takes the version it names", text);
  }
  auto base = pypi::version::parse(v->base_str());
  check(base.has_value() && *base == v->base_version(), "base_str parses to base_version", text);
}

void check_pair(std::string_view a_text, std::string_view b_text, std::string_view input) {
  auto a = pypi::version::parse(a_text);
  auto b = pypi::version::parse(b_text);
  if (!a || !b) return;
  const auto ab = *a <=> *b;
  const auto ba = *b <=> *a;
  check((ab < 0) == (ba > 0) && (ab == 0) == (ba == 0), "the order is antisymmetric", input);
  check((ab == 0) == (*a == *b), "equality agrees with the order", input);
  if (ab == 0) {
    check(a->epoch() == b->epoch() && a->local() == b->local() && a->post() == b->post() &&
              a->dev() == b->dev(),
          "equal versions differ at most in trailing release zeros", input);
  }
}

void check_specifiers(std::string_view text) {
  auto set = pypi::specifier_set::parse(text);
  if (!set) return;
  auto again = pypi::specifier_set::parse(set->str());
  check(again.has_value(), "a printed specifier set parses", text);
  check(again->str() == set->str(), "the printed specifier set is a fixed point", text);
  for (const auto& clause : set->clauses()) {
    if (clause.operation == pypi::specifier::op::arbitrary_equal) {
      check(clause.matches(std::string_view(clause.text)), "=== takes its own text", text);
      continue;
    }
    (void)set->contains(clause.target);
    (void)set->contains(clause.target, pypi::prereleases::allow);
  }
}

void check_marker(std::string_view text) {
  auto m = pypi::marker::parse(text);
  if (!m) return;
  auto again = pypi::marker::parse(m->str());
  check(again.has_value(), "a printed marker parses", text);
  check(again->str() == m->str(), "the printed marker is a fixed point", text);
  pypi::marker_environment env;
  check(m->evaluate(env) == again->evaluate(env), "a printed marker means the same", text);
  env.extra = "test";
  check(m->evaluate(env) == again->evaluate(env), "a printed marker means the same (extra)", text);
}

void check_requirement(std::string_view text) {
  auto r = pypi::requirement::parse(text);
  if (!r) return;
  auto again = pypi::requirement::parse(r->str());
  check(again.has_value(), "a printed requirement parses", text);
  check(again->str() == r->str(), "the printed requirement is a fixed point", text);
  check(again->name == r->name && again->extras == r->extras && again->url == r->url,
        "a printed requirement keeps its parts", text);
  (void)r->applies_to(pypi::marker_environment{});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_version(input);
  check_specifiers(input);
  check_marker(input);
  check_requirement(input);
  const std::size_t nl = input.find('\n');
  if (nl != std::string_view::npos) {
    const std::string_view first = input.substr(0, nl);
    const std::string_view second = input.substr(nl + 1);
    check_version(first);
    check_specifiers(first);
    check_pair(first, second, input);
    // The first line as a specifier set, the second as a candidate.
    auto set = pypi::specifier_set::parse(first);
    auto candidate = pypi::version::parse(second);
    if (set && candidate) {
      const bool taken = set->contains(*candidate, pypi::prereleases::allow);
      check(!set->contains(*candidate) || taken, "by_specifier takes no more than allow", input);
      check(!set->contains(*candidate, pypi::prereleases::deny) || taken,
            "deny takes no more than allow", input);
    }
  }
  return 0;
}
