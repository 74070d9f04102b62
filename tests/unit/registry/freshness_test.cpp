// The freshness policy, row by row of the table in registry/src/freshness.h: pure decisions, the
// time passed in.

#include "freshness.h"

#include <gtest/gtest.h>

#include <ostream>

namespace pantry::proxy {
// Outcomes print by name in failed assertions.
void PrintTo(cache_outcome o, std::ostream* os) {
  *os << to_string(o);
}
}  // namespace pantry::proxy

namespace pantry::registry::freshness {
void PrintTo(action a, std::ostream* os) {
  *os << to_string(a);
}

namespace {

using proxy::cache_outcome;
using std::chrono::seconds;
using kind = upstream_answer::kind;

const cache::clock::time_point kT0 = cache::clock::time_point{} + std::chrono::hours(24 * 365 * 50);

rules online() {
  rules r;
  r.ttl = seconds(600);
  r.negative_ttl = seconds(60);
  return r;
}

rules offline() {
  rules r = online();
  r.offline = true;
  return r;
}

// A page fetched at kT0 with a 600 s TTL.
cache::entry page() {
  cache::entry e;
  e.target = cache::digest::of("<html>");
  e.content_type = "text/html";
  e.etag = "\"v1\"";
  e.last_modified = "Thu, 01 Jan 2026 00:00:00 GMT";
  e.fetched_at = kT0;
  e.expires_at = kT0 + seconds(600);
  e.attributes.emplace_back("html", "sha256:" + std::string(64, 'a'));
  return e;
}

upstream_answer answered(kind k, int status = 0, std::string reason = {}) {
  upstream_answer a;
  a.what = k;
  a.status = status;
  a.reason = std::move(reason);
  return a;
}

TEST(FreshnessTest, FreshHitIsServedWithoutAskingUpstream) {
  const cache::entry e = page();
  auto d = on_request(&e, online(), kT0 + seconds(599));
  EXPECT_EQ(d.act, action::serve_cached);
  EXPECT_EQ(d.outcome, cache_outcome::hit);
  EXPECT_EQ(d.warning, "");
}

TEST(FreshnessTest, AnEntryExpiresAtItsExpiryTime) {
  const cache::entry e = page();
  EXPECT_EQ(on_request(&e, online(), kT0 + seconds(600)).act, action::revalidate);
}

TEST(FreshnessTest, AShorterTtlThanTheEntryWasStoredWithHoldsAtOnce) {
  // Stored with 600 s; the config reloaded to 60 s (or 0 s): the entry is as old as it is.
  const cache::entry e = page();
  rules shorter = online();
  shorter.ttl = seconds(60);
  EXPECT_EQ(on_request(&e, shorter, kT0 + seconds(59)).act, action::serve_cached);
  EXPECT_EQ(on_request(&e, shorter, kT0 + seconds(60)).act, action::revalidate);
  shorter.ttl = seconds(0);
  EXPECT_EQ(on_request(&e, shorter, kT0).act, action::revalidate);
  // A longer one holds from the next fetch on: the stored expiry still ends this one.
  rules longer = online();
  longer.ttl = seconds(3600);
  EXPECT_EQ(on_request(&e, longer, kT0 + seconds(600)).act, action::revalidate);
  // A remembered 404 goes by the negative TTL.
  cache::entry gone;
  gone.status = 404;
  gone.fetched_at = kT0;
  gone.expires_at = kT0 + seconds(60);
  rules fewer = online();
  fewer.negative_ttl = seconds(10);
  EXPECT_EQ(on_request(&gone, fewer, kT0 + seconds(9)).act, action::serve_cached);
  EXPECT_EQ(on_request(&gone, fewer, kT0 + seconds(10)).act, action::revalidate);
}

TEST(FreshnessTest, ExpiredAnd304ServesTheEntryRenewedForAnotherTtl) {
  const cache::entry e = page();
  const auto now = kT0 + seconds(900);
  ASSERT_EQ(on_request(&e, online(), now).act, action::revalidate);
  auto d = on_answer(&e, answered(kind::not_modified), online(), now);
  EXPECT_EQ(d.act, action::serve_renewed);
  EXPECT_EQ(d.outcome, cache_outcome::revalidated);
  EXPECT_EQ(d.warning, "");
  ASSERT_TRUE(d.entry.has_value());
  EXPECT_EQ(d.entry->fetched_at, now);
  EXPECT_EQ(d.entry->expires_at, now + seconds(600));
  EXPECT_EQ(d.entry->target, e.target) << "a renewal keeps what the entry points at";
  EXPECT_EQ(d.entry->etag, e.etag);
  EXPECT_EQ(d.entry->attributes, e.attributes);
}

TEST(FreshnessTest, ExpiredAnd200ChangedTakesTheNewAnswer) {
  const cache::entry e = page();
  const auto now = kT0 + seconds(900);
  auto d = on_answer(&e, answered(kind::modified), online(), now);
  EXPECT_EQ(d.act, action::take_new);
  EXPECT_EQ(d.outcome, cache_outcome::miss);
  EXPECT_EQ(d.warning, "");
  EXPECT_FALSE(d.entry.has_value());
}

TEST(FreshnessTest, ExpiredAndUpstreamErrorServesStaleWith111AndTheReason) {
  const cache::entry e = page();
  const std::string why = "GET http://up/simple/x/: connect 127.0.0.1:9: connection refused";
  auto d = on_answer(&e, answered(kind::failed, 0, why), online(), kT0 + seconds(900));
  EXPECT_EQ(d.act, action::serve_stale);
  EXPECT_EQ(d.outcome, cache_outcome::stale);
  EXPECT_EQ(d.warning, "111 pantry \"Revalidation Failed\"");
  EXPECT_EQ(d.reason, why) << "the reason goes to the log line";
}

TEST(FreshnessTest, ExpiredAnd404IsANegativeAnswerRememberedForNegativeTtl) {
  const cache::entry e = page();
  const auto now = kT0 + seconds(900);
  auto d = on_answer(&e, answered(kind::gone, 404), online(), now);
  EXPECT_EQ(d.act, action::serve_negative);
  EXPECT_EQ(d.outcome, cache_outcome::miss);
  ASSERT_TRUE(d.entry.has_value());
  EXPECT_EQ(d.entry->status, 404);
  EXPECT_FALSE(d.entry->target.has_value());
  EXPECT_EQ(d.entry->fetched_at, now);
  EXPECT_EQ(d.entry->expires_at, now + seconds(60));
  EXPECT_TRUE(d.store);
}

TEST(FreshnessTest, A410WithNoNegativeTtlIsAnsweredButNotStored) {
  rules r = online();
  r.negative_ttl = seconds(0);
  auto d = on_answer(nullptr, answered(kind::gone, 410), r, kT0);
  EXPECT_EQ(d.act, action::serve_negative);
  ASSERT_TRUE(d.entry.has_value());
  EXPECT_EQ(d.entry->status, 410);
  EXPECT_FALSE(d.store);
}

TEST(FreshnessTest, OfflineExpiredIsServedFromCacheWith110) {
  const cache::entry e = page();
  auto d = on_request(&e, offline(), kT0 + seconds(86400));
  EXPECT_EQ(d.act, action::serve_cached);
  EXPECT_EQ(d.outcome, cache_outcome::hit);
  EXPECT_EQ(d.warning, "110 pantry \"Response is Stale\"");
}

TEST(FreshnessTest, OfflineFreshHasNoWarning) {
  const cache::entry e = page();
  auto d = on_request(&e, offline(), kT0);
  EXPECT_EQ(d.act, action::serve_cached);
  EXPECT_EQ(d.warning, "");
}

TEST(FreshnessTest, OfflineMissFails) {
  auto d = on_request(nullptr, offline(), kT0);
  EXPECT_EQ(d.act, action::fail);
  EXPECT_EQ(d.outcome, cache_outcome::none);
}

TEST(FreshnessTest, NeverCachedIsFetched) {
  auto d = on_request(nullptr, online(), kT0);
  EXPECT_EQ(d.act, action::fetch);
}

TEST(FreshnessTest, NeverCachedAndUpstreamErrorFailsWithTheReason) {
  const std::string why = "index main answered 503 for GET http://up/simple/x/";
  auto d = on_answer(nullptr, answered(kind::failed, 0, why), online(), kT0);
  EXPECT_EQ(d.act, action::fail);
  EXPECT_EQ(d.outcome, cache_outcome::none);
  EXPECT_EQ(d.warning, "");
  EXPECT_EQ(d.reason, why);
}

TEST(FreshnessTest, NotModifiedWithNothingCachedIsAFailure) {
  auto d = on_answer(nullptr, answered(kind::not_modified), online(), kT0);
  EXPECT_EQ(d.act, action::fail);
  EXPECT_NE(d.reason, "");
}

TEST(FreshnessTest, ConditionalRequestsPreferTheETag) {
  cache::entry e = page();
  auto v = conditional(e);
  EXPECT_EQ(v.if_none_match, "\"v1\"");
  EXPECT_EQ(v.if_modified_since, "");
  e.etag.clear();
  v = conditional(e);
  EXPECT_EQ(v.if_none_match, "");
  EXPECT_EQ(v.if_modified_since, "Thu, 01 Jan 2026 00:00:00 GMT");
}

TEST(FreshnessTest, NegativeEntriesAreAskedUnconditionally) {
  cache::entry e = page();
  e.status = 404;
  auto v = conditional(e);
  EXPECT_EQ(v.if_none_match, "");
  EXPECT_EQ(v.if_modified_since, "");
}

TEST(FreshnessTest, StampMakesAnEntryFreshForTheTtl) {
  cache::entry e;
  stamp(e, online(), kT0);
  EXPECT_EQ(e.fetched_at, kT0);
  EXPECT_EQ(e.expires_at, kT0 + seconds(600));
  EXPECT_FALSE(e.expired(kT0 + seconds(599)));
}

TEST(FreshnessTest, ReporterCountsByProtocolAndUpstream) {
  auto metrics = std::make_shared<proxy::metrics_registry>();
  reporter pypi(metrics, "pypi");
  reporter oci(metrics, "oci");
  pypi.sent("main");
  pypi.sent("main");
  pypi.failed("main");
  oci.sent("docker.io");
  oci.failed("docker.io");
  oci.failed("docker.io");
  EXPECT_EQ(metrics->counter("pantry_upstream_requests_total",
                             {{"protocol", "pypi"}, {"upstream", "main"}}),
            2u);
  EXPECT_EQ(metrics->counter("pantry_upstream_failures_total",
                             {{"protocol", "pypi"}, {"upstream", "main"}}),
            1u);
  EXPECT_EQ(metrics->counter("pantry_upstream_requests_total",
                             {{"protocol", "oci"}, {"upstream", "docker.io"}}),
            1u);
  EXPECT_EQ(metrics->counter("pantry_upstream_failures_total",
                             {{"protocol", "oci"}, {"upstream", "docker.io"}}),
            2u);
}

}  // namespace
}  // namespace pantry::registry::freshness
