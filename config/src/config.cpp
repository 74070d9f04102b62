// The public entry points: the embedded defaults, parse() and load_file() (the text as a whole:
// its size, encoding and YAML syntax; the sections read the rest, see section.h), and to_yaml().

#include "pantry/config/config.h"

#include "chars.h"
#include "message.h"
#include "reader.h"
#include "section.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <utility>

namespace pantry::config {
namespace detail {
extern const char kEmbeddedDefaults[];
extern const std::size_t kEmbeddedDefaultsSize;
}  // namespace detail

namespace {

using detail::first_invalid_utf8;
using detail::quote;

constexpr std::string_view kDefaultsSource = "<embedded defaults>";

// A config file is a page or two of YAML; anything this large is the wrong file, and refusing it
// bounds the parser's time and memory on hostile input.
constexpr std::size_t kMaxInputBytes = 1 << 20;

result<config> config_error(std::string msg) {
  return pantry::error(errc::config_error, std::move(msg));
}

// Notes where a document starts and ignores its content.
class document_start_finder final : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;

  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Where `text` goes on after its first YAML document, or nullopt if it ends there. Not
// YAML::LoadAll: yaml-cpp 0.7 does not consume a token that cannot start a node (a ',' at the top
// level), and LoadAll then makes empty documents from it forever; YAML::Load silently stops there.
std::optional<YAML::Mark> after_first_document(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_start_finder first;
  if (!parser.HandleNextDocument(first)) return std::nullopt;
  document_start_finder second;
  if (!parser.HandleNextDocument(second)) return std::nullopt;
  return second.start.value_or(YAML::Mark::null_mark());
}

// 1-based line and column of byte `offset` in `text`.
std::pair<std::size_t, std::size_t> line_col(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, offset - line_start + 1};
}

// The text of 0-based line `line`, without its newline.
std::string_view line_text(std::string_view text, int line) {
  std::size_t start = 0;
  for (int i = 0; i < line; ++i) {
    const std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  const std::size_t end = text.find('\n', start);
  std::string_view out = text.substr(start, end == std::string_view::npos ? end : end - start);
  if (out.ends_with('\r')) out.remove_suffix(1);
  return out;
}

// Parses `yaml` laid over `base`. Never throws.
result<config> parse_over(std::string_view yaml, std::string_view source, const config& base) {
  const std::string src(source);
  if (yaml.size() > kMaxInputBytes) {
    return config_error(src + ":1:1: (file): \"" + std::to_string(yaml.size()) +
                        " bytes\" is too large for a config file (the limit is " +
                        format_size(kMaxInputBytes) + "); check that this is the right file");
  }
  // Refused before yaml-cpp sees it: NUL bytes make yaml-cpp guess UTF-16/32, and strings that
  // are not UTF-8 could not be written back by to_yaml().
  if (const std::size_t bad = std::min(yaml.find('\0'), first_invalid_utf8(yaml));
      bad != std::string_view::npos) {
    const auto [line, col] = line_col(yaml, bad);
    return config_error(src + ":" + std::to_string(line) + ":" + std::to_string(col) +
                        ": (file): " + quote(line_text(yaml, static_cast<int>(line - 1))) +
                        " has a byte that is not UTF-8 text; save the file as UTF-8");
  }
  try {
    const std::string text(yaml);
    YAML::Node root;
    std::optional<YAML::Mark> rest;
    try {
      root = YAML::Load(text);
      rest = after_first_document(text);
    } catch (const YAML::ParserException& e) {
      return config_error(src + ":" + std::to_string(std::max(e.mark.line, 0) + 1) + ":" +
                          std::to_string(std::max(e.mark.column, 0) + 1) + ": (syntax): " +
                          quote(line_text(yaml, e.mark.line)) + " is not valid YAML: " + e.msg +
                          "; check the indentation, colons, brackets and quotes here and on the "
                          "line before");
    }
    if (rest) {
      const std::string_view line = line_text(yaml, rest->line);
      const std::string where = src + ":" + std::to_string(std::max(rest->line, 0) + 1) + ":" +
                                std::to_string(std::max(rest->column, 0) + 1);
      if (line.starts_with("---")) {
        return config_error(where + ": (file): " + quote(line) +
                            " starts a second YAML document; a config is one document, so "
                            "remove the \"---\" and merge the settings into the first");
      }
      return config_error(where + ": (syntax): " + quote(line) +
                          " is not valid YAML: unexpected text after the end of the document; "
                          "check for a stray ',' or indentation that ends the settings early");
    }
    config c = base;
    detail::reader r(source, detail::all_maps());
    detail::read_document(r, root, c);
    if (!r.errors().empty()) {
      std::string msg;
      for (const auto& e : r.errors()) {
        if (!msg.empty()) msg += '\n';
        msg += e;
      }
      if (r.dropped_errors() > 0) {
        msg += "\n" + src + ": " + std::to_string(r.dropped_errors()) + " more errors not shown";
      }
      return config_error(std::move(msg));
    }
    return c;
  } catch (const YAML::Exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()) +
                        "; this is a bug in pantry, please report it with the file");
  } catch (const std::exception& e) {
    return config_error(src + ": cannot read the config: " + std::string(e.what()));
  }
}

