#pragma once

// An in-memory build backend for the builder's tests: layers are files in a directory of the
// test's own, keys map to layers, RUN writes a file derived from its argv (no container), and
// materialize() unpacks the layers with libarchive, whiteouts applied. Every call is recorded so
// that a test can say what ran, what was looked up and what was stored.

#include "pantry/orchestrator/builder/build.h"
#include "pantry/orchestrator/builder/image_config.h"
#include "pantry/orchestrator/builder/layer_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace pantry::orchestrator::builder::testing_util {

class fake_backend : public build_backend {
 public:
  struct push {
    std::string tag;
    std::string config_json;
    std::string manifest_json;
    std::vector<layer_ref> layers;
  };

  explicit fake_backend(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_ / "blobs");
  }

  // ---- what the tests set up and read ----

  // The images resolve_base() knows, by reference as written (NAME@sha256:…).
  std::map<std::string, base_image> images;
  // key -> layer, as recorded by store_layer() and run().
  std::map<cache::digest, layer_ref> records;
  std::vector<cache::digest> lookups;
  std::vector<cache::digest> stores;
  std::vector<run_request> runs;
  std::vector<std::vector<std::string>> materialized;  // the `paths` of each call
  std::vector<push> pushes;
  // A RUN whose command line holds this text fails as a step exiting 1 would.
  std::string fail_on = "exit 1";

  // Stores the layer of the directory `tree` as a blob (as a registry would hold a base image's).
  layer_ref add_blob(const std::filesystem::path& tree, std::int64_t epoch = 0) {
    const auto file = dir_ / "incoming";
    layer_options options;
    options.source_date_epoch = epoch;
    auto info = write_layer_file(tree, file, options);
    EXPECT_TRUE(info) << info.error().message;
    return keep(file, *info);
  }

  // An image of one layer made from `tree`, registered under NAME@sha256:<manifest digest>;
  // returns that reference.
  std::string add_image(const std::string& name, const std::filesystem::path& tree,
                        std::vector<std::string> env = {"PATH=/usr/bin:/bin"}) {
    const layer_ref layer = add_blob(tree);
    oci_image_config config;
    config.architecture = "amd64";
    config.os = "linux";
    config.env = std::move(env);
    config.diff_ids = {layer.diff_id};
    config.history = {history_entry{"1970-01-01T00:00:00Z", "base layer", "", "", false}};
    const std::string config_json = serialize(config);
    const std::string manifest = image_manifest(
        {std::string(kImageConfigMediaType), cache::digest::of(config_json), config_json.size()},
        {{layer.media_type, layer.digest, layer.size}});
    base_image image;
    image.manifest_digest = cache::digest::of(manifest);
    image.pinned_reference = name + "@" + image.manifest_digest.str();
    image.config_json = config_json;
    image.layers = {layer};
    images[image.pinned_reference] = image;
    return image.pinned_reference;
  }

  std::filesystem::path blob(const cache::digest& d) const { return dir_ / "blobs" / d.hex(); }

  // Forgets the blob of `layer`, as the cache's eviction would.
  void evict(const layer_ref& layer) { std::filesystem::remove(blob(layer.digest)); }

  void clear_calls() {
    lookups.clear();
    stores.clear();
    runs.clear();
    materialized.clear();
    pushes.clear();
  }

  // ---- build_backend ----

  result<base_image> resolve_base(const image_reference& ref, bool allow_unpinned) override {
    if (!ref.pinned() && !allow_unpinned) {
      return error(errc::invalid_argument, ref.str() + " names no digest");
    }
    auto it = images.find(ref.str());
    if (it == images.end()) return error(errc::not_found, "no image " + ref.str());
    return it->second;
  }

  result<std::optional<layer_ref>> lookup(const cache::digest& key) override {
    lookups.push_back(key);
    auto it = records.find(key);
    if (it == records.end() || !std::filesystem::exists(blob(it->second.digest))) {
      return std::optional<layer_ref>();
    }
    return std::optional<layer_ref>(it->second);
  }

  result<layer_ref> store_layer(const cache::digest& key, const std::filesystem::path& file,
                                const layer_info& info) override {
    stores.push_back(key);
    const layer_ref layer = keep(file, info);
    records[key] = layer;
    return layer;
  }

  result<layer_ref> run(const run_request& request,
                        const std::function<void(std::string_view line)>& output) override {
    runs.push_back(request);
    std::string line;
    for (const auto& a : request.command.argv)
      line += (line.empty() ? "" : " ") + a;
    output("running " + line);
    if (line.find(fail_on) != std::string::npos) {
      return error(errc::invalid_argument, "the command " + line + " exited with 1");
    }
    const auto upper = dir_ / "upper";
    std::filesystem::remove_all(upper);
    std::filesystem::create_directories(upper / "ran");
    const std::string name = cache::digest::of(line).hex().substr(0, 12);
    std::ofstream(upper / "ran" / name) << line << "\n";
    layer_options options;
    options.source_date_epoch = request.source_date_epoch;
    options.compression = request.compression;
    const auto file = dir_ / "incoming";
    auto info = write_layer_file(upper, file, options);
    if (!info) return info.error();
    const layer_ref layer = keep(file, *info);
    records[request.key] = layer;
    return layer;
  }

  result<void> materialize(const std::vector<layer_ref>& layers, const std::filesystem::path& dir,
                           const std::vector<std::string>& paths) override {
    materialized.push_back(paths);
    for (const auto& l : layers) {
      if (auto e = unpack(blob(l.digest), dir)) return *e;
    }
    return {};
  }

  result<cache::digest> push_image(const std::string& tag, const std::string& config_json,
                                   const std::string& manifest_json,
                                   const std::vector<layer_ref>& layers) override {
    for (const auto& l : layers) {
      if (!std::filesystem::exists(blob(l.digest))) {
        return error(errc::not_found, "push: no blob " + l.digest.str());
      }
    }
    pushes.push_back({tag, config_json, manifest_json, layers});
    return cache::digest::of(manifest_json);
  }

 private:
  layer_ref keep(const std::filesystem::path& file, const layer_info& info) {
    std::filesystem::rename(file, blob(info.digest));
    return {info.digest, info.diff_id, info.size, info.media_type};
  }

  // Unpacks one layer over `dir`, OCI whiteouts applied.
  static std::optional<error> unpack(const std::filesystem::path& blob,
                                     const std::filesystem::path& dir) {
    struct archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    struct archive* out = archive_write_disk_new();
    archive_write_disk_set_options(out, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM |
                                            ARCHIVE_EXTRACT_UNLINK |
                                            ARCHIVE_EXTRACT_SECURE_NODOTDOT);
    std::optional<error> failure;
    if (archive_read_open_filename(a, blob.c_str(), 1 << 16) != ARCHIVE_OK) {
      failure = error(errc::io_error, archive_error_string(a));
    }
    struct archive_entry* e = nullptr;
    while (!failure && archive_read_next_header(a, &e) == ARCHIVE_OK) {
      const std::filesystem::path rel = archive_entry_pathname(e);
      const std::string base = rel.filename().string();
      if (base == ".wh..wh..opq") {
        for (const auto& child : std::filesystem::directory_iterator(dir / rel.parent_path()))
          std::filesystem::remove_all(child.path());
        continue;
      }
      if (base.starts_with(".wh.")) {
        std::filesystem::remove_all(dir / rel.parent_path() / base.substr(4));
        continue;
      }
      archive_entry_set_pathname(e, (dir / rel).c_str());
      if (const char* link = archive_entry_hardlink(e)) {
        archive_entry_set_hardlink(e, (dir / link).c_str());
      }
      if (archive_write_header(out, e) != ARCHIVE_OK) {
        failure = error(errc::io_error, archive_error_string(out));
        break;
      }
      const void* buf = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      while (archive_read_data_block(a, &buf, &size, &offset) == ARCHIVE_OK)
        archive_write_data_block(out, buf, size, offset);
      archive_write_finish_entry(out);
    }
    archive_write_free(out);
    archive_read_free(a);
    return failure;
  }

  std::filesystem::path dir_;
};

}  // namespace pantry::orchestrator::builder::testing_util
