#include "pantry/registry/pypi/file_path.h"
#include "pantry/registry/pypi/simple.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <ostream>
#include <string>

namespace pantry::registry::pypi {

void PrintTo(const file_entry& f, std::ostream* os) {
  *os << "{filename=\"" << f.filename << "\", url=\"" << f.url << "\", hashes={";
  for (const auto& [k, v] : f.hashes)
    *os << k << ":" << v << " ";
  *os << "}";
  if (f.requires_python) *os << ", requires_python=\"" << *f.requires_python << "\"";
  if (f.yanked) *os << ", yanked=\"" << *f.yanked << "\"";
  if (f.core_metadata) {
    *os << ", core_metadata={";
    for (const auto& [k, v] : *f.core_metadata)
      *os << k << ":" << v << " ";
    *os << "}";
  }
  if (f.size) *os << ", size=" << *f.size;
  if (f.upload_time) *os << ", upload_time=" << *f.upload_time;
  *os << "}";
}

namespace {

template <class T>
::testing::AssertionResult ok(const result<T>& r) {
  if (r) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "failed: " << r.error().message;
}

template <class T>
::testing::AssertionResult fails_mentioning(const result<T>& r, std::string_view what) {
  if (r) return ::testing::AssertionFailure() << "succeeded; expected an error about " << what;
  if (!r.error().is(errc::invalid_argument)) {
    return ::testing::AssertionFailure() << "wrong code: " << r.error().message;
  }
  if (r.error().message.find(what) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message \"" << r.error().message << "\" does not mention \"" << what << "\"";
  }
  return ::testing::AssertionSuccess();
}

constexpr std::string_view kSha1 =
    "813202ace4d9301a3c00740c700e012fb9f3f8c73ddcfe02ab558a8df6f175fd";
constexpr std::string_view kSha2 =
    "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f";
constexpr std::string_view kSha3 =
    "942c5a758f98d790eaed1a29cb6eefc7ffb0d1cf7af05c3d2791656dbd6ad1e1";
constexpr std::string_view kMetaSha =
    "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";

// Shaped like https://pypi.org/simple/requests/ (2024).
const std::string kPypiPage =
    std::string(R"(<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.1">
    <title>Links for requests</title>
  </head>
  <body>
    <h1>Links for requests</h1>
    <a href="https://files.pythonhosted.org/packages/ba/bb/dfa0141a32d773c47e4dede1a617c59a23b74dd302e449cf85413fc96bc4/requests-0.2.0.tar.gz#sha256=)") +
    std::string(kSha1) + R"(" >requests-0.2.0.tar.gz</a><br />
    <a href="https://files.pythonhosted.org/packages/70/8e/0e2d847013cb52cd35b38c009bb167a1a26b2ce6cd6965bf26b47bc0bf44/requests-2.31.0-py3-none-any.whl#sha256=)" +
    std::string(kSha2) + R"(" data-requires-python="&gt;=3.7" data-dist-info-metadata="sha256=)" +
    std::string(kMetaSha) + R"(" data-core-metadata="sha256=)" + std::string(kMetaSha) +
    R"(">requests-2.31.0-py3-none-any.whl</a><br />
    <a href="https://files.pythonhosted.org/packages/24/e8/x/requests-2.32.0-py3-none-any.whl#sha256=)" +
    std::string(kSha3) +
    R"(" data-requires-python="&gt;=3.8" data-yanked="Yanked due to conflicts with CVE-2024-35195 mitigation">requests-2.32.0-py3-none-any.whl</a><br />
    <a href="https://files.pythonhosted.org/packages/aa/bb/y/requests-2.32.1.tar.gz#sha256=)" +
    std::string(kSha3) + R"(" data-yanked="">requests-2.32.1.tar.gz</a><br />
    </body>
</html>
<!--SERIAL 23456789-->
)";

const std::string kPypiUrl = "https://pypi.org/simple/requests/";

std::string rewrite_to_pantry(std::string_view url) {
  return "http://pantry:8585" + file_path_for("pypi", url);
}

TEST(PypiSimpleHtmlTest, ReadsAPypiOrgPage) {
  auto page = parse_project_html(kPypiPage, kPypiUrl);
  ASSERT_TRUE(ok(page));
  EXPECT_EQ(page->name, "requests");
  EXPECT_EQ(page->api_version, "1.1");
  EXPECT_TRUE(page->from_html);
  EXPECT_TRUE(page->versions.empty());
  ASSERT_EQ(page->files.size(), 4u);

  const file_entry& sdist = page->files[0];
  EXPECT_EQ(sdist.filename, "requests-0.2.0.tar.gz");
  EXPECT_EQ(sdist.url,
            "https://files.pythonhosted.org/packages/ba/bb/"
            "dfa0141a32d773c47e4dede1a617c59a23b74dd302e449cf85413fc96bc4/requests-0.2.0.tar.gz");
  EXPECT_EQ(sdist.hashes, (std::map<std::string, std::string>{{"sha256", std::string(kSha1)}}));
  ASSERT_TRUE(sdist.sha256().has_value());
  EXPECT_EQ(sdist.sha256()->hex(), kSha1);
  EXPECT_EQ(sdist.requires_python, std::nullopt);
  EXPECT_EQ(sdist.yanked, std::nullopt);
  EXPECT_EQ(sdist.core_metadata, std::nullopt);
  EXPECT_EQ(sdist.size, std::nullopt);

  const file_entry& wheel = page->files[1];
  EXPECT_EQ(wheel.filename, "requests-2.31.0-py3-none-any.whl");
  EXPECT_EQ(wheel.requires_python, ">=3.7");
  EXPECT_EQ(wheel.core_metadata,
            (std::map<std::string, std::string>{{"sha256", std::string(kMetaSha)}}));
  EXPECT_EQ(wheel.yanked, std::nullopt);

  EXPECT_EQ(page->files[2].yanked, "Yanked due to conflicts with CVE-2024-35195 mitigation");
  EXPECT_EQ(page->files[2].requires_python, ">=3.8");
  EXPECT_EQ(page->files[3].yanked, "");
}

TEST(PypiSimpleHtmlTest, ResolvesRelativeHrefsLikeDevpiAndStaticMirrors) {
  // devpi's "+f" links and the layout of make_pypi_upstream.py (../../packages/...).
  const std::string body = std::string(R"(<html><body>
<a href="../../+f/2b2/0a5c9bdf8c9b8/Pantry_Demo.Util-1.0.tar.gz#sha256=)") +
                           std::string(kSha1) + R"(">Pantry_Demo.Util-1.0.tar.gz</a>
<a href="../../packages/ab/cd/pantry_demo_util-2.0-py3-none-any.whl#md5=0123456789ABCDEF0123456789abcdef">x</a>
<a href="/root/pypi/+f/pantry_demo_util-0.9-py3-none-any.whl">pantry_demo_util-0.9-py3-none-any.whl</a>
<a href="pantry_demo_util-0.1.zip">pantry_demo_util-0.1.zip</a>
</body></html>)";
  auto page = parse_project_html(body, "http://127.0.0.1:3141/root/pypi/+simple/pantry-demo-util/");
  ASSERT_TRUE(ok(page));
  EXPECT_EQ(page->name, "pantry-demo-util");
  EXPECT_EQ(page->api_version, "1.0");
  ASSERT_EQ(page->files.size(), 4u);
  EXPECT_EQ(page->files[0].url,
            "http://127.0.0.1:3141/root/pypi/+f/2b2/0a5c9bdf8c9b8/Pantry_Demo.Util-1.0.tar.gz");
  EXPECT_EQ(page->files[0].filename, "Pantry_Demo.Util-1.0.tar.gz");
  EXPECT_EQ(page->files[1].url,
            "http://127.0.0.1:3141/root/pypi/packages/ab/cd/pantry_demo_util-2.0-py3-none-any.whl");
  EXPECT_EQ(page->files[1].filename, "pantry_demo_util-2.0-py3-none-any.whl");
  EXPECT_EQ(page->files[1].hashes,
            (std::map<std::string, std::string>{{"md5", "0123456789abcdef0123456789abcdef"}}));
  EXPECT_EQ(page->files[1].sha256(), std::nullopt);
  EXPECT_EQ(page->files[2].url,
            "http://127.0.0.1:3141/root/pypi/+f/pantry_demo_util-0.9-py3-none-any.whl");
  EXPECT_EQ(page->files[3].url,
            "http://127.0.0.1:3141/root/pypi/+simple/pantry-demo-util/pantry_demo_util-0.1.zip");
}

