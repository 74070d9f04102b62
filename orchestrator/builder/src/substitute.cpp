#include "pantry/orchestrator/builder/substitute.h"

#include "lexical.h"
#include "pantry/text.h"

#include <algorithm>
#include <array>
#include <set>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

using detail::is_digit;
using detail::quote;

// ENV and ARG values of a stage together may not exceed this: a process gets at most a few MiB
// of arguments and environment (ARG_MAX), and a hostile file must not fill memory one ENV line at
// a time.
constexpr std::size_t kMaxEnvironment = std::size_t{1} << 20;

constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---- helpers for the instructions ---------------------------------------------------------------

// Sets NAME=VALUE in an image config's Env: in place when NAME is there, else at the end.
void set_env(std::vector<key_value>& env, const std::string& name, const std::string& value) {
  for (auto& kv : env) {
    if (kv.key == name) {
      kv.value = value;
      return;
    }
  }
  env.push_back({name, value});
}

// "OS/ARCH[/VARIANT]" in the form platforms compare in: lowercase, x86_64 as amd64, aarch64 as
// arm64, arm64's default variant v8 dropped.
std::string normalize_platform(std::string_view p) {
  std::string s = ascii_lower(p);
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const auto slash = s.find('/', start);
    parts.push_back(
        s.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.size() >= 2) {
    if (parts[1] == "x86_64" || parts[1] == "x86-64") parts[1] = "amd64";
    if (parts[1] == "aarch64") parts[1] = "arm64";
    if (parts[1] == "arm64" && parts.size() == 3 && parts[2] == "v8") parts.pop_back();
  }
  std::string out;
  for (const auto& part : parts)
    out += (out.empty() ? "" : "/") + part;
  return out;
}

bool is_signal(std::string_view s) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), is_digit)) {
    return s.size() <= 2 && std::stoi(std::string(s)) >= 1 && std::stoi(std::string(s)) <= 64;
  }
  std::string name = detail::ascii_upper(s);
  if (name.starts_with("SIG")) name.erase(0, 3);
  static constexpr std::array<std::string_view, 34> kNames = {
      "ABRT", "ALRM",   "BUS",  "CHLD",   "CLD",   "CONT", "FPE",  "HUP",  "ILL",
      "INT",  "IO",     "IOT",  "KILL",   "PIPE",  "POLL", "PROF", "PWR",  "QUIT",
      "SEGV", "STKFLT", "STOP", "SYS",    "TERM",  "TRAP", "TSTP", "TTIN", "TTOU",
      "URG",  "USR1",   "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ"};
  if (std::find(kNames.begin(), kNames.end(), name) != kNames.end()) return true;
  if (name == "RTMIN" || name == "RTMAX") return true;
  for (std::string_view base : {std::string_view("RTMIN+"), std::string_view("RTMAX-")}) {
    if (!name.starts_with(base)) continue;
    const std::string_view n = std::string_view(name).substr(base.size());
    if (n.empty() || n.size() > 2 || !std::all_of(n.begin(), n.end(), is_digit)) return false;
    const int k = std::stoi(std::string(n));
    return base == "RTMIN+" ? (k >= 1 && k <= 15) : (k >= 1 && k <= 14);
  }
  return false;
}

// One EXPOSE word: PORT[-PORT][/PROTO] -> "PORT/proto" for each port.
result<std::vector<std::string>> parse_ports(std::string_view word) {
  auto bad = [&](const std::string& why) {
    return error(errc::invalid_argument, "invalid port " + quote(word) + ": " + why);
  };
  if (word.find(':') != std::string_view::npos) {
    return bad("EXPOSE takes the container's ports only (8080 or 8080/tcp), no host part");
  }
  const auto slash = word.find('/');
  const std::string_view ports = word.substr(0, slash);
  std::string proto =
      slash == std::string_view::npos ? std::string("tcp") : ascii_lower(word.substr(slash + 1));
  if (proto.empty()) proto = "tcp";
  if (proto != "tcp" && proto != "udp" && proto != "sctp") {
    return bad("the protocol is tcp, udp or sctp");
  }
  if (ports.empty()) return bad("no port number");
  const auto dash = ports.find('-');
  const auto start = parse_port(ports.substr(0, dash));
  if (!start) return bad("a port is a number from 0 to 65535");
  unsigned end = *start;
  if (dash != std::string_view::npos && ports.substr(dash + 1) != ports.substr(0, dash)) {
    const auto e = parse_port(ports.substr(dash + 1));
    if (!e) return bad("a port is a number from 0 to 65535");
    if (*e < *start) return bad("the range ends before it starts");
    end = *e;
  }
  std::vector<std::string> out;
  for (unsigned p = *start; p <= end; ++p)
    out.push_back(std::to_string(p) + "/" + proto);
  return out;
}

