#pragma once

// PEP 508 dependency specifications: environment markers (`python_version >= "3.8" and
// sys_platform == "linux"`), parsed and evaluated against a target environment, and whole
// requirements (`name[extras] (specifiers) ; marker`, `name @ url ; marker`), as a requirements
// file line or a `Requires-Dist` field of a distribution's METADATA states them.
//
// Pure code: functions from text to values; nothing here looks at the running machine (an
// environment is always given). Values are immutable after parsing and safe to share between
// threads.

#include "pantry/error.h"
#include "pantry/registry/pypi/pep440.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::registry::pypi {

// The values of PEP 508's marker variables on one target. The defaults describe CPython 3.11 on
// Linux x86_64; for_target() makes the usual others.
struct marker_environment {
  std::string implementation_name = "cpython";
  std::string implementation_version = "3.11.0";
  std::string os_name = "posix";
  std::string platform_machine = "x86_64";
  std::string platform_python_implementation = "CPython";
  std::string platform_release;  // a kernel's release; unknown for a target, so ""
  std::string platform_system = "Linux";
  std::string platform_version;  // a kernel's build string; unknown for a target, so ""
  std::string python_full_version = "3.11.0";
  std::string python_version = "3.11";
  std::string sys_platform = "linux";
  // The extra whose requirements are being read ("" for none). pip evaluates a requirement of
  // METADATA once per requested extra; so does a caller here, setting this each time.
  std::string extra;

  // The value of the variable named `name` (a PEP 508 name such as "python_version"), or nullptr
  // for a name PEP 508 does not define.
  const std::string* find(std::string_view name) const noexcept;

  // CPython `python` ("3.12" or "3.12.1"; a bare minor version means its .0 release) on
  // `platform`: "linux", "macos" (or "darwin") or "windows" (or "win32"), and `machine` as the
  // platform names it ("x86_64", "aarch64"; "x86_64" becomes "AMD64" on Windows and "aarch64"
  // becomes "arm64" on macOS, as Python reports them there). Errors name the bad value and the
  // accepted ones.
  static result<marker_environment> for_target(std::string_view python, std::string_view platform,
                                               std::string_view machine = "x86_64");
};

// A parsed environment marker.
class marker {
 public:
  // Parses a PEP 508 marker: comparisons `VAR OP "string"` (either side may be the variable or
  // the string; strings in single or double quotes, without escapes), with OP one of ==, !=, <,
  // <=, >, >=, ~=, ===, in, not in; joined by `and` (binding tighter) and `or`, grouped with
  // parentheses. Variables are PEP 508's, plus the old dotted spellings packaging still reads
  // (os.name, sys.platform, platform.version, platform.machine, platform.python_implementation,
  // python_implementation). Errors (invalid_argument) quote the marker, give the byte offset and
  // say what was expected there.
  static result<marker> parse(std::string_view text);

  // True iff the marker holds in `env`. A comparison whose string side and variable side are
  // both PEP 440 (an operator and the string make a valid specifier, the other side a valid
  // version) compares as versions, with pre-releases allowed (python_version < "3.10" is true
  // for "3.9"); others compare as strings, byte by byte. `in` / `not in` test whether the left
  // side is a substring of the right. `extra` is compared after PEP 685 normalization of both
  // sides ("Foo_Bar" == "foo-bar"). `~=` between strings that are not versions is false.
  bool evaluate(const marker_environment& env) const;

  // The marker in one spelling: variables as PEP 508 names them, strings in double quotes
  // (single when they hold one), operators with single spaces, parentheses only where an `or`
  // sits inside an `and`. Parsing it gives an equal marker.
  std::string str() const;

  // The PEP 508 names of the variables the marker reads, sorted, without duplicates.
  std::vector<std::string> variables() const;

  struct node;  // the parse tree (private to the implementation)

 private:
  std::shared_ptr<const node> root_;
};

// A PEP 508 requirement.
struct requirement {
  std::string name;                   // the project name as written
  std::vector<std::string> extras;    // as written, in order
  specifier_set specifiers;           // empty for a URL requirement or none written
  std::string url;                    // `name @ url`: the URL; "" otherwise
  std::optional<marker> environment;  // the marker after ';', if any

  // Parses `name [extras] specifiers ; marker` or `name [extras] @ url ; marker` (the URL ends
  // at white space, which must precede the ';' of its marker); the specifiers may be in
  // parentheses. Errors (invalid_argument) quote the requirement and say what is wrong, with
  // the message of the specifier or marker that failed.
  static result<requirement> parse(std::string_view text);

  // True iff the requirement applies in `env`: it has no marker or its marker holds.
  bool applies_to(const marker_environment& env) const;

  // One spelling: `name[a,b]>=1.0,<2; python_version < "3.9"`, `name @ url ; marker`.
  std::string str() const;
};

}  // namespace pantry::registry::pypi
