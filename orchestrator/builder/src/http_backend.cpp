#include "pantry/orchestrator/builder/http_backend.h"

#include "pantry/cache/digest.h"
#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/runner/image_reference.h"
#include "pantry/orchestrator/runner/images.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;

constexpr std::size_t kMaxLayer = std::size_t{8} << 30;

json::object to_json(const layer_ref& l) {
  return json::object{{"digest", l.digest.str()},
                      {"diff_id", l.diff_id.str()},
                      {"size", l.size},
                      {"media_type", l.media_type}};
}

result<layer_ref> layer_of(const json::value& v) {
  const auto* o = v.if_object();
  if (!o) return error(errc::invalid_argument, "pantry sent a layer that is not an object");
  layer_ref l;
  auto digest = o->if_contains("digest");
  auto diff_id = o->if_contains("diff_id");
  auto size = o->if_contains("size");
  auto media = o->if_contains("media_type");
  if (!digest || !digest->is_string() || !diff_id || !diff_id->is_string() || !size ||
      !size->is_number() || !media || !media->is_string()) {
    return error(errc::invalid_argument,
                 "pantry sent a layer without its digests: " + json::serialize(v));
  }
  auto d = cache::digest::parse(std::string_view(digest->get_string()));
  auto i = cache::digest::parse(std::string_view(diff_id->get_string()));
  if (!d || !i) return error(errc::invalid_argument, "pantry sent a malformed layer digest");
  l.digest = *d;
  l.diff_id = *i;
  l.size = size->to_number<std::uint64_t>();
  l.media_type = std::string(media->get_string());
  return l;
}

// The build's backend over HTTP: blocking calls, each run to its end on the client's private
// io_context.
class http_backend final : public build_backend {
 public:
  http_backend(std::string base_url, std::string token, http_backend_options opt)
      : api_(std::move(base_url), token, client_options(opt)), fresh_(opt.fresh) {
    puller_ = runner::image_puller::create(api_.http_client(), api_.base_url(), "Bearer " + token,
                                           nullptr, api_.executor());
  }
  ~http_backend() override {
    puller_.reset();  // before the client and its context
  }

  result<base_image> resolve_base(const image_reference& ref, bool allow_unpinned) override {
    auto r = api_.run(puller_->resolve(ref, allow_unpinned));
    if (!r) return r.error();
    base_image b;
    b.pinned_reference = r->repository + "@" + r->manifest_digest.str();
    b.manifest_digest = r->manifest_digest;
    b.config_json = r->config_json;
    for (const auto& l : r->layers) {
      b.layers.push_back({l.digest, l.diff_id, l.size, l.media_type});
      base_of_.emplace(l.digest.str(), b.pinned_reference);
    }
    bases_[b.pinned_reference] = b.layers;
    return b;
  }

  result<std::optional<layer_ref>> lookup(const cache::digest& key) override {
    auto r = api_.call(http::verb::get, "/api/v1/build/cache/" + hex(key));
    if (!r) return r.error();
    if (r->status == 404) return std::optional<layer_ref>();
    if (r->status != 200) return failed("build cache lookup", *r);
    boost::system::error_code ec;
    auto v = json::parse(r->body, ec);
    if (ec) return error(errc::invalid_argument, "pantry's build cache answered no JSON");
    auto l = layer_of(v);
    if (!l) return l.error();
    return std::optional<layer_ref>(std::move(*l));
  }

  result<layer_ref> store_layer(const cache::digest& key, const fs::path& file,
                                const layer_info& info) override {
    http::fields h;
    h.set("X-Pantry-Layer-Digest", info.digest.str());
    h.set("X-Pantry-Layer-Diff-Id", info.diff_id.str());
    auto r = api_.put_file(http::verb::post, "/api/v1/build/cache/" + hex(key), file,
                           info.media_type, h);
    if (!r) return r.error();
    if (r->status != 201) return failed("storing a layer", *r);
    boost::system::error_code ec;
    auto v = json::parse(r->body, ec);
    if (ec) return error(errc::invalid_argument, "pantry's build cache answered no JSON");
    return layer_of(v);
  }

  result<layer_ref> run(const run_request& request,
                        const std::function<void(std::string_view)>& output) override {
    auto split = split_base(request.layers);
    json::object step{{"image", split.base.empty() ? "scratch" : split.base},
                      {"argv", strings(request.command.argv)},
                      {"env", strings(request.command.env)},
                      {"network", std::string(runner::to_string(request.network))}};
    if (!request.command.user.empty()) step["user"] = request.command.user;
    if (!request.command.working_dir.empty()) step["working_dir"] = request.command.working_dir;
    json::array layers;
    for (const auto& l : split.built)
      layers.push_back(to_json(l));
    json::object body{
        {"key", hex(request.key)},
        {"base", split.base},
        {"layers", std::move(layers)},
        {"step", std::move(step)},
        {"source_date_epoch", request.source_date_epoch},
        {"fresh", fresh_},
        {"compression", request.compression == layer_compression::zstd ? "zstd" : "gzip"}};
    auto done = run_step(json::serialize(body), output);
    if (!done) return done.error();
    const json::object& r = *done;
    if (auto l = r.if_contains("layer")) return layer_of(*l);
    return error(errc::invalid_argument, describe_failure(request.command.argv, r));
  }

