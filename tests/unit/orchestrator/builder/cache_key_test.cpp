#include "pantry/orchestrator/builder/cache_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

cache::digest d(std::string_view text) {
  return cache::digest::of(text);
}

std::vector<source_file> listing() {
  source_file dir{"src", file_type::directory, 0755, 0, 0, {}, {}, 0, 0};
  source_file file{"src/app.py", file_type::regular, 0644, 1000, 1000, d("print(1)\n"), {}, 0, 0};
  source_file link{"src/current", file_type::symlink, 0777, 0, 0, {}, "app.py", 0, 0};
  source_file hard{"src/same.py", file_type::hardlink, 0644, 1000, 1000, {}, "src/app.py", 0, 0};
  source_file dev{"dev/null", file_type::char_device, 0666, 0, 0, {}, {}, 1, 3};
  return {dir, file, link, hard, dev};
}

cache::digest digest_of(std::vector<source_file> files) {
  auto r = sources_digest(std::move(files));
  EXPECT_TRUE(r) << r.error().message;
  return r ? *r : cache::digest();
}

// ---- sources ------------------------------------------------------------------------------------
TEST(CacheKeyTest, SourcesDigestDoesNotDependOnTheListingOrder) {
  auto files = listing();
  const cache::digest first = digest_of(files);
  std::reverse(files.begin(), files.end());
  EXPECT_EQ(digest_of(files), first);
  std::rotate(files.begin(), files.begin() + 2, files.end());
  EXPECT_EQ(digest_of(files), first);
}

TEST(CacheKeyTest, SourcesDigestChangesWithEveryFieldThatMatters) {
  const cache::digest base = digest_of(listing());
  auto changed = [&](auto change) {
    auto files = listing();
    change(files);
    return digest_of(files) != base;
  };
  EXPECT_TRUE(changed([](auto& f) { f[1].path = "src/main.py"; }));
  EXPECT_TRUE(changed([](auto& f) { f[1].mode = 0755; }));
  EXPECT_TRUE(changed([](auto& f) { f[1].mode = 04644; }));
  EXPECT_TRUE(changed([](auto& f) { f[1].uid = 0; }));
  EXPECT_TRUE(changed([](auto& f) { f[1].gid = 0; }));
  EXPECT_TRUE(changed([](auto& f) { f[1].content = d("print(2)\n"); }));
  EXPECT_TRUE(changed([](auto& f) { f[2].link_target = "main.py"; }));
  EXPECT_TRUE(changed([](auto& f) { f[3].link_target = "src/other.py"; }));
  EXPECT_TRUE(changed([](auto& f) { f[4].device_minor = 5; }));
  EXPECT_TRUE(changed([](auto& f) { f[4].type = file_type::block_device; }));
  EXPECT_TRUE(changed([](auto& f) { f[0].type = file_type::fifo; }));
  EXPECT_TRUE(changed([](auto& f) { f.pop_back(); }));
  // What a type does not have, and the file type bits of a mode, are not part of it.
  EXPECT_FALSE(changed([](auto& f) { f[0].content = d("x"); }));
  EXPECT_FALSE(changed([](auto& f) { f[1].link_target = "x"; }));
  EXPECT_FALSE(changed([](auto& f) { f[1].device_major = 9; }));
  EXPECT_FALSE(changed([](auto& f) { f[1].mode |= 0100000; }));
}

TEST(CacheKeyTest, SourcesDigestFieldsCannotRunIntoEachOther) {
  source_file a{"ab", file_type::symlink, 0777, 0, 0, {}, "c", 0, 0};
  source_file b{"a", file_type::symlink, 0777, 0, 0, {}, "bc", 0, 0};
  EXPECT_NE(digest_of({a}), digest_of({b}));
  EXPECT_NE(digest_of({}), digest_of({a}));
}

TEST(CacheKeyTest, SourcesDigestRefusesBrokenListings) {
  auto files = listing();
  files.push_back(files[1]);
  auto twice = sources_digest(files);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().message, "sources digest: \"src/app.py\" is listed twice");
  files = listing();
  files[0].path.clear();
  EXPECT_THAT(sources_digest(files).error().message, HasSubstr("empty path"));
}

TEST(CacheKeyTest, SourcesDigestIsStable) {
  // Pinned: a change here changes every cached COPY's key; bump kCacheKeyFormat with it.
  EXPECT_EQ(digest_of(listing()).str(),
            "sha256:1a19f2e04658a18d2992fc5567df4d0fb7dcfaf273ad796f661c73cea8ac0907");
}

// ---- canonical forms ----------------------------------------------------------------------------
// The steps of a file's only stage, resolved on an image without environment.
struct resolved {
  std::unique_ptr<containerfile> file;
  std::unique_ptr<build_scope> scope;
  std::vector<resolved_step> steps;
};

