#include "pantry/orchestrator/runner/overlay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pantry::orchestrator::runner {
namespace {

using ::testing::HasSubstr;

// Where the layer store keeps unpacked layers: by diff ID, so each path is long.
std::vector<std::string> digest_named_layers(std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string hex = std::to_string(i);
    hex = std::string(64 - hex.size(), 'a') + hex;
    out.push_back("/var/lib/pantry/data/layers/sha256/" + hex + "/diff");
  }
  return out;
}

TEST(OverlayTest, LinkNamesAreShort) {
  EXPECT_EQ(layer_link_name(0), "0");
  EXPECT_EQ(layer_link_name(9), "9");
  EXPECT_EQ(layer_link_name(10), "a");
  EXPECT_EQ(layer_link_name(35), "z");
  EXPECT_EQ(layer_link_name(36), "10");
  EXPECT_EQ(layer_link_name(499), "dv");
}

TEST(OverlayTest, OptionsStackTopLayerFirst) {
  overlay_request r;
  r.layers = {"/l/base", "/l/mid", "/l/top"};
  r.link_prefix = "/proc/self/fd/7/";
  r.upper_dir = "/run/pantry/job1/upper";
  r.work_dir = "/run/pantry/job1/work";
  auto m = overlay_options(r);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->options,
            "lowerdir=/proc/self/fd/7/2:/proc/self/fd/7/1:/proc/self/fd/7/0,"
            "upperdir=/run/pantry/job1/upper,workdir=/run/pantry/job1/work,"
            "redirect_dir=off,metacopy=off,index=off");
  ASSERT_EQ(m->links.size(), 3u);
  EXPECT_EQ(m->links[0], (std::pair<std::string, std::string>{"0", "/l/base"}));
  EXPECT_EQ(m->links[2], (std::pair<std::string, std::string>{"2", "/l/top"}));

  r.link_prefix = "";  // mounting from inside the link directory
  EXPECT_EQ(overlay_options(r)->options.substr(0, 16), "lowerdir=2:1:0,u");
}

TEST(OverlayTest, HundredLayersFitInAPage) {
  const auto layers = digest_named_layers(100);
  std::size_t naive = 0;
  for (const auto& l : layers)
    naive += l.size() + 1;
  ASSERT_GT(naive, kMountDataLimit) << "the digest-named paths alone would not fit";

  overlay_request r;
  r.layers = layers;
  r.upper_dir = "/var/lib/pantry/data/run/0123456789abcdef/upper";
  r.work_dir = "/var/lib/pantry/data/run/0123456789abcdef/work";
  for (const char* prefix : {"/proc/self/fd/1023/", ""}) {
    r.link_prefix = prefix;
    auto m = overlay_options(r);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_LE(m->options.size() + 1, kMountDataLimit) << prefix;
    EXPECT_EQ(m->links.size(), 100u);
    EXPECT_EQ(m->links.back().second, layers.back());
  }
  // Through a descriptor, about 170 layers fit (docker stops images at 127); from inside the
  // link directory, the most overlayfs stacks.
  r.link_prefix = "/proc/self/fd/1023/";
  r.layers = digest_named_layers(150);
  EXPECT_TRUE(overlay_options(r));
  r.link_prefix = "";
  r.layers = digest_named_layers(kMaxOverlayLayers);
  auto most = overlay_options(r);
  ASSERT_TRUE(most) << most.error().message;
  EXPECT_LT(most->options.size(), kMountDataLimit);
}

TEST(OverlayTest, TooLongOptionsAreRefusedWithTheirLength) {
  overlay_request r;
  r.layers = digest_named_layers(300);
  r.link_prefix = "/a/very/long/link/directory/path/that/was/not/a/good/idea/";
  r.upper_dir = "/u";
  r.work_dir = "/w";
  auto m = overlay_options(r);
  ASSERT_FALSE(m);
  EXPECT_THAT(m.error().message,
              HasSubstr("bytes for 300 layers, more than mount(2) takes (4095)"));
}

TEST(OverlayTest, RefusesBadRequests) {
  auto refuse = [](overlay_request r, const char* message) {
    auto m = overlay_options(r);
    ASSERT_FALSE(m) << message;
    EXPECT_THAT(m.error().message, HasSubstr(message));
    EXPECT_TRUE(m.error().is(errc::invalid_argument));
  };
  overlay_request ok{{"/l/a", "/l/b"}, "/proc/self/fd/3/", "/u", "/w"};
  ASSERT_TRUE(overlay_options(ok));
  {
    auto r = ok;
    r.layers.clear();
    refuse(r, "no layers");
  }
  {
    auto r = ok;
    r.layers = digest_named_layers(kMaxOverlayLayers + 1);
    refuse(r, "501 layers, more than overlayfs's 500");
  }
  {
    auto r = ok;
    r.layers[1] = "relative/dir";
    refuse(r, "layer directory \"relative/dir\" is not absolute");
  }
  {
    auto r = ok;
    r.upper_dir = "/u,lowerdir=/etc";
    refuse(r, "without ',', ':' or '\\'");
  }
  {
    auto r = ok;
    r.work_dir = "";
    refuse(r, "must both be absolute");
  }
  {
    auto r = ok;
    r.link_prefix = "/proc/self/fd/3:/x/";
    refuse(r, "link prefix");
  }
  {
    auto r = ok;
    r.upper_dir = r.work_dir = "";
    auto m = overlay_options(r);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(
        m->options,
        "lowerdir=/proc/self/fd/3/1:/proc/self/fd/3/0,redirect_dir=off,metacopy=off,index=off");
    r.layers.pop_back();
    refuse(r, "a read-only stack needs at least two layers");
  }
}

