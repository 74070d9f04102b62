#include "pantry/orchestrator/builder/containerfile.h"

#include "lexical.h"
#include "pantry/text.h"
#include "syntax.h"

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

using detail::has_heredoc;
using detail::is_digit;
using detail::is_space;
using detail::json_form;
using detail::parse_go_duration;
using detail::parse_json_form;
using detail::parse_words;
using detail::quote;
using detail::read_lines;
using detail::reporter;
using detail::split_command;
using detail::split_line;
using detail::split_whitespace;
using detail::trim;
using detail::trim_left;

// ---- flags --------------------------------------------------------------------------------------
// A flag pantry refuses, with what to do instead.
struct refused_flag {
  std::string_view name;
  std::string_view advice;
};

// Parses an instruction's flags: each must be one of `allowed` (string flags: --name=value) and
// appear once; a flag of `refused` is refused by name with its advice.
result<std::map<std::string, std::string>> parse_flags(
    const std::vector<std::string>& flags, std::initializer_list<std::string_view> allowed,
    std::initializer_list<refused_flag> refused, std::size_t line, std::string_view keyword,
    const reporter& report) {
  std::map<std::string, std::string> out;
  for (const auto& f : flags) {
    const std::string_view flag = f;
    const auto eq = flag.find('=');
    const std::string name(flag.substr(2, eq == std::string_view::npos ? flag.npos : eq - 2));
    for (const auto& r : refused) {
      if (name == r.name) {
        return report.at(line, keyword,
                         "--" + name + " is not supported by pantry: " + std::string(r.advice));
      }
    }
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string known;
      for (auto a : allowed)
        known += (known.empty() ? "--" : ", --") + std::string(a);
      return report.at(
          line, keyword,
          "unknown flag " + quote(flag.substr(0, eq)) +
              (known.empty() ? std::string(" (it takes no flags)") : " (it takes " + known + ")"));
    }
    if (out.contains(name)) return report.at(line, keyword, "--" + name + " is given twice");
    if (eq == std::string_view::npos || eq + 1 == flag.size()) {
      return report.at(line, keyword, "--" + name + " needs a value (--" + name + "=VALUE)");
    }
    out.emplace(name, std::string(flag.substr(eq + 1)));
  }
  return out;
}

// ---- instructions -------------------------------------------------------------------------------
constexpr std::string_view kSupported =
    "FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, LABEL, ENTRYPOINT, CMD, EXPOSE, SHELL, "
    "VOLUME, STOPSIGNAL, HEALTHCHECK, MAINTAINER";

// One instruction line being turned into a typed instruction.
struct line_parser {
  const reporter& report;
  char escape;
  std::size_t line;
  std::string keyword;  // upper case
  split_line parts;
  std::string text;

  error fail(const std::string& message) const { return report.at(line, keyword, message); }

  result<std::map<std::string, std::string>> flags(
      std::initializer_list<std::string_view> allowed,
      std::initializer_list<refused_flag> refused = {}) const {
    return parse_flags(parts.flags, allowed, refused, line, keyword, report);
  }

  result<void> refuse_heredoc(bool json) const {
    if (!json && has_heredoc(text)) {
      return fail(
          "heredocs (<<EOF) are not supported by pantry: put the script or file in the build "
          "context and COPY it, or write the command on one line");
    }
    return {};
  }

  // RUN, CMD, ENTRYPOINT: a command in exec or shell form.
  result<command_line> command(bool allow_empty_exec) const {
    const json_form j = parse_json_form(parts.args);
    if (j.kind == json_form::outcome::not_strings) {
      return fail("a JSON array (exec form) must hold strings only: " + quote(parts.args));
    }
    if (j.kind == json_form::outcome::strings) {
      if (j.args.empty() && !allow_empty_exec) return fail("[] names no command to run");
      return command_line{true, j.args};
    }
    if (parts.args.empty()) {
      return fail(allow_empty_exec ? "needs a command (" + keyword + " [] clears it)"
                                   : std::string("needs a command"));
    }
    return command_line{false, {parts.args}};
  }

