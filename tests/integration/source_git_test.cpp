// git_mirrors (orchestrator/coordinator/source.h) against real git: file:// repositories made
// here, and a dumb-HTTP repository served by nginx behind a check of the Authorization header.

#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/runner/process.h"

#include "unit/temp_dir.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pantry::orchestrator::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr const char* kToken = "Authorization: Bearer s3cret-token-for-the-test";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// Runs a shell command with git's configuration isolated and returns its stdout; fails the test
// if it fails.
std::string sh(const std::string& command) {
  const std::string full =
      "GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=t "
      "GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com "
      "sh -ec '" +
      command + "' 2>&1";
  std::string out;
  FILE* p = ::popen(full.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "popen: " << command;
    return out;
  }
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << command << "\n" << out;
  return out;
}

// `git count-objects -v` of a repository, as numbers.
std::map<std::string, long> count_objects(const fs::path& git_dir) {
  std::map<std::string, long> out;
  std::istringstream in(sh("git --git-dir=" + git_dir.string() + " count-objects -v"));
  std::string key;
  long value = 0;
  while (in >> key >> value) {
    key.pop_back();  // the ':'
    out[key] = value;
  }
  return out;
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  return ntohs(addr.sin_port);
}

bool accepts(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(s);
  return ok;
}

class SourceGitTest : public test_util::temp_dir_test {
 protected:
  void SetUp() override {
    temp_dir_test::SetUp();
    repo_ = dir_ / "repo";
    // More than git's transfer.unpackLimit (100) objects: the first fetch keeps a pack, so a
    // second fetch that brought everything again would show as a second pack.
    for (int i = 0; i < 150; ++i)
      write(repo_ / "files" / ("f" + std::to_string(i)), "file " + std::to_string(i) + "\n");
    write(repo_ / "README", "first\n");
    sh("cd " + repo_.string() + " && git init -q && ln -s README link && git add . && " +
       "git commit -qm one");
    first_ = head();
  }

  std::string head() {
    std::string sha = sh("git -C " + repo_.string() + " rev-parse HEAD");
    while (!sha.empty() && sha.back() == '\n')
      sha.pop_back();
    return sha;
  }

  std::string url() const { return "file://" + repo_.string(); }

  fs::path repo_;
  std::string first_;
};

TEST_F(SourceGitTest, ChecksOutACommitAndFetchesOnlyWhatIsNew) {
  git_mirrors mirrors(dir_ / "mirrors");
  auto r = mirrors.checkout(url(), first_, dir_ / "one");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(slurp(dir_ / "one" / "README"), "first\n");
  EXPECT_EQ(slurp(dir_ / "one" / "files" / "f149"), "file 149\n");
  EXPECT_EQ(fs::read_symlink(dir_ / "one" / "link"), "README");
  EXPECT_FALSE(fs::exists(dir_ / "one" / ".git"));

  const fs::path mirror = mirrors.mirror_of(url());
  const auto before = count_objects(mirror);
  EXPECT_EQ(before.at("packs"), 1) << "the first fetch keeps its pack";

  write(repo_ / "NEW", "second\n");
  sh("cd " + repo_.string() + " && git add NEW && git commit -qm two");
  const std::string second = head();
  r = mirrors.checkout(url(), second, dir_ / "two");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(slurp(dir_ / "two" / "NEW"), "second\n");
  EXPECT_EQ(slurp(dir_ / "two" / "README"), "first\n");

  // The second fetch brought the new commit, its tree and the new blob: three loose objects, no
  // second pack of everything.
  const auto after = count_objects(mirror);
  EXPECT_EQ(after.at("packs"), before.at("packs"));
  EXPECT_EQ(after.at("in-pack"), before.at("in-pack"));
  EXPECT_EQ(after.at("count") - before.at("count"), 3);

  // A commit the mirror holds is checked out without fetching: the repository may be gone.
  fs::rename(repo_, dir_ / "moved");
  r = mirrors.checkout(url(), first_, dir_ / "again");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "again" / "NEW"));
  EXPECT_EQ(count_objects(mirror), after);
}

TEST_F(SourceGitTest, ChangedFilesAreTheDiffOfTwoCommitsFetchedAsNeeded) {
  // A change that edits, adds, deletes and moves files, one with a space and one with a byte
  // git would quote without -z.
  write(repo_ / "tests" / "test_a b.py", "def test_x(): pass\n");
  write(repo_ / "tests" / "test_\xc3\xa9.py", "def test_y(): pass\n");
  sh("cd " + repo_.string() + " && git add . && git commit -qm base");
  const std::string base = head();
  write(repo_ / "README", "changed\n");
  write(repo_ / "tests" / "test_new.py", "def test_z(): pass\n");
  write(repo_ / "tests" / "test_a b.py", "def test_x(): assert True\n");
  sh("cd " + repo_.string() + " && git rm -q files/f0 && git mv files/f1 files/moved && " +
     "git add . && git commit -qm change");
  const std::string change = head();

  git_mirrors mirrors(dir_ / "mirrors");
  auto files = mirrors.changed_files(url(), base, change);
  ASSERT_TRUE(files) << files.error().message;
  std::sort(files->begin(), files->end());
  EXPECT_EQ(*files, (std::vector<std::string>{"README", "files/f0", "files/f1", "files/moved",
                                              "tests/test_a b.py", "tests/test_new.py"}));
  // Both commits are in the mirror now: the same answer without the repository.
  fs::rename(repo_, dir_ / "moved");
  auto again = mirrors.changed_files(url(), change, base);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->size(), 6u);
  auto none = mirrors.changed_files(url(), change, change);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_TRUE(none->empty());

  auto bad = mirrors.changed_files(url(), "main", change);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::invalid_argument)) << bad.error().message;
  EXPECT_NE(bad.error().message.find("\"main\" is not a commit"), std::string::npos)
      << bad.error().message;
  const std::string missing(40, 'b');
  auto gone = mirrors.changed_files(url(), missing, change);
  ASSERT_FALSE(gone);
  EXPECT_TRUE(gone.error().is(errc::not_found)) << gone.error().message;
  EXPECT_NE(gone.error().message.find(missing), std::string::npos) << gone.error().message;
}

