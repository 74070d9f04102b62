// The build loop: stages, keys, hits and misses, COPY/ADD staging, the image. See build.h.

#include "pantry/orchestrator/builder/build.h"

#include "lexical.h"
#include "pantry/orchestrator/builder/cache_key.h"
#include "pantry/orchestrator/builder/copy.h"
#include "pantry/orchestrator/builder/ignore.h"
#include "pantry/orchestrator/builder/substitute.h"
#include "root_path.h"

#include <stdlib.h>

#include <cerrno>
#include <map>
#include <memory>
#include <system_error>
#include <utility>

namespace pantry::orchestrator::builder {
namespace {

using detail::quote;
using steady = std::chrono::steady_clock;

// /etc/passwd and /etc/group larger than this are refused: they are read whole, and a real one is
// a few KiB.
constexpr std::size_t kMaxAccountFile = std::size_t{4} << 20;
// An ignore file larger than this is refused (docker has no limit; a real one is a few KiB).
constexpr std::size_t kMaxIgnoreFile = std::size_t{1} << 20;

// A directory of the build's own, removed with everything in it when it goes.
class scratch_dir {
 public:
  static result<scratch_dir> make(const std::filesystem::path& parent) {
    std::error_code ec;
    const std::filesystem::path base =
        parent.empty() ? std::filesystem::temp_directory_path(ec) : parent;
    if (ec) return error(errc::io_error, "build: no temporary directory: " + ec.message());
    std::string templ = (base / "pantry-build-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      return detail::io_failure("build: cannot make a scratch directory in", base, errno);
    }
    scratch_dir out;
    out.path_ = templ;
    return out;
  }

  scratch_dir() = default;
  scratch_dir(scratch_dir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  scratch_dir& operator=(scratch_dir&&) = delete;
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  ~scratch_dir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }

  // A new empty directory `name` in it, removed (with its contents) by the returned guard.
  result<scratch_dir> sub(const std::string& name) const {
    const std::filesystem::path p = path_ / name;
    std::error_code ec;
    std::filesystem::remove_all(p, ec);
    if (::mkdir(p.c_str(), 0700) != 0) {
      return detail::io_failure("build: cannot make the directory", p, errno);
    }
    scratch_dir out;
    out.path_ = p;
    return out;
  }

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// A stage as it is built.
struct stage_state {
  std::optional<stage_scope> scope;
  std::optional<stage_image> image;
  std::vector<layer_ref> layers;  // base first
  cache::digest key;              // the last step's key (the base's before any step)
  // A layer step of this stage, or of one it builds on, ran: later layer steps run without a
  // lookup (the layers cached under their keys were built on what that step wrote before).
  bool ran = false;
};

// The owner of a step's messages: "FILE:LINE: KEYWORD: …".
error at(const build_scope& scope, const instruction& in, const error& e) {
  return error(e.code, scope.file().file + ":" + std::to_string(in.line) + ": " +
                           std::string(in.keyword()) + ": " + e.message);
}

error at_from(const build_scope& scope, const stage& st, const error& e) {
  return error(e.code, scope.file().file + ":" + std::to_string(st.line) + ": FROM: " + e.message);
}

// The context's ignore rules: the first of kIgnoreFiles that exists.
result<ignore_rules> read_ignore_rules(const std::filesystem::path& context) {
  for (std::string_view name : kIgnoreFiles) {
    auto text = detail::read_in_root(context, name, kMaxIgnoreFile);
    if (!text) return text.error();
    if (*text) return ignore_rules::parse(**text, name);
  }
  return ignore_rules();
}

// --chmod's four octal digits (substitution checked them).
std::uint32_t parse_mode(std::string_view octal) {
  std::uint32_t mode = 0;
  for (char c : octal)
    mode = mode * 8 + static_cast<std::uint32_t>(c - '0');
  return mode;
}

// The path a source's files are read below, for materialize()'s `paths`: the source up to its
// first component with a wildcard.
std::string static_prefix(std::string_view source) {
  std::string out;
  for (const auto& part : detail::split_path(clean_path("/" + std::string(source)))) {
    if (has_glob(part)) break;
    out += "/" + part;
  }
  return out.empty() ? std::string("/") : out;
}

class build_run {
 public:
  build_run(const build_request& request, build_backend& backend, const build_events& events,
            const build_scope& scope, const ignore_rules& ignore, const scratch_dir& scratch)
      : request_(request),
        backend_(backend),
        events_(events),
        scope_(scope),
        ignore_(ignore),
        scratch_(scratch),
        states_(scope.file().stages.size()) {}

