#include "pantry/orchestrator/builder/image_config.h"

#include "lexical.h"
#include "pantry/orchestrator/runner/bundle.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <ctime>
#include <type_traits>
#include <utility>
#include <variant>

namespace pantry::orchestrator::builder {
namespace {

namespace json = boost::json;
using detail::quote;

constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";

// ---- canonical JSON -----------------------------------------------------------------------------

// Object members sorted by key at every level, so that the bytes depend on the values only, never
// on the order in which the code happened to insert them.
void write_canonical(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      const json::object& o = v.get_object();
      std::vector<const json::key_value_pair*> members;
      members.reserve(o.size());
      for (const auto& kv : o)
        members.push_back(&kv);
      std::sort(members.begin(), members.end(),
                [](const auto* a, const auto* b) { return a->key() < b->key(); });
      out += '{';
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i > 0) out += ',';
        out += json::serialize(json::value(members[i]->key()));
        out += ':';
        write_canonical(members[i]->value(), out);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write_canonical(e, out);
      }
      out += ']';
      return;
    }
    default:
      out += json::serialize(v);
      return;
  }
}

std::string canonical(const json::value& v) {
  std::string out;
  write_canonical(v, out);
  return out;
}

// Strings go out as UTF-8, bad bytes as U+FFFD, as Go's encoder writes them.
json::string utf8(std::string_view s) {
  return json::string(detail::coerce_utf8(s));
}

json::array strings(const std::vector<std::string>& v) {
  json::array out;
  for (const auto& s : v)
    out.emplace_back(utf8(s));
  return out;
}

json::object set_of(const std::set<std::string>& keys) {
  json::object out;
  for (const auto& k : keys)
    out[utf8(k)] = json::object();
  return out;
}

// ---- reading ------------------------------------------------------------------------------------

error bad_member(std::string_view where, std::string_view expected) {
  return error(errc::invalid_argument,
               "image config: " + std::string(where) + ": expected " + std::string(expected));
}

// The member `key` of `o`, or nullptr when it is absent or null (Go leaves the field as it is).
const json::value* member(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::string& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return bad_member(where, "a string");
  out = detail::coerce_utf8(v->get_string());
  return std::nullopt;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          bool& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_bool()) return bad_member(where, "true or false");
  out = v->get_bool();
  return std::nullopt;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::int64_t& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) {
    out = v->get_int64();
  } else if (v->is_uint64() && v->get_uint64() <= std::uint64_t(INT64_MAX)) {
    out = static_cast<std::int64_t>(v->get_uint64());
  } else {
    return bad_member(where, "an integer");
  }
  return std::nullopt;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::chrono::nanoseconds& out) {
  std::int64_t n = 0;
  if (auto e = read(o, key, where, n)) return e;
  out = std::chrono::nanoseconds(n);
  return std::nullopt;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::vector<std::string>& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) return bad_member(where, "an array of strings");
  out.clear();
  for (const auto& e : v->get_array()) {
    if (!e.is_string()) return bad_member(where, "an array of strings");
    out.push_back(detail::coerce_utf8(e.get_string()));
  }
  return std::nullopt;
}

// ExposedPorts and Volumes: objects whose keys are the values (each value is {}).
std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::set<std::string>& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return bad_member(where, "an object");
  out.clear();
  for (const auto& kv : v->get_object())
    out.insert(detail::coerce_utf8(kv.key()));
  return std::nullopt;
}

std::optional<error> read(const json::object& o, std::string_view key, std::string_view where,
                          std::map<std::string, std::string>& out) {
  const json::value* v = member(o, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) return bad_member(where, "an object of strings");
  out.clear();
  for (const auto& kv : v->get_object()) {
    if (kv.value().is_null()) continue;
    if (!kv.value().is_string()) return bad_member(where, "an object of strings");
    out[detail::coerce_utf8(kv.key())] = detail::coerce_utf8(kv.value().get_string());
  }
  return std::nullopt;
}

