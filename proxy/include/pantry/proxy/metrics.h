#pragma once

// Prometheus metrics: counters and gauges with labels, rendered in the text exposition format.
// Metric and label names must be valid Prometheus names; label values and help texts may hold
// anything (they are escaped). A name is a counter or a gauge for good: the first call decides,
// and later calls of the other kind on that name are ignored.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pantry::proxy {

using labels = std::vector<std::pair<std::string, std::string>>;

class metrics_registry {
 public:
  // Adds `delta` to the counter `name` with `l` (created at 0 on first use). `help` is used the
  // first time a name is seen. Thread-safe; cheap enough for every request.
  void add(const std::string& name, const labels& l, std::uint64_t delta = 1,
           const std::string& help = {});
  // The cell of counter `name` with `l` (created at 0), for hot paths that add to it without
  // taking the registry's lock: `cell.fetch_add(n, std::memory_order_relaxed)`. The reference
  // stays valid as long as the registry. If `name` is a gauge, returns a cell that is never
  // rendered.
  std::atomic<std::uint64_t>& counter_ref(const std::string& name, const labels& l,
                                          const std::string& help = {});
  // Sets the gauge `name` with `l`.
  void set(const std::string& name, const labels& l, double value, const std::string& help = {});
  // A gauge read at render time (cache size, in-flight requests); replaces an earlier `fn` of
  // that name. `fn` is called without the registry's lock held, from the thread that renders.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);

  // The current value of counter `name` with `l`, 0 if never added to (tests and benchmarks).
  std::uint64_t counter(const std::string& name, const labels& l = {}) const;
  // The sum of counter `name` over every series whose labels include each of `match` (all of
  // them when `match` is empty); 0 if none. Takes the registry's lock.
  std::uint64_t counter_sum(const std::string& name, const labels& match) const;

  // Prometheus text format, version 0.0.4.
  std::string render() const;

 private:
  // One labelled time series. Map nodes never move, so a cell's address is stable.
  struct series {
    std::atomic<std::uint64_t> count{0};  // counters; added to without mutex_
    double value = 0;                     // gauges; guarded by mutex_
  };
  struct family {
    std::string help;
    bool is_counter = true;
    std::map<labels, series> values;
    std::function<double()> fn;
  };
  family& family_of(const std::string& name, const std::string& help, bool is_counter);

  mutable std::mutex mutex_;
  std::map<std::string, family> families_;  // guarded by mutex_
  std::atomic<std::uint64_t> discard_{0};   // the cell handed out for a misused name
};

}  // namespace pantry::proxy
