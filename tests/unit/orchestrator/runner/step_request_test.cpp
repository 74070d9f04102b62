// The JSON form of a runner step (parse_step_request, to_json): what `pantry run` sends and
// the runner's route reads. Every field survives the round trip; every bad member is refused by
// name; what is left out gets the documented default.

#include "pantry/orchestrator/runner/service.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kImage =
    "local/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// A request with every member set to something other than its default.
step_request full_request() {
  step_request r;
  r.image = std::string(kImage);
  r.allow_unpinned = true;
  r.step.argv = {"sh", "-c", "echo \"$A\" && exit 3"};
  r.step.entrypoint = std::vector<std::string>{"/bin/busybox"};
  r.step.env = {"A=1", "B=two words", "EMPTY="};
  r.step.user = "1000:1000";
  r.step.working_dir = "/workspace/sub";
  r.step.network = network_mode::host;
  r.step.memory_bytes = std::uint64_t{2} << 30;
  r.step.cpus = 1.5;
  r.step.pids_limit = 64;
  r.timeout = std::chrono::milliseconds(90'000);
  r.tmpfs_size = std::uint64_t{512} << 20;
  r.step.project_dir = "/home/ci/project";
  r.step.volumes = {{"/srv/data", "/data", true}, {"/srv/out", "/out", false}};
  // A secret is bytes: a newline, a NUL and UTF-8 must come back as they went.
  r.secrets = {{"token", std::string("line 1\nline 2\0end \xc3\xa9", 20)}, {"key", "k"}};
  r.output = output_mode::separate;
  r.environment_report = false;
  return r;
}

std::string text_of(const step_request& r) {
  return boost::json::serialize(to_json(r));
}

// parse_step_request(json) must fail with errc::invalid_argument and a message holding every
// one of `parts` (the member's name, the bad value).
void expect_refused(const std::string& json, const std::vector<std::string>& parts) {
  auto r = parse_step_request(json);
  ASSERT_FALSE(r) << "accepted: " << json;
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << json << " -> " << r.error().message;
  for (const auto& p : parts) {
    EXPECT_THAT(r.error().message, HasSubstr(p)) << "for " << json;
  }
}

// A request of `kImage` with `members` (JSON text, e.g. R"("memory": -1)") added.
std::string with(std::string_view members) {
  return R"({"image": ")" + std::string(kImage) + R"(", )" + std::string(members) + "}";
}

TEST(StepRequestTest, EveryFieldSurvivesTheRoundTrip) {
  const step_request sent = full_request();
  const std::string text = text_of(sent);
  auto got = parse_step_request(text);
  ASSERT_TRUE(got) << got.error().message << "\n" << text;
  EXPECT_EQ(got->image, sent.image);
  EXPECT_TRUE(got->allow_unpinned);
  EXPECT_EQ(got->step.argv, sent.step.argv);
  ASSERT_TRUE(got->step.entrypoint.has_value()) << text;
  EXPECT_EQ(*got->step.entrypoint, *sent.step.entrypoint);
  EXPECT_EQ(got->step.env, sent.step.env);
  EXPECT_EQ(got->step.user, sent.step.user);
  EXPECT_EQ(got->step.working_dir, sent.step.working_dir);
  EXPECT_EQ(got->step.network, network_mode::host) << to_string(got->step.network);
  EXPECT_EQ(got->step.memory_bytes, sent.step.memory_bytes);
  EXPECT_EQ(got->step.cpus, sent.step.cpus);
  EXPECT_EQ(got->step.pids_limit, sent.step.pids_limit);
  EXPECT_EQ(got->timeout.count(), sent.timeout.count());
  EXPECT_EQ(got->tmpfs_size, sent.tmpfs_size);
  EXPECT_EQ(got->step.project_dir, sent.step.project_dir);
  ASSERT_EQ(got->step.volumes.size(), 2u) << text;
  EXPECT_EQ(got->step.volumes[0].source, "/srv/data");
  EXPECT_EQ(got->step.volumes[0].destination, "/data");
  EXPECT_TRUE(got->step.volumes[0].read_only);
  EXPECT_EQ(got->step.volumes[1].source, "/srv/out");
  EXPECT_EQ(got->step.volumes[1].destination, "/out");
  EXPECT_FALSE(got->step.volumes[1].read_only);
  ASSERT_EQ(got->secrets.size(), 2u) << text;
  EXPECT_EQ(got->secrets[0].name, "token");
  EXPECT_EQ(got->secrets[0].value, sent.secrets[0].value);
  EXPECT_EQ(got->secrets[0].value.size(), 20u);
  EXPECT_EQ(got->secrets[1].name, "key");
  EXPECT_EQ(got->secrets[1].value, "k");
  EXPECT_EQ(got->output, output_mode::separate);
  EXPECT_FALSE(got->environment_report);
  // And the text it makes again is the same.
  EXPECT_EQ(text_of(*got), text);
}

TEST(StepRequestTest, TmpfsSizeZeroMeansOnDiskAndIsNotTheDefault) {
  step_request sent;
  sent.image = std::string(kImage);
  sent.tmpfs_size = 0;
  auto got = parse_step_request(text_of(sent));
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_TRUE(got->tmpfs_size.has_value()) << text_of(sent);
  EXPECT_EQ(*got->tmpfs_size, 0u);
}

TEST(StepRequestTest, EachNetworkModeSurvivesTheRoundTrip) {
  for (auto mode : {network_mode::isolated, network_mode::none, network_mode::host}) {
    step_request sent;
    sent.image = std::string(kImage);
    sent.step.network = mode;
    auto got = parse_step_request(text_of(sent));
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ(got->step.network, mode)
        << to_string(mode) << " came back as " << to_string(got->step.network);
  }
}

TEST(StepRequestTest, AnImageAloneGetsTheDefaults) {
  auto r = parse_step_request(R"({"image": ")" + std::string(kImage) + R"("})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->image, kImage);
  EXPECT_FALSE(r->allow_unpinned);
  EXPECT_TRUE(r->step.argv.empty());
  EXPECT_FALSE(r->step.entrypoint.has_value());
  EXPECT_TRUE(r->step.env.empty());
  EXPECT_FALSE(r->step.user.has_value());
  EXPECT_FALSE(r->step.working_dir.has_value());
  EXPECT_EQ(r->step.network, network_mode::isolated) << to_string(r->step.network);
  EXPECT_FALSE(r->step.memory_bytes.has_value());
  EXPECT_FALSE(r->step.cpus.has_value());
  EXPECT_FALSE(r->step.pids_limit.has_value());
  EXPECT_EQ(r->timeout.count(), 0);         // runner.defaults.timeout
  EXPECT_FALSE(r->tmpfs_size.has_value());  // runner.defaults.tmpfs_size
  EXPECT_EQ(r->step.project_dir, "");
  EXPECT_TRUE(r->step.volumes.empty());
  EXPECT_TRUE(r->secrets.empty());
  EXPECT_EQ(r->output, output_mode::merged);
  EXPECT_TRUE(r->environment_report);
  // The runner's own fields stay unset: a client cannot set them.
  EXPECT_EQ(r->step.netns_path, "");
  EXPECT_EQ(r->step.index_url, "");
  EXPECT_TRUE(r->step.secrets.empty());
  EXPECT_EQ(r->step.seccomp, nullptr);
  EXPECT_FALSE(r->step.seccomp_unconfined);
}

TEST(StepRequestTest, NullMembersAreLeftOut) {
  auto r = parse_step_request(with(
      R"("allow_unpinned": null, "argv": null, "entrypoint": null, "env": null, "user": null,
         "working_dir": null, "network": null, "memory": null, "cpus": null,
         "pids_limit": null, "timeout_ms": null, "tmpfs_size": null, "project_dir": null,
         "volumes": null, "secrets": null, "separate_streams": null,
         "environment_report": null)"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->step.entrypoint.has_value());
  EXPECT_EQ(r->step.network, network_mode::isolated) << to_string(r->step.network);
  EXPECT_FALSE(r->step.memory_bytes.has_value());
  EXPECT_FALSE(r->step.cpus.has_value());
  EXPECT_FALSE(r->tmpfs_size.has_value());
  EXPECT_EQ(r->output, output_mode::merged);
  EXPECT_TRUE(r->environment_report);
}

TEST(StepRequestTest, AnEmptyUserOrWorkingDirIsTheImagesOwn) {
  auto r = parse_step_request(with(R"("user": "", "working_dir": "")"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->step.user.has_value()) << *r->step.user;
  EXPECT_FALSE(r->step.working_dir.has_value()) << *r->step.working_dir;
}

TEST(StepRequestTest, AnEmptyEntrypointIsKeptApartFromNone) {
  // `--entrypoint ""` in docker's sense: the image's Entrypoint dropped.
  auto r = parse_step_request(with(R"("entrypoint": [])"));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->step.entrypoint.has_value());
  EXPECT_TRUE(r->step.entrypoint->empty());
}

TEST(StepRequestTest, ToJsonWritesOnlyWhatDiffersFromTheDefaults) {
  step_request r;
  r.image = std::string(kImage);
  r.step.argv = {"true"};
  auto o = to_json(r);
  std::vector<std::string> keys;
  for (const auto& kv : o)
    keys.emplace_back(kv.key());
  EXPECT_THAT(keys, ElementsAre("image", "argv", "network")) << boost::json::serialize(o);
  EXPECT_EQ(o.at("network").as_string(), "isolated");
}

TEST(StepRequestTest, RefusesWhatIsNotAJsonObject) {
  expect_refused("", {"step request", "not a JSON object"});
  expect_refused("{\"image\": ", {"step request", "not a JSON object"});
  expect_refused("[1, 2]", {"step request", "not a JSON object"});
  expect_refused("\"local/app\"", {"step request", "not a JSON object"});
}

TEST(StepRequestTest, RefusesAMissingOrEmptyImage) {
  expect_refused("{}", {"image", "missing"});
  expect_refused(R"({"image": ""})", {"image", "missing"});
  expect_refused(R"({"image": null})", {"image", "missing"});
  expect_refused(R"({"image": 7})", {"image", "expected a string"});
}

TEST(StepRequestTest, RefusesAnUnknownMemberByName) {
  // A newer client's option silently ignored could run the step differently from what was asked.
  expect_refused(with(R"("privileged": true)"), {"step request", "unknown member", "privileged"});
  expect_refused(with(R"("Image": "x")"), {"unknown member", "\"Image\""});
}

TEST(StepRequestTest, RefusesABadNetworkNamingIt) {
  expect_refused(with(R"("network": "bridge")"), {"network", "bridge", "isolated, none, host"});
  expect_refused(with(R"("network": "")"), {"network", "isolated, none, host"});
  expect_refused(with(R"("network": "Host")"), {"network", "Host"});
  expect_refused(with(R"("network": 1)"), {"network", "expected a string"});
}

TEST(StepRequestTest, RefusesMembersOfTheWrongTypeNamingThem) {
  expect_refused(with(R"("allow_unpinned": "yes")"), {"allow_unpinned", "true or false"});
  expect_refused(with(R"("argv": "ls -l")"), {"argv", "array of strings"});
  expect_refused(with(R"("argv": ["ls", 1])"), {"argv", "array of strings"});
  expect_refused(with(R"("entrypoint": "/bin/sh")"), {"entrypoint", "array of strings"});
  expect_refused(with(R"("env": {"A": "1"})"), {"env", "array of strings"});
  expect_refused(with(R"("env": ["A=1", null])"), {"env", "array of strings"});
  expect_refused(with(R"("user": 1000)"), {"user", "expected a string"});
  expect_refused(with(R"("working_dir": ["/w"])"), {"working_dir", "expected a string"});
  expect_refused(with(R"("memory": "2GiB")"), {"memory", "a number", "\"2GiB\""});
  expect_refused(with(R"("cpus": "2")"), {"cpus", "expected a number"});
  expect_refused(with(R"("pids_limit": true)"), {"pids_limit", "a number", "true"});
  expect_refused(with(R"("timeout_ms": "10m")"), {"timeout_ms", "a number", "\"10m\""});
  expect_refused(with(R"("timeout_ms": 1.5)"), {"timeout_ms", "a number", "1.5"});
  expect_refused(with(R"("tmpfs_size": "1GiB")"), {"tmpfs_size", "a number", "\"1GiB\""});
  expect_refused(with(R"("project_dir": false)"), {"project_dir", "expected a string"});
  expect_refused(with(R"("separate_streams": 1)"), {"separate_streams", "true or false"});
  expect_refused(with(R"("environment_report": "no")"), {"environment_report", "true or false"});
}

TEST(StepRequestTest, RefusesNegativeNumbersNamingTheValue) {
  expect_refused(with(R"("memory": -1)"), {"memory", "at least 0", "-1"});
  expect_refused(with(R"("pids_limit": -5)"), {"pids_limit", "at least 0", "-5"});
  expect_refused(with(R"("timeout_ms": -1000)"), {"timeout_ms", "at least 0", "-1000"});
  expect_refused(with(R"("tmpfs_size": -1)"), {"tmpfs_size", "at least 0", "-1"});
}

TEST(StepRequestTest, RefusesBadVolumesNamingTheMember) {
  expect_refused(with(R"("volumes": {"source": "/a", "destination": "/b"})"),
                 {"volumes", "expected an array"});
  expect_refused(with(R"("volumes": ["/a:/b"])"), {"volumes", "expected objects"});
  expect_refused(with(R"("volumes": [{"source": "/a", "destination": "/b", "mode": "ro"}])"),
                 {"volume", "unknown member", "mode"});
  expect_refused(with(R"("volumes": [{"source": 1, "destination": "/b"}])"),
                 {"source", "expected a string"});
  expect_refused(with(R"("volumes": [{"source": "/a", "destination": 2}])"),
                 {"destination", "expected a string"});
  expect_refused(with(R"("volumes": [{"source": "/a", "destination": "/b", "read_only": "ro"}])"),
                 {"read_only", "true or false"});
}

TEST(StepRequestTest, RefusesBadSecretsNamingTheMember) {
  expect_refused(with(R"("secrets": "token=abc")"), {"secrets", "expected an array"});
  expect_refused(with(R"("secrets": [["token", "abc"]])"), {"secrets", "expected objects"});
  expect_refused(with(R"("secrets": [{"name": "token", "value": "abc", "file": "/x"}])"),
                 {"secret", "unknown member", "file"});
  expect_refused(with(R"("secrets": [{"name": 1, "value": "abc"}])"),
                 {"name", "expected a string"});
  expect_refused(with(R"("secrets": [{"name": "token", "value": 42}])"),
                 {"value", "expected a string"});
}

TEST(StepRequestTest, ARefusalNeverEchoesASecretsValue) {
  // A bad member after a secret: the message names the member, not the request.
  auto r = parse_step_request(
      with(R"("secrets": [{"name": "token", "value": "hunter2-secret"}], "memory": -1)"));
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("memory"));
  EXPECT_THAT(r.error().message, ::testing::Not(HasSubstr("hunter2-secret")));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