// The object member `key`: nullptr when it is absent or null.
result<const json::object*> object_member(const json::object& o, std::string_view key,
                                          std::string_view where) {
  const json::value* v = member(o, key);
  if (v == nullptr) return nullptr;
  if (!v->is_object()) return bad_member(where, "an object");
  return &v->get_object();
}

std::optional<error> read_container_config(const json::object& c, oci_image_config& out) {
  // Each member is read in turn (a braced list is evaluated left to right); the first error is
  // the one reported.
  for (auto e :
       {read(c, "User", "config.User", out.user),
        read(c, "ExposedPorts", "config.ExposedPorts", out.exposed_ports),
        read(c, "Env", "config.Env", out.env),
        read(c, "Entrypoint", "config.Entrypoint", out.entrypoint),
        read(c, "Cmd", "config.Cmd", out.cmd), read(c, "Volumes", "config.Volumes", out.volumes),
        read(c, "WorkingDir", "config.WorkingDir", out.working_dir),
        read(c, "Labels", "config.Labels", out.labels),
        read(c, "StopSignal", "config.StopSignal", out.stop_signal),
        read(c, "ArgsEscaped", "config.ArgsEscaped", out.args_escaped),
        read(c, "OnBuild", "config.OnBuild", out.on_build),
        read(c, "Shell", "config.Shell", out.shell)}) {
    if (e) return e;
  }
  auto h = object_member(c, "Healthcheck", "config.Healthcheck");
  if (!h) return h.error();
  if (*h != nullptr) {
    const json::object& check = **h;
    health_check hc;
    for (auto e :
         {read(check, "Test", "config.Healthcheck.Test", hc.test),
          read(check, "Interval", "config.Healthcheck.Interval", hc.interval),
          read(check, "Timeout", "config.Healthcheck.Timeout", hc.timeout),
          read(check, "StartPeriod", "config.Healthcheck.StartPeriod", hc.start_period),
          read(check, "StartInterval", "config.Healthcheck.StartInterval", hc.start_interval),
          read(check, "Retries", "config.Healthcheck.Retries", hc.retries)}) {
      if (e) return e;
    }
    out.healthcheck = std::move(hc);
  }
  return std::nullopt;
}

std::optional<error> read_rootfs(const json::object& r, oci_image_config& out) {
  std::string type;
  if (auto e = read(r, "type", "rootfs.type", type)) return e;
  if (!type.empty() && type != "layers") return bad_member("rootfs.type", "\"layers\"");
  std::vector<std::string> ids;
  if (auto e = read(r, "diff_ids", "rootfs.diff_ids", ids)) return e;
  out.diff_ids.clear();
  for (const auto& id : ids) {
    auto d = cache::digest::parse(id);
    if (!d) {
      return error(errc::invalid_argument, "image config: rootfs.diff_ids: " + d.error().message);
    }
    out.diff_ids.push_back(*d);
  }
  return std::nullopt;
}

std::optional<error> read_history(const json::value& h, oci_image_config& out) {
  if (!h.is_array()) return bad_member("history", "an array");
  for (const auto& item : h.get_array()) {
    if (!item.is_object()) return bad_member("history", "an array of objects");
    const json::object& o = item.get_object();
    history_entry entry;
    for (auto e : {read(o, "created", "history.created", entry.created),
                   read(o, "created_by", "history.created_by", entry.created_by),
                   read(o, "author", "history.author", entry.author),
                   read(o, "comment", "history.comment", entry.comment),
                   read(o, "empty_layer", "history.empty_layer", entry.empty_layer)}) {
      if (e) return e;
    }
    out.history.push_back(std::move(entry));
  }
  return std::nullopt;
}

// ---- writing ------------------------------------------------------------------------------------

