// The private URL helpers (registry/src/pypi/url.h), checked directly.

#include "pypi/url.h"

#include <gtest/gtest.h>

#include <boost/url/parse.hpp>

#include <string>
#include <utility>
#include <vector>

namespace pantry::registry::pypi::detail {
namespace {

std::string resolve(std::string_view base, std::string_view ref) {
  auto b = boost::urls::parse_uri(base);
  auto r = boost::urls::parse_uri_reference(ref);
  if (!b || !r) return "<parse error>";
  auto out = resolve_reference(*b, *r);
  return out ? std::string(out->buffer()) : "<no result>";
}

// RFC 3986 section 5.4, every example.
TEST(PypiUrlTest, ResolvesTheRfc3986Examples) {
  const std::vector<std::pair<std::string_view, std::string_view>> examples = {
      {"g:h", "g:h"},
      {"g", "http://a/b/c/g"},
      {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},
      {"/g", "http://a/g"},
      {"//g", "http://g"},
      {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q#s"},
      {"g#s", "http://a/b/c/g#s"},
      {"g?y#s", "http://a/b/c/g?y#s"},
      {";x", "http://a/b/c/;x"},
      {"g;x", "http://a/b/c/g;x"},
      {"g;x?y#s", "http://a/b/c/g;x?y#s"},
      {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},
      {"..", "http://a/b/"},
      {"../", "http://a/b/"},
      {"../g", "http://a/b/g"},
      {"../..", "http://a/"},
      {"../../", "http://a/"},
      {"../../g", "http://a/g"},
      {"../../../g", "http://a/g"},
      {"../../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {".g", "http://a/b/c/.g"},
      {"g..", "http://a/b/c/g.."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/./h", "http://a/b/c/g/h"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
      {"g;x=1/../y", "http://a/b/c/y"},
      {"g?y/./x", "http://a/b/c/g?y/./x"},
      {"g?y/../x", "http://a/b/c/g?y/../x"},
      {"g#s/./x", "http://a/b/c/g#s/./x"},
      {"g#s/../x", "http://a/b/c/g#s/../x"},
      {"http:g", "http:g"},
  };
  for (const auto& [ref, want] : examples) {
    EXPECT_EQ(resolve("http://a/b/c/d;p?q", ref), want) << "ref \"" << ref << "\"";
  }
}

TEST(PypiUrlTest, KeepsPercentEncodingAndReadsEncodedDots) {
  EXPECT_EQ(resolve("https://h/s/", "a%2Fb/c%2Bd%3F"), "https://h/s/a%2Fb/c%2Bd%3F");
  EXPECT_EQ(resolve("https://h/s%2fx/", "y"), "https://h/s%2fx/y");
  EXPECT_EQ(resolve("https://h/a/b/", "%2e%2E/.%2e/%2e./c/%2e/d"), "https://h/c/d");
  EXPECT_EQ(resolve("HTTPS://H/a", "b"), "https://H/b");
  EXPECT_EQ(resolve("https://h", "x"), "https://h/x");
}

TEST(PypiUrlTest, CleansHrefsAsBrowsersDo) {
  EXPECT_EQ(clean_href("  a b\t\n.whl  "), "a%20b.whl");
  EXPECT_EQ(clean_href("caf\xc3\xa9.whl"), "caf%C3%A9.whl");
  EXPECT_EQ(clean_href("a%zz%4"), "a%25zz%254");
  EXPECT_EQ(clean_href("a%41"), "a%41");
  EXPECT_EQ(clean_href("x#sha256=1#2"), "x#sha256=1%232");
  EXPECT_EQ(clean_href("http://[::1]:80/a[1]"), "http://[::1]:80/a%5B1%5D");
  EXPECT_EQ(clean_href("a\"<>\\^`{|}b"), "a%22%3C%3E%5C%5E%60%7B%7C%7Db");
}

TEST(PypiUrlTest, FileLocations) {
  const auto location = [](std::string_view url) -> std::string {
    auto u = boost::urls::parse_uri(url);
    if (!u) return "<parse error>";
    auto l = file_location_of(*u);
    return l ? *l : "error: " + l.error().message;
  };
  EXPECT_EQ(location("https://Files.Example:8443/a/b.whl?x=1"), "files.example:8443/a/b.whl?x=1");
  EXPECT_EQ(location("http://h:/a.whl"), "h/a.whl");
  EXPECT_EQ(location("http://u:p@h/a.whl"), "h/a.whl");
  EXPECT_EQ(location("ftp://h/a.whl"), "error: scheme \"ftp\" is not http or https");
  EXPECT_EQ(location("http://h/a//b.whl"), "error: an empty path segment");
  EXPECT_EQ(location("http://h/a/%2E%2E/b.whl"), "error: a '.' or '..' path segment");
  EXPECT_EQ(location("http://h/a%2Fb.whl"), "error: an encoded '/' in a path segment");
  EXPECT_EQ(location("http://h/a%7fb.whl"), "error: a control character in a path segment");
  EXPECT_EQ(location("http://[v1.x]/a.whl"), "error: IPvFuture host");
  EXPECT_EQ(location("http:/a.whl"), "error: it has no host");
}

}  // namespace
}  // namespace pantry::registry::pypi::detail
