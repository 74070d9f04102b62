// libFuzzer target for the pin bot's readers (orchestrator/pins): requirements file documents
// and their edits, image references in Containerfiles and .pantry.yml, cron schedules, and its
// decisions with the input as every version's core metadata (a peer's bytes). None may crash,
// hang or throw; a document renders its input byte for byte, an edit changes only its own byte
// range, a found image's range holds what was read, a registry's Docker-Content-Digest (the input
// again) is taken only when it is a sha256 digest and the image's branch is one ref component, a
// schedule's next time is later, and a decision's edits either apply whole or leave the document
// as it was.

#include "pantry/config/cron.h"
#include "pantry/orchestrator/pins/decide.h"
#include "pantry/orchestrator/pins/image_pins.h"
#include "pantry/orchestrator/pins/image_refs.h"
#include "pantry/orchestrator/pins/index_fallback.h"
#include "pantry/orchestrator/pins/requirements_file.h"
#include "pantry/registry/pypi/metadata.h"
#include "pantry/text.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

namespace pins = pantry::orchestrator::pins;
namespace pypi = pantry::registry::pypi;

constexpr std::string_view kHash =
    "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
constexpr std::string_view kDigest =
    "sha256:4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";

void check(bool ok, const char* what, std::string_view input) {
  if (ok) return;
  std::fprintf(stderr, "pins_fuzz: %s failed for input of %zu bytes\n", what, input.size());
  __builtin_trap();
}

// `after` is `before` with [begin, end) replaced: the bytes around it are unchanged.
bool spliced(std::string_view before, std::string_view after, std::size_t begin, std::size_t end) {
  const std::size_t tail = before.size() - end;
  return after.size() >= begin + tail && after.substr(0, begin) == before.substr(0, begin) &&
         after.substr(after.size() - tail) == before.substr(end);
}

void check_requirements(std::string_view text) {
  auto doc = pins::requirements_file::parse(std::string(text), "fuzz.txt");
  if (!doc) return;
  check(doc->render() == text, "a document renders its input", text);
  const auto version = pypi::version::parse("9.9.9").value();
  for (std::size_t i = 0; i < doc->requirements().size() && i < 4; ++i) {
    auto copy = *doc;
    const auto e = copy.requirements()[i];
    check(e.begin <= e.end && e.end <= e.via_end && e.via_end <= text.size(),
          "ranges are ordered and in the text", text);
    if (copy.set_pin(i, version, {std::string(kHash)})) {
      check(spliced(text, copy.render(), e.begin, e.end), "set_pin changes only its lines", text);
      check(copy.requirements()[i].pinned_version() == "9.9.9", "set_pin pins the version", text);
    } else {
      check(copy.render() == text, "a failed set_pin changes nothing", text);
    }
  }
  auto added = *doc;
  if (added.add_pin("zz-fuzz-new", version, {std::string(kHash)}, "fuzz")) {
    check(added.find("zz-fuzz-new").size() == 1, "add_pin adds the requirement", text);
    check(added.requirements().size() == doc->requirements().size() + 1,
          "add_pin adds one requirement", text);
  }
}

void check_images(const pins::image_sites& sites, std::string_view text) {
  for (const auto& site : sites.images) {
    check(site.begin <= site.end && site.end <= text.size() &&
              text.substr(site.begin, site.end - site.begin) == site.written,
          "an image's range holds what was read", text);
    auto rewritten = pins::replace_digest(text, site, kDigest);
    check(rewritten.has_value(), "replace_digest of a found image", text);
    check(spliced(text, *rewritten, site.begin, site.end), "replace_digest changes only its range",
          text);
    const auto& ref = site.reference;
    if (ref.tag.empty() || ref.digest.empty()) {
      check(pins::unchecked_image(ref).has_value(), "an image without tag or digest is unchecked",
            text);
      continue;
    }
    // The registry's header is a peer's bytes: the input itself.
    auto digest = pins::read_tag_digest(ref, 200, text);
    check(!digest || (*digest == text && digest->size() == kDigest.size()),
          "only a sha256 digest is read from the registry", text);
    const auto plan = pins::decide_image(ref, digest ? *digest : std::string(kDigest));
    const std::string branch = pins::image_branch(plan);
    check(branch.find(':') == std::string::npos &&
              branch.find('/', std::string_view("pantry/pins/").size()) == std::string::npos,
          "an image's branch is one ref component under pantry/pins/", text);
    check(!pins::summary(plan).empty(), "an image plan has a summary", text);
  }
}

