#include "pantry/orchestrator/pins/image_pins.h"

#include "pantry/cache/digest.h"
#include "pantry/registry/oci/protocol.h"
#include "pantry/text.h"

#include <cassert>

namespace pantry::orchestrator::pins {
namespace {

std::string name_tag(const runner::image_reference& ref) {
  return ref.name + ":" + ref.tag;
}

}  // namespace

tag_request tag_digest_request(const runner::image_reference& ref) {
  assert(!ref.tag.empty());
  return {"/v2/" + ref.name + "/manifests/" + ref.tag, std::string(registry::oci::kAllManifests)};
}

result<std::string> read_tag_digest(const runner::image_reference& ref, unsigned status,
                                    std::optional<std::string_view> content_digest) {
  const std::string image = "image " + name_tag(ref);
  if (status == 404) {
    return error(errc::not_found, image +
                                      ": pantry's registry has no such tag (404); check the "
                                      "name and tag, and that oci.upstreams has its registry");
  }
  if (status == 401 || status == 403) {
    return error(errc::io_error, image + ": pantry's registry refused to resolve the tag (" +
                                     std::to_string(status) +
                                     "); oci.hosted.pull_auth must let anonymous readers pull it");
  }
  if (status != 200) {
    return error(errc::io_error, image + ": pantry's registry answered " + std::to_string(status) +
                                     " when asked for the tag's manifest");
  }
  if (!content_digest) {
    return error(errc::invalid_argument,
                 image + ": pantry's registry answered without a Docker-Content-Digest header");
  }
  if (auto d = cache::digest::parse(*content_digest); !d) {
    return error(errc::invalid_argument, image + ": the registry's Docker-Content-Digest " +
                                             quote_for_message(*content_digest) +
                                             " is not sha256:<64 lowercase hex>");
  }
  return std::string(*content_digest);
}

std::optional<image_plan> unchecked_image(const runner::image_reference& ref) {
  if (!ref.tag.empty() && !ref.digest.empty()) return std::nullopt;
  image_plan plan;
  plan.name = ref.name;
  plan.tag = ref.tag;
  plan.old_digest = ref.digest;
  if (ref.tag.empty() && ref.digest.empty()) {
    plan.reason = "no tag and no digest: pin it as NAME:TAG@DIGEST to have it kept current";
  } else if (ref.tag.empty()) {
    plan.reason = "no tag: a digest alone names no newer image to move to";
  } else {
    plan.reason = "no digest: the tag is not pinned (add @DIGEST to pin it)";
  }
  return plan;
}

image_plan decide_image(const runner::image_reference& ref, std::string_view current_digest) {
  assert(!ref.tag.empty() && !ref.digest.empty());
  image_plan plan;
  plan.name = ref.name;
  plan.tag = ref.tag;
  plan.old_digest = ref.digest;
  if (current_digest == ref.digest) {
    plan.result = image_plan::outcome::current;
  } else {
    plan.result = image_plan::outcome::moved;
    plan.new_digest = std::string(current_digest);
  }
  return plan;
}

std::string summary(const image_plan& plan) {
  runner::image_reference ref{plan.name, plan.tag, plan.old_digest};
  switch (plan.result) {
    case image_plan::outcome::moved:
      return "image " + plan.name + ":" + plan.tag + ": " + plan.old_digest + " \u2192 " +
             plan.new_digest;
    case image_plan::outcome::current:
      return "image " + plan.name + ":" + plan.tag + ": " + plan.old_digest + " is current";
    case image_plan::outcome::not_checked:
      break;
  }
  return "image " + ref.str() + ": not checked: " + plan.reason;
}

std::string image_branch(const image_plan& plan) {
  std::string name = plan.name;
  for (char& c : name) {
    if (c == '/' || c == ':') c = '-';
  }
  return "pantry/pins/" + name + "-" + plan.tag;
}

}  // namespace pantry::orchestrator::pins