TEST(PypiSimpleHtmlTest, KeepsPercentEncodingAsUpstreamGivesIt) {
  // download.pytorch.org (S3) needs "%2B" for '+'; decoding it breaks the download.
  const std::string body =
      R"(<a href="/whl/cpu/torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl#sha256=ab">t</a>)"
      R"(<a href="a%2Fb-1.0.tar.gz">encoded slash: refused</a>)"
      R"(<a href="%7Euser/x%20y-1.0.tar.gz?v=%2F">kept</a>)";
  auto page = parse_project_html(body, "https://download.pytorch.org/whl/cpu/torch/");
  ASSERT_TRUE(ok(page));
  ASSERT_EQ(page->files.size(), 2u);
  EXPECT_EQ(page->files[0].url,
            "https://download.pytorch.org/whl/cpu/torch-2.0.0%2Bcpu-cp311-cp311-linux_x86_64.whl");
  EXPECT_EQ(page->files[0].filename, "torch-2.0.0+cpu-cp311-cp311-linux_x86_64.whl");
  EXPECT_EQ(page->files[1].url,
            "https://download.pytorch.org/whl/cpu/torch/%7Euser/x%20y-1.0.tar.gz?v=%2F");
  EXPECT_EQ(page->files[1].filename, "x y-1.0.tar.gz");
}