  // COPY, ADD, VOLUME: a JSON array of strings or whitespace-separated words.
  result<std::pair<std::vector<std::string>, bool>> list() const {
    const json_form j = parse_json_form(parts.args);
    if (j.kind == json_form::outcome::not_strings) {
      return fail("a JSON array must hold strings only: " + quote(parts.args));
    }
    if (j.kind == json_form::outcome::strings) return std::make_pair(j.args, true);
    return std::make_pair(split_whitespace(parts.args), false);
  }

  // COPY and ADD: SRC… DEST, as a JSON array or words.
  result<std::pair<std::vector<std::string>, std::string>> sources_and_destination() const {
    auto l = list();
    if (!l) return l.error();
    if (auto h = refuse_heredoc(l->second); !h) return h.error();
    auto& words = l->first;
    if (words.size() < 2) {
      return fail("needs a source and a destination (" + keyword + " SRC… DEST)");
    }
    std::string destination = std::move(words.back());
    words.pop_back();
    return std::make_pair(std::move(words), std::move(destination));
  }

  // ENV and LABEL: K=V pairs, or the legacy `K V` (the rest of the line is the value).
  result<std::vector<key_value>> pairs() const {
    const auto words = parse_words(parts.args, escape);
    if (words.empty()) return fail("needs at least one NAME=VALUE");
    std::vector<key_value> out;
    if (words.front().find('=') == std::string::npos) {
      const std::string_view rest = parts.args;
      std::size_t k = 0;
      while (k < rest.size() && !is_space(rest[k]))
        ++k;
      std::size_t v = k;
      while (v < rest.size() && is_space(rest[v]))
        ++v;
      if (v == rest.size()) {
        return fail(quote(rest.substr(0, k)) + " has no value: write NAME=VALUE");
      }
      out.push_back({std::string(rest.substr(0, k)), std::string(rest.substr(v))});
      return out;
    }
    for (const auto& w : words) {
      const auto eq = w.find('=');
      if (eq == std::string::npos) {
        return fail("no '=' in " + quote(w) + ": write NAME=VALUE (quote values with spaces)");
      }
      if (eq == 0) return fail("a name is blank in " + quote(w));
      out.push_back({w.substr(0, eq), w.substr(eq + 1)});
    }
    return out;
  }

  result<std::string> one_argument() const {
    if (parts.args.empty()) return fail("needs exactly one argument");
    return parts.args;
  }

  result<instruction_body> parse() const;
  result<instruction_body> parse_run() const;
  result<instruction_body> parse_copy() const;
  result<instruction_body> parse_add() const;
  result<instruction_body> parse_healthcheck() const;
};

result<instruction_body> line_parser::parse_run() const {
  auto f =
      flags({"network"}, {{"mount",
                           "COPY the files the step needs into the image (pip downloads go through "
                           "pantry's cache already)"},
                          {"security", "steps never run privileged"},
                          {"device", "steps get no host devices"}});
  if (!f) return f.error();
  run_instruction run;
  if (auto n = f->find("network"); n != f->end()) {
    const std::string& mode = n->second;
    if (mode == "isolated" || mode == "default") {
      run.network = network_mode::isolated;
    } else if (mode == "none") {
      run.network = network_mode::none;
    } else if (mode == "host") {
      run.network = network_mode::host;
    } else {
      return fail("--network=" + mode +
                  " is not a network pantry gives a step: use isolated (the default: only "
                  "pantry's read-only routes answer), none or host");
    }
  }
  const json_form j = parse_json_form(parts.args);
  if (auto h = refuse_heredoc(j.kind == json_form::outcome::strings); !h) return h.error();
  auto cmd = command(false);
  if (!cmd) return cmd.error();
  run.command = std::move(*cmd);
  return run;
}

