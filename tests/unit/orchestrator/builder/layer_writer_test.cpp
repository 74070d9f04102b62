#include "pantry/orchestrator/builder/layer_writer.h"

#include "build_util.h"
#include "pantry/orchestrator/builder/image_config.h"
#include "tree_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing_util::find;
using testing_util::paths;
using testing_util::read_tar;
using testing_util::set_mtime;
using testing_util::slurp;
using testing_util::tar_entry;
using testing_util::write_file;

// 2023-11-14T22:13:20Z
constexpr std::int64_t kEpoch = 1700000000;

// What root may do and other users may not: make device nodes and trusted.* attributes.
bool make_whiteout(const fs::path& p) {
  return ::mknod(p.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0;
}
bool set_xattr(const fs::path& p, const char* name, std::string_view value) {
  return ::lsetxattr(p.c_str(), name, value.data(), value.size(), 0) == 0;
}

// The decompressed bytes of a layer file (libarchive's filters, the raw format).
std::string decompress(const fs::path& file) {
  struct archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  EXPECT_EQ(archive_read_open_filename(a, file.c_str(), 1 << 16), ARCHIVE_OK);
  struct archive_entry* e = nullptr;
  std::string out;
  if (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char buf[1 << 16];
    la_ssize_t n = 0;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<std::size_t>(n));
  }
  archive_read_free(a);
  return out;
}

// Runs a shell command; returns its exit status and output (stdout and stderr).
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool on_path(const std::string& tool) {
  return run("command -v " + tool).first == 0;
}

class LayerWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "pantry-layer-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    root_ = tmpl;
  }
  void TearDown() override {
    if (!mounted_.empty()) ::umount2(mounted_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path make_dir(const std::string& name) {
    const fs::path p = root_ / name;
    fs::create_directories(p);
    return p;
  }

  // Writes `dir`'s layer to a file next to it; fails the test on an error.
  layer_info write(const fs::path& dir, layer_options options, const std::string& out_name) {
    auto r = write_layer_file(dir, root_ / out_name, options);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : layer_info{};
  }

  // A small tree whose files are made in `reverse` order or not, all modified at `mtime`
  // (above the epoch), but one file dated long before it.
  void make_tree(const fs::path& dir, bool reverse, std::int64_t mtime) {
    std::vector<std::string> files = {"bin/tool", "etc/app.conf", "etc/b", "lib/x/y/z", "README"};
    if (reverse) std::reverse(files.begin(), files.end());
    for (const auto& f : files) {
      fs::create_directories((dir / f).parent_path());
      write_file(dir / f, "contents of " + f + std::string(1000, 'x'),
                 f == "bin/tool" ? 0755 : 0644);
    }
    fs::create_symlink("../etc/app.conf", dir / "bin" / "link");
    write_file(dir / "old", "from a package", 0644);
    for (const auto& entry : fs::recursive_directory_iterator(dir))
      set_mtime(entry.path(), mtime);
    set_mtime(dir / "old", 315532800);  // 1980, before the epoch: kept
  }

  fs::path root_;
  fs::path mounted_;
};

// ---- reproducibility ----------------------------------------------------------------------------

TEST_F(LayerWriterTest, SameFilesGiveTheSameBytesWhateverTheirTimesAndInodeOrder) {
  const fs::path one = make_dir("one"), two = make_dir("two");
  make_tree(one, false, kEpoch + 1000);
  make_tree(two, true, kEpoch + 987654);
  for (auto compression :
       {layer_compression::gzip, layer_compression::zstd, layer_compression::none}) {
    layer_options options;
    options.source_date_epoch = kEpoch;
    options.compression = compression;
    const layer_info a = write(one, options, "one.layer");
    const layer_info b = write(two, options, "two.layer");
    EXPECT_EQ(slurp(root_ / "one.layer"), slurp(root_ / "two.layer"))
        << layer_media_type(compression);
    EXPECT_EQ(a.diff_id, b.diff_id);
    EXPECT_EQ(a.digest, b.digest);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.entries, 12u);  // 5 files, 5 directories, a link, "old"
  }
  // A different epoch gives a different layer; a changed file too.
  layer_options options;
  options.source_date_epoch = kEpoch;
  const layer_info base = write(one, options, "base.layer");
  options.source_date_epoch = kEpoch + 1;
  EXPECT_NE(write(one, options, "later.layer").diff_id, base.diff_id);
  options.source_date_epoch = kEpoch;
  ASSERT_EQ(::chmod((two / "README").c_str(), 0600), 0);
  EXPECT_NE(write(two, options, "chmod.layer").diff_id, base.diff_id);
}

