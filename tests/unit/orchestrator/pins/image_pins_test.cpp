// Image pins: the tag-resolving request, the registry's answer read, and the decision.

#include "pantry/orchestrator/pins/image_pins.h"

#include <gtest/gtest.h>

#include <string>

namespace pantry::orchestrator::pins {
namespace {

const std::string kD0 = "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
const std::string kD1 = "sha256:4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";

runner::image_reference ref(std::string name, std::string tag, std::string digest) {
  return {std::move(name), std::move(tag), std::move(digest)};
}

TEST(PinsImagePinsTest, RequestAsksForTheTagWithEveryManifestTypeIndexFirst) {
  const auto r = tag_digest_request(ref("ghcr.io/org/app", "1.0", kD0));
  EXPECT_EQ(r.path, "/v2/ghcr.io/org/app/manifests/1.0");
  EXPECT_EQ(r.accept,
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.list.v2+json, "
            "application/vnd.docker.distribution.manifest.v2+json");
}

TEST(PinsImagePinsTest, ReadsTheDigestOfA200) {
  auto d = read_tag_digest(ref("library/busybox", "1.36", kD0), 200, kD1);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(*d, kD1);
}

TEST(PinsImagePinsTest, ErrorsNameTheImageAndTheStatus) {
  const auto r = ref("library/busybox", "1.36", kD0);
  const auto expect = [&](unsigned status, std::optional<std::string_view> header, errc code,
                          std::string_view part) {
    auto d = read_tag_digest(r, status, header);
    ASSERT_FALSE(d.has_value()) << "status " << status << " gave " << *d;
    EXPECT_EQ(d.error().code, code) << d.error().message;
    EXPECT_NE(d.error().message.find("image library/busybox:1.36"), std::string::npos)
        << d.error().message;
    EXPECT_NE(d.error().message.find(part), std::string::npos) << d.error().message;
  };
  expect(404, std::nullopt, errc::not_found, "no such tag (404)");
  expect(401, std::nullopt, errc::io_error, "refused to resolve the tag (401)");
  expect(403, std::nullopt, errc::io_error, "(403)");
  expect(502, std::nullopt, errc::io_error, "answered 502");
  expect(200, std::nullopt, errc::invalid_argument, "without a Docker-Content-Digest");
  expect(200, "sha512:abcd", errc::invalid_argument, "\"sha512:abcd\"");
  expect(200, "SHA256:" + kD1.substr(7), errc::invalid_argument, "is not sha256:");
}

TEST(PinsImagePinsTest, ReferencesWithoutTagOrDigestAreNotCheckedWithTheReason) {
  EXPECT_FALSE(unchecked_image(ref("python", "3.12", kD0)).has_value());
  const auto no_digest = unchecked_image(ref("python", "3.12", ""));
  ASSERT_TRUE(no_digest.has_value());
  EXPECT_EQ(no_digest->result, image_plan::outcome::not_checked);
  EXPECT_EQ(summary(*no_digest),
            "image python:3.12: not checked: no digest: the tag is not pinned (add @DIGEST to pin "
            "it)");
  const auto no_tag = unchecked_image(ref("python", "", kD0));
  ASSERT_TRUE(no_tag.has_value());
  EXPECT_EQ(summary(*no_tag), "image python@" + kD0 +
                                  ": not checked: no tag: a digest alone names no newer image to "
                                  "move to");
  const auto neither = unchecked_image(ref("python", "", ""));
  ASSERT_TRUE(neither.has_value());
  EXPECT_NE(neither->reason.find("no tag and no digest"), std::string::npos) << neither->reason;
}

TEST(PinsImagePinsTest, DecidesMovedOrCurrent) {
  const auto r = ref("localhost:5000/team/app", "v2", kD0);
  const auto same = decide_image(r, kD0);
  EXPECT_EQ(same.result, image_plan::outcome::current);
  EXPECT_EQ(summary(same), "image localhost:5000/team/app:v2: " + kD0 + " is current");
  const auto moved = decide_image(r, kD1);
  EXPECT_EQ(moved.result, image_plan::outcome::moved);
  EXPECT_EQ(moved.new_digest, kD1);
  EXPECT_EQ(summary(moved), "image localhost:5000/team/app:v2: " + kD0 + " \u2192 " + kD1);
  EXPECT_EQ(image_branch(moved), "pantry/pins/localhost-5000-team-app-v2");
}

}  // namespace
}  // namespace pantry::orchestrator::pins
