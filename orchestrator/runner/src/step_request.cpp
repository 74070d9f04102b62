#include "pantry/orchestrator/runner/step_request.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <initializer_list>

namespace pantry::orchestrator::runner {
namespace {

namespace json = boost::json;

// The kernel's PID_MAX_LIMIT: no pids limit can be higher.
constexpr std::uint64_t kMaxPids = 4194304;
constexpr std::uint64_t kMaxTimeoutMs = std::uint64_t{100} * 365 * 24 * 3600 * 1000;

error invalid(std::string message) {
  return error(errc::invalid_argument, std::move(message));
}

result<std::string> string_member(const json::object& o, std::string_view key,
                                  std::string fallback = {}) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return fallback;
  if (!it->value().is_string()) return invalid(std::string(key) + ": expected a string");
  return std::string(it->value().get_string());
}

result<bool> bool_member(const json::object& o, std::string_view key, bool fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return fallback;
  if (!it->value().is_bool()) return invalid(std::string(key) + ": expected true or false");
  return it->value().get_bool();
}

result<std::optional<std::uint64_t>> uint_member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return std::optional<std::uint64_t>();
  const auto& v = it->value();
  if (v.is_uint64()) return std::optional<std::uint64_t>(v.get_uint64());
  if (v.is_int64() && v.get_int64() >= 0) {
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(v.get_int64()));
  }
  return invalid(std::string(key) + ": expected a number of at least 0, got " + json::serialize(v));
}

result<std::vector<std::string>> strings_member(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return out;
  if (!it->value().is_array()) return invalid(std::string(key) + ": expected an array of strings");
  for (const auto& v : it->value().get_array()) {
    if (!v.is_string()) return invalid(std::string(key) + ": expected an array of strings");
    out.emplace_back(v.get_string());
  }
  return out;
}

json::array to_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v)
    a.emplace_back(s);
  return a;
}

result<void> check_members(const json::object& o, std::initializer_list<std::string_view> known,
                           std::string_view where) {
  for (const auto& kv : o) {
    if (std::find(known.begin(), known.end(), kv.key()) == known.end()) {
      return invalid(std::string(where) + ": unknown member \"" + std::string(kv.key()) +
                     "\" (is pantry older than the client?)");
    }
  }
  return {};
}

// --- the HTTP side

}  // namespace