TEST_F(LayerWriterTest, DiffIdIsTheTarsDigestAndDigestTheBlobs) {
  const fs::path dir = make_dir("tree");
  make_tree(dir, false, kEpoch + 5);
  for (auto compression :
       {layer_compression::gzip, layer_compression::zstd, layer_compression::none}) {
    layer_options options;
    options.compression = compression;
    const layer_info info = write(dir, options, "out.layer");
    const std::string blob = slurp(root_ / "out.layer");
    const std::string tar = decompress(root_ / "out.layer");
    EXPECT_EQ(info.digest, cache::digest::of(blob));
    EXPECT_EQ(info.diff_id, cache::digest::of(tar));
    EXPECT_EQ(info.size, blob.size());
    EXPECT_EQ(info.tar_size, tar.size());
    EXPECT_EQ(info.media_type, layer_media_type(compression));
    EXPECT_EQ(info.to_descriptor(), (descriptor{info.media_type, info.digest, info.size}));
    // The tar ends with its two zero blocks, unpadded.
    EXPECT_EQ(tar.size() % 512, 0u);
    EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));
    if (compression == layer_compression::gzip) {
      ASSERT_GE(blob.size(), 10u);
      EXPECT_EQ(blob.substr(0, 3), "\x1f\x8b\x08");
      EXPECT_EQ(blob.substr(4, 4), std::string(4, '\0')) << "the gzip header has a timestamp";
      EXPECT_EQ(blob[9], '\x03');  // OS: Unix
    }
    if (compression == layer_compression::zstd) {
      EXPECT_EQ(blob.substr(0, 4), "\x28\xb5\x2f\xfd");
    }
    if (compression == layer_compression::none) {
      EXPECT_EQ(blob, tar);
      EXPECT_EQ(info.digest, info.diff_id);
    }
  }
}

TEST_F(LayerWriterTest, StreamsToACallerSinkInPieces) {
  const fs::path dir = make_dir("tree");
  write_file(dir / "big", std::string(3 << 20, 'a'));
  std::string received;
  std::size_t calls = 0;
  auto info = write_layer(dir, {}, [&](std::span<const std::byte> piece) -> result<void> {
    received.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    ++calls;
    return {};
  });
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_GT(calls, 1u);
  EXPECT_EQ(info->digest, cache::digest::of(received));
  EXPECT_EQ(info->size, received.size());
}

