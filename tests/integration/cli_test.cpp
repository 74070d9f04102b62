// The `pantry` binary as a user runs it: exit codes and messages of `config check/show` and
// `cache stats/verify/gc`, read-only commands beside a running `pantry serve`, and gc refusing
// while serve holds the data dir.

#include "pantry/cache/store.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

struct run_result {
  int status = -1;
  std::string output;  // stdout and stderr together
};

std::ostream& operator<<(std::ostream& os, const run_result& r) {
  return os << "exit " << r.status << ", output:\n" << r.output;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

run_result run(const std::string& args) {
  const std::string cmd = quote(PANTRY_BINARY) + " " + args + " 2>&1";
  run_result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pantry-cli-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    data_ = dir_ / "data";
  }
  void TearDown() override {
    stop_serve();
    fs::remove_all(dir_);
  }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  // Puts blobs in the cache as the owner and closes it again.
  void fill(int count) {
    pantry::cache::options opt;
    opt.data_dir = data_;
    auto s = pantry::cache::store::open(opt);
    ASSERT_TRUE(s) << s.error().message;
    for (int i = 0; i < count; ++i) {
      std::string body = "blob " + std::to_string(i) + std::string(100000, 'x');
      auto d = (*s)->put_blob(std::as_bytes(std::span(body)), "application/octet-stream");
      ASSERT_TRUE(d) << d.error().message;
    }
  }

  void start_serve() {
    const fs::path log = dir_ / "serve.log";
    serve_pid_ = fork();
    ASSERT_GE(serve_pid_, 0);
    if (serve_pid_ == 0) {
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(out, 2);
      execl(PANTRY_BINARY, "pantry", "serve", "--data-dir", data_.c_str(), "--listen",
            "127.0.0.1:0", nullptr);
      _exit(127);
    }
    // serve says it is listening only after it opened the cache, so it holds the lock then.
    // (Probing with `cache gc` would race: a probe that wins the lock makes serve exit.)
    std::string text;
    for (int i = 0; i < 600; ++i) {
      std::ifstream in(log);
      text.assign(std::istreambuf_iterator<char>(in), {});
      if (auto at = text.find("listening on "); at != std::string::npos) {
        serve_address_ = text.substr(at + 13, text.find(';', at) - at - 13);
        return;
      }
      int status = 0;
      if (waitpid(serve_pid_, &status, WNOHANG) == serve_pid_) {
        serve_pid_ = -1;
        FAIL() << "pantry serve exited (status " << status << "):\n" << text;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "pantry serve did not say it was listening within 30 s:\n" << text;
  }

  void stop_serve() {
    if (serve_pid_ <= 0) return;
    kill(serve_pid_, SIGTERM);
    int st = 0;
    waitpid(serve_pid_, &st, 0);
    serve_pid_ = -1;
  }

  fs::path dir_;
  fs::path data_;
  pid_t serve_pid_ = -1;
  std::string serve_address_;  // HOST:PORT, as serve logged it
};

TEST(CliUsageTest, UnknownCommandIsAUsageError) {
  auto r = run("frobnicate");
  EXPECT_EQ(r.status, 2) << r;
  EXPECT_THAT(r.output, HasSubstr("unknown command \"frobnicate\"")) << r;
  EXPECT_THAT(r.output, HasSubstr("usage: pantry")) << r;
}

TEST_F(CliTest, ConfigCheckAcceptsAValidFile) {
  auto f = write("ok.yaml", "cache: {max_size: 1GiB}\n");
  auto r = run("config check " + quote(f));
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_THAT(r.output, HasSubstr("ok")) << r;
}

TEST_F(CliTest, ConfigCheckNamesFileLineColumnKeyAndValue) {
  auto f = write("bad.yaml", "pypi:\n  index_ttl: soon\n");
  auto r = run("config check " + quote(f));
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_THAT(r.output, HasSubstr(f + ":2:14: pypi.index_ttl: \"soon\"")) << r;
}

TEST_F(CliTest, ConfigShowPrintsTheEffectiveConfig) {
  auto f = write("ok.yaml", "data_dir: /srv/pantry\n");
  auto r = run("config show " + quote(f));
  EXPECT_EQ(r.status, 0) << r;
  EXPECT_THAT(r.output, HasSubstr("data_dir: /srv/pantry")) << r;
  EXPECT_THAT(r.output, HasSubstr("max_size: 50GiB")) << r;  // from the defaults
  // The runner's places, derived from the data dir: 9407809c7203 is sha256("/srv/pantry").
  EXPECT_THAT(r.output, HasSubstr("runc_root: /run/pantry/9407809c7203/runc  # derived from "
                                  "data_dir"))
      << r;
}

TEST_F(CliTest, ConfigShowHidesSecretsUnlessAsked) {
  auto f =
      write("secret.yaml",
            "oci:\n"
            "  upstreams:\n"
            "    - {name: docker.io, url: 'https://registry-1.docker.io'}\n"
            "    - {name: ghcr.io, url: 'https://ghcr.io', username: bot, password: s3cret-pw}\n"
            "  hosted:\n"
            "    users: [{name: ci, token: 0123456789abcdef0123}]\n");
  auto hidden = run("config show " + quote(f));
  EXPECT_EQ(hidden.status, 0) << hidden;
  EXPECT_THAT(hidden.output, Not(HasSubstr("s3cret-pw"))) << hidden;
  EXPECT_THAT(hidden.output, Not(HasSubstr("0123456789abcdef0123"))) << hidden;
  EXPECT_THAT(hidden.output, HasSubstr("password: <hidden>")) << hidden;
  auto shown = run("config show --secrets " + quote(f));
  EXPECT_EQ(shown.status, 0) << shown;
  EXPECT_THAT(shown.output, HasSubstr("password: s3cret-pw")) << shown;
  EXPECT_THAT(shown.output, HasSubstr("token: 0123456789abcdef0123")) << shown;
}

TEST_F(CliTest, FlagsOverrideTheConfigFile) {
  auto r = run("serve --listen 127.0.0.1:99999");
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_THAT(r.output, HasSubstr("--listen")) << r;
  EXPECT_THAT(r.output, HasSubstr("99999")) << r;
}

TEST_F(CliTest, StatsOfAMissingDataDirSaysSo) {
  auto r = run("cache stats --data-dir " + quote((dir_ / "nothing").string()));
  EXPECT_EQ(r.status, 1) << r;
  EXPECT_THAT(r.output, HasSubstr((dir_ / "nothing").string())) << r;
}

TEST_F(CliTest, StatsVerifyAndGcOnAnIntactCache) {
  fill(5);
  auto stats = run("cache stats --data-dir " + quote(data_.string()));
  EXPECT_EQ(stats.status, 0) << stats;
  EXPECT_THAT(stats.output, HasSubstr("blobs:         5")) << stats;
  auto verify = run("cache verify --data-dir " + quote(data_.string()));
  EXPECT_EQ(verify.status, 0) << verify;
  EXPECT_THAT(verify.output, HasSubstr("verified 5 blobs")) << verify;
  EXPECT_THAT(verify.output, HasSubstr("0 corrupt")) << verify;
  auto gc = run("cache gc --data-dir " + quote(data_.string()));
  EXPECT_EQ(gc.status, 0) << gc;
}

TEST_F(CliTest, VerifyReportsACorruptBlobAndExitsOne) {
  fill(3);
  // Flip one byte of one chunk behind the store's back.
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  ASSERT_EQ(mdb_env_open(env, (data_ / "cache").c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi blobs;
  ASSERT_EQ(mdb_dbi_open(txn, "blobs", 0, &blobs), 0);
  MDB_cursor* cur = nullptr;
  ASSERT_EQ(mdb_cursor_open(txn, blobs, &cur), 0);
  MDB_val k, v;
  ASSERT_EQ(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
  std::string chunk(static_cast<const char*>(v.mv_data), v.mv_size);
  std::string key(static_cast<const char*>(k.mv_data), k.mv_size);
  mdb_cursor_close(cur);
  chunk[chunk.size() / 2] ^= 0x55;
  MDB_val k2{key.size(), key.data()};
  MDB_val v2{chunk.size(), chunk.data()};
  ASSERT_EQ(mdb_put(txn, blobs, &k2, &v2, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);

  auto verify = run("cache verify --data-dir " + quote(data_.string()));
  EXPECT_EQ(verify.status, 1) << verify;
  EXPECT_THAT(verify.output, HasSubstr("CORRUPT sha256:")) << verify;
  EXPECT_THAT(verify.output, HasSubstr("1 corrupt")) << verify;
}

TEST_F(CliTest, ReadOnlyCommandsWorkBesideServeAndGcRefuses) {
  fill(2);
  start_serve();
  auto stats = run("cache stats --data-dir " + quote(data_.string()));
  EXPECT_EQ(stats.status, 0) << stats;
  EXPECT_THAT(stats.output, HasSubstr("blobs:         2")) << stats;
  auto verify = run("cache verify --data-dir " + quote(data_.string()));
  EXPECT_EQ(verify.status, 0) << verify;
  auto gc = run("cache gc --data-dir " + quote(data_.string()));
  EXPECT_EQ(gc.status, 1) << gc;
  EXPECT_THAT(gc.output, HasSubstr("process " + std::to_string(serve_pid_))) << gc;
  EXPECT_THAT(gc.output, HasSubstr("stop it")) << gc;
  stop_serve();
  auto gc_after = run("cache gc --data-dir " + quote(data_.string()));
  EXPECT_EQ(gc_after.status, 0) << gc_after;
}

TEST_F(CliTest, HealthProbesTheConfigsListenAddressOrAURL) {
  start_serve();
  ASSERT_FALSE(serve_address_.empty());
  const std::string config = write("pantry.yaml", "listen: " + serve_address_ + "\n");
  auto by_config = run("health --config " + quote(config));
  EXPECT_EQ(by_config.status, 0) << by_config;
  EXPECT_THAT(by_config.output, HasSubstr("GET http://" + serve_address_ + "/healthz: 200 ok"))
      << by_config;
  auto ready = run("health http://" + serve_address_ + "/readyz");
  EXPECT_EQ(ready.status, 0) << ready;
  auto missing = run("health http://" + serve_address_ + "/no-such-page");
  EXPECT_EQ(missing.status, 1) << missing;
  EXPECT_THAT(missing.output, HasSubstr("answered 404")) << missing;
  stop_serve();
  auto down = run("health --config " + quote(config));
  EXPECT_EQ(down.status, 1) << down;
  EXPECT_THAT(down.output, HasSubstr(serve_address_)) << down;
  auto bad = run("health ftp://example");
  EXPECT_EQ(bad.status, 2) << bad;
  EXPECT_THAT(bad.output, HasSubstr("\"ftp://example\" is not an http:// or https:// URL")) << bad;
}

}  // namespace
