// The runner's image puller against a real pantry: an app assembled in process with a hosted
// repository (local/), images from tests/fixtures/make_oci_images.py pushed to it with skopeo,
// then pulled back through its /v2/ with image_puller and unpacked into a layer store of the
// test's own: by digest (each request counted into a traffic tally with the cache outcome pantry
// answered), by tag (refused unless unpinned), from a multi-platform index, with a wrong digest,
// with pull authentication, and layers that lie about their size or diff ID.

#include "pantry/app/app.h"
#include "pantry/orchestrator/runner/images.h"
#include "pantry/proxy/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pantry::orchestrator::runner {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ::testing::HasSubstr;

constexpr std::string_view kUser = "ci";
constexpr std::string_view kToken = "image-puller-test-token";

struct run_result {
  int status = -1;
  std::string output;  // stdout and stderr together
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

run_result run(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv)
    cmd += shell_quote(a) + " ";
  cmd += "2>&1";
  run_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0)
    r.output.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

fs::path make_temp_dir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl;
    return {};
  }
  return tmpl;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A pantry on 127.0.0.1 over its own data dir, serving on a thread until destroyed.
class running_pantry {
 public:
  // Creates it; nullptr (with a test failure) when that fails.
  static std::unique_ptr<running_pantry> start(const fs::path& data_dir, bool pull_auth) {
    config::config c = config::defaults();
    c.listen.host = "127.0.0.1";
    c.listen.port = 0;
    c.data_dir = data_dir.string();
    c.server.threads = 2;
    c.pypi.offline = true;
    c.oci.hosted.prefix = "local/";
    c.oci.hosted.users.push_back({std::string(kUser), std::string(kToken)});
    c.oci.hosted.pull_auth = pull_auth;
    auto a = app::app::create(c);
    if (!a) {
      ADD_FAILURE() << "app::create: " << a.error().message;
      return nullptr;
    }
    return std::unique_ptr<running_pantry>(new running_pantry(std::move(*a)));
  }

  ~running_pantry() {
    app_->stop();
    thread_.join();
  }

  std::uint16_t port() const { return app_->port(); }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  // skopeo copy SOURCE (e.g. "oci:DIR:latest") to local/NAME:TAG, every platform of an index.
  ::testing::AssertionResult push(const std::string& source, const std::string& name_tag) const {
    auto r = run({"skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false", "--dest-creds",
                  std::string(kUser) + ":" + std::string(kToken), source,
                  "docker://127.0.0.1:" + std::to_string(port()) + "/" + name_tag});
    if (r.status == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "skopeo copy " << source << " to " << name_tag << ": exit " << r.status << ":\n"
           << r.output;
  }

 private:
  explicit running_pantry(std::unique_ptr<app::app> a)
      : app_(std::move(a)), thread_([this] { (void)app_->run(); }) {}

  std::unique_ptr<app::app> app_;
  std::thread thread_;  // last: it uses app_
};

// The images make_oci_images.py built, once for the whole suite.
struct fixture_images {
  fs::path workdir;
  json::object images;  // build()'s "images"

  const json::object& image(std::string_view name) const { return images.at(name).as_object(); }
  // The digest of image `name`'s top manifest (the index for multi).
  std::string digest(std::string_view name) const { return text(image(name), "digest"); }
  std::string source(std::string_view name) const { return text(image(name), "source"); }
  // A platform manifest of an index image: {digest, config, layers…}.
  const json::object& platform_manifest(std::string_view name, std::string_view platform) const {
    return image(name).at("manifests").as_object().at(platform).as_object();
  }
  static std::string text(const json::object& o, std::string_view key) {
    return std::string(o.at(key).as_string());
  }
  // The descriptor of `o`'s config ("config") or first layer ("layer").
  static const json::object& config_of(const json::object& o) { return o.at("config").as_object(); }
  static const json::object& first_layer_of(const json::object& o) {
    return o.at("layers").as_array().at(0).as_object();
  }
};

class ImagePullerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    images_ = new fixture_images;
    images_->workdir = make_temp_dir("pantry-puller-images");
    auto built = run({"/usr/bin/python3", PANTRY_SOURCE_DIR "/tests/fixtures/make_oci_images.py",
                      images_->workdir.string()});
    ASSERT_EQ(built.status, 0) << built.output;
    // The JSON is the last thing printed; skopeo's and umoci's chatter may come before it.
    const auto start = built.output.find("{\n");
    ASSERT_NE(start, std::string::npos) << built.output;
    boost::system::error_code ec;
    auto v = json::parse(std::string_view(built.output).substr(start), ec);
    ASSERT_FALSE(ec) << ec.message() << "\n" << built.output;
    images_->images = v.at("images").as_object();

