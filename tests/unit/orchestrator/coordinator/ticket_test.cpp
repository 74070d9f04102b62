// The job ticket as a remote runner receives it (JSON both ways, errors naming the member), the
// sources a pipeline names, and the script a job's steps become.

#include "pantry/orchestrator/coordinator/ticket.h"
#include "pantry/orchestrator/coordinator/executor.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace pantry::orchestrator::coordinator {
namespace {

namespace json = boost::json;

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";
const std::string kTree = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

ticket full_ticket() {
  ticket t;
  t.job = 12;
  t.pipeline = 3;
  t.lease = 99;
  t.attempt = 2;
  t.name = "test 1/2";
  t.project = "tiny";
  t.patch = "7";
  t.commit = kCommit;
  t.source.type = source_ref::kind::git;
  t.source.git_url = "https://example.org/tiny.git";
  t.source.commit = kCommit;
  t.source.git_auth_secret = "forge";
  t.source.base = std::string(40, 'b');
  t.image = "local/python@sha256:abc";
  t.steps = {"pip install .", "pytest -x"};
  t.env = {{"A", "1"}, {"PANTRY_SHARD", "1"}};
  t.secrets = {{"api_key", "value\n"}};
  t.artifacts = {"dist", "report.xml"};
  t.artifacts_from = {10, 11};
  t.network = runner::network_mode::none;
  t.tmpfs = 1 << 20;
  t.timeout = std::chrono::milliseconds(60'000);
  t.test_order = R"({"format":"pantry-test-order","version":1,"shards":1,"tests":[]})";
  return t;
}

TEST(TicketTest, JsonRoundTripKeepsEveryField) {
  ticket t = full_ticket();
  auto back = ticket_from_json(json::parse(json::serialize(to_json(t))));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->job, 12u);
  EXPECT_EQ(back->pipeline, 3u);
  EXPECT_EQ(back->lease, 99u);
  EXPECT_EQ(back->attempt, 2);
  EXPECT_EQ(back->name, "test 1/2");
  EXPECT_EQ(back->patch, "7");
  EXPECT_EQ(back->source.type, source_ref::kind::git);
  EXPECT_EQ(back->source.git_url, t.source.git_url);
  EXPECT_EQ(back->source.git_auth_secret, "forge");
  EXPECT_EQ(back->source.base, std::string(40, 'b'));
  EXPECT_EQ(back->steps, t.steps);
  EXPECT_EQ(back->env, t.env);
  ASSERT_EQ(back->secrets.size(), 1u);
  EXPECT_EQ(back->secrets[0].value, "value\n");
  EXPECT_EQ(back->artifacts, t.artifacts);
  EXPECT_EQ(back->artifacts_from, t.artifacts_from);
  EXPECT_EQ(back->network, runner::network_mode::none);
  EXPECT_EQ(back->tmpfs, t.tmpfs);
  EXPECT_EQ(back->timeout, t.timeout);
  EXPECT_EQ(back->test_order, t.test_order);
  EXPECT_FALSE(back->build);
}

TEST(TicketTest, ImageBuildTicketRoundTrips) {
  ticket t;
  t.job = 1;
  t.pipeline = 1;
  t.lease = 1;
  t.source.type = source_ref::kind::tree;
  t.source.tree = kTree;
  t.build = build_ticket{"ci/Containerfile", "ci", "local/ci/tiny:pipeline-1"};
  auto back = ticket_from_json(to_json(t));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_TRUE(back->build);
  EXPECT_EQ(back->build->file, "ci/Containerfile");
  EXPECT_EQ(back->build->tag, "local/ci/tiny:pipeline-1");
  EXPECT_EQ(back->source.tree, kTree);
}

TEST(TicketTest, BadTicketsNameTheMember) {
  auto expect_error = [](std::string_view text, std::string_view member) {
    auto r = ticket_from_json(json::parse(text));
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find(member), std::string::npos)
        << r.error().message << " lacks " << member;
  };
  expect_error(R"({"pipeline":1,"lease":1})", "job");
  expect_error(R"({"job":-1,"pipeline":1,"lease":1})", "job");
  expect_error(R"({"job":1,"pipeline":1,"lease":1,"env":[["A"]]})", "env");
  expect_error(R"({"job":1,"pipeline":1,"lease":1,"network":"bridge"})", "network");
  expect_error(R"({"job":1,"pipeline":1,"lease":1,"secrets":[1]})", "secrets");
  expect_error(R"({"job":1,"pipeline":1,"lease":1,"artifacts_from":["x"]})", "artifacts_from");
  expect_error(R"({"job":1,"pipeline":1,"lease":1,"test_order":{}})", "test_order");
  expect_error(R"([1,2])", "(document)");
}