json::object container_config(const oci_image_config& c) {
  json::object o;
  if (!c.user.empty()) o["User"] = utf8(c.user);
  if (!c.exposed_ports.empty()) o["ExposedPorts"] = set_of(c.exposed_ports);
  if (!c.env.empty()) o["Env"] = strings(c.env);
  if (!c.entrypoint.empty()) o["Entrypoint"] = strings(c.entrypoint);
  if (!c.cmd.empty()) o["Cmd"] = strings(c.cmd);
  if (!c.volumes.empty()) o["Volumes"] = set_of(c.volumes);
  if (!c.working_dir.empty()) o["WorkingDir"] = utf8(c.working_dir);
  if (!c.labels.empty()) {
    json::object labels;
    for (const auto& [k, v] : c.labels)
      labels[utf8(k)] = utf8(v);
    o["Labels"] = std::move(labels);
  }
  if (!c.stop_signal.empty()) o["StopSignal"] = utf8(c.stop_signal);
  if (c.args_escaped) o["ArgsEscaped"] = true;
  if (c.healthcheck) {
    const health_check& h = *c.healthcheck;
    json::object hc;
    if (!h.test.empty()) hc["Test"] = strings(h.test);
    if (h.interval.count() != 0) hc["Interval"] = h.interval.count();
    if (h.timeout.count() != 0) hc["Timeout"] = h.timeout.count();
    if (h.start_period.count() != 0) hc["StartPeriod"] = h.start_period.count();
    if (h.start_interval.count() != 0) hc["StartInterval"] = h.start_interval.count();
    if (h.retries != 0) hc["Retries"] = h.retries;
    o["Healthcheck"] = std::move(hc);
  }
  if (!c.on_build.empty()) o["OnBuild"] = strings(c.on_build);
  if (!c.shell.empty()) o["Shell"] = strings(c.shell);
  return o;
}

json::object descriptor_json(const descriptor& d) {
  return {{"mediaType", utf8(d.media_type)}, {"digest", d.digest.str()}, {"size", d.size}};
}

// ---- docker's text forms ------------------------------------------------------------------------

// Go's strconv.Quote (what `%q` writes), except that non-ASCII characters other than the C1
// controls and the soft hyphen are kept as they are (Go also escapes the rarer unprintable ones).
std::string go_quote(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    const detail::rune r = detail::decode_rune(s, i);
    const char32_t c = r.value;
    if (c == detail::kReplacementChar && r.length == 1) {
      const auto b = static_cast<unsigned char>(s[i]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else if (c < 0x80) {
      // Go's short escapes for the control characters that have one, \xHH for the others.
      constexpr std::string_view kControls = "\a\b\f\n\r\t\v", kLetters = "abfnrtv";
      const std::size_t k = kControls.find(static_cast<char>(c));
      if (k != std::string_view::npos) {
        out += '\\';
        out += kLetters[k];
      } else {
        out += "\\x";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      }
    } else if (c < 0xA0 || c == 0xAD) {
      out += "\\u00";
      out += kHex[(c >> 4) & 0xF];
      out += kHex[c & 0xF];
    } else {
      out.append(s.substr(i, r.length));
    }
    i += r.length;
  }
  return out + "\"";
}

// Go's `%q` of a []string: ["a" "b"].
std::string go_quote_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i > 0 ? " " : "") + go_quote(v[i]);
  return out + "]";
}

// Go's `%v` of a []string: [a b].
std::string go_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i > 0 ? " " : "") + v[i];
  return out + "]";
}

// The fraction digits of v / 10^precision, trailing zeros dropped, with the point; "" for none.
std::string fraction(std::uint64_t v, int precision) {
  std::string digits(static_cast<std::size_t>(precision), '0');
  for (int i = precision; i-- > 0; v /= 10)
    digits[static_cast<std::size_t>(i)] = static_cast<char>('0' + v % 10);
  while (!digits.empty() && digits.back() == '0')
    digits.pop_back();
  return digits.empty() ? "" : "." + digits;
}

