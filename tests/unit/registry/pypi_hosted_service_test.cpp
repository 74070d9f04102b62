// The hosted indexes of the PyPI service (pypi.hosted) through its public interface: uploads as
// twine sends them, what is stored and what is refused, the pages /simple/ serves for hosted
// names, yanks; with the fake server, exchange and upstream of service_harness.h and a real
// cache.

#include "pantry/registry/pypi/hosted.h"
#include "pantry/registry/pypi/service.h"

#include "pantry/proxy/client.h"

#include "service_harness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <vector>

namespace pantry::registry::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kJson = "application/vnd.pypi.simple.v1+json";
constexpr std::string_view kBoundary = "----pantry-test-boundary-7f3a";
constexpr std::string_view kToken = "ci-token-0123456789abcdef";

// An upload form as twine writes it.
struct form {
  std::string name = "Demo";
  std::string version = "1.0";
  std::string filetype = "sdist";
  std::string filename = "demo-1.0.tar.gz";
  std::string content;
  std::string sha256;  // "" leaves the field out
  std::string md5;
  std::string action = "file_upload";

  std::string body() const {
    std::string b;
    auto field = [&](std::string_view key, std::string_view value) {
      b += "--" + std::string(kBoundary) + "\r\nContent-Disposition: form-data; name=\"" +
           std::string(key) + "\"\r\n\r\n" + std::string(value) + "\r\n";
    };
    field(":action", action);
    field("protocol_version", "1");
    field("name", name);
    field("version", version);
    field("filetype", filetype);
    field("pyversion", "source");
    field("metadata_version", "2.1");
    field("requires_python", ">=3.8");
    if (!sha256.empty()) field("sha256_digest", sha256);
    if (!md5.empty()) field("md5_digest", md5);
    b += "--" + std::string(kBoundary) +
         "\r\nContent-Disposition: form-data; name=\"content\"; filename=\"" + filename +
         "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + "\r\n--" +
         std::string(kBoundary) + "--\r\n";
    return b;
  }
};

class PypiHostedServiceTest : public ::testing::Test {
 protected:
  PypiHostedServiceTest() {
    config::pypi_upstream u;
    u.name = "a";
    u.url = h_.upstream().base() + "/a/simple/";
    cfg_.upstreams.push_back(u);
    cfg_.index_ttl = std::chrono::seconds(3600);
    cfg_.hosted.push_back({"team", {"ci"}, {}});
    accounts_.users = {{"ci", std::string(kToken)}, {"reader", "reader-token-0123456789"}};
    pypi::service::create(cfg_, h_.store(), h_.client(), h_.flights(), h_.metrics(), h_.blocking(),
                          accounts_)
        ->install(h_.server());
  }

  static form sdist(std::string content) {
    form f;
    f.content = std::move(content);
    f.sha256 = sha256_hex(f.content);
    return f;
  }

  recorded_response upload(const form& f, std::string user = "ci",
                           std::string token = std::string(kToken)) {
    fake_request req;
    req.method = http::verb::post;
    req.target = "/team/";
    req.headers = {{"Content-Type", "multipart/form-data; boundary=" + std::string(kBoundary)}};
    if (!user.empty()) req.headers.emplace_back("Authorization", basic(user, token));
    req.body = f.body();
    return h_.serve(std::move(req));
  }

  static std::string basic(std::string_view user, std::string_view token) {
    return proxy::basic_authorization(user, token);
  }

  boost::json::value page(std::string_view project) {
    auto r = h_.get("/simple/" + std::string(project) + "/", {{"Accept", std::string(kJson)}});
    EXPECT_EQ(r.status, 200u) << r;
    return boost::json::parse(r.body);
  }

  recorded_response yank(std::string target, http::verb method, std::string body = {}) {
    fake_request req;
    req.method = method;
    req.target = std::move(target);
    req.headers = {{"Authorization", basic("ci", kToken)}};
    req.body = std::move(body);
    return h_.serve(std::move(req));
  }

