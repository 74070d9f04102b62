// libFuzzer target for the builder's pure parts: Containerfile parsing and substitution, ignore
// files and cache keys -- everything `pantry build` reads from a user's build context. None may
// crash, hang or throw; what parses must keep the promises its header makes.

#include "pantry/orchestrator/builder/cache_key.h"
#include "pantry/orchestrator/builder/containerfile.h"
#include "pantry/orchestrator/builder/ignore.h"
#include "pantry/orchestrator/builder/substitute.h"
#include "pantry/text.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace b = pantry::orchestrator::builder;

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "containerfile_fuzz: %s failed for input of %zu bytes\n", what,
               input.size());
  __builtin_trap();
}

std::vector<std::string_view> lines_of(std::string_view in) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || in[i] == '\n') {
      out.push_back(in.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

bool sorted_unique(const std::vector<b::key_value>& v) {
  for (std::size_t i = 1; i < v.size(); ++i) {
    if (!(v[i - 1].key < v[i].key)) return false;
  }
  return true;
}

// Every instruction of a parsed file: lines in file order, the keyword its text starts with, a
// shell form with one string.
void check_instruction(const b::instruction& in, std::size_t& last_line, std::size_t max_line,
                       std::string_view input) {
  check(in.line > last_line && in.line <= max_line, "instructions come in line order", input);
  last_line = in.line;
  const std::string_view text = in.text;
  const std::string_view first = text.substr(0, text.find_first_of(" \t\v\f\r"));
  check(pantry::ascii_iequals(first, in.keyword()), "the text starts with the keyword", input);
  auto one_shell_string = [&](const b::command_line& c) {
    check(c.exec_form || c.args.size() == 1, "a shell form is one string", input);
  };
  if (const auto* run = std::get_if<b::run_instruction>(&in.body)) one_shell_string(run->command);
  if (const auto* cmd = std::get_if<b::cmd_instruction>(&in.body)) one_shell_string(cmd->command);
  if (const auto* e = std::get_if<b::entrypoint_instruction>(&in.body)) {
    one_shell_string(e->command);
  }
  if (const auto* copy = std::get_if<b::copy_instruction>(&in.body)) {
    check(!copy->sources.empty() && !copy->destination.empty(), "COPY has sources and a dest",
          input);
  }
}

void fuzz_containerfile(std::string_view in, const std::string& build_arg) {
  auto parsed = b::parse_containerfile(in, "Containerfile");
  if (!parsed) {
    check(parsed.error().message.starts_with("Containerfile:"), "errors name the file", in);
    check(parsed.error().is(pantry::errc::invalid_argument), "errors are invalid_argument", in);
    return;
  }
  const b::containerfile& f = *parsed;
  check(!f.stages.empty(), "a parsed file has a stage", in);
  check(f.escape == '\\' || f.escape == '`', "the escape is \\ or `", in);
  auto again = b::parse_containerfile(in, "Containerfile");
  check(again && *again == f, "parsing is deterministic", in);

  const std::size_t max_line = lines_of(in).size();
  std::size_t last_line = 0;
  for (const auto& g : f.global_args) {
    check(std::holds_alternative<b::arg_instruction>(g.body), "globals are ARGs", in);
    check_instruction(g, last_line, max_line, in);
  }
  for (std::size_t i = 0; i < f.stages.size(); ++i) {
    const b::stage& st = f.stages[i];
    check(st.line > last_line && st.line <= max_line, "stages come in line order", in);
    last_line = st.line;
    if (!st.from.name.empty()) {
      check(b::find_stage(f, st.from.name).value() == i, "stage names are unique", in);
    }
    for (const auto& ins : st.instructions) {
      check_instruction(ins, last_line, max_line, in);
      const auto* copy = std::get_if<b::copy_instruction>(&ins.body);
      if (copy == nullptr) continue;
      if (copy->from.from == b::copy_from::kind::stage) {
        check(copy->from.stage < i, "COPY --from names an earlier stage", in);
      } else if (copy->from.from == b::copy_from::kind::image) {
        auto ref = b::parse_image_reference(copy->from.image.str());
        check(ref && *ref == copy->from.image, "an image reference round-trips", in);
      }
    }
  }

  b::build_options options;
  options.platform = "linux/amd64";
  if (!build_arg.empty()) options.build_args[build_arg] = "fuzz";
  auto scope = b::build_scope::make(f, options);
  if (!scope) {
    check(scope.error().message.starts_with("Containerfile:"), "ARG errors name the file", in);
    return;
  }
  for (std::size_t i = 0; i < f.stages.size(); ++i) {
    auto from = scope->resolve_from(i);
    if (!from) {
      check(from.error().message.starts_with("Containerfile:"), "FROM errors name the file", in);
      continue;
    }
    check(sorted_unique(from->build_args_used), "FROM's args are sorted", in);
    if (from->base == b::resolved_from::kind::stage) {
      check(from->stage < i, "a stage builds on an earlier stage", in);
    }
    b::stage_scope stage(*scope, {"PATH=/bin", "HOME=/root"});
    auto parent = b::scratch_base_key();
    for (const auto& ins : f.stages[i].instructions) {
      auto r = stage.resolve(ins);
      if (!r) {
        check(r.error().message.starts_with("Containerfile:"), "step errors name the file", in);
        break;
      }
      check(r->step.keyword() == ins.keyword(), "resolving keeps the instruction", in);
      check(r->step.line == ins.line, "resolving keeps the line", in);
      check(sorted_unique(r->build_args_used), "a step's args are sorted", in);
      const std::string canonical = b::canonical_form(r->step);
      check(canonical == b::canonical_form(r->step), "the canonical form is deterministic", in);
      const bool copies = std::holds_alternative<b::copy_instruction>(r->step.body) ||
                          std::holds_alternative<b::add_instruction>(r->step.body);
      auto key = b::step_key(
          parent, *r, copies ? std::optional(pantry::cache::digest::of(canonical)) : std::nullopt);
      check(key.has_value(), "a resolved step has a key", in);
      check(
          !b::step_key(parent, *r,
                       copies ? std::nullopt : std::optional(pantry::cache::digest::of(canonical))),
          "sources are required exactly for COPY and ADD", in);
      parent = *key;
    }
    for (const auto& e : stage.run_env())
      check(e.find('=') != std::string::npos, "environment entries are NAME=VALUE", in);
  }
  auto order = scope->stages_for(f.stages.size() - 1);
  if (order) {
    check(std::is_sorted(order->begin(), order->end()) && !order->empty() &&
              order->back() == f.stages.size() - 1,
          "stages_for ends with the target, dependencies first", in);
  }
}

// First line: the word; other lines: NAME=VALUE variables.
void fuzz_expand(std::string_view in) {
  const auto lines = lines_of(in);
  std::map<std::string, std::string, std::less<>> vars;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto eq = lines[i].find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(lines[i].substr(0, eq))] = std::string(lines[i].substr(eq + 1));
  }
  const b::variable_lookup lookup = [&](std::string_view name) -> const std::string* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : &it->second;
  };
  const std::string_view word = lines.front();
  for (char escape : {'\\', '`'}) {
    auto r = b::expand(word, lookup, escape);
    if (!r) {
      check(r.error().message.starts_with("cannot substitute in "), "errors quote the word", in);
      continue;
    }
    check(std::is_sorted(r->used.begin(), r->used.end()) &&
              std::adjacent_find(r->used.begin(), r->used.end()) == r->used.end(),
          "used names are sorted and unique", in);
    for (const auto& n : r->used)
      check(vars.contains(n), "only set names are used", in);
    for (const auto& w : r->words)
      check(!w.empty(), "no empty words", in);
    if (word.find_first_of("$'\"") == std::string_view::npos &&
        word.find(escape) == std::string_view::npos) {
      check(r->text == word && r->used.empty(), "a plain word stays as it is", in);
    }
    auto none = b::expand(word, nullptr, escape);
    if (none) check(none->used.empty(), "nothing is used without variables", in);
  }
}

