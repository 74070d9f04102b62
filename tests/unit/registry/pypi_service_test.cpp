// The PyPI service (/simple/, /files/) through its public interface only: pypi::service::create
// and install(), with the fake server, exchange and upstream of service_harness.h and a real
// cache. These tests pin what clients see today: statuses, headers, bodies, what goes upstream
// and what is cached.

#include "pantry/registry/pypi/service.h"

#include "service_harness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace pantry::registry::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using fault = upstream_answer::fault;

constexpr std::string_view kJson = "application/vnd.pypi.simple.v1+json";
constexpr std::string_view kHtml = "application/vnd.pypi.simple.v1+html";
constexpr std::string_view kTextHtml = "text/html; charset=utf-8";

struct upstream_file {
  std::string name;
  std::string body;
};

class PypiServiceTest : public ::testing::Test {
 protected:
  PypiServiceTest()
      : sdist_{"demo-1.0.tar.gz", pattern(3000, 1)},
        wheel_{"demo-1.0-py3-none-any.whl", pattern(5000, 2)} {}

  // An index on the fake upstream: "<base>/<name>/simple/".
  std::string index_url(std::string_view name) {
    return h_.upstream().base() + "/" + std::string(name) + "/simple/";
  }

  config::pypi_upstream upstream(std::string name) {
    config::pypi_upstream u;
    u.url = index_url(name);
    u.name = std::move(name);
    return u;
  }

  // One upstream "a"; pages fresh for an hour unless a test says otherwise.
  config::pypi_config config(std::chrono::seconds index_ttl = 3600s) {
    config::pypi_config c;
    c.upstreams.push_back(upstream("a"));
    c.index_ttl = index_ttl;
    return c;
  }

  // Installs a new service over the harness's cache (replacing the routes of an earlier one).
  void install(const config::pypi_config& c) {
    pypi::service::create(c, h_.store(), h_.client(), h_.flights(), h_.metrics(), h_.blocking())
        ->install(h_.server());
  }

  // The upstream URL path of a file.
  static std::string file_target(const upstream_file& f) { return "/packages/" + f.name; }

  // pantry's path for a file of upstream `name`, as it writes it into pages today.
  std::string pantry_file_path(std::string_view name, const upstream_file& f) {
    return "/files/" + std::string(name) + "/127.0.0.1:" + std::to_string(h_.upstream().port()) +
           file_target(f);
  }

  // A PEP 503 page listing `files` (absolute URLs on `base` with #sha256=), with `etag`.
  static upstream_answer page_answer(const std::string& base,
                                     const std::vector<upstream_file>& files,
                                     std::string etag = "\"v1\"") {
    std::string html = "<!DOCTYPE html>\n<html><body>\n";
    for (const auto& f : files) {
      html += "<a href=\"" + base + file_target(f) + "#sha256=" + sha256_hex(f.body) + "\">" +
              f.name + "</a><br/>\n";
    }
    html += "</body></html>\n";
    upstream_answer a;
    a.headers = {{"Content-Type", "text/html"}};
    if (!etag.empty()) a.headers.emplace_back("ETag", etag);
    a.body = std::move(html);
    return a;
  }

  // Upstream `name` serves `project`'s page listing `files`.
  void script_page(std::string_view name, std::string_view project,
                   const std::vector<upstream_file>& files, std::string etag = "\"v1\"") {
    h_.upstream().script(page_target(name, project),
                         page_answer(h_.upstream().base(), files, std::move(etag)));
  }

  // The default service with demo's page (listing sdist_) cached, and sdist_'s bytes upstream;
  // with `fetch_file`, sdist_ is cached too.
  void given_a_cached_page(bool fetch_file = false) {
    install(config());
    script_page("a", "demo", {sdist_});
    script_file(sdist_, sdist_.body);
    ASSERT_EQ(get_page().status, 200u);
    if (fetch_file) {
      ASSERT_EQ(h_.get(pantry_file_path("a", sdist_)).status, 200u);
    }
  }

  // Indexes "a" then "b", with `negative_ttl`: "demo" is not on a (404) but is on b.
  void install_demo_only_on_b(std::chrono::seconds negative_ttl) {
    auto c = config();
    c.upstreams.push_back(upstream("b"));
    c.negative_ttl = negative_ttl;
    install(c);
    h_.upstream().script_status("/a/simple/demo/", 404);
    script_page("b", "demo", {sdist_});
  }

  static std::string page_target(std::string_view name, std::string_view project) {
    return "/" + std::string(name) + "/simple/" + std::string(project) + "/";
  }

  void script_file(const upstream_file& f, std::string body, fault what = fault::none) {
    upstream_answer a;
    a.headers = {{"Content-Type", "application/octet-stream"}};
    a.body = std::move(body);
    a.what = what;
    h_.upstream().script(file_target(f), std::move(a));
  }

  std::size_t upstream_gets(std::string_view target) {
    return h_.upstream().requests_for(http::verb::get, target).size();
  }

