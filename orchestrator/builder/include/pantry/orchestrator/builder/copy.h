#pragma once

// COPY and ADD: which files a step copies (its sources, found as docker finds them) and the
// directory tree its layer holds (the staging directory, which layer_writer.h writes as the
// layer), laid over the stage's file system as docker (BuildKit) lays them.
//
// I/O on local directories only: the build context, a stage or image the backend materialized
// (build.h), and a staging directory. Not thread-safe per call's arguments; no global state.
//
// Sources (find_sources):
// - A source is a path relative to the source root (the build context, or the root of the
//   --from stage or image); a leading '/' means the root too. One that leaves the root through
//   `..` is refused (BuildKit clamps it silently; pantry says so instead).
// - Globs: `*`, `?` and `[...]` in any path component, matched per component as Go's
//   path.Match (docker's filepath.Match) matches, `\` escaping; matches in lexical order;
//   a wildcard never matches '/', and a match is not searched below a directory that matched.
// - A source named (or matched) that is a symbolic link is followed, inside the root only (an
//   absolute target or `..` stays in the root, as a container sees it); a missing target is a
//   missing source. Below a source directory, links are copied as links, never followed.
// - Ignore rules (ignore.h) apply to the build context only: an excluded file does not exist for
//   COPY, and never changes the listing. An excluded directory that holds an included file is
//   still there (docker sends it), with only its included contents.
// - A source directory copies its contents, not itself; sockets are skipped (tar cannot hold
//   them); hard links in the sources are copied as separate files.
// - Owners: files of the build context are listed and copied as 0:0 (the host's owners mean
//   nothing in the image, and a checkout by another user must hit the cache); files of a stage
//   or image keep theirs. Modes are kept. Extended attributes are not copied.
//
// Staging (stage_copy), BuildKit's rules:
// - The destination is absolute after WORKDIR (make_destination). It names a directory when it
//   ends with '/' (or is `.`), or when it is an existing directory in the stage; symbolic links
//   in it are followed inside the root, as in a container (on a merged-/usr image, `COPY x /bin/`
//   writes /usr/bin/x and leaves the /bin link alone).
// - A file goes to DEST/NAME when the destination names a directory, else to DEST (replacing a
//   file or link there; a directory there is an error). A directory's contents go into DEST; a
//   missing DEST written without a trailing '/' takes the source directory's mode and owner, one
//   written with it is made as a parent is; an existing one keeps its own. Directories below it
//   take the source's mode and owner (as BuildKit's copy does).
// - Missing parent directories are made with mode 0755, owned by the --chown owner, else
//   root:root (BuildKit's MkdirAll). Existing ones are written into the layer with the mode and
//   owner they have in the stage, so the layer does not change them.
// - --chown owns every copied file by the given user and group; --chmod sets the permission bits
//   of every copied file and directory (not of links).
// - ADD: a source file that is a tar archive (plain, gzip, bzip2, xz or zstd, recognised by its
//   content as docker recognises it) is unpacked into DEST as a directory: entries keep their
//   owners unless --chown is given and always their modes (BuildKit applies no --chmod there);
//   `..` entries and hard links out of the archive are refused; parents missing from the archive
//   are made 0755 root:root, as docker's untar makes them. Other files are copied.

#include "pantry/cache/digest.h"
#include "pantry/error.h"
#include "pantry/orchestrator/builder/cache_key.h"
#include "pantry/orchestrator/builder/ignore.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

// True iff `name` (one path component) matches `pattern`, as Go's path.Match: `*` any run of
// characters but '/', `?` one character but '/', `[abc]`, `[a-z]`, `[^a-z]` a character of a
// class (of UTF-8 characters), `\` takes the next character literally. A malformed pattern is
// errc::invalid_argument ("bad pattern …"), even when an earlier part already failed to match.
result<bool> match_glob(std::string_view pattern, std::string_view name);

// True iff `pattern` holds an unescaped `*`, `?` or `[` (BuildKit's containsWildcards).
bool has_glob(std::string_view pattern) noexcept;