// Go's time.Duration.String(): "0s", "1.5ms", "30s", "1m30s", "1h0m0s".
std::string go_duration(std::chrono::nanoseconds d) {
  const std::int64_t n = d.count();
  std::uint64_t u = n < 0 ? 0 - static_cast<std::uint64_t>(n) : static_cast<std::uint64_t>(n);
  std::string out = n < 0 ? "-" : "";
  if (u == 0) return "0s";
  if (u < 1'000'000'000) {
    if (u < 1'000) return out + std::to_string(u) + "ns";
    if (u < 1'000'000) return out + std::to_string(u / 1'000) + fraction(u % 1'000, 3) + "µs";
    return out + std::to_string(u / 1'000'000) + fraction(u % 1'000'000, 6) + "ms";
  }
  const std::string seconds_fraction = fraction(u % 1'000'000'000, 9);
  u /= 1'000'000'000;
  const std::uint64_t hours = u / 3600, minutes = u / 60 % 60, seconds = u % 60;
  if (hours > 0) out += std::to_string(hours) + "h";
  if (hours > 0 || minutes > 0) out += std::to_string(minutes) + "m";
  return out + std::to_string(seconds) + seconds_fraction + "s";
}

// BuildKit's `%+v` of a HealthcheckConfig.
std::string go_health_check(const health_check& h) {
  return "{Test:" + go_list(h.test) + " Interval:" + go_duration(h.interval) +
         " Timeout:" + go_duration(h.timeout) + " StartPeriod:" + go_duration(h.start_period) +
         " StartInterval:" + go_duration(h.start_interval) +
         " Retries:" + std::to_string(h.retries) + "}";
}

// ---- applying steps -----------------------------------------------------------------------------

std::string_view env_name(std::string_view entry) {
  return entry.substr(0, entry.find('='));
}

bool has_env(const std::vector<std::string>& env, std::string_view name) {
  return std::any_of(env.begin(), env.end(),
                     [&](const std::string& e) { return env_name(e) == name; });
}

// docker's addEnv: in place when the name is there, else at the end.
void set_env(std::vector<std::string>& env, const std::string& name, const std::string& value) {
  for (auto& e : env) {
    if (env_name(e) == name) {
      e = name + "=" + value;
      return;
    }
  }
  env.push_back(name + "=" + value);
}

// An absolute path with "." and ".." resolved and no empty components, as Go's path.Clean makes
// it ("/" for nothing left).
std::string clean_absolute(std::string_view path) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0; start <= path.size();) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    const std::string_view part = path.substr(start, slash - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = slash + 1;
  }
  std::string out;
  for (const auto& part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

const std::vector<std::string>& shell_of(const oci_image_config& c) {
  return c.shell.empty() ? kDefaultShell : c.shell;
}

// The argv of a command line: exec form as written; shell form the shell + the text.
std::vector<std::string> argv_of(const oci_image_config& c, const command_line& command) {
  if (command.exec_form) return command.args;
  std::vector<std::string> argv = shell_of(c);
  std::string text;
  for (std::size_t i = 0; i < command.args.size(); ++i)
    text += (i > 0 ? " " : "") + command.args[i];
  argv.push_back(std::move(text));
  return argv;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i > 0 ? " " : "") + v[i];
  return out;
}

template <class Copy>
std::string copy_history(std::string_view keyword, const Copy& c) {
  std::string out(keyword);
  if (!c.chown.empty()) out += " --chown=" + c.chown;
  if (!c.chmod.empty()) out += " --chmod=" + c.chmod;
  for (const auto& s : c.sources)
    out += " " + s;
  return out + " " + c.destination;
}

// Applies one instruction to `c`; returns its history text (BuildKit's created_by).
std::string apply_body(oci_image_config& c, bool& cmd_set, const resolved_step& step) {
  return std::visit(
      [&](const auto& body) -> std::string {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, run_instruction>) {
          // BuildKit's runCommandString: "|N K=V …" before the argv when build args are in use.
          std::string out = "RUN ";
          if (!step.build_args_used.empty()) {
            out += "|" + std::to_string(step.build_args_used.size()) + " ";
            for (const auto& kv : step.build_args_used)
              out += kv.key + "=" + kv.value + " ";
          }
          return out + join(argv_of(c, body.command));
        } else if constexpr (std::is_same_v<T, copy_instruction>) {
          return copy_history("COPY", body);
        } else if constexpr (std::is_same_v<T, add_instruction>) {
          return copy_history("ADD", body);
        } else if constexpr (std::is_same_v<T, env_instruction>) {
          std::string out = "ENV";
          for (const auto& kv : body.variables) {
            set_env(c.env, kv.key, kv.value);
            out += " " + kv.key + "=" + kv.value;
          }
          return out;
        } else if constexpr (std::is_same_v<T, arg_instruction>) {
          std::string out = "ARG";
          for (const auto& a : body.args)
            out += " " + a.name + (a.value ? "=" + *a.value : "");
          return out;
        } else if constexpr (std::is_same_v<T, label_instruction>) {
          std::string out = "LABEL";
          for (const auto& kv : body.labels) {
            c.labels[kv.key] = kv.value;
            out += " " + kv.key + "=" + kv.value;
          }
          return out;
        } else if constexpr (std::is_same_v<T, workdir_instruction>) {
          c.working_dir = clean_absolute(
              body.path.starts_with('/') ? body.path : c.working_dir + "/" + body.path);
          return "WORKDIR " + c.working_dir;
        } else if constexpr (std::is_same_v<T, user_instruction>) {
          c.user = body.user;
          return "USER " + body.user;
        } else if constexpr (std::is_same_v<T, maintainer_instruction>) {
          c.author = body.maintainer;
          return "MAINTAINER " + body.maintainer;
        } else if constexpr (std::is_same_v<T, entrypoint_instruction>) {
          c.entrypoint = argv_of(c, body.command);
          if (!cmd_set) c.cmd.clear();
          return "ENTRYPOINT " + go_quote_list(c.entrypoint);
        } else if constexpr (std::is_same_v<T, cmd_instruction>) {
          c.cmd = argv_of(c, body.command);
          c.args_escaped = true;
          cmd_set = true;
          return "CMD " + go_quote_list(c.cmd);
        } else if constexpr (std::is_same_v<T, expose_instruction>) {
          c.exposed_ports.insert(body.ports.begin(), body.ports.end());
          return "EXPOSE " + go_list(body.ports);
        } else if constexpr (std::is_same_v<T, shell_instruction>) {
          c.shell = body.shell;
          return "SHELL " + go_list(body.shell);
        } else if constexpr (std::is_same_v<T, volume_instruction>) {
          c.volumes.insert(body.paths.begin(), body.paths.end());
          return "VOLUME " + go_list(body.paths);
        } else if constexpr (std::is_same_v<T, stopsignal_instruction>) {
          c.stop_signal = body.signal;
          return "STOPSIGNAL " + body.signal;
        } else if constexpr (std::is_same_v<T, healthcheck_instruction>) {
          health_check h;
          if (body.none) {
            h.test = {"NONE"};
          } else {
            h.test = {body.test.exec_form ? "CMD" : "CMD-SHELL"};
            if (body.test.exec_form) {
              h.test.insert(h.test.end(), body.test.args.begin(), body.test.args.end());
            } else {
              h.test.push_back(join(body.test.args));
            }
            h.interval = body.interval;
            h.timeout = body.timeout;
            h.start_period = body.start_period;
            h.start_interval = body.start_interval;
            h.retries = body.retries;
          }
          c.healthcheck = h;
          return "HEALTHCHECK " + go_health_check(h);
        } else {
          static_assert(!sizeof(T), "every instruction must be applied");
        }
      },
      step.step.body);
}

}  // namespace

