#pragma once

// Helpers shared by the builder's unit tests: a Containerfile parsed and resolved, and a stage's
// image config built from it, failing the calling test on any error.

#include "pantry/orchestrator/builder/containerfile.h"
#include "pantry/orchestrator/builder/image_config.h"
#include "pantry/orchestrator/builder/substitute.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::builder::testing_util {

// A parsed file and its build scope, kept together (the scope points into the file). Both are
// null when parsing or the scope failed (the test has failed then).
struct parsed_build {
  std::unique_ptr<containerfile> file;
  std::unique_ptr<build_scope> scope;
};

inline parsed_build parse_build(std::string_view text, build_options options = {}) {
  parsed_build out;
  auto f = parse_containerfile(text, "Containerfile");
  EXPECT_TRUE(f) << f.error().message;
  if (!f) return out;
  out.file = std::make_unique<containerfile>(std::move(*f));
  auto s = build_scope::make(*out.file, std::move(options));
  EXPECT_TRUE(s) << s.error().message;
  if (s) out.scope = std::make_unique<build_scope>(std::move(*s));
  return out;
}

// The last stage of a file, resolved step by step and applied to an image config.
struct built_stage {
  parsed_build build;
  std::vector<resolved_step> steps;
  std::unique_ptr<stage_image> image;  // null when the file did not parse
};

// Builds the last stage of `text` on `start` with SOURCE_DATE_EPOCH `epoch`; the n-th layer step
// (from 0) gets the diff ID `layer(n)`.
inline built_stage build_stage(std::string_view text, oci_image_config start, std::int64_t epoch,
                               const std::function<cache::digest(std::size_t)>& layer,
                               build_options options = {}) {
  built_stage out;
  out.build = parse_build(text, std::move(options));
  if (!out.build.scope) return out;
  stage_scope scope(*out.build.scope, start.env);
  out.image = std::make_unique<stage_image>(std::move(start), epoch);
  std::size_t layers = 0;
  for (const auto& in : out.build.file->stages.back().instructions) {
    auto r = scope.resolve(in);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) break;
    std::optional<cache::digest> diff_id;
    if (makes_layer(r->step)) diff_id = layer(layers++);
    auto applied = out.image->apply(*r, diff_id);
    EXPECT_TRUE(applied) << in.text << ": " << applied.error().message;
    out.steps.push_back(std::move(*r));
  }
  return out;
}

}  // namespace pantry::orchestrator::builder::testing_util
