// A process that owns the cache is SIGKILLed while it writes blobs and its reader threads read
// them; the store left behind must hold exactly the blobs that were committed, intact, no orphan
// chunks once an owner has opened it, and no reader slots of the dead process.

#include "pantry/cache/store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace pantry::cache {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view kMediaType = "application/x-pantry-crash-test";
constexpr int kWriterThreads = 2;
constexpr int kReaderThreads = 3;
// A writer stops here and idles until it is killed, so a kill point that is never reached shows
// as a timeout instead of an unbounded data dir.
constexpr int kMaxBlobsPerWriter = 400;
constexpr auto kRoundTimeout = 30s;

// ---- Deterministic blob contents: the parent recomputes what the child wrote from its seed.

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

std::uint64_t make_seed(int round, int writer, int index) {
  return 1 + static_cast<std::uint64_t>(round) * 100000 + writer * 10000 + index;
}

// Writer 0's first blob of each round is the empty blob, which exists after round 0.
bool is_empty_blob(std::uint64_t seed) {
  return seed % 100000 == 1;
}

// Mostly small blobs, with sizes at and around chunk boundaries and some of several chunks.
std::uint64_t blob_size(std::uint64_t seed) {
  if (is_empty_blob(seed)) return 0;
  std::uint64_t h = splitmix(seed ^ 0x5151);
  std::uint64_t r = h % 100;
  std::uint64_t v = splitmix(h);
  std::uint64_t off = v % 3;  // -1, 0, +1 around a boundary
  if (r < 35) return 16 + v % 4096;
  if (r < 60) return 4096 + v % (256 << 10);
  if (r < 68) return kChunkSize - 1 + off;
  if (r < 74) return 2 * kChunkSize - 1 + off;
  if (r < 88) return (64 << 10) + v % (1 << 20);
  return kChunkSize + v % (4 * kChunkSize);
}

bool is_multi_chunk(std::uint64_t seed) {
  return blob_size(seed) > kChunkSize;
}
bool is_pinned(std::uint64_t seed) {
  return !is_empty_blob(seed) && seed % 7 == 0;
}

// Byte `pos` of blob `seed` is byte pos % 8 of splitmix(key + pos / 8).
void fill_content(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out) {
  std::uint64_t key = splitmix(seed);
  std::size_t i = 0;
  while (i < out.size()) {
    std::uint64_t pos = offset + i;
    std::uint64_t word = splitmix(key + pos / 8);
    std::size_t skip = pos % 8;
    std::size_t n = std::min<std::size_t>(8 - skip, out.size() - i);
    std::memcpy(out.data() + i, reinterpret_cast<const std::byte*>(&word) + skip, n);
    i += n;
  }
}

std::vector<std::byte> content(std::uint64_t seed) {
  std::vector<std::byte> bytes(blob_size(seed));
  fill_content(seed, 0, bytes);
  return bytes;
}

digest digest_of_seed(std::uint64_t seed) {
  return digest::of(content(seed));
}

// Offset of the first byte of `piece` (at blob offset `offset`) that differs from blob `seed`,
// or -1.
std::int64_t first_mismatch(std::uint64_t seed, std::uint64_t offset,
                            std::span<const std::byte> piece) {
  thread_local std::vector<std::byte> expected;
  expected.resize(piece.size());
  fill_content(seed, offset, expected);
  if (std::memcmp(expected.data(), piece.data(), piece.size()) == 0) return -1;
  auto [a, b] = std::mismatch(piece.begin(), piece.end(), expected.begin());
  return static_cast<std::int64_t>(offset + (a - piece.begin()));
}

// ---- What the child reports through its pipe. Each record is one write() of 16 bytes, so it
// arrives whole (<= PIPE_BUF) even when the child dies right after.

// `progress`: the first chunk of a blob is committed and more than a chunk is still to come, so
// killing now leaves orphan chunks.
enum class event : std::uint32_t { ready = 1, begin = 2, commit = 3, progress = 4 };