  // "/simple/demo/" with JSON asked for.
  static fake_request page_request(std::string project = "demo", header_lines extra = {}) {
    extra.emplace_back("Accept", std::string(kJson));
    return {http::verb::get, "/simple/" + project + "/", std::move(extra), {}};
  }
  recorded_response get_page(std::string project = "demo", header_lines extra = {}) {
    return h_.serve(page_request(std::move(project), std::move(extra)));
  }

  service_harness h_;
  upstream_file sdist_;
  upstream_file wheel_;
};

TEST_F(PypiServiceTest, InstallsTheSimpleFilesAndJsonApiRoutes) {
  install(config());
  EXPECT_THAT(h_.server().prefixes(),
              ::testing::UnorderedElementsAre("/simple/", "/simple", "/files/", "/pypi/"));
}

// ---- index pages: cache policy ----------------------------------------------------------------

TEST_F(PypiServiceTest, IndexPageMissGoesUpstreamOnceAndIsCached) {
  install(config());
  script_page("a", "demo", {sdist_});
  const auto blobs_before = h_.blob_count();

  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_TRUE(r.complete) << r;
  EXPECT_TRUE(r.misuse.empty()) << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::miss) << r;
  EXPECT_EQ(r.route, "pypi_simple") << r;
  EXPECT_EQ(r.header("Content-Type"), kJson) << r;
  EXPECT_EQ(r.header("Cache-Control"), "max-age=3600") << r;
  EXPECT_THAT(r.body, HasSubstr("\"name\":\"demo\"")) << r;

  auto sent = h_.upstream().requests();
  ASSERT_EQ(sent.size(), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(sent[0].method, "GET") << sent[0];
  EXPECT_EQ(sent[0].target, "/a/simple/demo/") << sent[0];
  // JSON first (it carries sizes), HTML as a fallback.
  EXPECT_THAT(sent[0].header("Accept"), StartsWith(std::string(kJson))) << sent[0];
  EXPECT_FALSE(sent[0].has_header("If-None-Match")) << sent[0];
  EXPECT_GT(h_.blob_count(), blobs_before) << "the page was not cached";
  EXPECT_EQ(h_.metric("pantry_upstream_requests_total", {{"protocol", "pypi"}, {"upstream", "a"}}),
            1)
      << h_.metrics()->render();
}

TEST_F(PypiServiceTest, FreshPageIsServedWithoutUpstreamEvenWhenTheClientSaysMaxAge0) {
  install(config(3600s));
  script_page("a", "demo", {sdist_});
  auto first = get_page();
  ASSERT_EQ(first.status, 200u) << first;

  // pip sends Cache-Control: max-age=0 on every index page; pantry's index_ttl decides.
  auto second = get_page("demo", {{"Cache-Control", "max-age=0"}});
  EXPECT_EQ(second.status, 200u) << second;
  EXPECT_EQ(second.outcome, proxy::cache_outcome::hit) << second;
  EXPECT_EQ(second.body, first.body) << second;
  EXPECT_FALSE(second.has_header("Warning")) << second;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, ExpiredPageIsRevalidatedWithTheUpstreamsEtag) {
  install(config(0s));  // every page is expired as soon as it is stored
  script_page("a", "demo", {sdist_}, "\"etag-1\"");
  auto first = get_page();
  ASSERT_EQ(first.status, 200u) << first;

  h_.upstream().script_status("/a/simple/demo/", 304, {{"ETag", "\"etag-1\""}});
  auto second = get_page();
  EXPECT_EQ(second.status, 200u) << second;
  EXPECT_EQ(second.outcome, proxy::cache_outcome::revalidated) << second;
  EXPECT_EQ(second.body, first.body) << second;
  EXPECT_FALSE(second.has_header("Warning")) << second;

  auto sent = h_.upstream().requests_for("/a/simple/demo/");
  ASSERT_EQ(sent.size(), 2u) << h_.upstream().describe_requests();
  EXPECT_EQ(sent[1].header("If-None-Match"), "\"etag-1\"") << sent[1];
}

TEST_F(PypiServiceTest, ExpiredPageIsServedStaleWithAWarningWhenUpstreamFails) {
  install(config(0s));
  script_page("a", "demo", {sdist_});
  auto fresh = get_page();
  ASSERT_EQ(fresh.status, 200u) << fresh;
  EXPECT_FALSE(fresh.has_header("Warning")) << fresh;

  double failures_counted = 0;
  for (const auto& f : upstream_failures(/*broken_body=*/true)) {
    SCOPED_TRACE("upstream: " + f.what);
    h_.upstream().script_failure("/a/simple/demo/", f, page_answer(h_.upstream().base(), {sdist_}));
    const auto asked = h_.upstream().request_count();
    auto r = get_page();
    EXPECT_GT(h_.upstream().request_count(), asked) << "an expired page was not revalidated";
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.body, fresh.body) << r;
    EXPECT_EQ(r.header("Warning"), kWarningRevalidationFailed) << r;
    EXPECT_EQ(r.outcome, proxy::cache_outcome::stale) << r;
    EXPECT_GT(
        h_.metric("pantry_upstream_failures_total", {{"protocol", "pypi"}, {"upstream", "a"}}),
        failures_counted)
        << h_.metrics()->render();
    failures_counted =
        h_.metric("pantry_upstream_failures_total", {{"protocol", "pypi"}, {"upstream", "a"}});
  }
}

