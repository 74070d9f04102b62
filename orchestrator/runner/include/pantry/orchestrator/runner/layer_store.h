#pragma once

// The runner's layer store: each image layer unpacked once into a directory of its own, keyed by
// its diff ID (the sha256 of the uncompressed tar), ready to be a lower directory of an overlayfs
// root. The directories are named by the full diff ID; a mount reaches them through the short
// link names of overlay.h (overlay_options), so 100 layers still fit in one page of options.
//
// Unpacking turns OCI whiteouts into overlayfs ones (`.wh.NAME` becomes a character device 0:0,
// `.wh..wh..opq` the xattr trusted.overlay.opaque="y"), keeps hard links (inside the layer only),
// symlinks whatever their target, device nodes, fifos, modes, numeric owners, mtimes and xattrs
// except trusted.overlay.* (a hostile layer must not fake overlayfs's own markers). Paths are
// checked by classify_entry/hard_link_target; each entry's directory is then opened with openat2
// (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS) below the layer's directory and the entry made in it by
// name, never following a symlink. So an entry written through a symlink (`a -> /tmp`, then
// `a/x`) is refused, as are `..` components, absolute paths and hard links leaving the layer; a
// refused entry fails the whole layer. Nothing changes process-wide state (no chdir, no umask),
// so unpacks run on any threads at once.
//
// On disk, under `root`:
//   <64 hex of the diff ID>/diff   the unpacked layer
//   <64 hex of the diff ID>/size   its bytes on disk in decimal; the file's mtime is its last use
//   tmp/                           unpacks in progress and layers being evicted; emptied at open
//   lock                           flock()ed by the one process that has the store open
// A layer is unpacked under tmp/ and renamed into place once complete and verified, so a crash
// never leaves a partial layer visible.
//
// Thread safety: a layer_store and its leases may be used from any threads. unpack() blocks on
// disk and CPU (decompression, hashing) and on another caller's unpack of the same layer: call it
// off the I/O threads.

#include "pantry/cache/digest.h"
#include "pantry/error.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pantry::cache {
class blob_reader;
}

namespace pantry::orchestrator::runner {

// Fills `buffer` with the next bytes of a compressed layer and returns how many it wrote: 0 only
// at the end of the stream, and again if called after that. An error aborts the unpack, which
// returns it unchanged (a source returning errc::cancelled cancels the unpack). The store reads
// a source to its end (it may ask again after a 0), bytes after the compressed stream included,
// so a source that verifies what it hands out sees every byte.
using layer_source = std::function<result<std::size_t>(std::span<std::byte> buffer)>;

// A source that reads `blob` from its first byte to its last. The blob is never evicted from the
// cache while the source (or a copy of it) lives.
layer_source blob_source(cache::blob_reader blob);

// Why an image layer of descriptor media type `media_type` cannot be pulled and run, or nullopt
// when it can: unpack() takes it and a registry serves it. Refused, each in words that name the
// type: non-distributable ("foreign") layers, which registries do not serve (their bytes are
// elsewhere, under the descriptor's urls); encrypted layers; anything that is no tar layer.
std::optional<std::string> layer_media_type_refusal(std::string_view media_type);

struct layer_store_options {
  // The store's directory, created if missing. Keep it on a file system that takes trusted.*
  // xattrs and device nodes (ext4, xfs, tmpfs), and not on an overlay.
  std::filesystem::path root;
  // Bytes on disk of all unpacked layers. Past it, unused layers are evicted, least recently used
  // first, after each unpack, when a lease ends, and at open; layers in use are never evicted, so
  // the store can stay above the limit while they are. 0: no limit.
  std::uint64_t max_size = 0;
  // syncfs() a layer's file system before the layer becomes visible, so that a power loss cannot
  // leave a visible layer with unwritten files either. Off: a process crash still never does.
  bool durable = true;
};

struct layer_store_stats {
  std::uint64_t layers = 0;  // unpacked and visible
  std::uint64_t bytes = 0;   // their bytes on disk
  std::uint64_t in_use = 0;  // layers with at least one lease
  // Counters since open.
  std::uint64_t unpacked = 0;  // layers this process unpacked
  std::uint64_t joined = 0;    // unpack() calls that waited for another call's unpack of a layer
  std::uint64_t evicted = 0;
  std::uint64_t evicted_bytes = 0;
};

// A layer in use: while any copy of its lease lives the layer stays on disk (hold it until every
// overlay mount that uses the layer is unmounted). Copies share the lease; a default-constructed
// or moved-from lease holds nothing.
class layer_lease {
 public:
  class state;
  layer_lease() = default;
  explicit layer_lease(std::shared_ptr<const state> s) : state_(std::move(s)) {}

  // True iff this lease holds a layer.
  explicit operator bool() const noexcept { return state_ != nullptr; }
  const cache::digest& diff_id() const noexcept;
  // The unpacked layer's directory: absolute, to give overlay_request::layers.
  const std::filesystem::path& dir() const noexcept;
  // Its bytes on disk, as measured when it was unpacked.
  std::uint64_t size() const noexcept;

 private:
  std::shared_ptr<const state> state_;
};

class layer_store {
 public:
  // Opens (creating) the store at `opt.root`: takes its lock (errc::locked if another process or
  // another open store holds it), removes whatever a crash left under tmp/ and any layer
  // directory without its size record, and evicts down to opt.max_size.
  static result<std::shared_ptr<layer_store>> open(const layer_store_options& opt);

  virtual ~layer_store() = default;

  // A lease on the layer `diff_id`, unpacked from `source` first unless the store has it (then
  // `source` is never called). `media_type` is the layer's descriptor media type: OCI and docker
  // tar layers, gzip, zstd or uncompressed (errc::invalid_argument for anything else, e.g. an
  // encrypted layer); the compression itself is recognised from the bytes, as docker and
  // containerd do. Concurrent calls for one diff ID unpack it once: the others wait, then share
  // the result (a failed unpack is retried by the next waiter, with its own source). Blocks.
  // Errors, each naming the layer: errc::digest_mismatch when the uncompressed tar's sha256 is
  // not `diff_id` (the message gives both); errc::invalid_argument for a malformed archive or a
  // refused entry (the message quotes its path); errc::io_error for a disk failure; the
  // source's own errors. On any error nothing of the layer stays on disk.
  virtual result<layer_lease> unpack(const cache::digest& diff_id, std::string_view media_type,
                                     const layer_source& source) = 0;

  // A lease on the layer `diff_id` if the store has it unpacked, else errc::not_found. Does not
  // wait for an unpack in progress.
  virtual result<layer_lease> acquire(const cache::digest& diff_id) = 0;

  virtual layer_store_stats stats() const = 0;
  virtual const layer_store_options& opts() const noexcept = 0;
};

}  // namespace pantry::orchestrator::runner