struct record {
  event kind;
  std::uint32_t unused = 0;
  std::uint64_t seed = 0;
};
static_assert(sizeof(record) == 16);

// ---- The child.

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "crash child %d: %s\n", static_cast<int>(getpid()), what.c_str());
  std::fflush(stderr);
  _exit(2);
}

void report(int fd, event kind, std::uint64_t seed) {
  record r{kind, 0, seed};
  if (write(fd, &r, sizeof r) != static_cast<ssize_t>(sizeof r)) die("pipe write failed");
}

struct child_state {
  std::mutex mu;
  std::vector<std::uint64_t> readable;  // seeds of committed blobs
};

void child_reader(store& s, child_state& state, unsigned rng_seed) {
  std::mt19937_64 rng(rng_seed);
  for (;;) {
    std::uint64_t seed = 0;
    {
      std::lock_guard lock(state.mu);
      if (!state.readable.empty()) seed = state.readable[rng() % state.readable.size()];
    }
    if (seed == 0) {
      std::this_thread::sleep_for(1ms);
      continue;
    }
    digest id = digest_of_seed(seed);
    auto reader = s.open_blob(id);
    if (!reader) {
      die("open_blob " + id.str() + " (seed " + std::to_string(seed) +
          "): " + reader.error().message);
    }
    std::uint64_t size = blob_size(seed);
    if (reader->size() != size) {
      die("open_blob " + id.str() + ": size " + std::to_string(reader->size()) + ", expected " +
          std::to_string(size));
    }
    std::uint64_t at = 0;
    std::int64_t bad = -1;
    // The sink dawdles so that the reader holds its transaction (and reader slot) most of the
    // time: the parent must find the slots of a killed reader.
    auto visited = reader->visit(0, size, [&](std::span<const std::byte> piece) {
      if (bad < 0) bad = first_mismatch(seed, at, piece);
      at += piece.size();
      std::this_thread::sleep_for(1ms);
      return piece.size();
    });
    if (!visited) die("visit " + id.str() + ": " + visited.error().message);
    if (*visited != size || bad >= 0) {
      die("visit " + id.str() + ": consumed " + std::to_string(*visited) + " of " +
          std::to_string(size) + ", first wrong byte at " + std::to_string(bad));
    }
  }
}

// `pause_mid_blob`: once the first chunk of a blob of more than two chunks is committed, report
// `progress` and write nothing more for a while, so that even a parent slowed down by a loaded
// machine kills the child before the blob completes.
void child_writer(store& s, child_state& state, int fd, int round, int writer,
                  bool pause_mid_blob) {
  for (int i = 0; i < kMaxBlobsPerWriter; ++i) {
    std::uint64_t seed = make_seed(round, writer, i);
    std::vector<std::byte> bytes = content(seed);
    digest id = digest::of(bytes);
    report(fd, event::begin, seed);
    if (is_empty_blob(seed) || (bytes.size() < (64 << 10) && seed % 2 == 0)) {
      auto put = s.put_blob(bytes, std::string(kMediaType), is_pinned(seed));
      if (!put) die("put_blob " + id.str() + ": " + put.error().message);
      if (*put != id) die("put_blob returned " + put->str() + ", expected " + id.str());
    } else {
      std::optional<std::uint64_t> expected;
      if (splitmix(seed) % 2 == 0) expected = bytes.size();
      auto w = s.begin_blob(id, std::string(kMediaType), expected, is_pinned(seed));
      if (!w) die("begin_blob " + id.str() + ": " + w.error().message);
      std::uint64_t pos = 0;
      std::uint64_t piece_seed = seed;
      while (pos < bytes.size()) {
        piece_seed = splitmix(piece_seed);
        std::size_t n = std::min<std::uint64_t>(1 + piece_seed % 300000, bytes.size() - pos);
        auto written = w->write(std::span(bytes).subspan(pos, n));
        if (!written) die("write " + id.str() + ": " + written.error().message);
        pos += n;
        // Big blobs arrive slowly, as from a network, which widens the window in which a kill
        // finds some of their chunks committed and the blob not.
        if (bytes.size() > kChunkSize) std::this_thread::sleep_for(1ms);
        // A chunk goes to the store's writer thread once a byte past it arrives.
        if (pause_mid_blob && pos > kChunkSize && pos - n <= kChunkSize &&
            bytes.size() > 2 * kChunkSize) {
          auto deadline = std::chrono::steady_clock::now() + 10s;
          while (w->committed() < kChunkSize) {
            if (std::chrono::steady_clock::now() > deadline) {
              die("chunk 0 of " + id.str() + " not committed after 10 s");
            }
            std::this_thread::sleep_for(100us);
          }
          report(fd, event::progress, seed);
          std::this_thread::sleep_for(300ms);
        }
      }
      auto info = w->commit();
      if (!info) die("commit " + id.str() + ": " + info.error().message);
      if (info->id != id || info->size != bytes.size()) {
        die("commit " + id.str() + " returned " + info->id.str() + " of size " +
            std::to_string(info->size) + ", expected size " + std::to_string(bytes.size()));
      }
    }
    report(fd, event::commit, seed);
    std::lock_guard lock(state.mu);
    state.readable.push_back(seed);
  }
  for (;;)
    pause();
}