TEST_F(PypiServiceTest, OfflineServesAnExpiredPageWithAWarningAndNeverAsksUpstream) {
  install(config(0s));
  script_page("a", "demo", {sdist_});
  auto online = get_page();
  ASSERT_EQ(online.status, 200u) << online;
  const auto asked = h_.upstream().request_count();

  auto offline = config(0s);
  offline.offline = true;
  install(offline);
  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, online.body) << r;
  EXPECT_EQ(r.header("Warning"), kWarningStale) << r;
  EXPECT_EQ(r.outcome, proxy::cache_outcome::hit) << r;

  // A page never cached is not there, and still nobody asks upstream.
  auto missing = get_page("other");
  EXPECT_EQ(missing.status, 404u) << missing;
  EXPECT_THAT(missing.body, HasSubstr("offline")) << missing;
  // Nor for a listed file that is not cached.
  auto file = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(file.status, 404u) << file;
  EXPECT_EQ(h_.upstream().request_count(), asked) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, UpstreamFailureWithNothingCachedIs502NamingTheUrlAndTheCause) {
  install(config());
  h_.upstream().script_status("/a/simple/demo/", 503);
  auto r = get_page();
  EXPECT_EQ(r.status, 502u) << r;
  EXPECT_THAT(r.body, HasSubstr(index_url("a") + "demo/")) << r;
  EXPECT_THAT(r.body, HasSubstr("503")) << r;
  EXPECT_FALSE(r.has_header("Warning")) << r;
  EXPECT_EQ(h_.metric("pantry_upstream_failures_total", {{"protocol", "pypi"}, {"upstream", "a"}}),
            1)
      << h_.metrics()->render();

  // An upstream nobody listens on: the client's error (with the address) reaches the body.
  const std::string nobody = refused_base();
  auto c = config();
  c.upstreams[0].url = nobody + "/simple/";
  install(c);
  auto refused = get_page();
  EXPECT_EQ(refused.status, 502u) << refused;
  EXPECT_THAT(refused.body, HasSubstr(nobody.substr(std::string_view("http://").size())))
      << refused;
  EXPECT_THAT(refused.body, HasSubstr("refused")) << refused;
}

// ---- index pages: several upstreams -----------------------------------------------------------

TEST_F(PypiServiceTest, NotFoundFallsThroughToTheNextUpstreamAndIsRememberedForNegativeTtl) {
  install_demo_only_on_b(3600s);

  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_THAT(r.body, HasSubstr(pantry_file_path("b", sdist_))) << r;
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets("/b/simple/demo/"), 1u) << h_.upstream().describe_requests();

  // a's 404 is remembered: neither index is asked again within the TTLs.
  auto again = get_page();
  EXPECT_EQ(again.status, 200u) << again;
  EXPECT_EQ(again.body, r.body) << again;
  EXPECT_EQ(h_.upstream().request_count(), 2u) << h_.upstream().describe_requests();

  // Not on any index: 404 naming the indexes asked.
  auto none = get_page("nowhere");
  EXPECT_EQ(none.status, 404u) << none;
  EXPECT_THAT(none.body, HasSubstr("a, b")) << none;
}

