#include "pantry/orchestrator/builder/build.h"

#include "fake_backend.h"
#include "pantry/orchestrator/builder/image_config.h"
#include "tree_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_util::fake_backend;
using testing_util::read_tar;
using testing_util::set_mtime;
using testing_util::tar_entry;
using testing_util::write_file;

// 2023-11-14T22:13:20Z
constexpr std::int64_t kEpoch = 1700000000;

std::string outcomes(const std::vector<step_report>& steps) {
  std::string out;
  for (const auto& s : steps)
    out += (out.empty() ? "" : " ") + std::string(to_string(s.outcome));
  return out;
}

// The entries of a layer by path (a directory's without the '/' tar puts after it).
std::map<std::string, tar_entry> entries_of(const fake_backend& backend, const layer_ref& layer) {
  std::map<std::string, tar_entry> out;
  for (auto& e : read_tar(backend.blob(layer.digest))) {
    std::string path = e.path;
    if (path.ends_with('/')) path.pop_back();
    out[path] = e;
  }
  return out;
}

std::string names(const std::map<std::string, tar_entry>& entries) {
  std::string out;
  for (const auto& [path, e] : entries)
    out += (out.empty() ? "" : " ") + path;
  return out;
}

// A temporary directory with a build context and the fake's store, and the base image
// example/base: /etc/passwd (app 1000:1000), /etc/group (staff 50), /tmp (1777), /usr/bin and the
// merged-/usr link /bin -> usr/bin.
class BuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "pantry-build-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    context_ = root_ / "context";
    fs::create_directories(context_);
    ::chmod(context_.c_str(), 0755);
    backend_ = std::make_unique<fake_backend>(root_ / "store");

    const fs::path base = root_ / "base";
    fs::create_directories(base / "etc");
    fs::create_directories(base / "usr/bin");
    fs::create_directories(base / "tmp");
    ::chmod((base / "tmp").c_str(), 01777);
    fs::create_symlink("usr/bin", base / "bin");
    write_file(base / "etc/passwd",
               "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    write_file(base / "etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1000:\n");
    write_file(base / "usr/bin/python3", "#!python\n", 0755);
    base_ = backend_->add_image("example/base", base);
  }

  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  // Writes `content` at `rel` in the context (parents made 0755).
  void file(const std::string& rel, std::string_view content, mode_t mode = 0644) {
    const fs::path p = context_ / rel;
    fs::create_directories(p.parent_path());
    for (fs::path d = p.parent_path(); d != context_; d = d.parent_path())
      ::chmod(d.c_str(), 0755);
    write_file(p, content, mode);
  }

  build_request request(std::string text) {
    build_request r;
    r.context = context_;
    r.containerfile_text = std::move(text);
    r.containerfile_name = "Containerfile";
    r.tags = {"local/app:test"};
    r.source_date_epoch = kEpoch;
    r.scratch_dir = root_;
    return r;
  }

  result<build_result> run(const build_request& r) {
    backend_->clear_calls();
    build_events events;
    events.output = [this](std::string_view line) { output_.emplace_back(line); };
    events.step_done = [this](const step_report& s) { done_.push_back(s.text); };
    output_.clear();
    done_.clear();
    return build(r, *backend_, events);
  }

  // Builds `text`, failing the test on an error.
  build_result ok(const build_request& r) {
    auto b = run(r);
    EXPECT_TRUE(b) << b.error().message;
    return b ? *b : build_result{};
  }

  // The layer of the step whose text starts with `text`.
  std::map<std::string, tar_entry> layer_of(const build_result& b, std::string_view text) {
    for (const auto& s : b.steps) {
      if (s.text.starts_with(text) && s.layer) return entries_of(*backend_, *s.layer);
    }
    ADD_FAILURE() << "no layer step " << text;
    return {};
  }

  // The scratch directories the builds left behind (none: each build removes its own).
  std::vector<std::string> leftovers() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(root_)) {
      if (e.path().filename().string().starts_with("pantry-build-")) out.push_back(e.path());
    }
    return out;
  }

  fs::path root_;
  fs::path context_;
  std::string base_;
  std::unique_ptr<fake_backend> backend_;
  std::vector<std::string> output_;
  std::vector<std::string> done_;
};