// --chmod: octal up to 07777, as four digits.
std::optional<std::string> normalize_chmod(std::string_view s) {
  if (s.empty() || s.size() > 12 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    return std::nullopt;
  }
  const unsigned long mode = std::stoul(std::string(s), nullptr, 8);
  if (mode > 07777) return std::nullopt;
  std::string out = "0000";
  for (int i = 3; i >= 0; --i)
    out[static_cast<std::size_t>(3 - i)] = static_cast<char>('0' + ((mode >> (3 * i)) & 7));
  return out;
}

std::vector<key_value> with_values(const std::vector<std::string>& names,
                                   const std::function<const std::string*(std::string_view)>& get) {
  std::vector<key_value> out;
  for (const auto& n : names) {
    if (const std::string* v = get(n)) out.push_back({n, *v});
  }
  return out;
}

}  // namespace

// ---- build_scope --------------------------------------------------------------------------------

result<build_scope> build_scope::make(const containerfile& file, build_options options) {
  build_scope scope;
  scope.file_ = &file;
  scope.options_ = std::move(options);
  auto& g = scope.globals_;
  if (!scope.options_.platform.empty()) {
    const std::string p = normalize_platform(scope.options_.platform);
    std::vector<std::string> parts;
    for (std::size_t start = 0;;) {
      const auto slash = p.find('/', start);
      parts.push_back(p.substr(start, slash == std::string::npos ? slash : slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    parts.resize(3);
    for (std::string_view prefix : {"TARGET", "BUILD"}) {
      const std::string pre(prefix);
      g[pre + "PLATFORM"] = p;
      g[pre + "OS"] = parts[0];
      g[pre + "ARCH"] = parts[1];
      g[pre + "VARIANT"] = parts[2];
    }
  }
  const variable_lookup lookup = [&g](std::string_view name) -> const std::string* {
    auto it = g.find(name);
    return it == g.end() ? nullptr : &it->second;
  };
  for (const auto& in : file.global_args) {
    const auto& arg = std::get<arg_instruction>(in.body);
    for (const auto& decl : arg.args) {
      if (auto b = scope.options_.build_args.find(decl.name);
          b != scope.options_.build_args.end()) {
        g[decl.name] = b->second;
      } else if (decl.value) {
        auto e = expand(*decl.value, lookup, file.escape);
        if (!e) {
          return error(errc::invalid_argument,
                       file.file + ":" + std::to_string(in.line) + ": ARG: " + e.error().message);
        }
        g[decl.name] = std::move(e->text);
      }
    }
  }
  return scope;
}

const std::string* build_scope::global(std::string_view name) const {
  auto it = globals_.find(name);
  return it == globals_.end() ? nullptr : &it->second;
}

result<resolved_from> build_scope::resolve_from(std::size_t index) const {
  const stage& st = file_->stages.at(index);
  auto fail = [&](const std::string& message) {
    return error(errc::invalid_argument,
                 file_->file + ":" + std::to_string(st.line) + ": FROM: " + message);
  };
  const variable_lookup lookup = [this](std::string_view name) { return global(name); };
  auto base = expand(st.from.base, lookup, file_->escape);
  if (!base) return fail(base.error().message);
  std::vector<std::string> used = base->used;
  if (base->text.empty()) {
    return fail("the image " + quote(st.from.base) +
                " is empty after substitution (is the global ARG set?)");
  }
  if (!st.from.platform.empty()) {
    auto platform = expand(st.from.platform, lookup, file_->escape);
    if (!platform) return fail(platform.error().message);
    used.insert(used.end(), platform->used.begin(), platform->used.end());
    if (options_.platform.empty()) {
      return fail("--platform=" + platform->text +
                  " is not supported here: pantry builds for the machine it runs on; remove "
                  "--platform");
    }
    if (normalize_platform(platform->text) != normalize_platform(options_.platform)) {
      return fail("--platform=" + platform->text + " is not the platform pantry builds for (" +
                  options_.platform +
                  "): pantry builds natively, without emulation; remove --platform or build on "
                  "such a machine");
    }
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  resolved_from out;
  out.build_args_used = with_values(used, lookup);
  const std::string& name = base->text;
  if (name == "scratch") {
    out.base = resolved_from::kind::scratch;
    return out;
  }
  for (std::size_t i = 0; i < file_->stages.size(); ++i) {
    if (file_->stages[i].from.name != name) continue;
    if (i >= index) {
      return fail("names the stage " + quote(name) + (i == index ? ", itself" : "") + " (line " +
                  std::to_string(file_->stages[i].line) +
                  "); a stage builds only on a stage defined before it");
    }
    out.base = resolved_from::kind::stage;
    out.stage = i;
    return out;
  }
  auto ref = parse_image_reference(name);
  if (!ref) return fail(ref.error().message);
  out.base = resolved_from::kind::image;
  out.image = std::move(*ref);
  return out;
}

result<std::vector<std::size_t>> build_scope::stages_for(std::size_t target) const {
  if (target >= file_->stages.size()) {
    return error(errc::invalid_argument, file_->file + ": there is no stage " +
                                             std::to_string(target) + " (the file has " +
                                             std::to_string(file_->stages.size()) + ")");
  }
  std::vector<bool> needed(file_->stages.size(), false);
  needed[target] = true;
  // Every dependency points to an earlier stage, so one pass from the target down suffices.
  for (std::size_t i = target + 1; i-- > 0;) {
    if (!needed[i]) continue;
    auto from = resolve_from(i);
    if (!from) return from.error();
    if (from->base == resolved_from::kind::stage) needed[from->stage] = true;
    for (const auto& in : file_->stages[i].instructions) {
      const auto* copy = std::get_if<copy_instruction>(&in.body);
      if (copy != nullptr && copy->from.from == copy_from::kind::stage) {
        needed[copy->from.stage] = true;
      }
    }
  }
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i <= target; ++i) {
    if (needed[i]) out.push_back(i);
  }
  return out;
}

std::vector<std::string> build_scope::unused_build_args() const {
  std::set<std::string, std::less<>> declared;
  auto add = [&](const instruction& in) {
    if (const auto* arg = std::get_if<arg_instruction>(&in.body)) {
      for (const auto& d : arg->args)
        declared.insert(d.name);
    }
  };
  for (const auto& in : file_->global_args)
    add(in);
  for (const auto& st : file_->stages) {
    for (const auto& in : st.instructions)
      add(in);
  }
  std::vector<std::string> out;
  for (const auto& [name, value] : options_.build_args) {
    if (!declared.contains(name)) out.push_back(name);
  }
  return out;
}

// ---- stage_scope --------------------------------------------------------------------------------

stage_scope::stage_scope(const build_scope& build, std::vector<std::string> image_env)
    : build_(&build) {
  for (const auto& entry : image_env) {
    const auto eq = entry.find('=');
    set_env(env_, entry.substr(0, eq), eq == std::string::npos ? "" : entry.substr(eq + 1));
  }
  if (env_value("PATH") == nullptr) env_.push_back({"PATH", std::string(kDefaultPath)});
}

std::vector<std::string> stage_scope::env() const {
  std::vector<std::string> out;
  out.reserve(env_.size());
  for (const auto& kv : env_)
    out.push_back(kv.key + "=" + kv.value);
  return out;
}

const std::string* stage_scope::env_value(std::string_view name) const {
  for (const auto& kv : env_) {
    if (kv.key == name) return &kv.value;
  }
  return nullptr;
}

const std::string* stage_scope::arg_value(std::string_view name) const {
  for (const auto& [n, v] : args_) {
    if (n == name) return v ? &*v : nullptr;
  }
  return nullptr;
}

const std::string* stage_scope::lookup(std::string_view name) const {
  // ENV overrides ARG (see the header).
  if (const std::string* v = env_value(name)) return v;
  return arg_value(name);
}

void stage_scope::declare(const std::string& name, std::optional<std::string> value) {
  for (auto& [n, v] : args_) {
    if (n != name) continue;
    // `ARG NAME` again without a value keeps the value NAME has.
    if (value) v = std::move(value);
    return;
  }
  args_.emplace_back(name, std::move(value));
}

std::size_t stage_scope::environment_size() const {
  std::size_t total = 0;
  for (const auto& kv : env_)
    total += kv.key.size() + kv.value.size() + 2;
  for (const auto& [name, value] : args_)
    total += name.size() + (value ? value->size() : 0) + 2;
  return total;
}

std::vector<std::string> stage_scope::run_env() const {
  std::vector<std::string> out = env();
  for (const auto& [name, value] : args_) {
    if (value && env_value(name) == nullptr) out.push_back(name + "=" + *value);
  }
  return out;
}

std::vector<key_value> stage_scope::args_in_scope() const {
  std::vector<key_value> out;
  for (const auto& [name, value] : args_) {
    if (value && env_value(name) == nullptr) out.push_back({name, *value});
  }
  std::sort(out.begin(), out.end(),
            [](const key_value& a, const key_value& b) { return a.key < b.key; });
  return out;
}

result<resolved_step> stage_scope::resolve(const instruction& in) {
  const containerfile& file = build_->file();
  auto fail = [&](const std::string& message) {
    return error(errc::invalid_argument, file.file + ":" + std::to_string(in.line) + ": " +
                                             std::string(in.keyword()) + ": " + message);
  };
  const variable_lookup lookup = [this](std::string_view name) { return this->lookup(name); };
  std::set<std::string> used;
  auto sub = [&](const std::string& word) -> result<std::string> {
    auto e = expand(word, lookup, file.escape);
    if (!e) return fail(e.error().message);
    used.insert(e->used.begin(), e->used.end());
    return std::move(e->text);
  };
  // The ARGs among `used`, with their values, before the instruction changes anything.
  auto args_used = [&] {
    std::vector<key_value> out;
    for (const auto& name : used) {
      if (env_value(name) != nullptr) continue;
      if (const std::string* v = arg_value(name)) out.push_back({name, *v});
    }
    return out;
  };
  auto sub_nonempty = [&](const std::string& word, std::string_view what) -> result<std::string> {
    auto v = sub(word);
    if (!v) return v;
    if (v->empty()) {
      return fail(std::string(what) + " " + quote(word) + " is empty after substitution");
    }
    return v;
  };
  // --chown and --chmod of COPY and ADD.
  auto owner_and_mode = [&](std::string& chown, std::string& chmod) -> result<void> {
    auto c = sub(chown);
    if (!c) return c.error();
    const auto colon = c->find(':');
    if (!c->empty() && (colon == 0 || colon + 1 == c->size() ||
                        (colon != std::string::npos && c->find(':', colon + 1) != c->npos))) {
      return fail("--chown=" + *c + " is not USER or USER:GROUP (names or numeric ids)");
    }
    chown = std::move(*c);
    auto m = sub(chmod);
    if (!m) return m.error();
    if (!m->empty()) {
      const auto mode = normalize_chmod(*m);
      if (!mode) {
        return fail("--chmod=" + *m +
                    " is not an octal mode from 0 to 7777 (symbolic modes such as u+x are not "
                    "supported)");
      }
      chmod = *mode;
    } else {
      chmod.clear();
    }
    return {};
  };
  auto paths = [&](std::vector<std::string>& sources, std::string& destination) -> result<void> {
    for (auto& s : sources) {
      auto v = sub_nonempty(s, "the source");
      if (!v) return v.error();
      s = std::move(*v);
    }
    auto d = sub_nonempty(destination, "the destination");
    if (!d) return d.error();
    destination = std::move(*d);
    return {};
  };

  resolved_step out{in, {}};
  instruction_body& body = out.step.body;
  if (std::holds_alternative<run_instruction>(body)) {
    out.build_args_used = args_in_scope();
    return out;
  }
  if (auto* copy = std::get_if<copy_instruction>(&body)) {
    if (auto r = owner_and_mode(copy->chown, copy->chmod); !r) return r.error();
    if (auto r = paths(copy->sources, copy->destination); !r) return r.error();
  } else if (auto* add = std::get_if<add_instruction>(&body)) {
    if (auto r = owner_and_mode(add->chown, add->chmod); !r) return r.error();
    if (auto r = paths(add->sources, add->destination); !r) return r.error();
    for (const auto& s : add->sources) {
      if (detail::is_remote_source(s)) return fail(detail::remote_source_refusal(s));
    }
  } else if (auto* env = std::get_if<env_instruction>(&body)) {
    for (auto& kv : env->variables) {
      auto k = sub_nonempty(kv.key, "the name");
      if (!k) return k.error();
      if (k->find('=') != std::string::npos) {
        return fail("the name " + quote(*k) + " holds '='");
      }
      auto v = sub(kv.value);
      if (!v) return v.error();
      kv = {std::move(*k), std::move(*v)};
    }
    out.build_args_used = args_used();
    for (const auto& kv : env->variables)
      set_env(env_, kv.key, kv.value);
    if (environment_size() > kMaxEnvironment) return fail("the environment exceeds 1 MiB");
    return out;
  } else if (auto* arg = std::get_if<arg_instruction>(&body)) {
    const auto& build_args = build_->options().build_args;
    for (auto& decl : arg->args) {
      std::optional<std::string> value;
      if (auto b = build_args.find(decl.name); b != build_args.end()) {
        value = b->second;
      } else if (decl.value) {
        auto v = sub(*decl.value);
        if (!v) return v.error();
        value = std::move(*v);
      } else if (const std::string* g = build_->global(decl.name)) {
        value = *g;
      }
      declare(decl.name, std::move(value));
      const std::string* now = arg_value(decl.name);
      decl.value = now != nullptr ? std::optional<std::string>(*now) : std::nullopt;
    }
    if (environment_size() > kMaxEnvironment) return fail("the environment exceeds 1 MiB");
    return out;
  } else if (auto* label = std::get_if<label_instruction>(&body)) {
    for (auto& kv : label->labels) {
      auto k = sub_nonempty(kv.key, "the name");
      if (!k) return k.error();
      auto v = sub(kv.value);
      if (!v) return v.error();
      kv = {std::move(*k), std::move(*v)};
    }
  } else if (auto* workdir = std::get_if<workdir_instruction>(&body)) {
    auto v = sub_nonempty(workdir->path, "the path");
    if (!v) return v.error();
    workdir->path = std::move(*v);
  } else if (auto* user = std::get_if<user_instruction>(&body)) {
    auto v = sub_nonempty(user->user, "the user");
    if (!v) return v.error();
    user->user = std::move(*v);
  } else if (auto* expose = std::get_if<expose_instruction>(&body)) {
    std::vector<std::string> ports;
    for (const auto& word : expose->ports) {
      auto e = expand(word, lookup, file.escape);
      if (!e) return fail(e.error().message);
      used.insert(e->used.begin(), e->used.end());
      for (const auto& w : e->words) {
        auto p = parse_ports(w);
        if (!p) return fail(p.error().message);
        ports.insert(ports.end(), p->begin(), p->end());
      }
    }
    expose->ports = std::move(ports);
  } else if (auto* volume = std::get_if<volume_instruction>(&body)) {
    for (auto& p : volume->paths) {
      auto v = sub_nonempty(p, "the path");
      if (!v) return v.error();
      p = std::move(*v);
    }
  } else if (auto* signal = std::get_if<stopsignal_instruction>(&body)) {
    auto v = sub(signal->signal);
    if (!v) return v.error();
    if (!is_signal(*v)) {
      return fail(quote(*v) + " is not a signal: use a name such as SIGTERM or a number 1-64");
    }
    signal->signal = std::move(*v);
  }
  // MAINTAINER, ENTRYPOINT, CMD, SHELL and HEALTHCHECK are never substituted.
  out.build_args_used = args_used();
  return out;
}

}  // namespace pantry::orchestrator::builder
