#include "pantry/registry/pypi/negotiate.h"

#include "text.h"

#include <array>
#include <string>

namespace pantry::registry::pypi {
namespace {

// Specificity of the media range that matched an offer: an exact type beats "type/*" beats "*/*".
enum specificity { kNone = 0, kAny = 1, kTypeWildcard = 2, kExact = 3 };

struct media_range {
  std::string_view type;
  std::string_view subtype;
  int q = 1000;  // quality in thousandths
};

struct match {
  int q = 0;
  int spec = kNone;
};

struct offer {
  std::string_view type;
  std::string_view subtype;
  // Subtypes (of `type`) that name this offer exactly: the v1 name and the "latest" alias.
  std::array<std::string_view, 2> exact;
};

constexpr offer kJson = {"application",
                         "vnd.pypi.simple.v1+json",
                         {"vnd.pypi.simple.v1+json", "vnd.pypi.simple.latest+json"}};
constexpr offer kHtml = {"application",
                         "vnd.pypi.simple.v1+html",
                         {"vnd.pypi.simple.v1+html", "vnd.pypi.simple.latest+html"}};
constexpr offer kTextHtml = {"text", "html", {"html", "html"}};

// Splits `s` at `sep` outside double-quoted strings.
template <class F>
void split_outside_quotes(std::string_view s, char sep, F&& f) {
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') {
      quoted = !quoted;
    } else if (s[i] == '\\' && quoted) {
      ++i;
    } else if (s[i] == sep && !quoted) {
      f(s.substr(start, i - start));
      start = i + 1;
    }
  }
  f(s.substr(start));
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 if malformed.
int parse_q(std::string_view v) {
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return -1;
  const int whole = v[0] - '0';
  if (v.size() == 1) return whole * 1000;
  if (v[1] != '.' || v.size() > 5) return -1;
  int frac = 0;
  int scale = 100;
  for (std::size_t i = 2; i < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return -1;
    frac += (v[i] - '0') * scale;
    scale /= 10;
  }
  if (whole == 1 && frac != 0) return -1;
  return whole * 1000 + frac;
}

// Parses one element of an Accept list; false when it is malformed.
bool parse_range(std::string_view element, media_range& out) {
  bool first = true;
  bool ok = true;
  split_outside_quotes(element, ';', [&](std::string_view part) {
    part = trim_ascii_space(part);
    if (first) {
      first = false;
      const std::size_t slash = part.find('/');
      if (slash == std::string_view::npos) {
        ok = false;
        return;
      }
      out.type = trim_ascii_space(part.substr(0, slash));
      out.subtype = trim_ascii_space(part.substr(slash + 1));
      if (out.type.empty() || out.subtype.empty() || (out.type == "*" && out.subtype != "*")) {
        ok = false;
      }
      return;
    }
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) return;
    if (!ascii_iequals(trim_ascii_space(part.substr(0, eq)), "q")) return;
    const int q = parse_q(trim_ascii_space(part.substr(eq + 1)));
    if (q < 0) ok = false;
    out.q = q;
  });
  return ok;
}

// How `r` matches `o`.
int specificity_of(const media_range& r, const offer& o) {
  if (r.type == "*" && r.subtype == "*") return kAny;
  if (!ascii_iequals(r.type, o.type)) return kNone;
  if (r.subtype == "*") return kTypeWildcard;
  for (auto name : o.exact) {
    if (ascii_iequals(r.subtype, name)) return kExact;
  }
  return kNone;
}

// The quality of `o`: that of its most specific matching range (the highest among equals).
void consider(const media_range& r, const offer& o, match& m) {
  const int spec = specificity_of(r, o);
  if (spec == kNone) return;
  if (spec > m.spec || (spec == m.spec && r.q > m.q)) {
    m.spec = spec;
    m.q = r.q;
  }
}

// True iff `a` is preferred to `b` by quality, then specificity.
bool better(const match& a, const match& b) {
  return a.q != b.q ? a.q > b.q : a.spec > b.spec;
}

}  // namespace

std::optional<negotiated> negotiate(const std::vector<std::string_view>& accept_lines) {
  match json;
  match html;
  match text_html;
  bool any = false;
  for (std::string_view line : accept_lines) {
    split_outside_quotes(line, ',', [&](std::string_view element) {
      if (trim_ascii_space(element).empty()) return;
      any = true;
      media_range r;
      if (!parse_range(element, r)) return;
      consider(r, kJson, json);
      consider(r, kHtml, html);
      consider(r, kTextHtml, text_html);
    });
  }
  if (!any) return negotiated{representation::html, kContentTypeTextHtml};

  // The better HTML label; on a full tie text/html, which every HTML client understands.
  const bool v1_html = better(html, text_html);
  const match best_html = v1_html ? html : text_html;
  const negotiated as_html{representation::html, v1_html ? kContentTypeHtml : kContentTypeTextHtml};
  const negotiated as_json{representation::json, kContentTypeJson};

  if (json.q == 0 && best_html.q == 0) return std::nullopt;
  if (better(json, best_html)) return as_json;
  if (better(best_html, json)) return as_html;
  // Same quality, same specificity: named explicitly -> JSON; wildcards -> HTML.
  return json.spec == kExact ? as_json : as_html;
}

}  // namespace pantry::registry::pypi