// --from's value: an earlier stage by name or index, or an image reference.
result<copy_from> parse_copy_from(const std::string& value, std::size_t stage_index,
                                  const std::vector<stage>& stages,
                                  const std::map<std::string, std::size_t>& all_names,
                                  const line_parser& p) {
  copy_from from;
  from.written = value;
  if (value.find('$') != std::string::npos) {
    return p.fail("--from=" + value +
                  " holds a variable; docker and pantry do not substitute in --from: define a "
                  "stage with FROM ${…} AS NAME and use --from=NAME");
  }
  if (!value.empty() && std::all_of(value.begin(), value.end(), is_digit)) {
    const std::size_t index = value.size() > 9 ? stages.size() + 1 : std::stoul(value);
    if (index >= stage_index) {
      return p.fail("--from=" + value + " names stage " + value + ", but only " +
                    std::to_string(stage_index) +
                    " stage(s) are defined before this one (a stage copies only from stages "
                    "before it, counting from 0)");
    }
    from.from = copy_from::kind::stage;
    from.stage = index;
    return from;
  }
  const std::string lowered = ascii_lower(value);
  for (std::size_t i = 0; i < stage_index; ++i) {
    if (stages[i].from.name == lowered) {
      from.from = copy_from::kind::stage;
      from.stage = i;
      return from;
    }
  }
  if (auto later = all_names.find(lowered); later != all_names.end()) {
    if (later->second == stages[stage_index].line) {
      return p.fail("--from=" + value +
                    " names the stage it is in; a stage copies only from stages before it");
    }
    return p.fail("--from=" + value + " names a stage defined later (line " +
                  std::to_string(later->second) + "); a stage copies only from stages before it");
  }
  if (value.find_first_of("/:@.") == std::string::npos) {
    std::string names;
    for (std::size_t i = 0; i < stage_index; ++i) {
      if (stages[i].from.name.empty()) continue;
      names += (names.empty() ? "" : ", ") + stages[i].from.name;
    }
    return p.fail("--from=" + value + " names no stage defined before it (" +
                  (names.empty() ? std::string("no named stages") : "stages: " + names) +
                  "); to copy from an image, name it by digest: --from=NAME@sha256:…");
  }
  auto ref = parse_image_reference(value);
  if (!ref) return p.fail("--from=" + value + ": " + ref.error().message);
  from.from = copy_from::kind::image;
  from.image = std::move(*ref);
  return from;
}

result<instruction_body> line_parser::parse_copy() const {
  // COPY's --from needs the stages, so parse_containerfile completes it; here it is kept as
  // written in copy_from::written.
  auto f =
      flags({"from", "chown", "chmod"},
            {{"link", "pantry's layers do not depend on what is below them anyway; drop --link"},
             {"parents", "copy each directory with a COPY of its own"},
             {"exclude", "list what to leave out in .containerignore"}});
  if (!f) return f.error();
  auto paths = sources_and_destination();
  if (!paths) return paths.error();
  copy_instruction copy;
  copy.sources = std::move(paths->first);
  copy.destination = std::move(paths->second);
  if (auto c = f->find("chown"); c != f->end()) copy.chown = c->second;
  if (auto c = f->find("chmod"); c != f->end()) copy.chmod = c->second;
  if (auto c = f->find("from"); c != f->end()) copy.from.written = c->second;
  return copy;
}

result<instruction_body> line_parser::parse_add() const {
  auto f =
      flags({"chown", "chmod"},
            {{"checksum", "pantry's ADD takes local files only, whose content is hashed anyway"},
             {"keep-git-dir", "pantry's ADD takes no git repositories: clone in a RUN step"},
             {"unpack", "ADD unpacks local archives; use COPY to copy one as it is"},
             {"link", "pantry's layers do not depend on what is below them anyway; drop --link"},
             {"exclude", "list what to leave out in .containerignore"}});
  if (!f) return f.error();
  auto paths = sources_and_destination();
  if (!paths) return paths.error();
  for (const auto& source : paths->first) {
    // Sources with variables are checked again after substitution (stage_scope::resolve).
    if (detail::is_remote_source(source)) return fail(detail::remote_source_refusal(source));
  }
  add_instruction add;
  add.sources = std::move(paths->first);
  add.destination = std::move(paths->second);
  if (auto c = f->find("chown"); c != f->end()) add.chown = c->second;
  if (auto c = f->find("chmod"); c != f->end()) add.chmod = c->second;
  return add;
}

