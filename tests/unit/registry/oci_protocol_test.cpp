#include "pantry/registry/oci/protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace pantry::registry::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kDigest = "sha256:" + std::string(64, 'a');
const std::string kDigest2 = "sha256:" + std::string(64, 'b');

TEST(OciNames, AcceptsTheSpecGrammar) {
  for (const char* ok : {"busybox", "library/busybox", "a/b/c", "my.app", "my_app", "my__app",
                         "my---app", "ghcr.io/org/app", "0x/1"}) {
    EXPECT_TRUE(valid_name(ok)) << ok;
  }
  for (const char* bad : {"", "Busybox", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a_.b",
                          "a/../b", "a b", "a%2fb"}) {
    EXPECT_FALSE(valid_name(bad)) << bad;
  }
  EXPECT_FALSE(valid_name(std::string(256, 'a')));
  EXPECT_TRUE(valid_name(std::string(255, 'a')));
}

TEST(OciNames, Tags) {
  EXPECT_TRUE(valid_tag("latest"));
  EXPECT_TRUE(valid_tag("1.36"));
  EXPECT_TRUE(valid_tag("_x-Y.z"));
  EXPECT_FALSE(valid_tag(".hidden"));
  EXPECT_FALSE(valid_tag("-x"));
  EXPECT_FALSE(valid_tag(""));
  EXPECT_FALSE(valid_tag("a:b"));
  EXPECT_TRUE(valid_tag(std::string(128, 'a')));
  EXPECT_FALSE(valid_tag(std::string(129, 'a')));
}

TEST(OciApiPath, Endpoints) {
  auto ping = parse_api_path("/v2/");
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->kind, api_kind::ping);

  auto m = parse_api_path("/v2/library/busybox/manifests/1.36");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->kind, api_kind::manifest);
  EXPECT_EQ(m->name, "library/busybox");
  EXPECT_EQ(m->reference, "1.36");

  auto byd = parse_api_path("/v2/a/manifests/" + kDigest);
  ASSERT_TRUE(byd);
  EXPECT_EQ(byd->reference, kDigest);

  auto b = parse_api_path("/v2/ghcr.io/org/app/blobs/" + kDigest);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->kind, api_kind::blob);
  EXPECT_EQ(b->name, "ghcr.io/org/app");

  auto t = parse_api_path("/v2/a/b/tags/list");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->kind, api_kind::tags);
  EXPECT_EQ(t->name, "a/b");

  auto u = parse_api_path("/v2/local/app/blobs/uploads/");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, api_kind::upload);
  EXPECT_EQ(u->reference, "");
  auto u2 = parse_api_path("/v2/local/app/blobs/uploads/abc-123");
  ASSERT_TRUE(u2);
  EXPECT_EQ(u2->reference, "abc-123");

  // A repository may itself be called "manifests" or "blobs": the last marker wins.
  auto odd = parse_api_path("/v2/blobs/manifests/latest");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->name, "blobs");
}

TEST(OciApiPath, ErrorsNameTheCodeAndTheValue) {
  auto bad_name = parse_api_path("/v2/Bad/manifests/latest");
  ASSERT_FALSE(bad_name);
  EXPECT_THAT(bad_name.error().message, StartsWith("NAME_INVALID \"Bad\""));

  auto bad_digest = parse_api_path("/v2/a/blobs/sha256:xyz");
  ASSERT_FALSE(bad_digest);
  EXPECT_THAT(bad_digest.error().message, StartsWith("DIGEST_INVALID \"sha256:xyz\""));

  auto md5 = parse_api_path("/v2/a/manifests/md5:abc");
  ASSERT_FALSE(md5);
  EXPECT_THAT(md5.error().message, StartsWith("DIGEST_INVALID"));

  auto bad_tag = parse_api_path("/v2/a/manifests/.x");
  ASSERT_FALSE(bad_tag);
  EXPECT_THAT(bad_tag.error().message, StartsWith("TAG_INVALID"));

  auto traversal = parse_api_path("/v2/../etc/manifests/latest");
  ASSERT_FALSE(traversal);
  EXPECT_THAT(traversal.error().message, StartsWith("NAME_INVALID"));

  auto nothing = parse_api_path("/v2/a/b");
  ASSERT_FALSE(nothing);
  EXPECT_THAT(nothing.error().message, StartsWith("NOT_FOUND"));
}

