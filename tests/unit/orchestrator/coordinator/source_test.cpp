#include "pantry/orchestrator/coordinator/source.h"

#include "unit/orchestrator/builder/tree_util.h"
#include "unit/temp_dir.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

namespace fs = std::filesystem;
using builder::testing_util::paths;
using builder::testing_util::read_tar;
using builder::testing_util::set_mtime;
using builder::testing_util::slurp;
using builder::testing_util::write_file;

// What a tree holds, for comparing two: path -> "f 644 <content>", "d 755", "l <target>".
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const auto rel = fs::relative(it->path(), root).generic_string();
    struct stat st {};
    EXPECT_EQ(::lstat(it->path().c_str(), &st), 0) << it->path();
    char mode[8];
    std::snprintf(mode, sizeof mode, "%o", static_cast<unsigned>(st.st_mode & 07777));
    if (S_ISLNK(st.st_mode)) {
      out[rel] = "l " + fs::read_symlink(it->path()).string();
    } else if (S_ISDIR(st.st_mode)) {
      out[rel] = std::string("d ") + mode;
    } else {
      out[rel] = std::string("f ") + mode + " " + slurp(it->path());
    }
  }
  return out;
}

// Runs a shell command with git's configuration isolated; fails the test if it fails.
void sh(const std::string& command) {
  const std::string full =
      "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=t "
      "GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com "
      "sh -ec '" +
      command + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(full.c_str()), 0) << command;
}

class SourceTest : public test_util::temp_dir_test {
 protected:
  // A tree with what an archive keeps: modes, an empty directory, a symlink, a large file.
  void make_tree(const fs::path& root) {
    fs::create_directories(root / "sub" / "deeper");
    fs::create_directories(root / "empty");
    write_file(root / "a.txt", "alpha\n");
    write_file(root / "sub" / "run.sh", "#!/bin/sh\necho hi\n", 0755);
    write_file(root / "sub" / "deeper" / "private", "secret-ish", 0600);
    std::string big(3 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i)
      big[i] = static_cast<char>((i * 7919) >> 3);
    write_file(root / "big.bin", big);
    fs::create_symlink("sub/run.sh", root / "link");
    ::chmod((root / "empty").c_str(), 0750);
  }

  fs::path archive(const char* name = "out.tar.zst") const { return dir_ / name; }
};

TEST_F(SourceTest, RoundTripKeepsFilesModesAndSymlinks) {
  make_tree(dir_ / "tree");
  auto packed = pack_tree(dir_ / "tree", archive());
  ASSERT_TRUE(packed) << packed.error().message;
  EXPECT_EQ(packed->stats.files, 4u);
  EXPECT_EQ(packed->stats.directories, 3u);
  EXPECT_EQ(packed->stats.symlinks, 1u);
  EXPECT_EQ(packed->stats.bytes, 6u + 18u + 10u + (3u << 20));

  auto unpacked = unpack_tree(archive(), dir_ / "copy");
  ASSERT_TRUE(unpacked) << unpacked.error().message;
  EXPECT_EQ(unpacked->files, 4u);
  EXPECT_EQ(unpacked->symlinks, 1u);
  EXPECT_EQ(snapshot(dir_ / "copy"), snapshot(dir_ / "tree"));
}

TEST_F(SourceTest, SameTreeGivesSameBytesAndSha256) {
  make_tree(dir_ / "one");
  // The same files written in another order, at other times.
  fs::create_directories(dir_ / "two");
  set_mtime(dir_ / "one" / "a.txt", 1000);
  make_tree(dir_ / "two");
  set_mtime(dir_ / "two" / "a.txt", 2000000000);

  auto first = pack_tree(dir_ / "one", archive("1.tar.zst"));
  auto again = pack_tree(dir_ / "one", archive("1b.tar.zst"));
  auto other = pack_tree(dir_ / "two", archive("2.tar.zst"));
  ASSERT_TRUE(first && again && other);
  EXPECT_EQ(first->sha256, again->sha256);
  EXPECT_EQ(first->sha256, other->sha256) << first->sha256.str() << " vs " << other->sha256.str();
  EXPECT_EQ(slurp(archive("1.tar.zst")), slurp(archive("2.tar.zst")));
  // The digest is that of the file's bytes, and the size its size.
  EXPECT_EQ(first->sha256, cache::digest::of(slurp(archive("1.tar.zst"))));
  EXPECT_EQ(first->size, fs::file_size(archive("1.tar.zst")));
  EXPECT_EQ(first->file, archive("1.tar.zst"));
}

