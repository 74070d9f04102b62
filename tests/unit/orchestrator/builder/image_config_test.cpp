#include "pantry/orchestrator/builder/image_config.h"

#include "build_util.h"

#include <boost/json/parse.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using strings = std::vector<std::string>;

constexpr std::string_view kPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// 2023-11-14T22:13:20Z
constexpr std::int64_t kEpoch = 1700000000;

cache::digest layer_digest(std::size_t n) {
  return cache::digest::of("layer " + std::to_string(n));
}

// A Containerfile's last stage applied step by step to `start`, each layer step given a made-up
// diff ID (layer_digest(0), (1), … in order).
testing_util::built_stage build_stage(std::string_view text, oci_image_config start,
                                      build_options options = {}) {
  return testing_util::build_stage(text, std::move(start), kEpoch, layer_digest,
                                   std::move(options));
}

oci_image_config scratch() {
  return scratch_config("amd64");
}

std::vector<std::string> created_by(const oci_image_config& c) {
  std::vector<std::string> out;
  for (const auto& h : c.history)
    out.push_back(h.created_by);
  return out;
}

// ---- media types --------------------------------------------------------------------------------

TEST(ImageConfigTest, LayerMediaTypesAreOciAndDockerOnesBecomeOci) {
  EXPECT_EQ(layer_media_type(layer_compression::gzip),
            "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(layer_media_type(layer_compression::zstd),
            "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(layer_media_type(layer_compression::none), "application/vnd.oci.image.layer.v1.tar");
  EXPECT_EQ(oci_layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip").value(),
            "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(oci_layer_media_type("application/vnd.oci.image.layer.v1.tar+zstd").value(),
            "application/vnd.oci.image.layer.v1.tar+zstd");
  auto foreign = oci_layer_media_type("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip");
  ASSERT_FALSE(foreign);
  EXPECT_THAT(foreign.error().message, HasSubstr("foreign"));
  EXPECT_FALSE(
      oci_layer_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"));
}

// ---- reading and writing ------------------------------------------------------------------------

// What `docker inspect` shows of a classic-builder image: members BuildKit does not keep, nulls,
// and the fields it does keep.
constexpr std::string_view kDockerConfig = R"({
  "architecture": "amd64",
  "config": {
    "Hostname": "", "Domainname": "", "User": "app", "AttachStdin": false,
    "ExposedPorts": {"8080/tcp": {}},
    "Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
    "Cmd": ["python3"], "Image": "sha256:abc", "Volumes": null, "WorkingDir": "/srv",
    "Entrypoint": null, "OnBuild": null, "Labels": {"maintainer": "x"},
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3},
    "StopSignal": "SIGINT", "Shell": ["/bin/bash", "-c"]
  },
  "container": "0123", "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"python3\"]"]},
  "created": "2023-06-13T01:02:03.456789Z",
  "docker_version": "20.10.23",
  "history": [
    {"created": "2023-06-13T01:02:03Z", "created_by": "/bin/sh -c #(nop) ADD file:1 in / "},
    {"created": "2023-06-13T01:02:04Z", "created_by": "/bin/sh -c #(nop)  CMD [\"python3\"]",
     "empty_layer": true}
  ],
  "os": "linux",
  "rootfs": {"type": "layers", "diff_ids": [
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]}
})";

TEST(ImageConfigTest, ReadsADockerConfigKeepingWhatBuildKitKeeps) {
  auto c = parse_image_config(kDockerConfig);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->architecture, "amd64");
  EXPECT_EQ(c->os, "linux");
  EXPECT_EQ(c->created, "2023-06-13T01:02:03.456789Z");
  EXPECT_EQ(c->user, "app");
  EXPECT_THAT(c->exposed_ports, ElementsAre("8080/tcp"));
  EXPECT_THAT(c->env, ElementsAre("PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"));
  EXPECT_THAT(c->cmd, ElementsAre("python3"));
  EXPECT_TRUE(c->entrypoint.empty());
  EXPECT_TRUE(c->volumes.empty());
  EXPECT_EQ(c->working_dir, "/srv");
  EXPECT_EQ(c->labels.at("maintainer"), "x");
  ASSERT_TRUE(c->healthcheck);
  EXPECT_THAT(c->healthcheck->test, ElementsAre("CMD-SHELL", "true"));
  EXPECT_EQ(c->healthcheck->interval, std::chrono::seconds(30));
  EXPECT_EQ(c->healthcheck->retries, 3);
  EXPECT_EQ(c->stop_signal, "SIGINT");
  EXPECT_THAT(c->shell, ElementsAre("/bin/bash", "-c"));
  ASSERT_EQ(c->history.size(), 2u);
  EXPECT_FALSE(c->history[0].empty_layer);
  EXPECT_TRUE(c->history[1].empty_layer);
  ASSERT_EQ(c->diff_ids.size(), 1u);
  EXPECT_EQ(c->diff_ids[0].hex().substr(0, 8), "01234567");

  // Written back: the dropped members are gone, and reading it again gives the same config.
  const std::string written = serialize(*c);
  EXPECT_THAT(written, Not(HasSubstr("container_config")));
  EXPECT_THAT(written, Not(HasSubstr("docker_version")));
  EXPECT_THAT(written, Not(HasSubstr("Hostname")));
  auto again = parse_image_config(written);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *c);
  EXPECT_EQ(serialize(*again), written);
}