result<instruction_body> line_parser::parse_healthcheck() const {
  const std::string_view rest = parts.args;
  std::size_t sep = 0;
  while (sep < rest.size() && !is_space(rest[sep]))
    ++sep;
  if (sep == 0) return fail("needs NONE or CMD COMMAND");
  const std::string type = ascii_lower(rest.substr(0, sep));
  const std::string_view command_text = trim_left(rest.substr(sep));
  healthcheck_instruction h;
  if (type == "none") {
    if (!command_text.empty()) return fail("NONE takes no arguments");
    if (!parts.flags.empty()) return fail("NONE takes no options");
    h.none = true;
    return h;
  }
  if (type != "cmd") {
    return fail("unknown type " + quote(rest.substr(0, sep)) + ": use CMD COMMAND or NONE");
  }
  auto f = flags({"interval", "timeout", "start-period", "start-interval", "retries"});
  if (!f) return f.error();
  const json_form j = parse_json_form(command_text);
  if (j.kind == json_form::outcome::not_strings) {
    return fail("a JSON array (exec form) must hold strings only: " + quote(command_text));
  }
  if (j.kind == json_form::outcome::strings) {
    if (j.args.empty()) return fail("CMD [] names no command");
    h.test = command_line{true, j.args};
  } else {
    if (command_text.empty()) return fail("CMD needs a command");
    h.test = command_line{false, {std::string(command_text)}};
  }
  const std::array<std::pair<std::string_view, std::chrono::nanoseconds*>, 4> durations = {{
      {"interval", &h.interval},
      {"timeout", &h.timeout},
      {"start-period", &h.start_period},
      {"start-interval", &h.start_interval},
  }};
  for (const auto& [name, field] : durations) {
    auto it = f->find(std::string(name));
    if (it == f->end()) continue;
    const auto d = parse_go_duration(it->second);
    if (!d) {
      return fail("--" + std::string(name) + "=" + it->second +
                  " is not a duration (e.g. 30s, 1m30s, 500ms)");
    }
    if (*d != 0 && *d < 1000000) {
      return fail("--" + std::string(name) + "=" + it->second + " is less than 1ms");
    }
    *field = std::chrono::nanoseconds(*d);
  }
  if (auto it = f->find("retries"); it != f->end()) {
    std::string_view digits = it->second;
    const bool negative = digits.starts_with('-');
    if (digits.starts_with('-') || digits.starts_with('+')) digits.remove_prefix(1);
    if (digits.empty() || digits.size() > 10 ||
        !std::all_of(digits.begin(), digits.end(), is_digit)) {
      return fail("--retries=" + it->second + " is not a number");
    }
    const long long n = std::stoll(std::string(digits));
    if (negative && n != 0) return fail("--retries=" + it->second + " cannot be negative");
    if (n > std::numeric_limits<std::int32_t>::max()) {
      return fail("--retries=" + it->second + " is too large");
    }
    h.retries = static_cast<int>(n);
  }
  return h;
}

