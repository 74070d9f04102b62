// /<index>/…: the indexes pantry hosts (pypi.hosted): uploads, yanks, files and pages.

#include "pantry/proxy/small_body.h"
#include "pantry/registry/pypi/multipart.h"
#include "pantry/registry/pypi/wheel.h"
#include "pantry/text.h"

#include "../hosted_file.h"
#include "keys.h"
#include "routes.h"
#include "text.h"

#include <boost/json.hpp>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <set>

namespace pantry::registry::pypi {

namespace asio = boost::asio;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

namespace {

// The form's text fields together (the long description is the largest); warehouse's own limit
// on a description is far below this.
constexpr std::size_t kMaxFieldBytes = 8 * 1024 * 1024;
// A yank's JSON body.
constexpr std::size_t kMaxYankBody = 64 * 1024;

// PEP 700's upload-time: "yyyy-mm-ddThh:mm:ss.ffffffZ".
std::string upload_time(clock::time_point t) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(us % 1'000'000));
  return buf;
}

// A reason phrase made of `message`: printable ASCII on one line, cut at 200 bytes (twine shows
// the reason phrase, as warehouse writes its errors there).
std::string reason_of(std::string_view message) {
  std::string out;
  for (char c : message.substr(0, 200))
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

// An error as warehouse answers one: the status with the message as its reason phrase, and the
// message as a text/plain body.
asio::awaitable<void> refuse(exchange& ex, http::status status, std::string message,
                             http::fields extra = {}) {
  http::response<http::string_body> res{status, 11};
  for (const auto& f : extra)
    res.set(f.name_string(), f.value());
  res.reason(reason_of(message));
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(message) + "\n";
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

// An upload's temporary file, removed with this object.
struct temp_file {
  std::filesystem::path path;
  int fd = -1;
  ~temp_file() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) {
      std::error_code ec;
      std::filesystem::remove(path, ec);
    }
  }
};

result<std::size_t> pread_some(int fd, std::uint64_t offset, std::span<std::byte> out) {
  for (;;) {
    ssize_t r = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return error(errc::io_error,
                   std::string("cannot read the upload back: ") + std::strerror(errno));
    return static_cast<std::size_t>(r);
  }
}

// Reads a project record from the cache: nullopt when there is none.
result<std::optional<std::pair<cache::digest, hosted_project>>> read_record(
    cache::store& store, const std::string& key) {
  auto e = store.get_entry(key);
  if (!e) {
    if (e.error().is(errc::not_found)) return std::nullopt;
    return e.error();
  }
  if (!e->target) return std::nullopt;
  auto text = registry::detail::read_small_blob(store, *e->target);
  if (!text) return error(text.error().code, key + ": " + text.error().message);
  auto p = parse_hosted_project(*text);
  if (!p) return error(p.error().code, key + ": " + p.error().message);
  return std::make_pair(*e->target, std::move(*p));
}

// The entry of a hosted blob: never expires.
cache::entry hosted_entry(const cache::digest& target, std::string content_type,
                          clock::time_point now, std::optional<std::uint64_t> size) {
  cache::entry e;
  e.target = target;
  e.content_type = std::move(content_type);
  e.fetched_at = now;
  e.expires_at = clock::time_point::max();
  if (size)
    e.attributes.emplace_back(std::string(registry::detail::kSizeAttribute), std::to_string(*size));
  return e;
}

// Stores `p` as a new pinned record blob and returns its entry; the caller puts it.
result<cache::entry> store_record(cache::store& store, const hosted_project& p,
                                  clock::time_point now) {
  const std::string text = serialize_hosted_project(p);
  auto d = store.put_blob(std::as_bytes(std::span(text)), "application/json", true);
  if (!d) return d.error();
  // put_blob of bytes already stored (a yank undone) leaves them unpinned if they were.
  if (auto pin = store.set_pinned(*d, true); !pin) return pin.error();
  return hosted_entry(*d, "application/json", now, text.size());
}

// The record blob a write replaced becomes ordinary cache content, evicted in time: a reader
// may still have it open.
void release_record(cache::store& store, const std::optional<cache::digest>& old,
                    const cache::digest& now) {
  if (old && *old != now) (void)store.set_pinned(*old, false);
}

}  // namespace

// ---- the upload form ----