std::string app_file(const std::string& base) {
  return "FROM " + base +
         "\n"
         "ENV APP_HOME=/app\n"
         "WORKDIR /app\n"
         "COPY requirements.txt .\n"
         "RUN pip install -r requirements.txt\n"
         "COPY src/ ./src/\n"
         "RUN python3 -m compileall src\n"
         "CMD [\"python3\", \"-m\", \"app\"]\n";
}

class AppBuildTest : public BuildTest {
 protected:
  void SetUp() override {
    BuildTest::SetUp();
    file("requirements.txt", "flask==3.0.0\n");
    file("src/app/__init__.py", "");
    file("src/app/__main__.py", "print('hello')\n");
    file("src/run.sh", "#!/bin/sh\n", 0755);
    file("README.md", "not copied\n");
    file("docs/index.md", "not copied either\n");
    file(".containerignore", "docs\n**/*.pyc\n");
    file("src/app/cached.pyc", "ignored\n");
    text_ = app_file(base_);
  }

  std::string text_;
};

TEST_F(AppBuildTest, BuildRunsEveryStepAndPushesTheImage) {
  const build_result b = ok(request(text_));
  EXPECT_EQ(outcomes(b.steps), "config config miss miss miss miss config");
  EXPECT_EQ(backend_->runs.size(), 2u);
  EXPECT_EQ(backend_->stores.size(), 2u);  // the two COPY layers
  ASSERT_EQ(backend_->pushes.size(), 1u);
  EXPECT_EQ(backend_->pushes[0].tag, "local/app:test");
  EXPECT_EQ(backend_->pushes[0].manifest_json, b.manifest_json);
  EXPECT_EQ(b.manifest_digest, cache::digest::of(b.manifest_json));
  EXPECT_EQ(done_.size(), 7u);
  EXPECT_THAT(output_, ElementsAre("running /bin/sh -c pip install -r requirements.txt",
                                   "running /bin/sh -c python3 -m compileall src"));
  EXPECT_THAT(leftovers(), ::testing::IsEmpty());

  // The RUN step gets the stage's layers, its environment and working directory.
  const run_request& pip = backend_->runs[0];
  EXPECT_EQ(pip.layers.size(), 2u);  // the base and the COPY
  EXPECT_EQ(pip.command.working_dir, "/app");
  EXPECT_THAT(pip.command.env, ElementsAre("PATH=/usr/bin:/bin", "APP_HOME=/app",
                                           "SOURCE_DATE_EPOCH=1700000000", "PIP_NO_CACHE_DIR=1"));
  EXPECT_EQ(pip.network, network_mode::isolated);
  EXPECT_EQ(pip.source_date_epoch, kEpoch);

  // The image: the base layer and four of its own, history for every step, created at the epoch.
  auto config = parse_image_config(b.config_json);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->created, "2023-11-14T22:13:20Z");
  EXPECT_EQ(config->diff_ids.size(), 5u);
  EXPECT_EQ(config->history.size(), 8u);
  EXPECT_TRUE(config->history[1].empty_layer) << config->history[1].created_by;
  EXPECT_FALSE(config->history[3].empty_layer) << config->history[3].created_by;
  EXPECT_EQ(config->working_dir, "/app");
  EXPECT_THAT(config->cmd, ElementsAre("python3", "-m", "app"));
  EXPECT_THAT(b.manifest_json, HasSubstr("application/vnd.oci.image.layer.v1.tar+gzip"));

  // COPY requirements.txt . under WORKDIR /app, which no layer made yet: /app is made 0755 0:0.
  auto req = layer_of(b, "COPY requirements.txt");
  EXPECT_EQ(names(req), "app app/requirements.txt");
  EXPECT_EQ(req["app"].perm, 0755u);
  EXPECT_EQ(req["app/requirements.txt"].content, "flask==3.0.0\n");
  EXPECT_EQ(req["app/requirements.txt"].perm, 0644u);
  EXPECT_EQ(req["app/requirements.txt"].uid, 0);
  EXPECT_EQ(req["app/requirements.txt"].mtime, kEpoch);

  // COPY src/ ./src/: the directory's contents, modes kept, the ignored .pyc left out.
  auto src = layer_of(b, "COPY src/");
  EXPECT_EQ(names(src),
            "app app/src app/src/app app/src/app/__init__.py "
            "app/src/app/__main__.py app/src/run.sh");
  EXPECT_EQ(src["app/src/run.sh"].perm, 0755u);
}

