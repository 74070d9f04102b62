#pragma once

// Containerfiles (Dockerfiles) read the way docker's BuildKit frontend reads them, into typed
// stages and instructions. Variables are not substituted here: that needs the build args and the
// base image's environment, and happens step by step in substitute.h.
//
// Pure code: bytes in, values out; no file system, no network, no clock.
//
// The syntax is docker's: instruction keywords in any case; `#` comments on lines of their own;
// blank lines; lines continued by the escape character (`\`, or `` ` `` after a
// `# escape=`` ` `` directive) as the last character before optional spaces and tabs, with
// comment and blank lines inside a continued instruction skipped; parser directives
// (`# escape=`, `# syntax=`, `# check=`) only on the first lines, before any other line;
// `# syntax=` and `# check=` are ignored; a UTF-8 byte order mark and CRLF line ends are
// accepted. The JSON (exec) form of RUN, CMD, ENTRYPOINT, SHELL, COPY, ADD, VOLUME and
// HEALTHCHECK CMD is used when the arguments are a valid JSON array of strings; text that is not
// valid JSON is the shell form, as in docker; a valid JSON array holding anything but strings is
// an error, as in docker.
//
// What pantry refuses, each by name with what to do instead: ONBUILD; heredocs (`RUN <<EOF`,
// `COPY <<EOF`); `RUN --mount`, `--security` and `--device`; `COPY --link`, `--parents` and
// `--exclude`; `ADD` of a URL or git repository and `ADD --checksum`, `--keep-git-dir`,
// `--unpack`, `--link` and `--exclude`; any unknown flag (docker ignores flags on ARG and
// STOPSIGNAL; pantry refuses them); RUN, CMD and ENTRYPOINT with an empty shell form (docker
// runs `/bin/sh -c ""`); `COPY --from` naming no stage defined before it (docker would pull an
// image of that name; pantry wants an image by digest there, `--from=NAME@sha256:…`).
//
// Decisions where docker leaves room:
// - `FROM --platform=…` is kept as written and checked when the stage is resolved
//   (substitute.h): pantry builds natively, so only the platform it builds for is accepted.
// - MAINTAINER is accepted and kept as an instruction of its own, to be written to the image
//   config's `author` field as docker does (it is deprecated there, not a label).
// - Stage names must be unique (docker only warns) and `scratch` is no stage name.
// - White space is ASCII: space, \t, \n, \v, \f, \r (Go also counts U+0085 and U+00A0).

#include "pantry/error.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/image_reference.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pantry::orchestrator::builder {

// An image named in FROM or COPY --from (NAME[:TAG][@DIGEST]): the runner's, which `pantry run
// --image` reads too.
using runner::image_reference;
using runner::parse_image_reference;

// A command of RUN, CMD, ENTRYPOINT or HEALTHCHECK CMD.
struct command_line {
  // Exec (JSON) form: `args` is the argv as written, run without a shell. Shell form: `args` is
  // one string, the text handed to the shell (the image's SHELL, else /bin/sh -c), with the
  // continuation lines joined as docker joins them.
  bool exec_form = false;
  std::vector<std::string> args;

  friend bool operator==(const command_line&, const command_line&) = default;
};

// The network a RUN step gets: the runner's (`isolated`, the default, which docker's `default`
// means too: a namespace of its own in which only pantry's read-only routes answer, at
// 127.0.0.1; `none`; `host`).
using runner::network_mode;
using runner::to_string;

struct key_value {
  std::string key;
  std::string value;

  friend bool operator==(const key_value&, const key_value&) = default;
};

// In the structs below, a string field holds the text as written (quotes and escapes included)
// in a containerfile from parse_containerfile, and the text after substitution (quotes removed,
// escapes applied, variables replaced) in a resolved_step from substitute.h. A field that docker
// never substitutes is the same in both.

// FROM [--platform=P] BASE [AS NAME]. Not an instruction of a stage's list: it starts the stage.
struct from_instruction {
  std::string base;      // an image, `scratch` or an earlier stage's name; may hold $VARS
  std::string platform;  // --platform as written; empty when not given
  std::string name;      // the stage's name after AS, lowercased; empty when none

