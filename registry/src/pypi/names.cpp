#include "pantry/registry/pypi/names.h"

#include "keys.h"
#include "url.h"

#include <array>

namespace pantry::registry::pypi {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) noexcept {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    char c = s[s.size() - suffix.size() + i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != suffix[i]) return false;
  }
  return true;
}

// File name extensions of sdists and legacy distributions, longest first where one ends another.
constexpr std::array<std::string_view, 10> kSdistExtensions = {
    ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tgz", ".tbz", ".txz", ".tar", ".zip", ".tar.z"};
constexpr std::array<std::string_view, 4> kLegacyExtensions = {".egg", ".exe", ".msi", ".rpm"};

}  // namespace

std::optional<dist_filename> parse_dist_filename(std::string_view filename,
                                                 std::string_view project) {
  const std::string want = normalize_project_name(project);
  if (ends_with(filename, ".whl")) {
    const std::string_view stem = filename.substr(0, filename.size() - 4);
    std::array<std::string_view, 7> parts{};
    std::size_t n = 0;
    std::size_t start = 0;
    for (;;) {
      const std::size_t dash = stem.find('-', start);
      if (n == parts.size()) return std::nullopt;
      parts[n++] = stem.substr(start, dash == std::string_view::npos ? dash : dash - start);
      if (dash == std::string_view::npos) break;
      start = dash + 1;
    }
    if (n != 5 && n != 6) return std::nullopt;
    for (std::size_t i = 0; i < n; ++i) {
      if (parts[i].empty()) return std::nullopt;
    }
    if (!want.empty() && normalize_project_name(parts[0]) != want) return std::nullopt;
    return dist_filename{std::string(parts[0]), std::string(parts[1]), true};
  }
  std::string_view stem;
  bool legacy = false;
  for (auto ext : kSdistExtensions) {
    if (ends_with(filename, ext)) {
      stem = filename.substr(0, filename.size() - ext.size());
      break;
    }
  }
  if (stem.empty()) {
    for (auto ext : kLegacyExtensions) {
      if (ends_with(filename, ext)) {
        stem = filename.substr(0, filename.size() - ext.size());
        legacy = true;
        break;
      }
    }
  }
  if (stem.empty()) return std::nullopt;
  std::size_t sep = std::string_view::npos;
  if (want.empty()) {
    sep = legacy ? stem.find('-') : stem.rfind('-');
  } else {
    // The name is the prefix, up to a '-', that normalizes to the project's name.
    for (std::size_t i = stem.find('-'); i != std::string_view::npos; i = stem.find('-', i + 1)) {
      if (normalize_project_name(stem.substr(0, i)) == want) {
        sep = i;
        break;
      }
    }
  }
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  std::string_view version = stem.substr(sep + 1);
  // Eggs and installers: "{name}-{version}-py3.8(-{platform})".
  if (legacy) version = version.substr(0, version.find('-'));
  if (version.empty()) return std::nullopt;
  return dist_filename{std::string(stem.substr(0, sep)), std::string(version), false};
}

std::optional<std::string> project_of_file_location(std::string_view location) {
  std::string_view path = location.substr(0, location.find('?'));
  const std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;  // a host alone names no file
  std::string filename = detail::percent_decode(path.substr(slash + 1));
  if (filename.ends_with(keys::kMetadataSuffix)) {
    filename.resize(filename.size() - keys::kMetadataSuffix.size());
  }
  auto dist = parse_dist_filename(filename, "");
  if (!dist || !is_valid_project_name(dist->project)) return std::nullopt;
  return normalize_project_name(dist->project);
}

}  // namespace pantry::registry::pypi