TEST_F(AppBuildTest, RebuildOfAnUnchangedContextHitsEveryStepAndRunsNothing) {
  const build_result first = ok(request(text_));
  const build_result second = ok(request(text_));
  EXPECT_EQ(outcomes(second.steps), "config config hit hit hit hit config");
  EXPECT_TRUE(backend_->runs.empty());
  EXPECT_TRUE(backend_->stores.empty());
  EXPECT_TRUE(backend_->materialized.empty());
  EXPECT_EQ(backend_->lookups.size(), 4u);
  EXPECT_EQ(second.manifest_digest, first.manifest_digest) << first.manifest_json << "\n"
                                                           << second.manifest_json;
  EXPECT_EQ(second.config_json, first.config_json);
}

TEST_F(AppBuildTest, ChangingOneCopiedFileMissesThatStepAndEveryLaterOne) {
  const build_result first = ok(request(text_));
  file("src/app/__main__.py", "print('changed')\n");
  const build_result second = ok(request(text_));
  EXPECT_EQ(outcomes(second.steps), "config config hit hit miss miss config");
  ASSERT_EQ(backend_->runs.size(), 1u);
  EXPECT_THAT(backend_->runs[0].command.argv,
              ElementsAre("/bin/sh", "-c", "python3 -m compileall src"));
  // Looked up: the two hits and the first miss; after a miss nothing is looked up.
  EXPECT_EQ(backend_->lookups.size(), 3u);
  EXPECT_NE(second.manifest_digest, first.manifest_digest);
  EXPECT_EQ(layer_of(second, "COPY src/")["app/src/app/__main__.py"].content, "print('changed')\n");
}

TEST_F(AppBuildTest, AddingOrRemovingACopiedFileMisses) {
  ok(request(text_));
  file("src/app/extra.py", "x = 1\n");
  EXPECT_EQ(outcomes(ok(request(text_)).steps), "config config hit hit miss miss config");
  fs::remove(context_ / "src/app/extra.py");
  // Back to the first content: the first build's layers are still recorded.
  EXPECT_EQ(outcomes(ok(request(text_)).steps), "config config hit hit hit hit config");
}

TEST_F(AppBuildTest, ModeChangeOfACopiedFileMisses) {
  ok(request(text_));
  ::chmod((context_ / "src/run.sh").c_str(), 0700);
  EXPECT_EQ(outcomes(ok(request(text_)).steps), "config config hit hit miss miss config");
}

TEST_F(AppBuildTest, IgnoredAndUncopiedFilesNeverChangeTheKey) {
  const build_result first = ok(request(text_));
  file("docs/index.md", "changed\n");
  file("docs/new.md", "new\n");
  file("src/app/cached.pyc", "changed\n");
  file("src/app/other.pyc", "new\n");
  file("README.md", "changed\n");
  const build_result second = ok(request(text_));
  EXPECT_EQ(outcomes(second.steps), "config config hit hit hit hit config");
  EXPECT_EQ(second.manifest_digest, first.manifest_digest);
}

TEST_F(AppBuildTest, ModificationTimesNeverChangeTheKey) {
  const build_result first = ok(request(text_));
  set_mtime(context_ / "src/app/__main__.py", kEpoch + 99999, 42);
  set_mtime(context_ / "src", 1);
  set_mtime(context_ / "requirements.txt", 12345);
  const build_result second = ok(request(text_));
  EXPECT_EQ(outcomes(second.steps), "config config hit hit hit hit config");
  EXPECT_EQ(second.manifest_digest, first.manifest_digest);
}

TEST_F(AppBuildTest, NoCacheRunsEveryStepWithoutLookupsAndGivesTheSameImage) {
  const build_result first = ok(request(text_));
  build_request r = request(text_);
  r.no_cache = true;
  const build_result second = ok(r);
  EXPECT_EQ(outcomes(second.steps), "config config miss miss miss miss config");
  EXPECT_TRUE(backend_->lookups.empty());
  EXPECT_EQ(backend_->runs.size(), 2u);
  EXPECT_EQ(backend_->stores.size(), 2u);
  EXPECT_EQ(second.manifest_digest, first.manifest_digest) << first.manifest_json << "\n"
                                                           << second.manifest_json;
}

