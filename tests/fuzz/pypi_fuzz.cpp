// libFuzzer target for pantry's PyPI protocol code: the simple API parsers (HTML and JSON, project
// and root pages), the JSON API rewriter, file paths, Accept negotiation, names, requirements
// files, PEP 440 versions and the choice of a pin's files. None may crash, hang or throw;
// whatever parses must survive the round trips the headers promise.

#include "pantry/registry/pypi/file_path.h"
#include "pantry/registry/pypi/json_api.h"
#include "pantry/registry/pypi/names.h"
#include "pantry/registry/pypi/negotiate.h"
#include "pantry/registry/pypi/requirements.h"
#include "pantry/registry/pypi/simple.h"
#include "pantry/registry/pypi/wheel.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace pypi = pantry::registry::pypi;

constexpr std::string_view kPageUrl = "https://upstream.example/simple/proj/";

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "pypi_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

std::string identity(std::string_view url) {
  return std::string(url);
}

// Every file URL a parser returns has a pantry file path, and parse_file_path inverts it.
void check_file_paths(const pypi::project_page& page, std::string_view input) {
  for (const auto& f : page.files) {
    const std::string path = pypi::file_path_for("up", f.url);
    check(!path.empty(), "file_path_for(parsed url) is not empty", input);
    auto parsed = pypi::parse_file_path(path);
    check(parsed.has_value(), "parse_file_path(file_path_for(url)) succeeds", input);
    check("/files/" + parsed->upstream + "/" + parsed->location == path, "file path inverse",
          input);
  }
}

// Rendering is a fixed point after one trip: parse(render(p2)) == p2 where p2 = parse(render(p)).
void check_html_round_trip(const pypi::project_page& page, std::string_view input) {
  auto p2 = pypi::parse_project_html(pypi::render_project_html(page, identity), kPageUrl);
  check(p2.has_value(), "parse_project_html(render_project_html(p))", input);
  check(p2->files.size() == page.files.size(), "HTML round trip keeps every file", input);
  for (std::size_t i = 0; i < page.files.size(); ++i) {
    check(p2->files[i].url == page.files[i].url, "HTML round trip keeps URLs", input);
    check(p2->files[i].requires_python == page.files[i].requires_python,
          "HTML round trip keeps requires-python", input);
    check(p2->files[i].yanked == page.files[i].yanked, "HTML round trip keeps yanked", input);
    check(p2->files[i].core_metadata.has_value() == page.files[i].core_metadata.has_value(),
          "HTML round trip keeps core metadata", input);
  }
  auto p3 = pypi::parse_project_html(pypi::render_project_html(*p2, identity), kPageUrl);
  check(p3.has_value() && p3->files == p2->files, "HTML rendering is stable", input);
}

void check_json_round_trip(const pypi::project_page& page, std::string_view input) {
  auto p2 = pypi::parse_project_json(pypi::render_project_json(page, identity), kPageUrl);
  check(p2.has_value(), "parse_project_json(render_project_json(p))", input);
  check(p2->files.size() == page.files.size(), "JSON round trip keeps every file", input);
  for (std::size_t i = 0; i < page.files.size(); ++i) {
    const auto& a = page.files[i];
    const auto& b = p2->files[i];
    check(a.filename == b.filename && a.url == b.url && a.hashes == b.hashes &&
              a.requires_python == b.requires_python && a.yanked == b.yanked &&
              a.core_metadata == b.core_metadata,
          "JSON round trip keeps file fields", input);
  }
  auto p3 = pypi::parse_project_json(pypi::render_project_json(*p2, identity), kPageUrl);
  check(p3.has_value() && *p3 == *p2, "JSON rendering is stable", input);
}

// Requirements files: what parses is pinned and matches its own version. Includes are answered
// with the input itself, a few times only (each include of a new path reads it again).
void check_requirements(std::string_view text) {
  int reads = 0;
  const pypi::file_reader read = [&](const std::string&) -> pantry::result<std::string> {
    if (++reads > 4) return pantry::error(pantry::errc::not_found, "enough");
    return std::string(text);
  };
  const auto reqs = pypi::parse_requirements(text, "fuzz/requirements.txt", read);
  for (const auto& p : reqs.pins) {
    check(pantry::is_normalized_project_name(p.name) && pantry::is_valid_project_name(p.name),
          "pin names are valid", text);
    check(pypi::version_matches(p, p.version), "a pin matches its own version", text);
  }
  if (auto v = pypi::normalize_version(text)) {
    check(pypi::normalize_version(*v) == v, "normalize_version is idempotent", text);
    pypi::pin p;
    p.name = "proj";
    p.version = std::string(text);
    check(pypi::version_matches(p, *v), "a version matches its normalized form", text);
  }
  pypi::file_filter filter;
  filter.platforms = {"manylinux_2_28_x86_64", "win_amd64"};
  filter.python = std::pair(3u, 11u);
  (void)pypi::wheel_matches(text, filter);
}