// Runs in the forked child until the parent kills it. The parent has no threads when it forks;
// this starts the child's own.
[[noreturn]] void child_main(const fs::path& data_dir, int fd, int round, bool durable,
                             bool pause_mid_blob, std::vector<std::uint64_t> committed) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  options opt;
  opt.data_dir = data_dir;
  opt.durable = durable;
  auto s = store::open(opt);
  if (!s) die("open: " + s.error().message);
  child_state state;
  state.readable = std::move(committed);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReaderThreads; ++i) {
    threads.emplace_back(child_reader, std::ref(**s), std::ref(state), round * 100 + i);
  }
  report(fd, event::ready, 0);
  for (int w = 0; w < kWriterThreads; ++w) {
    threads.emplace_back(child_writer, std::ref(**s), std::ref(state), fd, round, w,
                         pause_mid_blob);
  }
  for (auto& t : threads)
    t.join();
  _exit(3);
}

// ---- Raw LMDB views, for what the store's API cannot show.

std::string mdb_message(int rc) {
  return std::string(mdb_strerror(rc));
}

class raw_env {
 public:
  explicit raw_env(const fs::path& dir) {
    int rc = mdb_env_create(&env_);
    if (rc == 0) rc = mdb_env_set_maxdbs(env_, 64);
    if (rc == 0) rc = mdb_env_open(env_, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644);
    if (rc != 0) error_ = "mdb_env_open " + dir.string() + ": " + mdb_message(rc);
  }
  ~raw_env() {
    if (env_ != nullptr) mdb_env_close(env_);
  }
  raw_env(const raw_env&) = delete;
  raw_env& operator=(const raw_env&) = delete;

  const std::string& error() const { return error_; }