TEST_F(AppBuildTest, AnEvictedLayerIsAMissAndEveryLaterLayerStepRuns) {
  const build_result first = ok(request(text_));
  ASSERT_TRUE(first.steps[3].layer);
  backend_->evict(*first.steps[3].layer);  // RUN pip install
  const build_result second = ok(request(text_));
  EXPECT_EQ(outcomes(second.steps), "config config hit miss miss miss config");
  EXPECT_EQ(backend_->runs.size(), 2u);
  EXPECT_EQ(second.manifest_digest, first.manifest_digest);
}

TEST_F(AppBuildTest, AChangedInstructionOrBuildArgMissesFromThereOn) {
  ok(request(text_));
  std::string changed = text_;
  changed.replace(changed.find("ENV APP_HOME=/app"), 17, "ENV APP_HOME=/srv");
  EXPECT_EQ(outcomes(ok(request(changed)).steps), "config config miss miss miss miss config");

  const std::string with_arg =
      "FROM " + base_ + "\nARG V=1\nCOPY requirements.txt /\nRUN echo $V\n";
  ok(request(with_arg));
  build_request r = request(with_arg);
  r.build_args = {{"V", "2"}};
  EXPECT_EQ(outcomes(ok(r).steps), "config hit miss");
  EXPECT_THAT(backend_->runs.at(0).command.env, ::testing::Contains("V=2"));
}

TEST_F(BuildTest, MultiStageBuildCopiesFromAStageAndBuildsOnlyWhatTheTargetNeeds) {
  file("src/main.c", "int main() {}\n");
  file("README.md", "readme\n");
  const std::string text = "FROM " + base_ +
                           " AS build\n"
                           "COPY src/ /src/\n"
                           "RUN cc -o /out/app /src/main.c\n"
                           "FROM scratch AS unused\n"
                           "COPY README.md /\n"
                           "FROM " +
                           base_ +
                           "\n"
                           "COPY --from=build /src/main.c /opt/\n"
                           "COPY --from=0 /ran/ /opt/ran/\n";
  const build_result b = ok(request(text));
  std::vector<std::size_t> stages;
  for (const auto& s : b.steps)
    stages.push_back(s.stage);
  EXPECT_THAT(stages, ElementsAre(0, 0, 2, 2));  // the unused stage is not built
  EXPECT_EQ(outcomes(b.steps), "miss miss miss miss");
  auto main = layer_of(b, "COPY --from=build");
  EXPECT_EQ(main["opt/main.c"].content, "int main() {}\n");
  EXPECT_EQ(main["opt"].perm, 0755u);
  auto ran = layer_of(b, "COPY --from=0");
  ASSERT_EQ(ran.size(), 3u) << names(ran);
  EXPECT_THAT(ran.rbegin()->second.content, HasSubstr("cc -o /out/app"));
  // The final image has the base and its two COPY layers, not the build stage's.
  EXPECT_EQ(parse_image_config(b.config_json)->diff_ids.size(), 3u);

  // Unchanged: COPY --from hits on the stage's key without materializing the stage.
  const build_result again = ok(request(text));
  EXPECT_EQ(outcomes(again.steps), "hit hit hit hit");
  EXPECT_TRUE(backend_->materialized.empty());
  EXPECT_EQ(again.manifest_digest, b.manifest_digest);

  // A change in the build stage: it runs, and so do the COPY --from steps that read it.
  file("src/main.c", "int main() { return 1; }\n");
  const build_result changed = ok(request(text));
  EXPECT_EQ(outcomes(changed.steps), "miss miss miss miss");

  // --target build: only that stage, and the image is its own.
  build_request r = request(text);
  r.target = "build";
  const build_result target = ok(r);
  EXPECT_EQ(outcomes(target.steps), "hit hit");
  EXPECT_EQ(parse_image_config(target.config_json)->diff_ids.size(), 3u);
}

