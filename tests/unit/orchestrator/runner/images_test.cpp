// The pure parts of the runner's image puller: the pick of the host's manifest from an index,
// what an image config says about its platform and layers, and which layer media types run. The
// pulls themselves are tested against a real pantry (tests/integration/image_puller_test.cpp).

#include "pantry/orchestrator/runner/images.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::HasSubstr;

std::string digest_of(char c) {
  return "sha256:" + std::string(64, c);
}

// An index entry for `platform_json` (an object, or "" for none).
std::string entry(char digest, std::string_view platform_json,
                  std::string_view media_type = "application/vnd.oci.image.manifest.v1+json") {
  std::string out = R"({"mediaType":")" + std::string(media_type) + R"(","digest":")" +
                    digest_of(digest) + R"(","size":)" + std::to_string(400 + digest);
  if (!platform_json.empty()) out += R"(,"platform":)" + std::string(platform_json);
  return out + "}";
}

std::string oci_index(const std::vector<std::string>& entries) {
  std::string out =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)";
  for (std::size_t i = 0; i < entries.size(); ++i)
    out += (i ? "," : "") + entries[i];
  return out + "]}";
}

const platform kAmd64{"linux", "amd64", ""};
const platform kArm64{"linux", "arm64", ""};

TEST(ImagesTest, PicksTheHostsManifestFromAnOciIndex) {
  // As docker buildx pushes one: an attestation manifest for each platform after the images.
  const std::string index = oci_index({
      entry('a', R"({"architecture":"arm64","os":"linux","variant":"v8"})"),
      entry('b', R"({"architecture":"amd64","os":"linux"})"),
      entry('c', R"({"architecture":"unknown","os":"unknown"})"),
  });
  auto amd = pick_platform(index, "", kAmd64);
  ASSERT_TRUE(amd) << amd.error().message;
  EXPECT_EQ(amd->digest.str(), digest_of('b'));
  EXPECT_EQ(amd->platform, "linux/amd64");
  EXPECT_EQ(amd->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(amd->size, 400u + 'b');
  auto arm = pick_platform(index, "", kArm64);
  ASSERT_TRUE(arm) << arm.error().message;
  EXPECT_EQ(arm->digest.str(), digest_of('a'));
  EXPECT_EQ(arm->platform, "linux/arm64/v8");
}

TEST(ImagesTest, PicksFromADockerManifestListByItsContentType) {
  // No mediaType in the body: the Content-Type says what it is.
  const std::string list = R"({"schemaVersion":2,"manifests":[)" +
                           entry('d', R"({"architecture":"arm","os":"linux","variant":"v6"})",
                                 "application/vnd.docker.distribution.manifest.v2+json") +
                           "," +
                           entry('e', R"({"architecture":"arm","os":"linux","variant":"v7"})",
                                 "application/vnd.docker.distribution.manifest.v2+json") +
                           "]}";
  auto p = pick_platform(list, "application/vnd.docker.distribution.manifest.list.v2+json",
                         platform{"linux", "arm", "v7"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->digest.str(), digest_of('e'));
  EXPECT_EQ(p->media_type, "application/vnd.docker.distribution.manifest.v2+json");
}

TEST(ImagesTest, AnIndexWithoutTheHostsPlatformListsWhatItHas) {
  const std::string index = oci_index({
      entry('a', R"({"architecture":"arm64","os":"linux","variant":"v8"})"),
      entry('b', R"({"architecture":"amd64","os":"linux","variant":"v3"})"),
      entry('c', ""),
  });
  auto p = pick_platform(index, "", kAmd64);
  ASSERT_FALSE(p);
  EXPECT_TRUE(p.error().is(errc::invalid_argument));
  EXPECT_EQ(p.error().message,
            "it has no manifest for linux/amd64, only for linux/arm64/v8, linux/amd64/v3, (one "
            "without a platform)");
  auto empty = pick_platform(oci_index({}), "", kAmd64);
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message, HasSubstr("the index lists no manifests"));
}

TEST(ImagesTest, PickRefusesWhatIsNoIndex) {
  const std::string manifest =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      digest_of('1') + R"(","size":2},"layers":[]})";
  auto p = pick_platform(manifest, "", kAmd64);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().message, "it is an image manifest, not an index");
  auto junk = pick_platform("{not json", "", kAmd64);
  ASSERT_FALSE(junk);
  EXPECT_THAT(junk.error().message, HasSubstr("MANIFEST_INVALID the manifest is not JSON"));
  auto bad_digest = pick_platform(
      R"({"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"md5:x","size":1}]})",
      "", kAmd64);
  ASSERT_FALSE(bad_digest);
  EXPECT_THAT(bad_digest.error().message, HasSubstr("manifests[0]"));
}