  std::optional<error> build_stage(std::size_t index) {
    const stage& st = scope_.file().stages[index];
    auto from = scope_.resolve_from(index);
    if (!from) return from.error();
    stage_state& state = states_[index];
    switch (from->base) {
      case resolved_from::kind::scratch: {
        oci_image_config config = scratch_config(request_.architecture);
        state.scope.emplace(scope_, config.env);
        state.image.emplace(std::move(config), request_.source_date_epoch);
        state.key = scratch_base_key();
        break;
      }
      case resolved_from::kind::image: {
        auto base = resolve(from->image);
        if (!base) return at_from(scope_, st, base.error());
        auto parsed = parse_image_config((*base)->config_json);
        if (!parsed) return at_from(scope_, st, parsed.error());
        if (parsed->diff_ids.size() != (*base)->layers.size()) {
          return at_from(
              scope_, st,
              error(errc::invalid_argument, (*base)->pinned_reference + ": the config lists " +
                                                std::to_string(parsed->diff_ids.size()) +
                                                " layers and the manifest " +
                                                std::to_string((*base)->layers.size())));
        }
        auto config = base_image_config(std::move(*parsed));
        if (!config) return at_from(scope_, st, config.error());
        state.scope.emplace(scope_, config->env);
        state.image.emplace(std::move(*config), request_.source_date_epoch);
        state.layers = (*base)->layers;
        state.key = image_base_key((*base)->manifest_digest);
        break;
      }
      case resolved_from::kind::stage: {
        const stage_state& parent = states_[from->stage];
        state.scope = parent.scope;
        state.image.emplace(parent.image->config(), request_.source_date_epoch);
        state.layers = parent.layers;
        state.key = parent.key;
        state.ran = parent.ran;
        break;
      }
    }
    for (std::size_t i = 0; i < st.instructions.size(); ++i) {
      if (auto e = step(index, i)) return e;
    }
    return std::nullopt;
  }

  const stage_state& state(std::size_t index) const { return states_[index]; }
  std::vector<step_report>& reports() { return reports_; }

 private:
  std::optional<error> step(std::size_t stage_index, std::size_t index) {
    const auto started = steady::now();
    const instruction& in = scope_.file().stages[stage_index].instructions[index];
    stage_state& state = states_[stage_index];
    auto resolved = state.scope->resolve(in);
    if (!resolved) return resolved.error();

    step_report report;
    report.stage = stage_index;
    report.index = index;
    report.text = in.text;

    std::optional<layer_ref> layer;
    if (!makes_layer(resolved->step)) {
      auto key = step_key(state.key, *resolved, std::nullopt);
      if (!key) return at(scope_, in, key.error());
      report.key = *key;
      report.outcome = step_outcome::config_only;
    } else if (const auto* run = std::get_if<run_instruction>(&resolved->step.body)) {
      auto key = step_key(state.key, *resolved, std::nullopt);
      if (!key) return at(scope_, in, key.error());
      report.key = *key;
      auto found = lookup(state, *key, false);
      if (!found) return at(scope_, in, found.error());
      if (*found) {
        layer = *found;
        report.outcome = step_outcome::hit;
      } else {
        auto command =
            run_command_for(state.image->config(), *resolved, request_.source_date_epoch);
        if (!command) return at(scope_, in, command.error());
        run_request r;
        r.key = *key;
        r.layers = state.layers;
        r.command = std::move(*command);
        r.network = run->network;
        r.source_date_epoch = request_.source_date_epoch;
        r.compression = request_.compression;
        auto ran = backend_.run(r, events_.output ? events_.output : discard_);
        if (!ran) return at(scope_, in, ran.error());
        layer = *ran;
        report.outcome = step_outcome::miss;
      }
    } else {
      auto copied = copy_step(stage_index, in, *resolved, report);
      if (!copied) return copied.error();
      layer = *copied;
    }

    auto applied =
        state.image->apply(*resolved, layer ? std::optional(layer->diff_id) : std::nullopt);
    if (!applied) return at(scope_, in, applied.error());
    if (layer) state.layers.push_back(*layer);
    state.key = report.key;
    report.layer = layer;
    report.time = std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - started);
    if (events_.step_done) events_.step_done(report);
    reports_.push_back(std::move(report));
    return std::nullopt;
  }

