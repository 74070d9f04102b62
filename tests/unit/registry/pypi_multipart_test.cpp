#include "pantry/registry/pypi/multipart.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

namespace pantry::registry::pypi {

void PrintTo(const form_part& p, std::ostream* os) {
  *os << "{name=\"" << p.name
      << "\", filename=" << (p.filename ? "\"" + *p.filename + "\"" : "none") << ", content_type=\""
      << p.content_type << "\"}";
}

namespace {

using ::testing::HasSubstr;

// Records what the parser hands over, one string per part.
struct recorder : multipart_parser::handler {
  struct part {
    form_part header;
    std::string body;
    bool ended = false;
  };
  std::vector<part> parts;
  std::size_t data_calls = 0;

  result<void> part_begin(const form_part& p) override {
    parts.push_back({p, {}, false});
    return {};
  }
  result<void> part_data(std::span<const std::byte> bytes) override {
    EXPECT_FALSE(bytes.empty());
    parts.back().body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    ++data_calls;
    return {};
  }
  result<void> part_end() override {
    parts.back().ended = true;
    return {};
  }
};

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// A form as requests (twine's HTTP library) writes it.
const std::string kForm =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\":action\"\r\n"
    "\r\n"
    "file_upload\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"name\"\r\n"
    "\r\n"
    "demo\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"content\"; filename=\"demo-1.0.tar.gz\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "bytes\r\n--XYZ\r\n\r\n--Xy\r\n-\r\n"
    "--XyZ--\r\n"
    "epilogue";

void expect_form(const recorder& r) {
  ASSERT_EQ(r.parts.size(), 3u);
  EXPECT_EQ(r.parts[0].header, (form_part{":action", std::nullopt, ""}));
  EXPECT_EQ(r.parts[0].body, "file_upload");
  EXPECT_EQ(r.parts[1].body, "demo");
  EXPECT_EQ(r.parts[2].header,
            (form_part{"content", std::string("demo-1.0.tar.gz"), "application/octet-stream"}));
  // A delimiter-like line that is not the delimiter stays the part's.
  EXPECT_EQ(r.parts[2].body, "bytes\r\n--XYZ\r\n\r\n--Xy\r\n-");
  for (const auto& p : r.parts)
    EXPECT_TRUE(p.ended) << p.header.name;
}

TEST(PypiMultipartTest, ParsesAWholeForm) {
  recorder r;
  multipart_parser p("XyZ", r);
  ASSERT_TRUE(p.feed(bytes_of(kForm)));
  ASSERT_TRUE(p.finish());
  EXPECT_TRUE(p.done());
  expect_form(r);
}

TEST(PypiMultipartTest, ParsesTheSameFormFedOneByteAtATime) {
  // Every split of the body gives the same parts: delimiters and headers across feeds.
  for (std::size_t piece : {1u, 2u, 3u, 5u, 7u, 13u}) {
    recorder r;
    multipart_parser p("XyZ", r);
    for (std::size_t i = 0; i < kForm.size(); i += piece) {
      ASSERT_TRUE(p.feed(bytes_of(std::string_view(kForm).substr(i, piece)))) << "piece " << piece;
    }
    ASSERT_TRUE(p.finish()) << "piece " << piece;
    expect_form(r);
  }
}

TEST(PypiMultipartTest, StreamsALargePartInPiecesWithoutHoldingIt) {
  const std::string big(1 << 20, 'w');
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=content; filename=x.whl\r\n"
      "\r\n" +
      big + "\r\n--b--";
  recorder r;
  multipart_parser p("b", r);
  for (std::size_t i = 0; i < body.size(); i += 65536) {
    ASSERT_TRUE(p.feed(bytes_of(std::string_view(body).substr(i, 65536))));
  }
  ASSERT_TRUE(p.finish());
  ASSERT_EQ(r.parts.size(), 1u);
  EXPECT_EQ(r.parts[0].body.size(), big.size());
  EXPECT_GE(r.data_calls, 16u) << "the part is handed over as it arrives";
}

TEST(PypiMultipartTest, SkipsThePreambleAndTransportPadding) {
  recorder r;
  multipart_parser p("b", r);
  ASSERT_TRUE(
      p.feed(bytes_of("preamble text\r\n--b  \t\r\nContent-Disposition: form-data; "
                      "name=a\r\n\r\n1\r\n--b--")));
  ASSERT_TRUE(p.finish());
  ASSERT_EQ(r.parts.size(), 1u);
  EXPECT_EQ(r.parts[0].body, "1");
}

TEST(PypiMultipartTest, AnEmptyPartAndAPartWithoutHeadersAreRefusedOrEmpty) {
  recorder r;
  multipart_parser p("b", r);
  ASSERT_TRUE(p.feed(bytes_of("--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--")));
  ASSERT_TRUE(p.finish());
  ASSERT_EQ(r.parts.size(), 1u);
  EXPECT_EQ(r.parts[0].body, "");

  recorder r2;
  multipart_parser p2("b", r2);
  auto got = p2.feed(bytes_of("--b\r\n\r\nbody\r\n--b--"));
  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, HasSubstr("a part has no Content-Disposition header"));
}

TEST(PypiMultipartTest, ABodyCutShortFailsAtFinish) {
  recorder r;
  multipart_parser p("b", r);
  ASSERT_TRUE(p.feed(bytes_of("--b\r\nContent-Disposition: form-data; name=a\r\n\r\npart")));
  auto got = p.finish();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message,
            "the form ended before its closing delimiter \"--b--\"; the upload was cut off");
}