// Lines: ignore file patterns, then after a line "--", paths to check.
void fuzz_ignore(std::string_view in) {
  const auto split = in.find("\n--\n");
  const std::string_view file = in.substr(0, split);
  const std::string_view paths =
      split == std::string_view::npos ? std::string_view() : in.substr(split + 4);
  auto rules = b::ignore_rules::parse(file, ".dockerignore");
  if (!rules) {
    check(rules.error().message.starts_with(".dockerignore:"), "errors name the line", in);
    return;
  }
  std::vector<std::string> patterns;
  for (const auto& p : rules->patterns())
    patterns.push_back((p.exception ? "!" : "") + p.text);
  auto all = patterns;
  all.push_back("**");
  auto none = patterns;
  none.push_back("!**");
  auto excluding = b::ignore_rules::from_patterns(all);
  auto including = b::ignore_rules::from_patterns(none);
  check(excluding && including, "adding ** keeps the rules valid", in);
  check(!rules->excluded(".") && !rules->excluded(""), "the root is never excluded", in);
  for (std::string_view path : lines_of(paths)) {
    const bool excluded = rules->excluded(path);
    check(excluded == rules->excluded(path), "matching is deterministic", in);
    const std::string cleaned = b::clean_path(path);
    if (cleaned == "." || cleaned == "/") continue;
    check(excluding->excluded(path), "a last ** excludes everything", in);
    check(!including->excluded(path), "a last !** includes everything", in);
    // A directory may_include_under says nothing comes back from holds nothing included.
    for (std::size_t slash = cleaned.find('/'); slash != std::string::npos;
         slash = cleaned.find('/', slash + 1)) {
      const std::string dir = cleaned.substr(0, slash);
      if (dir.empty() || !rules->excluded(dir) || rules->may_include_under(dir)) continue;
      check(rules->excluded(cleaned), "may_include_under is sound", in);
    }
  }
}

// Lines: PATH TYPE-BYTE REST -> a listing; its digest does not depend on the order.
void fuzz_sources(std::string_view in) {
  std::vector<b::source_file> files;
  for (std::string_view line : lines_of(in)) {
    if (line.size() < 2) continue;
    b::source_file f;
    f.type = static_cast<b::file_type>(static_cast<unsigned char>(line[0]) % 8);
    f.mode = static_cast<unsigned char>(line[1]) * 37u;
    f.path = std::string(
        line.substr(2, line.find(' ', 2) == line.npos ? line.npos : line.find(' ', 2) - 2));
    f.link_target = std::string(line.substr(std::min(line.size(), f.path.size() + 2)));
    f.content = pantry::cache::digest::of(f.link_target);
    files.push_back(std::move(f));
  }
  auto first = b::sources_digest(files);
  std::reverse(files.begin(), files.end());
  auto second = b::sources_digest(files);
  check(first.has_value() == second.has_value(), "the listing order does not matter", in);
  if (first) check(*first == *second, "the listing order does not change the digest", in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      // A build arg named by the first word after an ARG, if any, so overrides get exercised.
      std::string arg;
      if (auto p = in.find("ARG "); p != std::string_view::npos) {
        const auto name = in.substr(p + 4);
        arg = std::string(name.substr(0, name.find_first_of("= \n")));
      }
      fuzz_containerfile(in, arg);
      break;
    }
    case 1:
      fuzz_expand(in);
      break;
    case 2:
      fuzz_ignore(in);
      break;
    default:
      fuzz_sources(in);
      break;
  }
  return 0;
}
