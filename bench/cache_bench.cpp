// cache_bench: the cache's write and read throughput against plain files on the same disk, and
// the space LMDB takes under write-and-evict churn at a fixed quota. See bench/README.md.
//
//   cache_bench [--dir DIR] [--quick] [--nosync] [--cycles N]

#include "pantry/cache/store.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using pantry::cache::digest;
using pantry::cache::store;
using steady = std::chrono::steady_clock;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
// Proxied bodies arrive in socket-sized pieces; files are written and read in the same pieces.
constexpr std::size_t kPiece = 256 * kKiB;
constexpr double kSpaceTarget = 1.25;

struct args {
  fs::path dir;
  bool quick = false;
  bool durable = true;
  int cycles = 0;  // 0: the default for the mode
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "cache_bench: %s\n", what.c_str());
  std::exit(2);
}

template <class T>
T must(pantry::result<T> r, const std::string& what) {
  if (!r) fail(what + ": " + r.error().message);
  return std::move(*r);
}

void must(pantry::result<void> r, const std::string& what) {
  if (!r) fail(what + ": " + r.error().message);
}

double seconds_since(steady::time_point start) {
  return std::chrono::duration<double>(steady::now() - start).count();
}

double mib(std::uint64_t bytes) {
  return static_cast<double>(bytes) / kMiB;
}

std::string size_label(std::uint64_t size) {
  if (size >= kMiB) return std::to_string(size / kMiB) + " MiB";
  return std::to_string(size / kKiB) + " KiB";
}

void fill_random(std::vector<std::byte>& buf, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i + 8 <= buf.size(); i += 8) {
    std::uint64_t v = rng();
    std::memcpy(buf.data() + i, &v, 8);
  }
}

// Makes blob `index` of a series distinct from the others without regenerating it.
void stamp(std::vector<std::byte>& buf, std::uint64_t index) {
  std::memcpy(buf.data(), &index, std::min<std::size_t>(8, buf.size()));
}

std::shared_ptr<store> open_store(const fs::path& dir, std::uint64_t quota, bool durable) {
  pantry::cache::options opt;
  opt.data_dir = dir;
  opt.max_size = quota;
  opt.durable = durable;
  return must(store::open(opt), "open " + dir.string());
}

// Writes one blob the way the proxy does: streamed in pieces, committed after the last.
void write_blob(store& s, const digest& id, std::span<const std::byte> bytes) {
  if (bytes.size() <= 64 * kKiB) {
    must(s.put_blob(bytes, "application/octet-stream"), "put_blob " + id.short_str());
    return;
  }
  auto w = must(s.begin_blob(id, "application/octet-stream", bytes.size()),
                "begin_blob " + id.short_str());
  for (std::size_t at = 0; at < bytes.size(); at += kPiece) {
    must(w.write(bytes.subspan(at, std::min(kPiece, bytes.size() - at))),
         "write " + id.short_str());
  }
  must(w.commit(), "commit " + id.short_str());
}

// Reads a whole blob into `sink_buf` piece by piece, as a server copies it to a socket buffer.
std::uint64_t read_blob(store& s, const digest& id, std::vector<std::byte>& sink_buf) {
  auto r = s.open_blob(id);
  if (!r) return 0;
  std::size_t at = 0;
  auto n = r->visit(0, r->size(), [&](std::span<const std::byte> piece) {
    for (std::size_t done = 0; done < piece.size();) {
      std::size_t n = std::min(piece.size() - done, sink_buf.size() - at);
      std::memcpy(sink_buf.data() + at, piece.data() + done, n);
      done += n;
      at = (at + n) % sink_buf.size();
    }
    return piece.size();
  });
  return n ? *n : 0;
}

void write_file(const fs::path& path, std::span<const std::byte> bytes, bool durable) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("open " + path.string() + ": " + std::strerror(errno));
  for (std::size_t at = 0; at < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + at, std::min(kPiece, bytes.size() - at));
    if (n < 0) fail("write " + path.string() + ": " + std::strerror(errno));
    at += static_cast<std::size_t>(n);
  }
  if (durable && ::fsync(fd) != 0) fail("fsync " + path.string() + ": " + std::strerror(errno));
  ::close(fd);
}

std::uint64_t read_file(const fs::path& path, std::vector<std::byte>& buf) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open " + path.string() + ": " + std::strerror(errno));
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) fail("read " + path.string() + ": " + std::strerror(errno));
    if (n == 0) break;
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return total;
}

struct throughput_row {
  std::uint64_t size = 0;
  int count = 0;
  double pantry_write = 0, files_write = 0, pantry_read = 0, files_read = 0;  // MiB/s
};

