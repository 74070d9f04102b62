#pragma once

// Reproducible layers: a directory (an overlay upper directory after a RUN step, or the staging
// directory of a COPY) written as an OCI layer, so that the same files give the same bytes, diff
// ID and digest on every machine, whenever and in whatever order they were written to disk.
//
// The tar (libarchive's restricted pax: plain ustar headers unless an entry needs more):
// - Entries in tree order: each directory's entry before its contents, and within a directory
//   first the opaque marker, then the whiteouts, then the other entries, each group sorted by
//   name (bytewise), as the OCI image spec asks whiteouts to come before their siblings. The
//   directory itself has no entry (a layer does not change the root's metadata).
// - Modification times clamped to SOURCE_DATE_EPOCH, as BuildKit's rewrite-timestamp does: an
//   entry newer than the epoch gets the epoch, an older one keeps its time (a file a package or a
//   wheel dated in the past means the same on every machine; a file the build wrote is newer than
//   any epoch and gets it). Whole seconds; no access or change times.
// - Numeric owners only: user and group names are empty (the host's passwd is not the image's).
// - Extended attributes kept (as SCHILY.xattr records, what Go's archive/tar reads), except every
//   trusted.overlay.* (overlayfs writes machine-specific file handles there) and security.selinux
//   (a label of the host that wrote the file, not of the image).
// - overlayfs's marks turned into OCI ones, as docker's overlay2 driver writes them: a whiteout
//   (character device 0:0) NAME becomes an empty regular file .wh.NAME (mode 0600, the device's
//   owner); a directory with trusted.overlay.opaque="y" gets an empty regular file
//   DIR/.wh..wh..opq (the directory's permission bits and owner). A file whose own name starts
//   with .wh. is refused: a layer cannot say that name except as a deletion.
// - Files with several names in the directory become tar hard links to the first name in the
//   order above; symbolic links keep their targets as written; devices and FIFOs are kept;
//   sockets are skipped (tar has no way to write one; docker skips them too).
// - Names and link targets are bytes: a name that is not ASCII goes into a pax record under
//   hdrcharset=BINARY whatever the process's locale (libarchive otherwise converts names through
//   the locale, so the bytes would depend on LANG).
//
// The tar is compressed with libarchive's filters: gzip without a timestamp (the header's mtime
// is 0 and its OS byte fixed), or zstd; equal tars give equal compressed bytes with the same zlib
// or libzstd and level. Blocks: reads the whole tree. Run it off the I/O threads. The directory
// must not change while it is written (a file that does is an error, not a torn layer).

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/builder/image_config.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>

namespace pantry::orchestrator::builder {

struct layer_options {
  // Seconds since 1970 (parse_source_date_epoch's range): entries modified later get this time.
  std::int64_t source_date_epoch = 0;
  layer_compression compression = layer_compression::gzip;
  // 1-9 for gzip, 1-19 for zstd; 0 for the library's default (gzip 6, zstd 3). Part of what the
  // bytes depend on: every builder of one cache must use the same level.
  int compression_level = 0;
};

// What was written.
struct layer_info {
  cache::digest diff_id;       // sha256 of the uncompressed tar (the config's rootfs.diff_ids)
  cache::digest digest;        // sha256 of the bytes written (the blob's digest)
  std::uint64_t size = 0;      // bytes written
  std::uint64_t tar_size = 0;  // bytes of the uncompressed tar
  std::uint64_t entries = 0;   // tar entries, whiteouts and hard links included
  std::string media_type;      // layer_media_type(options.compression)

  // The layer's descriptor for the manifest.
  descriptor to_descriptor() const { return {media_type, digest, size}; }
};

// Receives the layer's bytes in order, in pieces; the span is valid only during the call. An
// error stops the write and is what write_layer returns.
using layer_sink = std::function<result<void>(std::span<const std::byte> piece)>;

// Writes the layer of `dir` to `sink`, streaming (memory does not grow with the layer). Errors:
// errc::invalid_argument for options out of range and for a file that cannot be in a layer (a
// .wh. name); errc::io_error, naming the file and the system's reason, when the tree cannot be
// read or changed while it was read; whatever the sink returns.
result<layer_info> write_layer(const std::filesystem::path& dir, const layer_options& options,
                               const layer_sink& sink);

// write_layer into the file `out` (created or truncated, mode 0644). On an error the file is
// removed.
result<layer_info> write_layer_file(const std::filesystem::path& dir,
                                    const std::filesystem::path& out, const layer_options& options);

}  // namespace pantry::orchestrator::builder
