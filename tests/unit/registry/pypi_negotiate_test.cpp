#include "pantry/registry/pypi/negotiate.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>

namespace pantry::registry::pypi {

void PrintTo(const negotiated& n, std::ostream* os) {
  *os << (n.rep == representation::json ? "json" : "html") << " as \"" << n.content_type << "\"";
}

namespace {

constexpr std::string_view kPip22_2 =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01";
constexpr std::string_view kUv =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01";
constexpr std::string_view kBrowser =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

const negotiated kJson{representation::json, kContentTypeJson};
const negotiated kHtml{representation::html, kContentTypeHtml};
const negotiated kTextHtml{representation::html, kContentTypeTextHtml};

struct negotiation_case {
  std::string name;
  std::vector<std::string_view> lines;
  std::optional<negotiated> want;
};

void PrintTo(const negotiation_case& c, std::ostream* os) {
  *os << c.name;
}

class PypiNegotiateTest : public ::testing::TestWithParam<negotiation_case> {};

TEST_P(PypiNegotiateTest, Chooses) {
  const negotiation_case& c = GetParam();
  std::string joined;
  for (auto l : c.lines)
    joined += "[" + std::string(l) + "]";
  EXPECT_EQ(negotiate(c.lines), c.want) << "Accept lines: " << joined;
}

INSTANTIATE_TEST_SUITE_P(
    Clients, PypiNegotiateTest,
    ::testing::Values(
        negotiation_case{"NoHeader", {}, kTextHtml},
        negotiation_case{"EmptyHeader", {""}, kTextHtml},
        negotiation_case{"OnlyCommas", {" , ,"}, kTextHtml},
        negotiation_case{"Pip22_0SendsTextHtml", {"text/html"}, kTextHtml},
        negotiation_case{"Pip22_2To24", {kPip22_2}, kJson}, negotiation_case{"Uv", {kUv}, kJson},
        negotiation_case{"PoetryAndCurl", {"*/*"}, kTextHtml},
        negotiation_case{"Browser", {kBrowser}, kTextHtml},
        negotiation_case{"LatestJson", {"application/vnd.pypi.simple.latest+json"}, kJson},
        negotiation_case{"LatestHtml", {"application/vnd.pypi.simple.latest+html"}, kHtml},
        negotiation_case{"V1Html", {"application/vnd.pypi.simple.v1+html"}, kHtml},
        negotiation_case{"CaseInsensitive", {"APPLICATION/VND.PYPI.SIMPLE.V1+JSON"}, kJson},
        negotiation_case{
            "ExactTiePrefersJson", {"text/html, application/vnd.pypi.simple.v1+json"}, kJson},
        negotiation_case{"QualityBeatsFormat",
                         {"application/vnd.pypi.simple.v1+html, "
                          "application/vnd.pypi.simple.v1+json; q=0.5"},
                         kHtml},
        negotiation_case{"SeveralLines",
                         {"application/vnd.pypi.simple.v1+html; q=0.5",
                          "application/vnd.pypi.simple.v1+json; q=0.9"},
                         kJson},
        negotiation_case{"SpecificBeatsWildcardAtSameQuality",
                         {"*/*, application/vnd.pypi.simple.v1+json"},
                         kJson},
        negotiation_case{
            "WildcardExcludedByQ0", {"*/*, application/vnd.pypi.simple.v1+json;q=0"}, kTextHtml},
        negotiation_case{"TextHtmlExcludedLeavesV1Html", {"*/*, text/html;q=0"}, kHtml},
        negotiation_case{"ApplicationWildcard", {"application/*"}, kHtml},
        negotiation_case{"TextWildcard", {"text/*"}, kTextHtml},
        negotiation_case{"QuotedCommaInParameter",
                         {"text/html;foo=\"a,b\";q=0.5, application/vnd.pypi.simple.v1+json;q=0.4"},
                         kTextHtml},
        negotiation_case{"SpacesAroundParameters",
                         {"  application/vnd.pypi.simple.v1+json ; q=0.5 , text/html ; q=0.6"},
                         kTextHtml},
        negotiation_case{"ThreeDecimals",
                         {"application/vnd.pypi.simple.v1+json;q=0.001, text/html;q=0.002"},
                         kTextHtml},
        negotiation_case{"PlainJsonIsNotAcceptable", {"application/json"}, std::nullopt},
        negotiation_case{"JsonExcluded", {"application/vnd.pypi.simple.v1+json;q=0"}, std::nullopt},
        negotiation_case{"AnythingExcluded", {"*/*;q=0"}, std::nullopt},
        negotiation_case{"AllExcluded",
                         {"text/html;q=0, application/vnd.pypi.simple.v1+json;q=0.000"},
                         std::nullopt},
        negotiation_case{"Garbage", {"garbage"}, std::nullopt},
        negotiation_case{"BadQualityIgnored", {"text/html;q=2"}, std::nullopt},
        negotiation_case{"BadWildcardIgnored", {"*/html"}, std::nullopt},
        negotiation_case{
            "OtherVersionNotAcceptable", {"application/vnd.pypi.simple.v2+json"}, std::nullopt}),
    [](const ::testing::TestParamInfo<negotiation_case>& info) { return info.param.name; });

}  // namespace
}  // namespace pantry::registry::pypi
