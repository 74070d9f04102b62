#include "pantry/orchestrator/pins/image_refs.h"

#include "pantry/config/yaml_reader.h"
#include "pantry/text.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

namespace pantry::orchestrator::pins {
namespace {

// The largest .pantry.yml the coordinator reads; a larger one is not a pipeline.
constexpr config::yaml::document_kind kPipelineDocument = {"pipeline", errc::invalid_argument,
                                                           1 << 20};

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view trim_blanks(std::string_view s) noexcept {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

// Where a run of an instruction's joined text came from.
struct piece {
  std::size_t joined_at = 0;
  std::size_t source_at = 0;
  std::size_t length = 0;
  std::size_t line = 0;
};

// One instruction with its continuation lines joined as docker joins them (the escape character
// and what follows it on the line dropped, nothing inserted), and where each part came from.
struct instruction_text {
  std::string joined;
  std::vector<piece> pieces;
};

// docker's parser directive form: "# key=value" with a letter-led key.
std::optional<std::pair<std::string, std::string_view>> directive(std::string_view line) {
  line = trim_blanks(line);
  if (!line.starts_with('#')) return std::nullopt;
  line = trim_blanks(line.substr(1));
  const std::size_t eq = line.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  const std::string_view key = trim_blanks(line.substr(0, eq));
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (key.empty() || !is_letter(key.front()) || !std::all_of(key.begin(), key.end(), [&](char c) {
        return is_letter(c) || (c >= '0' && c <= '9');
      })) {
    return std::nullopt;
  }
  return std::pair(ascii_lower(key), trim_blanks(line.substr(eq + 1)));
}

std::vector<instruction_text> split_instructions(std::string_view text) {
  std::vector<instruction_text> out;
  std::optional<instruction_text> pending;
  char escape = '\\';
  bool directives = true;
  std::size_t pos = text.starts_with(kByteOrderMark) ? kByteOrderMark.size() : 0;
  for (std::size_t number = 1; pos < text.size(); ++number) {
    const std::size_t nl = text.find('\n', pos);
    const std::size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view line =
        text.substr(pos, (nl == std::string_view::npos ? text.size() : nl) - pos);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::size_t at = pos;
    pos = next;
    if (directives) {
      if (auto d = directive(line)) {
        if (d->first == "escape" && (d->second == "`" || d->second == "\\")) {
          escape = d->second.front();
        }
        continue;
      }
      directives = false;
    }
    const std::string_view content = trim_blanks(line);
    // Blank and comment lines are skipped, also inside a continued instruction.
    if (content.empty() || content.front() == '#') continue;
    std::string_view kept = line;
    while (!kept.empty() && is_blank(kept.back()))
      kept.remove_suffix(1);
    const bool continued = !kept.empty() && kept.back() == escape;
    if (continued) {
      kept.remove_suffix(1);
    } else {
      kept = line;
    }
    if (!pending) pending.emplace();
    pending->pieces.push_back(piece{pending->joined.size(), at, kept.size(), number});
    pending->joined += kept;
    if (!continued) {
      out.push_back(std::move(*pending));
      pending.reset();
    }
  }
  if (pending) out.push_back(std::move(*pending));
  return out;
}

struct word {
  std::string_view text;
  std::size_t at = 0;  // in the joined text
};

std::vector<word> words_of(std::string_view s) {
  std::vector<word> out;
  for (std::size_t i = 0; i < s.size();) {
    while (i < s.size() && is_ascii_space(s[i]))
      ++i;
    const std::size_t start = i;
    while (i < s.size() && !is_ascii_space(s[i]))
      ++i;
    if (i > start) out.push_back(word{s.substr(start, i - start), start});
  }
  return out;
}

// The source range and line of joined bytes [at, at + length), if they are one run of a line.
struct source_range {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t line = 0;
};

std::optional<source_range> locate(const instruction_text& in, std::size_t at, std::size_t length) {
  for (const auto& p : in.pieces) {
    if (at >= p.joined_at && at < p.joined_at + p.length) {
      if (at + length > p.joined_at + p.length) return std::nullopt;
      const std::size_t begin = p.source_at + (at - p.joined_at);
      return source_range{begin, begin + length, p.line};
    }
  }
  return std::nullopt;
}

std::size_t line_of(const instruction_text& in, std::size_t at) {
  for (const auto& p : in.pieces) {
    if (at < p.joined_at + p.length) return p.line;
  }
  return in.pieces.empty() ? 0 : in.pieces.back().line;
}

class containerfile_scan {
 public:
  image_sites run(std::string_view text) {
    for (const auto& in : split_instructions(text)) {
      const auto words = words_of(in.joined);
      if (words.empty()) continue;
      const std::string keyword = ascii_lower(words.front().text);
      if (keyword == "from") {
        from(in, words);
      } else if (keyword == "copy") {
        copy(in, words);
      }
    }
    return std::move(out_);
  }

 private:
  void from(const instruction_text& in, const std::vector<word>& words) {
    std::size_t i = 1;
    std::string platform;
    for (; i < words.size() && words[i].text.starts_with("--"); ++i) {
      constexpr std::string_view kPlatform = "--platform=";
      if (words[i].text.starts_with(kPlatform)) {
        platform = std::string(words[i].text.substr(kPlatform.size()));
      }
    }
    if (i >= words.size()) {
      skip(line_of(in, 0), in.joined, "FROM names no image");
      return;
    }
    const word image = words[i];
    std::string stage;
    if (i + 2 < words.size() && ascii_iequals(words[i + 1].text, "as")) {
      stage = std::string(words[i + 2].text);
    }
    const bool is_stage = stages_.contains(ascii_lower(image.text));
    if (!stage.empty()) stages_.insert(ascii_lower(stage));
    if (ascii_iequals(image.text, "scratch")) {
      skip(line_of(in, image.at), image.text, "scratch is the empty image, nothing to pin");
      return;
    }
    if (is_stage) {
      skip(line_of(in, image.at), image.text,
           "names the earlier stage " + std::string(image.text) + ", not an image");
      return;
    }
    add(in, image, "FROM", std::move(platform), std::move(stage));
  }

  void copy(const instruction_text& in, const std::vector<word>& words) {
    constexpr std::string_view kFrom = "--from=";
    for (std::size_t i = 1; i < words.size() && words[i].text.starts_with("--"); ++i) {
      if (!words[i].text.starts_with(kFrom)) continue;
      const word value{words[i].text.substr(kFrom.size()), words[i].at + kFrom.size()};
      const bool index =
          !value.text.empty() && std::all_of(value.text.begin(), value.text.end(),
                                             [](char c) { return c >= '0' && c <= '9'; });
      // A stage, by name or number, is no image.
      if (index || stages_.contains(ascii_lower(value.text))) return;
      add(in, value, "COPY --from", "", "");
    }
  }

  void add(const instruction_text& in, const word& w, std::string context, std::string platform,
           std::string stage) {
    const std::size_t line = line_of(in, w.at);
    if (w.text.find('$') != std::string_view::npos) {
      skip(line, w.text,
           "the image comes from a build argument (ARG), which the pin bot does not evaluate; "
           "write the image in the " +
               context + " line to have it pinned");
      return;
    }
    auto reference = runner::parse_image_reference(w.text);
    if (!reference) {
      skip(line, w.text, reference.error().message);
      return;
    }
    const auto range = locate(in, w.at, w.text.size());
    if (!range) {
      skip(line, w.text,
           "the reference is split across continuation lines, so it cannot be rewritten in "
           "place; write it on one line");
      return;
    }
    image_site site;
    site.line = range->line;
    site.begin = range->begin;
    site.end = range->end;
    site.written = std::string(w.text);
    site.reference = std::move(*reference);
    site.context = std::move(context);
    site.platform = std::move(platform);
    site.stage = std::move(stage);
    out_.images.push_back(std::move(site));
  }

  void skip(std::size_t line, std::string_view written, std::string reason) {
    out_.skipped.push_back(skipped_image{line, std::string(written), std::move(reason)});
  }

  std::set<std::string> stages_;  // lowercased names of the stages so far
  image_sites out_;
};

// The byte offset where 0-based line `line` of `text` starts, or npos.
std::size_t line_start(std::string_view text, std::size_t line) {
  std::size_t at = 0;
  for (std::size_t i = 0; i < line; ++i) {
    at = text.find('\n', at);
    if (at == std::string_view::npos) return at;
    ++at;
  }
  return at;
}

// The range of a scalar's bytes in `text`: at its mark (plain) or just after (quoted), or, when
// the mark's offset is not in bytes (after non-ASCII text), the one place on its line that holds
// exactly these bytes.
std::optional<std::pair<std::size_t, std::size_t>> scalar_range(std::string_view text,
                                                                const YAML::Node& node) {
  const std::string& value = node.Scalar();
  const YAML::Mark mark = node.Mark();
  if (value.empty()) return std::nullopt;
  const auto holds = [&](std::size_t at) {
    return at + value.size() <= text.size() && text.substr(at, value.size()) == value;
  };
  const auto pos = static_cast<std::size_t>(mark.pos);
  if (mark.pos >= 0 && holds(pos)) return std::pair(pos, pos + value.size());
  if (mark.pos >= 0 && pos < text.size() && (text[pos] == '"' || text[pos] == '\'') &&
      holds(pos + 1)) {
    return std::pair(pos + 1, pos + 1 + value.size());
  }
  if (mark.line < 0) return std::nullopt;
  const std::size_t start = line_start(text, static_cast<std::size_t>(mark.line));
  if (start == std::string_view::npos) return std::nullopt;
  std::size_t stop = text.find('\n', start);
  if (stop == std::string_view::npos) stop = text.size();
  const std::string_view line = text.substr(start, stop - start);
  const std::size_t first = line.find(value);
  if (first == std::string_view::npos || line.find(value, first + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  return std::pair(start + first, start + first + value.size());
}

void pipeline_image(std::string_view text, const YAML::Node& node, std::string path,
                    image_sites& out) {
  if (!node.IsDefined() || node.IsNull()) return;
  const auto line = node.Mark().line >= 0 ? static_cast<std::size_t>(node.Mark().line) + 1 : 0;
  if (!node.IsScalar()) {
    out.skipped.push_back(skipped_image{line, path, path + " is not a string"});
    return;
  }
  const std::string& value = node.Scalar();
  auto reference = runner::parse_image_reference(value);
  if (!reference) {
    out.skipped.push_back(skipped_image{line, value, reference.error().message});
    return;
  }
  const auto range = scalar_range(text, node);
  if (!range) {
    out.skipped.push_back(skipped_image{
        line, value,
        path + " is written so that its bytes differ from its value (escapes or a block "
               "scalar); write it as a plain or quoted scalar on one line to have it pinned"});
    return;
  }
  image_site site;
  site.line = line;
  site.begin = range->first;
  site.end = range->second;
  site.written = value;
  site.reference = std::move(*reference);
  site.context = std::move(path);
  out.images.push_back(std::move(site));
}

}  // namespace

image_sites find_containerfile_images(std::string_view text) {
  return containerfile_scan().run(text);
}

result<image_sites> find_pipeline_images(std::string_view text, std::string_view file) {
  auto root = config::yaml::load_document(text, file, kPipelineDocument);
  if (!root) return root.error();
  image_sites out;
  if (!root->IsMap()) return out;
  pipeline_image(text, (*root)["image"], "image", out);
  const YAML::Node jobs = (*root)["jobs"];
  if (jobs.IsMap()) {
    for (const auto& job : jobs) {
      if (!job.first.IsScalar() || !job.second.IsMap()) continue;
      pipeline_image(text, job.second["image"], "jobs." + job.first.Scalar() + ".image", out);
    }
  }
  std::sort(out.images.begin(), out.images.end(),
            [](const image_site& a, const image_site& b) { return a.begin < b.begin; });
  return out;
}

result<std::string> replace_digest(std::string_view text, const image_site& site,
                                   std::string_view digest) {
  if (site.begin > site.end || site.end > text.size() ||
      text.substr(site.begin, site.end - site.begin) != site.written) {
    return error(errc::invalid_argument,
                 "line " + std::to_string(site.line) + ": the text no longer holds " +
                     quote_for_message(site.written) + " where it was read; read the file again");
  }
  // Written as the file wrote the name and tag, checked by the same grammar.
  const std::string_view kept =
      std::string_view(site.written)
          .substr(0, site.reference.digest.empty() ? site.written.size() : site.written.rfind('@'));
  const std::string rewritten = std::string(kept) + "@" + std::string(digest);
  auto checked = runner::parse_image_reference(rewritten);
  if (!checked) {
    return error(errc::invalid_argument,
                 "digest " + quote_for_message(digest) + ": " + checked.error().message);
  }
  std::string out;
  out.reserve(text.size() + rewritten.size());
  out.append(text.substr(0, site.begin));
  out.append(rewritten);
  out.append(text.substr(site.end));
  return out;
}

}  // namespace pantry::orchestrator::pins