    data_dir_ = new fs::path(make_temp_dir("pantry-puller-data"));
    pantry_ = running_pantry::start(*data_dir_, false).release();
    ASSERT_NE(pantry_, nullptr);
    ASSERT_TRUE(pantry_->push(images_->source("busybox"), "local/busybox:latest"));
    ASSERT_TRUE(pantry_->push(images_->source("multi"), "local/multi:latest"));
  }

  static void TearDownTestSuite() {
    delete pantry_;
    pantry_ = nullptr;
    if (data_dir_ != nullptr) fs::remove_all(*data_dir_);
    delete data_dir_;
    data_dir_ = nullptr;
    if (images_ != nullptr) fs::remove_all(images_->workdir);
    delete images_;
    images_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(pantry_, nullptr) << "the suite's pantry did not start";
    store_dir_ = make_temp_dir("pantry-puller-layers");
    layer_store_options opt;
    opt.root = store_dir_;
    opt.durable = false;
    auto s = layer_store::open(opt);
    ASSERT_TRUE(s) << s.error().message;
    store_ = *s;
    // One I/O thread: an unpack that blocked it would wait for its own network reads forever,
    // so every test also shows that unpacks run on the blocking pool.
    io_thread_ = std::thread([this] { io_.run(); });
    puller_ = make_puller(pantry_->base_url(), std::nullopt);
  }

  void TearDown() override {
    puller_.reset();
    client_.reset();
    work_.reset();
    io_thread_.join();
    blocking_.join();
    store_.reset();
    fs::remove_all(store_dir_);
  }

  std::shared_ptr<image_puller> make_puller(std::string base_url,
                                            std::optional<std::string> authorization) {
    if (!client_) {
      proxy::client_options o;
      o.use_env_proxy = false;  // pantry is on loopback; a proxy of the machine must not see it
      client_ = proxy::client::create(io_.get_executor(), o);
    }
    return image_puller::create(client_, std::move(base_url), std::move(authorization), store_,
                                blocking_.get_executor());
  }

  // Runs `aw` on a strand of the test's I/O thread (as a connection of pantry runs) and waits.
  template <class T>
  T wait(asio::awaitable<T> aw) {
    return wait_for(asio::co_spawn(asio::make_strand(io_), std::move(aw), asio::use_future));
  }

  // The future's value; a hang (an unpack blocking the I/O thread) aborts the test with a message
  // instead of running into ctest's timeout.
  template <class T>
  static T wait_for(std::future<T> f) {
    if (f.wait_for(std::chrono::minutes(2)) != std::future_status::ready) {
      std::fprintf(stderr, "FATAL: the puller did not finish within 2 minutes\n");
      std::abort();
    }
    return f.get();
  }

  result<resolved_image> resolve(const std::string& text, bool allow_unpinned = false,
                                 image_puller* puller = nullptr,
                                 std::shared_ptr<proxy::traffic_tally> tally = nullptr) {
    auto ref = parse_image_reference(text);
    EXPECT_TRUE(ref) << ref.error().message;
    if (!ref) return ref.error();
    return wait((puller ? puller : puller_.get())->resolve(*ref, allow_unpinned, tally));
  }

  result<std::vector<layer_lease>> unpack(const resolved_image& img,
                                          std::shared_ptr<proxy::traffic_tally> tally = nullptr) {
    return wait(puller_->unpack_layers(img, tally));
  }

  // A tally's entries as "route outcome requests bytes" lines.
  static std::vector<std::string> lines_of(const proxy::traffic_tally& tally) {
    std::vector<std::string> out;
    for (const auto& e : tally.entries()) {
      out.push_back(e.route + " " + std::string(proxy::outcome_label(e.outcome)) + " " +
                    std::to_string(e.count.requests) + " " + std::to_string(e.count.bytes));
    }
    return out;
  }

  static fixture_images* images_;
  static fs::path* data_dir_;
  static running_pantry* pantry_;

  fs::path store_dir_;
  std::shared_ptr<layer_store> store_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  std::thread io_thread_;
  asio::thread_pool blocking_{2};
  std::shared_ptr<proxy::client> client_;
  std::shared_ptr<image_puller> puller_;
};

