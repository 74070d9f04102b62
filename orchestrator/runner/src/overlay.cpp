#include "pantry/orchestrator/runner/overlay.h"

#include "strings.h"

#include <algorithm>
#include <optional>

namespace pantry::orchestrator::runner {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

using detail::invalid;
using detail::quoted;

bool usable_in_options(std::string_view p) {
  return p.find_first_of(",:\\") == std::string_view::npos &&
         p.find('\0') == std::string_view::npos;
}

// The components of a tar path without empty and "." ones; nullopt with `why` set when refused.
std::optional<std::vector<std::string_view>> components(std::string_view path, std::string& why) {
  if (path.find('\0') != std::string_view::npos) {
    why = "holds a NUL byte";
    return std::nullopt;
  }
  if (!path.empty() && path.front() == '/') {
    why = "is absolute";
    return std::nullopt;
  }
  std::vector<std::string_view> out;
  while (!path.empty()) {
    auto slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      why = "has a \"..\" component";
      return std::nullopt;
    }
    out.push_back(part);
  }
  return out;
}

std::string join(const std::vector<std::string_view>& parts, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count; ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out;
}

}  // namespace

std::string layer_link_name(std::size_t index) {
  constexpr std::string_view kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string out;
  do {
    out.insert(out.begin(), kDigits[index % 36]);
    index /= 36;
  } while (index > 0);
  return out;
}

result<overlay_mount> overlay_options(const overlay_request& request) {
  const auto& layers = request.layers;
  if (layers.empty()) return invalid("overlay: no layers to stack");
  if (layers.size() > kMaxOverlayLayers) {
    return invalid("overlay: " + std::to_string(layers.size()) + " layers, more than overlayfs's " +
                   std::to_string(kMaxOverlayLayers));
  }
  if (!usable_in_options(request.link_prefix)) {
    return invalid("overlay: link prefix " + quoted(request.link_prefix) +
                   " holds ',', ':' or '\\'");
  }
  for (const auto& l : layers) {
    if (l.empty() || l.front() != '/') {
      return invalid("overlay: layer directory " + quoted(l) + " is not absolute");
    }
  }
  const bool read_only = request.upper_dir.empty() && request.work_dir.empty();
  if (read_only && layers.size() < 2) {
    return invalid("overlay: a read-only stack needs at least two layers (give an upper dir)");
  }
  if (!read_only) {
    for (const auto* p : {&request.upper_dir, &request.work_dir}) {
      if (p->empty() || p->front() != '/' || !usable_in_options(*p)) {
        return invalid(
            "overlay: upper and work directories must both be absolute paths without "
            "',', ':' or '\\', got " +
            quoted(request.upper_dir) + " and " + quoted(request.work_dir));
      }
    }
  }

  overlay_mount out;
  out.links.reserve(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i)
    out.links.emplace_back(layer_link_name(i), layers[i]);
  out.options = "lowerdir=";
  // overlayfs lists the top layer first.
  for (std::size_t i = layers.size(); i-- > 0;) {
    out.options += request.link_prefix;
    out.options += out.links[i].first;
    if (i > 0) out.options += ':';
  }
  if (!read_only) out.options += ",upperdir=" + request.upper_dir + ",workdir=" + request.work_dir;
  out.options += ",redirect_dir=off,metacopy=off,index=off";
  if (out.options.size() >= kMountDataLimit) {
    return invalid("overlay: the mount options are " + std::to_string(out.options.size()) +
                   " bytes for " + std::to_string(layers.size()) +
                   " layers, more than mount(2) takes (" + std::to_string(kMountDataLimit - 1) +
                   "); use a shorter link prefix or upper/work path");
  }
  return out;
}

result<layer_entry> classify_entry(std::string_view tar_path) {
  std::string why;
  auto parts = components(tar_path, why);
  if (!parts) return invalid("layer entry " + quoted(tar_path) + " " + why + ": refused");
  layer_entry entry;
  if (parts->empty()) return entry;  // the layer's root directory itself
  for (std::size_t i = 0; i + 1 < parts->size(); ++i) {
    if ((*parts)[i].starts_with(kMetaPrefix)) {
      entry.kind = entry_kind::ignored;  // e.g. .wh..wh.plnk/<hard link targets>
      entry.path = join(*parts, parts->size());
      return entry;
    }
    if ((*parts)[i].starts_with(kWhiteoutPrefix)) {
      return invalid("layer entry " + quoted(tar_path) +
                     " uses a whiteout name as a directory: refused");
    }
  }
  const std::string_view base = parts->back();
  if (base == kOpaqueMarker) {
    entry.kind = entry_kind::opaque;
    entry.path = join(*parts, parts->size() - 1);
  } else if (base.starts_with(kMetaPrefix)) {
    entry.kind = entry_kind::ignored;
    entry.path = join(*parts, parts->size());
  } else if (base.starts_with(kWhiteoutPrefix)) {
    const std::string_view name = base.substr(kWhiteoutPrefix.size());
    if (name.empty() || name == "." || name == "..") {
      return invalid("layer entry " + quoted(tar_path) + " is a whiteout of " + quoted(name) +
                     ": refused");
    }
    entry.kind = entry_kind::whiteout;
    entry.path = join(*parts, parts->size() - 1);
    if (!entry.path.empty()) entry.path += '/';
    entry.path += name;
  } else {
    entry.path = join(*parts, parts->size());
  }
  return entry;
}

result<std::string> hard_link_target(std::string_view link_name) {
  std::string why;
  auto parts = components(link_name, why);
  if (!parts) {
    return invalid("hard link target " + quoted(link_name) + " " + why +
                   " (it must stay inside the layer): refused");
  }
  if (parts->empty()) {
    return invalid("hard link target " + quoted(link_name) + " is the layer's root: refused");
  }
  if (std::any_of(parts->begin(), parts->end(),
                  [](std::string_view p) { return p.starts_with(kWhiteoutPrefix); })) {
    return invalid("hard link target " + quoted(link_name) + " is a whiteout name: refused");
  }
  return join(*parts, parts->size());
}

bool keep_xattr(std::string_view name) noexcept {
  return !name.starts_with("trusted.overlay.");
}

}  // namespace pantry::orchestrator::runner