TEST_F(PypiServiceTest, NotFoundIsAskedAgainWhenNegativeTtlIsZero) {
  install_demo_only_on_b(0s);
  ASSERT_EQ(get_page().status, 200u);
  ASSERT_EQ(get_page().status, 200u);
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 2u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets("/b/simple/demo/"), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, UpstreamErrorOrTimeoutDoesNotFallThrough) {
  auto c = config();
  c.upstreams.push_back(upstream("b"));
  install(c);
  script_page("b", "demo", {sdist_});

  // A private name must not be answered by a later index because the first one failed.
  h_.upstream().script_status("/a/simple/demo/", 503);
  auto failed = get_page();
  EXPECT_EQ(failed.status, 502u) << failed;

  upstream_answer hang = page_answer(h_.upstream().base(), {sdist_});
  hang.what = fault::hang;
  h_.upstream().script("/a/simple/demo/", hang);
  auto timed_out = get_page();
  EXPECT_EQ(timed_out.status, 502u) << timed_out;
  EXPECT_THAT(timed_out.body, HasSubstr("/a/simple/demo/")) << timed_out;

  EXPECT_EQ(upstream_gets("/b/simple/demo/"), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, RoutesPinAPatternToOneUpstream) {
  auto c = config();
  c.upstreams.push_back(upstream("b"));
  c.routes.push_back({"internal-*", "b"});
  install(c);
  script_page("a", "internal-tool", {sdist_});
  script_page("b", "internal-tool", {wheel_});

  auto r = get_page("internal-tool");
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_THAT(r.body, HasSubstr(wheel_.name)) << r;
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr(sdist_.name))) << r;

  // The routed index's 404 is final: the other index is never asked.
  h_.upstream().script_status("/b/simple/internal-gone/", 404);
  script_page("a", "internal-gone", {sdist_});
  auto gone = get_page("internal-gone");
  EXPECT_EQ(gone.status, 404u) << gone;

  EXPECT_EQ(upstream_gets("/a/simple/internal-tool/"), 0u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets("/a/simple/internal-gone/"), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, ConcurrentMissesShareOneUpstreamRequest) {
  install(config());
  script_page("a", "demo", {sdist_});
  std::vector<fake_request> reqs;
  for (int i = 0; i < 3; ++i)
    reqs.push_back({http::verb::get, "/simple/demo/", {{"Accept", std::string(kJson)}}, {}});
  auto rs = h_.serve_together(std::move(reqs));
  for (const auto& r : rs)
    EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(rs[0].outcome, proxy::cache_outcome::miss) << rs[0];
  EXPECT_EQ(rs[1].outcome, proxy::cache_outcome::coalesced) << rs[1];
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 1u) << h_.upstream().describe_requests();
}

// Client B looks in the cache and misses; before it goes on, client A's request fetches and
// stores the page and ends; then B asks upstream. B must get A's page, not send a second
// request (service_harness::serve_racing).
TEST_F(PypiServiceTest, PageMissedBeforeAnotherFetchStoredItIsNotFetchedAgain) {
  install(config());
  script_page("a", "demo", {sdist_});
  auto [a, b] = h_.serve_racing(page_request(), page_request());
  ASSERT_EQ(a.status, 200u) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, a.body) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(h_.metric("pantry_upstream_requests_total", {{"protocol", "pypi"}}), 1)
      << h_.metrics()->render();
}

TEST_F(PypiServiceTest, ExpiredPageSeenBeforeAnotherRevalidationRenewedItIsNotAskedAgain) {
  install(config(0s));  // stored expired
  script_page("a", "demo", {sdist_}, "\"etag-1\"");
  auto first = get_page();
  ASSERT_EQ(first.status, 200u) << first;
  install(config(3600s));  // a renewal now lasts an hour
  h_.upstream().script_status("/a/simple/demo/", 304, {{"ETag", "\"etag-1\""}});
  auto [a, b] = h_.serve_racing(page_request(), page_request());
  ASSERT_EQ(a.outcome, proxy::cache_outcome::revalidated) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, first.body) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  // The first GET, then A's conditional one.
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 2u) << h_.upstream().describe_requests();
}

// ---- index pages: what the client gets --------------------------------------------------------

