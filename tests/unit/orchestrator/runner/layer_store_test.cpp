#include "pantry/orchestrator/runner/layer_store.h"

#include "pantry/cache/store.h"
#include "pantry/orchestrator/runner/overlay.h"
#include "unit/cache/test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <locale.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;
using cache::testing_util::fails_with;
using cache::testing_util::ok;
using ::testing::HasSubstr;

constexpr std::string_view kGzipLayer = "application/vnd.oci.image.layer.v1.tar+gzip";

// One entry of a test tarball.
struct tar_entry {
  std::string path;
  unsigned type = AE_IFREG;
  unsigned perm = 0644;
  std::string data;      // a regular file's contents
  std::string symlink;   // a symlink's target
  std::string hardlink;  // a hard link's target: the entry is a hard link when set
  std::int64_t uid = 0;
  std::int64_t gid = 0;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::time_t mtime = 1700000000;
  std::vector<std::pair<std::string, std::string>> xattrs;
  // A sparse file: its size, and `data` written at `data_offset` (the rest is a hole).
  std::int64_t sparse_size = 0;
  std::int64_t data_offset = 0;
};

tar_entry entry(std::string path, unsigned type, unsigned perm) {
  tar_entry e;
  e.path = std::move(path);
  e.type = type;
  e.perm = perm;
  return e;
}
tar_entry dir(std::string path, unsigned perm = 0755) {
  return entry(std::move(path), AE_IFDIR, perm);
}
tar_entry file(std::string path, std::string data, unsigned perm = 0644) {
  tar_entry e = entry(std::move(path), AE_IFREG, perm);
  e.data = std::move(data);
  return e;
}
tar_entry symlink(std::string path, std::string target) {
  tar_entry e = entry(std::move(path), AE_IFLNK, 0777);
  e.symlink = std::move(target);
  return e;
}
tar_entry hardlink(std::string path, std::string target) {
  tar_entry e = entry(std::move(path), AE_IFREG, 0644);
  e.hardlink = std::move(target);
  return e;
}
tar_entry device(std::string path, unsigned type, unsigned perm, unsigned major, unsigned minor) {
  tar_entry e = entry(std::move(path), type, perm);
  e.rdev_major = major;
  e.rdev_minor = minor;
  return e;
}

la_ssize_t append_to_string(archive*, void* out, const void* buf, std::size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// A pax tar of `entries`, uncompressed, written by libarchive as an image builder would.
std::string make_tar(const std::vector<tar_entry>& entries) {
  // Names are UTF-8 in pax records, as Go's archive/tar writes them, whatever the locale the
  // unpacker runs in: write them in a UTF-8 locale, on this thread only.
  locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", nullptr);
  EXPECT_NE(utf8, nullptr);
  locale_t previous = ::uselocale(utf8);
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, append_to_string, nullptr), ARCHIVE_OK);
  for (const auto& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_filetype(e, t.type);
    archive_entry_set_perm(e, t.perm);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, 0);
    if (!t.symlink.empty()) archive_entry_set_symlink(e, t.symlink.c_str());
    if (!t.hardlink.empty()) archive_entry_set_hardlink(e, t.hardlink.c_str());
    if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
      archive_entry_set_rdevmajor(e, t.rdev_major);
      archive_entry_set_rdevminor(e, t.rdev_minor);
    }
    for (const auto& [k, v] : t.xattrs)
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    const bool has_data = t.type == AE_IFREG && t.hardlink.empty();
    archive_entry_set_size(e, has_data ? static_cast<la_int64_t>(t.data.size()) : 0);
    if (t.sparse_size > 0) {
      archive_entry_set_size(e, t.sparse_size);
      archive_entry_sparse_add_entry(e, t.data_offset, static_cast<la_int64_t>(t.data.size()));
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << t.path << ": " << archive_error_string(a);
    if (t.sparse_size > 0) {
      // libarchive takes the whole file, holes included, and writes only the data.
      std::string whole(static_cast<std::size_t>(t.sparse_size), '\0');
      whole.replace(static_cast<std::size_t>(t.data_offset), t.data.size(), t.data);
      EXPECT_EQ(archive_write_data(a, whole.data(), whole.size()),
                static_cast<la_ssize_t>(whole.size()));
    } else if (has_data && !t.data.empty()) {
      EXPECT_EQ(archive_write_data(a, t.data.data(), t.data.size()),
                static_cast<la_ssize_t>(t.data.size()));
    }
    archive_entry_free(e);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  ::uselocale(previous);
  ::freelocale(utf8);
  return out;
}

enum class compression { none, gzip, zstd };

// `bytes` compressed as a registry would serve a layer.
std::string compress(const std::string& bytes, compression c) {
  if (c == compression::none) return bytes;
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_raw(a);
  // No padding after the compressed stream: registries serve the stream alone.
  archive_write_set_bytes_in_last_block(a, 1);
  if (c == compression::gzip) archive_write_add_filter_gzip(a);
  if (c == compression::zstd) archive_write_add_filter_zstd(a);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, append_to_string, nullptr), ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_pathname(e, "layer.tar");
  archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
  EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
  EXPECT_EQ(archive_write_data(a, bytes.data(), bytes.size()),
            static_cast<la_ssize_t>(bytes.size()));
  archive_entry_free(e);
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