TEST_F(SourceTest, EntriesAreSortedWithoutTimesOrOwners) {
  make_tree(dir_ / "tree");
  ::chmod((dir_ / "tree" / "a.txt").c_str(), 04755);  // set-id bits are dropped
  ASSERT_TRUE(pack_tree(dir_ / "tree", archive()));
  const auto entries = read_tar(archive());
  EXPECT_EQ(paths(entries),
            (std::vector<std::string>{"a.txt", "big.bin", "empty/", "link", "sub/", "sub/deeper/",
                                      "sub/deeper/private", "sub/run.sh"}));
  for (const auto& e : entries) {
    EXPECT_EQ(e.mtime, 0) << e.path;
    EXPECT_EQ(e.uid, 0) << e.path;
    EXPECT_EQ(e.gid, 0) << e.path;
    EXPECT_EQ(e.uname, "") << e.path;
  }
  EXPECT_EQ(entries[0].perm, 0755u);
  EXPECT_EQ(entries[3].symlink, "sub/run.sh");
}

TEST_F(SourceTest, OutsideAWorkTreeEverythingButDotGitAndTheArchiveItself) {
  const fs::path tree = dir_ / "tree";
  fs::create_directories(tree / ".git" / "objects");
  fs::create_directories(tree / "sub" / ".git");
  write_file(tree / ".git" / "HEAD", "ref: x\n");
  write_file(tree / "sub" / ".git" / "config", "x");
  write_file(tree / "kept", "k");
  ASSERT_EQ(::mkfifo((tree / "fifo").c_str(), 0644), 0);
  auto packed = pack_tree(tree, tree / "self.tar.zst");
  ASSERT_TRUE(packed) << packed.error().message;
  EXPECT_EQ(paths(read_tar(tree / "self.tar.zst")), (std::vector<std::string>{"kept", "sub/"}));
  EXPECT_EQ(packed->stats.skipped, 1u);  // the FIFO
}

TEST_F(SourceTest, InAGitWorkTreeGitignoreIsRespected) {
  const fs::path repo = dir_ / "repo";
  fs::create_directories(repo / "src");
  fs::create_directories(repo / "build");
  write_file(repo / ".gitignore", "*.log\nbuild/\n");
  write_file(repo / "src" / "main.c", "int main;\n");
  write_file(repo / "gone.txt", "deleted after the commit\n");
  write_file(repo / "tracked.log", "tracked even though ignored\n");
  sh("cd " + repo.string() + " && git init -q && git add .gitignore src gone.txt && git add -f " +
     "tracked.log && git commit -qm one && rm gone.txt");
  write_file(repo / "new.txt", "untracked, not ignored\n");
  write_file(repo / "debug.log", "ignored\n");
  write_file(repo / "build" / "out.o", "ignored\n");

  auto packed = pack_tree(repo, dir_ / "out.tar.zst");
  ASSERT_TRUE(packed) << packed.error().message;
  EXPECT_EQ(
      paths(read_tar(dir_ / "out.tar.zst")),
      (std::vector<std::string>{".gitignore", "new.txt", "src/", "src/main.c", "tracked.log"}));

  // A subdirectory of the work tree: its own files, named from it.
  ASSERT_TRUE(pack_tree(repo / "src", dir_ / "src.tar.zst"));
  EXPECT_EQ(paths(read_tar(dir_ / "src.tar.zst")), (std::vector<std::string>{"main.c"}));
}

TEST_F(SourceTest, HeadCommitIsTheWorkTreesCheckedOutCommit) {
  const fs::path repo = dir_ / "repo";
  fs::create_directories(repo);
  EXPECT_EQ(head_commit(repo), std::nullopt);  // not a work tree
  sh("cd " + repo.string() + " && git init -q");
  EXPECT_EQ(head_commit(repo), std::nullopt);  // no commit yet
  write_file(repo / "a.txt", "a\n");
  sh("cd " + repo.string() + " && git add a.txt && git commit -qm one && git rev-parse HEAD > " +
     (dir_ / "head").string());
  std::ifstream in(dir_ / "head");
  std::string expected;
  std::getline(in, expected);
  EXPECT_EQ(head_commit(repo), expected);
  EXPECT_EQ(head_commit(repo, dir_ / "no-such-git"), std::nullopt);
}

TEST_F(SourceTest, PackOfAMissingDirectoryFails) {
  auto packed = pack_tree(dir_ / "absent", archive());
  ASSERT_FALSE(packed);
  EXPECT_TRUE(packed.error().is(errc::invalid_argument)) << packed.error().message;
  EXPECT_NE(packed.error().message.find("absent"), std::string::npos) << packed.error().message;
  EXPECT_FALSE(fs::exists(archive()));
}

// Writes a hostile archive entry by entry (a zstd-compressed tar, as pack_tree writes).
class hostile_archive {
 public:
  explicit hostile_archive(const fs::path& file) : a_(archive_write_new()) {
    archive_write_set_format_pax_restricted(a_);
    archive_write_add_filter_zstd(a_);
    EXPECT_EQ(archive_write_open_filename(a_, file.c_str()), ARCHIVE_OK);
  }
  ~hostile_archive() { archive_write_free(a_); }