  result<void> materialize(const std::vector<layer_ref>& layers, const fs::path& dir,
                           const std::vector<std::string>& paths) override {
    auto split = split_base(layers);
    json::array built;
    for (const auto& l : split.built)
      built.push_back(to_json(l));
    json::array want;
    for (const auto& p : paths)
      want.emplace_back(p);
    json::object body{{"base", split.base},
                      {"layers", std::move(built)},
                      {"dir", fs::absolute(dir).string()},
                      {"paths", std::move(want)}};
    auto r = api_.call(http::verb::post, "/api/v1/build/materialize", json::serialize(body));
    if (!r) return r.error();
    if (r->status != 200) return failed("reading a stage's files", *r);
    return {};
  }

  result<cache::digest> push_image(const std::string& tag, const std::string& config_json,
                                   const std::string& manifest_json,
                                   const std::vector<layer_ref>& layers) override {
    auto ref = runner::parse_image_reference(tag);
    if (!ref) return error(errc::invalid_argument, "-t " + tag + ": " + ref.error().message);
    if (!ref->digest.empty()) {
      return error(
          errc::invalid_argument,
          "-t " + tag + ": name the image by NAME:TAG; its digest is what the build makes");
    }
    const std::string& repo = ref->name;
    const std::string name_tag = ref->tag.empty() ? "latest" : ref->tag;
    for (const auto& l : layers) {
      if (auto r = push_blob(repo, l.digest, {}); !r) return r.error();
    }
    auto config_digest = cache::digest::of(std::as_bytes(std::span(config_json)));
    if (auto r = push_blob(repo, config_digest, config_json); !r) return r.error();
    http::fields h;
    h.set(http::field::content_type, kImageManifestMediaType);
    auto r = api_.call(http::verb::put, "/v2/" + repo + "/manifests/" + name_tag, manifest_json, h);
    if (!r) return r.error();
    if (r->status != 201) return failed("pushing the manifest of " + tag, *r);
    // The registry's word for what it stored (the builder checks it against the manifest).
    auto stored = r->headers.find("Docker-Content-Digest");
    if (stored == r->headers.end()) {
      return error(errc::invalid_argument,
                   "pushing the manifest of " + tag + ": pantry's answer names no digest");
    }
    auto digest = cache::digest::parse(std::string_view(stored->value()));
    if (!digest) {
      return error(errc::invalid_argument, "pushing the manifest of " + tag +
                                               ": pantry answered the digest \"" +
                                               std::string(stored->value()) + "\"");
    }
    return *digest;
  }

 private:
  struct base_split {
    std::string base;              // NAME@sha256:… or ""
    std::vector<layer_ref> built;  // the layers after the base's
  };

  // The layers of a stage are a base image's (all of them, first) and then built ones.
  base_split split_base(const std::vector<layer_ref>& layers) const {
    base_split out;
    if (!layers.empty()) {
      auto it = base_of_.find(layers.front().digest.str());
      if (it != base_of_.end()) {
        const auto& base_layers = bases_.at(it->second);
        if (layers.size() >= base_layers.size() &&
            std::equal(base_layers.begin(), base_layers.end(), layers.begin())) {
          out.base = it->second;
          out.built.assign(layers.begin() + static_cast<std::ptrdiff_t>(base_layers.size()),
                           layers.end());
          return out;
        }
      }
    }
    out.built = layers;
    return out;
  }

