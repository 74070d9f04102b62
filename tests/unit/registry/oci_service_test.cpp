// The container registry (/v2/) through its public interface only: oci::service::create and
// install(), with the fake server, exchange and upstream of service_harness.h and a real cache.
// These tests pin what clients see today: statuses, error codes, headers, byte-exact manifests,
// what goes upstream and what is cached.

#include "pantry/registry/oci/service.h"

#include "service_harness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace pantry::registry::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using fault = upstream_answer::fault;

constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kUpstreamName = "registry.test";

// An image: a config blob, one layer and the manifest that references them.
struct image {
  std::string config;
  std::string layer;
  std::string manifest;
  std::string media_type;

  std::string digest() const { return "sha256:" + sha256_hex(manifest); }
  std::string config_digest() const { return "sha256:" + sha256_hex(config); }
  std::string layer_digest() const { return "sha256:" + sha256_hex(layer); }
};

image make_image(unsigned seed, std::string_view media_type = kDockerManifest) {
  image i;
  i.media_type = std::string(media_type);
  i.config = R"({"architecture":"amd64","os":"linux","seed":)" + std::to_string(seed) + "}";
  i.layer = pattern(4000 + seed, seed);
  const bool oci = media_type == kOciManifest;
  const std::string config_type = oci ? "application/vnd.oci.image.config.v1+json"
                                      : "application/vnd.docker.container.image.v1+json";
  const std::string layer_type = oci ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                     : "application/vnd.docker.image.rootfs.diff.tar.gzip";
  // Not canonical JSON on purpose (spaces, key order): pantry must keep the bytes as they are.
  i.manifest = "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"" + i.media_type +
               "\",\n  \"config\": {\"mediaType\": \"" + config_type +
               "\", \"size\": " + std::to_string(i.config.size()) + ", \"digest\": \"" +
               i.config_digest() + "\"},\n  \"layers\": [{\"mediaType\": \"" + layer_type +
               "\", \"size\": " + std::to_string(i.layer.size()) + ", \"digest\": \"" +
               i.layer_digest() + "\"}]\n}\n";
  return i;
}

// The "code" of the first error in an OCI error body, or "" when it is not one.
std::string error_code_of(const recorded_response& r) {
  boost::system::error_code ec;
  auto doc = boost::json::parse(r.body, ec);
  if (ec || !doc.is_object() || !doc.as_object().contains("errors")) return {};
  const auto& errors = doc.at("errors").as_array();
  if (errors.empty() || !errors[0].is_object()) return {};
  return std::string(errors[0].at("code").as_string());
}

// The "tags" of a tag list body.
std::vector<std::string> tags_of(const recorded_response& r) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  auto doc = boost::json::parse(r.body, ec);
  if (ec || !doc.is_object()) return out;
  for (const auto& t : doc.at("tags").as_array())
    out.emplace_back(t.as_string());
  return out;
}

class OciServiceTest : public ::testing::Test {
 protected:
  OciServiceTest() : app_(make_image(1)) {}

  // One upstream, the default; tags fresh for an hour unless a test says otherwise.
  config::oci_config config(std::chrono::seconds tag_ttl = 3600s) {
    config::oci_config c;
    config::oci_upstream u;
    u.name = std::string(kUpstreamName);
    u.url = h_.upstream().base();
    c.upstreams.push_back(u);
    c.default_upstream = u.name;
    c.tag_ttl = tag_ttl;
    return c;
  }

  // Installs a new service over the harness's cache (replacing the routes of an earlier one).
  void install(const config::oci_config& c) {
    oci::service::create(c, h_.store(), h_.client(), h_.flights(), h_.metrics(), h_.blocking())
        ->install(h_.server());
  }

  static std::string manifest_target(std::string_view repo, std::string_view ref) {
    return "/v2/" + std::string(repo) + "/manifests/" + std::string(ref);
  }
  static std::string blob_target(std::string_view repo, std::string_view digest) {
    return "/v2/" + std::string(repo) + "/blobs/" + std::string(digest);
  }

  upstream_answer manifest_answer(const image& i) {
    upstream_answer a;
    a.headers = {{"Content-Type", i.media_type}, {"Docker-Content-Digest", i.digest()}};
    a.body = i.manifest;
    return a;
  }

  void script_manifest(std::string_view repo, std::string_view ref, const image& i) {
    h_.upstream().script(manifest_target(repo, ref), manifest_answer(i));
  }

  void script_blob(std::string_view repo, std::string_view digest, std::string body,
                   fault what = fault::none) {
    upstream_answer a;
    a.headers = {{"Content-Type", "application/octet-stream"}};
    a.body = std::move(body);
    a.what = what;
    h_.upstream().script(blob_target(repo, digest), std::move(a));
  }

  // The default service with app_ cached as team/app:latest, and its layer upstream.
  void given_a_cached_manifest() {
    install(config());
    script_manifest("team/app", "latest", app_);
    script_blob("team/app", app_.layer_digest(), app_.layer);
    ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);
  }

  static fake_request get(std::string target) {
    return {http::verb::get, std::move(target), {}, {}};
  }

  std::size_t upstream_requests(http::verb method, std::string_view target) {
    return h_.upstream().requests_for(method, target).size();
  }

  service_harness h_;
  image app_;
};

TEST_F(OciServiceTest, InstallsTheV2AndTokenRoutes) {
  install(config());
  EXPECT_THAT(h_.server().prefixes(),
              ::testing::UnorderedElementsAre("/v2/", "/v2", "/auth/token"));
}

// ---- ping -------------------------------------------------------------------------------------