std::string_view layer_media_type(layer_compression compression) noexcept {
  switch (compression) {
    case layer_compression::none:
      return kOciLayerTar;
    case layer_compression::gzip:
      return kOciLayerGzip;
    case layer_compression::zstd:
      return kOciLayerZstd;
  }
  return kOciLayerTar;
}

result<std::string> oci_layer_media_type(std::string_view media_type) {
  if (media_type == kOciLayerTar || media_type == kOciLayerGzip || media_type == kOciLayerZstd) {
    return std::string(media_type);
  }
  if (media_type == "application/vnd.docker.image.rootfs.diff.tar") {
    return std::string(kOciLayerTar);
  }
  if (media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip") {
    return std::string(kOciLayerGzip);
  }
  if (media_type == "application/vnd.docker.image.rootfs.diff.tar.zstd") {
    return std::string(kOciLayerZstd);
  }
  return error(errc::invalid_argument,
               "layer media type " + quote(media_type) +
                   " is not one pantry builds on: only OCI and docker tar layers (plain, gzip or "
                   "zstd); foreign and non-distributable layers cannot be pushed");
}

result<oci_image_config> parse_image_config(std::string_view text) {
  json::parse_options options;
  options.allow_invalid_utf8 = true;  // Go's decoder takes them (as U+FFFD)
  boost::system::error_code ec;
  const json::value doc = json::parse(text, ec, {}, options);
  if (ec) return error(errc::invalid_argument, "image config: not JSON: " + ec.message());
  if (!doc.is_object()) return bad_member("the document", "an object");
  const json::object& top = doc.get_object();

  oci_image_config out;
  for (auto e :
       {read(top, "created", "created", out.created), read(top, "author", "author", out.author),
        read(top, "architecture", "architecture", out.architecture), read(top, "os", "os", out.os),
        read(top, "os.version", "os.version", out.os_version),
        read(top, "os.features", "os.features", out.os_features),
        read(top, "variant", "variant", out.variant)}) {
    if (e) return *e;
  }
  auto config = object_member(top, "config", "config");
  if (!config) return config.error();
  if (*config != nullptr) {
    if (auto e = read_container_config(**config, out)) return *e;
  }
  auto rootfs = object_member(top, "rootfs", "rootfs");
  if (!rootfs) return rootfs.error();
  if (*rootfs != nullptr) {
    if (auto e = read_rootfs(**rootfs, out)) return *e;
  }
  if (const json::value* h = member(top, "history")) {
    if (auto e = read_history(*h, out)) return *e;
  }
  return out;
}

