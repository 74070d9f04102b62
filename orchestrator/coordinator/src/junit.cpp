// JUnit XML into test results (junit.h).

#include "pantry/orchestrator/coordinator/junit.h"

#include <pugixml.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace pantry::orchestrator::coordinator {
namespace {

constexpr std::array<std::pair<test_outcome, std::string_view>, 4> kOutcomes = {{
    {test_outcome::passed, "passed"},
    {test_outcome::failed, "failed"},
    {test_outcome::error, "error"},
    {test_outcome::skipped, "skipped"},
}};

// How bad an outcome is, for merging the testcases of one id: the worst one is the test's.
int severity(test_outcome o) {
  switch (o) {
    case test_outcome::passed:
      return 0;
    case test_outcome::skipped:
      return 1;
    case test_outcome::failed:
      return 2;
    case test_outcome::error:
      return 3;
  }
  return 0;
}

test_outcome worst(test_outcome a, test_outcome b) {
  return severity(a) >= severity(b) ? a : b;
}

// The longest prefix of `text` of at most `max` bytes that does not end inside a UTF-8 sequence.
std::string utf8_prefix(std::string_view text, std::size_t max) {
  if (text.size() <= max) return std::string(text);
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80 && max - cut < 3) {
    --cut;
  }
  return std::string(text.substr(0, cut));
}

// Seconds from a `time` attribute; 0 when absent or not a finite, non-negative number (some
// runners write "" or "NaN"; a wrong duration must not make the whole file unreadable).
double seconds_of(std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v) || v < 0) {
    return 0;
  }
  return v;
}

// The time a kFailedAtProperty value names; nullopt unless it is 1 to 15 digits (up to the
// year 33658), so that a bad value is ignored rather than overflowing.
std::optional<clock::time_point> failed_at_of(std::string_view text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  std::int64_t ms = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc() || end != text.data() + text.size() || ms < 0) return std::nullopt;
  return clock::time_point(
      std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(ms)));
}