TEST(PypiSimpleHtmlTest, ReadsAnNginxAutoindex) {
  // nginx shortens long names in the text ("..&gt;"): the file name comes from the URL.
  const std::string body = R"(<html>
<head><title>Index of /simple/pantry-demo-lib/</title></head>
<body>
<h1>Index of /simple/pantry-demo-lib/</h1><hr><pre><a href="../">../</a>
<a href="sub/">sub/</a>                                               14-Nov-2023 22:13       -
<a href="pantry_demo_lib-1.0.tar.gz">pantry_demo_lib-1.0.tar.gz</a>                         14-Nov-2023 22:13    1234
<a href="pantry_demo_lib-1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl">pantry_demo_lib-1.0-py3-none-manylinux_2_17_x86_..&gt;</a> 14-Nov-2023 22:13    2345
<a href="caf%C3%A9-1.0.tar.gz">caf&#233;-1.0.tar.gz</a>
</pre><hr></body>
</html>
)";
  auto page = parse_project_html(body, "http://mirror:8080/simple/pantry-demo-lib/");
  ASSERT_TRUE(ok(page));
  ASSERT_EQ(page->files.size(), 3u);
  EXPECT_EQ(page->files[0].filename, "pantry_demo_lib-1.0.tar.gz");
  EXPECT_EQ(page->files[1].filename,
            "pantry_demo_lib-1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
  EXPECT_EQ(page->files[1].url,
            "http://mirror:8080/simple/pantry-demo-lib/"
            "pantry_demo_lib-1.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl");
  EXPECT_EQ(page->files[2].filename, "caf\xc3\xa9-1.0.tar.gz");
  EXPECT_TRUE(page->files[0].hashes.empty());
}

TEST(PypiSimpleHtmlTest, HonoursBaseHref) {
  const std::string body = R"(<!DOCTYPE html><html><head>
<title>x</title>
<BASE target="_blank"><base href="https://cdn.example.com/pkgs/v2/"><base href="https://ignored/">
</head><body>
<a href="x/foo-1.0.tar.gz#sha256=AABB">foo-1.0.tar.gz</a>
<a href="/abs/foo-1.1.tar.gz">foo-1.1.tar.gz</a>
<a href="https://other.example/foo-1.2.tar.gz">foo-1.2.tar.gz</a>
<a href="../foo-1.3.tar.gz">foo-1.3.tar.gz</a>
</body></html>)";
  auto page = parse_project_html(body, "https://index.example/simple/foo/");
  ASSERT_TRUE(ok(page));
  ASSERT_EQ(page->files.size(), 4u);
  EXPECT_EQ(page->files[0].url, "https://cdn.example.com/pkgs/v2/x/foo-1.0.tar.gz");
  EXPECT_EQ(page->files[0].hashes, (std::map<std::string, std::string>{{"sha256", "aabb"}}));
  EXPECT_EQ(page->files[1].url, "https://cdn.example.com/abs/foo-1.1.tar.gz");
  EXPECT_EQ(page->files[2].url, "https://other.example/foo-1.2.tar.gz");
  EXPECT_EQ(page->files[3].url, "https://cdn.example.com/pkgs/foo-1.3.tar.gz");
}

TEST(PypiSimpleHtmlTest, ResolvesARelativeBaseHrefAgainstThePage) {
  const std::string body = R"(<base href="../../files/"><a href="a/foo-1.0.tar.gz">foo</a>)";
  auto page = parse_project_html(body, "http://h:81/simple/foo/");
  ASSERT_TRUE(ok(page));
  ASSERT_EQ(page->files.size(), 1u);
  EXPECT_EQ(page->files[0].url, "http://h:81/files/a/foo-1.0.tar.gz");
}