TEST_F(BuildTest, CopyFromAnImageByDigest) {
  const fs::path tools = root_ / "tools";
  fs::create_directories(tools / "usr/local/bin");
  write_file(tools / "usr/local/bin/tool", "tool\n", 0755);
  const std::string image = backend_->add_image("example/tools", tools);
  const std::string text = "FROM scratch\nCOPY --from=" + image + " /usr/local/bin/tool /bin/\n";
  const build_result b = ok(request(text));
  auto layer = layer_of(b, "COPY --from=");
  EXPECT_EQ(names(layer), "bin bin/tool");
  EXPECT_EQ(layer["bin/tool"].perm, 0755u);
  EXPECT_EQ(outcomes(ok(request(text)).steps), "hit");
}

TEST_F(BuildTest, ChownByNameUsesTheStagesPasswdAndGroup) {
  file("f", "f\n");
  const std::string text = "FROM " + base_ +
                           "\n"
                           "COPY --chown=app:staff f /home/app/\n"
                           "COPY --chown=app f /owned-by-app\n"
                           "COPY --chown=1234 f /owned-by-1234\n"
                           "COPY --chown=7:staff f /mixed\n";
  const build_result b = ok(request(text));
  auto home = layer_of(b, "COPY --chown=app:staff");
  // Missing parents are made 0755 and owned by the --chown owner, as BuildKit makes them.
  EXPECT_EQ(names(home), "home home/app home/app/f");
  EXPECT_EQ(home["home/app/f"].uid, 1000);
  EXPECT_EQ(home["home/app/f"].gid, 50);
  EXPECT_EQ(home["home"].uid, 1000);
  EXPECT_EQ(home["home"].perm, 0755u);
  auto app = layer_of(b, "COPY --chown=app ");
  EXPECT_EQ(app["owned-by-app"].uid, 1000);
  EXPECT_EQ(app["owned-by-app"].gid, 1000);  // the user's primary group
  auto numeric = layer_of(b, "COPY --chown=1234");
  EXPECT_EQ(numeric["owned-by-1234"].uid, 1234);
  EXPECT_EQ(numeric["owned-by-1234"].gid, 1234);
  auto mixed = layer_of(b, "COPY --chown=7:staff");
  EXPECT_EQ(mixed["mixed"].uid, 7);
  EXPECT_EQ(mixed["mixed"].gid, 50);
  // The stage was materialized only for the name lookups and the destinations.
  ASSERT_EQ(backend_->materialized.size(), 4u);
  EXPECT_THAT(backend_->materialized[0], ElementsAre("/home/app", "/etc/passwd", "/etc/group"));
  EXPECT_THAT(backend_->materialized[2], ElementsAre("/owned-by-1234"));

  auto unknown = run(request("FROM " + base_ + "\nCOPY --chown=nobody f /f\n"));
  ASSERT_FALSE(unknown);
  EXPECT_THAT(unknown.error().message, StartsWith("Containerfile:2: COPY: --chown: "));
  EXPECT_THAT(unknown.error().message, HasSubstr("nobody"));
}

TEST_F(BuildTest, ChmodSetsTheModeOfFilesAndDirectories) {
  file("bin/tool", "#!/bin/sh\n", 0644);
  file("conf/a.conf", "a\n", 0666);
  const build_result b =
      ok(request("FROM scratch\n"
                 "COPY --chmod=0750 bin/tool /usr/local/bin/\n"
                 "COPY --chmod=755 conf /etc/conf\n"));
  auto tool = layer_of(b, "COPY --chmod=0750");
  EXPECT_EQ(tool["usr/local/bin/tool"].perm, 0750u);
  EXPECT_EQ(tool["usr/local/bin"].perm, 0755u);
  auto conf = layer_of(b, "COPY --chmod=755");
  EXPECT_EQ(conf["etc/conf"].perm, 0755u);
  EXPECT_EQ(conf["etc/conf/a.conf"].perm, 0755u);
}

