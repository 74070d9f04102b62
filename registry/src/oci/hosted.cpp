#include "hosted.h"

#include "../hosted_file.h"
#include "../http_serve.h"
#include "keys.h"
#include "respond.h"

#include <boost/json.hpp>

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <vector>

namespace pantry::registry::oci {

namespace asio = boost::asio;
using proxy::cache_outcome;
using proxy::exchange;
using clock = cache::clock;

namespace {

std::string random_id() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

struct hosted_repos::upload {
  std::string id;
  std::string name;
  std::filesystem::path path;
  int fd = -1;
  std::uint64_t size = 0;
  cache::hasher hash;
  std::atomic<bool> busy{false};  // a request is adding to it now
  std::chrono::steady_clock::time_point touched = std::chrono::steady_clock::now();

  ~upload() {
    if (fd >= 0) ::close(fd);
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

hosted_repos::hosted_repos(std::string prefix, std::shared_ptr<cache::store> store,
                           asio::any_io_executor blocking, access_fn access,
                           proxied_key_fn proxied_key, mountable_upstream_fn mountable_upstream)
    : prefix_(std::move(prefix)),
      store_(std::move(store)),
      blocking_(std::move(blocking)),
      access_(std::move(access)),
      proxied_key_(std::move(proxied_key)),
      mountable_upstream_(std::move(mountable_upstream)),
      dir_(store_->opts().data_dir / "uploads") {
  // Uploads do not survive a restart: what a dead process left is removed.
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  std::filesystem::create_directories(dir_, ec);
  if (ec) spdlog::warn("oci: cannot create {}: {}; pushes will fail", dir_.string(), ec.message());
}

hosted_repos::~hosted_repos() = default;

asio::awaitable<void> hosted_repos::handle(exchange& ex, const api_path& api) {
  const auto method = ex.request().method();
  const bool read = method == http::verb::get || method == http::verb::head;
  const access now = access_();
  const pantry_auth& auth = *now.auth;
  auto id = auth.who(ex);
  if (id.invalid || (!read && id.user.empty()) || (read && now.pull_auth && id.user.empty())) {
    std::string scope = "repository:" + api.name + (read ? ":pull" : ":pull,push");
    std::string why = id.invalid ? "wrong user name or token"
                                 : (read ? "pulling " + api.name + " needs a login"
                                         : "pushing to " + api.name + " needs a login");
    if (!auth.enabled()) why += "; no user is configured: add one to oci.hosted.users";
    co_await auth.challenge(ex, scope, why);
    co_return;
  }
  switch (api.kind) {
    case api_kind::manifest:
      ex.set_route("oci_hosted_manifest");
      if (read) {
        co_await manifest_get(ex, api);
      } else if (method == http::verb::put) {
        co_await manifest_put(ex, api);
      } else if (method == http::verb::delete_) {
        co_await manifest_delete(ex, api);
      } else {
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "manifests answer GET, HEAD, PUT and DELETE");
      }
      co_return;
    case api_kind::blob:
      ex.set_route("oci_hosted_blob");
      if (read) {
        co_await blob_get(ex, api);
      } else {
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "blobs answer GET and HEAD; `pantry cache gc` removes blobs no "
                           "manifest references");
      }
      co_return;
    case api_kind::tags:
      ex.set_route("oci_hosted_tags");
      co_await tags(ex, api);
      co_return;
    case api_kind::referrers:
      ex.set_route("oci_hosted_referrers");
      if (read) {
        co_await referrers(ex, api);
      } else {
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "referrers lists answer GET and HEAD; push a manifest with a subject");
      }
      co_return;
    case api_kind::upload:
      ex.set_route("oci_hosted_upload");
      if (method == http::verb::post && api.reference.empty()) {
        co_await upload_start(ex, api);
      } else if (api.reference.empty()) {
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "start an upload with POST");
      } else if (method == http::verb::patch) {
        co_await upload_patch(ex, api);
      } else if (method == http::verb::put) {
        co_await upload_put(ex, api);
      } else if (read) {
        co_await upload_status(ex, api);
      } else if (method == http::verb::delete_) {
        co_await upload_delete(ex, api);
      } else {
        co_await oci_error(ex, http::status::method_not_allowed, "UNSUPPORTED",
                           "uploads answer PATCH, PUT, GET and DELETE");
      }
      co_return;
    default:
      co_await oci_error(ex, http::status::not_found, "UNSUPPORTED",
                         std::string(ex.request().target()) +
                             " is no endpoint of a hosted "
                             "repository");
      co_return;
  }
}