// Receives the form's parts: text fields in memory (bounded), the file into a temporary file
// through `pending`, which the route writes out after each piece of the body.
struct hosted_route::upload_form : multipart_parser::handler {
  std::map<std::string, std::string> fields;  // the first value of each text field
  std::optional<std::string> filename;        // the content part's
  std::uint64_t size = 0;
  upload_hasher hasher;
  std::vector<std::byte> pending;  // file bytes not yet written

  enum class in { field, content, ignored } current = in::ignored;
  std::string name;
  std::string value;
  std::size_t field_bytes = 0;

  result<void> part_begin(const form_part& part) override {
    if (part.name == "content" && part.filename) {
      if (filename) return error(errc::invalid_argument, "The form has two content parts");
      filename = *part.filename;
      current = in::content;
    } else if (part.filename) {
      current = in::ignored;  // gpg_signature and attestations: pantry keeps neither
    } else {
      current = in::field;
      name = part.name;
      value.clear();
    }
    return {};
  }
  result<void> part_data(std::span<const std::byte> bytes) override {
    if (current == in::content) {
      hasher.update(bytes);
      pending.insert(pending.end(), bytes.begin(), bytes.end());
      size += bytes.size();
    } else if (current == in::field) {
      field_bytes += bytes.size();
      if (field_bytes > kMaxFieldBytes) {
        return error(errc::invalid_argument, "The form's text fields are over " +
                                                 std::to_string(kMaxFieldBytes >> 20) +
                                                 " MiB together; shorten the description");
      }
      value.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    return {};
  }
  result<void> part_end() override {
    if (current == in::field) fields.try_emplace(name, std::move(value));
    current = in::ignored;
    return {};
  }

  std::string field(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? std::string() : std::string(trim_ascii_space(it->second));
  }
};

hosted_route::hosted_route(std::shared_ptr<const context> ctx, const config::oci_hosted& accounts,
                           std::shared_ptr<std::mutex> records)
    : ctx_(std::move(ctx)),
      auth_(accounts),
      dir_(uploads_dir(*ctx_->store)),
      records_(std::move(records)) {}

std::filesystem::path hosted_route::uploads_dir(const cache::store& store) {
  return store.opts().data_dir / "pypi-uploads";
}

void hosted_route::sweep_uploads(const cache::store& store, bool hosted) {
  // Uploads do not survive a restart: what a dead process left is removed.
  const auto dir = uploads_dir(store);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (hosted) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      spdlog::warn("pypi: cannot create {}: {}; uploads will fail", dir.string(), ec.message());
    }
  }
}

asio::awaitable<void> hosted_route::handle(exchange& ex) {
  const std::string path = registry::detail::path_of(ex.request().target());
  const config::pypi_hosted* index = nullptr;
  std::string_view rest;
  for (const auto& h : ctx_->cfg.hosted) {
    const std::string prefix = "/" + h.name;
    if (path == prefix || path.starts_with(prefix + "/")) {
      index = &h;
      rest = std::string_view(path).substr(prefix.size());
    }
  }
  if (index == nullptr) {
    // "/teamwork" reached the route of "/team": no route of pantry's.
    ex.set_route("pypi_hosted");
    co_await plain(ex, http::status::not_found, "not found: no route for path " + path);
    co_return;
  }
  const auto method = ex.request().method();
  const bool read = method == http::verb::get || method == http::verb::head;
  if (rest.empty() || rest == "/") {
    ex.set_route("pypi_upload");
    if (method == http::verb::post) {
      co_await upload(ex, *index);
    } else {
      const std::string why = "the hosted index " + index->name +
                              " takes uploads here with POST (twine upload --repository-url "
                              "<this URL>); pip reads it at /simple/ or /" +
                              index->name + "/simple/";
      co_await plain(ex, http::status::method_not_allowed, why);
    }
    co_return;
  }
  if (rest.starts_with("/files/")) {
    ex.set_route("pypi_hosted_files");
    if (!read) {
      co_await plain(ex, http::status::method_not_allowed, "hosted files answer GET and HEAD");
      co_return;
    }
    co_await serve_file(ex, *index, rest.substr(std::string_view("/files/").size()));
    co_return;
  }
  if (rest == "/simple" || rest.starts_with("/simple/")) {
    ex.set_route("pypi_hosted_simple");
    if (!read) {
      co_await plain(ex, http::status::method_not_allowed,
                     "the simple index answers GET and HEAD only");
      co_return;
    }
    co_await serve_simple(ex, *index, rest);
    co_return;
  }
  // /<project>/<version>/yank
  if (rest.ends_with("/yank")) {
    ex.set_route("pypi_yank");
    std::string_view mid = rest.substr(1, rest.size() - 1 - std::string_view("/yank").size());
    const std::size_t slash = mid.find('/');
    if (slash != std::string_view::npos && mid.find('/', slash + 1) == std::string_view::npos &&
        slash > 0 && slash + 1 < mid.size()) {
      if (method != http::verb::put && method != http::verb::delete_) {
        co_await plain(ex, http::status::method_not_allowed,
                       "PUT yanks a version (optional body {\"reason\": \"...\"}), DELETE "
                       "un-yanks it");
        co_return;
      }
      std::string project(mid.substr(0, slash));
      std::string version(mid.substr(slash + 1));
      co_await yank(ex, *index, std::move(project), std::move(version));
      co_return;
    }
  }
  ex.set_route("pypi_hosted");
  const std::string why = path + " is no endpoint of the hosted index " + index->name + ": POST /" +
                          index->name + "/ uploads, PUT or DELETE /" + index->name +
                          "/<project>/<version>/yank yanks, /" + index->name +
                          "/simple/<project>/ lists";
  co_await plain(ex, http::status::not_found, why);
}

