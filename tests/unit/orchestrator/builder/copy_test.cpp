#include "pantry/orchestrator/builder/copy.h"

#include "tree_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing_util::slurp;
using testing_util::write_file;

// ---- globs --------------------------------------------------------------------------------------

struct glob_case {
  std::string_view pattern;
  std::string_view name;
  bool match;
  bool bad;
};

// Go's own table for path.Match (src/path/match_test.go).
constexpr glob_case kGlobCases[] = {
    {"abc", "abc", true, false},
    {"*", "abc", true, false},
    {"*c", "abc", true, false},
    {"a*", "a", true, false},
    {"a*", "abc", true, false},
    {"a*", "ab/c", false, false},
    {"a*/b", "abc/b", true, false},
    {"a*/b", "a/c/b", false, false},
    {"a*b*c*d*e*/f", "axbxcxdxe/f", true, false},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false},
    {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false},
    {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false},
    {"a*b?c*x", "abxbbxdbxebxczzx", true, false},
    {"a*b?c*x", "abxbbxdbxebxczzy", false, false},
    {"ab[c]", "abc", true, false},
    {"ab[b-d]", "abc", true, false},
    {"ab[e-g]", "abc", false, false},
    {"ab[^c]", "abc", false, false},
    {"ab[^b-d]", "abc", false, false},
    {"ab[^e-g]", "abc", true, false},
    {"a\\*b", "a*b", true, false},
    {"a\\*b", "ab", false, false},
    {"a?b", "a\u263Ab", true, false},
    {"a[^a]b", "a\u263Ab", true, false},
    {"a???b", "a\u263Ab", false, false},
    {"a[^a][^a][^a]b", "a\u263Ab", false, false},
    {"[a-\u03B6]*", "\u03B1", true, false},
    {"*[a-\u03B6]", "A", false, false},
    {"a?b", "a/b", false, false},
    {"a*b", "a/b", false, false},
    {"[\\]a]", "]", true, false},
    {"[\\-]", "-", true, false},
    {"[x\\-]", "x", true, false},
    {"[x\\-]", "-", true, false},
    {"[x\\-]", "z", false, false},
    {"[\\-x]", "x", true, false},
    {"[\\-x]", "-", true, false},
    {"[\\-x]", "a", false, false},
    {"[]a]", "]", false, true},
    {"[-]", "-", false, true},
    {"[x-]", "x", false, true},
    {"[x-]", "-", false, true},
    {"[x-]", "z", false, true},
    {"[-x]", "x", false, true},
    {"[-x]", "-", false, true},
    {"[-x]", "a", false, true},
    {"\\", "a", false, true},
    {"[a-b-c]", "a", false, true},
    {"[", "a", false, true},
    {"[^", "a", false, true},
    {"[^bc", "a", false, true},
    {"a[", "a", false, true},
    {"a[", "ab", false, true},
    {"a[", "x", false, true},
    {"a/b[", "x", false, true},
    {"*x", "xxx", true, false},
};

TEST(CopyTest, GlobsMatchAsGoPathMatch) {
  for (const auto& c : kGlobCases) {
    auto m = match_glob(c.pattern, c.name);
    if (c.bad) {
      EXPECT_FALSE(m) << c.pattern << " / " << c.name << " should be a bad pattern";
      if (!m) {
        EXPECT_THAT(m.error().message, HasSubstr("bad pattern"));
      }
      continue;
    }
    ASSERT_TRUE(m) << c.pattern << " / " << c.name << ": " << m.error().message;
    EXPECT_EQ(*m, c.match) << c.pattern << " / " << c.name;
  }
}

TEST(CopyTest, HasGlobSeesUnescapedWildcardsOnly) {
  EXPECT_TRUE(has_glob("*.py"));
  EXPECT_TRUE(has_glob("a?"));
  EXPECT_TRUE(has_glob("[ab]"));
  EXPECT_FALSE(has_glob("plain/path.txt"));
  EXPECT_FALSE(has_glob("a\\*b"));
}

// ---- destinations and owners --------------------------------------------------------------------