TEST(PypiSimpleHtmlTest, SurvivesOddHtml) {
  const std::string body =
      "<?xml version=\"1.0\"?>\n"
      "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"x.dtd\">\n"
      "<HTML><HEAD><META NAME=\"PYPI:REPOSITORY-VERSION\" CONTENT=\" 1.0 \"></HEAD><BODY>\n"
      "<!-- <a href=\"commented-1.0.tar.gz\">no</a> -->\n"
      "<!--> <a href=\"a-1.0.tar.gz\">empty comment then a link</a>\n"
      "<script>var s = '<a href=\"script-1.0.tar.gz\">no</a>';</script>\n"
      "<style>a[href$=\".whl\"] { color: red }</style>\n"
      "<textarea><a href=\"textarea-1.0.tar.gz\">no</a></textarea>\n"
      "<A HREF='b-1.0.tar.gz' DATA-REQUIRES-PYTHON='>=3.8'>single quotes, uppercase</A>\n"
      "<a href=c-1.0.tar.gz#sha256=ab data-yanked>unquoted, bare attribute</a>\n"
      "<a\n  href = \"d-1.0.tar.gz\"\n  data-requires-python\n=\t\"&lt;4\"\n>whitespace</a>\n"
      "<a href=\"e-1.0.tar.gz\" href=\"ignored-1.0.tar.gz\">first attribute wins</a>\n"
      "<a name=\"anchor\">no href</a><a href=\"\">empty href</a><a href=\"#top\">fragment</a>\n"
      "<a href=\"  \n f-1.0\t.tar.gz  \">href with spaces and tabs</a>\n"
      "<a href=\"javascript:alert(1)\">js</a><a href=\"mailto:x@y\">mail</a>\n"
      "<a href=\"ftp://host/g-1.0.tar.gz\">ftp</a>\n"
      "<a href=\"h 1.0.tar.gz?x=1&amp;y=2\">space and query</a>\n"
      "<a href=\"i-1.0.tar.gz\"/>self-closing\n"
      "<p>text with a stray < and &amp; &bogus; entity</p>\n"
      "<a href=\"/j/../k/%2e%2e/l-1.0.tar.gz\">encoded dots resolve as browsers do</a>\n"
      "<a href=\"../../../../%2E%2e/p-1.0.tar.gz\">above the root</a>\n"
      "<a href=\"/q/%2e%2e%2fr-1.0.tar.gz\">an encoded slash</a>\n"
      "<a href=\"m-1.0.tar.gz\" data-core-metadata=\"false\" data-dist-info-metadata=true>m</a>\n"
      "<a href=\"n-1.0.tar.gz\" data-dist-info-metadata=\"sha256=AbCd\">n</a>\n"
      "<a href=\"o-1.0.tar.gz\" data-core-metadata=\"garbage\">o</a>\n"
      "</BODY></HTML><a href=\"cut-off-1.0.tar.gz";
  auto page = parse_project_html(body, "https://h/simple/x/");
  ASSERT_TRUE(ok(page));
  std::vector<std::string> names;
  for (const auto& f : page->files) {
    names.push_back(f.filename);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{
                "a-1.0.tar.gz", "b-1.0.tar.gz", "c-1.0.tar.gz", "d-1.0.tar.gz", "e-1.0.tar.gz",
                "f-1.0.tar.gz", "h 1.0.tar.gz", "i-1.0.tar.gz", "l-1.0.tar.gz", "p-1.0.tar.gz",
                "m-1.0.tar.gz", "n-1.0.tar.gz", "o-1.0.tar.gz"}));
  ASSERT_EQ(page->files.size(), 13u);
  EXPECT_EQ(page->api_version, "1.0");
  EXPECT_EQ(page->files[1].requires_python, ">=3.8");
  EXPECT_EQ(page->files[2].yanked, "");
  EXPECT_EQ(page->files[2].hashes, (std::map<std::string, std::string>{{"sha256", "ab"}}));
  EXPECT_EQ(page->files[3].requires_python, "<4");
  EXPECT_EQ(page->files[5].url, "https://h/simple/x/f-1.0.tar.gz");
  EXPECT_EQ(page->files[6].url, "https://h/simple/x/h%201.0.tar.gz?x=1&y=2");
  EXPECT_EQ(page->files[8].url, "https://h/l-1.0.tar.gz");
  EXPECT_EQ(page->files[9].url, "https://h/p-1.0.tar.gz");
  // data-core-metadata wins over data-dist-info-metadata (PEP 714).
  EXPECT_EQ(page->files[10].core_metadata, std::nullopt);
  EXPECT_EQ(page->files[11].core_metadata,
            (std::map<std::string, std::string>{{"sha256", "abcd"}}));
  EXPECT_EQ(page->files[12].core_metadata, (std::map<std::string, std::string>{}));
}