throughput_row measure_throughput(const fs::path& base, std::uint64_t size, int count,
                                  bool durable) {
  throughput_row row{size, count};
  fs::path pantry_dir = base / ("pantry-" + size_label(size));
  fs::path files_dir = base / ("files-" + size_label(size));
  fs::create_directories(files_dir);
  std::uint64_t total = size * static_cast<std::uint64_t>(count);

  std::vector<std::byte> bytes(size);
  fill_random(bytes, size);
  std::vector<digest> ids;
  for (int i = 0; i < count; ++i) {
    stamp(bytes, static_cast<std::uint64_t>(i));
    ids.push_back(digest::of(bytes));
  }
  std::vector<std::byte> sink_buf(kPiece);

  // The map must hold the whole series; no quota, so nothing is evicted.
  {
    pantry::cache::options opt;
    opt.data_dir = pantry_dir;
    opt.durable = durable;
    opt.map_size = std::max<std::uint64_t>(2 * total, 1024 * kMiB);
    auto s = must(store::open(opt), "open " + pantry_dir.string());

    auto start = steady::now();
    for (int i = 0; i < count; ++i) {
      stamp(bytes, static_cast<std::uint64_t>(i));
      write_blob(*s, ids[i], bytes);
    }
    row.pantry_write = mib(total) / seconds_since(start);

    start = steady::now();
    std::uint64_t read = 0;
    for (const digest& id : ids)
      read += read_blob(*s, id, sink_buf);
    row.pantry_read = mib(total) / seconds_since(start);
    if (read != total) fail("read back " + std::to_string(read) + " of " + std::to_string(total));
  }

  auto start = steady::now();
  for (int i = 0; i < count; ++i) {
    stamp(bytes, static_cast<std::uint64_t>(i));
    write_file(files_dir / std::to_string(i), bytes, durable);
  }
  row.files_write = mib(total) / seconds_since(start);

  start = steady::now();
  std::uint64_t read = 0;
  for (int i = 0; i < count; ++i)
    read += read_file(files_dir / std::to_string(i), sink_buf);
  row.files_read = mib(total) / seconds_since(start);
  if (read != total) fail("read back " + std::to_string(read) + " of " + std::to_string(total));

  fs::remove_all(pantry_dir);
  fs::remove_all(files_dir);
  return row;
}

// Sizes for the churn: mostly small files, some layers of up to a tenth of the quota; by bytes
// the big ones dominate, as in a real cache.
std::uint64_t churn_size(std::mt19937_64& rng, std::uint64_t quota) {
  std::uint64_t r = rng() % 100;
  if (r < 50) return 1 * kKiB + rng() % (64 * kKiB);
  if (r < 85) return 64 * kKiB + rng() % (2 * kMiB);
  return 2 * kMiB + rng() % (quota / 10 - 2 * kMiB);
}

// Returns the largest used_bytes / quota seen.
double measure_space(const fs::path& base, std::uint64_t quota, int cycles, bool durable) {
  fs::path dir = base / "space";
  auto s = open_store(dir, quota, durable);
  std::printf(
      "\nspace: quota %.0f MiB, map %.0f MiB, %d cycles of writing %.0f MiB of new blobs "
      "(1 KiB-%.0f MiB) with 2 readers active\n",
      mib(quota), mib(must(s->get_stats(), "stats").map_size), cycles, mib(quota), mib(quota / 10));
  std::printf("%6s %8s %10s %10s %10s %10s %8s\n", "cycle", "blobs", "written", "cached", "used",
              "evicted", "used/q");

  std::mutex mu;
  std::vector<digest> written;  // every blob written; readers pick among the recent ones
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0}, read_bytes{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      std::vector<std::byte> sink_buf(kPiece);
      while (!stop) {
        digest id;
        {
          std::lock_guard lock(mu);
          if (written.empty()) {
            id = {};
          } else {
            std::size_t recent = std::min<std::size_t>(written.size(), 2000);
            id = written[written.size() - 1 - rng() % recent];
          }
        }
        if (id == digest{}) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        read_bytes += read_blob(*s, id, sink_buf);
        ++reads;
      }
    });
  }

  std::mt19937_64 rng(42);
  std::vector<std::byte> bytes(quota / 10);
  fill_random(bytes, 7);
  std::uint64_t serial = 0;
  double worst = 0;
  auto start = steady::now();
  for (int cycle = 1; cycle <= cycles; ++cycle) {
    std::uint64_t cycle_bytes = 0;
    int blobs = 0;
    while (cycle_bytes < quota) {
      std::uint64_t size = churn_size(rng, quota);
      stamp(bytes, ++serial);
      std::span<const std::byte> blob(bytes.data(), size);
      digest id = digest::of(blob);
      write_blob(*s, id, blob);
      {
        std::lock_guard lock(mu);
        written.push_back(id);
      }
      cycle_bytes += size;
      ++blobs;
    }
    auto st = must(s->get_stats(), "stats");
    double ratio = static_cast<double>(st.used_bytes) / static_cast<double>(quota);
    worst = std::max(worst, ratio);
    std::printf("%6d %8d %9.1fM %9.1fM %9.1fM %9.1fM %8.3f\n", cycle, blobs, mib(cycle_bytes),
                mib(st.bytes), mib(st.used_bytes), mib(st.evicted_bytes), ratio);
    std::fflush(stdout);
  }
  stop = true;
  for (auto& t : readers)
    t.join();
  auto st = must(s->get_stats(), "stats");
  std::printf("space: %.1f s, %llu reads (%.0f MiB) beside the writer, %llu evictions\n",
              seconds_since(start), static_cast<unsigned long long>(reads.load()),
              mib(read_bytes.load()), static_cast<unsigned long long>(st.evictions));
  s.reset();
  fs::remove_all(dir);
  return worst;
}

