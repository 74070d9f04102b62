#include "pantry/registry/pypi/file_path.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pantry::registry::pypi {
namespace {

template <class T>
::testing::AssertionResult ok(const result<T>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << r.error().message;
}

TEST(PypiFilePathTest, IsTheUrlWithoutItsScheme) {
  EXPECT_EQ(file_path_for("pypi",
                          "https://files.pythonhosted.org/packages/70/8e/0e2d8470/"
                          "requests-2.31.0-py3-none-any.whl"),
            "/files/pypi/files.pythonhosted.org/packages/70/8e/0e2d8470/"
            "requests-2.31.0-py3-none-any.whl");
  EXPECT_EQ(file_path_for("local", "http://127.0.0.1:8080/packages/a-1.0.tar.gz"),
            "/files/local/127.0.0.1:8080/packages/a-1.0.tar.gz");
  EXPECT_EQ(file_path_for("v6", "http://[::1]:8080/a-1.0.tar.gz"),
            "/files/v6/[::1]:8080/a-1.0.tar.gz");
}

TEST(PypiFilePathTest, KeepsEncodingAndQueryDropsUserinfoFragmentAndHostCase) {
  EXPECT_EQ(file_path_for("torch",
                          "https://user:secret@Download.PyTorch.org/whl/cpu/"
                          "torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl?token=a%2Fb#sha256=ab"),
            "/files/torch/download.pytorch.org/whl/cpu/"
            "torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl?token=a%2Fb");
}

TEST(PypiFilePathTest, RefusesWhatCannotBeAFilePath) {
  for (std::string_view url : {
           "ftp://host/a-1.0.tar.gz",
           "file:///etc/passwd",
           "https://host",
           "https://host/",
           "https://host/a//b.whl",
           "https://host/a/",
           "https://host/a/%2e%2e/b.whl",
           "https://host/a%2fb.whl",
           "https://host/a%5Cb.whl",
           "https://host/a%00b.whl",
           "https://host/a%0ab.whl",
           "https://ho%41st/a.whl",
           "https://host:0/a.whl",
           "https://host:99999/a.whl",
           "/relative/a.whl",
           "not a url",
       }) {
    EXPECT_EQ(file_path_for("pypi", url), "") << url;
  }
  for (std::string_view upstream : {"", ".", "..", "a/b", "a b", "a%2f"}) {
    EXPECT_EQ(file_path_for(upstream, "https://host/a.whl"), "") << upstream;
  }
}

TEST(PypiFilePathTest, ParseIsTheInverse) {
  for (std::string_view url : {
           "https://files.pythonhosted.org/packages/ab/cd/ef/pip-23.0.1-py3-none-any.whl",
           "http://127.0.0.1:8080/+f/2b2/0a5c9bdf8c9b8/pkg-1.0.tar.gz",
           "https://download.pytorch.org/whl/torch-2.0.0%2Bcpu-cp311-linux_x86_64.whl",
           "https://h/p/a-1.0.tar.gz?x=1&y=%2F",
           "http://[::1]:99/a.whl",
           "https://h/%E2%98%83-1.0.tar.gz",
       }) {
    const std::string path = file_path_for("up-1", url);
    ASSERT_FALSE(path.empty()) << url;
    auto parsed = parse_file_path(path);
    ASSERT_TRUE(ok(parsed)) << path;
    EXPECT_EQ(parsed->upstream, "up-1");
    EXPECT_EQ("/files/" + parsed->upstream + "/" + parsed->location, path);
    EXPECT_EQ(file_path_for("up-1", "https://" + parsed->location), path);
  }
}

TEST(PypiFilePathTest, ParseReadsAPercentEncodedPortSeparator) {
  // pip sends "127.0.0.1%3A8080" for the "127.0.0.1:8080" it was given.
  for (std::string_view target : {"/files/up/127.0.0.1%3A8080/packages/a-1.0.tar.gz",
                                  "/files/up/127.0.0.1%3a8080/packages/a-1.0.tar.gz"}) {
    auto parsed = parse_file_path(target);
    ASSERT_TRUE(ok(parsed)) << target;
    EXPECT_EQ(parsed->location, "127.0.0.1:8080/packages/a-1.0.tar.gz") << target;
  }
  // Only in the host: a "%3A" in the path stays as it is.
  auto in_path = parse_file_path("/files/up/h/p%3Aq/a-1.0.tar.gz");
  ASSERT_TRUE(ok(in_path));
  EXPECT_EQ(in_path->location, "h/p%3Aq/a-1.0.tar.gz");
}

TEST(PypiFilePathTest, OneFileHasOneLocationHoweverItsPathIsEscaped) {
  // pip escapes every byte of a path but the unreserved ones; indexes (and another pantry's
  // pages, whose links hold "127.0.0.1:8080" in their path) escape less, or in lower case.
  const std::string canonical = "/files/up/h/files/up/127.0.0.1%3A8080/a/torch-2.0%2Bcpu~1.whl";
  for (std::string_view url : {"http://h/files/up/127.0.0.1:8080/a/torch-2.0+cpu~1.whl",
                               "http://h/files/up/127.0.0.1%3a8080/a/torch-2.0%2bcpu%7E1.whl",
                               "http://h/files/up/127.0.0.1%3A8080/%61/torch-2.0%2Bcpu~1.whl"}) {
    EXPECT_EQ(file_path_for("up", url), canonical) << url;
  }
  for (std::string_view target :
       {"/files/up/h/files/up/127.0.0.1:8080/a/torch-2.0+cpu~1.whl",
        "/files/up/h/files/up/127.0.0.1%3A8080/a/torch-2.0%2bcpu~1.whl"}) {
    auto parsed = parse_file_path(target);
    ASSERT_TRUE(ok(parsed)) << target;
    EXPECT_EQ("/files/up/" + parsed->location, canonical) << target;
  }
  // The query is the upstream's business (a signed URL): kept as given.
  EXPECT_EQ(file_path_for("up", "http://h/a.whl?sig=a%2bb+c"), "/files/up/h/a.whl?sig=a%2bb+c");
}

TEST(PypiFilePathTest, ParseRejectsHostilePaths) {
  const std::vector<std::string_view> targets = {
      "/simple/pip/",
      "/files/",
      "/files/pypi",
      "/files/pypi/",
      "/files/pypi/host",
      "/files/pypi/host/",
      "/files/pypi/host/a/",
      "/files/pypi//a.whl",
      "/files/pypi/host//a.whl",
      "/files/pypi/host/../../etc/passwd",
      "/files/pypi/host/a/./b.whl",
      "/files/pypi/host/a/..",
      "/files/pypi/host/a/%2e%2e/b.whl",
      "/files/pypi/host/a/%2E./b.whl",
      "/files/pypi/host/a%2fb.whl",
      "/files/pypi/host/a%2Fb.whl",
      "/files/pypi/host/a%5cb.whl",
      "/files/pypi/host/a%00b.whl",
      "/files/pypi/host/a%1fb.whl",
      "/files/pypi/host/a\\b.whl",
      "/files/pypi/host/a b.whl",
      "/files/pypi/host/a\tb.whl",
      "/files/pypi/host/a\xc3\xa9.whl",
      std::string_view("/files/pypi/host/a\0b.whl", 24),
      "/files/pypi/host/a.whl#frag",
      "/files/pypi/host/a%zz.whl",
      "/files/pypi/host/a%.whl",
      "/files/../host/a.whl",
      "/files/./host/a.whl",
      "/files/py pi/host/a.whl",
      "/files/pypi/user@host/a.whl",
      "/files/pypi/user:pw@host/a.whl",
      "/files/pypi/%68ost/a.whl",
      "/files/pypi/host:99999/a.whl",
      "/files/pypi/host:x/a.whl",
      "/files/pypi/[::1/a.whl",
      "/files/pypi/host?x/a.whl",
  };
  for (std::string_view target : targets) {
    auto r = parse_file_path(target);
    ASSERT_FALSE(r) << "accepted " << target << " as " << r->upstream << " + " << r->location;
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
    EXPECT_NE(r.error().message.find("bad file path \"/"), std::string::npos) << r.error().message;
  }
}

TEST(PypiFilePathTest, ParseErrorsSayWhy) {
  auto r = parse_file_path("/files/pypi/host/a/%2e%2e/b.whl");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'..'"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("/files/pypi/host/a/%2e%2e/b.whl"), std::string::npos)
      << r.error().message;
  r = parse_file_path("/files/pypi/host/a%2fb.whl");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'/'"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace pantry::registry::pypi