struct test_layer {
  cache::digest diff_id;
  std::string blob;  // compressed
};

test_layer make_layer(const std::vector<tar_entry>& entries, compression c = compression::gzip) {
  const std::string tar = make_tar(entries);
  return {cache::digest::of(tar), compress(tar, c)};
}

// A source that hands out `bytes` in pieces of at most `piece` bytes, and counts its calls.
layer_source string_source(std::string bytes, std::atomic<int>* calls = nullptr,
                           std::size_t piece = 1000) {
  auto data = std::make_shared<std::string>(std::move(bytes));
  auto offset = std::make_shared<std::size_t>(0);
  return [data, offset, calls, piece](std::span<std::byte> buf) -> result<std::size_t> {
    if (calls != nullptr) ++*calls;
    const std::size_t n = std::min({buf.size(), piece, data->size() - *offset});
    std::memcpy(buf.data(), data->data() + *offset, n);
    *offset += n;
    return n;
  };
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::optional<std::string> get_xattr(const fs::path& p, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(p.c_str(), name, buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p << ": " << std::strerror(errno);
  return st;
}

bool is_whiteout(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

std::vector<std::string> names_in(const fs::path& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class LayerStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mknod, trusted.* xattrs, mount)";
    std::string tmpl = (fs::temp_directory_path() / "pantry-layer-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    fs::create_directories(outside());
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  fs::path root() const { return dir_ / "store"; }
  // A directory beside the store that no layer may ever write into.
  fs::path outside() const { return dir_ / "outside"; }

  std::shared_ptr<layer_store> open(std::uint64_t max_size = 0) {
    store_.reset();
    layer_store_options o;
    o.root = root();
    o.max_size = max_size;
    o.durable = false;
    auto s = layer_store::open(o);
    EXPECT_TRUE(ok(s));
    store_ = s ? *s : nullptr;
    return store_;
  }

  result<layer_lease> unpack(const test_layer& l, std::string_view media_type = kGzipLayer) {
    return store_->unpack(l.diff_id, media_type, string_source(l.blob));
  }

  // Refuses `layer` with invalid_argument naming `path`, leaving no trace in or out of the store.
  void expect_refused(const std::vector<tar_entry>& entries, std::string_view path) {
    const auto l = make_layer(entries);
    auto r = unpack(l);
    ASSERT_TRUE(fails_with(r, errc::invalid_argument));
    EXPECT_THAT(r.error().message, HasSubstr(std::string(path)));
    EXPECT_THAT(r.error().message, HasSubstr(l.diff_id.short_str()));
    EXPECT_TRUE(fails_with(store_->acquire(l.diff_id), errc::not_found));
    EXPECT_EQ(store_->stats().layers, 0u);
    EXPECT_TRUE(names_in(root() / "tmp").empty()) << "the partial layer was left behind";
    EXPECT_TRUE(names_in(outside()).empty()) << "a layer wrote outside its directory";
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "x")));
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "store" / "x")));
  }

  fs::path dir_;
  std::shared_ptr<layer_store> store_;
};