asio::awaitable<bool> hosted_route::authorize(exchange& ex, const config::pypi_hosted& index) {
  const auto id = auth_.who(ex);
  if (id.invalid) {
    co_await refuse(ex, http::status::forbidden,
                    "Invalid or non-existent authentication information: wrong user name or "
                    "token for pantry; use a name and token from oci.hosted.users");
    co_return false;
  }
  if (id.user.empty()) {
    http::fields extra;
    extra.set(http::field::www_authenticate, "Basic realm=\"pantry\"");
    co_await refuse(ex, http::status::unauthorized,
                    "Uploading to " + index.name +
                        " needs a login: a user of oci.hosted.users with its token as password "
                        "(twine upload -u NAME -p TOKEN)",
                    extra);
    co_return false;
  }
  if (std::find(index.uploaders.begin(), index.uploaders.end(), id.user) == index.uploaders.end()) {
    std::string list;
    for (const auto& u : index.uploaders)
      list += (list.empty() ? "" : ", ") + u;
    co_await refuse(ex, http::status::forbidden,
                    "The user '" + id.user + "' isn't allowed to upload to the hosted index " +
                        index.name + " (its uploaders in pypi.hosted: " + list + ")");
    co_return false;
  }
  co_return true;
}

asio::awaitable<void> hosted_route::upload(exchange& ex, const config::pypi_hosted& index) {
  if (!co_await authorize(ex, index)) co_return;
  auto boundary = multipart_boundary(ex.request()[http::field::content_type]);
  if (!boundary) {
    const std::string why = boundary.error().message;
    co_await refuse(ex, http::status::bad_request, why);
    co_return;
  }

  // The file goes to a temporary file as it arrives, then into the cache once it is checked.
  temp_file file;
  std::string name_template = (dir_ / "upload-XXXXXX").string();
  const auto opened = co_await registry::detail::off_thread(ctx_->blocking, [&] {
    const int fd = ::mkostemp(name_template.data(), O_CLOEXEC);
    return std::make_pair(fd, fd < 0 ? errno : 0);
  });
  file.fd = opened.first;
  if (file.fd >= 0) file.path = name_template;
  if (file.fd < 0) {
    const std::string why = "cannot make a file for the upload in " + dir_.string() + ": " +
                            std::strerror(opened.second);
    co_await refuse(ex, http::status::insufficient_storage, why);
    co_return;
  }
  upload_form form;
  multipart_parser parser(std::move(*boundary), form);
  std::vector<std::byte> buf(registry::detail::kUploadBuffer);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) {
      ex.reset();  // the client went away or stalled: no one to answer
      co_return;
    }
    auto fed = *n == 0 ? parser.finish() : parser.feed(std::span(buf).first(*n));
    if (!fed) {
      const std::string why = fed.error().message;
      co_await refuse(ex, http::status::bad_request, why);
      co_return;
    }
    if (!form.pending.empty()) {
      const int wrote = co_await registry::detail::off_thread(
          ctx_->blocking, [&] { return registry::detail::write_all(file.fd, form.pending); });
      form.pending.clear();
      if (wrote != 0) {
        const std::string why =
            "cannot write the upload to " + file.path.string() + ": " + std::strerror(wrote);
        co_await refuse(ex, http::status::insufficient_storage, why);
        co_return;
      }
    }
    if (*n == 0) break;
  }

  // The form, checked as warehouse checks it.
  const std::string action = form.field(":action");
  std::string problem;
  if (action != "file_upload") {
    problem = action.empty() ? "The form has no :action; send :action=file_upload"
                             : "Unknown :action " + quote_for_message(action) +
                                   "; pantry takes file_upload only";
  } else if (!form.filename) {
    problem = "Upload payload does not have a file: send it as the content part";
  }
  result<upload_file> checked = error(errc::invalid_argument, problem);
  if (problem.empty()) {
    checked = check_upload_filename(*form.filename, form.field("name"), form.field("version"),
                                    form.field("filetype"));
  }
  if (!checked) {
    const std::string why = checked.error().message;
    co_await refuse(ex, http::status::bad_request, why);
    co_return;
  }
  const upload_digests got = form.hasher.finish();
  const std::array<std::pair<const char*, const std::string*>, 3> sent = {{
      {"sha256_digest", &got.sha256},
      {"md5_digest", &got.md5},
      {"blake2_256_digest", &got.blake2_256},
  }};
  bool any_digest = false;
  for (const auto& [field, computed] : sent) {
    const std::string given = ascii_lower(form.field(field));
    if (given.empty()) continue;
    any_digest = true;
    if (given != *computed) {
      problem = "The digest supplied does not match a digest calculated from the uploaded file: " +
                std::string(field) + " is " + quote_for_message(given) + ", the " +
                std::to_string(form.size) + " bytes received have " + *computed +
                "; nothing was stored";
      break;
    }
  }
  if (problem.empty() && !any_digest) {
    problem =
        "Include at least one message digest: sha256_digest, md5_digest or "
        "blake2_256_digest";
  }
  if (!problem.empty()) {
    co_await refuse(ex, http::status::bad_request, problem);
    co_return;
  }
  const auto sha = cache::digest::parse_hex(got.sha256);
  if (!sha) {
    co_await refuse(ex, http::status::internal_server_error,
                    "sha256 " + got.sha256 + " unreadable");
    co_return;
  }

  // PEP 658: the wheel's METADATA, served as "<file>.metadata", and Requires-Python from it.
  std::optional<std::string> metadata;
  if (checked->wheel) {
    const int fd = file.fd;
    byte_source source;
    source.size = form.size;
    source.read_at = [fd](std::uint64_t offset, std::span<std::byte> out) {
      return pread_some(fd, offset, out);
    };
    const std::string filename = *form.filename;
    auto extracted = co_await registry::detail::off_thread(
        ctx_->blocking, [&] { return extract_wheel_metadata(source, filename); });
    if (!extracted) {
      const std::string why = "Invalid wheel: " + extracted.error().message;
      co_await refuse(ex, http::status::bad_request, why);
      co_return;
    }
    metadata = std::move(*extracted);
  }
  hosted_file record;
  record.filename = *form.filename;
  record.version = checked->version;
  record.sha256 = got.sha256;
  record.size = form.size;
  const auto now = clock::now();
  record.upload_time = upload_time(now);
  record.requires_python = metadata ? metadata_field(*metadata, "Requires-Python") : std::nullopt;
  if (!record.requires_python && !form.field("requires_python").empty()) {
    record.requires_python = form.field("requires_python");
  }
  // Read as a browser reads an index page: an invalid UTF-8 sequence becomes U+FFFD.
  if (record.requires_python)
    record.requires_python = pypi::detail::valid_utf8(*record.requires_python);

  // Into the cache: the file, its metadata and the new record, under the records lock so that
  // two uploads to one project never lose one another's file.
  enum class outcome { stored, same_bytes, refused };
  struct stored_result {
    outcome what = outcome::stored;
    std::string message;
  };
  const std::string project_key = keys::hosted_project(index.name, checked->project);
  const std::string display_name = form.field("name");
  const std::uint64_t size = form.size;
  cache::store& store = *ctx_->store;
  auto stored =
      co_await registry::detail::off_thread(ctx_->blocking, [&]() -> result<stored_result> {
        std::lock_guard lock(*records_);
        auto existing = read_record(store, project_key);
        if (!existing) return existing.error();
        hosted_project project;
        std::optional<cache::digest> old_record;
        if (*existing) {
          old_record = (*existing)->first;
          project = std::move((*existing)->second);
        } else {
          project.name = display_name;
        }
        if (const hosted_file* f = project.find(record.filename)) {
          if (f->sha256 == record.sha256) return stored_result{outcome::same_bytes, {}};
          return stored_result{outcome::refused,
                               "File already exists: " + record.filename + " is in " + index.name +
                                   " with sha256 " + f->sha256 + " (uploaded " + f->upload_time +
                                   "); these bytes have sha256 " + record.sha256 +
                                   ". A file name is never reused: upload a new version"};
        }
        // The file's bytes, pinned; bytes already in the cache (the same file proxied, or in
        // another project) are pinned where they are.
        if (auto put = registry::detail::store_pinned_file(
                store, *sha, media_type_of(record.filename), file.fd, size, file.path);
            !put) {
          return put.error();
        }
        std::vector<std::pair<std::string, cache::entry>> entries;
        entries.emplace_back(keys::hosted_file(index.name, checked->project, record.filename),
                             hosted_entry(*sha, media_type_of(record.filename), now, size));
        if (metadata) {
          auto md = store.put_blob(std::as_bytes(std::span(*metadata)),
                                   media_type_of(std::string(keys::kMetadataSuffix)), true);
          if (!md) return md.error();
          if (auto pin = store.set_pinned(*md, true); !pin) return pin.error();
          record.metadata_sha256 = md->hex();
          entries.emplace_back(
              keys::hosted_file(index.name, checked->project,
                                record.filename + std::string(keys::kMetadataSuffix)),
              hosted_entry(*md, media_type_of(std::string(keys::kMetadataSuffix)), now,
                           metadata->size()));
        }
        project.files.push_back(record);
        auto rec = store_record(store, project, now);
        if (!rec) return rec.error();
        const cache::digest new_record = *rec->target;
        entries.emplace_back(project_key, std::move(*rec));
        if (auto put = store.put_entries(entries); !put) return put.error();
        release_record(store, old_record, new_record);
        return stored_result{};
      });
  if (!stored) {
    const std::string why = "cannot store " + record.filename + ": " + stored.error().message;
    co_await refuse(ex, http::status::service_unavailable, why);
    co_return;
  }
  if (stored->what == outcome::refused) {
    co_await refuse(ex, http::status::bad_request, stored->message);
    co_return;
  }
  if (stored->what == outcome::stored) {
    spdlog::info("pypi: {} uploaded to {} ({} bytes, sha256 {})", record.filename, index.name, size,
                 record.sha256);
  }
  const std::string done = stored->what == outcome::stored
                               ? "OK: " + record.filename + " is in " + index.name
                               : "OK: " + record.filename + " is in " + index.name +
                                     " already, with these bytes; nothing changed";
  co_await plain(ex, http::status::ok, done);
}