  service_harness h_;
  config::pypi_config cfg_;
  config::oci_hosted accounts_;
};

TEST_F(PypiHostedServiceTest, AnUploadIsListedServedAndNeverAskedUpstream) {
  // Over a megabyte: the body arrives in several reads and goes to disk in pieces.
  const form f = sdist(pattern(1'300'000, 7));
  auto r = upload(f);
  ASSERT_EQ(r.status, 200u) << r;
  EXPECT_THAT(r.body, HasSubstr("demo-1.0.tar.gz is in team"));

  const auto p = page("demo");
  EXPECT_EQ(p.at("name").as_string(), "Demo");
  const auto& file = p.at("files").at(0);
  EXPECT_EQ(file.at("filename").as_string(), "demo-1.0.tar.gz");
  EXPECT_EQ(file.at("url").as_string(), "/team/files/demo/demo-1.0.tar.gz");
  EXPECT_EQ(file.at("hashes").at("sha256").as_string(), f.sha256);
  EXPECT_EQ(file.at("size").as_int64(), 1'300'000);
  EXPECT_EQ(file.at("requires-python").as_string(), ">=3.8") << "the form's, for an sdist";

  auto got = h_.get("/team/files/demo/demo-1.0.tar.gz");
  ASSERT_EQ(got.status, 200u) << got;
  EXPECT_EQ(sha256_hex(got.body), f.sha256);
  EXPECT_EQ(h_.get("/team/simple/demo/", {{"Accept", std::string(kJson)}}).status, 200u);
  EXPECT_TRUE(h_.upstream().requests().empty()) << "a hosted project is never asked upstream";
}

TEST_F(PypiHostedServiceTest, AnUploadedFileIsPinnedOutsideTheQuota) {
  const form f = sdist(pattern(5000, 1));
  ASSERT_EQ(upload(f).status, 200u);
  auto info = h_.store()->stat_blob(cache::digest::parse_hex(f.sha256).value());
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->pinned);
}

TEST_F(PypiHostedServiceTest, CredentialsAreCheckedBeforeAnythingIsStored) {
  const std::uint64_t before = h_.blob_count();
  auto none = upload(sdist("x"), "");
  EXPECT_EQ(none.status, 401u) << none;
  EXPECT_EQ(none.header("WWW-Authenticate"), "Basic realm=\"pantry\"");
  auto wrong = upload(sdist("x"), "ci", "not-the-token-0123456789");
  EXPECT_EQ(wrong.status, 403u) << wrong;
  EXPECT_THAT(wrong.body, HasSubstr("wrong user name or token"));
  auto reader = upload(sdist("x"), "reader", "reader-token-0123456789");
  EXPECT_EQ(reader.status, 403u) << reader;
  EXPECT_THAT(reader.body, HasSubstr("The user 'reader' isn't allowed to upload to the hosted "
                                     "index team (its uploaders in pypi.hosted: ci)"));
  EXPECT_EQ(h_.blob_count(), before);
  EXPECT_EQ(h_.get("/team/simple/demo/").status, 404u);
}

TEST_F(PypiHostedServiceTest, AWrongDigestOrNoDigestIsRefusedAndNothingStored) {
  const std::uint64_t before = h_.blob_count();
  form f = sdist("the bytes");
  f.md5 = "00000000000000000000000000000000";
  auto r = upload(f);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body,
              HasSubstr("The digest supplied does not match a digest calculated from "
                        "the uploaded file: md5_digest is \"00000000000000000000000000000000"
                        "\", the 9 bytes received have "));
  f.md5.clear();
  f.sha256.clear();
  r = upload(f);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body, HasSubstr("Include at least one message digest"));
  EXPECT_EQ(h_.blob_count(), before);
}

