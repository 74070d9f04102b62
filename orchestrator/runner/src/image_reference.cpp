#include "pantry/orchestrator/runner/image_reference.h"

#include "pantry/text.h"

#include "pantry/cache/digest.h"

#include <algorithm>

// The distribution reference grammar (distribution/reference's regexp.go), written out.

namespace pantry::orchestrator::runner {
namespace {

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// A reference comes from a command line or a Containerfile, so it may hold anything.
std::string quote(std::string_view s) {
  return quote_for_message(s);
}

// A registry host: DNS labels ([A-Za-z0-9] with inner dashes) separated by dots, or an IPv6
// address in brackets, optionally followed by :PORT.
bool valid_domain(std::string_view d) noexcept {
  std::string_view host = d;
  if (auto colon = d.rfind(':'); colon != std::string_view::npos && d.find(']', colon) == d.npos) {
    const std::string_view port = d.substr(colon + 1);
    if (port.empty() || !std::all_of(port.begin(), port.end(), is_digit)) return false;
    host = d.substr(0, colon);
  }
  if (host.empty()) return false;
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 4) return false;
    return std::all_of(host.begin() + 1, host.end() - 1, [](char c) {
      return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':';
    });
  }
  std::size_t start = 0;
  while (start <= host.size()) {
    const std::size_t dot = host.find('.', start);
    const std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    auto alnum = [](char c) { return is_digit(c) || is_alpha(c); };
    if (label.empty() || !alnum(label.front()) || !alnum(label.back())) return false;
    if (!std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; })) {
      return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool valid_tag(std::string_view t) noexcept {
  auto word = [](char c) { return is_digit(c) || is_alpha(c) || c == '_'; };
  if (t.empty() || t.size() > 128 || !word(t.front())) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

}  // namespace

std::string image_reference::str() const {
  std::string out = name;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

result<image_reference> parse_image_reference(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return error(errc::invalid_argument, quote(text) + " is not an image reference: " + why);
  };
  if (text.empty()) return bad("it is empty");
  image_reference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    const std::string_view digest = rest.substr(at + 1);
    if (!digest.starts_with("sha256:") || !cache::digest::parse(digest)) {
      return bad("the digest after '@' must be sha256:<64 lowercase hex digits>");
    }
    ref.digest = std::string(digest);
    rest = rest.substr(0, at);
  }
  const std::size_t last_slash = rest.rfind('/');
  if (auto colon = rest.rfind(':');
      colon != std::string_view::npos && (last_slash == rest.npos || colon > last_slash)) {
    const std::string_view tag = rest.substr(colon + 1);
    if (!valid_tag(tag)) {
      return bad("the tag " + quote(tag) +
                 " must be letters, digits, '_', '.' and '-' (not first), at most 128");
    }
    ref.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("it has no name");
  if (rest.size() > 255) return bad("the name is longer than 255 characters");
  std::string_view path = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view first = rest.substr(0, slash);
    if (first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
        std::any_of(first.begin(), first.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      if (!valid_domain(first)) return bad("the registry host " + quote(first) + " is invalid");
      path = rest.substr(slash + 1);
    }
  }
  for (std::size_t start = 0;;) {
    const std::size_t slash = path.find('/', start);
    const std::string_view component =
        path.substr(start, slash == path.npos ? path.npos : slash - start);
    if (!is_oci_name_component(component)) {
      if (std::any_of(component.begin(), component.end(),
                      [](char c) { return c >= 'A' && c <= 'Z'; })) {
        return bad("repository names are lowercase");
      }
      return bad("the name part " + quote(component) +
                 " must be lowercase letters and digits separated by '.', '_', '__' or '-'");
    }
    if (slash == path.npos) break;
    start = slash + 1;
  }
  ref.name = std::string(rest);
  return ref;
}

}  // namespace pantry::orchestrator::runner
