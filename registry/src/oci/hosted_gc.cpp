#include "pantry/registry/oci/protocol.h"
#include "pantry/registry/oci/service.h"

#include "../http_serve.h"
#include "../pypi/keys.h"
#include "keys.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace pantry::registry::oci {

namespace {

// Every hosted manifest and blob key starts so; what follows is "<name>@<digest>".
constexpr std::string_view kManifests = keys::kHostedManifestPrefix;
constexpr std::string_view kBlobs = keys::kHostedBlobPrefix;

}  // namespace

result<hosted_gc_report> collect_hosted_garbage(cache::store& store, std::chrono::seconds grace) {
  hosted_gc_report report;
  // 1. What every hosted manifest references, as "<name>@<digest>". Read after the walk: the
  //    walk holds a read transaction and must not wait.
  std::vector<std::pair<std::string, cache::digest>> manifests;
  auto walked = store.for_each_entry(kManifests, [&](std::string_view key, const cache::entry& e) {
    auto at = key.rfind('@');
    if (e.target && at != std::string_view::npos) {
      manifests.emplace_back(std::string(key.substr(kManifests.size(), at - kManifests.size())),
                             *e.target);
    }
    return true;
  });
  if (!walked) return walked.error();
  std::set<std::string> live;
  for (const auto& [name, id] : manifests) {
    auto body = detail::read_small_blob(store, id);
    if (!body) {
      // An unreadable manifest keeps what it may reference: never remove on doubt.
      return error(body.error().code, "gc: cannot read manifest " + id.str() + " of " + name +
                                          ": " + body.error().message);
    }
    auto refs = parse_manifest(*body, "");
    if (!refs) continue;
    for (const auto& b : refs->blobs)
      live.insert(name + "@" + b.digest.str());
  }
  // 2. Hosted blob references no manifest uses, older than the grace period.
  const auto cutoff = cache::clock::now() - grace;
  std::vector<std::pair<std::string, cache::digest>> dead;
  walked = store.for_each_entry(kBlobs, [&](std::string_view key, const cache::entry& e) {
    std::string name_at(key.substr(kBlobs.size()));
    if (e.target && !live.contains(name_at) && e.fetched_at <= cutoff) {
      dead.emplace_back(std::string(key), *e.target);
    }
    return true;
  });
  if (!walked) return walked.error();
  for (const auto& [key, id] : dead) {
    if (auto r = store.remove_entry(key); !r && !r.error().is(errc::not_found)) return r.error();
    ++report.references_removed;
  }
  // 3. Blobs of removed references that nothing refers to any more go; those a proxied name
  //    still uses stay as ordinary (evictable) cache content.
  std::set<cache::digest> candidates;
  for (const auto& d : dead)
    candidates.insert(d.second);
  std::set<cache::digest> hosted_refs;
  std::set<cache::digest> any_refs;
  walked = store.for_each_entry("", [&](std::string_view key, const cache::entry& e) {
    if (e.target && candidates.contains(*e.target)) {
      any_refs.insert(*e.target);
      // A hosted Python file with the same bytes is hosted content too: never unpinned here.
      if (key.starts_with(kBlobs) || key.starts_with(kManifests) ||
          key.starts_with(pypi::keys::kHostedPrefix) ||
          key.starts_with(pypi::keys::kHostedFilePrefix)) {
        hosted_refs.insert(*e.target);
      }
    }
    return true;
  });
  if (!walked) return walked.error();
  for (const auto& id : candidates) {
    if (hosted_refs.contains(id)) continue;
    auto info = store.stat_blob(id);
    if (!info) continue;
    if (any_refs.contains(id)) {
      if (info->pinned) {
        if (auto r = store.set_pinned(id, false); !r) return r.error();
        ++report.blobs_unpinned;
      }
      continue;
    }
    if (auto r = store.remove_blob(id); !r) {
      if (r.error().is(errc::not_found)) continue;
      return r.error();
    }
    ++report.blobs_removed;
    report.bytes_removed += info->size;
  }
  return report;
}

}  // namespace pantry::registry::oci
