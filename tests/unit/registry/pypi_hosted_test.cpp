#include "pantry/registry/pypi/hosted.h"
#include "pantry/registry/pypi/metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace pantry::registry::pypi {
namespace {

using ::testing::HasSubstr;

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TEST(PypiHostedTest, Blake2bMatchesRfc7693AndPythonsHashlib) {
  // RFC 7693 appendix A: BLAKE2b-512("abc").
  EXPECT_EQ(blake2b_hex(bytes_of("abc"), 64),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252"
            "d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
  // hashlib.blake2b(data, digest_size=32).hexdigest(), what twine sends as blake2_256_digest.
  EXPECT_EQ(blake2b_hex(bytes_of(""), 32),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
  std::string data;
  for (int i = 0; i < 5; ++i)
    for (int b = 0; b < 256; ++b)
      data += static_cast<char>(b);
  // Exactly one block, one block and a byte, and several blocks.
  EXPECT_EQ(blake2b_hex(bytes_of(std::string_view(data).substr(0, 128)), 32),
            "c3582f71ebb2be66fa5dd750f80baae97554f3b015663c8be377cfcb2488c1d1");
  EXPECT_EQ(blake2b_hex(bytes_of(std::string_view(data).substr(0, 129)), 32),
            "f7f3c46ba2564ff4c4c162da1f5b605f9f1c4aa6a20652a9f9a337c1a2f5b9c9");
  EXPECT_EQ(blake2b_hex(bytes_of(data), 32),
            "82628cbfc9689e234b0923a531f4578fe2e7138a03e2f81ed6cde97517336650");
}

TEST(PypiHostedTest, UploadHasherGivesTheThreeDigestsOfPiecesFedInAnySplit) {
  upload_hasher h;
  h.update(bytes_of("a"));
  h.update(bytes_of("bc"));
  const upload_digests d = h.finish();
  EXPECT_EQ(d.md5, "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(d.blake2_256, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

TEST(PypiHostedTest, AcceptsWheelsAndSdistsOfTheFormsProjectAndVersion) {
  auto w = check_upload_filename("Demo_Lib-1.0-py3-none-any.whl", "demo.lib", "1.0", "bdist_wheel");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->project, "demo-lib");
  EXPECT_TRUE(w->wheel);
  auto s = check_upload_filename("demo-lib-2.0rc1.tar.gz", "Demo-Lib", "2.0RC1", "sdist");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(s->wheel);
  EXPECT_TRUE(
      check_upload_filename("demo_lib-1!2.0+local.zip", "demo-lib", "1!2.0+local", "sdist"));
}

TEST(PypiHostedTest, RefusesFileNamesThatDoNotFitTheForm) {
  auto msg = [](std::string_view f, std::string_view n, std::string_view v, std::string_view t) {
    auto r = check_upload_filename(f, n, v, t);
    return r ? std::string("accepted") : r.error().message;
  };
  EXPECT_EQ(msg("other-1.0-py3-none-any.whl", "demo", "1.0", "bdist_wheel"),
            "Start filename for project \"demo\" with its name: \"other-1.0-py3-none-any.whl\" is "
            "not {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl for that project");
  EXPECT_EQ(msg("demo-1.1.tar.gz", "demo", "1.0", "sdist"),
            "Version in filename should be \"1.0\" (the form's), not \"1.1\": \"demo-1.1.tar.gz\"");
  EXPECT_EQ(msg("demo-1.0.tar.gz", "demo", "1.0", "bdist_wheel"),
            "The filetype \"bdist_wheel\" does not fit \"demo-1.0.tar.gz\", which is an sdist");
  EXPECT_EQ(msg("demo-1.0.egg", "demo", "1.0", "bdist_egg"),
            "Invalid file extension of \"demo-1.0.egg\": upload a wheel (.whl) or an sdist "
            "(.tar.gz or .zip)");
  EXPECT_THAT(msg("../demo-1.0.tar.gz", "demo", "1.0", "sdist"),
              HasSubstr("Invalid distribution file name \"../demo-1.0.tar.gz\""));
  EXPECT_THAT(msg(".demo-1.0.tar.gz", "demo", "1.0", "sdist"),
              HasSubstr("Invalid distribution file name"));
  EXPECT_THAT(msg("demo 1.0.tar.gz", "demo", "1.0", "sdist"),
              HasSubstr("Invalid distribution file name"));
  EXPECT_THAT(msg("demo-1.0.tar.gz", "-demo", "1.0", "sdist"),
              HasSubstr("Invalid project name \"-demo\""));
  EXPECT_THAT(msg("demo-1.0.tar.gz", "demo", "", "sdist"), HasSubstr("The form has no version"));
  EXPECT_THAT(msg("demo-1.0-any.whl", "demo", "1.0", "bdist_wheel"),
              HasSubstr("Start filename for project \"demo\""));
}

TEST(PypiHostedTest, ReadsAMetadataField) {
  const std::string meta =
      "Metadata-Version: 2.1\r\n"
      "Name: demo\r\n"
      "requires-python:  >=3.8,\r\n"
      "\t<4\r\n"
      "Requires-Python: >=2\r\n"
      "\r\n"
      "Requires-Python: in the description\n";
  EXPECT_EQ(metadata_field(meta, "Requires-Python"), ">=3.8, <4");
  EXPECT_EQ(metadata_field(meta, "name"), "demo");
  EXPECT_EQ(metadata_field(meta, "Summary"), std::nullopt);
  EXPECT_EQ(metadata_field("Name: x\n\nSummary: later\n", "Summary"), std::nullopt);
  EXPECT_EQ(metadata_field("Requires-Python:\nName: x\n", "Requires-Python"), std::nullopt);
}

TEST(PypiHostedTest, MetadataFieldsReadsEveryHeaderOfAMultipleUseField) {
  const std::string meta =
      "Metadata-Version: 2.1\r\n"
      "Name: demo\r\n"
      "Requires-Dist: idna (>=2.5,\r\n"
      "  <4)\r\n"
      "requires-dist: urllib3; extra == 'x'\r\n"
      "Requires-Dist:\r\n"
      "Provides-Extra: x\r\n"
      "Requires-Dist:   certifi  \r\n"
      "\r\n"
      "Requires-Dist: in-the-description\n";
  EXPECT_THAT(metadata_fields(meta, "Requires-Dist"),
              testing::ElementsAre("idna (>=2.5, <4)", "urllib3; extra == 'x'", "certifi"));
  EXPECT_THAT(metadata_fields(meta, "Summary"), testing::IsEmpty());
  EXPECT_THAT(metadata_fields("Requires-Dist: a", "requires-dist"), testing::ElementsAre("a"));
}

hosted_project sample() {
  hosted_project p;
  p.name = "Demo.Lib";
  p.files.push_back({"demo_lib-1.0-py3-none-any.whl", "1.0", std::string(64, 'a'), 1234,
                     "2026-12-06T23:59:01.000000Z", std::string(">=3.8"), std::string(64, 'b'),
                     std::nullopt});
  p.files.push_back({"demo_lib-1.0.tar.gz", "1.0", std::string(64, 'c'), 99,
                     "2026-12-06T23:59:02.000000Z", std::nullopt, std::nullopt, std::nullopt});
  p.files.push_back({"demo_lib-2.0.tar.gz", "2.0", std::string(64, 'd'), 7,
                     "2026-12-06T23:59:03.000000Z", std::nullopt, std::nullopt, std::string("")});
  return p;
}

TEST(PypiHostedTest, ProjectRecordRoundTrips) {
  const hosted_project p = sample();
  auto back = parse_hosted_project(serialize_hosted_project(p));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, p) << serialize_hosted_project(p);
  EXPECT_EQ(p.find("demo_lib-1.0.tar.gz"), &p.files[1]);
  EXPECT_EQ(p.find("nope"), nullptr);
  auto bad = parse_hosted_project("{\"name\": \"x\", \"files\": [{\"filename\": \"a\"}]}");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("a file lacks filename, version, sha256"));
  EXPECT_FALSE(parse_hosted_project("[]"));
  // Invalid UTF-8 is repaired, so that the record still parses.
  hosted_project odd = sample();
  odd.files[0].requires_python = std::string(">=3.8 \xff");
  auto repaired = parse_hosted_project(serialize_hosted_project(odd));
  ASSERT_TRUE(repaired) << repaired.error().message;
  EXPECT_EQ(repaired->files[0].requires_python, ">=3.8 \xef\xbf\xbd");
}

TEST(PypiHostedTest, PageListsEveryFileWithItsHostedUrlAndPep700Fields) {
  const project_page page = hosted_page(sample(), "/team/files/demo-lib/");
  ASSERT_EQ(page.files.size(), 3u);
  EXPECT_EQ(page.name, "Demo.Lib");
  EXPECT_EQ(page.files[0].url, "/team/files/demo-lib/demo_lib-1.0-py3-none-any.whl");
  EXPECT_EQ(page.files[0].requires_python, ">=3.8");
  EXPECT_EQ(page.files[0].core_metadata,
            (std::map<std::string, std::string>{{"sha256", std::string(64, 'b')}}));
  EXPECT_EQ(page.files[1].core_metadata, std::nullopt);
  EXPECT_EQ(page.files[2].yanked, "");
  EXPECT_EQ(page.files[2].size, 7u);
  EXPECT_EQ(page.versions, (std::vector<std::string>{"1.0", "2.0"}));
  // Rendered, the JSON claims 1.1 (sizes and upload times) and the HTML carries data-yanked.
  const auto same = [](std::string_view u) { return std::string(u); };
  const std::string json = render_project_json(page, same);
  EXPECT_THAT(json, HasSubstr("\"upload-time\":\"2026-12-06T23:59:01.000000Z\""));
  EXPECT_THAT(json, HasSubstr("\"1.1\""));
  const std::string html = render_project_html(page, same);
  EXPECT_THAT(html, HasSubstr("data-yanked"));
  EXPECT_THAT(html, HasSubstr("data-requires-python=\"&gt;=3.8\""));
}

TEST(PypiHostedTest, YankAndUnyankEveryFileOfAVersion) {
  hosted_project p = sample();
  EXPECT_EQ(set_yanked(p, "1.0", std::string("broken build")), 2u);
  EXPECT_EQ(p.files[0].yanked, "broken build");
  EXPECT_EQ(p.files[1].yanked, "broken build");
  EXPECT_EQ(p.files[2].yanked, "");
  EXPECT_EQ(set_yanked(p, "2.0", std::nullopt), 1u);
  EXPECT_EQ(p.files[2].yanked, std::nullopt);
  EXPECT_EQ(set_yanked(p, "3.0", std::string()), 0u);
}

}  // namespace
}  // namespace pantry::registry::pypi
