// What the hosted upstream's answer means (registry/src/pypi/owner.h): serve the owner's page,
// ask the other upstreams, or fail closed. Pure decisions over the index cache's answer.

#include "pypi/owner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>

namespace pantry::registry::pypi {

void PrintTo(owner_verdict::kind k, std::ostream* os) {
  switch (k) {
    case owner_verdict::kind::hosted:
      *os << "hosted";
      return;
    case owner_verdict::kind::not_hosted:
      *os << "not_hosted";
      return;
    case owner_verdict::kind::unknown:
      *os << "unknown";
      return;
  }
}

namespace {

using kind = owner_verdict::kind;
using ::testing::HasSubstr;

// The Warning of an answer served past its TTL (registry/src/freshness.h).
constexpr std::string_view kStale = "111 pantry \"Revalidation Failed\"";

config::pypi_upstream owner() {
  config::pypi_upstream u;
  u.name = "team-owner";
  u.url = "http://10.0.0.11:8585/team/simple/";
  u.hosted = true;
  return u;
}

cache::entry with_status(int status) {
  cache::entry e;
  e.status = status;
  return e;
}

TEST(OwnerTest, APageOfTheOwnerIsHostedFreshOrStale) {
  EXPECT_EQ(judge_owner(owner(), "demo", with_status(200), "").says, kind::hosted);
  // The owner is down but its page is cached: the project is still its, and served.
  EXPECT_EQ(judge_owner(owner(), "demo", with_status(200), kStale).says, kind::hosted);
}

TEST(OwnerTest, AFreshNotFoundLetsTheOtherUpstreamsAnswer) {
  EXPECT_EQ(judge_owner(owner(), "requests", with_status(404), "").says, kind::not_hosted);
  EXPECT_EQ(judge_owner(owner(), "requests", with_status(410), "").says, kind::not_hosted);
}

TEST(OwnerTest, AStaleNotFoundFailsClosed) {
  // An expired 404 says nothing about an upload since: no public project of the name.
  const auto v = judge_owner(owner(), "demo", with_status(404), kStale);
  EXPECT_EQ(v.says, kind::unknown);
  EXPECT_THAT(v.why, HasSubstr("its last answer, a 404, is older than pypi.negative_ttl")) << v.why;
}

TEST(OwnerTest, NoAnswerFailsClosedNamingTheOwnerAndWhatToDo) {
  const auto v = judge_owner(
      owner(), "demo",
      error(errc::io_error, "index team-owner answered 503 for GET http://10.0.0.11:8585/x"), "");
  EXPECT_EQ(v.says, kind::unknown);
  EXPECT_EQ(v.why,
            "pantry cannot tell whether \"demo\" is a hosted project: the hosted upstream "
            "team-owner (http://10.0.0.11:8585/team/simple/) did not answer (index team-owner "
            "answered 503 for GET http://10.0.0.11:8585/x); pantry serves no other index's "
            "\"demo\" while the hosted index cannot say. Retry once team-owner answers again, or "
            "check that the pantry at http://10.0.0.11:8585/team/simple/ is up");
  // Offline with nothing cached: the owner cannot be asked, so nothing else is either.
  EXPECT_EQ(judge_owner(owner(), "demo", error(errc::not_found, "not cached"), "").says,
            kind::unknown);
}

}  // namespace
}  // namespace pantry::registry::pypi