TEST_F(OciServiceTest, PingAnswersWithTheApiVersion) {
  install(config());
  for (const char* target : {"/v2/", "/v2"}) {
    auto r = h_.get(target);
    EXPECT_EQ(r.status, 200u) << target << ": " << r;
    EXPECT_EQ(r.body, "{}") << target << ": " << r;
    EXPECT_EQ(r.header("Docker-Distribution-API-Version"), "registry/2.0") << r;
    EXPECT_EQ(r.route, "oci_ping") << r;
  }
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

// ---- manifests by tag -------------------------------------------------------------------------

TEST_F(OciServiceTest, ManifestByTagMissIsCachedByteExact) {
  install(config());
  script_manifest("team/app", "latest", app_);

  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_TRUE(r.complete) << r;
  EXPECT_TRUE(r.misuse.empty()) << r;
  EXPECT_EQ(r.body, app_.manifest) << r;
  EXPECT_EQ(r.header("Docker-Content-Digest"), app_.digest()) << r;
  EXPECT_EQ(r.header("Content-Type"), kDockerManifest) << r;
  EXPECT_EQ(r.header("Cache-Control"), "no-cache") << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::miss) << r;
  EXPECT_EQ(r.route, "oci_manifest") << r;

  auto sent = h_.upstream().requests();
  ASSERT_EQ(sent.size(), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(sent[0].method, "GET") << sent[0];
  EXPECT_EQ(sent[0].target, manifest_target("team/app", "latest")) << sent[0];
  // A client without Accept gets every manifest type asked for.
  EXPECT_THAT(sent[0].header("Accept"), HasSubstr(std::string(kOciManifest))) << sent[0];
  EXPECT_EQ(h_.metric("pantry_upstream_requests_total",
                      {{"protocol", "oci"}, {"upstream", "registry.test"}}),
            1)
      << h_.metrics()->render();

  // By digest now: from the cache, immutable.
  auto by_digest = h_.get(manifest_target("team/app", app_.digest()));
  EXPECT_EQ(by_digest.status, 200u) << by_digest;
  EXPECT_EQ(by_digest.body, app_.manifest) << by_digest;
  EXPECT_EQ(by_digest.outcome, proxy::cache_outcome::hit) << by_digest;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, TagWithinTagTtlMakesNoUpstreamRequest) {
  install(config(3600s));
  script_manifest("team/app", "latest", app_);
  ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);

  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, app_.manifest) << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::hit) << r;
  auto head = h_.head(manifest_target("team/app", "latest"));
  EXPECT_EQ(head.status, 200u) << head;
  EXPECT_TRUE(head.body.empty()) << head;
  EXPECT_EQ(head.header("Content-Length"), std::to_string(app_.manifest.size())) << head;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ExpiredTagIsRevalidatedWithOneHead) {
  install(config(0s));  // every tag is expired as soon as it is stored
  script_manifest("team/app", "latest", app_);
  ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);
  const auto before = h_.upstream().request_count();

  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, app_.manifest) << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::revalidated) << r;
  EXPECT_FALSE(r.has_header("Warning")) << r;
  auto sent = h_.upstream().requests();
  ASSERT_EQ(sent.size(), before + 1) << h_.upstream().describe_requests();
  EXPECT_EQ(sent.back().method, "HEAD") << sent.back();
  EXPECT_EQ(sent.back().target, manifest_target("team/app", "latest")) << sent.back();
}

TEST_F(OciServiceTest, ExpiredTagThatMovedIsFetchedAgain) {
  install(config(0s));
  script_manifest("team/app", "latest", app_);
  ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);

  const image next = make_image(2);
  script_manifest("team/app", "latest", next);
  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, next.manifest) << r;
  EXPECT_EQ(r.header("Docker-Content-Digest"), next.digest()) << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::miss) << r;
  EXPECT_EQ(upstream_requests(http::verb::head, manifest_target("team/app", "latest")), 1u)
      << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_requests(http::verb::get, manifest_target("team/app", "latest")), 2u)
      << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ExpiredTagIsServedStaleWithAWarningWhenUpstreamFails) {
  install(config(0s));
  script_manifest("team/app", "latest", app_);
  auto fresh = h_.get(manifest_target("team/app", "latest"));
  ASSERT_EQ(fresh.status, 200u) << fresh;
  EXPECT_FALSE(fresh.has_header("Warning")) << fresh;

  const proxy::labels failures{{"protocol", "oci"}, {"upstream", "registry.test"}};
  double failures_counted = 0;
  for (const auto& f : upstream_failures(/*broken_body=*/false)) {
    SCOPED_TRACE("upstream: " + f.what);
    h_.upstream().script_failure(manifest_target("team/app", "latest"), f, manifest_answer(app_));
    const auto asked = h_.upstream().request_count();
    auto r = h_.get(manifest_target("team/app", "latest"));
    EXPECT_GT(h_.upstream().request_count(), asked) << "an expired tag was not revalidated";
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.body, app_.manifest) << r;
    EXPECT_EQ(r.header("Docker-Content-Digest"), app_.digest()) << r;
    EXPECT_EQ(r.header("Warning"), kWarningRevalidationFailed) << r;
    EXPECT_EQ(r.outcome, proxy::cache_outcome::stale) << r;
    EXPECT_GT(h_.metric("pantry_upstream_failures_total", failures), failures_counted)
        << h_.metrics()->render();
    failures_counted = h_.metric("pantry_upstream_failures_total", failures);
  }
}

TEST_F(OciServiceTest, ExpiredTagThatUpstreamNoLongerHasIs404) {
  install(config(0s));
  script_manifest("team/app", "latest", app_);
  ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);
  h_.upstream().script_status(manifest_target("team/app", "latest"), 404);
  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 404u) << r;
  EXPECT_EQ(error_code_of(r), "MANIFEST_UNKNOWN") << r;
}

TEST_F(OciServiceTest, UpstreamStatusWithNothingCachedBecomesAnOciError) {
  install(config());
  struct status_case {
    unsigned upstream;
    unsigned status;
    std::string code;
  };
  const std::vector<status_case> cases = {
      {429, 429, "TOOMANYREQUESTS"},
      {503, 502, "UNAVAILABLE"},
      {500, 502, "UNAVAILABLE"},
      // Docker Hub answers 401 for a repository that does not exist.
      {401, 404, "NAME_UNKNOWN"},
      {403, 404, "NAME_UNKNOWN"},
      {404, 404, "MANIFEST_UNKNOWN"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("upstream " + std::to_string(c.upstream));
    const std::string tag = "t" + std::to_string(c.upstream);
    h_.upstream().script_status(manifest_target("team/app", tag), c.upstream,
                                {{"Retry-After", "17"}});
    auto r = h_.get(manifest_target("team/app", tag));
    EXPECT_EQ(r.status, c.status) << r;
    EXPECT_EQ(error_code_of(r), c.code) << r;
    // Only a rate limit passes the upstream's Retry-After on.
    EXPECT_EQ(r.header("Retry-After"), c.upstream == 429 ? "17" : "") << r;
    if (c.status == 502) {
      EXPECT_THAT(r.body, HasSubstr(std::to_string(c.upstream))) << r;
    }
  }
}

TEST_F(OciServiceTest, UnreachableUpstreamWithNothingCachedIs502) {
  auto c = config();
  c.upstreams[0].url = refused_base();
  install(c);
  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 502u) << r;
  EXPECT_EQ(error_code_of(r), "UNAVAILABLE") << r;
}