TEST_F(LayerStoreTest, UnpacksFilesModesOwnersLinksDevicesAndXattrs) {
  tar_entry home = dir("home/user/", 0700);
  home.uid = 1000;
  home.gid = 1001;
  home.mtime = 1600000000;
  tar_entry owned = file("home/user/notes", "hello", 0600);
  owned.uid = 1000;
  owned.gid = 1001;
  owned.mtime = 1500000000;
  tar_entry setuid = file("usr/bin/su", "#!", 04755);
  tar_entry chr = device("dev/null", AE_IFCHR, 0666, 1, 3);
  tar_entry blk = device("dev/sda", AE_IFBLK, 0660, 8, 0);
  blk.gid = 6;
  tar_entry fifo = entry("run/fifo", AE_IFIFO, 0620);
  tar_entry attrs = file("etc/attrs", "x");
  attrs.xattrs = {{"user.note", "kept"},
                  {"trusted.overlay.origin", "forged"},
                  {"trusted.overlay.opaque", "y"},
                  {"trusted.pantry", "kept too"}};
  tar_entry etc = dir("etc/");
  etc.mtime = 1400000000;
  const auto l = make_layer({dir("./"), etc, file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                             hardlink("etc/passwd.hard", "etc/passwd"), attrs, dir("usr/"),
                             dir("usr/bin/"), setuid, symlink("etc/abs", "/etc/passwd"),
                             symlink("etc/dangling", "../nowhere/at/all"), dir("dev/"), chr, blk,
                             dir("home/"), home, owned, fifo, file("caf\xc3\xa9", "utf-8 name")});
  open();
  auto lease = unpack(l);
  ASSERT_TRUE(ok(lease));
  const fs::path d = lease->dir();
  EXPECT_EQ(d, root() / l.diff_id.hex() / "diff");
  EXPECT_EQ(lease->diff_id(), l.diff_id);
  EXPECT_GT(lease->size(), 0u);

  EXPECT_EQ(read_file(d / "etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
  EXPECT_EQ(lstat_of(d / "etc/passwd").st_ino, lstat_of(d / "etc/passwd.hard").st_ino);
  EXPECT_EQ(lstat_of(d / "etc/passwd").st_nlink, 2u);
  EXPECT_EQ(lstat_of(d / "usr/bin/su").st_mode & 07777, 04755u);
  EXPECT_EQ(lstat_of(d / "home/user").st_mode & 07777, 0700u);
  EXPECT_EQ(lstat_of(d / "home/user").st_uid, 1000u);
  EXPECT_EQ(lstat_of(d / "home/user").st_gid, 1001u);
  EXPECT_EQ(lstat_of(d / "home/user/notes").st_uid, 1000u);
  EXPECT_EQ(lstat_of(d / "home/user/notes").st_mode & 07777, 0600u);
  EXPECT_EQ(lstat_of(d / "home/user/notes").st_mtim.tv_sec, 1500000000);
  // Directory times are set after their children are written.
  EXPECT_EQ(lstat_of(d / "home/user").st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(lstat_of(d / "etc").st_mtim.tv_sec, 1400000000);

  EXPECT_EQ(fs::read_symlink(d / "etc/abs"), "/etc/passwd");
  EXPECT_EQ(fs::read_symlink(d / "etc/dangling"), "../nowhere/at/all");
  EXPECT_EQ(lstat_of(d / "etc/abs").st_mtim.tv_sec, 1700000000);

  const auto null_st = lstat_of(d / "dev/null");
  EXPECT_TRUE(S_ISCHR(null_st.st_mode));
  EXPECT_EQ(null_st.st_rdev, makedev(1, 3));
  EXPECT_EQ(null_st.st_mode & 07777, 0666u);
  const auto sda = lstat_of(d / "dev/sda");
  EXPECT_TRUE(S_ISBLK(sda.st_mode));
  EXPECT_EQ(sda.st_rdev, makedev(8, 0));
  EXPECT_EQ(sda.st_gid, 6u);
  EXPECT_TRUE(S_ISFIFO(lstat_of(d / "run/fifo").st_mode));
  EXPECT_EQ(lstat_of(d / "run/fifo").st_mode & 07777, 0620u);

  EXPECT_EQ(get_xattr(d / "etc/attrs", "user.note"), "kept");
  EXPECT_EQ(get_xattr(d / "etc/attrs", "trusted.pantry"), "kept too");
  EXPECT_EQ(get_xattr(d / "etc/attrs", "trusted.overlay.origin"), std::nullopt);
  EXPECT_EQ(get_xattr(d / "etc/attrs", "trusted.overlay.opaque"), std::nullopt);
  EXPECT_EQ(read_file(d / "caf\xc3\xa9"), "utf-8 name");
}

TEST_F(LayerStoreTest, ReadsGzipZstdAndUncompressedLayers) {
  open();
  int n = 0;
  for (auto [c, type] :
       {std::pair{compression::gzip, "application/vnd.oci.image.layer.v1.tar+gzip"},
        std::pair{compression::zstd, "application/vnd.oci.image.layer.v1.tar+zstd"},
        std::pair{compression::none, "application/vnd.oci.image.layer.v1.tar"},
        std::pair{compression::gzip, "application/vnd.docker.image.rootfs.diff.tar.gzip"}}) {
    const std::string content = "layer " + std::to_string(n++);
    // A file larger than the tar reader's blocks and the source's pieces.
    std::string big(3 << 20, 'z');
    big += content;
    const auto l = make_layer({file("f", content), file("big", big)}, c);
    auto lease = unpack(l, type);
    ASSERT_TRUE(ok(lease)) << type;
    EXPECT_EQ(read_file(lease->dir() / "f"), content) << type;
    EXPECT_EQ(read_file(lease->dir() / "big"), big) << type;
  }
  EXPECT_EQ(store_->stats().layers, 4u);
}

TEST_F(LayerStoreTest, SparseFilesKeepTheirHoles) {
  tar_entry sparse = file("sparse", "data");
  sparse.sparse_size = 2 << 20;
  sparse.data_offset = 1 << 20;
  open();
  auto lease = unpack(make_layer({sparse}));
  ASSERT_TRUE(ok(lease));
  const std::string content = read_file(lease->dir() / "sparse");
  ASSERT_EQ(content.size(), 2u << 20);
  EXPECT_EQ(content.substr(1 << 20, 4), "data");
  EXPECT_EQ(content.find_first_not_of('\0'), std::size_t{1} << 20);
  EXPECT_LT(lstat_of(lease->dir() / "sparse").st_blocks * 512, 512 << 10) << "the hole was written";
}

TEST_F(LayerStoreTest, UnpacksFromACachedBlob) {
  cache::options co;
  co.data_dir = dir_ / "cache";
  co.durable = false;
  auto cache_store = cache::store::open(co);
  ASSERT_TRUE(ok(cache_store));
  // Bigger than one cache chunk and than one read of the source.
  const auto noise = cache::testing_util::make_bytes(3 << 20, 11);
  const std::string content(reinterpret_cast<const char*>(noise.data()), noise.size());
  const auto l = make_layer({file("blob", content)});
  auto id =
      (*cache_store)->put_blob(cache::testing_util::as_bytes(l.blob), std::string(kGzipLayer));
  ASSERT_TRUE(ok(id));
  auto reader = (*cache_store)->open_blob(*id);
  ASSERT_TRUE(ok(reader));

  open();
  auto lease = store_->unpack(l.diff_id, kGzipLayer, blob_source(std::move(*reader)));
  ASSERT_TRUE(ok(lease));
  EXPECT_EQ(read_file(lease->dir() / "blob"), content);
}

TEST_F(LayerStoreTest, EmptyLayerUnpacksToAnEmptyDirectory) {
  open();
  const auto l = make_layer({});
  auto lease = unpack(l);
  ASSERT_TRUE(ok(lease));
  EXPECT_TRUE(names_in(lease->dir()).empty());
}

TEST_F(LayerStoreTest, RefusesMediaTypesThatAreNotTarLayers) {
  open();
  const auto l = make_layer({file("f", "x")});
  for (std::string_view type : {"application/vnd.oci.image.config.v1+json",
                                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted", ""}) {
    auto r = unpack(l, type);
    ASSERT_TRUE(fails_with(r, errc::invalid_argument)) << type;
    EXPECT_THAT(r.error().message, HasSubstr("media type \"" + std::string(type) + "\""));
  }
}

TEST_F(LayerStoreTest, RefusesWhatIsNotATar) {
  open();
  const std::string junk = compress(std::string(5000, 'j'), compression::gzip);
  auto r =
      store_->unpack(cache::digest::of(std::string(5000, 'j')), kGzipLayer, string_source(junk));
  ASSERT_TRUE(fails_with(r, errc::invalid_argument));
  EXPECT_THAT(r.error().message, HasSubstr("not a tar"));
  EXPECT_TRUE(names_in(root() / "tmp").empty());
}

TEST_F(LayerStoreTest, WhiteoutsBecomeCharDevicesAndOpaqueMarkersAnXattr) {
  tar_entry forged_opaque = dir("forged/");
  forged_opaque.xattrs = {{"trusted.overlay.opaque", "y"}};
  const auto l =
      make_layer({dir("etc/"), file("etc/.wh.gone", ""), file(".wh.top", ""), dir("opq/"),
                  file("opq/.wh..wh..opq", ""), file("opq/new", "n"), file("mine", "stays"),
                  file(".wh.mine", ""), forged_opaque, file("deep/er/.wh.x", ""),
                  file(".wh..wh.plnk", ""), file(".wh.again", ""), file("again/f", "recreated")});
  open();
  auto lease = unpack(l);
  ASSERT_TRUE(ok(lease));
  const fs::path d = lease->dir();
  EXPECT_TRUE(is_whiteout(d / "etc/gone"));
  EXPECT_TRUE(is_whiteout(d / "top"));
  EXPECT_TRUE(is_whiteout(d / "deep/er/x")) << "the whiteout's directories are made";
  EXPECT_FALSE(fs::exists(fs::symlink_status(d / "etc/.wh.gone")));
  EXPECT_EQ(get_xattr(d / "opq", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(fs::exists(fs::symlink_status(d / "opq/.wh..wh..opq")));
  EXPECT_EQ(read_file(d / "opq/new"), "n");
  // A whiteout hides lower layers only: this layer's own "mine" stays.
  EXPECT_EQ(read_file(d / "mine"), "stays");
  EXPECT_EQ(get_xattr(d / "forged", "trusted.overlay.opaque"), std::nullopt);
  EXPECT_FALSE(fs::exists(fs::symlink_status(d / ".wh..wh.plnk")));
  EXPECT_EQ(read_file(d / "again/f"), "recreated");
}

TEST_F(LayerStoreTest, RefusesDotDotAndAbsolutePaths) {
  open();
  expect_refused({file("ok", "1"), file("../x", "escape")}, "../x");
  expect_refused({file("a/../../x", "escape")}, "a/../../x");
  expect_refused({file("/x", "absolute")}, "/x");
}

TEST_F(LayerStoreTest, NeverWritesThroughASymlink) {
  open();
  expect_refused({symlink("a", outside().string()), file("a/pwned", "!")}, "a/pwned");
  expect_refused({symlink("a", "../../../../../../.."), file("a/x", "!")}, "a/x");
  expect_refused({symlink("a", outside().string()), dir("a/sub/")}, "a/sub");
  expect_refused({dir("d/"), symlink("d/s", outside().string()), file("d/s/x", "!")}, "d/s/x");
  // A hard link through a symlinked directory would reach the host's files.
  expect_refused({symlink("s", "/"), hardlink("h", "s/etc/passwd")}, "s/etc/passwd");
  EXPECT_TRUE(names_in(outside()).empty());

  // A later entry replaces a symlink of the same name instead of following it.
  const auto l = make_layer({symlink("a", outside().string() + "/f"), file("a", "replaced")});
  auto lease = unpack(l);
  ASSERT_TRUE(ok(lease));
  EXPECT_EQ(read_file(lease->dir() / "a"), "replaced");
  EXPECT_TRUE(names_in(outside()).empty());
}

TEST_F(LayerStoreTest, RefusesHardLinksLeavingTheLayer) {
  open();
  expect_refused({hardlink("h", "../outside/f")}, "../outside/f");
  expect_refused({hardlink("h", "/etc/passwd")}, "/etc/passwd");
  expect_refused({hardlink("h", "not/there")}, "not/there");
  expect_refused({dir("d/"), hardlink("h", "d")}, "d");
}

TEST_F(LayerStoreTest, WrongDiffIdIsRefusedAndLeavesNothing) {
  open();
  const auto real = make_layer({file("f", "content")});
  const auto claimed = cache::digest::of(std::string_view("something else"));
  auto r = store_->unpack(claimed, kGzipLayer, string_source(real.blob));
  ASSERT_TRUE(fails_with(r, errc::digest_mismatch));
  EXPECT_THAT(r.error().message, HasSubstr(claimed.str()));
  EXPECT_THAT(r.error().message, HasSubstr(real.diff_id.str()));
  EXPECT_EQ(names_in(root()), (std::vector<std::string>{"lock", "tmp"}));
  EXPECT_TRUE(names_in(root() / "tmp").empty());
  EXPECT_EQ(store_->stats().layers, 0u);
}

TEST_F(LayerStoreTest, TruncatedStreamIsRefused) {
  open();
  const auto noise = cache::testing_util::make_bytes(100000, 3);
  const auto l = make_layer(
      {file("f", std::string(reinterpret_cast<const char*>(noise.data()), noise.size()))});
  auto r =
      store_->unpack(l.diff_id, kGzipLayer, string_source(l.blob.substr(0, l.blob.size() / 2)));
  ASSERT_FALSE(r);
  EXPECT_TRUE(names_in(root() / "tmp").empty());
  EXPECT_TRUE(fails_with(store_->acquire(l.diff_id), errc::not_found));
}

TEST_F(LayerStoreTest, SourceErrorsAreReturnedAsTheyAre) {
  open();
  const auto l = make_layer({file("f", "x")});
  auto r = store_->unpack(l.diff_id, kGzipLayer, [](std::span<std::byte>) -> result<std::size_t> {
    return error(errc::cancelled, "job cancelled");
  });
  ASSERT_TRUE(fails_with(r, errc::cancelled));
  EXPECT_THAT(r.error().message, HasSubstr("job cancelled"));

  // The same in the middle of a file's data.
  const auto noise = cache::testing_util::make_bytes(1 << 20, 5);
  const auto big = make_layer(
      {file("f", std::string(reinterpret_cast<const char*>(noise.data()), noise.size()))});
  auto source = string_source(big.blob);
  std::size_t given = 0;
  r = store_->unpack(big.diff_id, kGzipLayer, [&](std::span<std::byte> buf) -> result<std::size_t> {
    if (given > big.blob.size() / 2) return error(errc::cancelled, "job cancelled");
    auto n = source(buf);
    if (n) given += *n;
    return n;
  });
  ASSERT_TRUE(fails_with(r, errc::cancelled));
  EXPECT_THAT(r.error().message, HasSubstr("job cancelled"));
  EXPECT_TRUE(names_in(root() / "tmp").empty());
}

TEST_F(LayerStoreTest, TheSourceIsReadToItsEndAndItsErrorThereCounts) {
  open();
  // Bytes after the gzip stream: the decompressor does not ask for them, the store still does
  // (a source checking the blob's digest sees every byte), and ignores them.
  const auto padded = make_layer({file("f", std::string(300000, 'x'))});
  const std::string blob = padded.blob + std::string(5000, '\0');
  std::size_t given = 0;
  bool ended = false;
  auto r = store_->unpack(
      padded.diff_id, kGzipLayer, [&](std::span<std::byte> buf) -> result<std::size_t> {
        const std::size_t n = std::min({buf.size(), std::size_t{1000}, blob.size() - given});
        std::memcpy(buf.data(), blob.data() + given, n);
        given += n;
        ended = ended || n == 0;
        return n;
      });
  ASSERT_TRUE(ok(r));
  EXPECT_EQ(given, blob.size());
  EXPECT_TRUE(ended);

  // A source that fails at its end (a digest that does not match) fails the unpack, even when
  // it fails only once, while gzip looks for a next member, and then says "end".
  const auto l = make_layer({file("g", "y")});
  auto source = string_source(l.blob);
  bool failed_once = false;
  r = store_->unpack(l.diff_id, kGzipLayer, [&](std::span<std::byte> buf) {
    auto n = source(buf);
    if (n && *n == 0 && !failed_once) {
      failed_once = true;
      return result<std::size_t>(error(errc::digest_mismatch, "blob digest"));
    }
    return n;
  });
  ASSERT_TRUE(fails_with(r, errc::digest_mismatch));
  EXPECT_THAT(r.error().message, HasSubstr("blob digest"));
  EXPECT_TRUE(names_in(root() / "tmp").empty());
  EXPECT_EQ(store_->stats().layers, 1u);
}

TEST_F(LayerStoreTest, AnUnpackedLayerIsNotReadAgain) {
  open();
  const auto l = make_layer({file("f", "x")});
  ASSERT_TRUE(ok(unpack(l)));
  std::atomic<int> calls = 0;
  auto again = store_->unpack(l.diff_id, kGzipLayer, string_source(l.blob, &calls));
  ASSERT_TRUE(ok(again));
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(store_->stats().unpacked, 1u);
}

TEST_F(LayerStoreTest, ConcurrentUnpacksOfOneLayerUnpackOnce) {
  open();
  const auto l = make_layer({file("f", std::string(200000, 'c'))});
  std::mutex m;
  std::condition_variable cv;
  bool started = false;
  bool go = false;
  auto first_source = string_source(l.blob);
  layer_source gated = [&](std::span<std::byte> buf) -> result<std::size_t> {
    std::unique_lock lk(m);
    started = true;
    cv.notify_all();
    cv.wait(lk, [&] { return go; });
    lk.unlock();
    return first_source(buf);
  };
  std::atomic<int> second_calls = 0;
  result<layer_lease> first = error(errc::io_error, "not run");
  result<layer_lease> second = error(errc::io_error, "not run");
  std::thread a([&] { first = store_->unpack(l.diff_id, kGzipLayer, gated); });
  {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return started; });
  }
  std::thread b([&] {
    second = store_->unpack(l.diff_id, kGzipLayer, string_source(l.blob, &second_calls));
  });
  // Let the first unpack go on only once the second waits for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_->stats().joined == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(store_->stats().joined, 1u);
  {
    std::lock_guard lk(m);
    go = true;
  }
  cv.notify_all();
  a.join();
  b.join();
  ASSERT_TRUE(ok(first));
  ASSERT_TRUE(ok(second));
  EXPECT_EQ(first->dir(), second->dir());
  EXPECT_EQ(second_calls.load(), 0);
  EXPECT_EQ(store_->stats().unpacked, 1u);
  EXPECT_EQ(store_->stats().in_use, 1u);
}

TEST_F(LayerStoreTest, AWaiterRetriesWhenTheUnpackItWaitedForFails) {
  open();
  const auto l = make_layer({file("f", "x")});
  std::mutex m;
  std::condition_variable cv;
  bool started = false;
  bool go = false;
  layer_source failing = [&](std::span<std::byte>) -> result<std::size_t> {
    std::unique_lock lk(m);
    started = true;
    cv.notify_all();
    cv.wait(lk, [&] { return go; });
    return error(errc::io_error, "upstream went away");
  };
  result<layer_lease> first = error(errc::io_error, "not run");
  result<layer_lease> second = error(errc::io_error, "not run");
  std::thread a([&] { first = store_->unpack(l.diff_id, kGzipLayer, failing); });
  {
    std::unique_lock lk(m);
    cv.wait(lk, [&] { return started; });
  }
  std::thread b([&] { second = store_->unpack(l.diff_id, kGzipLayer, string_source(l.blob)); });
  while (store_->stats().joined == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  {
    std::lock_guard lk(m);
    go = true;
  }
  cv.notify_all();
  a.join();
  b.join();
  EXPECT_TRUE(fails_with(first, errc::io_error));
  ASSERT_TRUE(ok(second));
  EXPECT_EQ(read_file(second->dir() / "f"), "x");
}

// Layers of one shape (one small file), so that they take the same room on disk.
test_layer numbered_layer(int n) {
  return make_layer({file("f", "layer " + std::to_string(n))});
}

TEST_F(LayerStoreTest, EvictsTheLeastRecentlyUsedUnusedLayers) {
  open();
  const auto l1 = numbered_layer(1), l2 = numbered_layer(2), l3 = numbered_layer(3);
  std::uint64_t size = 0;
  {
    auto a = unpack(l1);
    ASSERT_TRUE(ok(a));
    size = a->size();
  }
  ASSERT_TRUE(ok(unpack(l2)));
  ASSERT_EQ(store_->stats().bytes, 2 * size) << "the test's layers should be the same size";
  ASSERT_TRUE(ok(store_->acquire(l1.diff_id)));  // now l2 is the least recently used

  // Room for two layers and a half.
  open(2 * size + size / 2);
  EXPECT_EQ(store_->stats().layers, 2u);
  ASSERT_TRUE(ok(unpack(l3)));
  EXPECT_TRUE(fails_with(store_->acquire(l2.diff_id), errc::not_found));
  EXPECT_FALSE(fs::exists(root() / l2.diff_id.hex()));
  EXPECT_TRUE(ok(store_->acquire(l1.diff_id)));
  EXPECT_TRUE(ok(store_->acquire(l3.diff_id)));
  const auto s = store_->stats();
  EXPECT_EQ(s.layers, 2u);
  EXPECT_EQ(s.bytes, 2 * size);
  EXPECT_EQ(s.evicted, 1u);
  EXPECT_EQ(s.evicted_bytes, size);
}

TEST_F(LayerStoreTest, EvictionOrderSurvivesARestart) {
  open();
  const auto l1 = numbered_layer(1), l2 = numbered_layer(2), l3 = numbered_layer(3);
  ASSERT_TRUE(ok(unpack(l1)));
  ASSERT_TRUE(ok(unpack(l2)));
  ASSERT_TRUE(ok(unpack(l3)));
  ASSERT_TRUE(ok(store_->acquire(l1.diff_id)));  // l2 is now the oldest, then l3
  const std::uint64_t size = store_->stats().bytes / 3;

  open(size + size / 2);  // the limit is applied at open: only the newest stays
  EXPECT_EQ(store_->stats().layers, 1u);
  EXPECT_TRUE(ok(store_->acquire(l1.diff_id)));
  EXPECT_TRUE(fails_with(store_->acquire(l2.diff_id), errc::not_found));
  EXPECT_TRUE(fails_with(store_->acquire(l3.diff_id), errc::not_found));
}

TEST_F(LayerStoreTest, ALeasedLayerIsNeverEvicted) {
  open(1);  // any layer is over the limit
  const auto l1 = numbered_layer(1), l2 = numbered_layer(2);
  auto held = unpack(l1);
  ASSERT_TRUE(ok(held));
  ASSERT_TRUE(ok(unpack(l2)));  // its lease ends at once: evicted, l1 stays
  EXPECT_TRUE(fs::exists(held->dir() / "f"));
  EXPECT_TRUE(fails_with(store_->acquire(l2.diff_id), errc::not_found));
  auto s = store_->stats();
  EXPECT_EQ(s.layers, 1u);
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_GT(s.bytes, 1u) << "over the limit while in use";

  const fs::path d = held->dir();
  layer_lease copy = *held;  // copies share the lease
  held = error(errc::cancelled, "dropped");
  EXPECT_TRUE(fs::exists(d / "f"));
  copy = layer_lease();
  EXPECT_FALSE(fs::exists(d));
  EXPECT_EQ(store_->stats().layers, 0u);
  EXPECT_EQ(store_->stats().bytes, 0u);
}

TEST_F(LayerStoreTest, SecondOpenOfOneStoreIsRefused) {
  open();
  layer_store_options o;
  o.root = root();
  auto second = layer_store::open(o);
  ASSERT_TRUE(fails_with(second, errc::locked));
  EXPECT_THAT(second.error().message, HasSubstr(root().string()));
}

TEST_F(LayerStoreTest, ReopenAfterACrashRemovesPartialLayers) {
  open();
  const auto kept = numbered_layer(1);
  ASSERT_TRUE(ok(unpack(kept)));
  store_.reset();

  // A child process dies in the middle of an unpack, as a SIGKILLed pantry would.
  const auto noise = cache::testing_util::make_bytes(500000, 7);
  const auto big =
      make_layer({file("a", std::string(reinterpret_cast<const char*>(noise.data()), noise.size())),
                  file("b", "b")});
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    layer_store_options o;
    o.root = root();
    o.durable = false;
    auto s = layer_store::open(o);
    if (!s) ::_exit(2);
    auto source = string_source(big.blob);
    std::size_t given = 0;
    (void)(*s)->unpack(big.diff_id, kGzipLayer,
                       [&](std::span<std::byte> buf) -> result<std::size_t> {
                         if (given > big.blob.size() / 2) ::_exit(0);
                         auto n = source(buf);
                         if (n) given += *n;
                         return n;
                       });
    ::_exit(3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  ASSERT_FALSE(names_in(root() / "tmp").empty()) << "the crash should have left a partial layer";
  // And a layer directory that lost its size record.
  fs::create_directories(root() / big.diff_id.hex() / "diff");

  open();
  EXPECT_TRUE(names_in(root() / "tmp").empty());
  EXPECT_FALSE(fs::exists(root() / big.diff_id.hex()));
  EXPECT_TRUE(fails_with(store_->acquire(big.diff_id), errc::not_found));
  auto lease = store_->acquire(kept.diff_id);
  ASSERT_TRUE(ok(lease));
  EXPECT_EQ(read_file(lease->dir() / "f"), "layer 1");
  EXPECT_EQ(store_->stats().layers, 1u);
  EXPECT_EQ(store_->stats().bytes, lease->size());
}

// Runs `fn` on a thread of its own in a private mount namespace, which ends with the thread, so
// that nothing it mounts can outlive the test.
void in_mount_namespace(const std::function<void()>& fn) {
  std::thread t([&] {
    ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
        << std::strerror(errno);
    fn();
  });
  t.join();
}

// Mounts an overlay of `leases` (base first) at `merged`, upper and work on a fresh tmpfs at
// `scratch` (or read-only when `scratch` is empty), the lower dirs through a link directory as
// overlay_options names them.
void mount_overlay(const std::vector<layer_lease>& leases, const fs::path& links,
                   const fs::path& scratch, const fs::path& merged) {
  fs::create_directories(links);
  fs::create_directories(merged);
  const int links_fd = ::open(links.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(links_fd, 0) << std::strerror(errno);
  overlay_request req;
  for (const auto& l : leases)
    req.layers.push_back(l.dir().string());
  req.link_prefix = "/proc/self/fd/" + std::to_string(links_fd) + "/";
  if (!scratch.empty()) {
    fs::create_directories(scratch);
    ASSERT_EQ(::mount("tmpfs", scratch.c_str(), "tmpfs", 0, "size=16m"), 0) << std::strerror(errno);
    fs::create_directories(scratch / "upper");
    fs::create_directories(scratch / "work");
    req.upper_dir = (scratch / "upper").string();
    req.work_dir = (scratch / "work").string();
  }
  auto m = overlay_options(req);
  ASSERT_TRUE(ok(m));
  for (const auto& [name, target] : m->links)
    ASSERT_EQ(::symlinkat(target.c_str(), links_fd, name.c_str()), 0) << std::strerror(errno);
  const int r = ::mount("overlay", merged.c_str(), "overlay", 0, m->options.c_str());
  const int err = errno;
  ::close(links_fd);
  ASSERT_EQ(r, 0) << "mount -o " << m->options << ": " << std::strerror(err);
}

TEST_F(LayerStoreTest, OverlayOfUnpackedLayersShowsWhiteoutsAndOpaqueDirectories) {
  open();
  const auto lower =
      make_layer({dir("etc/"), file("etc/keep", "kept"), file("etc/gone", "old"), dir("opq/"),
                  file("opq/old", "hidden"), dir("opq/sub/"), file("opq/sub/deep", "hidden too")});
  const auto upper =
      make_layer({dir("etc/"), file("etc/.wh.gone", ""), dir("opq/"), file("opq/.wh..wh..opq", ""),
                  file("opq/new", "fresh"), file("added", "a")});
  auto l1 = unpack(lower);
  auto l2 = unpack(upper);
  ASSERT_TRUE(ok(l1));
  ASSERT_TRUE(ok(l2));
  const fs::path merged = dir_ / "merged";
  in_mount_namespace([&] {
    mount_overlay({*l1, *l2}, dir_ / "links", dir_ / "scratch", merged);
    if (::testing::Test::HasFatalFailure()) return;
    EXPECT_EQ(read_file(merged / "etc/keep"), "kept");
    EXPECT_FALSE(fs::exists(fs::symlink_status(merged / "etc/gone")));
    EXPECT_EQ(names_in(merged / "opq"), (std::vector<std::string>{"new"}));
    EXPECT_EQ(read_file(merged / "opq/new"), "fresh");
    EXPECT_EQ(read_file(merged / "added"), "a");
    // A write lands in the upper dir on the tmpfs, never in a layer.
    std::ofstream(merged / "etc/keep") << "changed";
    EXPECT_EQ(read_file(merged / "etc/keep"), "changed");
    EXPECT_EQ(read_file(l1->dir() / "etc/keep"), "kept");
    EXPECT_EQ(read_file(dir_ / "scratch/upper/etc/keep"), "changed");
    EXPECT_EQ(::umount(merged.c_str()), 0) << std::strerror(errno);
    EXPECT_EQ(::umount((dir_ / "scratch").c_str()), 0) << std::strerror(errno);
  });
}

TEST_F(LayerStoreTest, HundredLayersStackInOneMount) {
  open();
  std::vector<layer_lease> leases;
  for (int i = 0; i < 100; ++i) {
    auto l = unpack(make_layer(
        {file("f" + std::to_string(i), std::to_string(i)), file("top", std::to_string(i))}));
    ASSERT_TRUE(ok(l)) << i;
    leases.push_back(*l);
  }
  const fs::path merged = dir_ / "merged";
  in_mount_namespace([&] {
    mount_overlay(leases, dir_ / "links", {}, merged);
    if (::testing::Test::HasFatalFailure()) return;
    EXPECT_EQ(read_file(merged / "f0"), "0");
    EXPECT_EQ(read_file(merged / "f99"), "99");
    EXPECT_EQ(read_file(merged / "top"), "99");
    EXPECT_EQ(::umount(merged.c_str()), 0) << std::strerror(errno);
  });
}

}  // namespace
}  // namespace pantry::orchestrator::runner