fixture_images* ImagePullerTest::images_ = nullptr;
fs::path* ImagePullerTest::data_dir_ = nullptr;
running_pantry* ImagePullerTest::pantry_ = nullptr;

TEST_F(ImagePullerTest, ResolvesByDigestAndUnpacksEachLayerOnce) {
  const std::string digest = images_->digest("busybox");
  auto tally = std::make_shared<proxy::traffic_tally>();
  auto img = resolve("local/busybox@" + digest, false, nullptr, tally);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(img->repository, "local/busybox");
  EXPECT_EQ(img->manifest_digest.str(), digest);
  EXPECT_EQ(img->index_digest, std::nullopt);
  EXPECT_EQ(img->pinned, "local/busybox@" + digest);
  EXPECT_EQ(img->platform, "linux/amd64");
  EXPECT_EQ(img->config.cmd, std::vector<std::string>{"/bin/sh"});
  EXPECT_EQ(img->config.env, std::vector<std::string>{"PATH=/bin"});
  const auto& busybox = images_->image("busybox");
  EXPECT_EQ(img->config_digest.str(),
            fixture_images::text(fixture_images::config_of(busybox), "digest"));
  EXPECT_THAT(img->config_json, HasSubstr("\"diff_ids\""));
  ASSERT_EQ(img->layers.size(), 1u);
  const auto& layer = fixture_images::first_layer_of(busybox);
  EXPECT_EQ(img->layers[0].digest.str(), fixture_images::text(layer, "digest"));
  EXPECT_EQ(img->layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_EQ(img->layers[0].size, layer.at("size").to_number<std::uint64_t>());

  auto leases = unpack(*img, tally);
  ASSERT_TRUE(leases) << leases.error().message;
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_EQ((*leases)[0].diff_id(), img->layers[0].diff_id);
  // Counted for whoever the pull is for: the manifest, then the config and the layer, each with
  // the outcome pantry's X-Pantry-Cache header gave (hosted content is served as a hit).
  const auto config_size = fixture_images::config_of(busybox).at("size").to_number<std::uint64_t>();
  const auto counts = tally->entries();
  ASSERT_EQ(counts.size(), 2u) << ::testing::PrintToString(lines_of(*tally));
  EXPECT_EQ(lines_of(*tally)[0],
            "oci_blob hit 2 " + std::to_string(config_size + img->layers[0].size));
  EXPECT_EQ(counts[1].route, "oci_manifest");
  EXPECT_EQ(counts[1].outcome, proxy::cache_outcome::hit);
  EXPECT_EQ(counts[1].count.requests, 1u);
  EXPECT_GT(counts[1].count.bytes, 0u);
  EXPECT_TRUE(fs::is_regular_file((*leases)[0].dir() / "bin/busybox")) << (*leases)[0].dir();
  EXPECT_EQ(read_file((*leases)[0].dir() / "etc/pantry-image"), "busybox\n");
  EXPECT_EQ(store_->stats().unpacked, 1u);

  // Present now: no unpack, and no request either (a lease from the store).
  const auto counted = lines_of(*tally);
  auto again = unpack(*img, tally);
  EXPECT_EQ(lines_of(*tally), counted) << "a layer the store has costs no request";
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].dir(), (*leases)[0].dir());
  EXPECT_EQ(store_->stats().unpacked, 1u);
}

