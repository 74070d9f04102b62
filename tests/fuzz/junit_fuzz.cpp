// libFuzzer target for the JUnit XML reader (coordinator/junit.h), which reads whatever a test
// job wrote into its PANTRY_JUNIT directory, and for the order file reader (test_order.h), which
// another runner's tooling may hand back. Checked for every input: reading never crashes and
// either fails with an errc::invalid_argument message that names the source, or gives results
// with non-empty ids, finite non-negative times, messages within their limit, and ids that are
// unique; an order file that parses writes back to text that parses to the same order (durations
// to within Boost.JSON's number parsing); test
// results as a remote runner posts them (test_history.h's test_results_from_json) either fail
// with errc::invalid_argument or hold results as checked above that write back to the same JSON.

#include "pantry/orchestrator/coordinator/junit.h"
#include "pantry/orchestrator/coordinator/test_history.h"
#include "pantry/orchestrator/coordinator/test_order.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>

namespace {

namespace coordinator = pantry::orchestrator::coordinator;

void check(bool ok, const char* what, std::size_t size) {
  if (ok) return;
  std::fprintf(stderr, "junit_fuzz: %s failed for input of %zu bytes\n", what, size);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  coordinator::junit_limits limits;
  limits.max_test_cases = 10000;
  auto results = coordinator::read_junit_xml(text, "fuzz.xml", limits);
  if (!results) {
    check(results.error().is(pantry::errc::invalid_argument), "the error code", size);
    check(results.error().message.starts_with("junit: fuzz.xml: "), "the error message", size);
  } else {
    std::set<std::string> ids;
    for (const auto& r : *results) {
      check(!r.id.empty(), "a non-empty id", size);
      check(ids.insert(r.id).second, "unique ids", size);
      check(std::isfinite(r.seconds) && r.seconds >= 0, "the time", size);
      check(r.message.size() <= coordinator::kMaxMessage, "the message's length", size);
    }
  }

  boost::system::error_code ec;
  const boost::json::value posted = boost::json::parse(text, ec);
  if (!ec) {
    auto got = coordinator::test_results_from_json(posted, 10000);
    if (!got) {
      check(got.error().is(pantry::errc::invalid_argument), "the results' error code", size);
      check(got.error().message.starts_with("test results: "), "the results' error", size);
    } else {
      boost::json::array back;
      for (const auto& r : *got) {
        check(!r.id.empty(), "a posted result's id", size);
        check(std::isfinite(r.seconds) && r.seconds >= 0, "a posted result's time", size);
        check(r.message.size() <= coordinator::kMaxMessage, "a posted message's length", size);
        back.emplace_back(coordinator::to_json(r));
      }
      auto again = coordinator::test_results_from_json(back);
      check(again.has_value() && again->size() == got->size(), "re-reading the results", size);
      for (std::size_t i = 0; i < got->size(); ++i) {
        check(boost::json::serialize(coordinator::to_json((*again)[i])) ==
                  boost::json::serialize(back[i]),
              "the results' round trip", size);
      }
    }
  }

  auto order = coordinator::parse_order_file(text);
  if (!order) {
    check(order.error().is(pantry::errc::invalid_argument), "the order file's error code", size);
    return 0;
  }
  const std::string once = coordinator::to_order_file(*order);
  auto again = coordinator::parse_order_file(once);
  check(again.has_value(), "re-reading the order file", size);
  // Compared member by member: Boost.JSON 1.81 parses numbers to within an ulp or so, not
  // correctly rounded ("3E119" reads back as 2.9999999999999997E119), so the text may differ in
  // the last digit of a duration.
  check(again->shards == order->shards && again->changed_files == order->changed_files &&
            again->quarantined == order->quarantined && again->tests.size() == order->tests.size(),
        "the order file's round trip", size);
  for (std::size_t i = 0; i < order->tests.size(); ++i) {
    const auto& a = order->tests[i];
    const auto& b = again->tests[i];
    check(a.id == b.id && a.shard == b.shard && a.group == b.group &&
              a.seconds.has_value() == b.seconds.has_value(),
          "the order file's round trip", size);
    if (a.seconds) {
      check(std::fabs(*a.seconds - *b.seconds) <= 1e-12 * std::fabs(*a.seconds),
            "the order file's durations", size);
    }
  }
  return 0;
}