  hostile_archive& add(const std::string& path, mode_t type, const std::string& content = "",
                       const std::string& link = "", bool hard = false) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, type == AE_IFREG ? static_cast<la_int64_t>(content.size()) : 0);
    if (type == AE_IFLNK) archive_entry_set_symlink(e, link.c_str());
    if (hard) archive_entry_set_hardlink(e, link.c_str());
    if (type == AE_IFCHR) archive_entry_set_rdev(e, makedev(1, 3));
    EXPECT_EQ(archive_write_header(a_, e), ARCHIVE_OK) << archive_error_string(a_);
    if (!content.empty()) archive_write_data(a_, content.data(), content.size());
    archive_entry_free(e);
    return *this;
  }
  void close() { EXPECT_EQ(archive_write_close(a_), ARCHIVE_OK); }

 private:
  struct archive* a_;
};

struct hostile_case {
  const char* what;
  std::function<void(hostile_archive&)> entries;
  const char* named;  // the entry the error must name
};

TEST_F(SourceTest, HostileArchivesAreRefusedNamingTheEntry) {
  const std::vector<hostile_case> cases = {
      {"absolute path", [](auto& a) { a.add("/etc/cron.d/x", AE_IFREG, "x"); }, "/etc/cron.d/x"},
      {"dot-dot", [](auto& a) { a.add("ok/../../x", AE_IFREG, "x"); }, "ok/../../x"},
      {"absolute symlink", [](auto& a) { a.add("l", AE_IFLNK, "", "/etc/passwd"); }, "\"l\""},
      {"escaping symlink",
       [](auto& a) { a.add("d", AE_IFDIR).add("d/l", AE_IFLNK, "", "../../x"); }, "d/l"},
      {"escape through another symlink",
       [](auto& a) { a.add("b", AE_IFLNK, "", ".").add("c", AE_IFLNK, "", "b/../outside"); },
       "\"c\""},
      {"write through a symlink",
       [](auto& a) {
         a.add("sub", AE_IFDIR).add("d", AE_IFLNK, "", "sub").add("d/f", AE_IFREG, "x");
       },
       "d/f"},
      {"device", [](auto& a) { a.add("null", AE_IFCHR); }, "null"},
      {"fifo", [](auto& a) { a.add("pipe", AE_IFIFO); }, "pipe"},
      {"hard link", [](auto& a) { a.add("f", AE_IFREG, "x").add("h", AE_IFREG, "", "f", true); },
       "\"h\""},
      {"duplicate", [](auto& a) { a.add("f", AE_IFREG, "x").add("f", AE_IFLNK, "", "g"); },
       "\"f\""},
  };
  int n = 0;
  for (const auto& c : cases) {
    const fs::path file = dir_ / ("hostile" + std::to_string(n) + ".tar.zst");
    const fs::path dest = dir_ / ("dest" + std::to_string(n++));
    {
      hostile_archive a(file);
      c.entries(a);
      a.close();
    }
    auto r = unpack_tree(file, dest);
    ASSERT_FALSE(r) << c.what << " was unpacked";
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << c.what << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(c.named), std::string::npos)
        << c.what << ": " << r.error().message;
    EXPECT_NE(r.error().message.find("refused"), std::string::npos)
        << c.what << ": " << r.error().message;
  }
  // Nothing was written outside the destinations.
  EXPECT_FALSE(fs::exists(dir_ / "x"));
  EXPECT_FALSE(fs::exists(dir_ / "outside"));
}

TEST_F(SourceTest, SymlinksThatStayInsideAreKept) {
  const fs::path file = dir_ / "ok.tar.zst";
  {
    hostile_archive a(file);
    a.add("sub", AE_IFDIR)
        .add("sub/up", AE_IFLNK, "", "../top")
        .add("top", AE_IFREG, "t")
        .add("dangling", AE_IFLNK, "", "not/there");
    a.close();
  }
  auto r = unpack_tree(file, dir_ / "dest");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(slurp(dir_ / "dest" / "sub" / "up"), "t");
  EXPECT_EQ(fs::read_symlink(dir_ / "dest" / "dangling"), "not/there");
}

TEST_F(SourceTest, UnpackIntoANonEmptyDirectoryFails) {
  make_tree(dir_ / "tree");
  ASSERT_TRUE(pack_tree(dir_ / "tree", archive()));
  auto r = unpack_tree(archive(), dir_ / "tree");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::already_exists)) << r.error().message;
}

TEST_F(SourceTest, UnpackOfAFileThatIsNotAnArchiveFails) {
  write_file(archive(), "this is not a tar");
  auto r = unpack_tree(archive(), dir_ / "dest");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  EXPECT_NE(r.error().message.find("out.tar.zst"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