TEST(CopyTest, DestinationsAreAbsoluteUnderTheWorkdir) {
  auto d = make_destination("src/", "/app");
  EXPECT_EQ(d.path, "/app/src");
  EXPECT_TRUE(d.directory);
  d = make_destination(".", "/app");
  EXPECT_EQ(d.path, "/app");
  EXPECT_TRUE(d.directory);
  d = make_destination("/opt/x", "/app");
  EXPECT_EQ(d.path, "/opt/x");
  EXPECT_FALSE(d.directory);
  d = make_destination("x", "");
  EXPECT_EQ(d.path, "/x");
  d = make_destination("../../etc/", "/app");
  EXPECT_EQ(d.path, "/etc");
}

TEST(CopyTest, ChownResolvesAsBuildKitDoes) {
  const std::string passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
  const std::string group = "root:x:0:\nstaff:x:50:\n";
  auto check = [&](std::string_view chown, owner expected) {
    auto o = resolve_chown(chown, passwd, group);
    ASSERT_TRUE(o) << chown << ": " << o.error().message;
    EXPECT_EQ(o->uid, expected.uid) << chown;
    EXPECT_EQ(o->gid, expected.gid) << chown;
  };
  check("1234", {1234, 1234});
  check("1234:5", {1234, 5});
  check("app", {1000, 1001});
  check("app:staff", {1000, 50});
  check("0:staff", {0, 50});
  EXPECT_FALSE(resolve_chown("ghost", passwd, group));
  EXPECT_FALSE(resolve_chown("app:ghosts", passwd, group));
  EXPECT_FALSE(chown_needs_names("1:2"));
  EXPECT_FALSE(chown_needs_names("1"));
  EXPECT_TRUE(chown_needs_names("app"));
  EXPECT_TRUE(chown_needs_names("1:staff"));
}

// ---- sources and staging ------------------------------------------------------------------------

class CopyTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "pantry-copy-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    for (const char* d : {"context", "lower", "staging"}) {
      fs::create_directories(root_ / d);
      ::chmod((root_ / d).c_str(), 0755);
    }
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  void mkdir(const fs::path& p, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
    fs::create_directories(p);
    ASSERT_EQ(::chown(p.c_str(), uid, gid), 0);
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }

  result<copy_sources> find(const std::vector<std::string>& patterns, bool keep_owners = false) {
    source_root root{root_ / "context", "the build context", nullptr, keep_owners};
    return find_sources(root, patterns);
  }

  result<void> stage(const copy_sources& sources, const copy_destination& dest) {
    return stage_copy(sources, dest, root_ / "lower", root_ / "staging");
  }

  struct stat info(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat((root_ / "staging" / rel).c_str(), &st), 0) << rel;
    return st;
  }

  fs::path root_;
};

TEST_F(CopyTreeTest, ListingNamesEveryCopiedFileWithTheContextsOwnersAsRoot) {
  mkdir(root_ / "context/pkg/sub", 0750, 1000, 1000);
  ::chmod((root_ / "context/pkg").c_str(), 0755);
  write_file(root_ / "context/pkg/sub/m.py", "m\n", 0600);
  ASSERT_EQ(::chown((root_ / "context/pkg/sub/m.py").c_str(), 1000, 1000), 0);
  fs::create_symlink("sub/m.py", root_ / "context/pkg/link");

  auto s = find({"pkg"});
  ASSERT_TRUE(s) << s.error().message;
  std::vector<std::string> paths;
  for (const auto& f : s->listing())
    paths.push_back(f.path + " " + std::to_string(f.uid) + " " + std::to_string(f.mode));
  EXPECT_THAT(paths,
              ElementsAre("pkg 0 493", "pkg/link 0 511", "pkg/sub 0 488", "pkg/sub/m.py 0 384"));
  EXPECT_EQ(s->listing()[1].link_target, "sub/m.py");
  EXPECT_EQ(s->listing()[3].content, cache::digest::of("m\n"));

  auto kept = find({"pkg"}, true);
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(kept->listing()[3].uid, 1000u);
}