TEST_F(PypiServiceTest, AcceptChoosesJsonOrHtml) {
  given_a_cached_page();

  struct accept_case {
    std::vector<std::string> accept;  // header lines
    std::string_view type;            // "" for 406
  };
  const std::vector<accept_case> cases = {
      {{}, kTextHtml},
      {{std::string(kJson)}, kJson},
      {{std::string(kHtml)}, kHtml},
      {{"text/html"}, kTextHtml},
      {{"*/*"}, kTextHtml},
      {{"application/vnd.pypi.simple.v1+json;q=0.2, text/html"}, kTextHtml},
      {{"text/html;q=0.5, application/vnd.pypi.simple.latest+json"}, kJson},
      {{"text/html;q=0.5", std::string(kJson)}, kJson},  // two lines, as one list
      {{"application/json"}, ""},
      {{"text/html;q=0, application/vnd.pypi.simple.v1+json;q=0"}, ""},
  };
  for (const auto& c : cases) {
    header_lines lines;
    std::string shown;
    for (const auto& a : c.accept) {
      lines.emplace_back("Accept", a);
      shown += "[" + a + "]";
    }
    SCOPED_TRACE("Accept " + shown);
    auto r = h_.get("/simple/demo/", lines);
    if (c.type.empty()) {
      EXPECT_EQ(r.status, 406u) << r;
      continue;
    }
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.header("Content-Type"), c.type) << r;
    EXPECT_EQ(r.header("Vary"), "Accept, Accept-Encoding") << r;
    if (c.type == kJson) {
      EXPECT_THAT(r.body, StartsWith("{")) << r;
    } else {
      EXPECT_THAT(r.body, HasSubstr("<a href=")) << r;
    }
  }
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, NothingAcceptableIs406WithoutAskingUpstream) {
  install(config());
  auto r = h_.get("/simple/demo/", {{"Accept", "application/json"}});
  EXPECT_EQ(r.status, 406u) << r;
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, NonNormalizedNamesRedirect) {
  install(config());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/simple/Demo_Pkg/", "/simple/demo-pkg/"},
      {"/simple/demo.pkg/", "/simple/demo-pkg/"},
      {"/simple/demo", "/simple/demo/"},
      {"/simple", "/simple/"},
  };
  for (const auto& [from, to] : cases) {
    auto r = h_.get(from);
    EXPECT_EQ(r.status, 301u) << from << ": " << r;
    EXPECT_EQ(r.header("Location"), to) << from << ": " << r;
  }
  auto bad = h_.get("/simple/not a name/");
  EXPECT_EQ(bad.status, 404u) << bad;
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileUrlsAreRewrittenToPantryWithTheirSha256Kept) {
  install(config());
  script_page("a", "demo", {sdist_, wheel_});

  auto html = h_.get("/simple/demo/", {{"Accept", "text/html"}});
  ASSERT_EQ(html.status, 200u) << html;
  for (const auto* f : {&sdist_, &wheel_}) {
    EXPECT_THAT(html.body, HasSubstr("href=\"" + pantry_file_path("a", *f) +
                                     "#sha256=" + sha256_hex(f->body) + "\""))
        << html;
  }
  EXPECT_THAT(html.body, ::testing::Not(HasSubstr(h_.upstream().base()))) << html;

  auto json = get_page();
  ASSERT_EQ(json.status, 200u) << json;
  boost::system::error_code ec;
  auto doc = boost::json::parse(json.body, ec);
  ASSERT_FALSE(ec) << ec.message() << ": " << json;
  const auto& files = doc.at("files").as_array();
  ASSERT_EQ(files.size(), 2u) << json;
  for (const auto& f : files) {
    const std::string name(f.at("filename").as_string());
    const upstream_file& want = name == sdist_.name ? sdist_ : wheel_;
    EXPECT_EQ(std::string(f.at("url").as_string()), pantry_file_path("a", want)) << json;
    EXPECT_EQ(std::string(f.at("hashes").at("sha256").as_string()), sha256_hex(want.body)) << json;
  }
}

TEST_F(PypiServiceTest, IfNoneMatchOnACachedPageIs304WithItsEtag) {
  install(config());
  script_page("a", "demo", {sdist_});
  auto first = get_page();
  ASSERT_EQ(first.status, 200u) << first;
  const std::string etag = first.header("ETag");
  ASSERT_FALSE(etag.empty()) << first;

  auto r = get_page("demo", {{"If-None-Match", etag}});
  EXPECT_EQ(r.status, 304u) << r;
  EXPECT_EQ(r.header("ETag"), etag) << r;
  EXPECT_TRUE(r.body.empty()) << r;
  EXPECT_TRUE(r.complete) << r;

  auto other = get_page("demo", {{"If-None-Match", "\"something-else\""}});
  EXPECT_EQ(other.status, 200u) << other;
  EXPECT_EQ(h_.upstream().request_count(), 1u) << h_.upstream().describe_requests();
}

// ---- /files/ ----------------------------------------------------------------------------------

TEST_F(PypiServiceTest, ListedFileIsFetchedOnceVerifiedAndThenServedFromTheCache) {
  given_a_cached_page();
  const auto blobs_before = h_.blob_count();

  auto first = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(first.status, 200u) << first;
  EXPECT_TRUE(first.complete) << first;
  EXPECT_EQ(first.body, sdist_.body) << first;
  EXPECT_EQ(first.outcome, proxy::cache_outcome::miss) << first;
  EXPECT_EQ(first.route, "pypi_files") << first;
  EXPECT_EQ(first.header("Content-Length"), std::to_string(sdist_.body.size())) << first;
  auto sent = h_.upstream().requests_for(file_target(sdist_));
  ASSERT_EQ(sent.size(), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(sent[0].header("Accept-Encoding"), "identity") << sent[0];
  EXPECT_EQ(h_.blob_count(), blobs_before + 1);

  auto second = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(second.status, 200u) << second;
  EXPECT_EQ(second.body, sdist_.body) << second;
  EXPECT_EQ(second.outcome, proxy::cache_outcome::hit) << second;
  EXPECT_EQ(second.header("ETag"), "\"" + sha256_hex(sdist_.body) + "\"") << second;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileWithTheWrongHashResetsTheClientAndIsNotCached) {
  given_a_cached_page();
  std::string wrong = sdist_.body;
  wrong.back() ^= 1;  // same size, other sha256
  script_file(sdist_, wrong);
  const auto blobs_before = h_.blob_count();

  auto bad = h_.get(pantry_file_path("a", sdist_));
  EXPECT_TRUE(bad.reset) << bad;
  EXPECT_FALSE(bad.complete) << bad;
  // The last byte is held back until the hash checks out: the client never has it all.
  EXPECT_LT(bad.body.size(), wrong.size()) << bad;
  EXPECT_EQ(h_.blob_count(), blobs_before) << "a body with the wrong sha256 was cached";

  // The next request fetches again.
  script_file(sdist_, sdist_.body);
  auto good = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(good.status, 200u) << good;
  EXPECT_EQ(good.body, sdist_.body) << good;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 2u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileBrokenOffUpstreamResetsTheClientAndIsNotCached) {
  given_a_cached_page();
  script_file(sdist_, sdist_.body, fault::break_midway);
  const auto blobs_before = h_.blob_count();

  auto bad = h_.get(pantry_file_path("a", sdist_));
  EXPECT_TRUE(bad.reset) << bad;
  EXPECT_EQ(h_.blob_count(), blobs_before) << "a broken body was cached";

  script_file(sdist_, sdist_.body);
  auto good = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(good.status, 200u) << good;
  EXPECT_EQ(good.body, sdist_.body) << good;
}

TEST_F(PypiServiceTest, FileUpstreamRefusesIs502BeforeAnyByte) {
  given_a_cached_page();
  h_.upstream().script_status(file_target(sdist_), 503);
  auto r = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 502u) << r;
  EXPECT_FALSE(r.reset) << r;
  EXPECT_THAT(r.body, HasSubstr("503")) << r;
}

