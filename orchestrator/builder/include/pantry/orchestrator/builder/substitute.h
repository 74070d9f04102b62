#pragma once

// Variable substitution in Containerfiles, as docker does it, and the ARG/ENV scoping around it:
// which variables an instruction sees, what each FROM names, and which build args each step used
// (part of its cache key, cache_key.h).
//
// Pure code: the caller supplies what needs I/O (a base image's environment comes from its
// config, which the caller pulls).
//
// Words: `$NAME`, `${NAME}`, `${NAME:-default}` / `${NAME-default}` (default when unset, or also
// when empty with ':'), `${NAME:+alt}` / `${NAME+alt}`, `${NAME:?message}` / `${NAME?message}`
// (an error when unset, or empty with ':'), `${NAME#pattern}` / `##` (remove the shortest /
// longest matching prefix), `${NAME%pattern}` / `%%` (suffix), `${NAME/pattern/text}` and
// `${NAME//pattern/text}` (replace the first / every match; `*` and `?` are the wildcards and
// `\` escapes them; the text is taken literally). Single quotes keep everything literal; double
// quotes keep all but `$`, and the escape character escapes `"`, `$` and itself there; outside
// quotes the escape character takes the next character literally. Names are ASCII letters,
// digits and '_' (`$1`, `$@` and the other shell parameters are never set, so they expand to
// nothing, as in docker). An unset variable expands to nothing.
//
// Scoping (docker's rules, and the one choice pantry makes where BuildKit and docker's docs
// differ):
// - ARGs before the first FROM (global) are visible in FROM lines only; a stage sees one after
//   declaring it again with `ARG NAME` (which takes the global value unless it has a default).
// - `--build-arg NAME=VALUE` overrides the default of every ARG NAME (global and in stages); a
//   build arg no ARG declares is not visible anywhere (unused_build_args lists them).
// - An ARG's value is in the environment of later RUN steps of its stage, but not in the image.
// - ENV overrides ARG: a variable set by ENV (or by the base image's config) is seen with its ENV
//   value, whatever the order of the ENV and ARG lines. (BuildKit lets an ARG declared after the
//   ENV win; docker's documentation says ENV always wins; pantry does what the documentation
//   says.)
// - All assignments of one ENV line see the values from before the line (`ENV A=1 B=$A` gives B
//   A's old value); the declarations of one ARG line are applied one by one.
// - Substituted: ENV and LABEL (names and values), ARG defaults, COPY and ADD (sources,
//   destination, --chown, --chmod), WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, and FROM (image
//   and --platform, with global ARGs only). Not substituted: RUN, CMD, ENTRYPOINT, SHELL,
//   HEALTHCHECK and MAINTAINER (the shell expands variables at run time), COPY --from.