TEST(ImageConfigTest, SerializeIsCanonical) {
  oci_image_config c = scratch();
  c.labels = {{"b", "2"}, {"a", "1"}};
  c.exposed_ports = {"80/tcp"};
  c.healthcheck = health_check{{"NONE"}, {}, {}, {}, {}, 0};
  c.diff_ids = {layer_digest(0)};
  c.history = {{"1970-01-01T00:00:00Z", "RUN x", "", "c", false}};
  // Keys sorted at every level, no white space, empty fields left out, rootfs always there.
  EXPECT_EQ(serialize(c),
            R"({"architecture":"amd64","config":{"Env":[")" + std::string(kPath) +
                R"("],"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["NONE"]},)"
                R"("Labels":{"a":"1","b":"2"},"WorkingDir":"/"},"history":[{"comment":"c",)"
                R"("created":"1970-01-01T00:00:00Z","created_by":"RUN x"}],"os":"linux",)"
                R"("rootfs":{"diff_ids":[")" +
                layer_digest(0).str() + R"("],"type":"layers"}})");

  oci_image_config empty;
  empty.architecture = "arm64";
  empty.os = "linux";
  EXPECT_EQ(
      serialize(empty),
      R"({"architecture":"arm64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}})");
}

TEST(ImageConfigTest, SerializeWritesInvalidUtf8AsReplacementCharacters) {
  oci_image_config c = scratch();
  c.labels = {{"k", "caf\xc3\xa9 \xff"}};
  const std::string s = serialize(c);
  EXPECT_THAT(s, HasSubstr("\"k\":\"caf\xc3\xa9 \xef\xbf\xbd\""));
  EXPECT_NO_THROW(boost::json::parse(s));
}

TEST(ImageConfigTest, ReadingNamesTheMemberThatIsWrong) {
  auto message = [](std::string_view json) {
    auto c = parse_image_config(json);
    EXPECT_FALSE(c) << json;
    return c ? std::string() : c.error().message;
  };
  EXPECT_EQ(message(R"({"config":{"Env":"A=1"}})"),
            "image config: config.Env: expected an array of strings");
  EXPECT_EQ(message(R"({"config":{"Env":["A=1",2]}})"),
            "image config: config.Env: expected an array of strings");
  EXPECT_EQ(message(R"({"config":{"Healthcheck":{"Interval":1.5}}})"),
            "image config: config.Healthcheck.Interval: expected an integer");
  EXPECT_EQ(message(R"({"config":[]})"), "image config: config: expected an object");
  EXPECT_THAT(message(R"({"rootfs":{"type":"layers","diff_ids":["md5:00"]}})"),
              HasSubstr("image config: rootfs.diff_ids: "));
  EXPECT_THAT(message(R"({"rootfs":{"type":"other"}})"), HasSubstr("rootfs.type"));
  EXPECT_THAT(message(R"({"history":[1]})"), HasSubstr("history"));
  EXPECT_THAT(message("[]"), HasSubstr("the document: expected an object"));
  EXPECT_THAT(message("{"), HasSubstr("not JSON"));
  // Nulls are absent members, as Go reads them.
  auto nulls = parse_image_config(
      R"({"architecture":null,"config":{"Env":null,"Labels":{"a":null}},"history":null})");
  ASSERT_TRUE(nulls) << nulls.error().message;
  EXPECT_TRUE(nulls->env.empty());
  EXPECT_TRUE(nulls->labels.empty());
}