layer_entry classify_ok(std::string_view path) {
  auto e = classify_entry(path);
  EXPECT_TRUE(e) << path << ": " << e.error().message;
  return e ? *e : layer_entry{};
}

TEST(LayerEntryTest, RegularPathsAreNormalized) {
  for (auto [in, out] : std::vector<std::pair<std::string, std::string>>{
           {"usr/bin/python3", "usr/bin/python3"},
           {"./usr/bin/python3", "usr/bin/python3"},
           {"usr//lib/./x/", "usr/lib/x"},
           {"etc/", "etc"},
           {"./", ""},
           {".", ""},
           {"a.wh.b", "a.wh.b"},  // only a name that begins with .wh. is special
           {"usr/share/doc/.wh", "usr/share/doc/.wh"},
       }) {
    auto e = classify_ok(in);
    EXPECT_EQ(e.kind, entry_kind::regular) << in;
    EXPECT_EQ(e.path, out) << in;
  }
}

TEST(LayerEntryTest, WhiteoutsAndOpaqueDirectories) {
  auto w = classify_ok("usr/lib/python3/dist-packages/.wh.six.py");
  EXPECT_EQ(w.kind, entry_kind::whiteout);
  EXPECT_EQ(w.path, "usr/lib/python3/dist-packages/six.py");
  auto top = classify_ok("./.wh.tmp");
  EXPECT_EQ(top.kind, entry_kind::whiteout);
  EXPECT_EQ(top.path, "tmp");
  auto dotted = classify_ok("etc/.wh..bashrc");  // a whiteout of the dotfile .bashrc
  EXPECT_EQ(dotted.kind, entry_kind::whiteout);
  EXPECT_EQ(dotted.path, "etc/.bashrc");

  auto opq = classify_ok("./var/cache/apt/.wh..wh..opq");
  EXPECT_EQ(opq.kind, entry_kind::opaque);
  EXPECT_EQ(opq.path, "var/cache/apt");
  auto root_opq = classify_ok(".wh..wh..opq");
  EXPECT_EQ(root_opq.kind, entry_kind::opaque);
  EXPECT_EQ(root_opq.path, "");

  for (const char* aufs :
       {".wh..wh.plnk", ".wh..wh.aufs", ".wh..wh.plnk/123.456", "a/.wh..wh.orph"}) {
    EXPECT_EQ(classify_ok(aufs).kind, entry_kind::ignored) << aufs;
  }
}

TEST(LayerEntryTest, UnsafePathsAreRefusedByName) {
  for (auto [path, why] : std::vector<std::pair<std::string, std::string>>{
           {"../etc/passwd", "has a \"..\" component"},
           {"usr/../../etc/shadow", "has a \"..\" component"},
           {"a/../b", "has a \"..\" component"},
           {"/etc/passwd", "is absolute"},
           {std::string("etc/pass\0wd", 11), "holds a NUL byte"},
           {"dir/.wh.", "is a whiteout of \"\""},
           {"dir/.wh..", "is a whiteout of \".\""},
           {"dir/.wh...", "is a whiteout of \"..\""},
           {"dir/.wh.gone/file", "uses a whiteout name as a directory"},
       }) {
    auto e = classify_entry(path);
    ASSERT_FALSE(e) << path;
    EXPECT_TRUE(e.error().is(errc::invalid_argument));
    EXPECT_THAT(e.error().message, HasSubstr(why)) << path;
    if (path.find('\0') == std::string::npos) {
      EXPECT_THAT(e.error().message, HasSubstr("\"" + path + "\"")) << "names the path";
    }
  }
}

TEST(LayerEntryTest, HardLinkTargets) {
  EXPECT_EQ(*hard_link_target("usr/bin/python3.11"), "usr/bin/python3.11");
  EXPECT_EQ(*hard_link_target("./usr//bin/perl"), "usr/bin/perl");
  for (auto [target, why] : std::vector<std::pair<std::string, std::string>>{
           {"../../etc/shadow", "has a \"..\" component (it must stay inside the layer)"},
           {"/etc/shadow", "is absolute"},
           {"./", "is the layer's root"},
           {"usr/.wh.x", "is a whiteout name"},
       }) {
    auto t = hard_link_target(target);
    ASSERT_FALSE(t) << target;
    EXPECT_THAT(t.error().message, HasSubstr("hard link target \"" + target + "\" " + why));
  }
}

TEST(LayerEntryTest, OverlayXattrsAreDropped) {
  EXPECT_FALSE(keep_xattr("trusted.overlay.opaque"));
  EXPECT_FALSE(keep_xattr("trusted.overlay.redirect"));
  EXPECT_FALSE(keep_xattr("trusted.overlay.origin"));
  EXPECT_TRUE(keep_xattr("security.capability"));
  EXPECT_TRUE(keep_xattr("user.mime_type"));
  EXPECT_TRUE(keep_xattr("trusted.other"));
}

}  // namespace
}  // namespace pantry::orchestrator::runner