std::string serialize(const oci_image_config& c) {
  json::object o;
  if (!c.created.empty()) o["created"] = utf8(c.created);
  if (!c.author.empty()) o["author"] = utf8(c.author);
  o["architecture"] = utf8(c.architecture);
  o["os"] = utf8(c.os);
  if (!c.os_version.empty()) o["os.version"] = utf8(c.os_version);
  if (!c.os_features.empty()) o["os.features"] = strings(c.os_features);
  if (!c.variant.empty()) o["variant"] = utf8(c.variant);
  o["config"] = container_config(c);
  json::array ids;
  for (const auto& id : c.diff_ids)
    ids.emplace_back(id.str());
  o["rootfs"] = json::object{{"type", "layers"}, {"diff_ids", std::move(ids)}};
  if (!c.history.empty()) {
    json::array history;
    for (const auto& h : c.history) {
      json::object e;
      if (!h.created.empty()) e["created"] = utf8(h.created);
      if (!h.created_by.empty()) e["created_by"] = utf8(h.created_by);
      if (!h.author.empty()) e["author"] = utf8(h.author);
      if (!h.comment.empty()) e["comment"] = utf8(h.comment);
      if (h.empty_layer) e["empty_layer"] = true;
      history.push_back(std::move(e));
    }
    o["history"] = std::move(history);
  }
  return canonical(o);
}