TEST(PypiMultipartTest, MalformedFramingIsRefusedAndStaysRefused) {
  recorder r;
  multipart_parser p("b", r);
  auto got = p.feed(bytes_of("--bX\r\n"));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message, "the delimiter \"--b\" is followed by neither CRLF nor \"--\"");
  EXPECT_FALSE(p.feed(bytes_of("\r\n--b--"))) << "a failed parser stays failed";
  EXPECT_FALSE(p.finish());

  recorder r2;
  multipart_parser p2("b", r2);
  got = p2.feed(bytes_of("--b\r\nno colon here\r\n\r\n"));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message, "a part's header line \"no colon here\" has no ':'");

  recorder r3;
  multipart_parser p3("b", r3);
  got = p3.feed(bytes_of("--b\r\nX-Long: " + std::string(kMaxPartHeader, 'h')));
  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, HasSubstr("a part's header is over 16384 bytes"));
}

TEST(PypiMultipartTest, AHandlerErrorStopsTheParse) {
  struct refusing : recorder {
    result<void> part_data(std::span<const std::byte>) override {
      return error(errc::no_space, "disk full");
    }
  } r;
  multipart_parser p("b", r);
  auto got = p.feed(bytes_of("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nxyz\r\n--b--"));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message, "disk full");
  EXPECT_TRUE(got.error().is(errc::no_space));
}

TEST(PypiMultipartTest, ReadsTheBoundaryOfAContentType) {
  EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc").value(), "abc");
  EXPECT_EQ(multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'c\"").value(),
            "a b'c");
  auto got = multipart_boundary("application/x-www-form-urlencoded");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().message,
            "the upload's Content-Type is \"application/x-www-form-urlencoded\", not "
            "multipart/form-data; send the form as multipart/form-data");
  EXPECT_THAT(multipart_boundary("multipart/form-data").error().message,
              HasSubstr("has no boundary parameter"));
  EXPECT_THAT(multipart_boundary("multipart/form-data; boundary=\"\"").error().message,
              HasSubstr("is not 1 to 70 of the characters"));
  EXPECT_THAT(multipart_boundary("multipart/form-data; boundary=a<b").error().message,
              HasSubstr("\"a<b\" is not 1 to 70"));
  EXPECT_FALSE(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')));
  EXPECT_THAT(multipart_boundary("multipart/form-data; boundary=\"abc").error().message,
              HasSubstr("has a quoted value that does not end"));
}

TEST(PypiMultipartTest, ReadsContentDisposition) {
  EXPECT_EQ(parse_content_disposition("form-data; name=\"a\\\"b\"; filename=\"x;y.whl\"").value(),
            (form_part{"a\"b", std::string("x;y.whl"), ""}));
  EXPECT_EQ(parse_content_disposition("FORM-DATA;NAME=token").value(),
            (form_part{"token", std::nullopt, ""}));
  EXPECT_THAT(parse_content_disposition("attachment; name=a").error().message,
              HasSubstr("\"attachment; name=a\", not form-data"));
  EXPECT_THAT(parse_content_disposition("form-data; filename=a").error().message,
              HasSubstr("has no name"));
}

}  // namespace
}  // namespace pantry::registry::pypi