TEST(PypiSimpleHtmlTest, DecodesCharacterReferences) {
  const std::string body =
      "<a href=\"a-1.tar.gz\" data-requires-python=\"&gt;=3.7,&lt;4,!=3.9.*\">1</a>"
      "<a href=\"a-2.tar.gz\" data-requires-python=\"&#62;=3.8&#x2C;&#X3c;4\">2</a>"
      "<a href=\"a-3.tar.gz\" data-yanked=\"&quot;bad&quot; &amp; &#39;worse&#39; "
      "&apos;x&apos;\">3</a>"
      "<a href=\"a-4.tar.gz\" data-yanked=\"&lt &gt; &amp;amp; &notanentity; &#; &#xZZ; &\">4</a>"
      "<a href=\"a-5.tar.gz\" data-yanked=\"&amp=1 &ampx &#0; &#x110000; &#xD800; &#150; "
      "&#9731; &#x1F600; &nbsp;\">5</a>"
      "<a href=\"a-6.tar.gz\" data-yanked=\"caf\xc3\xa9 \xff\xfe bad utf-8\">6</a>";
  auto page = parse_project_html(body, "https://h/simple/a/");
  ASSERT_TRUE(ok(page));
  ASSERT_EQ(page->files.size(), 6u);
  EXPECT_EQ(page->files[0].requires_python, ">=3.7,<4,!=3.9.*");
  EXPECT_EQ(page->files[1].requires_python, ">=3.8,<4");
  EXPECT_EQ(page->files[2].yanked, "\"bad\" & 'worse' 'x'");
  EXPECT_EQ(page->files[3].yanked, "< > &amp; &notanentity; &#; &#xZZ; &");
  // In attributes, legacy references followed by '=' or an alphanumeric stay literal.
  EXPECT_EQ(page->files[4].yanked,
            "&amp=1 &ampx \xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd \xe2\x80\x93 \xe2\x98\x83 "
            "\xf0\x9f\x98\x80 \xc2\xa0");
  EXPECT_EQ(page->files[5].yanked, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd bad utf-8");
}

TEST(PypiSimpleHtmlTest, RefusesAnotherMajorVersionAndABadPageUrl) {
  EXPECT_TRUE(
      fails_mentioning(parse_project_html(R"(<meta name="pypi:repository-version" content="2.0">)",
                                          "https://h/simple/x/"),
                       "\"2.0\""));
  EXPECT_TRUE(fails_mentioning(parse_project_html("<a href=x-1.tar.gz>x</a>", "simple/x/"),
                               "\"simple/x/\""));
  EXPECT_TRUE(ok(parse_project_html(R"(<meta name="pypi:repository-version" content="1.3">)",
                                    "https://h/simple/x/")));
}

TEST(PypiSimpleHtmlTest, RendersWhatPipReads) {
  auto page = parse_project_html(kPypiPage, kPypiUrl);
  ASSERT_TRUE(ok(page));
  page->files[0].core_metadata.emplace();  // pantry will generate it
  const std::string html = render_project_html(*page, rewrite_to_pantry);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>\n", 0), 0u) << html;
  EXPECT_NE(html.find(R"(<meta name="pypi:repository-version" content="1.0">)"), std::string::npos)
      << html;
  EXPECT_NE(
      html.find(
          R"(<a href="http://pantry:8585/files/pypi/files.pythonhosted.org/packages/70/8e/0e2d847013cb52cd35b38c009bb167a1a26b2ce6cd6965bf26b47bc0bf44/requests-2.31.0-py3-none-any.whl#sha256=)" +
          std::string(kSha2) + R"(" data-requires-python="&gt;=3.7" data-core-metadata="sha256=)" +
          std::string(kMetaSha) + R"(" data-dist-info-metadata="sha256=)" + std::string(kMetaSha) +
          R"(">requests-2.31.0-py3-none-any.whl</a>)"),
      std::string::npos)
      << html;
  EXPECT_NE(
      html.find(
          R"(data-core-metadata="true" data-dist-info-metadata="true">requests-0.2.0.tar.gz<)"),
      std::string::npos)
      << html;
  EXPECT_NE(html.find(R"(data-yanked="">requests-2.32.1.tar.gz<)"), std::string::npos) << html;
  EXPECT_EQ(
      html.find(
          "files.pythonhosted.org/packages/ba/bb/"
          "dfa0141a32d773c47e4dede1a617c59a23b74dd302e449cf85413fc96bc4/requests-0.2.0.tar.gz\""),
      std::string::npos);
}

TEST(PypiSimpleHtmlTest, RenderEscapesAttributesAndText) {
  project_page page;
  page.name = "x<y";
  file_entry f;
  f.filename = "a&b<c>.tar.gz";
  f.url = "https://h/a.tar.gz";
  f.requires_python = ">=3.7,<4";
  f.yanked = "\"quoted\" & 'single' <tag>";
  page.files.push_back(f);
  const std::string html =
      render_project_html(page, [](std::string_view) { return std::string("/f?a=1&b=\"2\""); });
  EXPECT_NE(
      html.find(
          R"(<a href="/f?a=1&amp;b=&quot;2&quot;" data-requires-python="&gt;=3.7,&lt;4" data-yanked="&quot;quoted&quot; &amp; &#39;single&#39; &lt;tag&gt;">a&amp;b&lt;c&gt;.tar.gz</a>)"),
      std::string::npos)
      << html;
  EXPECT_NE(html.find("<title>Links for x&lt;y</title>"), std::string::npos) << html;
}

// parse(render(page)) == page, with the URLs rewritten.
void expect_html_round_trip(const project_page& page) {
  const std::string html = render_project_html(page, rewrite_to_pantry);
  auto again = parse_project_html(html, "http://pantry:8585/simple/" + page.name + "/");
  ASSERT_TRUE(ok(again)) << html;
  ASSERT_EQ(again->files.size(), page.files.size()) << html;
  for (std::size_t i = 0; i < page.files.size(); ++i) {
    file_entry want = page.files[i];
    want.url = rewrite_to_pantry(want.url);
    want.size.reset();
    want.upload_time.reset();
    EXPECT_EQ(again->files[i], want) << html;
  }
}

TEST(PypiSimpleHtmlTest, RoundTrips) {
  auto page = parse_project_html(kPypiPage, kPypiUrl);
  ASSERT_TRUE(ok(page));
  expect_html_round_trip(*page);
}

const std::string kJson10 = R"({
  "meta": {"api-version": "1.0", "_private": true},
  "name": "holygrail",
  "files": [
    {"filename": "holygrail-1.0.tar.gz", "url": "https://example.com/files/holygrail-1.0.tar.gz",
     "hashes": {"sha256": "AABB", "blake2b": "ccdd", "bogus": "not hex", "Sha512": "eeff"},
     "requires-python": ">=3.7", "yanked": "Had a vulnerability", "gpg-sig": false},
    {"filename": "holygrail-1.0-py3-none-any.whl", "url": "../../files/holygrail-1.0-py3-none-any.whl",
     "hashes": {}, "requires-python": null, "dist-info-metadata": true, "yanked": false},
    {"filename": "holygrail-0.9-py3-none-any.whl", "url": "holygrail-0.9-py3-none-any.whl#sha256=1234",
     "hashes": {"md5": "5678"}, "data-dist-info-metadata": {"sha256": "abcd"}, "yanked": true},
    {"filename": "holygrail-0.8.tar.gz", "url": "ftp://example.com/holygrail-0.8.tar.gz", "hashes": {}},
    {"filename": "holygrail-0.7.tar.gz", "url": "https://example.com/a.tar.gz", "hashes": {},
     "core-metadata": false, "dist-info-metadata": true, "yanked": ""}
  ]
})";