result<instruction_body> line_parser::parse() const {
  const std::string_view k = keyword;
  if (k == "RUN") return parse_run();
  if (k == "COPY") return parse_copy();
  if (k == "ADD") return parse_add();
  if (k == "ENV" || k == "LABEL") {
    auto f = flags({});
    if (!f) return f.error();
    auto p = pairs();
    if (!p) return p.error();
    if (k == "ENV") return env_instruction{std::move(*p)};
    return label_instruction{std::move(*p)};
  }
  if (k == "ARG") {
    auto f = flags({});
    if (!f) return f.error();
    const auto words = parse_words(parts.args, escape);
    if (words.empty()) return fail("needs a name (ARG NAME[=DEFAULT])");
    arg_instruction arg;
    for (const auto& w : words) {
      const auto eq = w.find('=');
      if (eq == 0) return fail("a name is blank in " + quote(w));
      if (eq == std::string::npos) {
        arg.args.push_back({w, std::nullopt});
      } else {
        arg.args.push_back({w.substr(0, eq), w.substr(eq + 1)});
      }
    }
    return arg;
  }
  if (k == "WORKDIR" || k == "USER" || k == "STOPSIGNAL" || k == "MAINTAINER") {
    auto f = flags({});
    if (!f) return f.error();
    auto a = one_argument();
    if (!a) return a.error();
    if (k == "WORKDIR") return workdir_instruction{std::move(*a)};
    if (k == "USER") return user_instruction{std::move(*a)};
    if (k == "STOPSIGNAL") return stopsignal_instruction{std::move(*a)};
    return maintainer_instruction{std::move(*a)};
  }
  if (k == "ENTRYPOINT" || k == "CMD") {
    auto f = flags({});
    if (!f) return f.error();
    auto c = command(true);
    if (!c) return c.error();
    if (k == "CMD") return cmd_instruction{std::move(*c)};
    return entrypoint_instruction{std::move(*c)};
  }
  if (k == "EXPOSE") {
    auto f = flags({});
    if (!f) return f.error();
    auto ports = split_whitespace(parts.args);
    if (ports.empty()) return fail("needs at least one port (EXPOSE 8080 or 8080/udp)");
    // Docker sorts the words as written.
    std::sort(ports.begin(), ports.end());
    return expose_instruction{std::move(ports)};
  }
  if (k == "SHELL") {
    auto f = flags({});
    if (!f) return f.error();
    const json_form j = parse_json_form(parts.args);
    if (j.kind == json_form::outcome::not_strings) {
      return fail("a JSON array must hold strings only: " + quote(parts.args));
    }
    if (j.kind != json_form::outcome::strings) {
      if (parts.args.empty())
        return fail("needs the shell as a JSON array, e.g. [\"/bin/sh\", \"-c\"]");
      return fail("needs the shell as a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"], not " +
                  quote(parts.args));
    }
    if (j.args.empty()) return fail("[] names no shell");
    return shell_instruction{j.args};
  }
  if (k == "VOLUME") {
    auto f = flags({});
    if (!f) return f.error();
    auto l = list();
    if (!l) return l.error();
    if (l->first.empty()) return fail("needs at least one path");
    volume_instruction v;
    for (const auto& p : l->first) {
      const auto t = trim(p);
      if (t.empty()) return fail("a path is empty");
      v.paths.emplace_back(t);
    }
    return v;
  }
  if (k == "HEALTHCHECK") return parse_healthcheck();
  if (k == "ONBUILD") {
    return fail(
        "ONBUILD is not supported by pantry: write the instructions into each Containerfile "
        "that builds on this image");
  }
  if (keyword.empty()) return fail("an instruction is empty (a line continued into nothing?)");
  return report.at(line, "",
                   "unknown instruction " + quote(parts.keyword) + " (pantry knows " +
                       std::string(kSupported) + ")");
}

// Docker's rule for stage names.
bool valid_stage_name(std::string_view name) noexcept {
  if (name.empty() || !(name.front() >= 'a' && name.front() <= 'z')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_' || c == '.';
  });
}

result<from_instruction> parse_from(const line_parser& p) {
  auto f = p.flags({"platform"});
  if (!f) return f.error();
  from_instruction from;
  if (auto it = f->find("platform"); it != f->end()) from.platform = it->second;
  const auto args = split_whitespace(p.parts.args);
  if (args.size() == 3 && ascii_iequals(args[1], "as")) {
    from.name = ascii_lower(args[2]);
    if (!valid_stage_name(from.name)) {
      return p.fail("invalid stage name " + quote(args[2]) +
                    ": a letter, then letters, digits, '-', '_' or '.'");
    }
    if (from.name == "scratch") {
      return p.fail("\"scratch\" is no stage name: FROM scratch means the empty image");
    }
  } else if (args.size() != 1) {
    return p.fail("needs an image and optionally a stage name: FROM IMAGE [AS NAME]");
  }
  from.base = args.front();
  return from;
}

}  // namespace