resolved resolve(std::string_view text, build_options options = {}) {
  resolved out;
  auto f = parse_containerfile(text, "Containerfile");
  EXPECT_TRUE(f) << f.error().message;
  if (!f) return out;
  out.file = std::make_unique<containerfile>(std::move(*f));
  auto s = build_scope::make(*out.file, std::move(options));
  EXPECT_TRUE(s) << s.error().message;
  if (!s) return out;
  out.scope = std::make_unique<build_scope>(std::move(*s));
  stage_scope scope(*out.scope, {});
  for (const auto& in : out.file->stages.back().instructions) {
    auto r = scope.resolve(in);
    EXPECT_TRUE(r) << r.error().message;
    if (r) out.steps.push_back(std::move(*r));
  }
  return out;
}

std::vector<std::string> canonical_forms(std::string_view text) {
  std::vector<std::string> out;
  for (const auto& s : resolve(text).steps)
    out.push_back(canonical_form(s.step));
  return out;
}

TEST(CacheKeyTest, CanonicalFormOfEveryInstruction) {
  const auto forms = canonical_forms(
      "FROM scratch AS base\n"
      "FROM scratch\n"
      "ARG V=1 W\n"
      "RUN --network=host echo \"$V\"\n"
      "RUN [\"a\", \"b\"]\n"
      "COPY --from=base --chown=1:2 --chmod=644 a b/ /dst/\n"
      "COPY x /y\n"
      "ADD --chown=app a.tar /opt\n"
      "ENV A=$V B=\"two words\"\n"
      "LABEL k=v\n"
      "WORKDIR /w\n"
      "USER app\n"
      "MAINTAINER me\n"
      "ENTRYPOINT [\"/e\"]\n"
      "CMD run it\n"
      "EXPOSE 80 53/udp\n"
      "SHELL [\"/bin/bash\", \"-c\"]\n"
      "VOLUME /data\n"
      "STOPSIGNAL SIGINT\n"
      "HEALTHCHECK --interval=30s --retries=2 CMD check\n"
      "HEALTHCHECK NONE\n");
  EXPECT_EQ(forms, (std::vector<std::string>{
                       R"(["ARG",["V","W"]])",
                       R"(["RUN","host","shell",["echo \"$V\""]])",
                       R"(["RUN","isolated","exec",["a","b"]])",
                       R"(["COPY","stage:0","1:2","0644",["a","b/"],"/dst/"])",
                       R"(["COPY","","","",["x"],"/y"])",
                       R"(["ADD","app","",["a.tar"],"/opt"])",
                       R"(["ENV",[["A","1"],["B","two words"]]])",
                       R"(["LABEL",[["k","v"]]])",
                       R"(["WORKDIR","/w"])",
                       R"(["USER","app"])",
                       R"(["MAINTAINER","me"])",
                       R"(["ENTRYPOINT","exec",["/e"]])",
                       R"(["CMD","shell",["run it"]])",
                       R"(["EXPOSE",["53/udp","80/tcp"]])",
                       R"(["SHELL",["/bin/bash","-c"]])",
                       R"(["VOLUME",["/data"]])",
                       R"(["STOPSIGNAL","SIGINT"])",
                       R"(["HEALTHCHECK",false,"shell",["check"],30000000000,0,0,0,2])",
                       R"(["HEALTHCHECK",true,"shell",[],0,0,0,0,0])",
                   }));
}

TEST(CacheKeyTest, CanonicalFormOfCopyFromAnImage) {
  const auto forms = canonical_forms("FROM scratch\nCOPY --from=busybox@" + std::string(kDigest) +
                                     " /bin/busybox /bin/\n");
  ASSERT_EQ(forms.size(), 1u);
  EXPECT_EQ(forms[0], R"(["COPY","image:busybox@)" + std::string(kDigest) +
                          R"(","","",["/bin/busybox"],"/bin/"])");
}

TEST(CacheKeyTest, CanonicalFormIgnoresLineAndText) {
  const auto a = resolve("FROM scratch\nRUN  true\n");
  const auto b = resolve("FROM scratch\n\n\nrun true\n");
  ASSERT_EQ(a.steps.size(), 1u);
  ASSERT_EQ(b.steps.size(), 1u);
  EXPECT_EQ(canonical_form(a.steps[0].step), canonical_form(b.steps[0].step));
  const cache::digest parent = scratch_base_key();
  EXPECT_EQ(step_key(parent, a.steps[0], std::nullopt).value(),
            step_key(parent, b.steps[0], std::nullopt).value());
}

// ---- step keys ----------------------------------------------------------------------------------
TEST(CacheKeyTest, BaseKeys) {
  const cache::digest python = image_base_key(d("python manifest"));
  EXPECT_EQ(python, image_base_key(d("python manifest")));
  EXPECT_NE(python, image_base_key(d("other manifest")));
  EXPECT_NE(python, scratch_base_key());
  EXPECT_EQ(scratch_base_key(), scratch_base_key());
  // Pinned (python's hashlib over the documented fields).
  EXPECT_EQ(python.str(),
            "sha256:6aed41914c3ffe9cf219f4fc65d6f3eb648e6e7e64dcd116e581e85ddc116b9a");
}