#include "pantry/error.h"
#include "pantry/orchestrator/builder/containerfile.h"

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pantry::orchestrator::builder {

// The value of the variable `name`, or nullptr when it is not set.
using variable_lookup = std::function<const std::string*(std::string_view name)>;

struct expansion {
  std::string text;                // the word after substitution (docker's ProcessWord)
  std::vector<std::string> words;  // the same split at white space outside quotes (ProcessWords)
  std::vector<std::string> used;   // the names that were looked up and set; sorted, unique
};

// Substitutes the variables in `word` and removes its quotes, as docker does for the fields above
// (`escape` is the Containerfile's escape character). Errors are errc::invalid_argument with a
// message that quotes the word and says what is wrong ("missing '}'", "bad substitution",
// "NAME: is not allowed to be unset", …), without a file or line: the caller adds them. Limits
// that keep a hostile file from exhausting memory or time: a result longer than 128 KiB (the
// longest argument Linux passes to a process), ${…} nested more than 32 deep, and a ${…#…} /
// ${…/…/…} pattern whose length times the value's exceeds 16 Mi.
result<expansion> expand(std::string_view word, const variable_lookup& lookup, char escape = '\\');

// What the user gives `pantry build`.
struct build_options {
  // --build-arg NAME=VALUE, by name.
  std::map<std::string, std::string, std::less<>> build_args;
  // The platform built for, "OS/ARCH[/VARIANT]" (e.g. "linux/amd64"); empty for none. When set,
  // docker's automatic global ARGs are defined from it: TARGETPLATFORM, TARGETOS, TARGETARCH,
  // TARGETVARIANT and the same with BUILD (pantry builds natively, so both are equal), and FROM
  // --platform must name it. When empty, FROM --platform is refused.
  std::string platform;
};

// A FROM after substitution.
struct resolved_from {
  enum class kind { scratch, image, stage };
  kind base = kind::scratch;
  // kind::image: the reference as written after substitution, pinned or not (the caller refuses
  // an unpinned one unless told to allow it).
  image_reference image;
  std::size_t stage = 0;                   // kind::stage: the earlier stage it builds on
  std::vector<key_value> build_args_used;  // global ARGs the FROM line used, sorted by name
};

// One instruction of a stage after substitution.
struct resolved_step {
  // The instruction with its fields substituted (see the structs in containerfile.h for what each
  // field then holds); `line` and `text` as written.
  instruction step;
  // The ARG values the step depends on, sorted by name: for RUN, every ARG of the stage that has
  // a value and that no ENV overrides (they are in its environment, and the shell may read any);
  // for a substituted instruction, the ARGs it named; for ARG itself, none (an ARG's value counts
  // where it is used, so changing a build arg misses the cache only from its first use on, as in
  // docker).
  std::vector<key_value> build_args_used;
};

// The build-wide scope: the global ARGs, with the build args and platform args applied. Holds a
// pointer to the containerfile, which must outlive it. Immutable after make(); safe to share
// between threads.
class build_scope {
 public:
  // Evaluates the global ARGs in order: a --build-arg value, else the default (substituted with
  // the global ARGs before it and the platform args), else unset. Errors name FILE:LINE: ARG.
  static result<build_scope> make(const containerfile& file, build_options options);

  const containerfile& file() const noexcept { return *file_; }
  const build_options& options() const noexcept { return options_; }

  // The value of the global ARG (or platform arg) `name`; nullptr when unset.
  const std::string* global(std::string_view name) const;

  // Substitutes stage `index`'s FROM with the global ARGs and says what it builds on: `scratch`
  // (exactly, as docker), an earlier stage's name (exactly: stage names are lowercase), or else
  // an image reference (parse_image_reference). Errors (FILE:LINE: FROM: …): an empty or invalid
  // image, a name of this or a later stage, --platform naming another platform than
  // options().platform, a substitution error.
  result<resolved_from> resolve_from(std::size_t index) const;

  // The stages building stage `target` needs, in an order that builds each after those it needs
  // (ascending indexes): the target, the stages it builds on, those it copies from, and theirs.
  result<std::vector<std::size_t>> stages_for(std::size_t target) const;

  // The --build-arg names no ARG of the file declares, sorted (docker warns about them).
  std::vector<std::string> unused_build_args() const;

 private:
  build_scope() = default;

  const containerfile* file_ = nullptr;
  build_options options_;
  std::map<std::string, std::string, std::less<>> globals_;
};

// The variables of one stage as its instructions are resolved in order. Holds a pointer to the
// build_scope, which must outlive it. Not thread-safe (a value, one per stage being built). A stage
// that builds on an earlier stage starts as a copy of that stage's scope after its last instruction
// (docker carries its ENV and ARG values over).
class stage_scope {
 public:
  // A stage on an image, or on scratch, whose config holds `image_env` ("NAME=VALUE" entries, as
  // an OCI image config's Env). Without a PATH there, docker's default PATH
  // (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) is added, as docker does.
  stage_scope(const build_scope& build, std::vector<std::string> image_env);

  // Substitutes `in`, an instruction of this stage, and applies what it sets (ENV, ARG). Call it
  // for each instruction of the stage in order. Errors are errc::invalid_argument naming
  // FILE:LINE: KEYWORD: a substitution error, a field empty after substitution (a COPY source or
  // destination, WORKDIR, USER, a VOLUME path, an ENV or LABEL name), an ENV name with '=', a
  // --chmod that is not an octal mode up to 07777 (symbolic modes are refused), a --chown with an
  // empty user or group, an ADD source that is a URL, an EXPOSE word that is not
  // PORT[-PORT][/tcp|udp|sctp] (host parts such as 8080:80 are refused), a STOPSIGNAL that is no
  // signal, ENV and ARG values of the stage together over 1 MiB.
  result<resolved_step> resolve(const instruction& in);

  // The image config's Env after the instructions so far: "NAME=VALUE", in docker's order (a
  // variable set again keeps its place).
  std::vector<std::string> env() const;

  // The environment a RUN step runs with: env() and then the ARGs with values that no ENV
  // overrides, in declaration order.
  std::vector<std::string> run_env() const;

  // The ARGs of the stage with values that no ENV overrides, sorted by name.
  std::vector<key_value> args_in_scope() const;

 private:
  const std::string* lookup(std::string_view name) const;
  const std::string* env_value(std::string_view name) const;

  const std::string* arg_value(std::string_view name) const;
  std::size_t environment_size() const;
  void declare(const std::string& name, std::optional<std::string> value);

  const build_scope* build_;
  std::vector<key_value> env_;
  // Declared ARGs in declaration order; nullopt when declared without a value.
  std::vector<std::pair<std::string, std::optional<std::string>>> args_;
};

}  // namespace pantry::orchestrator::builder