// A tar archive of `files` (name -> content) through libarchive's filter `filter`.
void make_tar(const fs::path& out, const std::string& filter,
              const std::vector<std::pair<std::string, std::string>>& files) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (!filter.empty()) {
    ASSERT_EQ(archive_write_add_filter_by_name(a, filter.c_str()), ARCHIVE_OK) << filter;
  }
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const auto& [name, content] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    if (name.ends_with('/')) {
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, 0700);
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0640);
      archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    }
    archive_entry_set_uid(e, 33);
    archive_entry_set_gid(e, 34);
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST_F(BuildTest, AddUnpacksLocalTarArchivesOfEveryCompression) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"./", ""}, {"pkg/", ""}, {"pkg/mod.py", "x = 1\n"}, {"top.txt", "top\n"}};
  make_tar(context_ / "plain.tar", "", files);
  make_tar(context_ / "bundle.tar.gz", "gzip", files);
  make_tar(context_ / "bundle.tar.bz2", "bzip2", files);
  make_tar(context_ / "bundle.tar.xz", "xz", files);
  make_tar(context_ / "bundle.tar.zst", "zstd", files);
  file("not-an-archive.gz", "just text\n");
  const build_result b =
      ok(request("FROM scratch\n"
                 "ADD plain.tar /plain\n"
                 "ADD bundle.tar.gz /gz/\n"
                 "ADD bundle.tar.bz2 /bz2\n"
                 "ADD bundle.tar.xz /xz\n"
                 "ADD bundle.tar.zst /zst\n"
                 "ADD not-an-archive.gz /copied/\n"));
  const std::vector<std::pair<std::string, std::string>> added = {{"plain", "plain.tar"},
                                                                  {"gz", "bundle.tar.gz"},
                                                                  {"bz2", "bundle.tar.bz2"},
                                                                  {"xz", "bundle.tar.xz"},
                                                                  {"zst", "bundle.tar.zst"}};
  for (const auto& [dir, source] : added) {
    auto layer = layer_of(b, "ADD " + source);
    EXPECT_EQ(names(layer), dir + " " + dir + "/pkg " + dir + "/pkg/mod.py " + dir + "/top.txt")
        << source;
    EXPECT_EQ(layer[dir + "/pkg/mod.py"].content, "x = 1\n") << source;
    EXPECT_EQ(layer[dir + "/pkg/mod.py"].uid, 33) << source;  // the archive's owners
    EXPECT_EQ(layer[dir + "/pkg/mod.py"].perm, 0640u) << source;
    EXPECT_EQ(layer[dir + "/pkg"].perm, 0700u) << source;
    EXPECT_EQ(layer[dir].perm, 0755u) << source;  // made for the archive, not its "./"
  }
  auto copied = layer_of(b, "ADD not-an-archive.gz");
  EXPECT_EQ(copied["copied/not-an-archive.gz"].content, "just text\n");

  // COPY never unpacks.
  auto copy = ok(request("FROM scratch\nCOPY bundle.tar.gz /\n"));
  EXPECT_EQ(names(layer_of(copy, "COPY")), "bundle.tar.gz");

  // --chown applies to what an archive holds, --chmod does not (as in BuildKit); the
  // destination is made by --chown's owner.
  auto owned = ok(request("FROM scratch\nADD --chown=5:6 --chmod=0600 bundle.tar.gz /o/\n"));
  auto o = layer_of(owned, "ADD");
  EXPECT_EQ(o["o/top.txt"].uid, 5);
  EXPECT_EQ(o["o/top.txt"].gid, 6);
  EXPECT_EQ(o["o/top.txt"].perm, 0640u);
  EXPECT_EQ(o["o"].uid, 5);
}

TEST_F(BuildTest, AddRefusesArchiveEntriesOutsideTheDestination) {
  make_tar(context_ / "evil.tar", "", {{"../escape.txt", "x"}});
  auto b = run(request("FROM scratch\nADD evil.tar /d/\n"));
  ASSERT_FALSE(b);
  EXPECT_THAT(b.error().message, StartsWith("Containerfile:2: ADD: archive \"evil.tar\": "));
  EXPECT_THAT(b.error().message, HasSubstr("leaves the destination"));
}

TEST_F(BuildTest, GlobsMatchPerPathComponentAsDockerDoes) {
  file("src/a.py", "a\n");
  file("src/b.py", "b\n");
  file("src/c.txt", "c\n");
  file("src/sub/d.py", "d\n");
  file("lib/x1.txt", "1\n");
  file("lib/x2.txt", "2\n");
  file("lib/xa.txt", "a\n");
  const build_result b =
      ok(request("FROM scratch\n"
                 "COPY src/*.py /py/\n"
                 "COPY lib/x[0-9].txt lib/x?.none /nums/\n"
                 "COPY */*.txt /txt/\n"));
  EXPECT_EQ(names(layer_of(b, "COPY src/*.py")), "py py/a.py py/b.py");
  EXPECT_EQ(names(layer_of(b, "COPY lib/")), "nums nums/x1.txt nums/x2.txt");
  EXPECT_EQ(names(layer_of(b, "COPY */*.txt")), "txt txt/c.txt txt/x1.txt txt/x2.txt txt/xa.txt");

  auto none = run(request("FROM scratch\nCOPY src/*.rs /rs/\n"));
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message,
              StartsWith("Containerfile:2: COPY: no source files were specified"));

  auto bad = run(request("FROM scratch\nCOPY src/[a-.py /x/\n"));
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, StartsWith("Containerfile:2: COPY: bad pattern"));
}

