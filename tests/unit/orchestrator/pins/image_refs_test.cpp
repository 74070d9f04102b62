// Image references in Containerfiles and .pantry.yml: found with their byte ranges, skipped
// with a reason when they cannot be pinned, and rewritten in place.

#include "pantry/orchestrator/pins/image_refs.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::orchestrator::pins {
namespace {

const std::string kD0 = "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
const std::string kD1 = "sha256:4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";

std::string rewrite(std::string_view text, const image_site& site, std::string_view digest) {
  auto out = replace_digest(text, site, digest);
  EXPECT_TRUE(out.has_value()) << (out ? "" : out.error().message);
  return out ? *out : std::string(text);
}

TEST(PinsImageRefsTest, FindsFromLinesWithPlatformStageAndContinuations) {
  const std::string text =
      "\xEF\xBB\xBF# syntax=docker/dockerfile:1\n"
      "ARG BASE=python:3.11\n"
      "# a comment\n"
      "FROM --platform=linux/amd64 docker.io/library/python:3.11-slim@" +
      kD0 +
      " AS build\r\n"
      "RUN --mount=type=cache,target=/root/.cache pip wheel .\n"
      "FROM \\\n"
      "  # comments inside a continued instruction are skipped\n"
      "\n"
      "  localhost:5000/team/app:1.2 \\\n"
      "  as final\n"
      "COPY --from=build /src /src\n"
      "COPY --from=0 /a /b\n"
      "COPY --chown=1:1 --from=busybox:1.36@" +
      kD1 +
      " /bin/busybox /bin/\n"
      "FROM final\n"
      "FROM scratch\n"
      "FROM $BASE\n"
      "from ${BASE} AS other\n"
      "FROM Not_An_Image:x\n"
      "FROM pyth\\\n"
      "on:3.11\n";
  const auto found = find_containerfile_images(text);
  ASSERT_EQ(found.images.size(), 3u);
  const auto& a = found.images[0];
  EXPECT_EQ(a.line, 4u);
  EXPECT_EQ(a.written, "docker.io/library/python:3.11-slim@" + kD0);
  EXPECT_EQ(text.substr(a.begin, a.end - a.begin), a.written);
  EXPECT_EQ(a.reference.name, "docker.io/library/python");
  EXPECT_EQ(a.reference.tag, "3.11-slim");
  EXPECT_EQ(a.reference.digest, kD0);
  EXPECT_EQ(a.platform, "linux/amd64");
  EXPECT_EQ(a.stage, "build");
  EXPECT_EQ(a.context, "FROM");
  const auto& b = found.images[1];
  EXPECT_EQ(b.line, 9u);
  EXPECT_EQ(b.written, "localhost:5000/team/app:1.2");
  EXPECT_EQ(text.substr(b.begin, b.end - b.begin), b.written);
  EXPECT_EQ(b.stage, "final");
  EXPECT_FALSE(b.reference.pinned());
  const auto& c = found.images[2];
  EXPECT_EQ(c.context, "COPY --from");
  EXPECT_EQ(c.line, 13u);
  EXPECT_EQ(text.substr(c.begin, c.end - c.begin), "busybox:1.36@" + kD1);

  std::vector<std::string> reasons;
  for (const auto& s : found.skipped)
    reasons.push_back(std::to_string(s.line) + " " + s.written + ": " + s.reason);
  ASSERT_EQ(found.skipped.size(), 6u) << ::testing::PrintToString(reasons);
  EXPECT_EQ(found.skipped[0].line, 14u);
  EXPECT_NE(found.skipped[0].reason.find("earlier stage final"), std::string::npos);
  EXPECT_NE(found.skipped[1].reason.find("scratch"), std::string::npos);
  EXPECT_EQ(found.skipped[2].written, "$BASE");
  EXPECT_NE(found.skipped[2].reason.find("build argument (ARG)"), std::string::npos);
  EXPECT_EQ(found.skipped[3].written, "${BASE}");
  EXPECT_EQ(found.skipped[4].line, 18u);
  EXPECT_NE(found.skipped[4].reason.find("Not_An_Image"), std::string::npos)
      << found.skipped[4].reason;
  EXPECT_EQ(found.skipped[5].line, 19u);
  EXPECT_NE(found.skipped[5].reason.find("split across continuation lines"), std::string::npos);
}

TEST(PinsImageRefsTest, EscapeDirectiveChangesTheContinuation) {
  const std::string text =
      "# escape=`\n"
      "FROM `\n"
      "  mcr.example.com/windows/servercore:ltsc2022\n"
      "RUN dir c:\\\n"
      "FROM python:3.12\n";
  const auto found = find_containerfile_images(text);
  ASSERT_EQ(found.images.size(), 2u);
  EXPECT_EQ(found.images[0].line, 3u);
  EXPECT_EQ(found.images[1].written, "python:3.12");
  EXPECT_EQ(found.images[1].line, 5u) << "a trailing \\ is no continuation after escape=`";
  EXPECT_TRUE(found.skipped.empty());
}

TEST(PinsImageRefsTest, ReplaceDigestRewritesOnlyTheReference) {
  const std::string text = "FROM python:3.11@" + kD0 + " AS base\nRUN true\nFROM busybox\n";
  const auto found = find_containerfile_images(text);
  ASSERT_EQ(found.images.size(), 2u);
  EXPECT_EQ(rewrite(text, found.images[0], kD1),
            "FROM python:3.11@" + kD1 + " AS base\nRUN true\nFROM busybox\n");
  EXPECT_EQ(rewrite(text, found.images[1], kD1),
            "FROM python:3.11@" + kD0 + " AS base\nRUN true\nFROM busybox@" + kD1 + "\n");

  auto bad = replace_digest(text, found.images[0], "sha256:abc");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("digest \"sha256:abc\""), std::string::npos)
      << bad.error().message;
  auto stale = replace_digest("FROM other:1\n" + text, found.images[0], kD1);
  ASSERT_FALSE(stale.has_value());
  EXPECT_NE(stale.error().message.find("read the file again"), std::string::npos)
      << stale.error().message;
}