TEST(OciAccept, SeveralLinesAndCommaJoinedLinesMeanTheSame) {
  auto split = accepted_types({kOciManifest, kDockerManifest});
  auto joined =
      accepted_types({"application/vnd.oci.image.manifest.v1+json, "
                      "application/vnd.docker.distribution.manifest.v2+json;q=0.9"});
  EXPECT_EQ(split, joined);
  EXPECT_FALSE(split.any);
  EXPECT_THAT(split.types, ElementsAre(std::string(kOciManifest), std::string(kDockerManifest)));
  EXPECT_TRUE(accepted_types({}).any);
  EXPECT_TRUE(accepted_types({""}).any) << "an empty Accept line is no Accept";
}

TEST(OciAccept, AllowsOnlyWhatTheClientNamed) {
  auto docker_only = accepted_types({kDockerManifest});
  EXPECT_TRUE(accepts(docker_only, kDockerManifest));
  EXPECT_FALSE(accepts(docker_only, kOciIndex));
  EXPECT_TRUE(accepts(accepted_types({}), kOciIndex)) << "no Accept at all allows anything";
  EXPECT_TRUE(accepts(accepted_types({"*/*"}), kOciIndex));
  EXPECT_TRUE(accepts(accepted_types({"application/*"}), kOciIndex));
  EXPECT_FALSE(accepts(accepted_types({"application/json;q=0"}), "application/json"));
  EXPECT_TRUE(accepts(docker_only, "application/vnd.docker.distribution.manifest.v2+json; x=y"));
}

TEST(OciManifest, ImageManifestListsConfigAndLayers) {
  std::string m =
      R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
      kDigest + R"(","size":12},"layers":[{"mediaType":"x","digest":")" + kDigest2 +
      R"(","size":34}]})";
  auto refs = parse_manifest(m, kOciManifest);
  ASSERT_TRUE(refs) << refs.error().message;
  EXPECT_FALSE(refs->is_index);
  EXPECT_EQ(refs->media_type, "") << "an OCI manifest may omit mediaType";
  ASSERT_EQ(refs->blobs.size(), 2u);
  EXPECT_EQ(refs->blobs[0].digest.str(), kDigest);
  EXPECT_EQ(refs->blobs[0].size, 12u);
  EXPECT_EQ(refs->blobs[1].digest.str(), kDigest2);
  EXPECT_EQ(refs->blobs[1].size, 34u);
}

TEST(OciManifest, IndexListsPlatforms) {
  std::string m =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      kDigest + R"(","size":5,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]})";
  auto refs = parse_manifest(m, "");
  ASSERT_TRUE(refs) << refs.error().message;
  EXPECT_TRUE(refs->is_index);
  ASSERT_EQ(refs->manifests.size(), 1u);
  EXPECT_EQ(refs->manifests[0].platform, "linux/arm64/v8");
}

TEST(OciManifest, RefusesWhatItCannotVerify) {
  auto not_json = parse_manifest("{", kOciManifest);
  ASSERT_FALSE(not_json);
  EXPECT_THAT(not_json.error().message, StartsWith("MANIFEST_INVALID"));
  auto schema1 = parse_manifest(R"({"schemaVersion":1,"fsLayers":[]})", "");
  ASSERT_FALSE(schema1);
  EXPECT_THAT(schema1.error().message, HasSubstr("schema 1"));
  auto md5 =
      parse_manifest(R"({"config":{"digest":"md5:00","size":1},"layers":[]})", kDockerManifest);
  ASSERT_FALSE(md5);
  EXPECT_THAT(md5.error().message, HasSubstr("\"md5:00\""));
  auto negative = parse_manifest(
      R"({"config":{"digest":")" + kDigest + R"(","size":-1},"layers":[]})", kDockerManifest);
  ASSERT_FALSE(negative);
  EXPECT_THAT(negative.error().message, HasSubstr("negative size"));
}

TEST(OciChallenge, DockerHubStyleBearer) {
  auto cs = parse_challenges(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "bearer");
  EXPECT_EQ(cs[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(cs[0].params["service"], "registry.docker.io");
  EXPECT_EQ(cs[0].params["scope"], "repository:library/busybox:pull");
}

TEST(OciChallenge, SeveralChallengesQuotesAndEscapes) {
  auto cs = parse_challenges(R"(Basic realm="a \"quoted\", realm", Bearer realm=x, service="s")");
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].scheme, "basic");
  EXPECT_EQ(cs[0].params["realm"], "a \"quoted\", realm");
  EXPECT_EQ(cs[1].scheme, "bearer");
  EXPECT_EQ(cs[1].params["realm"], "x");
  EXPECT_EQ(cs[1].params["service"], "s");
  EXPECT_TRUE(parse_challenges("").empty());
  auto unterminated = parse_challenges(R"(Bearer realm="oops)");
  ASSERT_EQ(unterminated.size(), 1u);
}