TEST(PypiSimpleJsonTest, ReadsVersion10) {
  auto page = parse_project_json(kJson10, "https://example.com/simple/holygrail/");
  ASSERT_TRUE(ok(page));
  EXPECT_EQ(page->name, "holygrail");
  EXPECT_EQ(page->api_version, "1.0");
  EXPECT_FALSE(page->from_html);
  ASSERT_EQ(page->files.size(), 4u) << "the ftp file is left out";
  const file_entry& a = page->files[0];
  EXPECT_EQ(a.url, "https://example.com/files/holygrail-1.0.tar.gz");
  EXPECT_EQ(a.hashes, (std::map<std::string, std::string>{
                          {"sha256", "aabb"}, {"blake2b", "ccdd"}, {"sha512", "eeff"}}));
  EXPECT_EQ(a.requires_python, ">=3.7");
  EXPECT_EQ(a.yanked, "Had a vulnerability");
  EXPECT_EQ(a.core_metadata, std::nullopt);
  const file_entry& b = page->files[1];
  EXPECT_EQ(b.url, "https://example.com/files/holygrail-1.0-py3-none-any.whl");
  EXPECT_EQ(b.requires_python, std::nullopt);
  EXPECT_EQ(b.yanked, std::nullopt);
  EXPECT_EQ(b.core_metadata, (std::map<std::string, std::string>{}));
  const file_entry& c = page->files[2];
  EXPECT_EQ(c.url, "https://example.com/simple/holygrail/holygrail-0.9-py3-none-any.whl");
  EXPECT_EQ(c.hashes, (std::map<std::string, std::string>{{"md5", "5678"}, {"sha256", "1234"}}));
  EXPECT_EQ(c.core_metadata, (std::map<std::string, std::string>{{"sha256", "abcd"}}));
  EXPECT_EQ(c.yanked, "");
  // core-metadata: false wins over the legacy key; "" is not yanked (as pip reads it).
  EXPECT_EQ(page->files[3].core_metadata, std::nullopt);
  EXPECT_EQ(page->files[3].yanked, std::nullopt);
}

const std::string kJson11 = R"({
  "meta": {"api-version": "1.1"},
  "name": "pantry-demo-lib",
  "versions": ["1.0", "1.1"],
  "files": [
    {"filename": "pantry_demo_lib-1.0-py3-none-any.whl",
     "url": "https://files.example/p/pantry_demo_lib-1.0-py3-none-any.whl",
     "hashes": {"sha256": "0123"}, "requires-python": ">=3.7,<4",
     "core-metadata": {"sha256": "4567"}, "data-dist-info-metadata": {"sha256": "4567"},
     "size": 1234, "upload-time": "2023-11-14T22:13:20.123456Z", "yanked": false,
     "provenance": null},
    {"filename": "pantry_demo_lib-1.1.tar.gz",
     "url": "https://files.example/p/pantry_demo_lib-1.1.tar.gz",
     "hashes": {"sha256": "89ab"}, "size": 18446744073709551615}
  ]
})";