  // mdb_reader_list's text, and its slots counted by pid.
  std::map<pid_t, int> reader_slots(std::string& text) {
    text.clear();
    mdb_reader_list(
        env_,
        [](const char* msg, void* ctx) {
          *static_cast<std::string*>(ctx) += msg;
          return 0;
        },
        &text);
    std::map<pid_t, int> slots;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      char* end = nullptr;
      long pid = std::strtol(line.c_str(), &end, 10);
      if (end != line.c_str() && pid > 0) ++slots[static_cast<pid_t>(pid)];
    }
    return slots;
  }

  // The `blobs` database's keys (digest | u32 big-endian chunk index) grouped by digest.
  std::map<digest, std::vector<std::uint32_t>> chunks() {
    std::map<digest, std::vector<std::uint32_t>> out;
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != 0) {
      error_ = "mdb_txn_begin: " + mdb_message(rc);
      return out;
    }
    MDB_dbi dbi;
    rc = mdb_dbi_open(txn, "blobs", 0, &dbi);
    MDB_cursor* cursor = nullptr;
    if (rc == 0) rc = mdb_cursor_open(txn, dbi, &cursor);
    if (rc != 0) {
      error_ = "open blobs db: " + mdb_message(rc);
      mdb_txn_abort(txn);
      return out;
    }
    MDB_val key, value;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
      if (key.mv_size != digest::kSize + 4) {
        error_ = "blobs key of " + std::to_string(key.mv_size) + " bytes";
        break;
      }
      std::array<std::byte, digest::kSize> bytes;
      std::memcpy(bytes.data(), key.mv_data, digest::kSize);
      const auto* index = static_cast<const unsigned char*>(key.mv_data) + digest::kSize;
      out[digest(bytes)].push_back(std::uint32_t{index[0]} << 24 | std::uint32_t{index[1]} << 16 |
                                   std::uint32_t{index[2]} << 8 | index[3]);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return out;
  }

 private:
  MDB_env* env_ = nullptr;
  std::string error_;
};

// ---- The parent.

