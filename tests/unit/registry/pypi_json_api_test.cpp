#include "pantry/registry/pypi/file_path.h"
#include "pantry/registry/pypi/json_api.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>
#include <vector>

namespace pantry::registry::pypi {
namespace {

namespace json = boost::json;

template <class T>
::testing::AssertionResult ok(const result<T>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << r.error().message;
}

json::value json_of(std::string_view s) {
  boost::system::error_code ec;
  auto v = json::parse(s, ec);
  EXPECT_FALSE(ec) << s;
  return v;
}

std::string rewrite(const json_api_file& f) {
  return file_path_for("pypi", f.url);
}

// Shaped like https://pypi.org/pypi/sampleproject/json (warehouse's documentation).
constexpr std::string_view kProject = R"({
  "info": {
    "author": "The Python Packaging Authority",
    "classifiers": ["Development Status :: 3 - Alpha", "Programming Language :: Python :: 3"],
    "description": "A \"sample\" \u00e9 project\n",
    "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
    "home_page": "https://github.com/pypa/sampleproject",
    "package_url": "https://pypi.org/project/sampleproject/",
    "project_urls": {"Download": "UNKNOWN", "Homepage": "https://github.com/pypa/sampleproject"},
    "requires_dist": null,
    "version": "1.2.0",
    "yanked": false,
    "yanked_reason": null
  },
  "last_serial": 1591652,
  "releases": {
    "1.0": [],
    "1.2.0": [
      {
        "comment_text": "",
        "digests": {"md5": "bab8eb22e6710eddae3c6c7ac3453bd9",
                    "sha256": "7a7a8b91086deccc54cac8d631e33f6a0e232ce5775c6be3dc44f86c2154019d"},
        "downloads": -1,
        "filename": "sampleproject-1.2.0-py2.py3-none-any.whl",
        "has_sig": false,
        "packagetype": "bdist_wheel",
        "python_version": "2.7",
        "size": 3795,
        "upload_time_iso_8601": "2015-06-14T14:38:05.093750Z",
        "url": "https://files.pythonhosted.org/packages/30/52/547eb3719d0e872bdd6fe3ab60cef92596f95262e925e1943f68f840df88/sampleproject-1.2.0-py2.py3-none-any.whl",
        "yanked": false,
        "yanked_reason": null
      },
      {
        "filename": "sampleproject-1.2.0.tar.gz",
        "size": 3148,
        "url": "../../packages/eb/45/sampleproject-1.2.0.tar.gz"
      }
    ]
  },
  "urls": [
    {
      "filename": "sampleproject-1.2.0-py2.py3-none-any.whl",
      "size": 3795,
      "url": "https://files.pythonhosted.org/packages/30/52/547eb3719d0e872bdd6fe3ab60cef92596f95262e925e1943f68f840df88/sampleproject-1.2.0-py2.py3-none-any.whl"
    },
    {"filename": "weird", "url": "ftp://example.com/weird.tar.gz"},
    {"filename": "no url"},
    "not an object"
  ],
  "vulnerabilities": [],
  "ratio": 0.5,
  "big": 12345678901234567890
})";

TEST(PypiJsonApiTest, RewritesFileUrlsAndKeepsTheRest) {
  auto out = rewrite_json_api(kProject, "https://pypi.org/pypi/sampleproject/json", rewrite);
  ASSERT_TRUE(ok(out));
  json::value got = json_of(*out);
  json::value want = json_of(kProject);
  const std::string wheel =
      "/files/pypi/files.pythonhosted.org/packages/30/52/"
      "547eb3719d0e872bdd6fe3ab60cef92596f95262e925e1943f68f840df88/"
      "sampleproject-1.2.0-py2.py3-none-any.whl";
  want.at("releases").at("1.2.0").at(0).as_object()["url"] = wheel;
  want.at("releases").at("1.2.0").at(1).as_object()["url"] =
      "/files/pypi/pypi.org/packages/eb/45/sampleproject-1.2.0.tar.gz";
  want.at("urls").at(0).as_object()["url"] = wheel;
  EXPECT_EQ(got, want) << *out;
  // Key order is kept too.
  EXPECT_LT(out->find("\"info\""), out->find("\"last_serial\"")) << *out;
  EXPECT_LT(out->find("\"releases\""), out->find("\"urls\"")) << *out;
}

TEST(PypiJsonApiTest, RewritesAVersionPage) {
  constexpr std::string_view body = R"({"info":{"version":"1.0"},"urls":[
      {"url":"https://files.example/a/x-1.0.tar.gz#sha256=abcd","filename":"x-1.0.tar.gz"}]})";
  auto out = rewrite_json_api(body, "https://pypi.example/pypi/x/1.0/json", rewrite);
  ASSERT_TRUE(ok(out));
  EXPECT_EQ(json_of(*out), json_of(R"({"info":{"version":"1.0"},"urls":[
      {"url":"/files/pypi/files.example/a/x-1.0.tar.gz#sha256=abcd","filename":"x-1.0.tar.gz"}]})"))
      << *out;
}

TEST(PypiJsonApiTest, TellsTheRewriterEachFilesHashSizeAndName) {
  constexpr std::string_view body = R"({"urls":[
      {"url":"../../x-1.0.tar.gz#sha256=ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
       "filename":"x-1.0.tar.gz","size":12},
      {"url":"https://f.example/x-1.0-py3-none-any.whl",
       "digests":{"md5":"00","sha256":"1111111111111111111111111111111111111111111111111111111111111111"}},
      {"url":"https://f.example/x-1.0.zip","digests":{"sha256":"not hex"},"size":-1}]})";
  std::vector<json_api_file> seen;
  auto out =
      rewrite_json_api(body, "https://pypi.example/pypi/x/json", [&](const json_api_file& f) {
        seen.push_back(f);
        return std::string("/r/") + f.filename;
      });
  ASSERT_TRUE(ok(out));
  ASSERT_EQ(seen.size(), 3u) << *out;
  EXPECT_EQ(seen[0].url, "https://pypi.example/x-1.0.tar.gz");
  EXPECT_EQ(seen[0].filename, "x-1.0.tar.gz");
  EXPECT_EQ(seen[0].sha256.value_or("none"),
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(seen[0].size.value_or(0), 12u);
  EXPECT_EQ(seen[1].filename, "x-1.0-py3-none-any.whl");
  EXPECT_EQ(seen[1].sha256.value_or("none"), std::string(64, '1'));
  EXPECT_FALSE(seen[1].size);
  EXPECT_FALSE(seen[2].sha256) << *seen[2].sha256;
  EXPECT_FALSE(seen[2].size);
  // The fragment stays on the rewritten URL.
  EXPECT_NE(out->find("\"/r/x-1.0.tar.gz#sha256=ABCDEF"), std::string::npos) << *out;
}

TEST(PypiJsonApiTest, Errors) {
  for (std::string_view body : {"", "[]", "{\"a\":", "\"x\"", "{} {}"}) {
    auto out = rewrite_json_api(body, "https://pypi.org/pypi/x/json", rewrite);
    ASSERT_FALSE(out) << body;
    EXPECT_TRUE(out.error().is(errc::invalid_argument)) << out.error().message;
    EXPECT_NE(out.error().message.find("https://pypi.org/pypi/x/json"), std::string::npos)
        << out.error().message;
  }
  EXPECT_FALSE(rewrite_json_api("{}", "not absolute", rewrite));
  EXPECT_TRUE(
      ok(rewrite_json_api(R"({"urls":{},"releases":[]})", "https://h/pypi/x/json", rewrite)));
}

}  // namespace
}  // namespace pantry::registry::pypi
