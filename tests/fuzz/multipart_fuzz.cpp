// libFuzzer target for the hosted PyPI indexes' upload parsing: the multipart/form-data push
// parser (any body, fed whole and in pieces of every size the input picks), the Content-Type and
// Content-Disposition readers, the upload file name checks, core metadata fields and the hosted
// project record. None may crash, hang or throw; the parser must hand over the same parts
// however the body is split, and a record must survive serialization.

#include "pantry/registry/pypi/hosted.h"
#include "pantry/registry/pypi/multipart.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace pypi = pantry::registry::pypi;

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "multipart_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

// Everything the parser hands over, as one transcript.
struct transcript : pypi::multipart_parser::handler {
  std::string text;
  pantry::result<void> part_begin(const pypi::form_part& p) override {
    text +=
        "[begin " + p.name + "|" + (p.filename ? *p.filename : "-") + "|" + p.content_type + "]";
    return {};
  }
  pantry::result<void> part_data(std::span<const std::byte> bytes) override {
    if (bytes.empty()) __builtin_trap();  // the contract: never empty
    text.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return {};
  }
  pantry::result<void> part_end() override {
    text += "[end]";
    return {};
  }
};

struct outcome {
  std::string text;
  bool ok = false;
  bool done = false;
};

outcome parse(std::string_view boundary, std::string_view body, std::size_t piece) {
  transcript t;
  pypi::multipart_parser p{std::string(boundary), t};
  outcome o;
  o.ok = true;
  for (std::size_t i = 0; i < body.size() && o.ok; i += piece) {
    auto chunk = body.substr(i, piece);
    o.ok = p.feed(std::as_bytes(std::span(chunk.data(), chunk.size()))).has_value();
  }
  if (o.ok) o.ok = p.finish().has_value();
  o.done = p.done();
  o.text = std::move(t.text);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty()) return 0;
  // First byte: the piece size; then "<content type>\n<body>".
  const std::size_t piece = static_cast<unsigned char>(input[0]) % 31 + 1;
  const std::string_view rest = input.substr(1);
  const std::size_t nl = rest.find('\n');
  const std::string_view content_type = rest.substr(0, nl);
  const std::string_view body =
      nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);

  (void)pypi::parse_content_disposition(content_type);
  auto boundary = pypi::multipart_boundary(content_type);
  if (boundary) {
    check(!boundary->empty() && boundary->size() <= 70, "boundary is 1 to 70 characters", input);
    const outcome whole = parse(*boundary, body, body.size() + 1);
    const outcome split = parse(*boundary, body, piece);
    check(whole.ok == split.ok, "a split body parses as the whole one", input);
    if (whole.ok) {
      check(whole.done && split.done, "a parse that finished saw the closing delimiter", input);
      check(whole.text == split.text, "a split body gives the same parts", input);
    }
  }

  // The upload checks and metadata fields on the same bytes.
  const std::size_t tab = body.find('\t');
  const std::string_view filename = body.substr(0, tab);
  const std::string_view name = tab == std::string_view::npos ? body : body.substr(tab + 1);
  for (std::string_view type : {"sdist", "bdist_wheel"}) {
    auto u = pypi::check_upload_filename(filename, name.substr(0, 64), "1.0", type);
    if (u) check(!u->project.empty(), "an accepted upload has a project", input);
  }
  (void)pypi::metadata_field(body, "Requires-Python");

  pypi::hosted_project p;
  p.name = std::string(content_type);
  pypi::hosted_file f;
  f.filename = std::string(filename);
  f.version = std::string(name.substr(0, 16));
  f.sha256 = std::string(64, 'a');
  f.size = body.size();
  f.upload_time = "2026-12-07T00:00:00.000000Z";
  if (body.size() % 2 == 0) f.yanked = std::string(name);
  p.files.push_back(f);
  auto back = pypi::parse_hosted_project(pypi::serialize_hosted_project(p));
  check(back.has_value(), "a hosted project record parses back", input);
  // Equal when every string is valid UTF-8 (serialize repairs the others): the repaired record
  // is a fixed point.
  auto again = pypi::parse_hosted_project(pypi::serialize_hosted_project(*back));
  check(again.has_value() && *again == *back, "a hosted project record round-trips", input);
  (void)pypi::set_yanked(p, f.version, std::nullopt);
  (void)pypi::hosted_page(p, "/team/files/x/");
  return 0;
}