// Kills and reaps a child process when the test ends early.
class child_process {
 public:
  child_process() = default;
  explicit child_process(pid_t pid) : pid_(pid) {}
  child_process(child_process&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  child_process& operator=(child_process&& o) noexcept {
    std::swap(pid_, o.pid_);
    return *this;
  }
  ~child_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // SIGKILLs the child and returns its wait status.
  int kill_and_wait() {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "wait status " + std::to_string(status);
}

enum class kill_point {
  after_commits,    // when the child has reported `n` commits
  mid_multi_chunk,  // 0-4 ms after the child begins its n-th blob of several chunks
  mid_chunks,       // when the child reports the n-th blob with its first chunk committed
  random_delay,     // a random 50-600 ms after the child is ready
  during_open,      // a random time shorter than the last fork-to-ready: while the store opens
};

struct round_plan {
  kill_point point;
  int n = 0;
  // Open as owner and check everything after this round; otherwise the next child opens the dir
  // exactly as the crash left it.
  bool check = true;
  bool durable = true;
};

struct round_outcome {
  pid_t pid = 0;
  bool ready = false;
  int commits = 0;
  int progress = 0;
  std::chrono::microseconds killed_after{0};  // since fork
  std::set<std::uint64_t> in_flight;          // begun, commit not reported
};

class CacheCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = fs::temp_directory_path() /
                ("pantry-crash-" + std::to_string(getpid()) + "-" +
                 std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(data_dir_);
    env_dir_ = data_dir_ / "cache";
    const char* env_seed = std::getenv("PANTRY_CRASH_SEED");
    rng_seed_ = env_seed != nullptr ? std::strtoull(env_seed, nullptr, 10) : std::random_device{}();
    rng_.seed(rng_seed_);
    std::cout << "crash test seed " << rng_seed_ << " (set PANTRY_CRASH_SEED to repeat), data dir "
              << data_dir_ << "\n";
  }

  void TearDown() override {
    holder_ = child_process();
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(data_dir_, ec);
  }

  // LMDB resets its reader table when a process opens an environment that no other process has
  // open, which would hide the dead child's slots. A bystander that keeps the environment open
  // (like `pantry cache stats` beside `pantry serve`) keeps them, as in production.
  void start_holder() {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0) << std::strerror(errno);
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(fds[0]);
      raw_env env(env_dir_);
      if (!env.error().empty()) die("holder: " + env.error());
      char ok = 1;
      if (write(fds[1], &ok, 1) != 1) die("holder: pipe write failed");
      for (;;)
        pause();
    }
    holder_ = child_process(pid);
    close(fds[1]);
    char ok = 0;
    ssize_t n = read(fds[0], &ok, 1);
    close(fds[0]);
    ASSERT_EQ(n, 1) << "the holder process failed to open " << env_dir_;
  }

  bool kill_due(const round_plan& plan, const round_outcome& out, int multi_begins,
                std::chrono::steady_clock::time_point forked,
                std::chrono::steady_clock::time_point ready_at, std::chrono::microseconds delay) {
    auto now = std::chrono::steady_clock::now();
    switch (plan.point) {
      case kill_point::after_commits:
        return out.commits >= plan.n;
      case kill_point::mid_multi_chunk:
        return multi_begins >= plan.n;
      case kill_point::mid_chunks:
        return out.progress >= plan.n;
      case kill_point::random_delay:
        return out.ready && now - ready_at >= delay;
      case kill_point::during_open:
        return now - forked >= delay;
    }
    return false;
  }

  // Forks the writer child and SIGKILLs it at the plan's point.
  void run_round(int round, const round_plan& plan, round_outcome& out) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0) << std::strerror(errno);
    std::vector<std::uint64_t> readable;
    for (const auto& [id, seed] : committed_)
      readable.push_back(seed);
    auto forked = std::chrono::steady_clock::now();
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      close(fds[0]);
      child_main(data_dir_, fds[1], round, plan.durable, plan.point == kill_point::mid_chunks,
                 std::move(readable));
    }
    child_process child(pid);
    out.pid = pid;
    close(fds[1]);

    std::chrono::microseconds delay{0};
    if (plan.point == kill_point::random_delay) delay = 50ms + 1us * (rng_() % 550'000);
    if (plan.point == kill_point::during_open) delay = 1us * (rng_() % (open_time_.count() + 1));
    auto ready_at = forked;
    int multi_begins = 0;
    bool killed = false;
    int status = 0;
    std::vector<char> buffer;
    for (;;) {
      if (!killed && kill_due(plan, out, multi_begins, forked, ready_at, delay)) {
        if (plan.point == kill_point::mid_multi_chunk) {
          std::this_thread::sleep_for(std::chrono::microseconds(rng_() % 4000));
        }
        out.killed_after = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - forked);
        status = child.kill_and_wait();
        killed = true;
      }
      if (!killed && std::chrono::steady_clock::now() - forked > kRoundTimeout) {
        child.kill_and_wait();
        close(fds[0]);
        FAIL() << "round " << round << ": the kill point was not reached in "
               << std::chrono::duration_cast<std::chrono::seconds>(kRoundTimeout).count() << " s ("
               << out.commits << " commits reported)";
      }
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, killed ? -1 : 1) <= 0) continue;
      char chunk[4096];
      ssize_t n = read(fds[0], chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buffer.insert(buffer.end(), chunk, chunk + n);
      std::size_t whole = buffer.size() / sizeof(record) * sizeof(record);
      for (std::size_t at = 0; at < whole; at += sizeof(record)) {
        record r;
        std::memcpy(&r, buffer.data() + at, sizeof r);
        switch (r.kind) {
          case event::ready:
            out.ready = true;
            ready_at = std::chrono::steady_clock::now();
            open_time_ = std::chrono::duration_cast<std::chrono::microseconds>(ready_at - forked);
            break;
          case event::begin:
            out.in_flight.insert(r.seed);
            if (is_multi_chunk(r.seed)) ++multi_begins;
            break;
          case event::progress:
            ++out.progress;
            break;
          case event::commit:
            out.in_flight.erase(r.seed);
            ++out.commits;
            committed_.emplace(digest_of_seed(r.seed), r.seed);
            break;
        }
      }
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(whole));
    }
    close(fds[0]);
    if (!killed) status = child.kill_and_wait();
    ASSERT_TRUE(killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": child " << pid << " " << describe_status(status)
        << " before it was killed (its stderr is above)";
    ASSERT_TRUE(buffer.empty()) << "a torn record of " << buffer.size() << " bytes";
  }

  // Before any owner opens the dir: the dead child's reader slots are still there (unless it died
  // before it read), its unfinished blobs' chunks too, and what earlier dead children left is
  // gone once a later child opened the store as owner.
  void check_raw_before_open(int round, const round_outcome& out, bool expect_slots,
                             bool expect_orphans) {
    raw_env env(env_dir_);
    ASSERT_TRUE(env.error().empty()) << env.error();
    std::string list;
    auto slots = env.reader_slots(list);
    if (expect_slots) {
      EXPECT_GT(slots[out.pid], 0) << "round " << round << ": no reader slot of the killed child "
                                   << out.pid << " before reopening; mdb_reader_list:\n"
                                   << list;
    }
    for (pid_t dead : cleaned_dead_) {
      EXPECT_EQ(slots.count(dead), 0u)
          << "round " << round << ": reader slots of child " << dead
          << ", dead before a later child opened as owner, were not reclaimed; mdb_reader_list:\n"
          << list;
    }
    auto chunks = env.chunks();
    ASSERT_TRUE(env.error().empty()) << env.error();
    // The last chunk is written with the object record, so a blob with fewer chunks than its
    // size needs is unfinished.
    auto partial = [&](std::uint64_t seed) {
      auto it = chunks.find(digest_of_seed(seed));
      std::uint64_t have = it == chunks.end() ? 0 : it->second.size();
      return have > 0 && have < (blob_size(seed) + kChunkSize - 1) / kChunkSize;
    };
    int orphans = 0;
    for (std::uint64_t seed : out.in_flight)
      orphans += partial(seed);
    if (expect_orphans) {
      EXPECT_GT(orphans, 0) << "round " << round
                            << ": the kill left no unfinished blob; the test missed its point";
    }
    for (std::uint64_t seed : cleaned_in_flight_) {
      EXPECT_FALSE(partial(seed)) << "round " << round << ": orphan chunks of "
                                  << digest_of_seed(seed).str() << " (seed " << seed
                                  << ") survive a later owner open";
    }
    std::cout << "round " << round << ": child " << out.pid << " killed "
              << out.killed_after.count() / 1000 << " ms after fork ("
              << (out.ready ? "ready" : "not ready") << "), after " << out.commits
              << " commits with " << out.in_flight.size() << " blobs in flight; " << slots[out.pid]
              << " of its reader slots left; " << orphans << " unfinished blobs with chunks\n";
  }

  // Checks the blob's record and, the first time, reads it back and compares it with what its
  // seed makes; after that, verify() re-hashing it proves it unchanged.
  void expect_intact(store& s, const digest& id, std::uint64_t seed) {
    auto info = s.stat_blob(id);
    ASSERT_TRUE(info) << "stat_blob " << id.str() << " (seed " << seed
                      << "), committed before the kill: " << info.error().message;
    std::uint64_t size = blob_size(seed);
    EXPECT_EQ(info->size, size) << id.str();
    EXPECT_EQ(info->media_type, kMediaType) << id.str();
    EXPECT_EQ(info->pinned, is_pinned(seed)) << id.str();
    EXPECT_EQ(info->chunk_count, (size + kChunkSize - 1) / kChunkSize)
        << id.str() << " size " << size;
    if (!chunk_counts_.emplace(id, info->chunk_count).second) return;
    auto reader = s.open_blob(id);
    ASSERT_TRUE(reader) << "open_blob " << id.str() << ": " << reader.error().message;
    std::uint64_t at = 0;
    std::int64_t bad = -1;
    auto visited = reader->visit(0, size, [&](std::span<const std::byte> piece) {
      if (bad < 0) bad = first_mismatch(seed, at, piece);
      at += piece.size();
      return piece.size();
    });
    ASSERT_TRUE(visited) << "visit " << id.str() << ": " << visited.error().message;
    EXPECT_EQ(*visited, size) << id.str();
    EXPECT_EQ(bad, -1) << id.str() << " (seed " << seed << ", size " << size
                       << "): first wrong byte at this offset";
  }

  // Opens as owner and checks every blob, the counts, verify, gc, and then the raw environment.
  void check_after_open(int round) {
    auto start = std::chrono::steady_clock::now();
    {
      options opt;
      opt.data_dir = data_dir_;
      auto opened = store::open(opt);
      ASSERT_TRUE(opened) << "round " << round
                          << ": reopen after the kill: " << opened.error().message;
      store& s = **opened;

      for (const auto& [id, seed] : committed_) {
        expect_intact(s, id, seed);
        if (HasFatalFailure()) return;
      }
      // A blob whose commit the child did not get to report may or may not be there; if it is,
      // it must be whole.
      int appeared = 0;
      for (std::uint64_t seed : unchecked_in_flight_) {
        digest id = digest_of_seed(seed);
        if (committed_.count(id) != 0) continue;
        auto info = s.stat_blob(id);
        if (!info) {
          EXPECT_TRUE(info.error().is(errc::not_found))
              << "stat_blob " << id.str() << ": " << info.error().message;
          continue;
        }
        ++appeared;
        committed_.emplace(id, seed);
        expect_intact(s, id, seed);
        if (HasFatalFailure()) return;
      }

      std::uint64_t bytes = 0, pinned = 0, pinned_bytes = 0;
      for (const auto& [id, seed] : committed_) {
        bytes += blob_size(seed);
        pinned += is_pinned(seed);
        pinned_bytes += is_pinned(seed) ? blob_size(seed) : 0;
      }
      auto st = s.get_stats();
      ASSERT_TRUE(st) << st.error().message;
      EXPECT_EQ(st->objects, committed_.size()) << "round " << round << ": visible blobs";
      EXPECT_EQ(st->bytes, bytes) << "round " << round;
      EXPECT_EQ(st->pinned_objects, pinned) << "round " << round;
      EXPECT_EQ(st->pinned_bytes, pinned_bytes) << "round " << round;

      auto report = s.verify();
      ASSERT_TRUE(report) << report.error().message;
      EXPECT_EQ(report->checked, committed_.size()) << "round " << round;
      EXPECT_EQ(report->bytes, bytes) << "round " << round;
      for (const auto& p : report->problems) {
        ADD_FAILURE() << "round " << round << ": verify: " << p.id.str() << ": " << p.what;
      }

      auto gc = s.gc();
      ASSERT_TRUE(gc) << gc.error().message;
      EXPECT_EQ(gc->orphan_blobs, 0u) << "round " << round << ": orphans left after owner open";
      EXPECT_EQ(gc->orphan_chunks, 0u) << "round " << round;
      EXPECT_EQ(gc->evicted_blobs, 0u) << "round " << round;
      std::cout << "round " << round << ": reopened; " << committed_.size() << " blobs ("
                << bytes / 1024 << " KiB) intact, " << appeared << " in-flight blobs complete\n";
    }

    raw_env env(env_dir_);
    ASSERT_TRUE(env.error().empty()) << env.error();
    std::string list;
    auto slots = env.reader_slots(list);
    for (pid_t pid : pending_dead_) {
      EXPECT_EQ(slots.count(pid), 0u) << "round " << round << ": reader slots of dead child " << pid
                                      << " survive an owner open; mdb_reader_list:\n"
                                      << list;
    }
    auto chunks = env.chunks();
    ASSERT_TRUE(env.error().empty()) << env.error();
    for (const auto& [id, indexes] : chunks) {
      auto count = chunk_counts_.find(id);
      if (count == chunk_counts_.end()) {
        ADD_FAILURE() << "round " << round << ": " << indexes.size() << " orphan chunks of "
                      << id.str() << " after an owner open";
        continue;
      }
      std::vector<std::uint32_t> want(count->second);
      for (std::uint32_t i = 0; i < want.size(); ++i)
        want[i] = i;
      EXPECT_EQ(indexes, want) << "round " << round << ": chunk indexes of " << id.str();
    }
    cleaned_dead_.insert(cleaned_dead_.end(), pending_dead_.begin(), pending_dead_.end());
    cleaned_in_flight_.insert(pending_in_flight_.begin(), pending_in_flight_.end());
    pending_dead_.clear();
    pending_in_flight_.clear();
    unchecked_in_flight_.clear();
    std::cout << "round " << round << ": checked in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count()
              << " ms\n";
  }

  fs::path data_dir_;
  fs::path env_dir_;
  std::uint64_t rng_seed_ = 0;
  std::mt19937_64 rng_;
  // Fork to ready in the last round that got there.
  std::chrono::microseconds open_time_ = 30ms;
  child_process holder_;
  std::map<digest, std::uint64_t> committed_;     // digest -> seed, across rounds
  std::map<digest, std::uint32_t> chunk_counts_;  // blobs read back once, and their chunk counts
  // Killed children, and the seeds they had in flight, since the last owner open.
  std::vector<pid_t> pending_dead_;
  std::set<std::uint64_t> pending_in_flight_;
  // Their reader slots and orphan chunks must be gone: a later process opened as owner.
  std::vector<pid_t> cleaned_dead_;
  std::set<std::uint64_t> cleaned_in_flight_;
  // In-flight seeds not yet looked up by check_after_open.
  std::set<std::uint64_t> unchecked_in_flight_;
};