void check_cron(std::string_view text) {
  auto s = pantry::config::cron_schedule::parse(text);
  if (!s) return;
  const auto from =
      std::chrono::sys_days{std::chrono::year{2024} / 2 / 28} + std::chrono::hours{23};
  const auto next = s->next_after(from);
  check(!next || *next > from, "the next fire time is later", text);
  if (next)
    check(!s->next_after(*next) || *s->next_after(*next) > *next, "and the one after", text);
}

// Every project has 1.0, 2.0 and 3.0rc1, each one wheel; the input is every version's METADATA, so
// its Requires-Dist lines drive co-upgrades, added pins and their chains.
void check_decide(std::string_view metadata) {
  static const auto doc =
      pins::requirements_file::parse("a==1.0\nb[x]==1.0 ; python_version >= \"3\"\n", "f.txt")
          .value();
  static const auto policy = [] {
    pantry::config::pins_config c;
    c.python = {"3.11", "3.8"};
    c.platforms = {"linux-x86_64", "windows-x86_64"};
    return pins::upgrade_policy::from_config(c, {}).value();
  }();
  const pins::index_source source{
      [](const std::string& name) -> pantry::result<pypi::project_page> {
        pypi::project_page page;
        page.name = name;
        std::string stem = name;
        for (char& c : stem) {
          if (c == '-') c = '_';
        }
        for (const char* v : {"1.0", "2.0", "3.0rc1"}) {
          pypi::file_entry f;
          f.filename = stem + "-" + v + "-py3-none-any.whl";
          f.url = "http://fuzz/" + f.filename;
          f.hashes["sha256"] = std::string(kHash.substr(7));
          f.upload_time = "2024-01-01T00:00:00Z";
          page.files.push_back(f);
        }
        return page;
      },
      [metadata](const std::string&, const pypi::version&, const pypi::file_entry&)
          -> pantry::result<std::string> { return std::string(metadata); }};
  for (std::size_t i = 0; i < doc.requirements().size(); ++i) {
    auto plan = pins::decide(doc, i, policy, source);
    check(plan.has_value(), "decide with a page that always answers", metadata);
    if (plan->result != pins::pin_plan::outcome::upgrade) continue;
    auto copy = doc;
    if (pins::apply(copy, *plan)) {
      // Added pins may sort before it: find it by name (each name is in the file once).
      const auto found = copy.find(plan->name);
      check(found.size() == 1 && found[0]->pinned_version() == plan->change->new_version.str(),
            "apply pins the new version", metadata);
    } else {
      check(copy.render() == doc.render(), "a failed apply changes nothing", metadata);
    }
  }
  for (const auto& field : pypi::metadata_fields(metadata, "Requires-Dist"))
    check(!field.empty() && pantry::trim_ascii_space(field) == field,
          "a metadata field is trimmed and not empty", metadata);
}

// The input as a /pypi/<name>/json answer merged into a page: it only fills what the page lacks.
void check_json_api(std::string_view body) {
  pypi::project_page page;
  page.name = "a";
  for (const char* name : {"a-1.0-py3-none-any.whl", "a-1.0.tar.gz"}) {
    pypi::file_entry f;
    f.filename = name;
    f.url = std::string("http://fuzz/") + name;
    page.files.push_back(f);
  }
  page.files[1].yanked = "kept";
  const auto before = page;
  const auto merged = pins::merge_json_api(page, body);
  check(merged || page == before, "a refused answer changes nothing", body);
  check(page.files.size() == before.files.size() && page.files[1].yanked == "kept" &&
            page.files[0].hashes.empty(),
        "the page's files, yanks and digests stay", body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_requirements(input);
  check_images(pins::find_containerfile_images(input), input);
  if (auto sites = pins::find_pipeline_images(input, "fuzz.yml")) check_images(*sites, input);
  if (size <= 256) check_cron(input);
  if (size <= 4096) check_decide(input);
  check_json_api(input);
  return 0;
}