std::string_view instruction::keyword() const noexcept {
  // In the order of instruction_body's alternatives.
  static constexpr auto kNames = std::to_array<std::string_view>(
      {"RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "WORKDIR", "USER", "MAINTAINER", "ENTRYPOINT",
       "CMD", "EXPOSE", "SHELL", "VOLUME", "STOPSIGNAL", "HEALTHCHECK"});
  static_assert(kNames.size() == std::variant_size_v<instruction_body>);
  return kNames[body.index()];
}

result<containerfile> parse_containerfile(std::string_view text, std::string_view file) {
  const reporter report(file);
  auto lines = read_lines(text, report);
  if (!lines) return lines.error();
  containerfile out;
  out.file = std::string(file);
  out.escape = lines->escape;

  // Stage names first: COPY --from must tell "defined later" from "no such stage".
  std::map<std::string, std::size_t> stage_lines;  // name -> line of its first FROM
  std::vector<line_parser> parsed;
  parsed.reserve(lines->lines.size());
  for (auto& l : lines->lines) {
    split_line parts = split_command(l.text, out.escape);
    std::string keyword = detail::ascii_upper(parts.keyword);
    parsed.push_back(line_parser{report, out.escape, l.line, std::move(keyword), std::move(parts),
                                 std::string(trim(l.text))});
  }

  for (const auto& p : parsed) {
    if (p.keyword != "FROM") continue;
    if (auto from = parse_from(p); from && !from->name.empty()) {
      stage_lines.emplace(from->name, p.line);
    }
  }

  for (const auto& p : parsed) {
    if (p.keyword == "FROM") {
      auto from = parse_from(p);
      if (!from) return from.error();
      if (!from->name.empty()) {
        for (const auto& earlier : out.stages) {
          if (earlier.from.name != from->name) continue;
          return p.fail("the stage name " + quote(from->name) +
                        " is already used by the stage at line " + std::to_string(earlier.line) +
                        "; give each stage its own name");
        }
      }
      out.stages.push_back(stage{p.line, p.text, std::move(*from), {}});
      continue;
    }
    auto body = p.parse();
    if (!body) return body.error();
    instruction in{p.line, p.text, std::move(*body)};
    if (out.stages.empty()) {
      if (!std::holds_alternative<arg_instruction>(in.body)) {
        return p.fail(
            "comes before any FROM; a Containerfile starts with FROM (only ARG may "
            "come before the first FROM)");
      }
      out.global_args.push_back(std::move(in));
      continue;
    }
    if (auto* copy = std::get_if<copy_instruction>(&in.body); copy && !copy->from.written.empty()) {
      auto from =
          parse_copy_from(copy->from.written, out.stages.size() - 1, out.stages, stage_lines, p);
      if (!from) return from.error();
      copy->from = std::move(*from);
    }
    out.stages.back().instructions.push_back(std::move(in));
  }
  if (out.stages.empty()) {
    return report.whole(
        "no FROM: a Containerfile needs at least one FROM (e.g. FROM python@sha256:…)");
  }
  return out;
}

result<std::size_t> find_stage(const containerfile& file, std::string_view name) {
  const std::string lowered = ascii_lower(name);
  std::string names;
  for (std::size_t i = 0; i < file.stages.size(); ++i) {
    if (file.stages[i].from.name == lowered) return i;
    if (!file.stages[i].from.name.empty()) {
      names += (names.empty() ? "" : ", ") + file.stages[i].from.name;
    }
  }
  return error(errc::not_found,
               file.file + ": no stage is named " + quote(name) +
                   (names.empty() ? std::string(" (no stage has a name: FROM IMAGE AS NAME)")
                                  : " (stages: " + names + ")"));
}

}  // namespace pantry::orchestrator::builder