asio::awaitable<void> hosted_route::yank(exchange& ex, const config::pypi_hosted& index,
                                         std::string project, std::string version) {
  if (!co_await authorize(ex, index)) co_return;
  if (!is_valid_project_name(project)) {
    co_await refuse(ex, http::status::bad_request,
                    quote_for_message(project) + " is not a project name");
    co_return;
  }
  const std::string normal = normalize_project_name(project);
  std::optional<std::string> reason;
  if (ex.request().method() == http::verb::put) {
    auto read = co_await proxy::read_small_body(ex, kMaxYankBody);
    if (!read) {
      ex.reset();  // the client went away or stalled: no one to answer
      co_return;
    }
    if (!*read) {
      co_await refuse(ex, http::status::payload_too_large,
                      "a yank's body is at most 64 KiB: {\"reason\": \"...\"}");
      co_return;
    }
    const std::string body = std::move(**read);
    reason = std::string();
    if (!trim_ascii_space(body).empty()) {
      boost::system::error_code ec;
      auto v = boost::json::parse(body, ec);
      const boost::json::value* r = nullptr;
      if (!ec && v.is_object()) r = v.as_object().if_contains("reason");
      if (ec || !v.is_object() || (r != nullptr && !r->is_string())) {
        co_await refuse(ex, http::status::bad_request,
                        "a yank's body is empty or a JSON object {\"reason\": \"...\"}, not " +
                            quote_for_message(body));
        co_return;
      }
      if (r != nullptr) reason = std::string(r->as_string());
    }
  }
  const std::string key = keys::hosted_project(index.name, normal);
  cache::store& store = *ctx_->store;
  auto changed = co_await registry::detail::off_thread(
      ctx_->blocking, [&]() -> result<std::optional<hosted_project>> {
        std::lock_guard lock(*records_);
        auto existing = read_record(store, key);
        if (!existing) return existing.error();
        if (!*existing) return std::nullopt;
        hosted_project p = std::move((*existing)->second);
        if (set_yanked(p, version, reason) == 0) return std::nullopt;
        auto rec = store_record(store, p, clock::now());
        if (!rec) return rec.error();
        const cache::digest new_record = *rec->target;
        if (auto put = store.put_entry(key, *rec); !put) return put.error();
        release_record(store, (*existing)->first, new_record);
        return p;
      });
  if (!changed) {
    const std::string why = "cannot change " + normal + ": " + changed.error().message;
    co_await refuse(ex, http::status::service_unavailable, why);
    co_return;
  }
  if (!*changed) {
    const std::string why = "the hosted index " + index.name + " has no version " +
                            quote_for_message(version) + " of " + quote_for_message(normal);
    co_await refuse(ex, http::status::not_found, why);
    co_return;
  }
  boost::json::object o;
  o["project"] = (*changed)->name;
  o["version"] = version;
  o["yanked"] = reason.has_value();
  if (reason) o["reason"] = *reason;
  boost::json::array files;
  for (const auto& f : (*changed)->files) {
    if (ascii_iequals(f.version, version)) files.emplace_back(f.filename);
  }
  o["files"] = std::move(files);
  spdlog::info("pypi: {} {} {} in {}", reason ? "yanked" : "un-yanked", normal, version,
               index.name);
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, "application/json");
  res.body() = boost::json::serialize(o) + "\n";
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> hosted_route::serve_file(exchange& ex, const config::pypi_hosted& index,
                                               std::string_view rest) {
  const std::size_t slash = rest.find('/');
  std::string_view project = rest.substr(0, slash);
  std::string_view filename =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  const std::string key = keys::hosted_file(index.name, project, filename);
  auto e = filename.empty() || filename.find('/') != std::string_view::npos
               ? result<cache::entry>(error(errc::not_found, ""))
               : ctx_->store->get_entry(key);
  auto reader = e && e->target ? ctx_->store->open_blob(*e->target)
                               : result<cache::blob_reader>(error(errc::not_found, ""));
  if (!reader) {
    const std::string why = "the hosted index " + index.name + " has no file " +
                            quote_for_message(rest) + "; its projects' pages list what it has: /" +
                            index.name + "/simple/<project>/";
    co_await plain(ex, http::status::not_found, why);
    co_return;
  }
  ex.set_outcome(cache_outcome::hit);
  const std::string type = e->content_type;
  co_await registry::detail::serve_blob(ex, *reader, type);
}