TEST_F(OciServiceTest, TokenProtectedUpstreamGetsATokenAndTheRetryCarriesIt) {
  install(config());
  const std::string challenge = "Bearer realm=\"" + h_.upstream().base() +
                                "/token\",service=\"registry.test\",scope=\"repository:team/"
                                "app:pull\"";
  upstream_answer m = manifest_answer(app_);
  m.required_authorization = "Bearer tok-1";
  m.challenge = challenge;
  h_.upstream().script(manifest_target("team/app", "latest"), m);
  upstream_answer token;
  token.headers = {{"Content-Type", "application/json"}};
  token.body = R"({"token":"tok-1","expires_in":300})";
  h_.upstream().script("/token?service=registry.test&scope=repository:team/app:pull", token);

  auto r = h_.get(manifest_target("team/app", "latest"));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, app_.manifest) << r;
  auto sent = h_.upstream().requests();
  ASSERT_EQ(sent.size(), 3u) << h_.upstream().describe_requests();
  EXPECT_FALSE(sent[0].has_header("Authorization")) << sent[0];
  EXPECT_THAT(sent[1].target, StartsWith("/token?")) << sent[1];
  EXPECT_EQ(sent[2].header("Authorization"), "Bearer tok-1") << sent[2];

  // The token is kept: the blob goes straight up with it.
  upstream_answer layer;
  layer.body = app_.layer;
  layer.required_authorization = "Bearer tok-1";
  layer.challenge = challenge;
  h_.upstream().script(blob_target("team/app", app_.layer_digest()), layer);
  auto blob = h_.get(blob_target("team/app", app_.layer_digest()));
  EXPECT_EQ(blob.status, 200u) << blob;
  EXPECT_EQ(blob.body, app_.layer) << blob;
  auto blob_gets = h_.upstream().requests_for(blob_target("team/app", app_.layer_digest()));
  ASSERT_EQ(blob_gets.size(), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(blob_gets[0].header("Authorization"), "Bearer tok-1") << blob_gets[0];
}

// ---- Accept -----------------------------------------------------------------------------------

TEST_F(OciServiceTest, CachedTagOfATypeTheClientDoesNotAcceptGoesUpstream) {
  install(config());
  script_manifest("team/app", "latest", app_);  // a Docker v2 manifest
  ASSERT_EQ(h_.get(manifest_target("team/app", "latest")).status, 200u);

  const image oci = make_image(3, kOciManifest);
  script_manifest("team/app", "latest", oci);
  auto r = h_.get(manifest_target("team/app", "latest"), {{"Accept", std::string(kOciManifest)}});
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.header("Content-Type"), kOciManifest) << r;
  EXPECT_EQ(r.body, oci.manifest) << r;
  auto gets = h_.upstream().requests_for(http::verb::get, manifest_target("team/app", "latest"));
  ASSERT_EQ(gets.size(), 2u) << h_.upstream().describe_requests();
  // The client's Accept goes upstream as it came.
  EXPECT_EQ(gets[1].header("Accept"), kOciManifest) << gets[1];

  // A client that accepts both gets the cached one without asking.
  auto both =
      h_.get(manifest_target("team/app", "latest"),
             {{"Accept", std::string(kDockerManifest)}, {"Accept", std::string(kOciManifest)}});
  EXPECT_EQ(both.status, 200u) << both;
  EXPECT_EQ(both.outcome, proxy::cache_outcome::hit) << both;
  EXPECT_EQ(
      gets.size(),
      h_.upstream().requests_for(http::verb::get, manifest_target("team/app", "latest")).size())
      << h_.upstream().describe_requests();
}

// ---- blobs ------------------------------------------------------------------------------------

TEST_F(OciServiceTest, BlobIsFetchedOnceVerifiedAndThenServedFromTheCache) {
  given_a_cached_manifest();
  const auto blobs_before = h_.blob_count();

  auto first = h_.get(blob_target("team/app", app_.layer_digest()));
  EXPECT_EQ(first.status, 200u) << first;
  EXPECT_TRUE(first.complete) << first;
  EXPECT_EQ(first.body, app_.layer) << first;
  EXPECT_EQ(first.header("Docker-Content-Digest"), app_.layer_digest()) << first;
  EXPECT_EQ(first.header("Content-Length"), std::to_string(app_.layer.size())) << first;
  EXPECT_EQ(first.outcome, proxy::cache_outcome::miss) << first;
  EXPECT_EQ(first.route, "oci_blob") << first;
  EXPECT_EQ(h_.blob_count(), blobs_before + 1);

  auto second = h_.get(blob_target("team/app", app_.layer_digest()));
  EXPECT_EQ(second.status, 200u) << second;
  EXPECT_EQ(second.body, app_.layer) << second;
  EXPECT_EQ(second.outcome, proxy::cache_outcome::hit) << second;
  // Known from the manifest: no HEAD upstream, one GET.
  EXPECT_EQ(upstream_requests(http::verb::get, blob_target("team/app", app_.layer_digest())), 1u)
      << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_requests(http::verb::head, blob_target("team/app", app_.layer_digest())), 0u)
      << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, BlobWithTheWrongDigestResetsTheClientAndIsNotCached) {
  given_a_cached_manifest();
  std::string wrong = app_.layer;
  wrong[10] ^= 1;
  script_blob("team/app", app_.layer_digest(), wrong);
  const auto blobs_before = h_.blob_count();

  auto bad = h_.get(blob_target("team/app", app_.layer_digest()));
  EXPECT_TRUE(bad.reset) << bad;
  EXPECT_FALSE(bad.complete) << bad;
  EXPECT_LT(bad.body.size(), wrong.size()) << bad;
  EXPECT_EQ(h_.blob_count(), blobs_before) << "a blob with the wrong digest was cached";

  script_blob("team/app", app_.layer_digest(), app_.layer);
  auto good = h_.get(blob_target("team/app", app_.layer_digest()));
  EXPECT_EQ(good.status, 200u) << good;
  EXPECT_EQ(good.body, app_.layer) << good;
  EXPECT_EQ(upstream_requests(http::verb::get, blob_target("team/app", app_.layer_digest())), 2u)
      << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ConcurrentBlobRequestsShareOneFetch) {
  given_a_cached_manifest();
  std::vector<fake_request> reqs;
  for (int i = 0; i < 3; ++i)
    reqs.push_back({http::verb::get, blob_target("team/app", app_.layer_digest()), {}, {}});
  auto rs = h_.serve_together(std::move(reqs));
  for (const auto& r : rs) {
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.body, app_.layer) << r;
  }
  EXPECT_EQ(rs[1].outcome, proxy::cache_outcome::coalesced) << rs[1];
  EXPECT_EQ(upstream_requests(http::verb::get, blob_target("team/app", app_.layer_digest())), 1u)
      << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, CachedBlobIsNotServedUnderARepositoryWhoseManifestsDoNotReferenceIt) {
  given_a_cached_manifest();
  ASSERT_EQ(h_.get(blob_target("team/app", app_.layer_digest())).status, 200u);

  // Only the upstream can say whether "other/app" has it: a HEAD, which says no (unscripted).
  auto r = h_.get(blob_target("other/app", app_.layer_digest()));
  EXPECT_EQ(r.status, 404u) << r;
  EXPECT_EQ(error_code_of(r), "BLOB_UNKNOWN") << r;
  EXPECT_NE(r.body.find("BLOB_UNKNOWN"), std::string::npos) << r;
  EXPECT_EQ(upstream_requests(http::verb::head, blob_target("other/app", app_.layer_digest())), 1u)
      << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_requests(http::verb::get, blob_target("other/app", app_.layer_digest())), 0u)
      << h_.upstream().describe_requests();
}