TEST(OciToken, AnswerForms) {
  auto a = parse_token_answer(R"({"token":"abc","expires_in":300})");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->token, "abc");
  EXPECT_EQ(a->lifetime, std::chrono::seconds(300));
  auto b = parse_token_answer(R"({"access_token":"xyz"})");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->token, "xyz");
  EXPECT_EQ(b->lifetime, std::chrono::seconds(60)) << "no expires_in means 60 s";
  auto c = parse_token_answer(R"({"expires_in":5})");
  ASSERT_FALSE(c);
  EXPECT_THAT(c.error().message, HasSubstr("neither"));
}

TEST(OciToken, Url) {
  EXPECT_EQ(token_url("https://auth/token", "registry.docker.io", "repository:a/b:pull"),
            "https://auth/token?service=registry.docker.io&scope=repository:a/b:pull");
  EXPECT_EQ(token_url("https://auth/token?x=1", "s p", ""), "https://auth/token?x=1&service=s%20p");
}

TEST(OciError, BodyIsTheSpecShape) {
  EXPECT_EQ(error_body("MANIFEST_UNKNOWN", "no \"x\""),
            "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"no "
            "\\\"x\\\"\",\"detail\":{}}]}\n");
}

TEST(OciTagPage, WithoutNEveryTagInLexicalOrder) {
  auto page = page_tags({"b", "latest", "1.36", "a"}, "x/app", "", "");
  EXPECT_EQ(page.tags, (std::vector<std::string>{"1.36", "a", "b", "latest"}));
  EXPECT_EQ(page.next, "");
}

TEST(OciTagPage, NLimitsThePageAndLinksTheNext) {
  auto page = page_tags({"d", "c", "b", "a"}, "library/busybox", "2", "");
  EXPECT_EQ(page.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(page.next, "</v2/library/busybox/tags/list?n=2&last=b>; rel=\"next\"");
}

TEST(OciTagPage, LastStartsAfterItEvenWhenItIsNoTag) {
  auto page = page_tags({"d", "c", "b", "a"}, "r", "2", "b");
  EXPECT_EQ(page.tags, (std::vector<std::string>{"c", "d"}));
  EXPECT_EQ(page.next, "") << "the last page links nothing";
  page = page_tags({"d", "c", "b", "a"}, "r", "", "bb");
  EXPECT_EQ(page.tags, (std::vector<std::string>{"c", "d"}));
  page = page_tags({"a", "b"}, "r", "5", "z");
  EXPECT_TRUE(page.tags.empty());
  EXPECT_EQ(page.next, "");
}

TEST(OciTagPage, AFullLastPageLinksNothing) {
  auto page = page_tags({"a", "b"}, "r", "2", "");
  EXPECT_EQ(page.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(page.next, "");
}

TEST(OciTagPage, NZeroGivesNoTagsAndNoLink) {
  auto page = page_tags({"a", "b"}, "r", "0", "");
  EXPECT_TRUE(page.tags.empty());
  EXPECT_EQ(page.next, "");
}

TEST(OciTagPage, AnNThatIsNoNumberMeansEveryTag) {
  for (std::string_view n : {"x", "-1", ""}) {
    auto page = page_tags({"b", "a", "c"}, "r", n, "");
    EXPECT_EQ(page.tags, (std::vector<std::string>{"a", "b", "c"})) << "n=" << n;
    EXPECT_EQ(page.next, "") << "n=" << n;
  }
}

// ---- Spec-exact answers: each rule quotes distribution-spec v1.1 ----

namespace spec {

const std::string kSubject = "sha256:" + std::string(64, 'c');
const std::string kConfigType = "application/vnd.example.config.v1+json";

// An artifact manifest referring to kSubject; `extra` is added to its top-level object.
std::string referrer_manifest(const std::string& extra = "") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
         R"("config":{"mediaType":")" +
         kConfigType + R"(","digest":")" + kDigest + R"(","size":2},"layers":[],)" +
         R"("subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kSubject + R"(","size":7})" + extra + "}";
}

}  // namespace spec

