#pragma once

// Every key the PyPI side writes to the cache's `entries` database, named once (as LevelDB's
// db/filename.h names every file). Keys are byte-for-byte what earlier versions wrote: a cache
// filled by one version is read by the next, so a format here never changes.
//
//   pypi/page/<upstream>/<project>                a project's index page (both representations)
//   pypi/root/<upstream>                          an upstream's project list
//   pypi/json/<upstream>/<project>[/<version>]    a JSON API answer
//   pypi/file/<upstream>/<location>               a file an index listed (wheel, sdist)
//   pypi/file/<upstream>/<location>.metadata      its PEP 658 metadata file
//   pypi/hosted/<index>/<project>                 a hosted project's record (hosted.h's JSON)
//   pypi/hosted-file/<index>/<project>/<filename> a file uploaded to a hosted index
//   pypi/hosted-file/<index>/<project>/<filename>.metadata  its PEP 658 metadata file
//
// <index> is the name of a pypi.hosted item (hosted entries never expire and point at pinned
// blobs, outside the quota); <upstream> is the name of a pypi.upstreams item, <project> a PEP 503
// normalized name, <location> the upstream URL without its scheme (see file_path.h). A page or JSON
// key may hold a negative answer (status 404 or 410, no target).

#include <string>
#include <string_view>

namespace pantry::registry::pypi::keys {

// What every index page key starts with (a scan lists the projects pantry has pages for).
inline constexpr std::string_view kPagePrefix = "pypi/page/";
// What a metadata file's key adds to its file's key.
inline constexpr std::string_view kMetadataSuffix = ".metadata";

inline std::string page(std::string_view upstream, std::string_view project) {
  std::string k(kPagePrefix);
  k.append(upstream).append("/").append(project);
  return k;
}

// The project a page key names (what follows its last '/').
inline std::string_view project_of_page(std::string_view page_key) {
  return page_key.substr(page_key.rfind('/') + 1);
}

inline std::string root(std::string_view upstream) {
  return "pypi/root/" + std::string(upstream);
}

// `version` empty: the project's answer (/pypi/<project>/json).
inline std::string json(std::string_view upstream, std::string_view project,
                        std::string_view version) {
  std::string k = "pypi/json/";
  k.append(upstream).append("/").append(project);
  if (!version.empty()) k.append("/").append(version);
  return k;
}

inline std::string file(std::string_view upstream, std::string_view location) {
  std::string k = "pypi/file/";
  k.append(upstream).append("/").append(location);
  return k;
}

inline std::string metadata(std::string_view upstream, std::string_view file_location) {
  return file(upstream, file_location) + std::string(kMetadataSuffix);
}

// The key of the file whose metadata file has key `metadata_key` (made by metadata()).
inline std::string file_of_metadata(std::string_view metadata_key) {
  return std::string(metadata_key.substr(0, metadata_key.size() - kMetadataSuffix.size()));
}

// What every hosted project record's key starts with (a scan lists the hosted projects), and
// every hosted file's.
inline constexpr std::string_view kHostedPrefix = "pypi/hosted/";
inline constexpr std::string_view kHostedFilePrefix = "pypi/hosted-file/";

inline std::string hosted_project(std::string_view index, std::string_view project) {
  std::string k(kHostedPrefix);
  k.append(index).append("/").append(project);
  return k;
}

// Also the key of a hosted file's metadata file, when `filename` ends in kMetadataSuffix.
inline std::string hosted_file(std::string_view index, std::string_view project,
                               std::string_view filename) {
  std::string k(kHostedFilePrefix);
  k.append(index).append("/").append(project).append("/").append(filename);
  return k;
}

}  // namespace pantry::registry::pypi::keys