// Existence checks coalesce like fetches: clients that ask at once for a blob no cached manifest
// of the repository references share one upstream HEAD (and then one GET), not one each.
TEST_F(OciServiceTest, ConcurrentGetsOfAnUnreferencedBlobShareOneUpstreamHead) {
  given_a_cached_manifest();
  script_blob("other/app", app_.layer_digest(), app_.layer);
  const std::string target = blob_target("other/app", app_.layer_digest());
  std::vector<fake_request> reqs;
  for (int i = 0; i < 50; ++i)
    reqs.push_back(get(target));
  auto rs = h_.serve_together(std::move(reqs));
  ASSERT_EQ(rs.size(), 50u);
  for (const auto& r : rs) {
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.body, app_.layer) << r;
    EXPECT_EQ(r.header("Docker-Content-Digest"), app_.layer_digest()) << r;
  }
  EXPECT_EQ(upstream_requests(http::verb::head, target), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_requests(http::verb::get, target), 1u) << h_.upstream().describe_requests();
}

// A failed check is shared too: every client gets the upstream's 404, from one HEAD.
TEST_F(OciServiceTest, ConcurrentGetsOfABlobTheUpstreamDeniesShareOneUpstreamHead) {
  given_a_cached_manifest();
  const std::string target = blob_target("other/app", app_.layer_digest());
  std::vector<fake_request> reqs;
  for (int i = 0; i < 10; ++i)
    reqs.push_back(get(target));
  auto rs = h_.serve_together(std::move(reqs));
  for (const auto& r : rs) {
    EXPECT_EQ(r.status, 404u) << r;
    EXPECT_EQ(error_code_of(r), "BLOB_UNKNOWN") << r;
  }
  EXPECT_EQ(upstream_requests(http::verb::head, target), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_requests(http::verb::get, target), 0u) << h_.upstream().describe_requests();
}

// ---- one upstream request per object, whatever the timing -------------------------------------
//
// Client B looks in the cache and misses; before it goes on, client A's request fetches and
// stores the object and ends (its fetch leaves the coalescer or the flight table); then B asks
// for a fetch. B must get what A's fetch stored, not send a second upstream request
// (service_harness::serve_racing).

TEST_F(OciServiceTest, TagMissedBeforeAnotherFetchStoredItIsNotFetchedAgain) {
  install(config());
  script_manifest("team/app", "latest", app_);
  const std::string target = manifest_target("team/app", "latest");
  auto [a, b] = h_.serve_racing(get(target), get(target));
  ASSERT_EQ(a.status, 200u) << a;
  ASSERT_EQ(a.outcome, proxy::cache_outcome::miss) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, app_.manifest) << b;
  EXPECT_EQ(b.header("Docker-Content-Digest"), app_.digest()) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  EXPECT_EQ(upstream_requests(http::verb::get, target), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(h_.metric("pantry_upstream_requests_total", {{"protocol", "oci"}}), 1)
      << h_.metrics()->render();
}

TEST_F(OciServiceTest, ManifestByDigestMissedBeforeAnotherFetchStoredItIsNotFetchedAgain) {
  install(config());
  script_manifest("team/app", app_.digest(), app_);
  const std::string target = manifest_target("team/app", app_.digest());
  auto [a, b] = h_.serve_racing(get(target), get(target));
  ASSERT_EQ(a.status, 200u) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, app_.manifest) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  EXPECT_EQ(upstream_requests(http::verb::get, target), 1u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ExpiredTagSeenBeforeAnotherRevalidationRenewedItIsNotAskedAgain) {
  install(config(0s));  // stored expired
  script_manifest("team/app", "latest", app_);
  const std::string target = manifest_target("team/app", "latest");
  ASSERT_EQ(h_.get(target).status, 200u);
  install(config(3600s));  // a renewal now lasts an hour
  auto [a, b] = h_.serve_racing(get(target), get(target));
  ASSERT_EQ(a.outcome, proxy::cache_outcome::revalidated) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, app_.manifest) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  // The first GET, then A's HEAD.
  EXPECT_EQ(h_.upstream().request_count(), 2u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ExpiredTagSeenBeforeAnotherFetchMovedItIsNotFetchedAgain) {
  install(config(0s));
  script_manifest("team/app", "latest", app_);
  const std::string target = manifest_target("team/app", "latest");
  ASSERT_EQ(h_.get(target).status, 200u);
  install(config(3600s));
  const image next = make_image(2);
  script_manifest("team/app", "latest", next);
  auto [a, b] = h_.serve_racing(get(target), get(target));
  ASSERT_EQ(a.body, next.manifest) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, next.manifest) << b;
  EXPECT_EQ(b.header("Docker-Content-Digest"), next.digest()) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  // The first GET, then A's HEAD (another digest) and GET.
  EXPECT_EQ(h_.upstream().request_count(), 3u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, BlobMissedBeforeAnotherFlightCommittedItIsNotFetchedAgain) {
  given_a_cached_manifest();
  const std::string target = blob_target("team/app", app_.layer_digest());
  auto [a, b] = h_.serve_racing(get(target), get(target));
  ASSERT_EQ(a.status, 200u) << a;
  ASSERT_EQ(a.outcome, proxy::cache_outcome::miss) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, app_.layer) << b;
  EXPECT_EQ(b.header("Docker-Content-Digest"), app_.layer_digest()) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  EXPECT_EQ(upstream_requests(http::verb::get, target), 1u) << h_.upstream().describe_requests();
  // The manifest's GET and A's: nothing is counted for B.
  EXPECT_EQ(h_.metric("pantry_upstream_requests_total", {{"protocol", "oci"}}), 2)
      << h_.metrics()->render();
}

// ---- hosted repositories ----------------------------------------------------------------------