// "`<reference>` MUST be either (a) the digest of the manifest or (b) a tag." and "If the
// manifest is not found in the repository, the response code MUST be `404 Not Found`." (Pulling
// manifests): a read of a reference that is neither names no manifest, as distribution answers.
TEST(OciSpec, ReadOfAManifestByAnInvalidReferenceIsManifestUnknown) {
  for (const char* ref : {".INVALID_MANIFEST_NAME", "-x", "md5:abc", "sha256:xyz"}) {
    auto read = parse_api_path(std::string("/v2/a/manifests/") + ref, /*read=*/true);
    ASSERT_FALSE(read) << ref;
    EXPECT_THAT(read.error().message, StartsWith("MANIFEST_UNKNOWN")) << ref;
  }
}

// The same references pushed are a client error: end-7 (PUT manifests) fails with 400, and
// distribution answers TAG_INVALID ("manifest tag did not match URI") or DIGEST_INVALID.
TEST(OciSpec, PushOfAManifestByAnInvalidReferenceStaysInvalid) {
  auto tag = parse_api_path("/v2/a/manifests/.INVALID_MANIFEST_NAME", /*read=*/false);
  ASSERT_FALSE(tag);
  EXPECT_THAT(tag.error().message, StartsWith("TAG_INVALID"));
  auto digest = parse_api_path("/v2/a/manifests/md5:abc", /*read=*/false);
  ASSERT_FALSE(digest);
  EXPECT_THAT(digest.error().message, StartsWith("DIGEST_INVALID"));
  // A blob's digest stays a 400 for reads too.
  auto blob = parse_api_path("/v2/a/blobs/sha256:xyz", /*read=*/true);
  ASSERT_FALSE(blob);
  EXPECT_THAT(blob.error().message, StartsWith("DIGEST_INVALID"));
}

// "To fetch the list of referrers, perform a `GET` request to a path in the following format:
// `/v2/<name>/referrers/<digest>`" and "If the request is invalid, such as a `<digest>` with an
// invalid syntax, a `400 Bad Request` MUST be returned." (Listing Referrers)
TEST(OciSpec, ReferrersPathNamesTheSubjectDigest) {
  auto r = parse_api_path("/v2/local/app/referrers/" + kDigest, true);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, api_kind::referrers);
  EXPECT_EQ(r->name, "local/app");
  EXPECT_EQ(r->reference, kDigest);
  auto bad = parse_api_path("/v2/local/app/referrers/sha256:nothex", true);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, StartsWith("DIGEST_INVALID"));
  // A repository may be called "referrers": only a last segment after it is a digest.
  auto named = parse_api_path("/v2/x/referrers/blobs/" + kDigest, true);
  ASSERT_TRUE(named) << named.error().message;
  EXPECT_EQ(named->kind, api_kind::blob);
  EXPECT_EQ(named->name, "x/referrers");
}

// "When processing a request for an image manifest with the `subject` field, a registry
// implementation that supports the referrers API MUST respond with the response header
// `OCI-Subject: <subject digest>`" (Pushing Manifests with Subject): the subject is parsed.
TEST(OciSpec, ManifestSubjectArtifactTypeAndAnnotationsAreRead) {
  auto refs = parse_manifest(spec::referrer_manifest(R"(,"artifactType":"application/x.sig",)"
                                                     R"("annotations":{"k":"v","n":1})"),
                             "");
  ASSERT_TRUE(refs) << refs.error().message;
  ASSERT_TRUE(refs->subject.has_value());
  EXPECT_EQ(refs->subject->digest.str(), spec::kSubject);
  EXPECT_EQ(refs->artifact_type, "application/x.sig");
  EXPECT_THAT(refs->annotations, ElementsAre(std::pair<const std::string, std::string>("k", "v")))
      << "only string annotations are annotations";
  // The subject is no blob or manifest a push must hold: "A registry MUST initially accept an
  // otherwise valid manifest with a `subject` field that references a manifest that does not
  // exist in the repository".
  EXPECT_EQ(refs->blobs.size(), 1u);
  EXPECT_TRUE(refs->manifests.empty());
  // A subject of another algorithm is no subject pantry processes (so no OCI-Subject), and no
  // reason to refuse the manifest.
  std::string sha512 = spec::referrer_manifest();
  sha512.replace(sha512.find(spec::kSubject), spec::kSubject.size(),
                 "sha512:" + std::string(128, 'd'));
  auto other = parse_manifest(sha512, "");
  ASSERT_TRUE(other) << other.error().message;
  EXPECT_FALSE(other->subject.has_value());
}