// The earlier of two optional times.
std::optional<clock::time_point> earliest(std::optional<clock::time_point> a,
                                          std::optional<clock::time_point> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

// Merges testcases into results by id, in order of first appearance (junit.h's rules).
class merger {
 public:
  explicit merger(std::vector<test_result>& out) : out_(out) {
    for (std::size_t i = 0; i < out_.size(); ++i)
      index_.emplace(out_[i].id, i);
  }

  void add(test_result r, bool is_rerun) {
    auto [it, inserted] = index_.emplace(r.id, out_.size());
    if (inserted) {
      // A re-run without its first run (the first run's file was unreadable) counts as a run.
      out_.push_back(std::move(r));
      return;
    }
    test_result& have = out_[it->second];
    if (is_rerun) {
      have.rerun = have.rerun ? worst(*have.rerun, r.outcome) : r.outcome;
      return;
    }
    if (have.message.empty() && severity(r.outcome) > severity(have.outcome)) {
      have.message = std::move(r.message);
    }
    have.outcome = worst(have.outcome, r.outcome);
    have.seconds += r.seconds;
    have.failed_at = earliest(have.failed_at, r.failed_at);
    if (r.rerun) have.rerun = have.rerun ? worst(*have.rerun, *r.rerun) : r.rerun;
  }

 private:
  std::vector<test_result>& out_;
  std::unordered_map<std::string, std::size_t> index_;
};

class document_reader {
 public:
  document_reader(std::string_view source, const junit_limits& limits,
                  std::vector<test_result>& out, std::size_t& cases)
      : source_(source), limits_(limits), merger_(out), cases_(cases) {}

  std::optional<error> read(std::string_view bytes) {
    if (bytes.size() > limits_.max_file_bytes) {
      return fail(std::to_string(bytes.size()) + " bytes is more than the limit of " +
                  std::to_string(limits_.max_file_bytes) +
                  "; write smaller files (one per test run or shard)");
    }
    pugi::xml_document doc;
    const pugi::xml_parse_result parsed =
        doc.load_buffer(bytes.data(), bytes.size(), pugi::parse_default, pugi::encoding_auto);
    if (!parsed) {
      return fail(std::string("is not well-formed XML at byte ") + std::to_string(parsed.offset) +
                  ": " + parsed.description() +
                  "; make the test runner write it again (a killed runner leaves it cut)");
    }
    const pugi::xml_node root = doc.document_element();
    const std::string_view root_name = root.name();
    if (root_name != "testsuites" && root_name != "testsuite") {
      return fail("the root element is <" + std::string(root_name) +
                  ">, not <testsuites> or <testsuite>: not a JUnit XML report");
    }
    return walk(root, root.attribute("file").value(), 1);
  }

 private:
  std::optional<error> walk(const pugi::xml_node& suite, std::string_view file, std::size_t depth) {
    if (depth > limits_.max_depth) {
      return fail("test suites are nested more than " + std::to_string(limits_.max_depth) +
                  " deep");
    }
    for (const pugi::xml_node& child : suite.children()) {
      const std::string_view name = child.name();
      if (name == "testsuite" || name == "testsuites") {
        const pugi::xml_attribute own = child.attribute("file");
        if (auto e = walk(child, own ? std::string_view(own.value()) : file, depth + 1)) return e;
      } else if (name == "testcase") {
        if (auto e = test_case(child, file)) return e;
      }
    }
    return std::nullopt;
  }

  std::optional<error> test_case(const pugi::xml_node& tc, std::string_view suite_file) {
    if (++cases_ > limits_.max_test_cases) {
      return fail("more than " + std::to_string(limits_.max_test_cases) +
                  " test cases; split the run or raise the limit");
    }
    test_result r;
    r.name = tc.attribute("name").value();
    r.classname = tc.attribute("classname").value();
    const pugi::xml_attribute file_attribute = tc.attribute("file");
    r.file = file_attribute ? file_attribute.value() : std::string(suite_file);
    if (r.name.empty()) {
      return fail("a <testcase> (classname \"" + utf8_prefix(r.classname, 200) +
                  "\") has no name attribute: not a JUnit XML report");
    }
    r.seconds = seconds_of(tc.attribute("time").value());

    bool is_rerun = false;
    for (const pugi::xml_node& p : tc.child("properties").children("property")) {
      const std::string_view key = p.attribute("name").value();
      if (key == kIdProperty && *p.attribute("value").value() != '\0') {
        r.id = p.attribute("value").value();
      } else if (key == kRerunProperty) {
        is_rerun = std::string_view(p.attribute("value").value()) == "1";
      } else if (key == kFailedAtProperty) {
        r.failed_at = failed_at_of(p.attribute("value").value());
      }
    }
    if (r.id.empty()) {
      r.id = junit_test_id(r.file, r.classname, r.name);
    } else if (auto sep = r.id.find("::"); sep != std::string::npos) {
      r.file = r.id.substr(0, sep);
    }

    bool flaky = false;
    std::optional<test_outcome> rerun_failed;
    for (const pugi::xml_node& child : tc.children()) {
      const std::string_view name = child.name();
      std::optional<test_outcome> o;
      if (name == "failure") o = test_outcome::failed;
      if (name == "error") o = test_outcome::error;
      if (name == "skipped") o = test_outcome::skipped;
      if (name == "flakyFailure" || name == "flakyError") flaky = true;
      if (name == "rerunFailure") rerun_failed = test_outcome::failed;
      if (name == "rerunError") rerun_failed = test_outcome::error;
      if (!o) continue;
      if (r.message.empty() && is_failure(*o)) {
        const pugi::xml_attribute m = child.attribute("message");
        std::string_view text = m ? m.value() : child.text().get();
        r.message = utf8_prefix(text.substr(0, text.find('\n')), kMaxMessage);
      }
      r.outcome = worst(r.outcome, *o);
    }
    // Surefire writes a test that failed and then passed on a re-run as a pass with
    // flakyFailure elements, and one that failed every time with rerunFailure elements.
    if (flaky && r.outcome == test_outcome::passed) {
      r.outcome = test_outcome::failed;
      r.rerun = test_outcome::passed;
    } else if (rerun_failed && is_failure(r.outcome)) {
      r.rerun = rerun_failed;
    }
    merger_.add(std::move(r), is_rerun);
    return std::nullopt;
  }

  error fail(const std::string& why) const {
    return error(errc::invalid_argument, "junit: " + std::string(source_) + ": " + why);
  }

  std::string_view source_;
  const junit_limits& limits_;
  merger merger_;
  std::size_t& cases_;
};

// The bytes of a regular file of at most `max` bytes, opened without following a symbolic link
// (a job's directory is the job's to shape; its links must not read the host's files).
result<std::string> read_small_file(const std::filesystem::path& path, std::uint64_t max) {
  const std::string name = path.string();
  auto fail = [&](const std::string& why) {
    return error(errc::invalid_argument, "junit: " + name + ": " + why);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fail(std::string("cannot open: ") + std::strerror(errno));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_it{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("is not a regular file; write reports as plain files");
  if (static_cast<std::uint64_t>(st.st_size) > max) {
    return fail(std::to_string(st.st_size) + " bytes is more than the limit of " +
                std::to_string(max) + "; write smaller files (one per test run or shard)");
  }
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t have = 0;
  while (have < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + have, bytes.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::string("cannot read: ") + std::strerror(errno));
    if (n == 0) break;  // truncated meanwhile: parse what is there
    have += static_cast<std::size_t>(n);
  }
  bytes.resize(have);
  return bytes;
}

}  // namespace

std::string_view to_string(test_outcome o) noexcept {
  for (const auto& [outcome, name] : kOutcomes) {
    if (outcome == o) return name;
  }
  return "unknown";
}

std::optional<test_outcome> parse_test_outcome(std::string_view text) noexcept {
  for (const auto& [outcome, name] : kOutcomes) {
    if (name == text) return outcome;
  }
  return std::nullopt;
}

bool is_failure(test_outcome o) noexcept {
  return o == test_outcome::failed || o == test_outcome::error;
}

std::string junit_test_id(std::string_view file, std::string_view classname,
                          std::string_view name) {
  std::string id;
  if (file.empty()) {
    if (!classname.empty()) {
      id.append(classname).append("::");
    }
    return id.append(name);
  }
  id.append(file).append("::");
  // pytest's classname is the file's module path ("tests/test_a.py" → "tests.test_a") followed
  // by the classes, which its node id separates with "::".
  std::string_view stem = file;
  const auto slash = file.rfind('/');
  const auto dot = file.rfind('.');
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
    stem = file.substr(0, dot);
  }
  std::string module(stem);
  std::replace(module.begin(), module.end(), '/', '.');
  if (classname.size() > module.size() && classname.starts_with(module) &&
      classname[module.size()] == '.') {
    for (char c : classname.substr(module.size() + 1)) {
      if (c == '.') {
        id.append("::");
      } else {
        id.push_back(c);
      }
    }
    id.append("::");
  } else if (!classname.empty() && classname != module) {
    id.append(classname).append("::");
  }
  return id.append(name);
}