  // The layer recorded under `key`, or nullopt when the step must run: a miss, --no-cache, or an
  // earlier run in the stage (or, with `upstream_ran`, in the stage a COPY --from reads). A miss
  // marks the stage.
  result<std::optional<layer_ref>> lookup(stage_state& state, const cache::digest& key,
                                          bool upstream_ran) {
    if (request_.no_cache || state.ran || upstream_ran) {
      state.ran = true;
      return std::optional<layer_ref>();
    }
    auto found = backend_.lookup(key);
    if (!found) return found.error();
    if (!*found) state.ran = true;
    return found;
  }

  // COPY or ADD: keyed by its sources, looked up, else staged and stored.
  result<layer_ref> copy_step(std::size_t stage_index, const instruction& in,
                              const resolved_step& resolved, step_report& report) {
    stage_state& state = states_[stage_index];
    std::vector<std::string> sources;
    std::string destination, chown, chmod;
    copy_from from;
    if (const auto* c = std::get_if<copy_instruction>(&resolved.step.body)) {
      sources = c->sources;
      destination = c->destination;
      chown = c->chown;
      chmod = c->chmod;
      from = c->from;
    } else {
      const auto& a = std::get<add_instruction>(resolved.step.body);
      sources = a.sources;
      destination = a.destination;
      chown = a.chown;
      chmod = a.chmod;
    }
    const bool unpack = std::holds_alternative<add_instruction>(resolved.step.body);

    // The sources: from the context now (their content is the key); from a stage or image only
    // on a miss (their key or digest is).
    std::optional<copy_sources> found;
    cache::digest digest;
    bool upstream_ran = false;
    const base_image* image = nullptr;
    switch (from.from) {
      case copy_from::kind::context: {
        source_root root{request_.context, "the build context", &ignore_, false};
        auto f = find_sources(root, sources);
        if (!f) return at(scope_, in, f.error());
        auto d = sources_digest(f->listing());
        if (!d) return at(scope_, in, d.error());
        digest = *d;
        found = std::move(*f);
        break;
      }
      case copy_from::kind::stage:
        digest = stage_sources_digest(states_[from.stage].key);
        upstream_ran = states_[from.stage].ran;
        break;
      case copy_from::kind::image: {
        auto base = resolve(from.image);
        if (!base) return at(scope_, in, base.error());
        image = *base;
        digest = image_sources_digest(image->manifest_digest);
        break;
      }
    }
    auto key = step_key(state.key, resolved, digest);
    if (!key) return at(scope_, in, key.error());
    report.key = *key;
    auto hit = lookup(state, *key, upstream_ran);
    if (!hit) return at(scope_, in, hit.error());
    if (*hit) {
      report.outcome = step_outcome::hit;
      return **hit;
    }
    report.outcome = step_outcome::miss;

    const std::string step_name =
        "stage" + std::to_string(stage_index) + "-step" + std::to_string(report.index);
    auto work = scratch_.sub(step_name);
    if (!work) return at(scope_, in, work.error());
    std::optional<scratch_dir> from_dir;
    if (!found) {
      auto dir = work->sub("from");
      if (!dir) return at(scope_, in, dir.error());
      from_dir.emplace(std::move(*dir));
      std::vector<std::string> wanted;
      for (const auto& s : sources)
        wanted.push_back(static_prefix(s));
      source_root root;
      root.dir = from_dir->path();
      root.keep_owners = true;
      if (from.from == copy_from::kind::stage) {
        const auto& name = scope_.file().stages[from.stage].from.name;
        root.description =
            name.empty() ? "stage " + std::to_string(from.stage) : "stage " + quote(name);
        auto m = backend_.materialize(states_[from.stage].layers, root.dir, wanted);
        if (!m) return at(scope_, in, m.error());
      } else {
        root.description = "image " + image->pinned_reference;
        auto m = backend_.materialize(image->layers, root.dir, wanted);
        if (!m) return at(scope_, in, m.error());
      }
      auto f = find_sources(root, sources);
      if (!f) return at(scope_, in, f.error());
      found = std::move(*f);
    }

    copy_destination dest = make_destination(destination, state.image->config().working_dir);
    dest.unpack = unpack;
    if (!chmod.empty()) dest.chmod = parse_mode(chmod);

    // The stage's files, for the destination's directories and --chown's names.
    std::optional<scratch_dir> lower;
    if (!state.layers.empty()) {
      auto dir = work->sub("lower");
      if (!dir) return at(scope_, in, dir.error());
      lower.emplace(std::move(*dir));
      // ADD reads the whole stage: an archive's links may lead anywhere in it.
      std::vector<std::string> wanted;
      if (!unpack) {
        wanted.push_back(dest.path);
        if (chown_needs_names(chown)) {
          wanted.emplace_back("/etc/passwd");
          wanted.emplace_back("/etc/group");
        }
      }
      auto m = backend_.materialize(state.layers, lower->path(), wanted);
      if (!m) return at(scope_, in, m.error());
    }
    if (!chown.empty()) {
      std::string passwd, group;
      if (lower && chown_needs_names(chown)) {
        auto p = detail::read_in_root(lower->path(), "/etc/passwd", kMaxAccountFile);
        if (!p) return at(scope_, in, p.error());
        auto g = detail::read_in_root(lower->path(), "/etc/group", kMaxAccountFile);
        if (!g) return at(scope_, in, g.error());
        passwd = p->value_or("");
        group = g->value_or("");
      }
      auto own = resolve_chown(chown, passwd, group);
      if (!own) return at(scope_, in, own.error());
      dest.chown = *own;
    }

    auto staging = work->sub("staging");
    if (!staging) return at(scope_, in, staging.error());
    if (auto staged = stage_copy(*found, dest, lower ? lower->path() : std::filesystem::path(),
                                 staging->path());
        !staged) {
      return at(scope_, in, staged.error());
    }
    from_dir.reset();
    lower.reset();
    const std::filesystem::path file = work->path() / "layer";
    layer_options options;
    options.source_date_epoch = request_.source_date_epoch;
    options.compression = request_.compression;
    auto info = write_layer_file(staging->path(), file, options);
    if (!info) return at(scope_, in, info.error());
    auto stored = backend_.store_layer(*key, file, *info);
    if (!stored) return at(scope_, in, stored.error());
    return *stored;
  }

