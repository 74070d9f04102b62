#include "pantry/orchestrator/builder/cache_key.h"

#include "lexical.h"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <type_traits>

namespace pantry::orchestrator::builder {
namespace {

// Every field goes in with its length first, so that no two different field lists hash the same
// bytes ("ab","c" and "a","bc").
void put(cache::hasher& h, std::string_view field) {
  std::array<char, 8> size{};
  std::uint64_t n = field.size();
  for (std::size_t i = 8; i-- > 0; n >>= 8)
    size[i] = static_cast<char>(n & 0xFF);
  h.update(std::string_view(size.data(), size.size()));
  h.update(field);
}

void put(cache::hasher& h, std::uint64_t number) {
  put(h, std::to_string(number));
}

boost::json::array strings(const std::vector<std::string>& v) {
  boost::json::array out;
  for (const auto& s : v)
    out.emplace_back(s);
  return out;
}

boost::json::array pairs(const std::vector<key_value>& v) {
  boost::json::array out;
  for (const auto& kv : v)
    out.push_back(boost::json::array{kv.key, kv.value});
  return out;
}

std::string_view form(const command_line& c) {
  return c.exec_form ? "exec" : "shell";
}

std::string from_field(const copy_from& from) {
  switch (from.from) {
    case copy_from::kind::context:
      return "";
    case copy_from::kind::stage:
      return "stage:" + std::to_string(from.stage);
    case copy_from::kind::image:
      return "image:" + from.image.str();
  }
  return "";
}

// An array holding `v` as its one element. Not `return {v};`: when `v` is itself an array, that
// brace list is a copy of `v` under clang (CWG 1467) and a one-element array under gcc, so the
// canonical form, and every cache key, would depend on the compiler.
boost::json::array one(boost::json::value v) {
  boost::json::array out;
  out.push_back(std::move(v));
  return out;
}

boost::json::array fields(const run_instruction& r) {
  return {to_string(r.network), form(r.command), strings(r.command.args)};
}
boost::json::array fields(const copy_instruction& c) {
  return {from_field(c.from), c.chown, c.chmod, strings(c.sources), c.destination};
}
boost::json::array fields(const add_instruction& a) {
  return {a.chown, a.chmod, strings(a.sources), a.destination};
}
boost::json::array fields(const env_instruction& e) {
  return one(pairs(e.variables));
}
boost::json::array fields(const arg_instruction& a) {
  boost::json::array names;
  for (const auto& d : a.args)
    names.emplace_back(d.name);
  return one(names);
}
boost::json::array fields(const label_instruction& l) {
  return one(pairs(l.labels));
}
boost::json::array fields(const workdir_instruction& w) {
  return {w.path};
}
boost::json::array fields(const user_instruction& u) {
  return {u.user};
}
boost::json::array fields(const maintainer_instruction& m) {
  return {m.maintainer};
}
boost::json::array fields(const entrypoint_instruction& e) {
  return {form(e.command), strings(e.command.args)};
}
boost::json::array fields(const cmd_instruction& c) {
  return {form(c.command), strings(c.command.args)};
}
boost::json::array fields(const expose_instruction& e) {
  return one(strings(e.ports));
}
boost::json::array fields(const shell_instruction& s) {
  return one(strings(s.shell));
}
boost::json::array fields(const volume_instruction& v) {
  return one(strings(v.paths));
}
boost::json::array fields(const stopsignal_instruction& s) {
  return {s.signal};
}
boost::json::array fields(const healthcheck_instruction& h) {
  return {h.none,
          form(h.test),
          strings(h.test.args),
          h.interval.count(),
          h.timeout.count(),
          h.start_period.count(),
          h.start_interval.count(),
          h.retries};
}

// A digest that stands for `d` in the role `tag` ("image", "stage sources", …): the tag keeps
// one digest in two roles from giving equal keys.
cache::digest tagged(std::string_view tag, const cache::digest& d) {
  cache::hasher h;
  put(h, kCacheKeyFormat);
  put(h, tag);
  put(h, d.str());
  return h.finish();
}

}  // namespace

cache::digest image_base_key(const cache::digest& manifest) {
  return tagged(std::string_view("image"), manifest);
}

cache::digest scratch_base_key() {
  cache::hasher h;
  put(h, kCacheKeyFormat);
  put(h, "scratch");
  return h.finish();
}

std::string canonical_form(const instruction& step) {
  boost::json::array out;
  out.emplace_back(step.keyword());
  std::visit(
      [&](const auto& body) {
        for (auto& f : fields(body))
          out.push_back(std::move(f));
      },
      step.body);
  return boost::json::serialize(out);
}

result<cache::digest> step_key(const cache::digest& parent, const resolved_step& step,
                               const std::optional<cache::digest>& sources) {
  const bool copies = std::holds_alternative<copy_instruction>(step.step.body) ||
                      std::holds_alternative<add_instruction>(step.step.body);
  if (copies != sources.has_value()) {
    return error(errc::invalid_argument,
                 "cache key of " + std::string(step.step.keyword()) + " at line " +
                     std::to_string(step.step.line) +
                     (copies ? ": the digest of its sources is missing"
                             : ": only COPY and ADD take a digest of sources"));
  }
  cache::hasher h;
  put(h, kCacheKeyFormat);
  put(h, "step");
  put(h, parent.str());
  put(h, canonical_form(step.step));
  std::vector<key_value> args = step.build_args_used;
  std::sort(args.begin(), args.end(),
            [](const key_value& a, const key_value& b) { return a.key < b.key; });
  put(h, args.size());
  for (const auto& kv : args) {
    put(h, kv.key);
    put(h, kv.value);
  }
  put(h, sources ? sources->str() : std::string());
  return h.finish();
}

result<cache::digest> sources_digest(std::vector<source_file> files) {
  std::sort(files.begin(), files.end(),
            [](const source_file& a, const source_file& b) { return a.path < b.path; });
  cache::hasher h;
  put(h, kCacheKeyFormat);
  put(h, "sources");
  put(h, files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    const source_file& f = files[i];
    if (f.path.empty()) {
      return error(errc::invalid_argument, "sources digest: a file has an empty path");
    }
    if (i > 0 && files[i - 1].path == f.path) {
      return error(errc::invalid_argument,
                   "sources digest: " + detail::quote(f.path) + " is listed twice");
    }
    put(h, f.path);
    put(h, static_cast<std::uint64_t>(f.type));
    put(h, f.mode & 07777);
    put(h, f.uid);
    put(h, f.gid);
    switch (f.type) {
      case file_type::regular:
        put(h, f.content.str());
        break;
      case file_type::symlink:
      case file_type::hardlink:
        put(h, f.link_target);
        break;
      case file_type::char_device:
      case file_type::block_device:
        put(h, f.device_major);
        put(h, f.device_minor);
        break;
      case file_type::directory:
      case file_type::fifo:
      case file_type::socket:
        break;
    }
  }
  return h.finish();
}

cache::digest stage_sources_digest(const cache::digest& stage_key) {
  return tagged(std::string_view("stage sources"), stage_key);
}

cache::digest image_sources_digest(const cache::digest& manifest) {
  return tagged(std::string_view("image sources"), manifest);
}

}  // namespace pantry::orchestrator::builder