// ---- reading ----

asio::awaitable<void> hosted_repos::manifest_get(exchange& ex, const api_path& api) {
  const bool by_digest = is_digest(api.reference);
  const std::string key = by_digest ? keys::manifest(keys::hosted_repo(api.name), api.reference)
                                    : keys::tag(keys::hosted_repo(api.name), api.reference);
  auto e = store_->get_entry(key);
  if (!e || !e->target) {
    co_await oci_error(ex, http::status::not_found, "MANIFEST_UNKNOWN",
                       api.name + (by_digest ? "@" : ":") + api.reference + " is not in pantry");
    co_return;
  }
  ex.set_outcome(cache_outcome::hit);
  co_await serve_manifest(ex, *store_, *e, !by_digest);
}

asio::awaitable<void> hosted_repos::blob_get(exchange& ex, const api_path& api) {
  auto e = store_->get_entry(keys::blob(keys::hosted_repo(api.name), api.reference));
  auto reader = e ? store_->open_blob(cache::digest::parse(api.reference).value())
                  : result<cache::blob_reader>(error(errc::not_found, ""));
  if (!reader) {
    co_await oci_error(ex, http::status::not_found, "BLOB_UNKNOWN",
                       "blob " + api.reference + " is not in " + api.name);
    co_return;
  }
  http::fields extra;
  api_headers(extra);
  extra.set("Docker-Content-Digest", api.reference);
  ex.set_outcome(cache_outcome::hit);
  const std::string blob_type(kBlobType);
  co_await detail::serve_blob(ex, *reader, blob_type, extra);
}

asio::awaitable<void> hosted_repos::tags(exchange& ex, const api_path& api) {
  const auto target = ex.request().target();
  const std::string prefix = keys::tag(keys::hosted_repo(api.name), "");
  std::vector<std::string> names;
  auto walked = store_->for_each_entry(prefix, [&](std::string_view key, const cache::entry&) {
    names.emplace_back(key.substr(prefix.size()));
    return true;
  });
  if (!walked) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                       walked.error().message);
    co_return;
  }
  if (names.empty()) {
    co_await oci_error(ex, http::status::not_found, "NAME_UNKNOWN",
                       api.name + " has no tags in pantry");
    co_return;
  }
  const auto page =
      page_tags(std::move(names), api.name, query_param(target, "n"), query_param(target, "last"));
  boost::json::array list;
  for (const auto& t : page.tags)
    list.emplace_back(t);
  http::response<http::string_body> res{http::status::ok, 11};
  api_headers(res);
  res.set(http::field::content_type, "application/json");
  if (!page.next.empty()) res.set(http::field::link, page.next);
  boost::json::object o;
  o["name"] = api.name;
  o["tags"] = std::move(list);
  res.body() = boost::json::serialize(o);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> hosted_repos::referrers(exchange& ex, const api_path& api) {
  const auto subject = cache::digest::parse(api.reference).value();
  const std::string prefix = keys::manifest(keys::hosted_repo(api.name), "");
  std::vector<cache::entry> manifests;
  auto walked = store_->for_each_entry(prefix, [&](std::string_view, const cache::entry& e) {
    if (e.target) manifests.push_back(e);
    return true;
  });
  if (!walked) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                       walked.error().message);
    co_return;
  }
  auto found = co_await detail::off_thread(blocking_, [&]() -> result<std::vector<referrer>> {
    std::vector<referrer> out;
    for (const auto& e : manifests) {
      auto body = detail::read_small_blob(*store_, *e.target);
      if (!body) {
        if (body.error().is(errc::not_found)) continue;  // deleted meanwhile
        return error(body.error().code, "cannot read manifest " + e.target->str() + " of " +
                                            api.name + ": " + body.error().message);
      }
      if (auto r = as_referrer(*body, e.content_type, subject)) out.push_back(std::move(*r));
    }
    return out;
  });
  if (!found) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE", found.error().message);
    co_return;
  }
  const std::string artifact_type = query_param(ex.request().target(), "artifactType");
  http::response<http::string_body> res{http::status::ok, 11};
  api_headers(res);
  res.set(http::field::content_type, kOciIndex);
  if (!artifact_type.empty()) res.set("OCI-Filters-Applied", "artifactType");
  res.body() = referrers_index(*found, artifact_type);
  res.prepare_payload();
  ex.set_outcome(cache_outcome::hit);
  co_await ex.respond(std::move(res));
}

