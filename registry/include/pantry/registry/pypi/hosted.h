#pragma once

// The pure pieces of the Python package indexes pantry hosts (pypi.hosted): the checks an upload
// form passes before anything is stored, the digests the form is verified against, and the
// record of a hosted project with the page it renders to.
//
// Pure: no I/O, no clock, no exceptions (allocation failure aside).

#include "pantry/error.h"
#include "pantry/registry/pypi/simple.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// The digests an upload form may send (sha256_digest, md5_digest, blake2_256_digest), as
// lowercase hex.
struct upload_digests {
  std::string sha256;
  std::string md5;
  std::string blake2_256;  // BLAKE2b with a 32-byte digest, unkeyed (what warehouse checks)
};

// Computes all three digests of an upload in one pass. BLAKE2b-256 is computed here (RFC 7693):
// OpenSSL 3.0 offers BLAKE2b only with a 64-byte digest, whose first 32 bytes differ from it.
class upload_hasher {
 public:
  upload_hasher();
  ~upload_hasher();
  upload_hasher(upload_hasher&&) noexcept;
  upload_hasher& operator=(upload_hasher&&) noexcept;

  void update(std::span<const std::byte> bytes);
  // The digests of everything updated so far; the hasher is then spent.
  upload_digests finish();

 private:
  struct state;
  std::unique_ptr<state> state_;
};

// BLAKE2b (RFC 7693, unkeyed) with an `out_len`-byte digest (1 to 64) of `bytes`, as hex.
std::string blake2b_hex(std::span<const std::byte> bytes, std::size_t out_len);

// What an upload form's file is, once its name is checked against the form.
struct upload_file {
  std::string project;  // PEP 503 normalized
  std::string version;  // as the form gives it
  bool wheel = false;   // else an sdist
};

// Checks an upload's file name against the form's `name`, `version` and `filetype` the way
// warehouse does: a plain file name (no path, no control characters, at most 255 bytes, not
// starting with '.'), a wheel (.whl, filetype bdist_wheel) or an sdist (.tar.gz or .zip,
// filetype sdist), whose project part normalizes to `name`'s normalized form and whose version
// part equals `version` (ignoring case). Fails with errc::invalid_argument naming the values and
// what the client should send instead.
result<upload_file> check_upload_filename(std::string_view filename, std::string_view name,
                                          std::string_view version, std::string_view filetype);

// The value of the first `field` header of core metadata (METADATA, PKG-INFO: RFC 822 style
// headers up to the first empty line; field names in any case; continuation lines joined), or
// nullopt when it has none or only an empty one.
std::optional<std::string> metadata_field(std::string_view metadata, std::string_view field);

// One file of a hosted project, as pantry records it.
struct hosted_file {
  std::string filename;
  std::string version;      // the form's version
  std::string sha256;       // lowercase hex
  std::uint64_t size = 0;   // bytes
  std::string upload_time;  // "yyyy-mm-ddThh:mm:ss.ffffffZ" (PEP 700)
  std::optional<std::string> requires_python;
  // PEP 658: the sha256 (hex) of the METADATA served as "<file>.metadata"; wheels only.
  std::optional<std::string> metadata_sha256;
  // nullopt: not yanked; "": yanked without a reason; otherwise the reason (PEP 592).
  std::optional<std::string> yanked;

  friend bool operator==(const hosted_file&, const hosted_file&) = default;
};

// A project of a hosted index: its name as first uploaded, and its files in upload order.
struct hosted_project {
  std::string name;
  std::vector<hosted_file> files;

  // The file named `filename`, or null.
  const hosted_file* find(std::string_view filename) const;

  friend bool operator==(const hosted_project&, const hosted_project&) = default;
};

// The record's JSON (what pantry stores) and back: parse(serialize(p)) == p when every string of
// `p` is valid UTF-8 (serialize replaces invalid sequences with U+FFFD, so that what it writes
// always parses). parse fails with errc::corrupt naming what is missing when the JSON is not
// such a record.
std::string serialize_hosted_project(const hosted_project& p);
result<hosted_project> parse_hosted_project(std::string_view json);

// The project as a simple API page whose file URLs are `files_prefix` + file name (e.g.
// "/team/files/mylib/"), with sizes, upload times, versions (in first-upload order), hashes,
// Requires-Python, yanks and PEP 658 metadata hashes: render_project_html/json then write it.
project_page hosted_page(const hosted_project& p, std::string_view files_prefix);

// Yanks (reason given, possibly "") or un-yanks (nullopt) every file of `version` (compared
// ignoring case). Returns how many files it changed or matched; 0 when the project has no such
// version.
std::size_t set_yanked(hosted_project& p, std::string_view version,
                       const std::optional<std::string>& reason);

}  // namespace pantry::registry::pypi