class OciHostedTest : public OciServiceTest {
 protected:
  config::oci_config hosted_config() {
    auto c = config();
    c.hosted.prefix = "hosted/";
    c.hosted.users.push_back({"ci", "ci-token-0123456789"});
    return c;
  }
  header_lines login() const {
    return {{"Authorization", proxy::basic_authorization("ci", "ci-token-0123456789")}};
  }

  // A monolithic upload: POST …/blobs/uploads/?digest=… with the whole blob.
  recorded_response push_blob(std::string_view repo, const std::string& bytes) {
    fake_request req;
    req.method = http::verb::post;
    req.target = "/v2/" + std::string(repo) + "/blobs/uploads/?digest=sha256:" + sha256_hex(bytes);
    req.headers = login();
    req.headers.emplace_back("Content-Type", "application/octet-stream");
    req.body = bytes;
    return h_.serve(std::move(req));
  }

  // POST …/blobs/uploads/?mount=<digest>, no `from`.
  recorded_response mount_without_from(std::string_view repo, const std::string& digest) {
    fake_request req;
    req.method = http::verb::post;
    req.target = "/v2/" + std::string(repo) + "/blobs/uploads/?mount=" + digest;
    req.headers = login();
    return h_.serve(std::move(req));
  }

  recorded_response push_manifest(std::string_view repo, std::string_view ref, const image& i) {
    fake_request req;
    req.method = http::verb::put;
    req.target = manifest_target(repo, ref);
    req.headers = login();
    req.headers.emplace_back("Content-Type", i.media_type);
    req.body = i.manifest;
    return h_.serve(std::move(req));
  }

  void push_image(std::string_view repo, std::string_view tag, const image& i) {
    auto c = push_blob(repo, i.config);
    ASSERT_EQ(c.status, 201u) << c;
    auto l = push_blob(repo, i.layer);
    ASSERT_EQ(l.status, 201u) << l;
    auto m = push_manifest(repo, tag, i);
    ASSERT_EQ(m.status, 201u) << m;
  }
};

TEST_F(OciHostedTest, PushedImageIsPulledBackByteExact) {
  install(hosted_config());

  auto blob = push_blob("hosted/app", app_.layer);
  EXPECT_EQ(blob.status, 201u) << blob;
  EXPECT_EQ(blob.header("Docker-Content-Digest"), app_.layer_digest()) << blob;
  EXPECT_EQ(blob.header("Location"), blob_target("hosted/app", app_.layer_digest())) << blob;
  ASSERT_EQ(push_blob("hosted/app", app_.config).status, 201u);

  auto m = push_manifest("hosted/app", "v1", app_);
  EXPECT_EQ(m.status, 201u) << m;
  EXPECT_EQ(m.header("Docker-Content-Digest"), app_.digest()) << m;
  EXPECT_EQ(m.header("Location"), manifest_target("hosted/app", app_.digest())) << m;

  auto pulled = h_.get(manifest_target("hosted/app", "v1"));
  EXPECT_EQ(pulled.status, 200u) << pulled;
  EXPECT_EQ(pulled.body, app_.manifest) << pulled;
  EXPECT_EQ(pulled.header("Content-Type"), app_.media_type) << pulled;
  EXPECT_EQ(pulled.header("Docker-Content-Digest"), app_.digest()) << pulled;
  auto by_digest = h_.get(manifest_target("hosted/app", app_.digest()));
  EXPECT_EQ(by_digest.status, 200u) << by_digest;
  EXPECT_EQ(by_digest.body, app_.manifest) << by_digest;
  auto layer = h_.get(blob_target("hosted/app", app_.layer_digest()));
  EXPECT_EQ(layer.status, 200u) << layer;
  EXPECT_EQ(layer.body, app_.layer) << layer;
  EXPECT_EQ(layer.route, "oci_hosted_blob") << layer;

  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

TEST_F(OciHostedTest, PushWithoutLoginIsRefused) {
  install(hosted_config());
  fake_request req;
  req.method = http::verb::post;
  req.target = "/v2/hosted/app/blobs/uploads/?digest=sha256:" + sha256_hex(app_.layer);
  req.body = app_.layer;
  auto r = h_.serve(std::move(req));
  EXPECT_EQ(r.status, 401u) << r;
  EXPECT_TRUE(r.has_header("WWW-Authenticate")) << r;
  auto pulled = h_.get(blob_target("hosted/app", app_.layer_digest()));
  EXPECT_EQ(pulled.status, 404u) << pulled;
}

TEST_F(OciHostedTest, ManifestReferencingAMissingBlobIsRefused) {
  install(hosted_config());
  ASSERT_EQ(push_blob("hosted/app", app_.config).status, 201u);  // the layer is never pushed
  auto r = push_manifest("hosted/app", "v1", app_);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_EQ(error_code_of(r), "MANIFEST_BLOB_UNKNOWN") << r;
  EXPECT_THAT(r.body, HasSubstr(app_.layer_digest())) << r;
  auto pulled = h_.get(manifest_target("hosted/app", "v1"));
  EXPECT_EQ(pulled.status, 404u) << pulled;
  EXPECT_EQ(error_code_of(pulled), "MANIFEST_UNKNOWN") << pulled;
}

// The OCI distribution spec, "Mounting a blob from another repository": "The registry MAY treat
// the `from` parameter as optional, and it MAY cross-mount the blob if it can be found." and
// "Alternatively, if a registry does not support cross-repository mounting or is unable to mount
// the requested blob, it SHOULD return a `202`." pantry looks in every repository the client may
// read.
TEST_F(OciHostedTest, MountWithoutFromTakesTheBlobFromAHostedRepositoryThatHoldsIt) {
  install(hosted_config());
  ASSERT_EQ(push_blob("hosted/base", app_.layer).status, 201u);
  auto r = mount_without_from("hosted/app", app_.layer_digest());
  EXPECT_EQ(r.status, 201u) << r;
  EXPECT_EQ(r.header("Location"), blob_target("hosted/app", app_.layer_digest())) << r;
  EXPECT_EQ(r.header("Docker-Content-Digest"), app_.layer_digest()) << r;
  auto pulled = h_.get(blob_target("hosted/app", app_.layer_digest()));
  EXPECT_EQ(pulled.status, 200u) << pulled;
  EXPECT_EQ(pulled.body, app_.layer) << pulled;
}

TEST_F(OciHostedTest, MountWithoutFromTakesTheBlobFromAProxiedRepositoryThatHoldsIt) {
  given_a_cached_manifest();
  ASSERT_EQ(h_.get(blob_target("team/app", app_.layer_digest())).status, 200u);
  install(hosted_config());
  const auto asked = h_.upstream().request_count();
  auto r = mount_without_from("hosted/app", app_.layer_digest());
  EXPECT_EQ(r.status, 201u) << r;
  EXPECT_EQ(r.header("Location"), blob_target("hosted/app", app_.layer_digest())) << r;
  auto pulled = h_.get(blob_target("hosted/app", app_.layer_digest()));
  EXPECT_EQ(pulled.status, 200u) << pulled;
  EXPECT_EQ(pulled.body, app_.layer) << pulled;
  EXPECT_EQ(h_.upstream().request_count(), asked) << h_.upstream().describe_requests();
}

TEST_F(OciHostedTest, MountWithoutFromOfABlobNoRepositoryHoldsStartsAnUpload) {
  install(hosted_config());
  auto r = mount_without_from("hosted/app", app_.layer_digest());
  EXPECT_EQ(r.status, 202u) << r;
  EXPECT_THAT(r.header("Location"), HasSubstr("/v2/hosted/app/blobs/uploads/")) << r;
  auto pulled = h_.get(blob_target("hosted/app", app_.layer_digest()));
  EXPECT_EQ(pulled.status, 404u) << pulled;
}

TEST_F(OciHostedTest, UploadWithTheWrongDigestStoresNothing) {
  install(hosted_config());
  fake_request req;
  req.method = http::verb::post;
  req.target = "/v2/hosted/app/blobs/uploads/?digest=sha256:" + sha256_hex("something else");
  req.headers = login();
  req.body = app_.layer;
  const auto blobs_before = h_.blob_count();
  auto r = h_.serve(std::move(req));
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_EQ(error_code_of(r), "DIGEST_INVALID") << r;
  EXPECT_EQ(h_.blob_count(), blobs_before);
}

// Two pushes of one blob at once: the second upload finds the first still writing the blob
// (begun, not yet committed). It must wait for that write and answer 201, not fail to pin a blob
// "not in the cache" (seen with two `pantry build`s of one image pushing their layer together).
TEST_F(OciHostedTest, UploadWhileAnotherUploadOfTheSameBlobIsBeingWrittenWaitsForIt) {
  install(hosted_config());
  const auto id = cache::digest::of(std::string_view(app_.layer));
  auto first = h_.store()->begin_blob(id, "application/octet-stream", app_.layer.size(), true);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(first->write(std::as_bytes(std::span(app_.layer))));
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto committed = first->commit();
    EXPECT_TRUE(committed) << committed.error().message;
  });
  auto r = push_blob("hosted/app", app_.layer);
  finisher.join();
  EXPECT_EQ(r.status, 201u) << r;
  auto info = h_.store()->stat_blob(id);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_TRUE(info->pinned);
}