// ---- manifests ----

asio::awaitable<void> hosted_repos::manifest_put(exchange& ex, const api_path& api) {
  std::string body;
  std::vector<std::byte> buf(detail::kUploadBuffer);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return;  // the connection is gone
    if (*n == 0) break;
    if (body.size() + *n > kMaxManifest) {
      co_await oci_error(ex, http::status::payload_too_large, "SIZE_INVALID",
                         "a manifest may have at most " + std::to_string(kMaxManifest) + " bytes");
      co_return;
    }
    body.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  std::string content_type(ex.request()[http::field::content_type]);
  auto refs = parse_manifest(body, content_type);
  if (!refs) {
    const std::string& m = refs.error().message;
    co_await oci_error(ex, http::status::bad_request, "MANIFEST_INVALID",
                       m.substr(m.find(' ') + 1));
    co_return;
  }
  if (content_type.empty()) content_type = refs->media_type;
  if (content_type.empty()) {
    co_await oci_error(ex, http::status::bad_request, "MANIFEST_INVALID",
                       "the manifest has neither a Content-Type nor a mediaType");
    co_return;
  }
  const cache::digest d = cache::digest::of(body);
  if (is_digest(api.reference) && d.str() != api.reference) {
    co_await oci_error(ex, http::status::bad_request, "DIGEST_INVALID",
                       "the manifest's sha256 is " + d.str() + ", not " + api.reference);
    co_return;
  }
  const std::string rk = keys::hosted_repo(api.name);
  for (const auto& b : refs->blobs) {
    auto e = store_->get_entry(keys::blob(rk, b.digest.str()));
    if (!e || !store_->stat_blob(b.digest)) {
      co_await oci_error(ex, http::status::bad_request, "MANIFEST_BLOB_UNKNOWN",
                         "the manifest references blob " + b.digest.str() + ", which is not in " +
                             api.name + "; push the blob first");
      co_return;
    }
  }
  for (const auto& m : refs->manifests) {
    auto e = store_->get_entry(keys::manifest(rk, m.digest.str()));
    if (!e) {
      co_await oci_error(ex, http::status::bad_request, "MANIFEST_BLOB_UNKNOWN",
                         "the index references manifest " + m.digest.str() + " (" +
                             (m.platform.empty() ? std::string("no platform") : m.platform) +
                             "), which is not in " + api.name + "; push it by digest first");
      co_return;
    }
  }
  const auto now = clock::now();
  cache::entry e;
  e.target = d;
  e.content_type = content_type;
  e.fetched_at = now;
  e.expires_at = now + kForever;
  std::vector<std::pair<std::string, cache::entry>> entries;
  entries.emplace_back(keys::manifest(rk, d.str()), e);
  if (!is_digest(api.reference)) entries.emplace_back(keys::tag(rk, api.reference), e);
  auto stored = co_await detail::off_thread(blocking_, [&]() -> result<void> {
    auto put = store_->put_blob(std::as_bytes(std::span(body)), content_type, true);
    if (!put) return put.error();
    if (auto pin = store_->set_pinned(d, true); !pin) return pin.error();
    return store_->put_entries(entries);
  });
  if (!stored) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                       "cannot store the manifest: " + stored.error().message);
    co_return;
  }
  spdlog::info("oci: {}:{} pushed as {}", api.name, api.reference, d.str());
  http::response<http::string_body> res{http::status::created, 11};
  api_headers(res);
  res.set(http::field::location, "/v2/" + api.name + "/manifests/" + d.str());
  res.set("Docker-Content-Digest", d.str());
  // The referrers list reads the subject from the stored manifest, so it is processed.
  if (refs->subject) res.set("OCI-Subject", refs->subject->digest.str());
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<void> hosted_repos::manifest_delete(exchange& ex, const api_path& api) {
  const std::string rk = keys::hosted_repo(api.name);
  std::vector<std::string> doomed;
  if (is_digest(api.reference)) {
    const auto d = cache::digest::parse(api.reference).value();
    if (!store_->get_entry(keys::manifest(rk, api.reference))) {
      co_await oci_error(ex, http::status::not_found, "MANIFEST_UNKNOWN",
                         api.name + "@" + api.reference + " is not in pantry");
      co_return;
    }
    doomed.push_back(keys::manifest(rk, api.reference));
    // Its tags go with it.
    const std::string prefix = keys::tag(rk, "");
    auto walked = store_->for_each_entry(prefix, [&](std::string_view key, const cache::entry& e) {
      if (e.target == d) doomed.emplace_back(key);
      return true;
    });
    if (!walked) {
      co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                         walked.error().message);
      co_return;
    }
  } else {
    if (!store_->get_entry(keys::tag(rk, api.reference))) {
      co_await oci_error(ex, http::status::not_found, "MANIFEST_UNKNOWN",
                         api.name + ":" + api.reference + " is not in pantry");
      co_return;
    }
    doomed.push_back(keys::tag(rk, api.reference));
  }
  std::optional<cache::digest> unpin;
  if (is_digest(api.reference)) unpin = cache::digest::parse(api.reference).value();
  auto removed = co_await detail::off_thread(blocking_, [&]() -> result<void> {
    for (const auto& k : doomed) {
      auto r = store_->remove_entry(k);
      if (!r && !r.error().is(errc::not_found)) return r.error();
    }
    if (!unpin) return {};
    // A manifest no hosted repository holds any more is ordinary, evictable cache content.
    bool used = false;
    auto walked = store_->for_each_entry(keys::kHostedManifestPrefix,
                                         [&](std::string_view, const cache::entry& e) {
                                           used = e.target == unpin;
                                           return !used;
                                         });
    if (!walked) return walked.error();
    if (!used) return store_->set_pinned(*unpin, false);
    return {};
  });
  if (!removed) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                       removed.error().message);
    co_return;
  }
  http::response<http::string_body> res{http::status::accepted, 11};
  api_headers(res);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