// ---- times --------------------------------------------------------------------------------------

TEST(ImageConfigTest, TimesAreRfc3339InUtc) {
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339(kEpoch), "2023-11-14T22:13:20Z");
  EXPECT_EQ(rfc3339(kMaxSourceDateEpoch), "9999-12-31T23:59:59Z");
}

TEST(ImageConfigTest, SourceDateEpochIsDecimalSeconds) {
  EXPECT_EQ(parse_source_date_epoch("0").value(), 0);
  EXPECT_EQ(parse_source_date_epoch("1700000000").value(), kEpoch);
  EXPECT_EQ(parse_source_date_epoch("253402300799").value(), kMaxSourceDateEpoch);
  for (std::string_view bad :
       {"", "-1", "+1", "1.5", " 1", "1e9", "253402300800", "99999999999999999999", "0x10"}) {
    auto r = parse_source_date_epoch(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("SOURCE_DATE_EPOCH"));
  }
}

// ---- starting points ----------------------------------------------------------------------------

TEST(ImageConfigTest, ScratchStartsAsBuildKitsEmptyImage) {
  const oci_image_config c = scratch_config("arm", "v7");
  EXPECT_EQ(c.os, "linux");
  EXPECT_EQ(c.architecture, "arm");
  EXPECT_EQ(c.variant, "v7");
  EXPECT_EQ(c.working_dir, "/");
  EXPECT_THAT(c.env, ElementsAre(kPath));
  EXPECT_TRUE(c.diff_ids.empty());
  EXPECT_TRUE(c.history.empty());
}

TEST(ImageConfigTest, BaseImageGetsAPathAndLosesItsCreationTime) {
  auto base = parse_image_config(kDockerConfig);
  ASSERT_TRUE(base);
  base->env = {"LANG=C.UTF-8"};
  base->working_dir = "/srv/./app/";
  auto c = base_image_config(*base);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->created, "");
  EXPECT_THAT(c->env, ElementsAre("LANG=C.UTF-8", kPath));
  EXPECT_EQ(c->working_dir, "/srv/app");
  EXPECT_EQ(c->history, base->history);  // the base's history stays

  base->env = {"PATH=/bin"};
  EXPECT_THAT(base_image_config(*base)->env, ElementsAre("PATH=/bin"));

  base->on_build = {"RUN make"};
  auto refused = base_image_config(*base);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message, HasSubstr("ONBUILD"));
  EXPECT_THAT(refused.error().message, HasSubstr("\"RUN make\""));
}

// ---- steps --------------------------------------------------------------------------------------

