#pragma once

// The pure parts of the OCI distribution protocol (distribution-spec v1.1): request paths,
// repository names, tags and digests, manifest media types and Accept matching, what a manifest
// references, OCI 1.1 referrers lists, WWW-Authenticate challenges and token answers. No
// networking: the service calls it.

#include "pantry/cache/digest.h"
#include "pantry/error.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::oci {

// Manifest media types pantry understands (and asks upstream for when a client sends no Accept).
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
// Every manifest type, as one Accept value.
inline constexpr std::string_view kAllManifests =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

enum class api_kind {
  ping,       // /v2/
  manifest,   // /v2/<name>/manifests/<reference>
  blob,       // /v2/<name>/blobs/<digest>
  tags,       // /v2/<name>/tags/list
  upload,     // /v2/<name>/blobs/uploads/ (reference empty) or …/uploads/<id>
  catalog,    // /v2/_catalog
  referrers,  // /v2/<name>/referrers/<digest>
};

struct api_path {
  api_kind kind = api_kind::ping;
  std::string name;       // the repository name as the client wrote it
  std::string reference;  // tag or digest (manifest), digest (blob, referrers), upload id (upload)
};

// Parses the path part of a /v2/ request target (no query) of a request that reads (`read`: GET
// or HEAD) or writes. Errors are errc::invalid_argument with the spec's error code as the first
// word of the message: "NAME_INVALID …", "TAG_INVALID …", "DIGEST_INVALID …", "NOT_FOUND …" for
// a path that is no API endpoint, and "MANIFEST_UNKNOWN …" when a read names a manifest by a
// reference that is neither a tag nor a digest (a write with one is "TAG_INVALID" or
// "DIGEST_INVALID"), as distribution answers.
result<api_path> parse_api_path(std::string_view path, bool read = false);

// distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*,
// at most 255 characters.
bool valid_name(std::string_view name);
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
bool valid_tag(std::string_view tag);
// "sha256:<64 lowercase hex>" (the only algorithm pantry stores).
bool is_digest(std::string_view reference);

// The media types a request's Accept header lines allow (each line may hold a comma-separated
// list; parameters such as q= are dropped, q=0 excludes).
struct accept_set {
  bool any = true;                 // no Accept header at all
  std::vector<std::string> types;  // lowercase, in order, no duplicates
  friend bool operator==(const accept_set&, const accept_set&) = default;
};
accept_set accepted_types(const std::vector<std::string_view>& accept_lines);
// Whether a manifest of `media_type` may answer a client that accepts `accepted`: no Accept, or
// "*/*", "application/*", or the type itself. A type's parameters are ignored.
bool accepts(const accept_set& accepted, std::string_view media_type);

// A descriptor in a manifest: what it points at.
struct descriptor {
  std::string media_type;
  cache::digest digest;
  std::uint64_t size = 0;
  std::string platform;  // "os/arch[/variant]" in an index, else empty
};

// What a manifest references.
struct manifest_refs {
  std::string media_type;             // the manifest's own mediaType field (may be empty)
  bool is_index = false;              // an OCI index or a Docker manifest list
  std::vector<descriptor> blobs;      // config and layers (image manifests)
  std::vector<descriptor> manifests;  // the platform manifests (indexes)
  // OCI 1.1: the manifest this one refers to (a signature's or SBOM's image), if any and if
  // sha256. It is no reference gc follows: a referrer may be pushed before its subject, or
  // outlive it.
  std::optional<descriptor> subject;
  std::string artifact_type;                       // the artifactType field, "" when absent
  std::map<std::string, std::string> annotations;  // the string-valued annotations
};

// Parses a manifest's JSON. `content_type` (the Content-Type it came with) decides the kind when
// the body names no mediaType. Errors (errc::invalid_argument) start with "MANIFEST_INVALID".
// Descriptors with a digest of another algorithm than sha256 are refused.
result<manifest_refs> parse_manifest(std::string_view body, std::string_view content_type);

// A manifest as a referrers list describes it (distribution-spec 1.1, "Listing Referrers").
struct referrer {
  std::string media_type;
  cache::digest digest;
  std::uint64_t size = 0;
  std::string artifact_type;  // the manifest's artifactType, else its config's mediaType
  std::map<std::string, std::string> annotations;
  friend bool operator==(const referrer&, const referrer&) = default;
};

// The descriptor that lists manifest `body` (stored with `content_type`) among the referrers of
// `subject`, or nullopt when its subject is another manifest, it has none, or it is no manifest.
std::optional<referrer> as_referrer(std::string_view body, std::string_view content_type,
                                    const cache::digest& subject);

// The body of a referrers answer: an OCI image index of `referrers` in the order given, only
// those whose artifactType is `artifact_type` when that is not empty. An empty list is an index
// with an empty "manifests" array, never an error.
std::string referrers_index(const std::vector<referrer>& referrers, std::string_view artifact_type);

// The descriptors of a referrers answer or of an index kept under the referrers tag schema
// (`body`, an OCI image index). Descriptors pantry cannot serve (not sha256) are left out.
// errc::invalid_argument when `body` is no index.
result<std::vector<referrer>> parse_referrers_index(std::string_view body);

// The tag under which a registry without the referrers API keeps `subject`'s referrers list
// (the spec's "referrers tag schema"): "sha256-<hex>".
std::string referrers_tag(const cache::digest& subject);

// One challenge of a WWW-Authenticate header: `Bearer realm="…",service="…",scope="…"`.
struct challenge {
  std::string scheme;                         // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lowercase
};
// Parses a WWW-Authenticate value (RFC 9110 section 11.6.1): several challenges, quoted strings
// with escapes, token68. Anything unparsable ends the list.
std::vector<challenge> parse_challenges(std::string_view header);

// A token endpoint's answer: {"token": …} or {"access_token": …}, with optional "expires_in"
// (seconds) and "issued_at".
struct bearer_token {
  std::string token;
  std::chrono::seconds lifetime{60};  // 60 s when the answer gives no expires_in
};
result<bearer_token> parse_token_answer(std::string_view body);

// The URL of a token request: realm?service=…&scope=… (query values percent-encoded).
std::string token_url(std::string_view realm, std::string_view service, std::string_view scope);

// {"errors":[{"code":…,"message":…,"detail":{}}]}
std::string error_body(std::string_view code, std::string_view message);

// One page of a tag list (GET /v2/<name>/tags/list?n=…&last=…).
struct tag_page {
  std::vector<std::string> tags;  // in lexical order, as the spec wants
  std::string next;               // the Link header value of the next page; "" on the last page
};
// Pages `tags` (any order) of repository `name` (as the client wrote it, for the Link) as the
// query parameters `n_text` and `last` ask ("" when absent): the tags after `last` in lexical
// order, at most n of them (all when `n_text` is no number), and a Link
// "</v2/<name>/tags/list?n=<n>&last=<the page's last tag>>; rel="next"" when more follow.
tag_page page_tags(std::vector<std::string> tags, std::string_view name, std::string_view n_text,
                   std::string_view last);

}  // namespace pantry::registry::oci