// ---- uploads ----

std::shared_ptr<hosted_repos::upload> hosted_repos::find_upload(const std::string& name,
                                                                const std::string& id) {
  std::lock_guard g(mutex_);
  auto it = uploads_.find(id);
  if (it == uploads_.end() || it->second->name != name) return nullptr;
  it->second->touched = std::chrono::steady_clock::now();
  return it->second;
}

void hosted_repos::drop_upload(const std::string& id) {
  std::shared_ptr<upload> u;
  {
    std::lock_guard g(mutex_);
    auto it = uploads_.find(id);
    if (it == uploads_.end()) return;
    u = std::move(it->second);
    uploads_.erase(it);
  }
  // The file is closed and removed when the last holder lets go.
}

asio::awaitable<void> hosted_repos::upload_unknown(exchange& ex, const api_path& api) {
  co_await oci_error(ex, http::status::not_found, "BLOB_UPLOAD_UNKNOWN",
                     "no upload " + api.reference + " for " + api.name +
                         " (uploads end when finished, cancelled, or idle for an hour); start "
                         "one with POST /v2/" +
                         api.name + "/blobs/uploads/");
}

asio::awaitable<void> hosted_repos::blob_created(exchange& ex, const std::string& name,
                                                 const std::string& digest) {
  http::response<http::string_body> res{http::status::created, 11};
  api_headers(res);
  res.set(http::field::location, "/v2/" + name + "/blobs/" + digest);
  res.set("Docker-Content-Digest", digest);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<bool> hosted_repos::append(exchange& ex, upload& u) {
  if (u.busy.exchange(true)) {
    co_await oci_error(ex, http::status::conflict, "BLOB_UPLOAD_INVALID",
                       "upload " + u.id + " is busy with another request");
    co_return false;
  }
  const bool ok = co_await receive(ex, u);
  u.busy = false;
  if (!ok) drop_upload(u.id);
  co_return ok;
}

asio::awaitable<void> hosted_repos::upload_accepted(exchange& ex, const std::string& name,
                                                    const upload& u, http::status status) {
  http::response<http::string_body> res{status, 11};
  api_headers(res);
  res.set(http::field::location, "/v2/" + name + "/blobs/uploads/" + u.id);
  res.set(http::field::range, "0-" + std::to_string(u.size == 0 ? 0 : u.size - 1));
  res.set("Docker-Upload-UUID", u.id);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

asio::awaitable<bool> hosted_repos::receive(exchange& ex, upload& u) {
  std::vector<std::byte> buf(detail::kUploadBuffer);
  for (;;) {
    auto n = co_await ex.read_body(buf);
    if (!n) co_return false;
    if (*n == 0) co_return true;
    u.hash.update(std::span(buf).first(*n));
    auto wrote = co_await detail::off_thread(
        blocking_, [&] { return detail::write_all(u.fd, std::span(buf).first(*n)); });
    if (wrote != 0) {
      co_await oci_error(
          ex, http::status::insufficient_storage, "BLOB_UPLOAD_INVALID",
          "cannot write the upload to " + u.path.string() + ": " + std::strerror(wrote));
      co_return false;
    }
    u.size += *n;
  }
}

asio::awaitable<bool> hosted_repos::finish(exchange& ex, const std::string& name,
                                           std::shared_ptr<upload> u, const std::string& digest) {
  auto want = cache::digest::parse(digest);
  if (!want) {
    drop_upload(u->id);
    co_await oci_error(ex, http::status::bad_request, "DIGEST_INVALID",
                       "\"" + digest + "\" is not a sha256 digest; the upload is cancelled");
    co_return false;
  }
  const cache::digest got = u->hash.finish();
  if (got != *want) {
    drop_upload(u->id);
    co_await oci_error(ex, http::status::bad_request, "DIGEST_INVALID",
                       "the uploaded " + std::to_string(u->size) + " bytes have sha256 " +
                           got.str() + ", not " + digest + "; nothing was stored");
    co_return false;
  }
  auto stored = co_await detail::off_thread(blocking_, [&] {
    return detail::store_pinned_file(*store_, got, std::string(kBlobType), u->fd, u->size, u->path);
  });
  if (!stored) {
    drop_upload(u->id);
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE",
                       "cannot store blob " + digest + ": " + stored.error().message);
    co_return false;
  }
  cache::entry e;
  e.target = got;
  e.content_type = std::string(kBlobType);
  e.fetched_at = clock::now();
  e.expires_at = e.fetched_at + kForever;
  e.attributes.emplace_back(std::string(detail::kSizeAttribute), std::to_string(u->size));
  const std::string key = keys::blob(keys::hosted_repo(name), digest);
  auto put = co_await detail::off_thread(blocking_, [&] { return store_->put_entry(key, e); });
  drop_upload(u->id);
  if (!put) {
    co_await oci_error(ex, http::status::service_unavailable, "UNAVAILABLE", put.error().message);
    co_return false;
  }
  co_return true;
}

std::optional<std::string> hosted_repos::repository_holding(const std::string& digest) const {
  const auto id = cache::digest::parse(digest);
  if (!id) return std::nullopt;
  const std::string suffix = "@" + digest;
  constexpr std::string_view kBlobKeys = "oci/blob/";
  std::optional<std::string> found;
  // One walk over every repository's blob keys: a push asks this once per layer it would
  // otherwise upload, and the walk is a read of the entries database, no blob is touched.
  (void)store_->for_each_entry(kBlobKeys, [&](std::string_view key, const cache::entry& e) {
    if (!key.ends_with(suffix) || e.target != *id) return true;
    std::string_view repo_key = key.substr(kBlobKeys.size());
    repo_key.remove_suffix(suffix.size());
    const bool hosted = repo_key.starts_with("hosted/");
    if (hosted || mountable_upstream_(repo_key.substr(0, repo_key.find('/')))) {
      found = std::string(repo_key);
      return false;
    }
    return true;
  });
  return found;
}

asio::awaitable<void> hosted_repos::upload_start(exchange& ex, const api_path& api) {
  const auto& target = ex.request().target();
  const std::string mount = query_param(target, "mount");
  const std::string from = query_param(target, "from");
  std::optional<std::string> source;  // the cache key prefix of `from`
  if (!mount.empty() && is_digest(mount) && !from.empty()) {
    source =
        from.starts_with(prefix_) ? std::optional(keys::hosted_repo(from)) : proxied_key_(from);
  } else if (!mount.empty() && is_digest(mount)) {
    // No `from`: the spec lets the registry find a repository itself ("The registry MAY treat
    // the `from` parameter as optional, and it MAY cross-mount the blob if it can be found").
    source = co_await detail::off_thread(blocking_, [&] { return repository_holding(mount); });
  }
  if (source) {
    // Only what `from`'s own manifests reference can be mounted from it.
    auto e = store_->get_entry(keys::blob(*source, mount));
    const auto id = cache::digest::parse(mount).value();
    auto info = store_->stat_blob(id);
    if (e && e->target == id && info) {
      cache::entry mine = *e;
      mine.fetched_at = clock::now();
      mine.expires_at = mine.fetched_at + kForever;
      const std::string key = keys::blob(keys::hosted_repo(api.name), mount);
      // A proxied blob is evictable cache until a hosted repository holds it; pinned without
      // the reference (which gc would never find), it would be kept forever.
      auto put = co_await detail::off_thread(blocking_, [&]() -> result<void> {
        if (auto pin = store_->set_pinned(id, true); !pin) return pin.error();
        auto r = store_->put_entry(key, mine);
        if (!r && !info->pinned) (void)store_->set_pinned(id, false);
        return r;
      });
      if (put) {
        spdlog::info("oci: {} mounted from {} into {}", mount, from.empty() ? *source : from,
                     api.name);
        co_await blob_created(ex, api.name, mount);
        co_return;
      }
    }
    // Not mountable: an ordinary upload starts, as the spec says.
  }
  {
    // Uploads a client abandoned go after an idle hour.
    std::lock_guard g(mutex_);
    const auto cutoff = std::chrono::steady_clock::now() - std::chrono::hours(1);
    std::erase_if(uploads_,
                  [&](const auto& kv) { return !kv.second->busy && kv.second->touched < cutoff; });
  }
  auto u = std::make_shared<upload>();
  u->id = random_id();
  u->name = api.name;
  u->path = dir_ / u->id;
  u->fd = ::open(u->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (u->fd < 0) {
    co_await oci_error(ex, http::status::insufficient_storage, "BLOB_UPLOAD_INVALID",
                       "cannot create " + u->path.string() + ": " + std::strerror(errno));
    co_return;
  }
  {
    std::lock_guard g(mutex_);
    uploads_[u->id] = u;
  }
  const std::string digest = query_param(target, "digest");
  if (digest.empty()) {
    co_await upload_accepted(ex, api.name, *u, http::status::accepted);
    co_return;
  }
  // Monolithic: the whole blob is this request's body.
  if (!co_await append(ex, *u)) co_return;
  if (!co_await finish(ex, api.name, u, digest)) co_return;
  co_await blob_created(ex, api.name, digest);
}

asio::awaitable<void> hosted_repos::upload_patch(exchange& ex, const api_path& api) {
  auto u = find_upload(api.name, api.reference);
  if (!u) {
    co_await upload_unknown(ex, api);
    co_return;
  }
  // A Content-Range must continue where the upload is.
  std::string range(ex.request()[http::field::content_range]);
  if (!range.empty()) {
    std::uint64_t start = 0;
    auto dash = range.find('-');
    auto [p, ec] = std::from_chars(
        range.data(), range.data() + (dash == std::string::npos ? range.size() : dash), start);
    if (ec != std::errc() || start != u->size) {
      http::fields extra;
      extra.set(http::field::range, "0-" + std::to_string(u->size == 0 ? 0 : u->size - 1));
      extra.set(http::field::location, "/v2/" + api.name + "/blobs/uploads/" + u->id);
      co_await oci_error(ex, http::status::range_not_satisfiable, "BLOB_UPLOAD_INVALID",
                         "Content-Range " + range + " does not start at " +
                             std::to_string(u->size) + ", where the upload is",
                         extra);
      co_return;
    }
  }
  if (!co_await append(ex, *u)) co_return;
  co_await upload_accepted(ex, api.name, *u, http::status::accepted);
}

asio::awaitable<void> hosted_repos::upload_put(exchange& ex, const api_path& api) {
  auto u = find_upload(api.name, api.reference);
  if (!u) {
    co_await upload_unknown(ex, api);
    co_return;
  }
  const std::string digest = query_param(ex.request().target(), "digest");
  if (digest.empty()) {
    co_await oci_error(ex, http::status::bad_request, "DIGEST_INVALID",
                       "finish an upload with PUT …?digest=sha256:<hex>");
    co_return;
  }
  if (!co_await append(ex, *u)) co_return;
  if (!co_await finish(ex, api.name, u, digest)) co_return;
  co_await blob_created(ex, api.name, digest);
}

asio::awaitable<void> hosted_repos::upload_status(exchange& ex, const api_path& api) {
  auto u = find_upload(api.name, api.reference);
  if (!u) {
    co_await upload_unknown(ex, api);
    co_return;
  }
  co_await upload_accepted(ex, api.name, *u, http::status::no_content);
}

asio::awaitable<void> hosted_repos::upload_delete(exchange& ex, const api_path& api) {
  auto u = find_upload(api.name, api.reference);
  if (!u) {
    co_await upload_unknown(ex, api);
    co_return;
  }
  drop_upload(u->id);
  http::response<http::string_body> res{http::status::no_content, 11};
  api_headers(res);
  res.prepare_payload();
  co_await ex.respond(std::move(res));
}

}  // namespace pantry::registry::oci