  friend bool operator==(const from_instruction&, const from_instruction&) = default;
};

// RUN [--network=isolated|none|host] COMMAND. Never substituted: the shell expands variables.
struct run_instruction {
  command_line command;
  network_mode network = network_mode::isolated;

  friend bool operator==(const run_instruction&, const run_instruction&) = default;
};

// Where COPY takes its sources from.
struct copy_from {
  enum class kind {
    context,  // the build context (no --from)
    stage,    // an earlier stage, by name or index
    image,    // an image (--from=NAME[:TAG][@DIGEST])
  };
  kind from = kind::context;
  std::size_t stage = 0;  // kind::stage: the stage's index
  // kind::image: pinned or not; as for FROM, the caller refuses an unpinned image unless told to
  // allow it.
  image_reference image;
  std::string written;  // --from's value as written; empty for kind::context

  friend bool operator==(const copy_from&, const copy_from&) = default;
};

// COPY [--from=…] [--chown=USER[:GROUP]] [--chmod=MODE] SRC… DEST.
struct copy_instruction {
  std::vector<std::string> sources;  // paths or globs, at least one
  std::string destination;
  std::string chown;  // empty when not given; resolved: "USER" or "USER:GROUP", names or ids
  std::string chmod;  // empty when not given; resolved: four octal digits, e.g. "0755"
  copy_from from;     // never substituted (docker refuses variables in --from)

  friend bool operator==(const copy_instruction&, const copy_instruction&) = default;
};

// ADD [--chown=…] [--chmod=…] SRC… DEST: as COPY, from the build context only; local archives
// (tar, optionally compressed) are unpacked, other files copied.
struct add_instruction {
  std::vector<std::string> sources;
  std::string destination;
  std::string chown;
  std::string chmod;

  friend bool operator==(const add_instruction&, const add_instruction&) = default;
};

// ENV K=V … or the legacy ENV K V (the value is the rest of the line).
struct env_instruction {
  std::vector<key_value> variables;

  friend bool operator==(const env_instruction&, const env_instruction&) = default;
};

struct arg_declaration {
  std::string name;  // never substituted
  // Parsed: the default as written, nullopt when none. Resolved: the value the ARG has in
  // scope (--build-arg, else the default, else the global ARG's value), nullopt when unset.
  std::optional<std::string> value;

  friend bool operator==(const arg_declaration&, const arg_declaration&) = default;
};

// ARG NAME[=DEFAULT] …, before the first FROM (global) or in a stage.
struct arg_instruction {
  std::vector<arg_declaration> args;

  friend bool operator==(const arg_instruction&, const arg_instruction&) = default;
};

// LABEL K=V … (or the legacy LABEL K V).
struct label_instruction {
  std::vector<key_value> labels;

  friend bool operator==(const label_instruction&, const label_instruction&) = default;
};

// WORKDIR PATH: the rest of the line is the path, spaces included (as in docker).
struct workdir_instruction {
  std::string path;

  friend bool operator==(const workdir_instruction&, const workdir_instruction&) = default;
};

// USER USER[:GROUP]: the rest of the line.
struct user_instruction {
  std::string user;

  friend bool operator==(const user_instruction&, const user_instruction&) = default;
};

// MAINTAINER TEXT (deprecated by docker): the image config's `author`. Never substituted.
struct maintainer_instruction {
  std::string maintainer;

  friend bool operator==(const maintainer_instruction&, const maintainer_instruction&) = default;
};

// ENTRYPOINT COMMAND. `ENTRYPOINT []` (exec form, no args) clears the entrypoint. Never
// substituted.
struct entrypoint_instruction {
  command_line command;

  friend bool operator==(const entrypoint_instruction&, const entrypoint_instruction&) = default;
};

// CMD COMMAND. `CMD []` clears the command. Never substituted.
struct cmd_instruction {
  command_line command;

  friend bool operator==(const cmd_instruction&, const cmd_instruction&) = default;
};

// EXPOSE PORT[/PROTO] …. Parsed: the words as written. Resolved: one "PORT/PROTO" per port
// (ranges such as 8000-8002 expanded, the protocol lowercased, tcp when none was given).
struct expose_instruction {
  std::vector<std::string> ports;