// Where a COPY takes its sources from.
struct source_root {
  std::filesystem::path dir;
  // How messages name the root: "the build context", "stage \"build\"", "image python@sha256:…".
  std::string description;
  // The build context's ignore rules; null: every file is there.
  const ignore_rules* ignore = nullptr;
  // True: files keep their owners (a stage or image); false: they are 0:0 (the build context).
  bool keep_owners = false;
};

// One file of a source: the source itself or a file below it.
struct source_entry {
  // Relative to the source: "" for the source itself, "pkg/mod.py" for a file below it.
  std::string rel;
  // Where the file is on disk (a link named as a source already followed).
  std::filesystem::path real;
  // As listed in the cache key: path relative to the root as named (source path + rel), type,
  // mode, owner (see source_root::keep_owners), content digest, link target, device numbers.
  source_file file;
};

// One source path, or one match of a glob.
struct source_item {
  std::string named;  // relative to the root, cleaned, as named: "src", "a.txt", "." for the root
  std::string name;   // the last component of `named`: the name a file gets in a directory
  // The source first, then what is below it in tree order (a directory before its contents,
  // siblings by name).
  std::vector<source_entry> entries;
};

struct copy_sources {
  std::vector<source_item> items;  // in the order of the patterns, each glob's matches sorted

  // Every entry's source_file once (a file two sources name is listed once): what
  // sources_digest() hashes.
  std::vector<source_file> listing() const;
};

// Finds the sources `patterns` (a COPY's or ADD's sources after substitution) under `root`,
// reading and hashing every file. Errors, without a file or line (the caller adds them):
// errc::invalid_argument for a source that leaves the root ("…: outside the build context") or a
// bad glob; errc::not_found for a path that is not there ("cannot find \"src/x\" in the build
// context") and when nothing at all was found ("no source files were specified"); errc::io_error
// naming the file when one cannot be read.
result<copy_sources> find_sources(const source_root& root,
                                  const std::vector<std::string>& patterns);

// A user and group.
struct owner {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;

  friend bool operator==(const owner&, const owner&) = default;
};

// True iff --chown=`chown` names a user or group by name (resolve_chown then needs the stage's
// /etc/passwd and /etc/group).
bool chown_needs_names(std::string_view chown);

// --chown's value ("USER" or "USER:GROUP", names or ids) as docker (BuildKit) reads it: a numeric
// user without a group is also the group (`--chown=1000` is 1000:1000); a user name without a
// group gets its primary group from /etc/passwd; names are looked up in the stage's `passwd` and
// `group` (their text; "" when the stage has none). Errors (errc::invalid_argument) quote the
// name that is not there.
result<owner> resolve_chown(std::string_view chown, std::string_view passwd,
                            std::string_view group);

// Where and how a COPY or ADD writes.
struct copy_destination {
  std::string path;        // absolute, cleaned: "/app/src", "/" for the root
  bool directory = false;  // written with a trailing '/' (or as `.`): certainly a directory
  std::optional<owner> chown;
  std::optional<std::uint32_t> chmod;  // permission bits, at most 07777
  bool unpack = false;                 // ADD: tar archives are unpacked
};

// The destination `dest` of a step (after substitution) in a stage whose WORKDIR is
// `working_dir` ("" for "/"): an absolute path as it is, a relative one under the WORKDIR.
copy_destination make_destination(std::string_view dest, std::string_view working_dir);

// Writes into `staging` (an empty directory) the tree the layer of copying `sources` to
// `destination` holds, over the stage's file system materialized at `lower` (empty path: the
// stage has no files yet). Needs privileges to set owners other than the caller's. Errors, without
// a file or line: errc::invalid_argument for what docker refuses (a directory where a file goes or
// the other way round, a parent that is a file, an archive entry leaving the destination),
// errc::io_error naming the file, and errc::corrupt when a source changed after find_sources hashed
// it.
result<void> stage_copy(const copy_sources& sources, const copy_destination& destination,
                        const std::filesystem::path& lower, const std::filesystem::path& staging);

}  // namespace pantry::orchestrator::builder