TEST_F(OciHostedTest, TagListIsPagedWithNAndLast) {
  install(hosted_config());
  const image b = make_image(4);
  const image c = make_image(5);
  push_image("hosted/app", "v1", app_);
  push_image("hosted/app", "v3", c);
  push_image("hosted/app", "v2", b);

  auto all = h_.get("/v2/hosted/app/tags/list");
  EXPECT_EQ(all.status, 200u) << all;
  EXPECT_EQ(tags_of(all), (std::vector<std::string>{"v1", "v2", "v3"})) << all;
  EXPECT_FALSE(all.has_header("Link")) << all;

  auto first = h_.get("/v2/hosted/app/tags/list?n=2");
  EXPECT_EQ(tags_of(first), (std::vector<std::string>{"v1", "v2"})) << first;
  EXPECT_EQ(first.header("Link"), "</v2/hosted/app/tags/list?n=2&last=v2>; rel=\"next\"") << first;

  auto rest = h_.get("/v2/hosted/app/tags/list?n=2&last=v2");
  EXPECT_EQ(tags_of(rest), (std::vector<std::string>{"v3"})) << rest;
  EXPECT_FALSE(rest.has_header("Link")) << rest;

  auto none = h_.get("/v2/hosted/empty/tags/list");
  EXPECT_EQ(none.status, 404u) << none;
  EXPECT_EQ(error_code_of(none), "NAME_UNKNOWN") << none;
}

// ---- tag lists of proxied repositories --------------------------------------------------------

TEST_F(OciServiceTest, ProxiedTagListIsSortedAndPagedWhenUpstreamIgnoresNAndLast) {
  install(config());
  // docker-registry 2.x answers every tag, in its storage's order, whatever n and last say.
  upstream_answer a;
  a.headers = {{"Content-Type", "application/json"}};
  a.body = R"({"name":"team/app","tags":["d","b","a","c"]})";
  h_.upstream().script("/v2/team/app/tags/list", a);
  h_.upstream().script("/v2/team/app/tags/list?n=2", a);
  h_.upstream().script("/v2/team/app/tags/list?n=2&last=b", a);

  auto all = h_.get("/v2/team/app/tags/list");
  EXPECT_EQ(all.status, 200u) << all;
  EXPECT_EQ(tags_of(all), (std::vector<std::string>{"a", "b", "c", "d"})) << all;
  EXPECT_FALSE(all.has_header("Link")) << all;
  EXPECT_EQ(all.route, "oci_tags") << all;

  auto first = h_.get("/v2/team/app/tags/list?n=2");
  EXPECT_EQ(tags_of(first), (std::vector<std::string>{"a", "b"})) << first;
  EXPECT_EQ(first.header("Link"), "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\"") << first;

  auto rest = h_.get("/v2/team/app/tags/list?n=2&last=b");
  EXPECT_EQ(tags_of(rest), (std::vector<std::string>{"c", "d"})) << rest;
  EXPECT_FALSE(rest.has_header("Link")) << rest;

  // n and last went upstream as the client gave them; nothing is cached, so all three asked.
  EXPECT_EQ(h_.upstream().requests_for("/v2/team/app/tags/list?n=2&last=b").size(), 1u)
      << h_.upstream().describe_requests();
  EXPECT_EQ(h_.upstream().request_count(), 3u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ProxiedTagListKeepsTheUpstreamsPaging) {
  install(config());
  // An upstream that pages itself: its Link is rewritten to name the repository as the client
  // does, and its page is not cut again.
  upstream_answer a;
  a.headers = {{"Content-Type", "application/json"},
               {"Link", "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\""}};
  a.body = R"({"name":"team/app","tags":["a","b"]})";
  h_.upstream().script("/v2/team/app/tags/list?n=2", a);
  auto r = h_.get("/v2/registry.test/team/app/tags/list?n=2");
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(tags_of(r), (std::vector<std::string>{"a", "b"})) << r;
  EXPECT_EQ(r.header("Link"), "</v2/registry.test/team/app/tags/list?n=2&last=b>; rel=\"next\"")
      << r;
}

// ---- OCI 1.1 referrers --------------------------------------------------------------------------

// An artifact (a signature, an SBOM) attached to `subject`: an OCI manifest with an empty config,
// no layers, `artifactType` (when not empty) and one annotation.
image make_referrer(const image& subject, std::string_view artifact_type, std::string_view note) {
  image i;
  i.media_type = std::string(kOciManifest);
  i.config = "{}";
  i.manifest = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)";
  if (!artifact_type.empty())
    i.manifest += R"("artifactType":")" + std::string(artifact_type) + R"(",)";
  i.manifest += R"("config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":")" +
                i.config_digest() + R"(","size":2},"layers":[],"subject":{"mediaType":")" +
                subject.media_type + R"(","digest":")" + subject.digest() + R"(","size":)" +
                std::to_string(subject.manifest.size()) + R"(},"annotations":{"note":")" +
                std::string(note) + R"("}})";
  return i;
}

