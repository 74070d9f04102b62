#pragma once

// Every key the container registry writes to the cache's `entries` database, named once (as
// LevelDB's db/filename.h names every file). Keys are byte-for-byte what earlier versions wrote:
// a cache filled by one version is read by the next, so a format here never changes.
//
//   oci/tag/<repo key>:<tag>            a tag: the manifest it resolved to (a TTL when proxied)
//   oci/manifest/<repo key>@<digest>    a manifest the repository holds (immutable)
//   oci/blob/<repo key>@<digest>        a blob the repository's manifests reference (immutable)
//   oci/referrers/<repo key>@<digest>   a proxied subject's referrers list (an index; a TTL)
//
// The repository key is "<upstream>/<repo>" for a proxied name (the upstream's name from
// oci.upstreams, the repository's name there, library/ added for Docker Hub) and
// "hosted/<name>" for a hosted one.

#include <string>
#include <string_view>

namespace pantry::registry::oci::keys {

inline std::string proxied_repo(std::string_view upstream, std::string_view repo) {
  std::string k(upstream);
  k.append("/").append(repo);
  return k;
}

inline std::string hosted_repo(std::string_view name) {
  return "hosted/" + std::string(name);
}

// `tag` empty: the prefix of every tag key of the repository (what follows it is the tag).
inline std::string tag(std::string_view repo_key, std::string_view tag) {
  std::string k = "oci/tag/";
  k.append(repo_key).append(":").append(tag);
  return k;
}

inline std::string manifest(std::string_view repo_key, std::string_view digest) {
  std::string k = "oci/manifest/";
  k.append(repo_key).append("@").append(digest);
  return k;
}

inline std::string blob(std::string_view repo_key, std::string_view digest) {
  std::string k = "oci/blob/";
  k.append(repo_key).append("@").append(digest);
  return k;
}

inline std::string referrers(std::string_view repo_key, std::string_view subject) {
  std::string k = "oci/referrers/";
  k.append(repo_key).append("@").append(subject);
  return k;
}

// What every hosted repository's manifest and blob keys start with (gc scans them); what follows
// is "<name>@<digest>".
inline constexpr std::string_view kHostedManifestPrefix = "oci/manifest/hosted/";
inline constexpr std::string_view kHostedBlobPrefix = "oci/blob/hosted/";

}  // namespace pantry::registry::oci::keys