  // Makes blob `d` part of `repo`: already there, mounted from the base image it came from, or
  // uploaded (`bytes`, else the build cache's copy).
  result<void> push_blob(const std::string& repo, const cache::digest& d, std::string bytes) {
    auto head = api_.call(http::verb::head, "/v2/" + repo + "/blobs/" + d.str());
    if (!head) return head.error();
    if (head->status == 200) return {};
    if (auto base = base_of_.find(d.str()); base != base_of_.end()) {
      const std::string from = base->second.substr(0, base->second.find('@'));
      auto m = api_.call(http::verb::post,
                         "/v2/" + repo + "/blobs/uploads/?mount=" + d.str() + "&from=" + from);
      if (!m) return m.error();
      if (m->status == 201) return {};
      return failed("mounting " + d.str() + " from " + from, *m);
    }
    if (bytes.empty()) {
      auto got = api_.call(http::verb::get, "/api/v1/build/layers/" + d.str(), {}, {}, kMaxLayer);
      if (!got) return got.error();
      if (got->status != 200) return failed("reading layer " + d.str(), *got);
      bytes = std::move(got->body);
    }
    http::fields h;
    h.set(http::field::content_type, "application/octet-stream");
    auto up = api_.call(http::verb::post, "/v2/" + repo + "/blobs/uploads/?digest=" + d.str(),
                        std::move(bytes), h);
    if (!up) return up.error();
    if (up->status != 201) return failed("uploading " + d.str() + " to " + repo, *up);
    return {};
  }

  static std::string hex(const cache::digest& d) {
    std::string s = d.str();
    return s.substr(s.find(':') + 1);
  }

  static json::array strings(const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v)
      a.emplace_back(s);
    return a;
  }

  static std::string describe_failure(const std::vector<std::string>& argv, const json::object& r) {
    std::string cmd;
    for (const auto& a : argv)
      cmd += (cmd.empty() ? "" : " ") + a;
    if (cmd.size() > 200) cmd = cmd.substr(0, 200) + "…";
    auto flag = [&](std::string_view k) {
      auto v = r.if_contains(k);
      return v && v->is_bool() && v->get_bool();
    };
    if (auto e = r.if_contains("runc_error"); e && e->is_string()) {
      return "`" + cmd + "` could not start: " + std::string(e->get_string());
    }
    if (flag("oom_killed")) return "`" + cmd + "` was OOM-killed";
    if (flag("timed_out")) return "`" + cmd + "` timed out";
    if (flag("cancelled")) return "`" + cmd + "` was cancelled";
    auto code = r.if_contains("exit_code");
    return "`" + cmd + "` exited with code " +
           (code && code->is_int64() ? std::to_string(code->get_int64()) : std::string("?"));
  }

  static error failed(const std::string& what, const coordinator::api_client::reply& r) {
    return coordinator::api_client::failure(what, r);
  }

  static coordinator::api_client_options client_options(const http_backend_options& opt) {
    coordinator::api_client_options co;
    co.user_agent = opt.user_agent;
    co.idle_timeout = opt.idle_timeout;
    co.stream_idle_timeout = opt.idle_timeout;
    co.max_upload = kMaxLayer;
    return co;
  }

  // POSTs a step and reads its event stream (a JSON object a line); output lines go to `output`,
  // and the "result" event is the answer.
  result<json::object> run_step(std::string body,
                                const std::function<void(std::string_view)>& output) {
    std::string pending;
    std::optional<result<json::object>> outcome;
    auto on_bytes = [&](std::string_view bytes) {
      pending.append(bytes);
      std::size_t start = 0;
      for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
        std::string_view line = std::string_view(pending).substr(start, nl - start);
        start = nl + 1;
        boost::system::error_code ec;
        auto v = json::parse(line, ec);
        if (ec || !v.is_object()) continue;
        auto& o = v.get_object();
        auto type = o.if_contains("type");
        std::string_view t = type && type->is_string() ? std::string_view(type->get_string()) : "";
        if (t == "line" || t == "report") {
          auto text = o.if_contains("text");
          if (text && text->is_string() && output) output(text->get_string());
        } else if (t == "result") {
          outcome.emplace(std::move(o));
          return false;
        } else if (t == "error") {
          auto m = o.if_contains("message");
          outcome.emplace(error(errc::io_error, m && m->is_string()
                                                    ? std::string(m->get_string())
                                                    : std::string("the step failed")));
          return false;
        }
      }
      pending.erase(0, start);
      return true;
    };
    http::fields h;
    h.set(http::field::content_type, "application/json");
    auto status = api_.stream(http::verb::post, "/api/v1/build/run", std::move(body), on_bytes, h);
    if (!status) {
      return error(status.error().code, "running the step: " + status.error().message);
    }
    if (!outcome) return error(errc::io_error, "the step's stream ended without a result");
    return std::move(*outcome);
  }

  coordinator::api_client api_;
  bool fresh_ = false;
  std::shared_ptr<runner::image_puller> puller_;
  std::map<std::string, std::string> base_of_;  // layer digest → NAME@sha256:… of its image
  std::map<std::string, std::vector<layer_ref>> bases_;  // image → its layers
};

}  // namespace

std::unique_ptr<build_backend> make_http_backend(std::string base_url, std::string token,
                                                 http_backend_options opt) {
  return std::make_unique<http_backend>(std::move(base_url), std::move(token), std::move(opt));
}

}  // namespace pantry::orchestrator::builder