result<std::vector<test_result>> read_junit_xml(std::string_view bytes, std::string_view source,
                                                const junit_limits& limits) {
  std::vector<test_result> out;
  std::size_t cases = 0;
  document_reader reader(source, limits, out, cases);
  if (auto e = reader.read(bytes)) return *e;
  return out;
}

junit_report read_junit_dir(const std::filesystem::path& dir, const junit_limits& limits) {
  junit_report report;
  std::error_code ec;
  if (!std::filesystem::is_directory(std::filesystem::symlink_status(dir, ec))) return report;

  std::vector<std::filesystem::path> files;
  std::filesystem::recursive_directory_iterator it(
      dir, std::filesystem::directory_options::skip_permission_denied, ec);
  if (ec) {
    report.problems.push_back("junit: " + dir.string() + ": cannot list: " + ec.message());
    return report;
  }
  for (; it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      report.problems.push_back("junit: " + dir.string() + ": cannot list: " + ec.message());
      break;
    }
    if (it.depth() >= static_cast<int>(limits.max_depth)) it.disable_recursion_pending();
    std::error_code status_ec;
    const auto status = it->symlink_status(status_ec);
    if (status_ec || !std::filesystem::is_regular_file(status)) continue;
    if (it->path().extension() != ".xml") continue;
    files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  if (files.size() > limits.max_files) {
    report.problems.push_back("junit: " + dir.string() + ": " + std::to_string(files.size()) +
                              " XML files, more than the limit of " +
                              std::to_string(limits.max_files) + "; the first " +
                              std::to_string(limits.max_files) +
                              " in name order were read: merge the reports into fewer files");
    files.resize(limits.max_files);
  }

  std::size_t cases = 0;
  merger all(report.results);
  for (const auto& path : files) {
    auto bytes = read_small_file(path, limits.max_file_bytes);
    if (!bytes) {
      report.problems.push_back(bytes.error().message);
      continue;
    }
    // A file that fails halfway adds nothing: its results are merged only when it is whole.
    std::vector<test_result> own;
    std::size_t file_cases = cases;
    const std::string source = path.string();
    document_reader reader(source, limits, own, file_cases);
    if (auto e = reader.read(*bytes)) {
      report.problems.push_back(e->message);
      continue;
    }
    for (test_result& r : own)
      all.add(std::move(r), false);
    cases = file_cases;
    ++report.files;
  }
  return report;
}

}  // namespace pantry::orchestrator::coordinator