TEST_F(PypiHostedServiceTest, FormProblemsAreRefusedWithWhatToSend) {
  form f = sdist("x");
  f.filename = "other-1.0.tar.gz";
  auto r = upload(f);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body, HasSubstr("Start filename for project \"demo\" with its name"));
  f = sdist("x");
  f.action = "remove_pkg";
  r = upload(f);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body, HasSubstr("Unknown :action \"remove_pkg\""));
  // A wheel that is no zip: its METADATA cannot be read.
  f = sdist("not a zip");
  f.filename = "demo-1.0-py3-none-any.whl";
  f.filetype = "bdist_wheel";
  r = upload(f);
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body, HasSubstr("Invalid wheel: "));
  // A body cut off before its closing delimiter.
  fake_request cut;
  cut.method = http::verb::post;
  cut.target = "/team/";
  cut.headers = {{"Content-Type", "multipart/form-data; boundary=b"},
                 {"Authorization", basic("ci", kToken)}};
  cut.body = "--b\r\nContent-Disposition: form-data; name=name\r\n\r\ndemo";
  r = h_.serve(std::move(cut));
  EXPECT_EQ(r.status, 400u) << r;
  EXPECT_THAT(r.body, HasSubstr("the upload was cut off"));
  EXPECT_EQ(h_.get("/team/simple/demo/").status, 404u);
}

TEST_F(PypiHostedServiceTest, AFileNameIsNeverReusedButTheSameBytesAreANoOp) {
  ASSERT_EQ(upload(sdist("first")).status, 200u);
  auto again = upload(sdist("first"));
  EXPECT_EQ(again.status, 200u) << again;
  EXPECT_THAT(again.body, HasSubstr("already, with these bytes; nothing changed"));
  auto other = upload(sdist("second"));
  EXPECT_EQ(other.status, 400u) << other;
  EXPECT_THAT(other.body, HasSubstr("File already exists: demo-1.0.tar.gz is in team with sha256 " +
                                    sha256_hex("first")));
  const auto p = page("demo");
  ASSERT_EQ(p.at("files").as_array().size(), 1u);
  EXPECT_EQ(p.at("files").at(0).at("hashes").at("sha256").as_string(), sha256_hex("first"));
}

TEST_F(PypiHostedServiceTest, AHostedNameShadowsTheUpstreamsProject) {
  // The upstream has demo too; once demo is hosted, only the hosted file is listed.
  h_.upstream().script_status(
      "/a/simple/demo/", 200, {{"Content-Type", "text/html"}},
      "<a href=\"/x/demo-9.0.tar.gz#sha256=" + sha256_hex("u") + "\">demo-9.0.tar.gz</a>");
  ASSERT_EQ(upload(sdist("mine")).status, 200u);
  const auto p = page("demo");
  ASSERT_EQ(p.at("files").as_array().size(), 1u);
  EXPECT_EQ(p.at("files").at(0).at("filename").as_string(), "demo-1.0.tar.gz");
  EXPECT_TRUE(h_.upstream().requests().empty());
  auto json_api = h_.get("/pypi/demo/json");
  EXPECT_EQ(json_api.status, 404u) << json_api;
  EXPECT_THAT(json_api.body, HasSubstr("\"demo\" is hosted in team"));
  // The project list names it as uploaded.
  auto root = h_.get("/team/simple/", {{"Accept", std::string(kJson)}});
  EXPECT_THAT(root.body, HasSubstr("\"name\":\"Demo\""));
}

