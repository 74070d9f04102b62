#pragma once

// The overlayfs side of a container's root file system, as pure decisions: the mount options for
// a stack of unpacked layers, and what each entry of a layer tarball becomes when it is unpacked
// for overlayfs (a file, a whiteout, an opaque directory) or why it is refused. The runner does
// the I/O: symlinks, mount(2), libarchive.

#include "pantry/error.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::runner {

// mount(2) copies at most one page of options: a longer lowerdir fails (60 layers named by their
// 64-hex diff IDs did). 4096 is the smallest page size Linux runs with.
inline constexpr std::size_t kMountDataLimit = 4096;
// overlayfs stacks at most this many lower layers (OVL_MAX_STACK).
inline constexpr std::size_t kMaxOverlayLayers = 500;

// A layer's name in a mount's link directory: its position in the image (0 = base) in base 36,
// so 100 layers need at most two characters each.
std::string layer_link_name(std::size_t index);

struct overlay_request {
  // The unpacked layer directories in the image's order, base layer first (absolute paths).
  std::vector<std::string> layers;
  // How the kernel reaches the link directory while the runner calls mount(2); the link names
  // follow it. Either "/proc/self/fd/<N>/", with N an O_PATH descriptor of the link directory
  // (nothing process-wide changes: safe in a threaded server; room for about 170 layers), or ""
  // when the mounting process's working directory is the link directory (a forked helper's
  // chdir; room for kMaxOverlayLayers). overlayfs resolves each lowerdir, symlinks included, at
  // mount time: the links may be removed once it is mounted.
  std::string link_prefix;
  // Absolute, on one file system (a tmpfs of the job's size, or disk); both empty for a
  // read-only stack of at least two layers.
  std::string upper_dir;
  std::string work_dir;
};

struct overlay_mount {
  // The symlinks to create in the link directory before mounting: {name, target layer dir}.
  std::vector<std::pair<std::string, std::string>> links;
  // mount(2)'s data for type "overlay": lowerdir (top layer first, through the links), upperdir,
  // workdir, then redirect_dir=off,metacopy=off,index=off so that an upper directory holds
  // plain files only (no redirects, metadata-only copies or origin file handles), which the
  // builder turns into a layer that means the same on every machine.
  std::string options;
};

// The symlinks and options for `request`. Errors (errc::invalid_argument): no layers, more than
// kMaxOverlayLayers, relative paths, a path holding ',', ':' or '\' (overlayfs option syntax),
// only one of upper and work, a read-only stack of one layer, options of kMountDataLimit bytes
// or more (the message gives the length).
result<overlay_mount> overlay_options(const overlay_request& request);

enum class entry_kind {
  regular,   // a file, directory, link or device to create at `path` ("" is the layer's root)
  whiteout,  // remove `path` from the layers below: a character device 0:0 at `path`
  opaque,    // hide what the layers below hold under the directory `path`: the directory with
             // xattr trusted.overlay.opaque="y" (created if this layer has no entry for it)
  ignored,   // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs…) that docker and containerd skip
};

struct layer_entry {
  entry_kind kind = entry_kind::regular;
  std::string path;  // normalized: relative, no "." or empty components, no trailing '/'
};

// What the tar entry named `tar_path` becomes. "./a//b/" is "a/b"; ".wh.NAME" is a whiteout of
// NAME in its directory, ".wh..wh..opq" makes its directory opaque. Refused
// (errc::invalid_argument, the message quoting the path): absolute paths, any ".." component
// (even one that stays inside), NUL bytes, a whiteout of "", "." or "..", and a whiteout name
// used as a directory. Per the OCI image spec a whiteout hides only lower layers: the unpacker
// must not remove an entry of its own layer for it.
result<layer_entry> classify_entry(std::string_view tar_path);

// The normalized target of a hard link entry, relative to the layer's root, refused like
// classify_entry refuses a path, and also when it names the root or a whiteout. The unpacker must
// still resolve it without following symlinks (RESOLVE_IN_ROOT): a symlinked directory could lead
// out.
result<std::string> hard_link_target(std::string_view link_name);

// Whether an entry's extended attribute is kept when unpacking: every one but trusted.overlay.*,
// which would let a hostile layer fake overlayfs's own opaque markers, redirects and origins.
bool keep_xattr(std::string_view name) noexcept;

}  // namespace pantry::orchestrator::runner