// The "manifests" of a referrers answer as (digest, artifactType, note annotation).
std::vector<std::tuple<std::string, std::string, std::string>> referrers_of(
    const recorded_response& r) {
  std::vector<std::tuple<std::string, std::string, std::string>> out;
  boost::system::error_code ec;
  auto doc = boost::json::parse(r.body, ec);
  if (ec || !doc.is_object()) return out;
  for (const auto& m : doc.at("manifests").as_array()) {
    const auto& o = m.as_object();
    std::string type =
        o.contains("artifactType") ? std::string(o.at("artifactType").as_string()) : std::string();
    std::string note;
    if (o.contains("annotations")) note = o.at("annotations").at("note").as_string();
    out.emplace_back(std::string(o.at("digest").as_string()), type, note);
  }
  return out;
}

TEST_F(OciHostedTest, ReferrersListsEveryManifestWhoseSubjectIsTheDigest) {
  install(hosted_config());
  push_image("hosted/app", "v1", app_);
  const image sig = make_referrer(app_, "application/vnd.example.sig", "signed");
  const image sbom = make_referrer(app_, "", "sbom");  // typed by its config
  ASSERT_EQ(push_blob("hosted/app", sig.config).status, 201u);
  auto pushed = push_manifest("hosted/app", sig.digest(), sig);
  ASSERT_EQ(pushed.status, 201u) << pushed;
  EXPECT_EQ(pushed.header("OCI-Subject"), app_.digest()) << pushed;
  ASSERT_EQ(push_manifest("hosted/app", sbom.digest(), sbom).status, 201u);
  auto plain = push_manifest("hosted/app", "v2", make_image(7));
  EXPECT_FALSE(plain.has_header("OCI-Subject")) << plain;

  auto all = h_.get("/v2/hosted/app/referrers/" + app_.digest());
  EXPECT_EQ(all.status, 200u) << all;
  EXPECT_EQ(all.header("Content-Type"), "application/vnd.oci.image.index.v1+json") << all;
  EXPECT_FALSE(all.has_header("OCI-Filters-Applied")) << all;
  EXPECT_EQ(all.route, "oci_hosted_referrers") << all;
  auto found = referrers_of(all);
  std::sort(found.begin(), found.end());
  auto want = std::vector<std::tuple<std::string, std::string, std::string>>{
      {sig.digest(), "application/vnd.example.sig", "signed"},
      {sbom.digest(), "application/vnd.oci.empty.v1+json", "sbom"}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(found, want) << all;
  EXPECT_THAT(all.body, HasSubstr("\"size\":" + std::to_string(sig.manifest.size()))) << all;

  auto only = h_.get("/v2/hosted/app/referrers/" + app_.digest() +
                     "?artifactType=application%2Fvnd.example.sig");
  EXPECT_EQ(only.status, 200u) << only;
  EXPECT_EQ(only.header("OCI-Filters-Applied"), "artifactType") << only;
  EXPECT_EQ(referrers_of(only).size(), 1u) << only;

  // An unknown digest, or another repository: an empty list, never a 404.
  auto none = h_.get("/v2/hosted/app/referrers/sha256:" + std::string(64, '0'));
  EXPECT_EQ(none.status, 200u) << none;
  EXPECT_THAT(none.body, HasSubstr("\"manifests\":[]")) << none;
  auto elsewhere = h_.get("/v2/hosted/other/referrers/" + app_.digest());
  EXPECT_EQ(elsewhere.status, 200u) << elsewhere;
  EXPECT_TRUE(referrers_of(elsewhere).empty()) << elsewhere;

  // A deleted referrer leaves the list.
  fake_request del;
  del.method = http::verb::delete_;
  del.target = manifest_target("hosted/app", sig.digest());
  del.headers = login();
  ASSERT_EQ(h_.serve(std::move(del)).status, 202u);
  auto after = h_.get("/v2/hosted/app/referrers/" + app_.digest());
  ASSERT_EQ(referrers_of(after).size(), 1u) << after;
  EXPECT_EQ(std::get<0>(referrers_of(after)[0]), sbom.digest()) << after;
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

// gc keeps what a referrer references like any manifest's content, and drops it with the
// referrer.
TEST_F(OciHostedTest, GcKeepsWhatOnlyAReferrerReferences) {
  install(hosted_config());
  push_image("hosted/app", "v1", app_);
  image sbom = make_referrer(app_, "application/vnd.example.sbom", "sbom");
  sbom.config = R"({"sbom":"only this referrer uses me"})";
  const std::string empty_config = R"("application/vnd.oci.empty.v1+json","digest":")" +
                                   make_referrer(app_, "", "").config_digest() + R"(","size":2)";
  sbom.manifest.replace(sbom.manifest.find(empty_config), empty_config.size(),
                        R"("application/vnd.example.sbom.config","digest":")" +
                            sbom.config_digest() + R"(","size":)" +
                            std::to_string(sbom.config.size()));
  ASSERT_EQ(push_blob("hosted/app", sbom.config).status, 201u);
  ASSERT_EQ(push_manifest("hosted/app", sbom.digest(), sbom).status, 201u);
  const auto config_id = cache::digest::parse(sbom.config_digest()).value();

  auto kept = oci::collect_hosted_garbage(*h_.store(), 0s);
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(kept->references_removed, 0u);
  EXPECT_TRUE(h_.store()->stat_blob(config_id)) << "the referrer's config went";
  EXPECT_EQ(h_.get(blob_target("hosted/app", sbom.config_digest())).status, 200u);

  fake_request del;
  del.method = http::verb::delete_;
  del.target = manifest_target("hosted/app", sbom.digest());
  del.headers = login();
  ASSERT_EQ(h_.serve(std::move(del)).status, 202u);
  auto swept = oci::collect_hosted_garbage(*h_.store(), 0s);
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(swept->references_removed, 1u);
  EXPECT_FALSE(h_.store()->stat_blob(config_id)) << "an unreferenced config stayed";
  EXPECT_EQ(h_.get(blob_target("hosted/app", app_.layer_digest())).status, 200u);
}