asio::awaitable<void> hosted_route::serve_simple(exchange& ex, const config::pypi_hosted& index,
                                                 std::string_view rest) {
  const std::string base = "/" + index.name + "/simple/";
  std::string_view name = rest.substr(std::min(rest.size(), std::string_view("/simple/").size()));
  if (rest == "/simple") {
    co_await redirect(ex, base);
    co_return;
  }
  auto chosen = negotiate(ex.header_values(http::field::accept));
  if (name.empty()) {
    std::map<std::string, std::string> names;
    if (auto added = add_names(names, index.name); !added) {
      const std::string why = added.error().message;
      co_await plain(ex, http::status::service_unavailable, why);
      co_return;
    }
    std::vector<std::string> list;
    for (auto& [normal, shown] : names)
      list.push_back(std::move(shown));
    if (!chosen) chosen = negotiated{representation::html, kContentTypeTextHtml};
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, chosen->content_type);
    res.set(http::field::vary, "Accept");
    res.body() =
        chosen->rep == representation::json ? render_root_json(list) : render_root_html(list);
    res.prepare_payload();
    co_await ex.respond(std::move(res));
    co_return;
  }
  if (name.ends_with('/')) name.remove_suffix(1);
  if (name.empty() || name.find('/') != std::string_view::npos || !is_valid_project_name(name)) {
    const std::string why =
        quote_for_message(name) + " is not a project name; request " + base + "<project>/";
    co_await plain(ex, http::status::not_found, why);
    co_return;
  }
  const std::string normal = normalize_project_name(name);
  if (normal != name || !rest.ends_with('/')) {
    co_await redirect(ex, base + normal + "/");
    co_return;
  }
  if (!chosen) {
    co_await not_acceptable(ex);
    co_return;
  }
  auto record = read_record(*ctx_->store, keys::hosted_project(index.name, normal));
  if (!record) {
    const std::string why = record.error().message;
    co_await plain(ex, http::status::service_unavailable, why);
    co_return;
  }
  if (!*record) {
    const std::string why = "the hosted index " + index.name + " has no project \"" + normal +
                            "\"; upload one with twine upload --repository-url <pantry>/" +
                            index.name + "/";
    co_await plain(ex, http::status::not_found, why);
    co_return;
  }
  found f{&index, std::move((*record)->second)};
  ex.set_outcome(cache_outcome::hit);
  co_await serve_page(ex, f, *chosen);
}