  // The image `ref` names, resolved once per build.
  result<const base_image*> resolve(const image_reference& ref) {
    const std::string name = ref.str();
    auto it = images_.find(name);
    if (it == images_.end()) {
      auto base = backend_.resolve_base(ref, request_.allow_unpinned);
      if (!base) return base.error();
      it = images_.emplace(name, std::make_unique<base_image>(std::move(*base))).first;
    }
    return it->second.get();
  }

  const build_request& request_;
  build_backend& backend_;
  const build_events& events_;
  const build_scope& scope_;
  const ignore_rules& ignore_;
  const scratch_dir& scratch_;
  std::vector<stage_state> states_;
  std::vector<step_report> reports_;
  std::map<std::string, std::unique_ptr<base_image>> images_;
  const std::function<void(std::string_view)> discard_ = [](std::string_view) {};
};

}  // namespace

std::string_view to_string(step_outcome outcome) noexcept {
  switch (outcome) {
    case step_outcome::hit:
      return "hit";
    case step_outcome::miss:
      return "miss";
    case step_outcome::config_only:
      return "config";
  }
  return "config";
}

result<build_result> build(const build_request& request, build_backend& backend,
                           const build_events& events) {
  if (request.tags.empty()) {
    return error(errc::invalid_argument,
                 "build: no tag to push the image under (give -t NAME:TAG)");
  }
  if (request.source_date_epoch < 0 || request.source_date_epoch > kMaxSourceDateEpoch) {
    return error(errc::invalid_argument,
                 "build: SOURCE_DATE_EPOCH " + std::to_string(request.source_date_epoch) +
                     " is out of range (0 to " + std::to_string(kMaxSourceDateEpoch) + ")");
  }
  const std::string name = request.containerfile_name.empty() ? std::string("Containerfile")
                                                              : request.containerfile_name;
  auto file = parse_containerfile(request.containerfile_text, name);
  if (!file) return file.error();
  build_options options;
  for (const auto& kv : request.build_args)
    options.build_args[kv.key] = kv.value;
  options.platform = "linux/" + request.architecture;
  auto scope = build_scope::make(*file, std::move(options));
  if (!scope) return scope.error();
  std::size_t target = file->stages.size() - 1;
  if (!request.target.empty()) {
    auto t = find_stage(*file, request.target);
    if (!t) return t.error();
    target = *t;
  }
  auto stages = scope->stages_for(target);
  if (!stages) return stages.error();
  std::error_code ec;
  if (!std::filesystem::is_directory(request.context, ec)) {
    return error(errc::invalid_argument,
                 "build: the context " + quote(request.context.string()) + " is not a directory");
  }
  auto ignore = read_ignore_rules(request.context);
  if (!ignore) return ignore.error();
  auto scratch = scratch_dir::make(request.scratch_dir);
  if (!scratch) return scratch.error();

  build_run run(request, backend, events, *scope, *ignore, *scratch);
  for (std::size_t index : *stages) {
    if (auto e = run.build_stage(index)) return *e;
  }

  const stage_state& built = run.state(target);
  const oci_image_config image = built.image->image();
  std::vector<cache::digest> diff_ids;
  for (const auto& l : built.layers)
    diff_ids.push_back(l.diff_id);
  if (diff_ids != image.diff_ids) {
    return error(errc::corrupt, "build: the image config lists " +
                                    std::to_string(image.diff_ids.size()) +
                                    " diff IDs that do not match its " +
                                    std::to_string(built.layers.size()) + " layers");
  }
  build_result out;
  out.config_json = serialize(image);
  const descriptor config{std::string(kImageConfigMediaType), cache::digest::of(out.config_json),
                          out.config_json.size()};
  std::vector<descriptor> layers;
  for (const auto& l : built.layers) {
    auto type = oci_layer_media_type(l.media_type);
    if (!type)
      return error(type.error().code,
                   "build: layer " + l.digest.str() + ": " + type.error().message);
    layers.push_back({std::move(*type), l.digest, l.size});
  }
  out.manifest_json = image_manifest(config, layers);
  out.manifest_digest = cache::digest::of(out.manifest_json);
  for (const auto& tag : request.tags) {
    auto pushed = backend.push_image(tag, out.config_json, out.manifest_json, built.layers);
    if (!pushed)
      return error(pushed.error().code, "build: push " + tag + ": " + pushed.error().message);
    if (*pushed != out.manifest_digest) {
      return error(errc::digest_mismatch, "build: push " + tag +
                                              ": the registry stored the manifest as " +
                                              pushed->str() + ", not " + out.manifest_digest.str());
    }
  }
  out.steps = std::move(run.reports());
  out.unused_build_args = scope->unused_build_args();
  return out;
}

}  // namespace pantry::orchestrator::builder