TEST_F(SourceGitTest, ABadCommitIsAnErrorNamingItAndTheUrl) {
  git_mirrors mirrors(dir_ / "mirrors");
  const std::string missing(40, 'a');
  auto r = mirrors.checkout(url(), missing, dir_ / "out");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::not_found)) << r.error().message;
  EXPECT_NE(r.error().message.find(missing), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(url()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("git fetch failed"), std::string::npos) << r.error().message;

  for (const std::string& bad :
       std::vector<std::string>{"main", "abc123", std::string(40, 'G'), std::string(40, 'A')}) {
    r = mirrors.checkout(url(), bad, dir_ / "out");
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
    EXPECT_NE(r.error().message.find("40"), std::string::npos) << r.error().message;
  }
}

TEST_F(SourceGitTest, ABadUrlIsAnErrorNamingItWithoutCredentials) {
  git_mirrors mirrors(dir_ / "mirrors");
  const std::string nowhere = "file://" + (dir_ / "no-such-repo").string();
  auto r = mirrors.checkout(nowhere, first_, dir_ / "out");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::not_found)) << r.error().message;
  EXPECT_NE(r.error().message.find(nowhere), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("does not appear to be a git repository"), std::string::npos)
      << r.error().message;

  r = mirrors.checkout("https://dev:hunter2@git.example/repo.git", first_, dir_ / "out");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
  EXPECT_EQ(r.error().message.find("hunter2"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("https://***@git.example/repo.git"), std::string::npos)
      << r.error().message;

  r = mirrors.checkout("--upload-pack=touch /tmp/x", first_, dir_ / "out");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_argument)) << r.error().message;
}

TEST_F(SourceGitTest, OverHttpTheAuthHeaderIsSentAndNeverShown) {
  // A dumb-HTTP copy of the repository (static files after update-server-info).
  const fs::path www = dir_ / "www";
  sh("git clone -q --bare " + repo_.string() + " " + (www / "repo.git").string() + " && git " +
     "--git-dir=" + (www / "repo.git").string() + " update-server-info");
  const fs::path conf = dir_ / "nginx.conf";
  const int port = free_port();
  fs::create_directories(dir_ / "logs");
  write(conf, "daemon off;\nmaster_process off;\npid " + (dir_ / "nginx.pid").string() +
                  ";\nerror_log " + (dir_ / "logs" / "error.log").string() +
                  " warn;\nevents { worker_connections 64; }\nhttp {\n"
                  "  access_log " +
                  (dir_ / "logs" / "access.log").string() +
                  ";\n"
                  "  client_body_temp_path " +
                  (dir_ / "tmp").string() +
                  ";\n"
                  "  server {\n    listen 127.0.0.1:" +
                  std::to_string(port) +
                  ";\n"
                  "    root " +
                  www.string() +
                  ";\n"
                  "    location / {\n"
                  "      if ($http_authorization != \"Bearer s3cret-token-for-the-test\") { return "
                  "401; }\n"
                  "    }\n  }\n}\n");
  runner::spawn_options nginx;
  nginx.program = "/usr/sbin/nginx";
  nginx.args = {"-p", dir_.string(), "-c", conf.string()};
  auto server = runner::process::spawn(nginx);
  ASSERT_TRUE(server) << server.error().message;
  for (int i = 0; i < 100 && !accepts(port); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(accepts(port)) << slurp(dir_ / "logs" / "error.log");

  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/repo.git";
  git_mirrors mirrors(dir_ / "mirrors");

  // Without the header: refused by the server; the message names the URL.
  auto r = mirrors.checkout(url, first_, dir_ / "none");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(url), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("asks for credentials"), std::string::npos) << r.error().message;

  // A wrong header: refused too, and the header never appears in the message.
  const std::string wrong = "Authorization: Bearer wrong-token-value";
  r = mirrors.checkout(url, first_, dir_ / "wrong", wrong);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.find("wrong-token-value"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("refused the auth header"), std::string::npos)
      << r.error().message;

  r = mirrors.checkout(url, first_, dir_ / "out", std::string(kToken));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(slurp(dir_ / "out" / "README"), "first\n");
  EXPECT_EQ(slurp(dir_ / "out" / "files" / "f7"), "file 7\n");

  // Every request git made with the header passed the check.
  const std::string log = slurp(dir_ / "logs" / "access.log");
  EXPECT_NE(log.find("/repo.git/info/refs"), std::string::npos) << log;
  EXPECT_NE(log.find("\" 200 "), std::string::npos) << log;
  EXPECT_NE(log.find("\" 401 "), std::string::npos) << log;

  // The mirror's configuration holds no credentials.
  const std::string config = slurp(mirrors.mirror_of(url) / "config");
  EXPECT_EQ(config.find("s3cret"), std::string::npos) << config;
  ASSERT_TRUE(server->signal(SIGTERM));
  (void)server->wait();
}

}  // namespace
}  // namespace pantry::orchestrator::coordinator