// The files a pin chooses are files of the page, of the pinned version.
void check_choice(const pypi::project_page& page, std::string_view input) {
  pypi::pin p;
  p.name = "proj";
  p.version = "1.0";
  pypi::file_filter filter;
  filter.platforms = {"manylinux2014_x86_64"};
  for (const auto& f : {pypi::file_filter{}, filter}) {
    const auto choice = pypi::choose_files(page, p, f);
    check((choice.result == pypi::file_choice::outcome::ok) != choice.files.empty(),
          "choose_files: ok iff files were chosen", input);
    for (auto i : choice.files) {
      check(i < page.files.size(), "choose_files: index in range", input);
      const auto dist = pypi::parse_dist_filename(page.files[i].filename, p.name);
      check(dist.has_value() && pypi::version_matches(p, dist->version),
            "choose_files: a file of the pinned version", input);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto page = pypi::parse_project_html(text, kPageUrl)) {
    check(page->from_html, "HTML page is from_html", text);
    check_file_paths(*page, text);
    check_html_round_trip(*page, text);
    check_json_round_trip(*page, text);
  }
  if (auto page = pypi::parse_project_json(text, kPageUrl)) {
    check_file_paths(*page, text);
    check_choice(*page, text);
    check_html_round_trip(*page, text);
    check_json_round_trip(*page, text);
  }
  if (auto names = pypi::parse_root_html(text)) {
    auto again = pypi::parse_root_html(pypi::render_root_html(*names));
    check(again.has_value() && *again == *names, "root HTML round trip", text);
    auto from_json = pypi::parse_root_json(pypi::render_root_json(*names));
    check(from_json.has_value() && *from_json == *names, "root HTML -> JSON round trip", text);
  }
  if (auto names = pypi::parse_root_json(text)) {
    auto again = pypi::parse_root_json(pypi::render_root_json(*names));
    check(again.has_value() && *again == *names, "root JSON round trip", text);
  }
  auto same = [](const pypi::json_api_file& f) { return f.url; };
  if (auto out = pypi::rewrite_json_api(text, "https://pypi.example/pypi/proj/json", same)) {
    auto again = pypi::rewrite_json_api(*out, "https://pypi.example/pypi/proj/json", same);
    check(again.has_value() && *again == *out, "JSON API rewrite is stable", text);
  }
  if (auto loc = pypi::parse_file_path(text)) {
    const std::string path = pypi::file_path_for(loc->upstream, "https://" + loc->location);
    check(path == "/files/" + loc->upstream + "/" + loc->location, "file path round trip", text);
  }

  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= text.size();) {
    const std::size_t nl = text.find('\n', start);
    lines.push_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  (void)pypi::negotiate(lines);

  const std::string n = pantry::normalize_project_name(text);
  check(pantry::normalize_project_name(n) == n && pantry::is_normalized_project_name(n),
        "normalize_name is idempotent", text);
  check(pantry::is_normalized_project_name(text) == (n == text),
        "is_normalized agrees with normalize_name", text);
  if (pantry::is_valid_project_name(text))
    check(pantry::is_valid_project_name(n), "normalized valid name", text);
  (void)pypi::parse_dist_filename(text, "");
  if (text.substr(0, 2) == "PK") {
    // Zips: libarchive is not instrumented, but its calls into pantry's callbacks are.
    const auto bytes = std::as_bytes(std::span(text.data(), text.size()));
    auto from_memory = pypi::extract_wheel_metadata(bytes, "proj-1.0-py3-none-any.whl");
    const pypi::byte_source source{
        text.size(), [&](std::uint64_t offset, std::span<std::byte> out) {
          const std::size_t n = std::min<std::size_t>(out.size(), text.size() - offset);
          std::memcpy(out.data(), text.data() + offset, n);
          return pantry::result<std::size_t>(n);
        }};
    auto from_source = pypi::extract_wheel_metadata(source, "proj-1.0-py3-none-any.whl");
    check(from_memory.has_value() == from_source.has_value() &&
              (!from_memory || *from_memory == *from_source),
          "wheel metadata from memory == from a byte source", text);
  }
  (void)pypi::parse_dist_filename(text, "proj");
  check_requirements(text);
  return 0;
}