TEST(ImageConfigTest, EachInstructionSetsWhatDockerSetsAndWritesBuildKitsHistory) {
  const auto r = build_stage(R"(FROM scratch
ARG V=2
ARG UNSET
ENV A=1 B=x
ENV A=3
LABEL org.opencontainers.image.title="my app" version=1
WORKDIR /srv
WORKDIR app/../src/.
RUN echo $V
RUN ["/bin/true", "x"]
COPY --chown=1000:1000 --chmod=644 a.txt b/ /dst/
ADD archive.tar /
USER 1000:1000
EXPOSE 80 8000-8001/udp
VOLUME /data /cache
STOPSIGNAL SIGINT
MAINTAINER someone@example.com
HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=500ms --retries=3 CMD curl -f http://localhost/ || exit 1
SHELL ["/bin/bash", "-eu", "-c"]
CMD serve --port 80
)",
                             scratch());
  ASSERT_TRUE(r.image);
  const oci_image_config c = r.image->image();
  EXPECT_EQ(c.created, "2023-11-14T22:13:20Z");
  EXPECT_THAT(c.env, ElementsAre(kPath, "A=3", "B=x"));
  EXPECT_EQ(c.labels.at("org.opencontainers.image.title"), "my app");
  EXPECT_EQ(c.labels.at("version"), "1");
  EXPECT_EQ(c.working_dir, "/srv/src");
  EXPECT_EQ(c.user, "1000:1000");
  EXPECT_THAT(c.exposed_ports, ElementsAre("80/tcp", "8000/udp", "8001/udp"));
  EXPECT_THAT(c.volumes, ElementsAre("/cache", "/data"));
  EXPECT_EQ(c.stop_signal, "SIGINT");
  EXPECT_EQ(c.author, "someone@example.com");
  ASSERT_TRUE(c.healthcheck);
  EXPECT_THAT(c.healthcheck->test, ElementsAre("CMD-SHELL", "curl -f http://localhost/ || exit 1"));
  EXPECT_EQ(c.healthcheck->interval, std::chrono::seconds(90));
  EXPECT_EQ(c.healthcheck->timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.healthcheck->start_period, std::chrono::milliseconds(500));
  EXPECT_EQ(c.healthcheck->retries, 3);
  EXPECT_THAT(c.shell, ElementsAre("/bin/bash", "-eu", "-c"));
  // Shell-form CMD goes through the SHELL in force, and sets ArgsEscaped as BuildKit does.
  EXPECT_THAT(c.cmd, ElementsAre("/bin/bash", "-eu", "-c", "serve --port 80"));
  EXPECT_TRUE(c.args_escaped);
  EXPECT_TRUE(c.entrypoint.empty());

  // Layers: the two RUNs, the COPY and the ADD, in order.
  EXPECT_THAT(c.diff_ids,
              ElementsAre(layer_digest(0), layer_digest(1), layer_digest(2), layer_digest(3)));
  EXPECT_THAT(
      created_by(c),
      ElementsAre("ARG V=2", "ARG UNSET", "ENV A=1 B=x", "ENV A=3",
                  "LABEL org.opencontainers.image.title=my app version=1", "WORKDIR /srv",
                  "WORKDIR /srv/src", "RUN |1 V=2 /bin/sh -c echo $V", "RUN |1 V=2 /bin/true x",
                  "COPY --chown=1000:1000 --chmod=0644 a.txt b/ /dst/", "ADD archive.tar /",
                  "USER 1000:1000", "EXPOSE [80/tcp 8000/udp 8001/udp]", "VOLUME [/data /cache]",
                  "STOPSIGNAL SIGINT", "MAINTAINER someone@example.com",
                  "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/ || exit 1] "
                  "Interval:1m30s Timeout:1.5s StartPeriod:500ms StartInterval:0s Retries:3}",
                  "SHELL [/bin/bash -eu -c]", R"(CMD ["/bin/bash" "-eu" "-c" "serve --port 80"])"));
  for (const auto& h : c.history) {
    EXPECT_EQ(h.created, "2023-11-14T22:13:20Z") << h.created_by;
    EXPECT_EQ(h.comment, kHistoryComment) << h.created_by;
    const bool layer = h.created_by.starts_with("RUN") || h.created_by.starts_with("COPY") ||
                       h.created_by.starts_with("ADD");
    EXPECT_EQ(h.empty_layer, !layer) << h.created_by;
  }

  // The stage's config (what a later stage starts from) has no creation time yet.
  EXPECT_EQ(r.image->config().created, "");
}

TEST(ImageConfigTest, EntrypointClearsACmdFromTheBaseButNotOneSetBeforeInTheStage) {
  oci_image_config base = scratch();
  base.cmd = {"python3"};
  // docker's rule: an inherited CMD would become the new entrypoint's arguments.
  auto cleared = build_stage("FROM scratch\nENTRYPOINT [\"/app\"]\n", base);
  ASSERT_TRUE(cleared.image);
  EXPECT_THAT(cleared.image->config().entrypoint, ElementsAre("/app"));
  EXPECT_TRUE(cleared.image->config().cmd.empty());

  auto kept = build_stage("FROM scratch\nCMD [\"--help\"]\nENTRYPOINT [\"/app\"]\n", base);
  ASSERT_TRUE(kept.image);
  EXPECT_THAT(kept.image->config().cmd, ElementsAre("--help"));
  EXPECT_THAT(kept.image->config().entrypoint, ElementsAre("/app"));

  auto after = build_stage("FROM scratch\nENTRYPOINT [\"/app\"]\nCMD [\"--help\"]\n", base);
  ASSERT_TRUE(after.image);
  EXPECT_THAT(after.image->config().cmd, ElementsAre("--help"));

  // Shell form, without a SHELL: /bin/sh -c; ENTRYPOINT [] clears it.
  auto shell = build_stage("FROM scratch\nENTRYPOINT exec /app \"$X\"\n", base);
  ASSERT_TRUE(shell.image);
  EXPECT_THAT(shell.image->config().entrypoint, ElementsAre("/bin/sh", "-c", "exec /app \"$X\""));
  EXPECT_EQ(shell.image->config().history.back().created_by,
            R"(ENTRYPOINT ["/bin/sh" "-c" "exec /app \"$X\""])");
  base.entrypoint = {"/old"};
  auto none = build_stage("FROM scratch\nENTRYPOINT []\n", base);
  ASSERT_TRUE(none.image);
  EXPECT_TRUE(none.image->config().entrypoint.empty());
}