TEST_F(BuildTest, MissingAndEscapingSourcesNameTheFileAndLine) {
  file("src/app.py", "a\n");
  auto missing = run(request("FROM scratch\n\nCOPY src/app.py src/missing.py /app/\n"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message,
            "Containerfile:3: COPY: cannot find \"src/missing.py\" in the build context");
  EXPECT_TRUE(missing.error().is(errc::not_found));

  auto escaping = run(request("FROM scratch\nADD ../outside.txt /\n"));
  ASSERT_FALSE(escaping);
  EXPECT_THAT(escaping.error().message,
              StartsWith("Containerfile:2: ADD: \"../outside.txt\" is outside the build context"));
  EXPECT_TRUE(escaping.error().is(errc::invalid_argument));

  // An absolute source is relative to the context; src/../.. is outside it.
  EXPECT_TRUE(run(request("FROM scratch\nCOPY /src/app.py /\n")));
  auto up = run(request("FROM scratch\nCOPY src/../../x /\n"));
  ASSERT_FALSE(up);
  EXPECT_THAT(up.error().message, HasSubstr("is outside the build context"));

  file(".dockerignore", "src/app.py\n");
  auto ignored = run(request("FROM scratch\nCOPY src/app.py /\n"));
  ASSERT_FALSE(ignored);
  EXPECT_THAT(ignored.error().message, HasSubstr("(or the ignore file excludes it)"));
}

TEST_F(BuildTest, SymlinksAreCopiedAsLinksAndNeverFollowedOutOfTheContext) {
  file("src/app.py", "a\n");
  fs::create_symlink("app.py", context_ / "src/current");
  fs::create_symlink("/etc/shadow", context_ / "src/absolute");
  fs::create_symlink("../../../../etc/passwd", context_ / "src/up");
  fs::create_symlink("src/app.py", context_ / "named");
  fs::create_symlink("/etc/hostname", context_ / "outside");
  const build_result b = ok(request("FROM scratch\nCOPY src /s/\nCOPY named /n\n"));
  auto s = layer_of(b, "COPY src");
  EXPECT_EQ(s["s/current"].type, AE_IFLNK);
  EXPECT_EQ(s["s/current"].symlink, "app.py");
  EXPECT_EQ(s["s/absolute"].symlink, "/etc/shadow");
  EXPECT_EQ(s["s/up"].symlink, "../../../../etc/passwd");
  // A link named as a source is followed, inside the context.
  auto n = layer_of(b, "COPY named");
  EXPECT_EQ(n["n"].type, AE_IFREG);
  EXPECT_EQ(n["n"].content, "a\n");
  // /etc/hostname is looked for in the context, where there is none.
  auto outside = run(request("FROM scratch\nCOPY outside /o\n"));
  ASSERT_FALSE(outside);
  EXPECT_THAT(outside.error().message, HasSubstr("cannot find \"outside\""));
}

TEST_F(BuildTest, DestinationsFollowDockersRules) {
  file("a", "a\n");
  file("b", "b\n");
  const build_result b = ok(request("FROM " + base_ +
                                    "\n"
                                    "COPY a /bin/\n"        // through the /bin -> usr/bin link
                                    "COPY a /tmp/a\n"       // /tmp keeps its 1777
                                    "COPY a /usr/bin\n"     // an existing directory: into it
                                    "COPY a /renamed\n"     // a new file name
                                    "COPY a b /several/\n"  // several sources, a directory
                                    "WORKDIR /w\nCOPY a b ./\n"));
  EXPECT_EQ(names(layer_of(b, "COPY a /bin/")), "usr usr/bin usr/bin/a");
  auto tmp = layer_of(b, "COPY a /tmp/a");
  EXPECT_EQ(tmp["tmp"].perm, 01777u);
  EXPECT_EQ(names(layer_of(b, "COPY a /usr/bin")), "usr usr/bin usr/bin/a");
  EXPECT_EQ(names(layer_of(b, "COPY a /renamed")), "renamed");
  EXPECT_EQ(names(layer_of(b, "COPY a b /several/")), "several several/a several/b");
  EXPECT_EQ(names(layer_of(b, "COPY a b ./")), "w w/a w/b");

  auto several = run(request("FROM scratch\nCOPY a b /file\n"));
  ASSERT_FALSE(several);
  EXPECT_THAT(several.error().message,
              StartsWith("Containerfile:2: COPY: with more than one source file (2), the "
                         "destination must be a directory and end with a /"));

  auto over_dir = run(request("FROM " + base_ + "\nCOPY a /usr/bin/python3/\n"));
  ASSERT_FALSE(over_dir);
  EXPECT_THAT(over_dir.error().message, HasSubstr("it is a file in the image"));
}

TEST_F(BuildTest, RunStepsGetTheirNetworkAndFailuresNameTheLine) {
  const build_result b = ok(request("FROM " + base_ + "\nRUN --network=host pip download x\n"));
  ASSERT_EQ(backend_->runs.size(), 1u);
  EXPECT_EQ(backend_->runs[0].network, network_mode::host);
  EXPECT_EQ(b.steps[0].outcome, step_outcome::miss);

  auto failed = run(request("FROM " + base_ + "\nENV A=1\nRUN make && exit 1\n"));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message,
            "Containerfile:3: RUN: the command /bin/sh -c make && exit 1 exited with 1");
  EXPECT_THAT(leftovers(), ::testing::IsEmpty());
}