TEST_F(PypiServiceTest, ConcurrentFileRequestsShareOneFetch) {
  given_a_cached_page();
  std::vector<fake_request> reqs;
  for (int i = 0; i < 3; ++i)
    reqs.push_back({http::verb::get, pantry_file_path("a", sdist_), {}, {}});
  auto rs = h_.serve_together(std::move(reqs));
  for (const auto& r : rs) {
    EXPECT_EQ(r.status, 200u) << r;
    EXPECT_EQ(r.body, sdist_.body) << r;
  }
  EXPECT_EQ(rs[1].outcome, proxy::cache_outcome::coalesced) << rs[1];
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileMissedBeforeAnotherFlightCommittedItIsNotFetchedAgain) {
  given_a_cached_page();
  const fake_request file{http::verb::get, pantry_file_path("a", sdist_), {}, {}};
  auto [a, b] = h_.serve_racing(file, file);
  ASSERT_EQ(a.status, 200u) << a;
  EXPECT_EQ(b.status, 200u) << b;
  EXPECT_EQ(b.body, sdist_.body) << b;
  EXPECT_EQ(b.outcome, proxy::cache_outcome::coalesced) << b;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 1u) << h_.upstream().describe_requests();
}

// A lock file's URL after the cache was lost (a new pantry, a wiped data dir): the page of the
// project the file name names is fetched from the upstream the path names, then the file.
TEST_F(PypiServiceTest, FileNoCachedPageListsIsServedOnceItsProjectsPageListsIt) {
  install(config());
  script_page("a", "demo", {sdist_, wheel_});
  script_file(sdist_, sdist_.body);
  script_file(wheel_, wheel_.body);

  auto r = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_TRUE(r.complete) << r;
  EXPECT_EQ(r.body, sdist_.body) << r;
  EXPECT_EQ(upstream_gets(page_target("a", "demo")), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 1u) << h_.upstream().describe_requests();

  // The page is cached like any page: the wheel it also listed needs no second page request.
  auto w = h_.get(pantry_file_path("a", wheel_));
  EXPECT_EQ(w.status, 200u) << w;
  EXPECT_EQ(w.body, wheel_.body) << w;
  EXPECT_EQ(upstream_gets(page_target("a", "demo")), 1u) << h_.upstream().describe_requests();
  auto page = get_page();
  EXPECT_EQ(page.status, 200u) << page;
  EXPECT_EQ(page.outcome, proxy::cache_outcome::hit) << page;
}