TEST(TicketTest, SourcesAreCheckedAndNeverCarryCredentials) {
  auto ok =
      source_from_json(json::parse(R"({"git":"https://h/r.git","commit":")" + kCommit + R"("})"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->type, source_ref::kind::git);
  auto creds = source_from_json(
      json::parse(R"({"git":"https://user:pw@h/r.git","commit":")" + kCommit + R"("})"));
  ASSERT_FALSE(creds);
  EXPECT_NE(creds.error().message.find("auth_secret"), std::string::npos) << creds.error().message;
  EXPECT_TRUE(ok->base.empty());
  auto bad_base = source_from_json(
      json::parse(R"({"git":"https://h/r.git","commit":")" + kCommit + R"(","base":"main"})"));
  ASSERT_FALSE(bad_base);
  EXPECT_NE(bad_base.error().message.find("source.base: \"main\" is not a full commit id"),
            std::string::npos)
      << bad_base.error().message;
  auto short_commit = source_from_json(json::parse(R"({"git":"https://h/r.git","commit":"abc"})"));
  ASSERT_FALSE(short_commit);
  EXPECT_NE(short_commit.error().message.find("source.commit"), std::string::npos);
  auto bad_tree = source_from_json(json::parse(R"({"tree":"sha256:12"})"));
  ASSERT_FALSE(bad_tree);
  EXPECT_NE(bad_tree.error().message.find("source.tree"), std::string::npos);
  auto both = source_from_json(json::parse(
      R"({"tree":")" + kTree + R"(","git":"https://h/r.git","commit":")" + kCommit + R"("})"));
  EXPECT_FALSE(both);
  auto none = source_from_json(json::value(nullptr));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->type, source_ref::kind::none);
}

TEST(SubmitRequestTest, ReadsEveryMemberAndRoundTrips) {
  auto r = parse_submit_request(R"({"project":"org/tiny","patch":"42","commit":")" + kCommit +
                                R"(","spec":"jobs: {}","spec_file":"ci.yml","source":{"tree":")" +
                                kTree + R"("}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->project, "org/tiny");
  EXPECT_EQ(r->patch, "42");
  EXPECT_EQ(r->commit, kCommit);
  EXPECT_EQ(r->spec_file, "ci.yml");
  EXPECT_EQ(r->source.tree, kTree);
  auto again = parse_submit_request(json::serialize(to_json(*r)));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(json::serialize(to_json(*again)), json::serialize(to_json(*r)));
}

TEST(SubmitRequestTest, BadSubmissionsNameTheMember) {
  auto expect_error = [](const std::string& text, std::string_view member) {
    auto r = parse_submit_request(text);
    ASSERT_FALSE(r) << text;
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
    EXPECT_NE(r.error().message.find(member), std::string::npos)
        << r.error().message << " lacks " << member;
  };
  expect_error(R"({"spec":"jobs: {}"})", "project");
  expect_error(R"({"project":"a b","spec":"x"})", "\"a b\"");
  expect_error(R"({"project":"p","spec":""})", "spec");
  expect_error(R"({"project":"p","spec":"x","patch":7})", "patch");
  expect_error(R"({"project":"p","spec":"x","sorce":{}})", "sorce");
  expect_error(R"({"project":"p","spec":"x","source":{"tree":"nope"}})", "source.tree");
  expect_error("not json", "not JSON");
  EXPECT_EQ(parse_submit_request(R"({"project":"p","spec":"x"})")->spec_file, ".pantry.yml");
}

TEST(TicketTest, CommitIdsAreFortyLowercaseHexDigits) {
  EXPECT_TRUE(is_commit_id(kCommit));
  EXPECT_FALSE(is_commit_id(kCommit.substr(1)));
  EXPECT_FALSE(is_commit_id("0123456789ABCDEF0123456789abcdef01234567"));
  EXPECT_FALSE(is_commit_id("g123456789abcdef0123456789abcdef01234567"));
  EXPECT_FALSE(is_commit_id(""));
}

TEST(JobScriptTest, OneStepIsTheScriptItself) {
  EXPECT_EQ(job_script({"pytest -x"}, "n0nce"), "pytest -x");
}

TEST(JobScriptTest, StepsArePrecededByTheirMarkers) {
  auto s = job_script({"pip install .", "pytest\n"}, "n0nce");
  EXPECT_EQ(s, "printf '%s\\n' '" + step_marker("n0nce", 1) + "'\npip install .\n" +
                   "printf '%s\\n' '" + step_marker("n0nce", 2) + "'\npytest\n");
  EXPECT_EQ(step_marker("n0nce", 2), "\x1epantry-step n0nce 2");
}

// What `sh -ec` (Debian's dash, as in the job images) prints for test_prelude() and then
// `script`, run under `env -i` with `vars`.
std::string prelude_output(const std::string& vars, const std::string& script) {
  std::string quoted;
  for (char c : test_prelude() + script) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  std::string cmd = "env -i " + vars + " /bin/sh -ec '" + quoted + "'";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p))
      out += buf;
    ::pclose(p);
  }
  return out;
}

TEST(JobScriptTest, PreludePutsThePluginFirstAndKeepsWhatWasSet) {
  const std::string show = "echo \"$PYTHONPATH|$PYTEST_PLUGINS\"";
  EXPECT_EQ(prelude_output("", show), std::string(kJobPluginDir) + "|pantry_pytest\n");
  EXPECT_EQ(prelude_output("PYTHONPATH=/opt/lib PYTEST_PLUGINS=xdist.plugin", show),
            std::string(kJobPluginDir) + ":/opt/lib|pantry_pytest,xdist.plugin\n");
  // An empty value is as good as none: no empty PYTHONPATH entry (the working directory).
  EXPECT_EQ(prelude_output("PYTHONPATH= PYTEST_PLUGINS=", show),
            std::string(kJobPluginDir) + "|pantry_pytest\n");
}

// The runner's counts of a step, as cache_use_of sorts them: by protocol from the route label,
// by where the answer came from from the outcome; the image pull apart.
TEST(CacheUseTest, RequestsGoByRouteAndOutcome) {
  using proxy::cache_outcome;
  runner::step_outcome step;
  step.traffic = {
      {"oci_blob", cache_outcome::coalesced, {1, 700}},
      {"oci_manifest", cache_outcome::hit, {2, 20}},
      {"pypi_files", cache_outcome::hit, {3, 3000}},
      {"pypi_files", cache_outcome::miss, {1, 1000}},
      {"pypi_simple", cache_outcome::revalidated, {1, 10}},
      {"pypi_simple", cache_outcome::stale, {1, 10}},
      // No cache traffic: a 404 for an unknown project, the /v2/ ping, a refused route.
      {"pypi_simple", cache_outcome::none, {5, 50}},
      {"oci_ping", cache_outcome::none, {1, 2}},
      {"refused", cache_outcome::none, {1, 80}},
  };
  step.image_pull = {{"oci_manifest", cache_outcome::hit, {1, 500}},
                     {"oci_blob", cache_outcome::miss, {2, 9000}}};
  const cache_use u = cache_use_of(step);
  auto pair = [](const cache_count& c) { return std::make_pair(c.requests, c.bytes); };
  using counts = std::pair<std::uint64_t, std::uint64_t>;
  EXPECT_EQ(pair(u.pypi.cache), counts(5, 3020));
  EXPECT_EQ(pair(u.pypi.upstream), counts(1, 1000));
  EXPECT_EQ(pair(u.pypi.coalesced), counts(0, 0));
  EXPECT_EQ(pair(u.oci.cache), counts(2, 20));
  EXPECT_EQ(pair(u.oci.coalesced), counts(1, 700));
  EXPECT_EQ(pair(u.image.cache), counts(1, 500));
  EXPECT_EQ(pair(u.image.upstream), counts(2, 9000));
  const cache_ratio r = hit_ratio(u);
  ASSERT_TRUE(r.requests.has_value());
  EXPECT_DOUBLE_EQ(*r.requests, 8.0 / 12) << json::serialize(to_json(u));
  EXPECT_DOUBLE_EQ(*r.bytes, 3540.0 / 14240) << json::serialize(to_json(u));
  EXPECT_EQ(cache_use_from_json(to_json(u)).value().image.upstream.bytes, 9000u);
}

TEST(CacheUseTest, AStepWithoutTrafficHasNoRatio) {
  const cache_use u = cache_use_of(runner::step_outcome{});
  EXPECT_EQ(hit_ratio(u).requests, std::nullopt);
  EXPECT_EQ(hit_ratio(u).bytes, std::nullopt);
  EXPECT_TRUE(to_json(u).at("hit_ratio").is_null());
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