TEST(ImageConfigTest, WorkdirJoinsAndCleansAsDockerDoes) {
  oci_image_config base = scratch();
  base.working_dir = "";
  auto r =
      build_stage("FROM scratch\nWORKDIR a/b\nWORKDIR ../../../c//d/\nWORKDIR /x/./y/..\n", base);
  ASSERT_TRUE(r.image);
  EXPECT_THAT(created_by(r.image->config()),
              ElementsAre("WORKDIR /a/b", "WORKDIR /c/d", "WORKDIR /x"));
  auto root = build_stage("FROM scratch\nWORKDIR /..\n", base);
  ASSERT_TRUE(root.image);
  EXPECT_EQ(root.image->config().working_dir, "/");
}

TEST(ImageConfigTest, EnvReplacesInPlaceAndHealthcheckNoneDisables) {
  oci_image_config base = scratch();
  base.env = {"PATH=/bin", "LANG=C", "TZ=UTC"};
  base.healthcheck = health_check{{"CMD", "true"}, std::chrono::seconds(5), {}, {}, {}, 2};
  auto r = build_stage("FROM scratch\nENV LANG=C.UTF-8 NEW=1\nHEALTHCHECK NONE\n", base);
  ASSERT_TRUE(r.image);
  const auto& c = r.image->config();
  EXPECT_THAT(c.env, ElementsAre("PATH=/bin", "LANG=C.UTF-8", "TZ=UTC", "NEW=1"));
  ASSERT_TRUE(c.healthcheck);
  EXPECT_EQ(*c.healthcheck, (health_check{{"NONE"}, {}, {}, {}, {}, 0}));
  EXPECT_EQ(c.history.back().created_by,
            "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s "
            "Retries:0}");
}

TEST(ImageConfigTest, CmdHistoryQuotesAsGoDoes) {
  auto r = build_stage("FROM scratch\nCMD [\"a\\tb\", \"q\\\"\", \"\\u0001\", \"é\"]\n", scratch());
  ASSERT_TRUE(r.image);
  EXPECT_EQ(r.image->config().history.back().created_by,
            "CMD [\"a\\tb\" \"q\\\"\" \"\\x01\" \"é\"]");
}

TEST(ImageConfigTest, ApplyWantsALayerForExactlyTheLayerSteps) {
  const auto b = testing_util::parse_build("FROM scratch\nRUN true\nENV A=1\n");
  ASSERT_TRUE(b.scope);
  stage_scope scope(*b.scope, {});
  stage_image image(scratch(), 0);
  auto run = scope.resolve(b.file->stages[0].instructions[0]);
  auto env = scope.resolve(b.file->stages[0].instructions[1]);
  ASSERT_TRUE(run && env);
  auto missing = image.apply(*run, std::nullopt);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message,
            "image config: line 2: RUN: the step's layer (its diff ID) is missing");
  auto extra = image.apply(*env, layer_digest(0));
  ASSERT_FALSE(extra);
  EXPECT_EQ(extra.error().message,
            "image config: line 3: ENV: only RUN, COPY and ADD write a layer");
  EXPECT_TRUE(image.config().history.empty());
  EXPECT_TRUE(image.config().diff_ids.empty());
  EXPECT_TRUE(image.apply(*run, layer_digest(0)));
  EXPECT_EQ(image.image().created, "1970-01-01T00:00:00Z");
}

TEST(ImageConfigTest, EqualStepsGiveEqualBytes) {
  constexpr std::string_view kFile =
      "FROM scratch\nENV A=1\nRUN make\nLABEL a=b c=d\nCMD [\"x\"]\n";
  auto one = build_stage(kFile, scratch());
  auto two = build_stage(kFile, scratch());
  ASSERT_TRUE(one.image && two.image);
  EXPECT_EQ(serialize(one.image->image()), serialize(two.image->image()));
  auto other =
      build_stage("FROM scratch\nENV A=2\nRUN make\nLABEL a=b c=d\nCMD [\"x\"]\n", scratch());
  ASSERT_TRUE(other.image);
  EXPECT_NE(serialize(one.image->image()), serialize(other.image->image()));
}

