// The pure parts of images.h: the pick from an index, a config's platform and diff IDs. No
// networking.

#include "pantry/orchestrator/runner/images.h"
#include "pantry/registry/oci/protocol.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace pantry::orchestrator::runner {

namespace json = boost::json;
namespace oci = registry::oci;

result<platform_manifest> pick_platform(std::string_view index_json, std::string_view content_type,
                                        const platform& host) {
  auto refs = oci::parse_manifest(index_json, content_type);
  if (!refs) return refs.error();
  if (!refs->is_index) {
    return error(errc::invalid_argument, "it is an image manifest, not an index");
  }
  std::string listed;
  for (const auto& d : refs->manifests) {
    auto p = parse_platform(d.platform);
    if (p && platform_runs_on(*p, host)) {
      return platform_manifest{d.digest, d.media_type, d.size, d.platform};
    }
    if (!listed.empty()) listed += ", ";
    listed += d.platform.empty() ? "(one without a platform)" : d.platform;
  }
  if (listed.empty()) listed = "none: the index lists no manifests";
  return error(errc::invalid_argument,
               "it has no manifest for " + host.str() + ", only for " + listed);
}

result<image_rootfs> parse_image_rootfs(std::string_view config_json) {
  auto bad = [](const std::string& why) {
    return error(errc::invalid_argument, "image config: " + why);
  };
  boost::system::error_code ec;
  const json::value v = json::parse(config_json, ec);
  if (ec) return bad("not JSON: " + ec.message());
  if (!v.is_object()) return bad("not a JSON object");
  const json::object& config = v.get_object();
  image_rootfs out;
  const std::pair<std::string_view, std::string*> names[] = {
      {"os", &out.platform.os},
      {"architecture", &out.platform.architecture},
      {"variant", &out.platform.variant},
  };
  for (const auto& [key, field] : names) {
    const auto* s = config.if_contains(key);
    if (s == nullptr || s->is_null()) continue;
    if (!s->is_string()) return bad(std::string(key) + ": expected a string");
    *field = std::string(s->get_string());
  }
  const auto* rootfs = config.if_contains("rootfs");
  if (rootfs == nullptr || !rootfs->is_object()) return bad("rootfs: missing, or not an object");
  const auto* type = rootfs->get_object().if_contains("type");
  if (type == nullptr || !type->is_string() || type->get_string() != "layers") {
    return bad("rootfs.type: expected \"layers\"");
  }
  const auto* ids = rootfs->get_object().if_contains("diff_ids");
  if (ids == nullptr || !ids->is_array()) return bad("rootfs.diff_ids: expected an array");
  for (std::size_t i = 0; i < ids->get_array().size(); ++i) {
    const auto& id = ids->get_array()[i];
    const std::string what = "rootfs.diff_ids[" + std::to_string(i) + "]";
    if (!id.is_string()) return bad(what + ": expected a string");
    auto d = cache::digest::parse(std::string_view(id.get_string()));
    if (!d) return bad(what + ": " + d.error().message);
    out.diff_ids.push_back(*d);
  }
  return out;
}

}  // namespace pantry::orchestrator::runner
