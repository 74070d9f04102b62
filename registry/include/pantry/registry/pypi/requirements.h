#pragma once

// pip requirements files whose every requirement is pinned with `==` (what pip-compile and
// pantry's pin bot write), and the choice of the files a pin names on a project page; for
// `pantry cache warm`.
//
// Pure code: included files are read through a function the caller passes, so nothing here
// touches the disk or the network.

#include "pantry/error.h"
#include "pantry/registry/pypi/simple.h"

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// One pinned requirement: `name[extras]==version ; marker --hash=sha256:...`.
struct pin {
  std::string name;     // PEP 503 normalized
  std::string version;  // as written after "==" (or "===")
  // "===" (PEP 440 arbitrary equality): the version matches as a case-insensitive string.
  bool arbitrary = false;
  // As written. Extras name no files of their own; their dependencies are pinned on lines of
  // their own in a complete requirements file.
  std::vector<std::string> extras;
  // The environment marker after ';', as written. Never evaluated: a pin is warmed whatever
  // platform or Python its marker is meant for (that can only fetch more than pip would).
  std::string marker;
  // From --hash=<algorithm>:<hex>: algorithm (sha256, sha384 or sha512) -> lowercase hex digests.
  std::map<std::string, std::set<std::string>> hashes;
  std::string where;  // "FILE:LINE" of the requirement's first line
  std::string text;   // the requirement as written, without its options

  // "name==version" (or "name===version").
  std::string str() const;
};

// What a set of requirements files says.
struct requirements {
  // Every pin in reading order. A name and version named again (also from another file) is one
  // pin: the first `where` is kept and the hashes are merged.
  std::vector<pin> pins;
  // One message per unusable line or unreadable file, "FILE:LINE: ...", in reading order.
  std::vector<std::string> errors;
};

// Returns the text of the file at `path`, or an error whose message names the path and the cause.
using file_reader = std::function<result<std::string>(const std::string& path)>;

// Parses the requirements file `file` whose text is `text`, the way pip reads one: comments
// (`#` at the start or after whitespace), blank lines, lines continued by a trailing backslash
// (messages give the first line's number), options after the requirement (`--hash`, and
// `--global-option`, `--config-settings`, `--install-option`, which are ignored).
//
// Option lines: `-r FILE` / `--requirement FILE` and `-c FILE` / `--constraint FILE` read FILE,
// relative to the directory of `file` unless absolute, through `read` (constraints count as
// pins like any other: they name files pip may fetch); a file already read is not read again.
// `-i`, `--index-url`, `--extra-index-url`, `--no-index`, `-f`, `--find-links`,
// `--trusted-host`, `--no-binary`, `--only-binary`, `--prefer-binary`, `--pre`,
// `--require-hashes` and `--use-feature` are ignored.
//
// Errors, each naming FILE:LINE and quoting the text: a requirement that is not PEP 508
// (requirement::parse of markers.h, so `==` takes PEP 440 versions only), one not pinned with one
// `==` or `===` clause (`foo`, `foo>=1`, `foo==1.*`, `foo==1,<2`), a URL or path requirement,
// `-e`, an unknown option, a malformed --hash, an include that cannot be read or that nests more
// than 32 files deep. Environment variables (`${VAR}`) are not expanded.
requirements parse_requirements(std::string_view text, const std::string& file,
                                const file_reader& read);

// Reads each of `paths` through `read` and parses it as above; the results are concatenated,
// with duplicate pins merged across files.
requirements load_requirements(const std::vector<std::string>& paths, const file_reader& read);

// The PEP 440 normalized form of `version` ("V1.0-RC.1" -> "1.0rc1", "1.0-1" -> "1.0.post1",
// "2!1.0.DEV" -> "2!1.0.dev0", "1.0+Ubuntu-1" -> "1.0+ubuntu.1"); nullopt when it is not a PEP 440
// version. Trailing zeros of the release stay ("1.0.0" stays "1.0.0"). version::str() of
// pep440.h, for callers that hold a string.
std::optional<std::string> normalize_version(std::string_view version);

// True iff a file of version `candidate` satisfies `p`. For `==`, both sides are compared as
// PEP 440 versions (the clause `==version` of pep440.h): release segments padded with zeros (1.0
// == 1.0.0 == 1), spellings normalized (1.0rc1 == 1.0-RC-1), and a candidate's local label ignored
// when the pin has none
// (==1.0 takes 1.0+cpu). A side that is not a PEP 440 version matches only the same string (case
// aside), as does every `===` pin.
bool version_matches(const pin& p, std::string_view candidate);

// Which wheels to take. With neither set, every file of a pin is taken.
struct file_filter {
  // Platform tags, lowercase ("manylinux2014_x86_64", "win_amd64"). A wheel matches if one of its
  // platform tags is given, if it is tagged `any` (pure Python wheels run everywhere, so pip
  // takes them on any platform), or if a manylinux / musllinux tag of the same architecture
  // and an older or equal libc is given (manylinux_2_28_x86_64 takes manylinux2014_x86_64,
  // which is manylinux_2_17, and manylinux1 = 2_5, manylinux2010 = 2_12). Other tags, macOS's
  // included, match only as written.
  std::vector<std::string> platforms;
  // A CPython version {major, minor}. A wheel matches if one of its (python, abi) tag pairs runs
  // there: pyX or pyXZ (Z <= minor) with abi `none`; cpXY with `none`, `abi3` or any cpXY* ABI;
  // cpXZ (Z < minor) with `abi3`. Other implementations' wheels (pp, ...) do not match.
  std::optional<std::pair<unsigned, unsigned>> python;

  bool active() const noexcept { return !platforms.empty() || python.has_value(); }
};

// True iff the wheel file name `filename` is a well-formed wheel name whose tags match `filter`
// (both its platform and its python conditions, those that are set).
bool wheel_matches(std::string_view filename, const file_filter& filter);

// The files of a project page that a pin names.
struct file_choice {
  enum class outcome {
    ok,                // `files` holds at least one file
    no_such_version,   // no wheel or sdist of the pinned version on the page
    no_allowed_hash,   // files of the version exist, none has a hash the --hash options allow
    no_matching_file,  // files of the version exist, none matches the filter
  };
  outcome result = outcome::ok;
  std::vector<std::size_t> files;  // indexes into project_page::files, in page order
  // Files of the version left out because the pin has --hash options and none matches theirs.
  std::size_t hash_skipped = 0;
  bool yanked = false;  // every file of the version is yanked, so the yanked ones were taken
  std::string message;  // for an outcome other than ok: why nothing was taken, naming the pin
};

// Chooses the files `p` names on `page`: wheels and sdists (other formats are never taken) whose
// file-name version satisfies `p` (version_matches); of those, the ones not yanked, or all of them
// when each is yanked (PEP 592: an == pin may select a yanked release); when the pin has --hash
// options, the ones whose index hash of the same algorithm is among them (as pip, which never
// takes another file); when `filter` is active, the wheels that match it, or the sdists when no
// wheel does (pip on that platform would build from the sdist).
file_choice choose_files(const project_page& page, const pin& p, const file_filter& filter);

}  // namespace pantry::registry::pypi