TEST_F(ImagePullerTest, ATagWithoutADigestIsRefusedWithThePinnedReference) {
  const std::string digest = images_->digest("busybox");
  auto refused = resolve("local/busybox:latest");
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::invalid_argument));
  EXPECT_EQ(refused.error().message,
            "image local/busybox:latest is not pinned: it resolves to local/busybox:latest@" +
                digest + " now; name it by that digest, or pass --allow-unpinned");

  auto unpinned = resolve("local/busybox:latest", true);
  ASSERT_TRUE(unpinned) << unpinned.error().message;
  EXPECT_EQ(unpinned->manifest_digest.str(), digest);
  EXPECT_EQ(unpinned->pinned, "local/busybox@" + digest);
  // No tag at all is "latest", as in docker.
  auto bare = resolve("local/busybox", true);
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(bare->manifest_digest.str(), digest);
}

TEST_F(ImagePullerTest, ATagBesideADigestIsOnlyALabel) {
  const std::string digest = images_->digest("busybox");
  auto img = resolve("local/busybox:no-such-tag@" + digest);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(img->manifest_digest.str(), digest);
  EXPECT_EQ(img->pinned, "local/busybox@" + digest);
}

TEST_F(ImagePullerTest, AWrongDigestOrRepositoryIsNotFoundWithTheUrlAndAnswer) {
  const std::string wrong = "sha256:" + std::string(64, '0');
  auto img = resolve("local/busybox@" + wrong);
  ASSERT_FALSE(img);
  EXPECT_TRUE(img.error().is(errc::not_found)) << img.error().message;
  EXPECT_THAT(img.error().message,
              HasSubstr("image local/busybox@" + wrong + ": GET " + pantry_->base_url() +
                        "/v2/local/busybox/manifests/" + wrong + ": 404 Not Found: {"));
  EXPECT_THAT(img.error().message, HasSubstr("MANIFEST_UNKNOWN"));

  auto repo = resolve("local/nothing-here@" + images_->digest("busybox"));
  ASSERT_FALSE(repo);
  EXPECT_TRUE(repo.error().is(errc::not_found)) << repo.error().message;
  EXPECT_THAT(repo.error().message, HasSubstr("/v2/local/nothing-here/manifests/"));
}

TEST_F(ImagePullerTest, AnIndexGivesTheHostsPlatform) {
  auto host = host_platform();
  ASSERT_TRUE(host) << host.error().message;
  if (host->str() != "linux/amd64" && host->str() != "linux/arm64") {
    GTEST_SKIP() << "the multi image has no manifest for " << host->str();
  }
  const std::string index = images_->digest("multi");
  auto img = resolve("local/multi@" + index);
  ASSERT_TRUE(img) << img.error().message;
  const auto& wanted = images_->platform_manifest("multi", host->str());
  EXPECT_EQ(img->index_digest.value().str(), index);
  EXPECT_EQ(img->manifest_digest.str(), fixture_images::text(wanted, "digest"));
  EXPECT_EQ(img->pinned, "local/multi@" + index);
  EXPECT_EQ(img->platform, host->str());
  EXPECT_EQ(img->config_digest.str(),
            fixture_images::text(fixture_images::config_of(wanted), "digest"));
  ASSERT_EQ(img->layers.size(), 2u);

  // Two callers at once: each layer is unpacked once, base layer first in each answer.
  auto first =
      asio::co_spawn(asio::make_strand(io_), puller_->unpack_layers(*img), asio::use_future);
  auto second =
      asio::co_spawn(asio::make_strand(io_), puller_->unpack_layers(*img), asio::use_future);
  auto a = wait_for(std::move(first));
  auto b = wait_for(std::move(second));
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_EQ(a->size(), 2u);
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ(read_file((*a)[0].dir() / "etc/pantry-image"), "multi\n");
  EXPECT_EQ(read_file((*a)[1].dir() / "etc/platform"), host->str() + "\n");
  EXPECT_EQ((*a)[1].dir(), (*b)[1].dir());
  EXPECT_EQ(store_->stats().unpacked, 2u);
  if (host->str() == "linux/amd64") {
    EXPECT_TRUE(fs::is_regular_file((*a)[1].dir() / "bin/busybox"));
  }
}