std::string rfc3339(std::int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

result<std::int64_t> parse_source_date_epoch(std::string_view text) {
  const auto bad = [&] {
    return error(errc::invalid_argument,
                 "SOURCE_DATE_EPOCH " + quote(text) +
                     " is not a time: give whole seconds since 1970-01-01 UTC as decimal digits, "
                     "at most " +
                     std::to_string(kMaxSourceDateEpoch) + " (the end of year 9999)");
  };
  if (text.empty() || text.size() > 12) return bad();
  std::int64_t value = 0;
  for (char c : text) {
    if (!detail::is_digit(c)) return bad();
    value = value * 10 + (c - '0');
  }
  if (value > kMaxSourceDateEpoch) return bad();
  return value;
}

oci_image_config scratch_config(std::string_view architecture, std::string_view variant) {
  oci_image_config c;
  c.architecture = architecture;
  c.os = "linux";
  c.variant = variant;
  c.working_dir = "/";
  c.env = {"PATH=" + std::string(runner::kDefaultPath)};
  return c;
}

result<oci_image_config> base_image_config(oci_image_config base) {
  if (!base.on_build.empty()) {
    return error(errc::invalid_argument,
                 "the base image has " + std::to_string(base.on_build.size()) +
                     " ONBUILD trigger(s), which pantry does not run (the first is " +
                     quote(base.on_build.front()) +
                     "): build on an image without them, or write the triggers into the "
                     "Containerfile");
  }
  base.created.clear();
  if (!has_env(base.env, "PATH")) base.env.push_back("PATH=" + std::string(runner::kDefaultPath));
  if (!base.working_dir.empty()) base.working_dir = clean_absolute(base.working_dir);
  return base;
}

bool makes_layer(const instruction& step) noexcept {
  return std::holds_alternative<run_instruction>(step.body) ||
         std::holds_alternative<copy_instruction>(step.body) ||
         std::holds_alternative<add_instruction>(step.body);
}

stage_image::stage_image(oci_image_config start, std::int64_t source_date_epoch)
    : config_(std::move(start)), created_(rfc3339(source_date_epoch)) {
  config_.created.clear();
}

result<void> stage_image::apply(const resolved_step& step,
                                const std::optional<cache::digest>& layer) {
  const bool layered = makes_layer(step.step);
  if (layered != layer.has_value()) {
    return error(errc::invalid_argument,
                 "image config: line " + std::to_string(step.step.line) + ": " +
                     std::string(step.step.keyword()) +
                     (layered ? ": the step's layer (its diff ID) is missing"
                              : ": only RUN, COPY and ADD write a layer"));
  }
  history_entry entry;
  entry.created = created_;
  entry.created_by = apply_body(config_, cmd_set_, step);
  entry.comment = kHistoryComment;
  entry.empty_layer = !layered;
  config_.history.push_back(std::move(entry));
  if (layer) config_.diff_ids.push_back(*layer);
  return {};
}

oci_image_config stage_image::image() const {
  oci_image_config out = config_;
  out.created = created_;
  return out;
}

result<run_command> run_command_for(const oci_image_config& config, const resolved_step& step,
                                    std::int64_t source_date_epoch) {
  const auto* run = std::get_if<run_instruction>(&step.step.body);
  if (run == nullptr) {
    return error(errc::invalid_argument, "line " + std::to_string(step.step.line) + ": " +
                                             std::string(step.step.keyword()) + " is no RUN step");
  }
  run_command out;
  out.argv = argv_of(config, run->command);
  if (out.argv.empty()) {
    return error(errc::invalid_argument,
                 "line " + std::to_string(step.step.line) + ": RUN: the command is empty");
  }
  out.env = config.env;
  for (const auto& kv : step.build_args_used) {
    if (!has_env(out.env, kv.key)) out.env.push_back(kv.key + "=" + kv.value);
  }
  if (!has_env(out.env, "SOURCE_DATE_EPOCH")) {
    out.env.push_back("SOURCE_DATE_EPOCH=" + std::to_string(source_date_epoch));
  }
  if (!has_env(out.env, "PIP_NO_CACHE_DIR")) out.env.push_back("PIP_NO_CACHE_DIR=1");
  out.working_dir = config.working_dir.empty() ? "/" : config.working_dir;
  out.user = config.user;
  return out;
}

std::string image_manifest(const descriptor& config, const std::vector<descriptor>& layers,
                           const std::map<std::string, std::string>& annotations) {
  json::object o;
  o["schemaVersion"] = 2;
  o["mediaType"] = kImageManifestMediaType;
  o["config"] = descriptor_json(config);
  json::array l;
  for (const auto& d : layers)
    l.push_back(descriptor_json(d));
  o["layers"] = std::move(l);
  if (!annotations.empty()) {
    json::object a;
    for (const auto& [k, v] : annotations)
      a[utf8(k)] = utf8(v);
    o["annotations"] = std::move(a);
  }
  return canonical(o);
}

}  // namespace pantry::orchestrator::builder
