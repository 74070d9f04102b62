// Image references: NAME[:TAG][@DIGEST] as `pantry run --image`, FROM and COPY --from read them.

#include "pantry/orchestrator/runner/image_reference.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ImageReferenceTest, ParsesNamesTagsAndDigests) {
  const std::string d(kDigest);
  EXPECT_EQ(parse_image_reference("python@" + d).value(), (image_reference{"python", "", d}));
  EXPECT_EQ(parse_image_reference("python:3.11-slim@" + d).value(),
            (image_reference{"python", "3.11-slim", d}));
  EXPECT_EQ(parse_image_reference("python").value(), (image_reference{"python", "", ""}));
  EXPECT_EQ(parse_image_reference("docker.io/library/python:3").value(),
            (image_reference{"docker.io/library/python", "3", ""}));
  EXPECT_EQ(parse_image_reference("localhost:5000/team/app__x.y-z@" + d).value(),
            (image_reference{"localhost:5000/team/app__x.y-z", "", d}));
  EXPECT_EQ(parse_image_reference("[::1]:5000/app").value(),
            (image_reference{"[::1]:5000/app", "", ""}));
  EXPECT_EQ(parse_image_reference("Registry.Example.com/app").value().name,
            "Registry.Example.com/app");
  EXPECT_TRUE(parse_image_reference("python@" + d)->pinned());
  EXPECT_FALSE(parse_image_reference("python:3")->pinned());
  EXPECT_EQ(parse_image_reference("a/b:c@" + d)->str(), "a/b:c@" + d);
}

TEST(ImageReferenceTest, RefusesWhatIsNoReference) {
  auto message = [](std::string_view text) {
    auto r = parse_image_reference(text);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(message(""), "\"\" is not an image reference: it is empty");
  EXPECT_EQ(message("Python"),
            "\"Python\" is not an image reference: repository names are lowercase");
  EXPECT_EQ(message("python@sha256:abc"),
            "\"python@sha256:abc\" is not an image reference: the digest after '@' must be "
            "sha256:<64 lowercase hex digits>");
  EXPECT_THAT(message("python@sha512:" + std::string(128, 'a')), HasSubstr("sha256:<64"));
  EXPECT_THAT(message("python:-x"), HasSubstr("the tag \"-x\""));
  EXPECT_THAT(message("python:" + std::string(129, 'a')), HasSubstr("the tag"));
  EXPECT_THAT(message(":tag"), HasSubstr("it has no name"));
  EXPECT_THAT(message("a//b"), HasSubstr("the name part \"\""));
  EXPECT_THAT(message("a/-b"), HasSubstr("the name part \"-b\""));
  EXPECT_THAT(message("a/b..c"), HasSubstr("the name part \"b..c\""));
  EXPECT_THAT(message("exa_mple.com/a"), HasSubstr("the registry host \"exa_mple.com\""));
  EXPECT_THAT(message("host:port/a"), HasSubstr("the registry host"));
  EXPECT_THAT(message(std::string(256, 'a')), HasSubstr("longer than 255"));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