TEST_F(ImagePullerTest, ALayerOtherThanItsDescriptorIsRefusedAndNothingStays) {
  auto img = resolve("local/busybox@" + images_->digest("busybox"));
  ASSERT_TRUE(img) << img.error().message;
  resolved_image lying = *img;
  lying.layers[0].size -= 1;
  auto leases = unpack(lying);
  ASSERT_FALSE(leases);
  EXPECT_TRUE(leases.error().is(errc::size_mismatch)) << leases.error().message;
  EXPECT_THAT(leases.error().message,
              HasSubstr("image local/busybox@" + images_->digest("busybox") + ": layer 1 of 1 (" +
                        img->layers[0].digest.str() + "): "));
  EXPECT_THAT(leases.error().message, HasSubstr("more than the"));
  EXPECT_EQ(store_->stats().layers, 0u);

  // Shorter than its descriptor: the stream's own check at its end, which sees every byte.
  lying = *img;
  lying.layers[0].size += 1;
  leases = unpack(lying);
  ASSERT_FALSE(leases);
  EXPECT_TRUE(leases.error().is(errc::digest_mismatch)) << leases.error().message;
  EXPECT_THAT(leases.error().message,
              HasSubstr("the blob's sha256 is " + img->layers[0].digest.str() + " (" +
                        std::to_string(img->layers[0].size) + " bytes), not " +
                        img->layers[0].digest.str() + " (" +
                        std::to_string(img->layers[0].size + 1) + " bytes)"));
  EXPECT_EQ(store_->stats().layers, 0u);

  // A diff ID that is not the layer's: the store's own check, named with the image and layer.
  lying = *img;
  lying.layers[0].diff_id = cache::digest::of(std::string_view("not this layer"));
  leases = unpack(lying);
  ASSERT_FALSE(leases);
  EXPECT_TRUE(leases.error().is(errc::digest_mismatch)) << leases.error().message;
  EXPECT_THAT(leases.error().message, HasSubstr(": layer 1 of 1 ("));
  EXPECT_EQ(store_->stats().layers, 0u);

  // The honest image still unpacks.
  auto good = unpack(*img);
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(store_->stats().layers, 1u);
}

TEST_F(ImagePullerTest, PullAuthenticationTakesTheAuthorizationGiven) {
  const fs::path data = make_temp_dir("pantry-puller-auth");
  {
    auto locked = running_pantry::start(data, true);
    ASSERT_NE(locked, nullptr);
    ASSERT_TRUE(locked->push(images_->source("busybox"), "local/busybox:latest"));
    const std::string ref = "local/busybox@" + images_->digest("busybox");

    auto anonymous = make_puller(locked->base_url(), std::nullopt);
    auto refused = resolve(ref, false, anonymous.get());
    ASSERT_FALSE(refused);
    EXPECT_TRUE(refused.error().is(errc::io_error)) << refused.error().message;
    EXPECT_THAT(refused.error().message, HasSubstr(": 401 Unauthorized: "));

    auto user = make_puller(locked->base_url(),
                            proxy::basic_authorization(std::string(kUser), std::string(kToken)));
    auto img = resolve(ref, false, user.get());
    ASSERT_TRUE(img) << img.error().message;
    auto leases = wait(user->unpack_layers(*img));
    ASSERT_TRUE(leases) << leases.error().message;
    EXPECT_TRUE(fs::is_regular_file((*leases)[0].dir() / "bin/busybox"));
  }
  fs::remove_all(data);
}

}  // namespace
}  // namespace pantry::orchestrator::runner