result<std::optional<hosted_route::found>> hosted_route::find(std::string_view project) const {
  for (const auto& h : ctx_->cfg.hosted) {
    auto record = read_record(*ctx_->store, keys::hosted_project(h.name, project));
    if (!record) return record.error();
    if (*record) return found{&h, std::move((*record)->second)};
  }
  return std::nullopt;
}

bool hosted_route::merges(const config::pypi_hosted& index, std::string_view project) {
  return std::any_of(index.merge.begin(), index.merge.end(), [&](const std::string& pattern) {
    return config::glob_match(pattern, project);
  });
}

asio::awaitable<void> hosted_route::serve_page(exchange& ex, const found& f,
                                               const negotiated& chosen,
                                               const project_page* upstream) {
  const std::string files =
      "/" + f.index->name + "/files/" + normalize_project_name(f.project.name) + "/";
  project_page page = hosted_page(f.project, files);
  if (upstream != nullptr) {
    std::set<std::string> hosted_names;
    for (const auto& file : page.files)
      hosted_names.insert(file.filename);
    for (const auto& file : upstream->files) {
      if (!hosted_names.contains(file.filename)) page.files.push_back(file);
    }
    for (const auto& v : upstream->versions) {
      if (std::find(page.versions.begin(), page.versions.end(), v) == page.versions.end()) {
        page.versions.push_back(v);
      }
    }
  }
  const auto same = [](std::string_view url) { return std::string(url); };
  std::string body = chosen.rep == representation::json ? render_project_json(page, same)
                                                        : render_project_html(page, same);
  cache::hasher h;
  h.update(body);
  const std::string etag = "\"" + h.finish().hex().substr(0, 40) + "\"";
  http::response<http::string_body> res{http::status::ok, 11};
  res.set(http::field::content_type, chosen.content_type);
  res.set(http::field::vary, "Accept, Accept-Encoding");
  res.set(http::field::etag, etag);
  // An upload or a yank shows at once: clients revalidate every time (a 304 costs nothing).
  res.set(http::field::cache_control, "max-age=0, must-revalidate");
  if (registry::detail::etag_matches(ex, etag)) {
    res.result(http::status::not_modified);
  } else {
    res.body() = std::move(body);
  }
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

result<void> hosted_route::add_names(std::map<std::string, std::string>& names,
                                     std::string_view index) const {
  std::vector<std::pair<std::string, cache::digest>> records;
  for (const auto& h : ctx_->cfg.hosted) {
    if (!index.empty() && h.name != index) continue;
    const std::string prefix = keys::hosted_project(h.name, "");
    auto walked =
        ctx_->store->for_each_entry(prefix, [&](std::string_view key, const cache::entry& e) {
          if (e.target) records.emplace_back(std::string(key.substr(prefix.size())), *e.target);
          return true;
        });
    if (!walked) return walked.error();
  }
  // The spelling as uploaded is in the record, read after the walk (which must not wait).
  for (const auto& [normal, id] : records) {
    if (names.contains(normal)) continue;
    auto text = registry::detail::read_small_blob(*ctx_->store, id);
    auto p = text ? parse_hosted_project(*text) : result<hosted_project>(text.error());
    names.emplace(normal, p ? p->name : normal);
  }
  return {};
}

}  // namespace pantry::registry::pypi