result<step_request> parse_step_request(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return invalid("step request: not a JSON object" + (ec ? ": " + ec.message() : ""));
  }
  const auto& o = v.get_object();
  if (auto r = check_members(
          o,
          {"image", "allow_unpinned", "argv", "entrypoint", "env", "user", "working_dir", "network",
           "memory", "cpus", "pids_limit", "timeout_ms", "tmpfs_size", "project_dir", "volumes",
           "secrets", "separate_streams", "environment_report"},
          "step request");
      !r) {
    return r.error();
  }
  step_request r;
  auto image = string_member(o, "image");
  if (!image) return image.error();
  if (image->empty()) return invalid("step request: image: missing");
  r.image = *image;
  auto allow = bool_member(o, "allow_unpinned", false);
  if (!allow) return allow.error();
  r.allow_unpinned = *allow;
  auto argv = strings_member(o, "argv");
  if (!argv) return argv.error();
  r.step.argv = *argv;
  if (o.contains("entrypoint") && !o.at("entrypoint").is_null()) {
    auto ep = strings_member(o, "entrypoint");
    if (!ep) return ep.error();
    r.step.entrypoint = *ep;
  }
  auto env = strings_member(o, "env");
  if (!env) return env.error();
  r.step.env = *env;
  for (auto [key, slot] : {std::pair{"user", &r.step.user}, {"working_dir", &r.step.working_dir}}) {
    auto s = string_member(o, key);
    if (!s) return s.error();
    if (!s->empty()) *slot = *s;
  }
  auto network = string_member(o, "network", "isolated");
  if (!network) return network.error();
  auto mode = parse_network_mode(*network);
  if (!mode) return invalid("step request: network: " + mode.error().message);
  r.step.network = *mode;
  auto memory = uint_member(o, "memory");
  if (!memory) return memory.error();
  r.step.memory_bytes = *memory;
  if (auto it = o.find("cpus"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_number()) return invalid("step request: cpus: expected a number");
    const double cpus = it->value().to_number<double>();
    if (!(cpus >= 0.01 && cpus <= 4096)) {
      return invalid("step request: cpus: " + json::serialize(it->value()) +
                     " is not between 0.01 and 4096");
    }
    r.step.cpus = cpus;
  }
  auto pids = uint_member(o, "pids_limit");
  if (!pids) return pids.error();
  if (*pids && **pids > kMaxPids) {
    return invalid("step request: pids_limit: " + std::to_string(**pids) +
                   " is over the kernel's " + std::to_string(kMaxPids));
  }
  if (*pids) r.step.pids_limit = static_cast<std::int64_t>(**pids);
  auto timeout = uint_member(o, "timeout_ms");
  if (!timeout) return timeout.error();
  if (timeout->value_or(0) > kMaxTimeoutMs) {
    return invalid("step request: timeout_ms: " + std::to_string(**timeout) +
                   " is over 100 years; give 0 for no timeout");
  }
  r.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout->value_or(0)));
  auto tmpfs = uint_member(o, "tmpfs_size");
  if (!tmpfs) return tmpfs.error();
  r.tmpfs_size = *tmpfs;
  auto project = string_member(o, "project_dir");
  if (!project) return project.error();
  r.step.project_dir = *project;
  if (auto it = o.find("volumes"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return invalid("step request: volumes: expected an array");
    for (const auto& v : it->value().get_array()) {
      if (!v.is_object()) return invalid("step request: volumes: expected objects");
      const auto& vo = v.get_object();
      if (auto c = check_members(vo, {"source", "destination", "read_only"}, "volume"); !c) {
        return c.error();
      }
      auto src = string_member(vo, "source");
      auto dst = string_member(vo, "destination");
      auto ro = bool_member(vo, "read_only", false);
      if (!src) return src.error();
      if (!dst) return dst.error();
      if (!ro) return ro.error();
      r.step.volumes.push_back(bind_mount{*src, *dst, *ro});
    }
  }
  if (auto it = o.find("secrets"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return invalid("step request: secrets: expected an array");
    for (const auto& v : it->value().get_array()) {
      if (!v.is_object()) return invalid("step request: secrets: expected objects");
      const auto& so = v.get_object();
      if (auto c = check_members(so, {"name", "value"}, "secret"); !c) return c.error();
      auto name = string_member(so, "name");
      auto value = string_member(so, "value");
      if (!name) return name.error();
      if (!value) return value.error();
      r.secrets.push_back(secret_value{*name, *value});
    }
  }
  auto separate = bool_member(o, "separate_streams", false);
  if (!separate) return separate.error();
  r.output = *separate ? output_mode::separate : output_mode::merged;
  auto report = bool_member(o, "environment_report", true);
  if (!report) return report.error();
  r.environment_report = *report;
  return r;
}

json::object to_json(const step_request& r) {
  json::object o;
  o["image"] = r.image;
  if (r.allow_unpinned) o["allow_unpinned"] = true;
  o["argv"] = to_array(r.step.argv);
  if (r.step.entrypoint) o["entrypoint"] = to_array(*r.step.entrypoint);
  if (!r.step.env.empty()) o["env"] = to_array(r.step.env);
  if (r.step.user) o["user"] = *r.step.user;
  if (r.step.working_dir) o["working_dir"] = *r.step.working_dir;
  o["network"] = to_string(r.step.network);
  if (r.step.memory_bytes) o["memory"] = *r.step.memory_bytes;
  if (r.step.cpus) o["cpus"] = *r.step.cpus;
  if (r.step.pids_limit) o["pids_limit"] = *r.step.pids_limit;
  if (r.timeout.count() > 0) o["timeout_ms"] = r.timeout.count();
  if (r.tmpfs_size) o["tmpfs_size"] = *r.tmpfs_size;
  if (!r.step.project_dir.empty()) o["project_dir"] = r.step.project_dir;
  if (!r.step.volumes.empty()) {
    json::array a;
    for (const auto& v : r.step.volumes) {
      a.push_back(json::object{
          {"source", v.source}, {"destination", v.destination}, {"read_only", v.read_only}});
    }
    o["volumes"] = std::move(a);
  }
  if (!r.secrets.empty()) {
    json::array a;
    for (const auto& s : r.secrets)
      a.push_back(json::object{{"name", s.name}, {"value", s.value}});
    o["secrets"] = std::move(a);
  }
  if (r.output == output_mode::separate) o["separate_streams"] = true;
  if (!r.environment_report) o["environment_report"] = false;
  return o;
}

}  // namespace pantry::orchestrator::runner