// Whether the defaults set every runner key that has no derived value.
bool runner_set(const runner_config& r) {
  return !r.runc.empty() && !r.layers.dir.empty() && r.job_port != 0 && r.max_line != 0 &&
         r.defaults.memory != 0 && r.defaults.pids_limit != 0 && r.defaults.tmpfs_size != 0;
}

}  // namespace

std::string_view embedded_defaults() {
  return {detail::kEmbeddedDefaults, detail::kEmbeddedDefaultsSize};
}

config defaults() {
  static const config kDefaults = [] {
    auto c = parse_over(embedded_defaults(), kDefaultsSource, config{});
    // The defaults are part of the binary: if they do not parse, the build is broken.
    if (!c) {
      std::fprintf(stderr, "pantry: the embedded default config is invalid:\n%s\n",
                   c.error().message.c_str());
      std::abort();
    }
    const config& d = *c;
    const bool timeouts_set =
        d.server.header_timeout.count() > 0 && d.server.idle_timeout.count() > 0 &&
        d.server.shutdown_grace.count() > 0 && d.upstream.connect_timeout.count() > 0 &&
        d.upstream.header_timeout.count() > 0 && d.upstream.idle_timeout.count() > 0;
    if (d.listen.host.empty() || d.data_dir.empty() || d.cache.max_size == 0 ||
        d.pypi.upstreams.empty() || d.oci.upstreams.empty() || d.oci.default_upstream.empty() ||
        d.oci.hosted.prefix.empty() || !timeouts_set || d.upstream.max_idle_connections == 0 ||
        !runner_set(d.runner)) {
      std::fprintf(stderr, "pantry: the embedded default config leaves a required key unset\n");
      std::abort();
    }
    return d;
  }();
  return kDefaults;
}

result<config> parse(std::string_view yaml, std::string_view source) {
  try {
    return parse_over(yaml, source, defaults());
  } catch (const std::exception& e) {
    return config_error(std::string(source) + ": cannot read the config: " + e.what());
  }
}

result<config> load_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    return config_error(path + ": cannot open the config file: " + std::strerror(err) +
                        "; check the path and its permissions");
  }
  std::string text;
  std::array<char, 16384> buf;
  int read_errno = 0;
  while (text.size() <= kMaxInputBytes) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
    text.append(buf.data(), n);
    if (n < buf.size()) {
      if (std::ferror(f)) read_errno = errno;
      break;
    }
  }
  std::fclose(f);
  if (read_errno != 0) {
    return config_error(path + ": cannot read the config file: " + std::strerror(read_errno) +
                        "; give the path of a YAML file");
  }
  return parse(text, path);
}

std::string to_yaml(const config& c, secrets shown) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  detail::emit_document(out, c, shown);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace pantry::config