TEST_F(OciHostedTest, ReferrerMayBePushedBeforeItsSubject) {
  install(hosted_config());
  const image sig = make_referrer(app_, "application/vnd.example.sig", "early");
  ASSERT_EQ(push_blob("hosted/app", sig.config).status, 201u);
  auto r = push_manifest("hosted/app", sig.digest(), sig);
  EXPECT_EQ(r.status, 201u) << r;
  EXPECT_EQ(r.header("OCI-Subject"), app_.digest()) << r;
  EXPECT_EQ(referrers_of(h_.get("/v2/hosted/app/referrers/" + app_.digest())).size(), 1u);
}

TEST_F(OciHostedTest, ManifestReadByAReferenceThatIsNeitherTagNorDigestIsUnknown) {
  install(hosted_config());
  auto get = h_.get(manifest_target("hosted/app", ".INVALID_MANIFEST_NAME"));
  EXPECT_EQ(get.status, 404u) << get;
  EXPECT_EQ(error_code_of(get), "MANIFEST_UNKNOWN") << get;
  auto put = push_manifest("hosted/app", ".INVALID_MANIFEST_NAME", app_);
  EXPECT_EQ(put.status, 400u) << put;
  EXPECT_EQ(error_code_of(put), "TAG_INVALID") << put;
}

// An upstream's referrers answer (an OCI index) listing `referrers` as (manifest, artifactType,
// note annotation or "" for none), each with a made-up size.
upstream_answer referrers_answer(
    const std::vector<std::tuple<image, std::string, std::string>>& referrers) {
  upstream_answer a;
  a.headers = {{"Content-Type", "application/vnd.oci.image.index.v1+json"}};
  a.body =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)";
  for (const auto& [m, type, note] : referrers) {
    if (a.body.back() == '}') a.body += ",";
    a.body += R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"digest":")" +
              m.digest() + R"(","artifactType":")" + type + "\"";
    if (!note.empty()) a.body += R"(,"annotations":{"note":")" + note + "\"}";
    a.body += "}";
  }
  a.body += "]}";
  return a;
}

TEST_F(OciServiceTest, ProxiedReferrersComeFromTheUpstreamsApiFilteredHere) {
  install(config());
  const image sig = make_referrer(app_, "application/vnd.example.sig", "signed");
  const image sbom = make_referrer(app_, "application/vnd.example.sbom", "sbom");
  const upstream_answer a = referrers_answer({{sig, "application/vnd.example.sig", "signed"},
                                              {sbom, "application/vnd.example.sbom", "sbom"}});
  h_.upstream().script("/v2/team/app/referrers/" + app_.digest(), a);
  auto r = h_.get("/v2/team/app/referrers/" + app_.digest() +
                  "?artifactType=application/vnd.example.sbom");
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.route, "oci_referrers") << r;
  EXPECT_EQ(r.header("OCI-Filters-Applied"), "artifactType") << r;
  EXPECT_EQ(referrers_of(r), (std::vector<std::tuple<std::string, std::string, std::string>>{
                                 {sbom.digest(), "application/vnd.example.sbom", "sbom"}}))
      << r;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

TEST_F(OciServiceTest, ProxiedReferrersFallBackToTheTagSchemaWhenUpstreamHasNoApi) {
  install(config());
  const image sig = make_referrer(app_, "application/vnd.example.sig", "old way");
  // Upstream answers 404 for the API (unscripted); the client-maintained index is a tag.
  const std::string tag = "sha256-" + app_.digest().substr(7);
  const upstream_answer a = referrers_answer({{sig, "application/vnd.example.sig", "old way"}});
  h_.upstream().script(manifest_target("team/app", tag), a);
  auto r = h_.get("/v2/team/app/referrers/" + app_.digest());
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(referrers_of(r), (std::vector<std::tuple<std::string, std::string, std::string>>{
                                 {sig.digest(), "application/vnd.example.sig", "old way"}}))
      << r;
  // Neither the API nor the tag: no referrers, still 200.
  const image other = make_image(9);
  auto none = h_.get("/v2/team/app/referrers/" + other.digest());
  EXPECT_EQ(none.status, 200u) << none;
  EXPECT_TRUE(referrers_of(none).empty()) << none;
}

TEST_F(OciServiceTest, ProxiedReferrersAreCachedLikeATagAndServedStaleWhenUpstreamFails) {
  const image sig = make_referrer(app_, "application/vnd.example.sig", "signed");
  const upstream_answer a = referrers_answer({{sig, "application/vnd.example.sig", ""}});
  const std::string api = "/v2/team/app/referrers/" + app_.digest();
  h_.upstream().script(api, a);
  const auto want = std::vector<std::tuple<std::string, std::string, std::string>>{
      {sig.digest(), "application/vnd.example.sig", ""}};

  install(config(3600s));
  auto first = h_.get(api);
  EXPECT_EQ(first.outcome, proxy::cache_outcome::miss) << first;
  auto second = h_.get(api);
  EXPECT_EQ(second.outcome, proxy::cache_outcome::hit) << second;
  EXPECT_EQ(referrers_of(second), want) << second;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();

  // Past tag_ttl upstream is asked again; failing, it leaves the cached list standing in.
  install(config(0s));
  const std::string expiring = "/v2/team/app/referrers/" + make_image(8).digest();
  h_.upstream().script(expiring, a);
  ASSERT_EQ(h_.get(expiring).outcome, proxy::cache_outcome::miss);
  h_.upstream().script_status(expiring, 503);
  auto stale = h_.get(expiring);
  EXPECT_EQ(stale.status, 200u) << stale;
  EXPECT_EQ(stale.outcome, proxy::cache_outcome::stale) << stale;
  EXPECT_EQ(stale.header("Warning"), "111 pantry \"Revalidation Failed\"") << stale;
  EXPECT_EQ(referrers_of(stale), want) << stale;
  EXPECT_EQ(h_.upstream().requests_for(expiring).size(), 2u) << h_.upstream().describe_requests();

  // Nothing cached and upstream failing: the spec's error, not an empty list.
  h_.upstream().script_status("/v2/team/app/referrers/" + make_image(9).digest(), 503);
  auto failed = h_.get("/v2/team/app/referrers/" + make_image(9).digest());
  EXPECT_EQ(failed.status, 502u) << failed;
  EXPECT_EQ(error_code_of(failed), "UNAVAILABLE") << failed;
}

}  // namespace
}  // namespace pantry::registry::testing
