#pragma once

// Hosted repositories: names under oci.hosted.prefix live in pantry. Blob uploads (POST then
// PUT ?digest=, chunked PATCH, monolithic POST ?digest=) are written to a file under
// <data_dir>/uploads, hashed as they arrive, and moved into the cache pinned once the digest
// checks out. A cross-repository mount takes a blob from another hosted repository, or
// from a proxied one whose cached manifests reference it (an image built on a pulled base pushes
// only its own layers), and pins it. Manifest PUT (by tag or digest) is refused unless every blob
// and manifest it references is in the repository (a `subject` need not be: the spec lets a
// signature arrive before its image). GET/HEAD, manifest DELETE, tags/list and the OCI 1.1
// referrers list as the spec has them.

#include "pantry/cache/store.h"
#include "pantry/config/config.h"
#include "pantry/proxy/server.h"
#include "pantry/registry/oci/protocol.h"

#include "pantry_auth.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace pantry::registry::oci {

namespace http = boost::beast::http;

class hosted_repos {
 public:
  // The cache key prefix ("<upstream>/<repo>") of a proxied name that blobs may be mounted from,
  // or nullopt (not proxied, or its upstream's credentials keep its content from open pulls).
  using proxied_key_fn = std::function<std::optional<std::string>(std::string_view name)>;
  // Whether blobs that upstream `name` (of oci.upstreams) gave pantry may be mounted into a
  // hosted repository by a mount without `from` (false when its credentials keep its content
  // from open pulls, as for proxied_key_fn).
  using mountable_upstream_fn = std::function<bool(std::string_view name)>;

  // Who may do what now (a reload replaces it): each request asks once and keeps what it got.
  struct access {
    std::shared_ptr<const pantry_auth> auth;
    bool pull_auth = false;  // oci.hosted.pull_auth
  };
  using access_fn = std::function<access()>;

  // `prefix`: oci.hosted.prefix, fixed for the life of the object.
  hosted_repos(std::string prefix, std::shared_ptr<cache::store> store,
               boost::asio::any_io_executor blocking, access_fn access, proxied_key_fn proxied_key,
               mountable_upstream_fn mountable_upstream);
  ~hosted_repos();

  // Any request for a hosted name (auth is checked here).
  boost::asio::awaitable<void> handle(proxy::exchange& ex, const api_path& api);

 private:
  struct upload;

  boost::asio::awaitable<void> manifest_get(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> manifest_put(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> manifest_delete(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> blob_get(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> tags(proxy::exchange& ex, const api_path& api);
  // Every manifest of the repository whose subject is api.reference, read from the manifests
  // themselves (no separate index to keep in step: a deleted referrer is simply gone).
  boost::asio::awaitable<void> referrers(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> upload_start(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> upload_patch(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> upload_put(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> upload_status(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> upload_delete(proxy::exchange& ex, const api_path& api);

  // Appends the request body to the upload; false when an answer was already sent.
  boost::asio::awaitable<bool> receive(proxy::exchange& ex, upload& u);
  // receive() for one request at a time; a failed one ends the upload.
  boost::asio::awaitable<bool> append(proxy::exchange& ex, upload& u);
  boost::asio::awaitable<void> upload_unknown(proxy::exchange& ex, const api_path& api);
  boost::asio::awaitable<void> blob_created(proxy::exchange& ex, const std::string& name,
                                            const std::string& digest);
  // Checks the digest and moves the upload into the cache; false when an answer was sent.
  boost::asio::awaitable<bool> finish(proxy::exchange& ex, const std::string& name,
                                      std::shared_ptr<upload> u, const std::string& digest);
  boost::asio::awaitable<void> upload_accepted(proxy::exchange& ex, const std::string& name,
                                               const upload& u, http::status status);
  // The cache key prefix of a repository the pushing client may read (any hosted one, or a
  // proxied one of a mountable upstream) whose blob keys hold `digest`, or nullopt. Blocks.
  std::optional<std::string> repository_holding(const std::string& digest) const;
  std::shared_ptr<upload> find_upload(const std::string& name, const std::string& id);
  void drop_upload(const std::string& id);

  const std::string prefix_;
  const std::shared_ptr<cache::store> store_;
  const boost::asio::any_io_executor blocking_;
  const access_fn access_;
  const proxied_key_fn proxied_key_;
  const mountable_upstream_fn mountable_upstream_;
  const std::filesystem::path dir_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<upload>> uploads_;  // by id; guarded by mutex_
};

}  // namespace pantry::registry::oci