TEST_F(BuildTest, BadRequestsAreRefused) {
  build_request r = request("FROM scratch\nENV A=1\n");
  r.tags.clear();
  EXPECT_FALSE(run(r));
  r = request("FROM scratch AS one\nENV A=1\n");
  r.target = "two";
  EXPECT_FALSE(run(r));
  r = request("FROM example/base:latest\n");
  auto unpinned = run(r);
  ASSERT_FALSE(unpinned);
  EXPECT_THAT(unpinned.error().message, StartsWith("Containerfile:1: FROM: "));
}

TEST_F(BuildTest, AddOfAUrlIsRefusedWithTheLine) {
  auto b = run(request("FROM scratch\nENV V=1\nADD https://example.com/x.tar.gz /\n"));
  ASSERT_FALSE(b);
  EXPECT_THAT(b.error().message, StartsWith("Containerfile:3: ADD: "));
  EXPECT_TRUE(backend_->lookups.empty());
}

TEST_F(BuildTest, ADockerFormatBaseGivesAnAllOciManifest) {
  backend_->images[base_].layers[0].media_type =
      "application/vnd.docker.image.rootfs.diff.tar.gzip";
  file("a", "a\n");
  const build_result b = ok(request("FROM " + base_ + "\nCOPY a /\n"));
  EXPECT_THAT(b.manifest_json, ::testing::Not(HasSubstr("vnd.docker")));
  ASSERT_EQ(backend_->pushes.size(), 1u);
  // The backend gets the layers as the registry lists them.
  EXPECT_EQ(backend_->pushes[0].layers[0].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip");
}

TEST_F(BuildTest, EveryTagIsPushedAndUnusedBuildArgsAreReported) {
  build_request r = request("FROM scratch\nARG USED\nENV A=$USED\n");
  r.tags = {"local/a:1", "local/a:latest"};
  r.build_args = {{"USED", "x"}, {"UNUSED", "y"}};
  const build_result b = ok(r);
  ASSERT_EQ(backend_->pushes.size(), 2u);
  EXPECT_EQ(backend_->pushes[1].tag, "local/a:latest");
  EXPECT_THAT(b.unused_build_args, ElementsAre("UNUSED"));
  EXPECT_EQ(outcomes(b.steps), "config config");
  EXPECT_TRUE(backend_->lookups.empty());  // config-only steps look nothing up
}

}  // namespace
}  // namespace pantry::orchestrator::builder