TEST_F(CopyTreeTest, AnExistingDestinationKeepsItsMetadataAndDirectoriesBelowTakeTheSources) {
  mkdir(root_ / "context/src/sub", 0755);
  write_file(root_ / "context/src/sub/f", "f\n");
  mkdir(root_ / "lower/app", 0700, 1000, 1000);
  mkdir(root_ / "lower/app/sub", 0700, 1000, 1000);
  auto s = find({"src"});
  ASSERT_TRUE(s) << s.error().message;
  auto r = stage(*s, make_destination("/app", "/"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(info("app").st_mode & 07777, 0700u);
  EXPECT_EQ(info("app").st_uid, 1000u);
  EXPECT_EQ(info("app/sub").st_mode & 07777, 0755u);
  EXPECT_EQ(info("app/sub").st_uid, 0u);
  EXPECT_EQ(slurp(root_ / "staging/app/sub/f"), "f\n");
  // Nothing else of the stage is copied into the layer.
  EXPECT_FALSE(fs::exists(root_ / "staging/app/other"));
}

TEST_F(CopyTreeTest, AMissingDirectoryDestinationTakesTheSourcesModeUnlessWrittenWithASlash) {
  mkdir(root_ / "context/src", 0700);
  write_file(root_ / "context/src/f", "f\n");
  auto s = find({"src"});
  ASSERT_TRUE(s) << s.error().message;
  auto plain = stage(*s, make_destination("/plain", "/"));
  ASSERT_TRUE(plain) << plain.error().message;
  auto slash = stage(*s, make_destination("/slash/", "/"));
  ASSERT_TRUE(slash) << slash.error().message;
  // As BuildKit: /plain is made as a copy of src, /slash/ by MkdirAll before the copy.
  EXPECT_EQ(info("plain").st_mode & 07777, 0700u);
  EXPECT_EQ(info("slash").st_mode & 07777, 0755u);
}

TEST_F(CopyTreeTest, FilesAndDirectoriesNeverReplaceEachOther) {
  mkdir(root_ / "context/dir", 0755);
  write_file(root_ / "context/dir/x", "x\n");
  write_file(root_ / "context/file", "f\n");
  mkdir(root_ / "lower/target/file", 0755);
  write_file(root_ / "lower/plain", "p\n");
  mkdir(root_ / "lower/d", 0755);
  write_file(root_ / "lower/d/x", "old\n");

  auto file = find({"file"});
  ASSERT_TRUE(file);
  auto over_dir = stage(*file, make_destination("/target/", "/"));
  ASSERT_FALSE(over_dir);
  EXPECT_THAT(over_dir.error().message, HasSubstr("a directory is there"));

  auto dir = find({"dir"});
  ASSERT_TRUE(dir);
  auto over_file = stage(*dir, make_destination("/plain", "/"));
  ASSERT_FALSE(over_file);
  EXPECT_THAT(over_file.error().message, HasSubstr("a file is there, not a directory"));

  // A file over a file of the stage replaces it.
  auto ok = stage(*dir, make_destination("/d", "/"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(slurp(root_ / "staging/d/x"), "x\n");
}

TEST_F(CopyTreeTest, ASourceChangedAfterItWasHashedIsNotCopied) {
  write_file(root_ / "context/f", "before\n");
  auto s = find({"f"});
  ASSERT_TRUE(s);
  write_file(root_ / "context/f", "after\n");
  auto r = stage(*s, make_destination("/f", "/"));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::corrupt)) << r.error().message;
}

TEST_F(CopyTreeTest, LinksInTheDestinationStayInsideTheRoot) {
  write_file(root_ / "context/f", "f\n");
  fs::create_symlink("/../../../escape", root_ / "lower/out");
  auto s = find({"f"});
  ASSERT_TRUE(s);
  auto r = stage(*s, make_destination("/out/", "/"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(slurp(root_ / "staging/escape/f"), "f\n");
  EXPECT_FALSE(fs::exists(root_.parent_path().parent_path() / "escape"));
}

}  // namespace
}  // namespace pantry::orchestrator::builder