  friend bool operator==(const expose_instruction&, const expose_instruction&) = default;
};

// SHELL ["executable", "parameters"…]: JSON form only, as in docker. Never substituted.
struct shell_instruction {
  std::vector<std::string> shell;

  friend bool operator==(const shell_instruction&, const shell_instruction&) = default;
};

// VOLUME PATH… or VOLUME ["PATH"…].
struct volume_instruction {
  std::vector<std::string> paths;

  friend bool operator==(const volume_instruction&, const volume_instruction&) = default;
};

// STOPSIGNAL SIGNAL. Resolved: checked to be a signal number (1-64) or name (SIGTERM, TERM, any
// case), kept as written.
struct stopsignal_instruction {
  std::string signal;

  friend bool operator==(const stopsignal_instruction&, const stopsignal_instruction&) = default;
};

// HEALTHCHECK NONE, or HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
// [--start-interval=D] [--retries=N] CMD COMMAND. Durations are Go durations ("30s", "1m30s",
// "1.5s"), at least 1ms, or 0 for docker's default. Never substituted.
struct healthcheck_instruction {
  bool none = false;  // HEALTHCHECK NONE: the base image's health check is disabled
  // The image config's Test is ["CMD", args…] for the exec form, ["CMD-SHELL", text] for the
  // shell form.
  command_line test;
  std::chrono::nanoseconds interval{0};
  std::chrono::nanoseconds timeout{0};
  std::chrono::nanoseconds start_period{0};
  std::chrono::nanoseconds start_interval{0};
  int retries = 0;

  friend bool operator==(const healthcheck_instruction&, const healthcheck_instruction&) = default;
};

using instruction_body =
    std::variant<run_instruction, copy_instruction, add_instruction, env_instruction,
                 arg_instruction, label_instruction, workdir_instruction, user_instruction,
                 maintainer_instruction, entrypoint_instruction, cmd_instruction,
                 expose_instruction, shell_instruction, volume_instruction, stopsignal_instruction,
                 healthcheck_instruction>;

// One instruction of a stage (or a global ARG).
struct instruction {
  std::size_t line = 0;  // where the instruction starts, counting from 1
  // The instruction as written, continuation lines joined as docker joins them, keyword and flags
  // included (for logs and the image history).
  std::string text;
  instruction_body body;

  // The keyword in upper case: "RUN", "COPY", ….
  std::string_view keyword() const noexcept;

  friend bool operator==(const instruction&, const instruction&) = default;
};

// A build stage: a FROM and the instructions up to the next FROM.
struct stage {
  std::size_t line = 0;  // the FROM's line
  std::string text;      // the FROM as written
  from_instruction from;
  std::vector<instruction> instructions;

  friend bool operator==(const stage&, const stage&) = default;
};

struct containerfile {
  std::string file;    // the name messages use, e.g. "Containerfile"
  char escape = '\\';  // the escape character: '\\', or '`' after `# escape=``
  // The ARG instructions before the first FROM: usable in FROM lines only, unless a stage
  // declares them again. Each body is an arg_instruction.
  std::vector<instruction> global_args;
  std::vector<stage> stages;  // at least one

  friend bool operator==(const containerfile&, const containerfile&) = default;
};

// Parses the Containerfile `text` read from `file` (the name errors carry). Errors are
// errc::invalid_argument with messages of the form "FILE:LINE: KEYWORD: what is wrong and what to
// do", e.g. "Containerfile:7: COPY: --chown needs a value"; a file without any FROM is
// "FILE: no FROM: …". Besides bad syntax and the refusals listed at the top of this header:
// an instruction before the first FROM other than ARG, a stage name used twice, an invalid stage
// name (docker's rule: a letter, then letters, digits, '-', '_' or '.'), COPY --from naming no
// stage defined before it, with a variable in it, or naming an invalid image reference; a bad
// HEALTHCHECK duration or retry count; SHELL not in JSON form.
result<containerfile> parse_containerfile(std::string_view text, std::string_view file);

// The index of the stage named `name` (any case), for `--target`; errc::not_found naming the
// stages there are when none has that name.
result<std::size_t> find_stage(const containerfile& file, std::string_view name);

}  // namespace pantry::orchestrator::builder