TEST(ImagesTest, ReadsTheConfigsPlatformAndDiffIds) {
  const std::string config =
      R"({"architecture":"arm64","os":"linux","variant":"v8","config":{"Cmd":["/bin/sh"]},)"
      R"("rootfs":{"type":"layers","diff_ids":[")" +
      digest_of('1') + R"(",")" + digest_of('2') + R"("]}})";
  auto r = parse_image_rootfs(config);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->platform, (platform{"linux", "arm64", "v8"}));
  ASSERT_EQ(r->diff_ids.size(), 2u);
  EXPECT_EQ(r->diff_ids[0].str(), digest_of('1'));
  EXPECT_EQ(r->diff_ids[1].str(), digest_of('2'));

  auto none = parse_image_rootfs(R"({"rootfs":{"type":"layers","diff_ids":[]}})");
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_EQ(none->platform, platform{});
  EXPECT_TRUE(none->diff_ids.empty());
}

TEST(ImagesTest, RefusesConfigsWithoutUsableDiffIds) {
  auto message = [](std::string_view json) {
    auto r = parse_image_rootfs(json);
    EXPECT_FALSE(r) << json;
    return r ? std::string() : r.error().message;
  };
  EXPECT_THAT(message("[]"), HasSubstr("image config: not a JSON object"));
  EXPECT_THAT(message("{"), HasSubstr("image config: not JSON"));
  EXPECT_EQ(message("{}"), "image config: rootfs: missing, or not an object");
  EXPECT_EQ(message(R"({"rootfs":{"type":"zfs","diff_ids":[]}})"),
            "image config: rootfs.type: expected \"layers\"");
  EXPECT_EQ(message(R"({"rootfs":{"type":"layers"}})"),
            "image config: rootfs.diff_ids: expected an array");
  EXPECT_EQ(message(R"({"rootfs":{"type":"layers","diff_ids":[1]}})"),
            "image config: rootfs.diff_ids[0]: expected a string");
  EXPECT_THAT(message(R"({"rootfs":{"type":"layers","diff_ids":["sha256:abc"]}})"),
              HasSubstr("image config: rootfs.diff_ids[0]: "));
  EXPECT_EQ(message(R"({"os":7,"rootfs":{"type":"layers","diff_ids":[]}})"),
            "image config: os: expected a string");
}

TEST(ImagesTest, OnlyDistributableUnencryptedTarLayersRun) {
  for (std::string_view ok : {
           "application/vnd.oci.image.layer.v1.tar",
           "application/vnd.oci.image.layer.v1.tar+gzip",
           "application/vnd.oci.image.layer.v1.tar+zstd",
           "application/vnd.docker.image.rootfs.diff.tar.gzip",
       }) {
    EXPECT_EQ(layer_media_type_refusal(ok), std::nullopt) << ok;
  }
  auto refusal = [](std::string_view type) { return layer_media_type_refusal(type).value_or(""); };
  EXPECT_EQ(refusal("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            "media type \"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\" is a "
            "non-distributable (foreign) layer: registries do not serve it, so pantry cannot run "
            "the image");
  EXPECT_THAT(refusal("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
              HasSubstr("non-distributable"));
  EXPECT_EQ(refusal("application/vnd.oci.image.layer.v1.tar+gzip+encrypted"),
            "media type \"application/vnd.oci.image.layer.v1.tar+gzip+encrypted\" is an encrypted "
            "layer: pantry does not decrypt layers");
  EXPECT_EQ(refusal("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
            "media type \"application/vnd.cncf.helm.chart.content.v1.tar+gzip\" is not an image "
            "layer (OCI or docker tar: uncompressed, gzip or zstd)");
  EXPECT_THAT(refusal(""), HasSubstr("media type \"\" is not an image layer"));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