// ---- RUN ----------------------------------------------------------------------------------------

TEST(ImageConfigTest, RunCommandUsesTheShellAndPassesBuildArgsInTheEnvironmentOnly) {
  build_options options;
  options.build_args = {{"V", "from-cli"}};
  auto r = build_stage(R"(FROM scratch
ARG V=1
ARG W=2
ENV W=env
WORKDIR /src
USER app
RUN make V=$V
SHELL ["/bin/bash", "-c"]
RUN make
RUN ["/usr/bin/env"]
)",
                       scratch(), options);
  ASSERT_TRUE(r.image);
  ASSERT_EQ(r.steps.size(), 9u);
  // The config before each RUN: rebuild it step by step.
  stage_image before(scratch(), kEpoch);
  std::vector<run_command> runs;
  for (const auto& step : r.steps) {
    if (std::holds_alternative<run_instruction>(step.step.body)) {
      auto cmd = run_command_for(before.config(), step, kEpoch);
      ASSERT_TRUE(cmd) << cmd.error().message;
      runs.push_back(*cmd);
    }
    std::optional<cache::digest> layer;
    if (makes_layer(step.step)) layer = layer_digest(0);
    ASSERT_TRUE(before.apply(step, layer));
  }
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_THAT(runs[0].argv, ElementsAre("/bin/sh", "-c", "make V=$V"));
  EXPECT_THAT(runs[1].argv, ElementsAre("/bin/bash", "-c", "make"));
  EXPECT_THAT(runs[2].argv, ElementsAre("/usr/bin/env"));
  // W is set by ENV, so its ARG value never shows; V comes from --build-arg.
  EXPECT_THAT(runs[0].env, ElementsAre(kPath, "W=env", "V=from-cli", "SOURCE_DATE_EPOCH=1700000000",
                                       "PIP_NO_CACHE_DIR=1"));
  EXPECT_EQ(runs[0].working_dir, "/src");
  EXPECT_EQ(runs[0].user, "app");
  // The build args are not in the image.
  EXPECT_THAT(r.image->config().env, ElementsAre(kPath, "W=env"));
  EXPECT_EQ(r.image->config().history[5].created_by, "RUN |1 V=from-cli /bin/sh -c make V=$V");
}

TEST(ImageConfigTest, RunCommandKeepsWhatTheFileSets) {
  auto r = build_stage("FROM scratch\nENV SOURCE_DATE_EPOCH=5 PIP_NO_CACHE_DIR=0\nRUN true\n",
                       scratch());
  ASSERT_TRUE(r.image);
  stage_image before(scratch(), 0);
  ASSERT_TRUE(before.apply(r.steps[0], std::nullopt));
  auto cmd = run_command_for(before.config(), r.steps[1], kEpoch);
  ASSERT_TRUE(cmd) << cmd.error().message;
  EXPECT_THAT(cmd->env, ElementsAre(kPath, "SOURCE_DATE_EPOCH=5", "PIP_NO_CACHE_DIR=0"));

  auto not_run = run_command_for(before.config(), r.steps[0], kEpoch);
  ASSERT_FALSE(not_run);
  EXPECT_THAT(not_run.error().message, HasSubstr("ENV is no RUN step"));

  oci_image_config no_workdir = scratch();
  no_workdir.working_dir.clear();
  EXPECT_EQ(run_command_for(no_workdir, r.steps[1], 0)->working_dir, "/");
}

// ---- manifest -----------------------------------------------------------------------------------

TEST(ImageConfigTest, ManifestIsCanonicalOci) {
  const descriptor config{std::string(kImageConfigMediaType), cache::digest::of("config"), 123};
  const descriptor layer{std::string(layer_media_type(layer_compression::gzip)), layer_digest(0),
                         4567};
  EXPECT_EQ(image_manifest(config, {layer}),
            R"({"config":{"digest":")" + config.digest.str() +
                R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":123},)"
                R"("layers":[{"digest":")" +
                layer.digest.str() +
                R"(","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":4567}],)"
                R"("mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})");
  const std::string annotated =
      image_manifest(config, {}, {{"org.opencontainers.image.base.name", "busybox"}});
  EXPECT_THAT(annotated,
              HasSubstr(R"({"annotations":{"org.opencontainers.image.base.name":"busybox"},)"));
  EXPECT_THAT(annotated, HasSubstr(R"("layers":[],)"));
}

}  // namespace
}  // namespace pantry::orchestrator::builder