TEST_F(PypiHostedServiceTest, AnIndexThatMergesANameAddsTheUpstreamsOtherFiles) {
  cfg_.hosted[0].merge = {"de*"};
  pypi::service::create(cfg_, h_.store(), h_.client(), h_.flights(), h_.metrics(), h_.blocking(),
                        accounts_)
      ->install(h_.server());
  const std::string theirs = "their 0.9";
  h_.upstream().script_status("/a/simple/demo/", 200, {{"Content-Type", "text/html"}},
                              "<a href=\"/x/demo-0.9.tar.gz#sha256=" + sha256_hex(theirs) +
                                  "\">demo-0.9.tar.gz</a><a href=\"/x/demo-1.0.tar.gz#sha256=" +
                                  sha256_hex("their 1.0") + "\">demo-1.0.tar.gz</a>");
  h_.upstream().script_status("/x/demo-0.9.tar.gz", 200, {}, theirs);
  ASSERT_EQ(upload(sdist("mine")).status, 200u);
  const auto p = page("demo");
  const auto& files = p.at("files").as_array();
  ASSERT_EQ(files.size(), 2u) << p;
  // The hosted file first; of the upstream's, only the name the index does not have.
  EXPECT_EQ(files.at(0).at("hashes").at("sha256").as_string(), sha256_hex("mine"));
  EXPECT_EQ(files.at(1).at("filename").as_string(), "demo-0.9.tar.gz");
  const std::string url(files.at(1).at("url").as_string());
  EXPECT_TRUE(url.starts_with("/files/a/127.0.0.1:")) << url;
  auto got = h_.get(url);
  EXPECT_EQ(got.status, 200u) << got;
  EXPECT_EQ(got.body, theirs);
  // A name no merge pattern matches is the index's alone.
  form other = sdist("other");
  other.name = "other";
  other.filename = "other-1.0.tar.gz";
  ASSERT_EQ(upload(other).status, 200u);
  EXPECT_EQ(page("other").at("files").as_array().size(), 1u);
  EXPECT_TRUE(h_.upstream().requests_for("/a/simple/other/").empty());
}

TEST_F(PypiHostedServiceTest, YankAndUnyankAVersion) {
  ASSERT_EQ(upload(sdist("a")).status, 200u);
  auto r = yank("/team/demo/1.0/yank", http::verb::put, R"({"reason": "broken"})");
  ASSERT_EQ(r.status, 200u) << r;
  EXPECT_EQ(boost::json::parse(r.body),
            boost::json::parse(R"({"project": "Demo", "version": "1.0", "yanked": true,
                                   "reason": "broken", "files": ["demo-1.0.tar.gz"]})"));
  EXPECT_EQ(page("demo").at("files").at(0).at("yanked").as_string(), "broken");
  auto html = h_.get("/simple/demo/", {{"Accept", "text/html"}});
  EXPECT_THAT(html.body, HasSubstr("data-yanked=\"broken\""));

  r = yank("/team/demo/1.0/yank", http::verb::put);
  ASSERT_EQ(r.status, 200u) << r;
  EXPECT_TRUE(page("demo").at("files").at(0).at("yanked").as_bool()) << "yanked with no reason";
  r = yank("/team/demo/1.0/yank", http::verb::delete_);
  ASSERT_EQ(r.status, 200u) << r;
  EXPECT_FALSE(page("demo").at("files").at(0).at("yanked").as_bool());

  EXPECT_EQ(yank("/team/demo/2.0/yank", http::verb::put).status, 404u);
  EXPECT_EQ(yank("/team/nope/1.0/yank", http::verb::put).status, 404u);
  auto bad = yank("/team/demo/1.0/yank", http::verb::put, "[1]");
  EXPECT_EQ(bad.status, 400u) << bad;
  EXPECT_THAT(bad.body, HasSubstr("a JSON object {\"reason\": \"...\"}, not \"[1]\""));
  EXPECT_EQ(yank("/team/demo/1.0/yank", http::verb::post).status, 405u);
}

TEST_F(PypiHostedServiceTest, OtherPathsUnderTheIndexAreNotFound) {
  EXPECT_EQ(h_.get("/teamwork/").status, 404u);
  EXPECT_EQ(h_.get("/team/files/demo/none.tar.gz").status, 404u);
  auto r = h_.get("/team/");
  EXPECT_EQ(r.status, 405u) << r;
  EXPECT_THAT(r.body, HasSubstr("takes uploads here with POST"));
}

}  // namespace
}  // namespace pantry::registry::testing