TEST_F(CacheCrashTest, KilledWriterLeavesOnlyCompleteBlobsAndNoDeadReaders) {
  {
    options opt;
    opt.data_dir = data_dir_;
    auto created = store::open(opt);
    ASSERT_TRUE(created) << created.error().message;
  }
  start_holder();
  if (HasFatalFailure()) return;

  const std::vector<round_plan> plans = {
      {kill_point::after_commits, 8, true, true},
      {kill_point::mid_chunks, 1, true, false},
      {kill_point::random_delay, 0, true, true},
      {kill_point::mid_multi_chunk, 2, true, false},
      // The next children open what a crash left behind; one is killed while it opens and
      // recovers (or soon after).
      {kill_point::mid_chunks, 2, false, true},
      {kill_point::during_open, 0, false, false},
      {kill_point::random_delay, 0, true, true},
      {kill_point::after_commits, 40, true, false},
      {kill_point::mid_chunks, 3, false, true},
      {kill_point::random_delay, 0, false, false},
      {kill_point::mid_chunks, 1, true, true},
      {kill_point::random_delay, 0, true, false},
  };
  // Twice through the plan: the second pass starts from a store that has been through it all.
  for (int round = 0; round < 2 * static_cast<int>(plans.size()); ++round) {
    const round_plan& plan = plans[round % plans.size()];
    round_outcome out;
    run_round(round, plan, out);
    if (HasFatalFailure()) return;
    if (out.ready) {
      cleaned_dead_.insert(cleaned_dead_.end(), pending_dead_.begin(), pending_dead_.end());
      cleaned_in_flight_.insert(pending_in_flight_.begin(), pending_in_flight_.end());
      pending_dead_.clear();
      pending_in_flight_.clear();
    }
    pending_dead_.push_back(out.pid);
    pending_in_flight_.insert(out.in_flight.begin(), out.in_flight.end());
    unchecked_in_flight_.insert(out.in_flight.begin(), out.in_flight.end());
    check_raw_before_open(round, out, out.commits > 0, plan.point == kill_point::mid_chunks);
    if (HasFatalFailure()) return;
    if (!plan.check) continue;
    check_after_open(round);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace pantry::cache