TEST_F(LayerWriterTest, MtimesAreClampedToTheEpochAndOlderOnesKept) {
  const fs::path dir = make_dir("tree");
  write_file(dir / "new", "n");
  write_file(dir / "old", "o");
  write_file(dir / "exact", "e");
  set_mtime(dir / "new", kEpoch + 3600, 123456789);
  set_mtime(dir / "old", 1000, 999999999);
  set_mtime(dir / "exact", kEpoch);
  layer_options options;
  options.source_date_epoch = kEpoch;
  write(dir, options, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(find(entries, "new")->mtime, kEpoch);
  EXPECT_EQ(find(entries, "old")->mtime, 1000);  // whole seconds
  EXPECT_EQ(find(entries, "exact")->mtime, kEpoch);
  for (const auto& e : entries)
    EXPECT_EQ(e.mtime_nsec, 0) << e.path;
  // The default epoch is 0: every file made now gets 1970.
  write(dir, {}, "zero.layer");
  for (const auto& e : read_tar(root_ / "zero.layer"))
    EXPECT_EQ(e.mtime, 0) << e.path;
  // No access or change times anywhere (restricted pax writes none).
  const std::string tar = decompress(root_ / "out.layer");
  EXPECT_EQ(tar.find("atime"), std::string::npos);
  EXPECT_EQ(tar.find("ctime"), std::string::npos);
}

TEST_F(LayerWriterTest, OwnersAreNumbersWithoutNames) {
  const fs::path dir = make_dir("tree");
  write_file(dir / "mine", "m");
  fs::create_directory(dir / "d");
  ASSERT_EQ(::chmod((dir / "d").c_str(), 0750), 0);
  ASSERT_EQ(::lchown((dir / "d").c_str(), 1234, 5678), 0) << std::strerror(errno);
  write(dir, {}, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  ASSERT_EQ(entries.size(), 2u);
  const tar_entry* d = find(entries, "d/");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->uid, 1234);
  EXPECT_EQ(d->gid, 5678);
  EXPECT_EQ(d->type, AE_IFDIR);
  EXPECT_EQ(d->perm, 0750u) << std::oct << d->perm;
  for (const auto& e : entries) {
    EXPECT_EQ(e.uname, "") << e.path;
    EXPECT_EQ(e.gname, "") << e.path;
  }
  // Not even the ustar name fields hold a name (offsets 265 and 297 of each header).
  const std::string tar = decompress(root_ / "out.layer");
  EXPECT_EQ(tar.find("root"), std::string::npos);
  EXPECT_EQ(tar.substr(265, 64), std::string(64, '\0'));
}

// ---- what an overlay upper directory holds ------------------------------------------------------

TEST_F(LayerWriterTest, WhiteoutsAndOpaqueDirectoriesBecomeOciEntriesBeforeTheirSiblings) {
  const fs::path dir = make_dir("upper");
  if (!make_whiteout(dir / "old")) {
    GTEST_SKIP() << "mknod needs CAP_MKNOD: " << std::strerror(errno);
  }
  fs::create_directories(dir / "a" / "beta");
  ASSERT_TRUE(make_whiteout(dir / "a" / "gone"));
  ASSERT_EQ(::lchown((dir / "a" / "gone").c_str(), 7, 8), 0);
  write_file(dir / "a" / "zeta", "z");
  write_file(dir / "a" / "beta-2", "b2");
  write_file(dir / "a" / "beta" / "new", "new");
  write_file(dir / "top", "t");
  ASSERT_EQ(::chmod((dir / "a" / "beta").c_str(), 02750), 0);
  ASSERT_EQ(::lchown((dir / "a" / "beta").c_str(), 10, 20), 0);
  if (!set_xattr(dir / "a" / "beta", "trusted.overlay.opaque", "y")) {
    GTEST_SKIP() << "trusted.* attributes need CAP_SYS_ADMIN: " << std::strerror(errno);
  }
  // "x" marks a directory that holds xwhiteouts, not an opaque one.
  ASSERT_TRUE(set_xattr(dir / "a", "trusted.overlay.opaque", "x"));

  layer_options options;
  options.source_date_epoch = kEpoch;
  write(dir, options, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  EXPECT_THAT(paths(entries),
              ElementsAre(".wh.old", "a/", "a/.wh.gone", "a/beta/", "a/beta/.wh..wh..opq",
                          "a/beta/new", "a/beta-2", "a/zeta", "top"));

  const tar_entry* gone = find(entries, "a/.wh.gone");
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->type, AE_IFREG);
  EXPECT_EQ(gone->perm, 0600u);
  EXPECT_EQ(gone->size, 0);
  EXPECT_EQ(gone->uid, 7);
  EXPECT_EQ(gone->gid, 8);
  EXPECT_EQ(gone->uname, "");
  EXPECT_EQ(gone->mtime, kEpoch);

  const tar_entry* opq = find(entries, "a/beta/.wh..wh..opq");
  ASSERT_NE(opq, nullptr);
  EXPECT_EQ(opq->type, AE_IFREG);
  EXPECT_EQ(opq->perm, 0750u) << std::oct << opq->perm;  // the directory's, without setgid
  EXPECT_EQ(opq->size, 0);
  EXPECT_EQ(opq->uid, 10);
  EXPECT_EQ(opq->gid, 20);

  const tar_entry* beta = find(entries, "a/beta/");
  ASSERT_NE(beta, nullptr);
  EXPECT_EQ(beta->perm, 02750u) << std::oct << beta->perm;
  EXPECT_THAT(beta->xattrs, IsEmpty());
  EXPECT_THAT(find(entries, "a/")->xattrs, IsEmpty());
}

TEST_F(LayerWriterTest, OverlayAttributesAreDroppedAndOthersKept) {
  const fs::path dir = make_dir("upper");
  write_file(dir / "f", "f");
  if (!set_xattr(dir / "f", "trusted.overlay.origin", std::string("\x00\xfb\x21\x00\x01", 5))) {
    GTEST_SKIP() << "trusted.* attributes need CAP_SYS_ADMIN: " << std::strerror(errno);
  }
  ASSERT_TRUE(set_xattr(dir / "f", "trusted.overlay.impure", "y"));
  ASSERT_TRUE(set_xattr(dir / "f", "user.foo", "bar"));
  ASSERT_TRUE(set_xattr(dir / "f", "trusted.other", std::string("\x01\x00\x02", 3)));
  ASSERT_TRUE(
      set_xattr(dir / "f", "security.capability",
                std::string("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                            "\x00\x00\x00\x00",
                            20)));
  write(dir, {}, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  ASSERT_EQ(entries.size(), 1u);
  std::vector<std::string> names;
  for (const auto& [name, value] : entries[0].xattrs)
    names.push_back(name);
  EXPECT_THAT(names, ElementsAre("security.capability", "trusted.other", "user.foo"));
  EXPECT_EQ(entries[0].xattrs.at("user.foo"), "bar");
  EXPECT_EQ(entries[0].xattrs.at("trusted.other"), std::string("\x01\x00\x02", 3));
  // Only the SCHILY form that Go's archive/tar reads, not libarchive's own second copy.
  const std::string tar = decompress(root_ / "out.layer");
  EXPECT_NE(tar.find("SCHILY.xattr.user.foo=bar"), std::string::npos);
  EXPECT_EQ(tar.find("LIBARCHIVE.xattr"), std::string::npos);
  EXPECT_EQ(tar.find("trusted.overlay"), std::string::npos);
}

TEST_F(LayerWriterTest, HardLinksPointAtTheFirstName) {
  const fs::path dir = make_dir("tree");
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  write_file(dir / "b" / "x", "shared contents");
  fs::create_hard_link(dir / "b" / "x", dir / "a" / "y");
  fs::create_hard_link(dir / "b" / "x", dir / "c");
  write(dir, {}, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  EXPECT_THAT(paths(entries), ElementsAre("a/", "a/y", "b/", "b/x", "c"));
  const tar_entry* y = find(entries, "a/y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->hardlink, "");
  EXPECT_EQ(y->content, "shared contents");
  for (std::string_view link : {"b/x", "c"}) {
    const tar_entry* e = find(entries, link);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->hardlink, "a/y") << link;
    EXPECT_EQ(e->content, "") << link;
  }
}

TEST_F(LayerWriterTest, SymlinksDevicesAndFifosAreKeptAndSocketsSkipped) {
  const fs::path dir = make_dir("tree");
  fs::create_symlink("/usr/lib/os-release", dir / "abs");
  fs::create_symlink("../../nowhere", dir / "dangling");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  ASSERT_EQ(::chmod((dir / "fifo").c_str(), 0620), 0);
  const bool devices = ::mknod((dir / "null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0;
  if (devices) {
    ASSERT_EQ(::mknod((dir / "loop").c_str(), S_IFBLK | 0660, makedev(7, 0)), 0);
  }
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(s, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string sock = (dir / "sock").string();
  ASSERT_LT(sock.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(s);

  write(dir, {}, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  if (devices) {
    EXPECT_THAT(paths(entries), ElementsAre("abs", "dangling", "fifo", "loop", "null"));
    EXPECT_EQ(find(entries, "null")->type, AE_IFCHR);
    EXPECT_EQ(find(entries, "null")->rdev_major, 1u);
    EXPECT_EQ(find(entries, "null")->rdev_minor, 3u);
    EXPECT_EQ(find(entries, "loop")->type, AE_IFBLK);
    EXPECT_EQ(find(entries, "loop")->rdev_major, 7u);
  } else {
    EXPECT_THAT(paths(entries), ElementsAre("abs", "dangling", "fifo"));
  }
  EXPECT_EQ(find(entries, "abs")->type, AE_IFLNK);
  EXPECT_EQ(find(entries, "abs")->symlink, "/usr/lib/os-release");
  EXPECT_EQ(find(entries, "dangling")->symlink, "../../nowhere");
  EXPECT_EQ(find(entries, "fifo")->type, AE_IFIFO);
  EXPECT_EQ(find(entries, "fifo")->perm, 0620u);
}

TEST_F(LayerWriterTest, NamesAreTheSameBytesInAnyLocale) {
  const fs::path dir = make_dir("tree");
  write_file(dir / "caf\xc3\xa9", "utf-8 name");
  write_file(dir / "bad\xff", "not utf-8");
  write_file(dir / ("long-" + std::string(120, 'n')), "long name");
  fs::create_symlink("caf\xc3\xa9", dir / "link");
  write(dir, {}, "c.layer");
  const char* previous = std::setlocale(LC_ALL, nullptr);
  const std::string saved = previous ? previous : "C";
  if (std::setlocale(LC_ALL, "C.UTF-8") == nullptr) GTEST_SKIP() << "no C.UTF-8 locale";
  write(dir, {}, "utf8.layer");
  std::setlocale(LC_ALL, saved.c_str());
  EXPECT_EQ(slurp(root_ / "c.layer"), slurp(root_ / "utf8.layer"));
  const auto entries = read_tar(root_ / "c.layer");
  EXPECT_THAT(paths(entries),
              ElementsAre("bad\xff", "caf\xc3\xa9", "link", "long-" + std::string(120, 'n')));
  EXPECT_EQ(find(entries, "link")->symlink, "caf\xc3\xa9");
}

// ---- errors -------------------------------------------------------------------------------------

TEST_F(LayerWriterTest, AFileNamedLikeAWhiteoutIsRefusedAndNoFileLeft) {
  const fs::path dir = make_dir("tree");
  fs::create_directories(dir / "d");
  write_file(dir / "d" / ".wh.x", "");
  auto r = write_layer_file(dir, root_ / "out.layer", {});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_argument));
  EXPECT_THAT(r.error().message, HasSubstr("\"d/.wh.x\""));
  EXPECT_THAT(r.error().message, HasSubstr(".wh."));
  EXPECT_FALSE(fs::exists(root_ / "out.layer"));
}

TEST_F(LayerWriterTest, ASinkErrorStopsTheWrite) {
  const fs::path dir = make_dir("tree");
  write_file(dir / "big", std::string(1 << 20, 'b'));
  std::size_t calls = 0;
  auto r = write_layer(dir, {}, [&](std::span<const std::byte>) -> result<void> {
    ++calls;
    return error(errc::no_space, "disk full");
  });
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::no_space));
  EXPECT_EQ(r.error().message, "disk full");
  EXPECT_EQ(calls, 1u);
}

TEST_F(LayerWriterTest, BadOptionsAndMissingDirectoriesAreErrors) {
  const fs::path dir = make_dir("tree");
  const layer_sink sink = [](std::span<const std::byte>) -> result<void> { return {}; };
  layer_options options;
  options.source_date_epoch = -1;
  EXPECT_THAT(write_layer(dir, options, sink).error().message, HasSubstr("SOURCE_DATE_EPOCH"));
  options = {};
  options.compression_level = 10;
  EXPECT_THAT(write_layer(dir, options, sink).error().message, HasSubstr("gzip takes 1 to 9"));
  options.compression = layer_compression::zstd;
  options.compression_level = 19;
  EXPECT_TRUE(write_layer(dir, options, sink));
  options.compression = layer_compression::none;
  EXPECT_FALSE(write_layer(dir, options, sink));

  auto missing = write_layer(root_ / "nope", {}, sink);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::io_error));
  EXPECT_THAT(missing.error().message, HasSubstr("No such file"));
  write_file(root_ / "file", "x");
  EXPECT_THAT(write_layer(root_ / "file", {}, sink).error().message, HasSubstr("not a directory"));
}

// ---- with the real peers ------------------------------------------------------------------------

// An overlay mounted as the runner mounts it: what a RUN step's changes leave in the upper
// directory (real whiteouts, an opaque directory, copy-up attributes) becomes an OCI layer.
TEST_F(LayerWriterTest, AnOverlayUpperDirectoryBecomesTheLayerOfItsChanges) {
  const fs::path lower = make_dir("lower"), upper = make_dir("upper"), work = make_dir("work"),
                 merged = make_dir("merged");
  write_file(lower / "keep.txt", "keep");
  write_file(lower / "gone.txt", "gone");
  write_file(lower / "data.txt", "data");
  fs::create_directories(lower / "dir");
  write_file(lower / "dir" / "old1", "1");
  write_file(lower / "dir" / "old2", "2");
  const std::string options = "lowerdir=" + lower.string() + ",upperdir=" + upper.string() +
                              ",workdir=" + work.string() +
                              ",redirect_dir=off,metacopy=off,index=off";
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount overlayfs: " << std::strerror(errno);
  }
  mounted_ = merged;
  fs::remove(merged / "gone.txt");
  fs::remove_all(merged / "dir");
  fs::create_directory(merged / "dir");
  write_file(merged / "dir" / "new", "new");
  std::ofstream(merged / "data.txt", std::ios::app) << " changed";
  fs::remove(merged / "keep.txt");
  ASSERT_EQ(::umount2(merged.c_str(), 0), 0) << std::strerror(errno);
  mounted_.clear();

  layer_options layer;
  layer.source_date_epoch = kEpoch;
  write(upper, layer, "out.layer");
  const auto entries = read_tar(root_ / "out.layer");
  EXPECT_THAT(paths(entries), ElementsAre(".wh.gone.txt", ".wh.keep.txt", "data.txt", "dir/",
                                          "dir/.wh..wh..opq", "dir/new"));
  EXPECT_EQ(find(entries, "data.txt")->content, "data changed");
  for (const auto& e : entries) {
    for (const auto& [name, value] : e.xattrs)
      EXPECT_FALSE(name.starts_with("trusted.overlay.")) << e.path << ": " << name;
    EXPECT_EQ(e.mtime, kEpoch) << e.path;
  }
}

// The documents and the layers together make an image that umoci unpacks (checking every digest
// and diff ID) and skopeo reads: a base layer, then a layer that deletes and replaces.
TEST_F(LayerWriterTest, UmociAndSkopeoReadAnImageMadeOfTheseLayersAndDocuments) {
  if (!on_path("umoci") || !on_path("skopeo")) GTEST_SKIP() << "umoci or skopeo is missing";
  const fs::path base = make_dir("base"), change = make_dir("change");
  fs::create_directories(base / "etc" / "app");
  write_file(base / "etc" / "app" / "a.conf", "a");
  write_file(base / "etc" / "app" / "b.conf", "b");
  write_file(base / "etc" / "motd", "hello");
  write_file(base / "tool", "#!/bin/sh\n", 0755);
  fs::create_directories(change / "etc" / "app");
  if (!make_whiteout(change / "etc" / "motd")) GTEST_SKIP() << "mknod needs CAP_MKNOD";
  if (!set_xattr(change / "etc" / "app", "trusted.overlay.opaque", "y")) {
    GTEST_SKIP() << "trusted.* attributes need CAP_SYS_ADMIN";
  }
  write_file(change / "etc" / "app" / "c.conf", "c");

  const fs::path layout = make_dir("layout");
  fs::create_directories(layout / "blobs" / "sha256");
  auto put_blob = [&](const std::string& bytes) {
    const cache::digest d = cache::digest::of(bytes);
    std::ofstream(layout / "blobs" / "sha256" / d.hex(), std::ios::binary) << bytes;
    return d;
  };
  layer_options options;
  options.source_date_epoch = kEpoch;
  // gzip both: umoci 0.4.7 (Debian 12) does not read zstd layers.
  const layer_info l1 = write(base, options, "l1");
  const layer_info l2 = write(change, options, "l2");
  put_blob(slurp(root_ / "l1"));
  put_blob(slurp(root_ / "l2"));

  // The config as a build of "COPY base / ; RUN rm … ; CMD" writes it.
  const std::vector<cache::digest> layers = {l1.diff_id, l2.diff_id};
  const auto stage = testing_util::build_stage(
      "FROM scratch\nCOPY base/ /\nRUN rm /etc/motd\nENV GREETING=hi\nCMD [\"/tool\"]\n",
      scratch_config("amd64"), kEpoch, [&](std::size_t n) { return layers.at(n); });
  ASSERT_TRUE(stage.image);
  ASSERT_EQ(stage.steps.size(), 4u);
  const std::string config = serialize(stage.image->image());
  const cache::digest config_digest = put_blob(config);
  const std::string manifest =
      image_manifest({std::string(kImageConfigMediaType), config_digest, config.size()},
                     {l1.to_descriptor(), l2.to_descriptor()});
  const cache::digest manifest_digest = put_blob(manifest);
  std::ofstream(layout / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
  std::ofstream(layout / "index.json")
      << R"({"schemaVersion":2,"manifests":[{"mediaType":")" << kImageManifestMediaType
      << R"(","digest":")" << manifest_digest.str() << R"(","size":)" << manifest.size()
      << R"(,"annotations":{"org.opencontainers.image.ref.name":"test"}}]})";

  const auto [inspect_status, inspect] = run("skopeo inspect oci:" + layout.string() + ":test");
  ASSERT_EQ(inspect_status, 0) << inspect;
  EXPECT_THAT(inspect, HasSubstr(l1.digest.str()));
  EXPECT_THAT(inspect, HasSubstr("GREETING=hi"));
  EXPECT_THAT(inspect, HasSubstr("2023-11-14T22:13:20Z"));
  const auto [config_status, skopeo_config] =
      run("skopeo inspect --config oci:" + layout.string() + ":test");
  ASSERT_EQ(config_status, 0) << skopeo_config;
  EXPECT_THAT(skopeo_config, HasSubstr("RUN /bin/sh -c rm /etc/motd"));

  const fs::path bundle = root_ / "bundle";
  const auto [unpack_status, unpack] =
      run("umoci unpack --image " + layout.string() + ":test " + bundle.string());
  ASSERT_EQ(unpack_status, 0) << unpack;
  const fs::path rootfs = bundle / "rootfs";
  EXPECT_TRUE(fs::exists(rootfs / "tool"));
  EXPECT_FALSE(fs::exists(rootfs / "etc" / "motd"));
  EXPECT_FALSE(fs::exists(rootfs / "etc" / "app" / "a.conf"));
  EXPECT_FALSE(fs::exists(rootfs / "etc" / "app" / "b.conf"));
  EXPECT_EQ(slurp(rootfs / "etc" / "app" / "c.conf"), "c");
  EXPECT_THAT(slurp(bundle / "config.json"), HasSubstr("GREETING=hi"));
}

}  // namespace
}  // namespace pantry::orchestrator::builder
