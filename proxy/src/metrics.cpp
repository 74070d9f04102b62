#include "pantry/proxy/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>
#include <system_error>
#include <vector>

namespace pantry::proxy {

namespace {

// Label values: backslash, double quote and line feed are escaped (text format 0.0.4).
void append_label_value(std::string& out, const std::string& v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// HELP text: only backslash and line feed are escaped.
void append_help(std::string& out, const std::string& v) {
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc{} ? end : buf);
  }
}

void append_value(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc{} ? end : buf);
}

void append_series_name(std::string& out, const std::string& name, const labels& l) {
  out += name;
  if (l.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : l) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_label_value(out, v);
    out += '"';
  }
  out += '}';
}

}  // namespace

metrics_registry::family& metrics_registry::family_of(const std::string& name,
                                                      const std::string& help, bool is_counter) {
  auto [it, inserted] = families_.try_emplace(name);
  family& f = it->second;
  if (inserted) f.is_counter = is_counter;
  if (f.help.empty() && !help.empty()) f.help = help;
  return f;
}

void metrics_registry::add(const std::string& name, const labels& l, std::uint64_t delta,
                           const std::string& help) {
  counter_ref(name, l, help).fetch_add(delta, std::memory_order_relaxed);
}

std::atomic<std::uint64_t>& metrics_registry::counter_ref(const std::string& name, const labels& l,
                                                          const std::string& help) {
  std::lock_guard lock(mutex_);
  family& f = family_of(name, help, true);
  if (!f.is_counter) return discard_;
  return f.values.try_emplace(l).first->second.count;
}

void metrics_registry::set(const std::string& name, const labels& l, double value,
                           const std::string& help) {
  std::lock_guard lock(mutex_);
  family& f = family_of(name, help, false);
  if (f.is_counter) return;
  f.values.try_emplace(l).first->second.value = value;
}

void metrics_registry::gauge_fn(const std::string& name, const std::string& help,
                                std::function<double()> fn) {
  std::lock_guard lock(mutex_);
  family& f = family_of(name, help, false);
  if (f.is_counter) return;
  f.fn = std::move(fn);
}

std::uint64_t metrics_registry::counter(const std::string& name, const labels& l) const {
  std::lock_guard lock(mutex_);
  auto f = families_.find(name);
  if (f == families_.end() || !f->second.is_counter) return 0;
  auto s = f->second.values.find(l);
  return s == f->second.values.end() ? 0 : s->second.count.load(std::memory_order_relaxed);
}

std::uint64_t metrics_registry::counter_sum(const std::string& name, const labels& match) const {
  std::lock_guard lock(mutex_);
  auto f = families_.find(name);
  if (f == families_.end() || !f->second.is_counter) return 0;
  std::uint64_t sum = 0;
  for (const auto& [l, s] : f->second.values) {
    const bool all = std::all_of(match.begin(), match.end(), [&l = l](const auto& m) {
      return std::find(l.begin(), l.end(), m) != l.end();
    });
    if (all) sum += s.count.load(std::memory_order_relaxed);
  }
  return sum;
}

std::string metrics_registry::render() const {
  // Formatted under the lock, except the gauge functions, which may take locks of their own:
  // their families are rendered after, in name order with the rest.
  struct pending_fn {
    std::size_t offset;  // where in `out` the family's value line goes
    std::string name;
    std::function<double()> fn;
  };
  std::string out;
  std::vector<pending_fn> fns;
  {
    std::lock_guard lock(mutex_);
    out.reserve(families_.size() * 128);
    for (const auto& [name, f] : families_) {
      if (f.values.empty() && !f.fn) continue;
      if (!f.help.empty()) {
        out += "# HELP ";
        out += name;
        out += ' ';
        append_help(out, f.help);
        out += '\n';
      }
      out += "# TYPE ";
      out += name;
      out += f.is_counter ? " counter\n" : " gauge\n";
      if (f.fn) fns.push_back({out.size(), name, f.fn});
      for (const auto& [l, s] : f.values) {
        append_series_name(out, name, l);
        out += ' ';
        if (f.is_counter) {
          append_value(out, s.count.load(std::memory_order_relaxed));
        } else {
          append_value(out, s.value);
        }
        out += '\n';
      }
    }
  }
  // Insert from the back so that earlier offsets stay right.
  for (auto it = fns.rbegin(); it != fns.rend(); ++it) {
    std::string line = it->name;
    line += ' ';
    append_value(line, it->fn());
    line += '\n';
    out.insert(it->offset, line);
  }
  return out;
}

}  // namespace pantry::proxy