TEST_F(PypiServiceTest, MetadataFileNoCachedPageListsIsServedOnceItsProjectsPageListsIt) {
  install(config());
  const std::string metadata = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n";
  const std::string base = h_.upstream().base();
  upstream_answer page;
  page.headers = {{"Content-Type", "text/html"}};
  page.body = "<a href=\"" + base + file_target(wheel_) + "#sha256=" + sha256_hex(wheel_.body) +
              "\" data-core-metadata=\"sha256=" + sha256_hex(metadata) + "\">" + wheel_.name +
              "</a>\n";
  h_.upstream().script(page_target("a", "demo"), std::move(page));
  upstream_answer meta;
  meta.headers = {{"Content-Type", "application/octet-stream"}};
  meta.body = metadata;
  h_.upstream().script(file_target(wheel_) + ".metadata", std::move(meta));

  auto r = h_.get(pantry_file_path("a", wheel_) + ".metadata");
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, metadata) << r;
  EXPECT_EQ(upstream_gets(page_target("a", "demo")), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets(file_target(wheel_)), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileItsProjectsPageDoesNotListIs404AndNeverFetched) {
  install(config());
  script_file(sdist_, sdist_.body);
  script_page("a", "demo", {wheel_});

  auto r = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 404u) << r;
  EXPECT_THAT(r.body, HasSubstr("does not list it")) << r;
  // A fresh page is not asked again for every unlisted URL.
  auto again = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(again.status, 404u) << again;
  EXPECT_EQ(upstream_gets(page_target("a", "demo")), 1u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 0u) << h_.upstream().describe_requests();

  // A project upstream does not have: its 404 page lists nothing.
  upstream_file other{"other-2.0.tar.gz", pattern(100, 3)};
  script_file(other, other.body);
  auto missing = h_.get(pantry_file_path("a", other));
  EXPECT_EQ(missing.status, 404u) << missing;
  EXPECT_EQ(upstream_gets(file_target(other)), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileNameThatNamesNoProjectIs404WithoutAnyUpstreamRequest) {
  install(config());
  upstream_file readme{"README.txt", "hello"};
  script_file(readme, readme.body);
  auto r = h_.get(pantry_file_path("a", readme));
  EXPECT_EQ(r.status, 404u) << r;
  EXPECT_THAT(r.body, HasSubstr("names no project")) << r;
  auto bare = h_.get("/files/a/127.0.0.1:" + std::to_string(h_.upstream().port()) + "/demo");
  EXPECT_EQ(bare.status, 404u) << bare;

  auto unknown = h_.get("/files/nope/127.0.0.1:1/packages/x-1.0.tar.gz");
  EXPECT_EQ(unknown.status, 404u) << unknown;
  auto hostile = h_.get("/files/a/127.0.0.1:1/../etc/passwd");
  EXPECT_EQ(hostile.status, 400u) << hostile;
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileOfAProjectRoutedToAnotherUpstreamIs404WithoutAnyUpstreamRequest) {
  auto c = config();
  c.upstreams.push_back(upstream("b"));
  c.routes.push_back({"demo", "b"});
  install(c);
  script_page("a", "demo", {sdist_});
  script_file(sdist_, sdist_.body);

  auto r = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 404u) << r;
  EXPECT_THAT(r.body, HasSubstr("not asked of a")) << r;
  EXPECT_EQ(h_.upstream().request_count(), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, FileWhosePageCannotBeHadIs502OrOffline404) {
  install(config());
  h_.upstream().script_status(page_target("a", "demo"), 503);
  script_file(sdist_, sdist_.body);
  auto r = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 502u) << r;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 0u) << h_.upstream().describe_requests();

  auto c = config();
  c.offline = true;
  install(c);
  const auto before = h_.upstream().request_count();
  auto offline = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(offline.status, 404u) << offline;
  EXPECT_EQ(h_.upstream().request_count(), before) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, RangeOfACachedFileIsPartial) {
  given_a_cached_page(/*fetch_file=*/true);

  auto r = h_.get(pantry_file_path("a", sdist_), {{"Range", "bytes=100-199"}});
  EXPECT_EQ(r.status, 206u) << r;
  EXPECT_EQ(r.header("Content-Range"), "bytes 100-199/" + std::to_string(sdist_.body.size())) << r;
  EXPECT_EQ(r.body, sdist_.body.substr(100, 100)) << r;
  EXPECT_TRUE(r.complete) << r;

  auto tail = h_.get(pantry_file_path("a", sdist_), {{"Range", "bytes=-10"}});
  EXPECT_EQ(tail.status, 206u) << tail;
  EXPECT_EQ(tail.body, sdist_.body.substr(sdist_.body.size() - 10)) << tail;

  auto beyond = h_.get(pantry_file_path("a", sdist_), {{"Range", "bytes=999999-"}});
  EXPECT_EQ(beyond.status, 416u) << beyond;
  EXPECT_EQ(beyond.header("Content-Range"), "bytes */" + std::to_string(sdist_.body.size()))
      << beyond;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 1u) << h_.upstream().describe_requests();
}

TEST_F(PypiServiceTest, HeadOfACachedFileSendsNoBody) {
  given_a_cached_page(/*fetch_file=*/true);
  auto r = h_.head(pantry_file_path("a", sdist_));
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.header("Content-Length"), std::to_string(sdist_.body.size())) << r;
  EXPECT_TRUE(r.body.empty()) << r;
  EXPECT_TRUE(r.complete) << r;
}

// ---- the hosted upstream: another pantry's hosted index, asked first ----

class PypiHostedUpstreamTest : public PypiServiceTest {
 protected:
  // "a" (public) first and "owner" (hosted) second: the owner is asked first all the same.
  config::pypi_config with_owner(std::chrono::seconds negative_ttl = 3600s,
                                 std::chrono::seconds index_ttl = 3600s) {
    auto c = config(index_ttl);
    auto owner = upstream("owner");
    owner.hosted = true;
    c.upstreams.push_back(owner);
    c.negative_ttl = negative_ttl;
    return c;
  }
};