TEST(PinsImageRefsTest, FindsPipelineImages) {
  const std::string text =
      "# the project's pipeline\n"
      "image: docker.io/library/python@" +
      kD0 +
      "\n"
      "jobs:\n"
      "  lint: {run: flake8 ., image: \"ghcr.io/org/lint:1\"}\n"
      "  test:\n"
      "    run: pytest\n"
      "    image: 'registry.example:5000/t/py:3.12'\n"
      "  other:\n"
      "    run: make\n"
      "  bad:\n"
      "    image: team/NotValid\n"
      "  listed:\n"
      "    image: [a, b]\n"
      "  escaped:\n"
      "    image: \"python\\x3a3\"\n";
  auto found = find_pipeline_images(text, ".pantry.yml");
  ASSERT_TRUE(found.has_value()) << found.error().message;
  ASSERT_EQ(found->images.size(), 3u);
  EXPECT_EQ(found->images[0].context, "image");
  EXPECT_EQ(found->images[0].line, 2u);
  EXPECT_EQ(found->images[1].context, "jobs.lint.image");
  EXPECT_EQ(found->images[2].context, "jobs.test.image");
  for (const auto& site : found->images)
    EXPECT_EQ(text.substr(site.begin, site.end - site.begin), site.written) << site.context;
  EXPECT_EQ(found->images[2].reference.name, "registry.example:5000/t/py");
  ASSERT_EQ(found->skipped.size(), 3u);
  EXPECT_EQ(found->skipped[0].line, 11u);
  EXPECT_NE(found->skipped[1].reason.find("jobs.listed.image is not a string"), std::string::npos);
  EXPECT_NE(found->skipped[2].reason.find("bytes differ from its value"), std::string::npos)
      << found->skipped[2].reason;

  const std::string pinned = rewrite(text, found->images[1], kD1);
  EXPECT_NE(pinned.find("image: \"ghcr.io/org/lint:1@" + kD1 + "\"}"), std::string::npos);
  auto again = find_pipeline_images(pinned, ".pantry.yml");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->images[1].reference.digest, kD1);

  auto not_yaml = find_pipeline_images("jobs: [\n", "ci/.pantry.yml");
  ASSERT_FALSE(not_yaml.has_value());
  EXPECT_TRUE(not_yaml.error().message.starts_with("ci/.pantry.yml:")) << not_yaml.error().message;
}

}  // namespace
}  // namespace pantry::orchestrator::pins