TEST(PypiSimpleJsonTest, ReadsVersion11) {
  auto page = parse_project_json(kJson11, "https://pypi.example/simple/pantry-demo-lib/");
  ASSERT_TRUE(ok(page));
  EXPECT_EQ(page->api_version, "1.1");
  EXPECT_EQ(page->versions, (std::vector<std::string>{"1.0", "1.1"}));
  ASSERT_EQ(page->files.size(), 2u);
  EXPECT_EQ(page->files[0].size, 1234u);
  EXPECT_EQ(page->files[0].upload_time, "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(page->files[0].core_metadata, (std::map<std::string, std::string>{{"sha256", "4567"}}));
  EXPECT_EQ(page->files[1].size, 18446744073709551615u);
  EXPECT_EQ(page->files[1].upload_time, std::nullopt);
}

TEST(PypiSimpleJsonTest, NamesWhatIsWrong) {
  const std::string url = "https://h/simple/x/";
  EXPECT_TRUE(fails_mentioning(parse_project_json("{", url), "not valid JSON"));
  EXPECT_TRUE(fails_mentioning(parse_project_json("[]", url), "the document"));
  EXPECT_TRUE(fails_mentioning(parse_project_json(R"({"name":"x"})", url), "files"));
  EXPECT_TRUE(fails_mentioning(parse_project_json(R"({"files":[]})", url), "name"));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(R"({"meta":{"api-version":"2.0"},"name":"x","files":[]})", url),
      "\"2.0\""));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(R"({"meta":{"api-version":1.0},"name":"x","files":[]})", url),
      "meta.api-version"));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(R"({"name":"x","files":[{"filename":"a","url":"a","size":-1}]})", url),
      "files[0].size"));
  EXPECT_TRUE(fails_mentioning(parse_project_json(R"({"name":"x","files":[{"url":"a"}]})", url),
                               "files[0].filename"));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(R"({"name":"x","files":[{"filename":"a","url":"a","hashes":[]}]})", url),
      "files[0].hashes"));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(R"({"name":"x","files":[{"filename":"a","url":"a","yanked":1}]})", url),
      "files[0].yanked"));
  EXPECT_TRUE(fails_mentioning(
      parse_project_json(
          R"({"name":"x","files":[{"filename":"a","url":"a","core-metadata":"yes"}]})", url),
      "files[0].core-metadata"));
  EXPECT_TRUE(fails_mentioning(parse_project_json(R"({"name":"x","files":[],"versions":[1]})", url),
                               "versions"));
  EXPECT_TRUE(fails_mentioning(parse_project_json("\"\xff\"", url), "not valid JSON"));
  EXPECT_TRUE(
      fails_mentioning(parse_project_json(R"({"name":"x","files":[]})", "/rel"), "\"/rel\""));
}

boost::json::value json_of(const std::string& s) {
  boost::system::error_code ec;
  auto v = boost::json::parse(s, ec);
  EXPECT_FALSE(ec) << s;
  return v;
}

TEST(PypiSimpleJsonTest, RendersVersion11WhenEverythingIsThere) {
  auto page = parse_project_json(kJson11, "https://pypi.example/simple/pantry-demo-lib/");
  ASSERT_TRUE(ok(page));
  const std::string out = render_project_json(*page, rewrite_to_pantry);
  const auto want = json_of(R"({
    "meta": {"api-version": "1.1"},
    "name": "pantry-demo-lib",
    "files": [
      {"filename": "pantry_demo_lib-1.0-py3-none-any.whl",
       "url": "http://pantry:8585/files/pypi/files.example/p/pantry_demo_lib-1.0-py3-none-any.whl",
       "hashes": {"sha256": "0123"}, "requires-python": ">=3.7,<4", "yanked": false,
       "core-metadata": {"sha256": "4567"}, "data-dist-info-metadata": {"sha256": "4567"},
       "size": 1234, "upload-time": "2023-11-14T22:13:20.123456Z"},
      {"filename": "pantry_demo_lib-1.1.tar.gz",
       "url": "http://pantry:8585/files/pypi/files.example/p/pantry_demo_lib-1.1.tar.gz",
       "hashes": {"sha256": "89ab"}, "yanked": false, "size": 18446744073709551615}
    ],
    "versions": ["1.0", "1.1"]
  })");
  EXPECT_EQ(json_of(out), want) << out;
  EXPECT_EQ(out.find("\"dist-info-metadata\""), std::string::npos) << out;
}

TEST(PypiSimpleJsonTest, RendersVersion10WithoutSizesOrVersions) {
  // From HTML: 1.0 whatever the page says.
  auto html = parse_project_html(kPypiPage, kPypiUrl);
  ASSERT_TRUE(ok(html));
  html->files[0].size = 10;
  html->versions = {"0.2.0"};
  std::string out = render_project_json(*html, rewrite_to_pantry);
  auto v = json_of(out);
  EXPECT_EQ(v.at("meta").at("api-version"), "1.0") << out;
  EXPECT_EQ(v.as_object().if_contains("versions"), nullptr) << out;
  EXPECT_EQ(v.at("files").at(0).as_object().if_contains("size"), nullptr) << out;
  EXPECT_EQ(v.at("files").at(2).at("yanked"),
            "Yanked due to conflicts with CVE-2024-35195 mitigation");
  EXPECT_EQ(v.at("files").at(3).at("yanked"), true);
  EXPECT_EQ(v.at("files").at(1).at("core-metadata"),
            json_of(R"({"sha256":")" + std::string(kMetaSha) + "\"}"));
  EXPECT_EQ(out.find("\"dist-info-metadata\""), std::string::npos) << out;

  // From JSON 1.1 with one file lacking a size: 1.0 too.
  auto page = parse_project_json(kJson11, "https://pypi.example/simple/pantry-demo-lib/");
  ASSERT_TRUE(ok(page));
  page->files[1].size.reset();
  out = render_project_json(*page, rewrite_to_pantry);
  v = json_of(out);
  EXPECT_EQ(v.at("meta").at("api-version"), "1.0") << out;
  EXPECT_EQ(v.as_object().if_contains("versions"), nullptr) << out;
  EXPECT_EQ(v.at("files").at(0).as_object().if_contains("upload-time"), nullptr) << out;
}