TEST(CacheKeyTest, CopyFromSourcesDigestsDifferByRoleAndAreStable) {
  const cache::digest m = d("python manifest");
  EXPECT_EQ(stage_sources_digest(m).str(),
            "sha256:c0725bfc8d0f10bed4552bc91fa351a3e909e84eec5a4860d8309d69726349b1");
  EXPECT_EQ(image_sources_digest(m).str(),
            "sha256:1f69e5bfbb75bd158b7177bac47d20a515173be6d17de2b878af347d6ccf3380");
  EXPECT_NE(stage_sources_digest(m), image_base_key(m));
  EXPECT_NE(stage_sources_digest(m), stage_sources_digest(d("other")));
}

TEST(CacheKeyTest, StepKeyChainsAndCountsBuildArgs) {
  const auto r = resolve("FROM scratch\nARG V\nRUN make\n");
  ASSERT_EQ(r.steps.size(), 2u);
  const resolved_step& run = r.steps[1];
  const cache::digest parent = scratch_base_key();
  const cache::digest key = step_key(parent, run, std::nullopt).value();
  EXPECT_NE(step_key(image_base_key(d("x")), run, std::nullopt).value(), key);

  resolved_step with_arg = run;
  with_arg.build_args_used = {{"V", "1"}};
  const cache::digest k1 = step_key(parent, with_arg, std::nullopt).value();
  EXPECT_NE(k1, key);
  with_arg.build_args_used = {{"V", "2"}};
  EXPECT_NE(step_key(parent, with_arg, std::nullopt).value(), k1);
  // An unset arg and an empty one differ.
  with_arg.build_args_used = {{"V", ""}};
  EXPECT_NE(step_key(parent, with_arg, std::nullopt).value(), key);
  // The order they are given in does not matter.
  resolved_step two = run;
  two.build_args_used = {{"A", "1"}, {"B", "2"}};
  resolved_step swapped = run;
  swapped.build_args_used = {{"B", "2"}, {"A", "1"}};
  EXPECT_EQ(step_key(parent, two, std::nullopt).value(),
            step_key(parent, swapped, std::nullopt).value());
}

TEST(CacheKeyTest, CopyAndAddNeedTheirSourcesDigest) {
  const auto r = resolve("FROM scratch\nCOPY a /b\nADD c /d\nRUN true\n");
  ASSERT_EQ(r.steps.size(), 3u);
  const cache::digest parent = scratch_base_key();
  auto missing = step_key(parent, r.steps[0], std::nullopt);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::invalid_argument));
  EXPECT_EQ(missing.error().message,
            "cache key of COPY at line 2: the digest of its sources is missing");
  EXPECT_FALSE(step_key(parent, r.steps[1], std::nullopt));
  EXPECT_EQ(step_key(parent, r.steps[2], d("x")).error().message,
            "cache key of RUN at line 4: only COPY and ADD take a digest of sources");
  const cache::digest one = step_key(parent, r.steps[0], d("sources 1")).value();
  EXPECT_NE(step_key(parent, r.steps[0], d("sources 2")).value(), one);
  EXPECT_EQ(step_key(parent, r.steps[0], d("sources 1")).value(), one);
}

TEST(CacheKeyTest, ABuildArgMissesTheCacheFromItsFirstUseOn) {
  const std::string text =
      "FROM scratch\n"
      "ARG VERSION\n"
      "COPY app /app\n"
      "ENV V=$VERSION\n"
      "RUN build\n";
  auto keys = [&](std::string version) {
    build_options o;
    o.build_args = {{"VERSION", version}};
    const auto r = resolve(text, o);
    std::vector<cache::digest> out;
    cache::digest parent = scratch_base_key();
    for (const auto& s : r.steps) {
      const bool copies = std::holds_alternative<copy_instruction>(s.step.body);
      parent = step_key(parent, s, copies ? std::optional(d("app")) : std::nullopt).value();
      out.push_back(parent);
    }
    return out;
  };
  const auto one = keys("1");
  const auto two = keys("2");
  ASSERT_EQ(one.size(), 4u);
  ASSERT_EQ(two.size(), 4u);
  EXPECT_EQ(one[0], two[0]);  // ARG VERSION
  EXPECT_EQ(one[1], two[1]);  // COPY does not use it
  EXPECT_NE(one[2], two[2]);  // ENV V=$VERSION does
  EXPECT_NE(one[3], two[3]);  // and everything after it
}

TEST(CacheKeyTest, StepKeyIsStable) {
  // Pinned: a change here invalidates every cache; bump kCacheKeyFormat with it.
  const auto r = resolve("FROM scratch\nARG V=1\nRUN echo $V\n");
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(scratch_base_key().str(),
            "sha256:3df67c47ee79af2e6b2794e526690f38b60008fff64e7023a8f61f90e93dc79e");
  EXPECT_EQ(step_key(scratch_base_key(), r.steps[1], std::nullopt).value().str(),
            "sha256:8dc37c6150ad5e2568f46a5c6831aa5c44382013e43dc6f752a8ae556df0d3a6");
}

}  // namespace
}  // namespace pantry::orchestrator::builder