// "The descriptors MUST include an `artifactType` field that is set to the value of the
// `artifactType` in the image manifest or index, if present. If the `artifactType` is empty or
// missing in the image manifest, the value of `artifactType` MUST be set to the config descriptor
// `mediaType` value. If the `artifactType` is empty or missing in an index, the `artifactType`
// MUST be omitted. The descriptors MUST include annotations from the image manifest or index."
TEST(OciSpec, ReferrerDescriptorTakesArtifactTypeElseConfigTypeAndAnnotations) {
  const auto subject = cache::digest::parse(spec::kSubject).value();
  const std::string typed =
      spec::referrer_manifest(R"(,"artifactType":"application/x.sbom","annotations":{"a":"b"})");
  auto r = as_referrer(typed, "", subject);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->media_type, kOciManifest);
  EXPECT_EQ(r->digest, cache::digest::of(typed));
  EXPECT_EQ(r->size, typed.size());
  EXPECT_EQ(r->artifact_type, "application/x.sbom");
  EXPECT_EQ(r->annotations.at("a"), "b");

  auto untyped = as_referrer(spec::referrer_manifest(), "", subject);
  ASSERT_TRUE(untyped.has_value());
  EXPECT_EQ(untyped->artifact_type, spec::kConfigType);

  const std::string index =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],)"
      R"("subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      spec::kSubject + R"(","size":7}})";
  auto idx = as_referrer(index, "", subject);
  ASSERT_TRUE(idx.has_value());
  EXPECT_EQ(idx->media_type, kOciIndex);
  EXPECT_EQ(idx->artifact_type, "");
  EXPECT_THAT(referrers_index({*idx}, ""), Not(HasSubstr("artifactType")));

  // Another subject, or none: not a referrer of this one.
  EXPECT_FALSE(as_referrer(typed, "", cache::digest::parse(kDigest2).value()).has_value());
  EXPECT_FALSE(as_referrer(R"({"config":{"digest":")" + kDigest + R"(","size":1},"layers":[]})",
                           kOciManifest, subject)
                   .has_value());
}

// "Upon success, the response MUST be a JSON body with an image index containing a list of
// descriptors." and "If a query results in no matching referrers, an empty manifest list MUST
// be returned."
TEST(OciSpec, ReferrersListIsAnImageIndexEvenWhenEmpty) {
  boost::system::error_code ec;
  auto empty = boost::json::parse(referrers_index({}, ""), ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(empty.at("schemaVersion").as_int64(), 2);
  EXPECT_EQ(empty.at("mediaType").as_string(), kOciIndex);
  EXPECT_TRUE(empty.at("manifests").as_array().empty());
}

// "If filtering is requested and applied, the response MUST include a header
// `OCI-Filters-Applied: artifactType`": the list holds only that type (the header is the
// service's).
TEST(OciSpec, ArtifactTypeFilterKeepsOnlyThatType) {
  const auto subject = cache::digest::parse(spec::kSubject).value();
  auto sig =
      as_referrer(spec::referrer_manifest(R"(,"artifactType":"application/x.sig")"), "", subject);
  auto sbom =
      as_referrer(spec::referrer_manifest(R"(,"artifactType":"application/x.sbom")"), "", subject);
  ASSERT_TRUE(sig && sbom);
  auto doc = boost::json::parse(referrers_index({*sig, *sbom}, "application/x.sbom"));
  const auto& list = doc.at("manifests").as_array();
  ASSERT_EQ(list.size(), 1u) << boost::json::serialize(doc);
  EXPECT_EQ(list[0].at("artifactType").as_string(), "application/x.sbom");
  EXPECT_EQ(list[0].at("digest").as_string(), sbom->digest.str());
  EXPECT_EQ(list[0].at("size").to_number<std::uint64_t>(), sbom->size);
  EXPECT_EQ(list[0].at("mediaType").as_string(), kOciManifest);
  // What a proxied upstream answered reads back the same.
  auto back = parse_referrers_index(referrers_index({*sig, *sbom}, ""));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, (std::vector<referrer>{*sig, *sbom}));
  EXPECT_FALSE(parse_referrers_index(R"({"tags":[]})"));
}

// "The Referrers Tag associated with a Content Digest MUST match the Truncated Algorithm, a `-`
// character, and the Truncated Encoded section" (Referrers Tag Schema), e.g. sha256:aaa… ->
// sha256-aaa….
TEST(OciSpec, ReferrersTagSchema) {
  EXPECT_EQ(referrers_tag(cache::digest::parse(kDigest).value()), "sha256-" + std::string(64, 'a'));
  EXPECT_TRUE(valid_tag(referrers_tag(cache::digest::parse(kDigest).value())));
}

}  // namespace
}  // namespace pantry::registry::oci
