// The cache keys are a storage format: a cache written by one version of pantry is read by the
// next, so every key must stay byte-for-byte what the first version wrote.

#include "oci/keys.h"
#include "pypi/keys.h"

#include <gtest/gtest.h>

namespace pantry::registry {
namespace {

TEST(PypiKeysTest, EveryFormatIsTheOneCachesHold) {
  EXPECT_EQ(pypi::keys::page("pypi", "requests"), "pypi/page/pypi/requests");
  EXPECT_EQ(pypi::keys::root("internal"), "pypi/root/internal");
  EXPECT_EQ(pypi::keys::json("pypi", "flask", ""), "pypi/json/pypi/flask");
  EXPECT_EQ(pypi::keys::json("pypi", "flask", "3.0.0"), "pypi/json/pypi/flask/3.0.0");
  EXPECT_EQ(pypi::keys::file("pypi", "files.example/a/b-1.0-py3-none-any.whl"),
            "pypi/file/pypi/files.example/a/b-1.0-py3-none-any.whl");
  EXPECT_EQ(pypi::keys::metadata("pypi", "files.example/a/b-1.0-py3-none-any.whl"),
            "pypi/file/pypi/files.example/a/b-1.0-py3-none-any.whl.metadata");
}

TEST(PypiKeysTest, HostedFormatsAndTheirPrefixes) {
  EXPECT_EQ(pypi::keys::hosted_project("team", "demo-lib"), "pypi/hosted/team/demo-lib");
  EXPECT_EQ(pypi::keys::hosted_file("team", "demo-lib", "demo_lib-1.0.tar.gz"),
            "pypi/hosted-file/team/demo-lib/demo_lib-1.0.tar.gz");
  // A project scan never meets a file's key, nor a page's.
  const std::string file = pypi::keys::hosted_file("team", "x", "x-1.0.tar.gz");
  EXPECT_FALSE(file.starts_with(pypi::keys::kHostedPrefix)) << file;
  EXPECT_TRUE(file.starts_with(pypi::keys::kHostedFilePrefix)) << file;
  EXPECT_FALSE(pypi::keys::page("team", "x").starts_with(pypi::keys::kHostedPrefix));
}

TEST(PypiKeysTest, ScansAndParsesInvertTheBuilders) {
  const std::string page = pypi::keys::page("main", "zope-interface");
  EXPECT_TRUE(page.starts_with(pypi::keys::kPagePrefix)) << page;
  EXPECT_EQ(pypi::keys::project_of_page(page), "zope-interface");
  const std::string meta = pypi::keys::metadata("main", "h:8080/p/x.whl?a=1");
  EXPECT_EQ(pypi::keys::file_of_metadata(meta), pypi::keys::file("main", "h:8080/p/x.whl?a=1"));
}

TEST(OciKeysTest, EveryFormatIsTheOneCachesHold) {
  const std::string d = "sha256:" + std::string(64, 'a');
  const std::string proxied = oci::keys::proxied_repo("docker.io", "library/busybox");
  EXPECT_EQ(proxied, "docker.io/library/busybox");
  EXPECT_EQ(oci::keys::hosted_repo("local/app"), "hosted/local/app");
  EXPECT_EQ(oci::keys::tag(proxied, "1.36"), "oci/tag/docker.io/library/busybox:1.36");
  EXPECT_EQ(oci::keys::tag(proxied, ""), "oci/tag/docker.io/library/busybox:");
  EXPECT_EQ(oci::keys::manifest(proxied, d), "oci/manifest/docker.io/library/busybox@" + d);
  EXPECT_EQ(oci::keys::blob(proxied, d), "oci/blob/docker.io/library/busybox@" + d);
}

TEST(OciKeysTest, HostedPrefixesCoverHostedKeysOnly) {
  const std::string d = "sha256:" + std::string(64, 'b');
  const std::string hosted = oci::keys::hosted_repo("local/app");
  EXPECT_TRUE(oci::keys::manifest(hosted, d).starts_with(oci::keys::kHostedManifestPrefix));
  EXPECT_TRUE(oci::keys::blob(hosted, d).starts_with(oci::keys::kHostedBlobPrefix));
  const std::string proxied = oci::keys::proxied_repo("ghcr.io", "org/app");
  EXPECT_FALSE(oci::keys::manifest(proxied, d).starts_with(oci::keys::kHostedManifestPrefix));
  EXPECT_FALSE(oci::keys::blob(proxied, d).starts_with(oci::keys::kHostedBlobPrefix));
}

}  // namespace
}  // namespace pantry::registry