TEST_F(PypiHostedUpstreamTest, AProjectTheOwnerHasIsServedFromItAloneWithItsFiles) {
  install(with_owner());
  script_page("owner", "demo", {wheel_});
  script_page("a", "demo", {sdist_});  // the public project of the same name
  script_file(wheel_, wheel_.body);
  script_file(sdist_, sdist_.body);

  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_THAT(r.body, HasSubstr(pantry_file_path("owner", wheel_))) << r;
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr(sdist_.name))) << r;
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 0u) << h_.upstream().describe_requests();

  auto file = h_.get(pantry_file_path("owner", wheel_));
  EXPECT_EQ(file.status, 200u) << file;
  EXPECT_EQ(file.body, wheel_.body);
  // The public file of a hosted name is never fetched, even by a URL that names it.
  auto public_file = h_.get(pantry_file_path("a", sdist_));
  EXPECT_EQ(public_file.status, 404u) << public_file;
  EXPECT_THAT(public_file.body, HasSubstr("hosted in owner")) << public_file;
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 0u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 0u) << h_.upstream().describe_requests();

  // The JSON API gives no upstream's answer for it.
  auto json = h_.get("/pypi/demo/json");
  EXPECT_EQ(json.status, 404u) << json;
  EXPECT_THAT(json.body, HasSubstr("hosted in owner")) << json;
  EXPECT_EQ(upstream_gets("/a/pypi/demo/json"), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiHostedUpstreamTest, TheOwnersNotFoundLetsThePublicIndexAnswerAndIsRemembered) {
  install(with_owner());
  h_.upstream().script_status("/owner/simple/demo/", 404);
  script_page("a", "demo", {sdist_});

  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_THAT(r.body, HasSubstr(pantry_file_path("a", sdist_))) << r;
  auto again = get_page();
  EXPECT_EQ(again.status, 200u) << again;
  EXPECT_EQ(upstream_gets("/owner/simple/demo/"), 1u) << h_.upstream().describe_requests();

  // Not on any index: 404 naming the owner among the indexes asked.
  h_.upstream().script_status("/owner/simple/nowhere/", 404);
  auto none = get_page("nowhere");
  EXPECT_EQ(none.status, 404u) << none;
  EXPECT_THAT(none.body, HasSubstr("(owner, a)")) << none;
}

TEST_F(PypiHostedUpstreamTest, AnOwnerThatCannotAnswerFailsClosed) {
  install(with_owner());
  script_page("a", "demo", {sdist_});
  script_file(sdist_, sdist_.body);
  for (const auto& f : upstream_failures(/*broken_body=*/false)) {
    SCOPED_TRACE("owner: " + f.what);
    h_.upstream().script_failure("/owner/simple/demo/", f,
                                 page_answer(h_.upstream().base(), {wheel_}));
    auto r = get_page();
    EXPECT_EQ(r.status, 502u) << r;
    EXPECT_THAT(r.body, HasSubstr("pantry cannot tell whether \"demo\" is a hosted project: the "
                                  "hosted upstream owner (" +
                                  index_url("owner") + ") did not answer"))
        << r;
    EXPECT_EQ(h_.get("/pypi/demo/json").status, 502u);
    EXPECT_EQ(h_.get(pantry_file_path("a", sdist_)).status, 502u);
  }
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 0u) << h_.upstream().describe_requests();
  EXPECT_EQ(upstream_gets(file_target(sdist_)), 0u) << h_.upstream().describe_requests();
}

TEST_F(PypiHostedUpstreamTest, OnlyAFreshNotFoundFromTheOwnerCounts) {
  install(with_owner(3600s));
  h_.upstream().script_status("/owner/simple/demo/", 404);
  script_page("a", "demo", {sdist_});
  ASSERT_EQ(get_page().status, 200u);

  // The owner's 404 expires (a reload to negative_ttl 0) and the owner is down: an upload since
  // cannot be ruled out, so the public page is not served, cached as it is.
  install(with_owner(0s));
  h_.upstream().script_status("/owner/simple/demo/", 503);
  auto r = get_page();
  EXPECT_EQ(r.status, 502u) << r;
  EXPECT_THAT(r.body, HasSubstr("its last answer, a 404, is older than pypi.negative_ttl")) << r;
}

TEST_F(PypiHostedUpstreamTest, TheOwnersCachedPageIsServedStaleWhileItIsDown) {
  install(with_owner(3600s, 0s));
  script_page("owner", "demo", {wheel_});
  script_page("a", "demo", {sdist_});
  auto fresh = get_page();
  ASSERT_EQ(fresh.status, 200u) << fresh;

  h_.upstream().script_status("/owner/simple/demo/", 503);
  auto r = get_page();
  EXPECT_EQ(r.status, 200u) << r;
  EXPECT_EQ(r.body, fresh.body) << r;
  EXPECT_EQ(r.header("Warning"), kWarningRevalidationFailed) << r;
  EXPECT_EQ(upstream_gets("/a/simple/demo/"), 0u) << h_.upstream().describe_requests();
}

}  // namespace
}  // namespace pantry::registry::testing