TEST(PypiSimpleJsonTest, MetadataTrueWithoutHashes) {
  project_page page;
  page.name = "x";
  file_entry f;
  f.filename = "x-1.whl";
  f.url = "https://h/x-1.whl";
  f.core_metadata.emplace();
  page.files.push_back(f);
  const auto v =
      json_of(render_project_json(page, [](std::string_view u) { return std::string(u); }));
  EXPECT_EQ(v.at("files").at(0).at("core-metadata"), true);
  EXPECT_EQ(v.at("files").at(0).at("data-dist-info-metadata"), true);
  EXPECT_EQ(v.at("files").at(0).at("hashes"), boost::json::object());
}

TEST(PypiSimpleJsonTest, RoundTrips) {
  for (const std::string* body : {&kJson10, &kJson11}) {
    auto page = parse_project_json(*body, "https://example.com/simple/holygrail/");
    ASSERT_TRUE(ok(page));
    const std::string out = render_project_json(*page, rewrite_to_pantry);
    auto again = parse_project_json(out, "http://pantry:8585/simple/holygrail/");
    ASSERT_TRUE(ok(again)) << out;
    project_page want = *page;
    for (auto& f : want.files)
      f.url = rewrite_to_pantry(f.url);
    EXPECT_EQ(*again, want) << out;
  }
}

TEST(PypiSimpleJsonTest, HtmlToJsonToHtmlKeepsEverythingHtmlHas) {
  auto page = parse_project_html(kPypiPage, kPypiUrl);
  ASSERT_TRUE(ok(page));
  const std::string json =
      render_project_json(*page, [](std::string_view u) { return std::string(u); });
  auto from_json = parse_project_json(json, kPypiUrl);
  ASSERT_TRUE(ok(from_json)) << json;
  EXPECT_EQ(from_json->files, page->files) << json;
  expect_html_round_trip(*from_json);
}

TEST(PypiSimpleRootTest, ReadsAndWritesTheProjectList) {
  const std::string pypi_root = R"(<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.1">
    <title>Simple index</title>
  </head>
  <body>
    <a href="/simple/0/">0</a>
    <a href="/simple/requests/">requests</a>
    <a href="/simple/zope-interface/">zope.interface</a>
    <a href="/simple/a-b/"> A&amp;B </a>
    <a href="/simple/from-href/"></a>
    <a href="/simple/%20spaced%20/"> </a>
    <a href="/simple/">
  </body>
</html>)";
  auto names = parse_root_html(pypi_root);
  ASSERT_TRUE(ok(names));
  EXPECT_EQ(*names, (std::vector<std::string>{"0", "requests", "zope.interface", "A&B", "from-href",
                                              "spaced", "simple"}));

  const std::string html = render_root_html(*names);
  EXPECT_NE(html.find(R"(<a href="zope-interface/">zope.interface</a>)"), std::string::npos)
      << html;
  EXPECT_NE(html.find(R"(<a href="a%26b/">A&amp;B</a>)"), std::string::npos) << html;
  auto again = parse_root_html(html);
  ASSERT_TRUE(ok(again));
  EXPECT_EQ(*again, *names);

  const std::string json = render_root_json(*names);
  EXPECT_EQ(json_of(json), json_of(R"({"meta":{"api-version":"1.0"},"projects":[
      {"name":"0"},{"name":"requests"},{"name":"zope.interface"},{"name":"A&B"},
      {"name":"from-href"},{"name":"spaced"},{"name":"simple"}]})"));
  auto from_json = parse_root_json(json);
  ASSERT_TRUE(ok(from_json));
  EXPECT_EQ(*from_json, *names);
}

TEST(PypiSimpleRootTest, JsonErrors) {
  EXPECT_TRUE(fails_mentioning(parse_root_json("{}"), "projects"));
  EXPECT_TRUE(
      fails_mentioning(parse_root_json(R"({"projects":[{"name":1}]})"), "projects[0].name"));
  EXPECT_TRUE(fails_mentioning(parse_root_json(R"({"meta":{"api-version":"3.0"},"projects":[]})"),
                               "\"3.0\""));
  EXPECT_TRUE(fails_mentioning(
      parse_root_html(R"(<meta name="pypi:repository-version" content="2.1">)"), "\"2.1\""));
}

}  // namespace
}  // namespace pantry::registry::pypi