// Other work on the machine skews every figure; the first three fields of /proc/loadavg say how
// much there was.
std::string load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "unknown";
  char buf[64] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string s(buf, n);
  std::size_t end = 0;
  for (int field = 0; field < 3 && end != std::string::npos; ++field)
    end = s.find(' ', end + 1);
  return s.substr(0, end);
}

// A temp dir on a real disk: LMDB on tmpfs would measure memory, not the disk.
fs::path default_base() {
  fs::path tmp = fs::temp_directory_path();
  struct statfs st {};
  if (statfs(tmp.c_str(), &st) == 0 && st.f_type == TMPFS_MAGIC) return fs::current_path();
  return tmp;
}

args parse_args(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      a.dir = argv[++i];
    } else if (arg == "--quick") {
      a.quick = true;
    } else if (arg == "--nosync") {
      a.durable = false;
    } else if (arg == "--cycles" && i + 1 < argc) {
      a.cycles = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: cache_bench [--dir DIR] [--quick] [--nosync] [--cycles N]\n"
                   "  --dir DIR  put the scratch dir under DIR (default: the temp dir, unless "
                   "it is tmpfs)\n"
                   "  --quick    small counts, for a smoke run\n"
                   "  --nosync   no fsync on either side (options.durable = false)\n"
                   "  --cycles N write-and-evict cycles of the space test (default 20, quick 5)\n");
      std::exit(arg == "--help" || arg == "-h" ? 0 : 2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  args a = parse_args(argc, argv);
  fs::path parent = a.dir.empty() ? default_base() : a.dir;
  std::string pattern = (parent / "pantry-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) fail("mkdtemp " + pattern + ": " + std::strerror(errno));
  fs::path base = pattern;

  struct workload {
    std::uint64_t size;
    int count;
  };
  std::vector<workload> workloads = {{4 * kKiB, 20000}, {1 * kMiB, 500}, {256 * kMiB, 3}};
  std::uint64_t quota = 256 * kMiB;
  int cycles = 20;
  if (a.quick) {
    workloads = {{4 * kKiB, 1000}, {1 * kMiB, 40}, {64 * kMiB, 1}};
    quota = 128 * kMiB;
    cycles = 5;
  }
  if (a.cycles > 0) cycles = a.cycles;

  std::printf("cache_bench in %s; %s; reads warm (page cache), one thread; load average %s\n",
              base.c_str(),
              a.durable ? "durable: options.durable = true vs write + fsync per file"
                        : "not durable: options.durable = false vs write without fsync",
              load_average().c_str());
  std::printf("\n%16s | %-26s | %-26s\n", "", "write MiB/s", "read MiB/s");
  std::printf("%-8s %7s | %8s %8s %8s | %8s %8s %8s\n", "size", "count", "pantry", "files", "ratio",
              "pantry", "files", "ratio");
  for (const auto& w : workloads) {
    throughput_row r = measure_throughput(base, w.size, w.count, a.durable);
    std::printf("%-8s %7d | %8.1f %8.1f %8.2f | %8.0f %8.0f %8.2f\n", size_label(r.size).c_str(),
                r.count, r.pantry_write, r.files_write, r.pantry_write / r.files_write,
                r.pantry_read, r.files_read, r.pantry_read / r.files_read);
    std::fflush(stdout);
  }

  double worst = measure_space(base, quota, cycles, a.durable);
  fs::remove_all(base);
  std::printf("load average %s\n", load_average().c_str());
  bool ok = worst < kSpaceTarget;
  std::printf("space ratio max %.3f (target < %.2f)%s\n", worst, kSpaceTarget, ok ? "" : " MISSED");
  return ok ? 0 : 1;
}
