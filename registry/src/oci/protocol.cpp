#include "pantry/registry/oci/protocol.h"
#include "pantry/text.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace pantry::registry::oci {
namespace {

namespace json = boost::json;

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 200)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += '?';
    } else {
      out += c;
    }
  }
  if (s.size() > 200) out += "…";
  return out + "\"";
}

// The media type of a Content-Type or Accept item, without parameters, lowercase.
std::string bare_type(std::string_view v) {
  return ascii_lower(trim_ascii_space(v.substr(0, v.find(';'))));
}

const json::string* string_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return nullptr;
  return &it->value().get_string();
}

result<descriptor> read_descriptor(const json::value& v, std::string_view where) {
  const std::string bad = "MANIFEST_INVALID " + std::string(where) + " ";
  if (!v.is_object()) return error(errc::invalid_argument, bad + "is not an object");
  const auto& o = v.get_object();
  descriptor d;
  if (const auto* mt = string_at(o, "mediaType")) d.media_type = std::string(*mt);
  const auto* dg = string_at(o, "digest");
  if (!dg) return error(errc::invalid_argument, bad + "has no digest");
  auto parsed = cache::digest::parse(std::string_view(*dg));
  if (!parsed) {
    return error(errc::invalid_argument,
                 bad + "has digest " + quote(*dg) + ", which is not sha256:<64 hex digits>");
  }
  d.digest = *parsed;
  auto size = o.find("size");
  if (size == o.end() || !(size->value().is_int64() || size->value().is_uint64())) {
    return error(errc::invalid_argument, bad + "has no integer size");
  }
  if (size->value().is_int64()) {
    if (size->value().get_int64() < 0) {
      return error(errc::invalid_argument, bad + "has a negative size");
    }
    d.size = static_cast<std::uint64_t>(size->value().get_int64());
  } else {
    d.size = size->value().get_uint64();
  }
  if (auto p = o.find("platform"); p != o.end() && p->value().is_object()) {
    const auto& po = p->value().get_object();
    const auto* os = string_at(po, "os");
    const auto* arch = string_at(po, "architecture");
    if (os && arch) {
      d.platform = std::string(*os) + "/" + std::string(*arch);
      if (const auto* var = string_at(po, "variant")) d.platform += "/" + std::string(*var);
    }
  }
  return d;
}

}  // namespace

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  while (true) {
    auto slash = name.find('/');
    if (!is_oci_name_component(name.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    name.remove_prefix(slash + 1);
  }
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag.front())) return false;
  return std::all_of(tag.begin(), tag.end(),
                     [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool is_digest(std::string_view reference) {
  return reference.starts_with("sha256:") && cache::digest::parse(reference).has_value();
}

result<api_path> parse_api_path(std::string_view path, bool read) {
  if (path == "/v2" || path == "/v2/") return api_path{api_kind::ping, {}, {}};
  if (!path.starts_with("/v2/")) {
    return error(errc::invalid_argument, "NOT_FOUND " + quote(path) + " is not under /v2/");
  }
  std::string_view rest = path.substr(4);
  if (rest == "_catalog") return api_path{api_kind::catalog, {}, {}};
  auto name_error = [&](std::string_view name) {
    return error(errc::invalid_argument,
                 "NAME_INVALID " + quote(name) +
                     " is not a repository name: lowercase letters and digits, separated by "
                     "'.', '_', '__', '-' or '/', e.g. library/busybox");
  };
  auto digest_error = [](std::string_view reference) {
    return error(errc::invalid_argument,
                 "DIGEST_INVALID " + quote(reference) +
                     " is not a digest pantry serves; use sha256:<64 lowercase hex digits>");
  };
  api_path out;
  std::string_view name;
  if (rest.ends_with("/tags/list")) {
    out.kind = api_kind::tags;
    name = rest.substr(0, rest.size() - std::string_view("/tags/list").size());
  } else if (auto p = rest.rfind("/blobs/uploads/"); p != std::string_view::npos) {
    out.kind = api_kind::upload;
    name = rest.substr(0, p);
    out.reference = std::string(rest.substr(p + std::string_view("/blobs/uploads/").size()));
    if (out.reference.find('/') != std::string::npos) {
      return error(errc::invalid_argument,
                   "BLOB_UPLOAD_INVALID " + quote(out.reference) + " is not an upload id");
    }
  } else if (rest.ends_with("/blobs/uploads")) {
    out.kind = api_kind::upload;
    name = rest.substr(0, rest.size() - std::string_view("/blobs/uploads").size());
  } else if (auto m = rest.rfind("/manifests/"); m != std::string_view::npos) {
    out.kind = api_kind::manifest;
    name = rest.substr(0, m);
    out.reference = std::string(rest.substr(m + std::string_view("/manifests/").size()));
    if (!valid_tag(out.reference) && !is_digest(out.reference)) {
      if (read) {
        // distribution answers a read of such a reference as of a manifest it does not hold;
        // the spec only says what a reference is and that an unknown manifest is a 404.
        return error(errc::invalid_argument,
                     "MANIFEST_UNKNOWN " + quote(out.reference) +
                         " is neither a tag nor a sha256 digest, so no manifest has it");
      }
      if (out.reference.find(':') != std::string::npos) {
        return error(errc::invalid_argument,
                     "DIGEST_INVALID " + quote(out.reference) +
                         " is not a digest pantry serves; use sha256:<64 lowercase hex digits>");
      }
      return error(errc::invalid_argument,
                   "TAG_INVALID " + quote(out.reference) +
                       " is not a tag: up to 128 of letters, digits, '_', '.' and '-', not "
                       "starting with '.' or '-'");
    }
  } else if (auto r = rest.rfind("/referrers/");
             r != std::string_view::npos &&
             rest.find('/', r + std::string_view("/referrers/").size()) == std::string_view::npos) {
    out.kind = api_kind::referrers;
    name = rest.substr(0, r);
    out.reference = std::string(rest.substr(r + std::string_view("/referrers/").size()));
    if (!is_digest(out.reference)) {
      return digest_error(out.reference);
    }
  } else if (auto b = rest.rfind("/blobs/"); b != std::string_view::npos) {
    out.kind = api_kind::blob;
    name = rest.substr(0, b);
    out.reference = std::string(rest.substr(b + std::string_view("/blobs/").size()));
    if (!is_digest(out.reference)) {
      return digest_error(out.reference);
    }
  } else {
    return error(errc::invalid_argument,
                 "NOT_FOUND " + quote(path) +
                     " is no registry endpoint: use /v2/<name>/manifests/"
                     "<reference>, /blobs/<digest>, /tags/list or /referrers/<digest>");
  }
  if (!valid_name(name)) return name_error(name);
  out.name = std::string(name);
  return out;
}

accept_set accepted_types(const std::vector<std::string_view>& accept_lines) {
  accept_set set;
  auto& out = set.types;
  for (std::string_view line : accept_lines) {
    if (!trim_ascii_space(line).empty()) set.any = false;
    while (!line.empty()) {
      auto comma = line.find(',');
      std::string_view item = line.substr(0, comma);
      line = comma == std::string_view::npos ? std::string_view() : line.substr(comma + 1);
      std::string type = bare_type(item);
      if (type.empty()) continue;
      // q=0 means "not acceptable".
      bool excluded = false;
      std::string_view params = item.find(';') == std::string_view::npos
                                    ? std::string_view()
                                    : item.substr(item.find(';') + 1);
      while (!params.empty()) {
        auto semi = params.find(';');
        std::string p = ascii_lower(trim_ascii_space(params.substr(0, semi)));
        params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
        if (p.starts_with("q=") && p.find_first_not_of("0.", 2) == std::string::npos) {
          excluded = true;
        }
      }
      if (!excluded && std::find(out.begin(), out.end(), type) == out.end()) {
        out.push_back(std::move(type));
      }
    }
  }
  return set;
}

bool accepts(const accept_set& accepted, std::string_view media_type) {
  if (accepted.any) return true;
  const std::string type = bare_type(media_type);
  for (const auto& a : accepted.types) {
    if (a == "*/*" || a == type) return true;
    if (a.ends_with("/*") && type.starts_with(a.substr(0, a.size() - 1))) return true;
  }
  return false;
}

result<manifest_refs> parse_manifest(std::string_view body, std::string_view content_type) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    return error(errc::invalid_argument,
                 "MANIFEST_INVALID the manifest is not JSON: " + ec.message());
  }
  if (!v.is_object()) {
    return error(errc::invalid_argument, "MANIFEST_INVALID the manifest is not a JSON object");
  }
  const auto& o = v.get_object();
  manifest_refs out;
  if (const auto* mt = string_at(o, "mediaType")) out.media_type = std::string(*mt);
  const std::string type = out.media_type.empty() ? bare_type(content_type) : out.media_type;
  if (auto sv = o.find("schemaVersion");
      sv != o.end() && sv->value().is_int64() && sv->value().get_int64() == 1) {
    return error(errc::invalid_argument,
                 "MANIFEST_INVALID Docker schema 1 manifests are not supported; push the image "
                 "as Docker schema 2 or OCI");
  }
  // A subject pantry cannot read (another algorithm) is left out rather than refusing the
  // manifest: the pusher then gets no OCI-Subject and keeps the referrers tag itself.
  if (auto s = o.find("subject"); s != o.end()) {
    if (auto d = read_descriptor(s->value(), "subject")) out.subject = std::move(*d);
  }
  if (const auto* at = string_at(o, "artifactType")) out.artifact_type = std::string(*at);
  if (auto a = o.find("annotations"); a != o.end() && a->value().is_object()) {
    for (const auto& [k, v] : a->value().get_object()) {
      if (v.is_string()) out.annotations.emplace(std::string(k), std::string(v.get_string()));
    }
  }
  auto manifests = o.find("manifests");
  out.is_index = type == kOciIndex || type == kDockerList ||
                 (type != kOciManifest && type != kDockerManifest && manifests != o.end());
  if (out.is_index) {
    if (manifests == o.end() || !manifests->value().is_array()) {
      return error(errc::invalid_argument, "MANIFEST_INVALID the index has no manifests list");
    }
    std::size_t i = 0;
    for (const auto& m : manifests->value().get_array()) {
      auto d = read_descriptor(m, "manifests[" + std::to_string(i++) + "]");
      if (!d) return d.error();
      out.manifests.push_back(std::move(*d));
    }
    return out;
  }
  auto config = o.find("config");
  if (config == o.end()) {
    return error(errc::invalid_argument, "MANIFEST_INVALID the image manifest has no config");
  }
  auto cd = read_descriptor(config->value(), "config");
  if (!cd) return cd.error();
  out.blobs.push_back(std::move(*cd));
  auto layers = o.find("layers");
  if (layers == o.end() || !layers->value().is_array()) {
    return error(errc::invalid_argument, "MANIFEST_INVALID the image manifest has no layers list");
  }
  std::size_t i = 0;
  for (const auto& l : layers->value().get_array()) {
    auto d = read_descriptor(l, "layers[" + std::to_string(i++) + "]");
    if (!d) return d.error();
    out.blobs.push_back(std::move(*d));
  }
  return out;
}

std::optional<referrer> as_referrer(std::string_view body, std::string_view content_type,
                                    const cache::digest& subject) {
  auto refs = parse_manifest(body, content_type);
  if (!refs || !refs->subject || refs->subject->digest != subject) return std::nullopt;
  referrer r;
  r.media_type = refs->media_type.empty() ? bare_type(content_type) : refs->media_type;
  r.digest = cache::digest::of(body);
  r.size = body.size();
  r.artifact_type = refs->artifact_type;
  // An image manifest without one is typed by its config; an index without one stays untyped.
  if (r.artifact_type.empty() && !refs->is_index && !refs->blobs.empty()) {
    r.artifact_type = refs->blobs.front().media_type;
  }
  r.annotations = std::move(refs->annotations);
  return r;
}

std::string referrers_index(const std::vector<referrer>& referrers,
                            std::string_view artifact_type) {
  json::array list;
  for (const auto& r : referrers) {
    if (!artifact_type.empty() && r.artifact_type != artifact_type) continue;
    json::object d;
    d["mediaType"] = r.media_type;
    d["size"] = r.size;
    d["digest"] = r.digest.str();
    if (!r.artifact_type.empty()) d["artifactType"] = r.artifact_type;
    if (!r.annotations.empty()) {
      json::object a;
      for (const auto& [k, v] : r.annotations)
        a[k] = v;
      d["annotations"] = std::move(a);
    }
    list.push_back(std::move(d));
  }
  json::object root;
  root["schemaVersion"] = 2;
  root["mediaType"] = kOciIndex;
  root["manifests"] = std::move(list);
  return json::serialize(root);
}

result<std::vector<referrer>> parse_referrers_index(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  const json::object* o = !ec && v.is_object() ? &v.get_object() : nullptr;
  auto m = o ? o->find("manifests") : nullptr;
  if (!o || m == o->end() || !m->value().is_array()) {
    return error(errc::invalid_argument, "the referrers list is not an image index");
  }
  std::vector<referrer> out;
  for (const auto& item : m->value().get_array()) {
    auto d = read_descriptor(item, "referrer");
    if (!d) continue;
    referrer r;
    r.media_type = std::move(d->media_type);
    r.digest = d->digest;
    r.size = d->size;
    const auto& io = item.get_object();
    if (const auto* at = string_at(io, "artifactType")) r.artifact_type = std::string(*at);
    if (auto a = io.find("annotations"); a != io.end() && a->value().is_object()) {
      for (const auto& [k, val] : a->value().get_object()) {
        if (val.is_string()) r.annotations.emplace(std::string(k), std::string(val.get_string()));
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string referrers_tag(const cache::digest& subject) {
  return "sha256-" + subject.hex();
}

std::vector<challenge> parse_challenges(std::string_view h) {
  std::vector<challenge> out;
  std::size_t i = 0;
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t'))
      ++i;
  };
  auto is_tchar = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  };
  auto token = [&] {
    std::size_t start = i;
    while (i < h.size() && is_tchar(h[i]))
      ++i;
    return h.substr(start, i - start);
  };
  while (i < h.size()) {
    skip_ws();
    while (i < h.size() && h[i] == ',') {
      ++i;
      skip_ws();
    }
    std::string_view scheme = token();
    if (scheme.empty()) break;
    challenge c;
    c.scheme = ascii_lower(scheme);
    skip_ws();
    // Parameters: name=value pairs separated by commas, until the next scheme.
    while (i < h.size()) {
      std::size_t save = i;
      std::string_view name = token();
      skip_ws();
      if (name.empty() || i >= h.size() || h[i] != '=') {
        i = save;  // a token68 or the next challenge's scheme
        if (!name.empty() && c.params.empty()) {
          // token68: the rest up to a comma
          std::size_t start = i;
          while (i < h.size() && h[i] != ',')
            ++i;
          c.params["token68"] = std::string(trim_ascii_space(h.substr(start, i - start)));
        }
        break;
      }
      ++i;  // '='
      skip_ws();
      std::string value;
      if (i < h.size() && h[i] == '"') {
        ++i;
        bool closed = false;
        while (i < h.size()) {
          char ch = h[i++];
          if (ch == '\\' && i < h.size()) {
            value += h[i++];
          } else if (ch == '"') {
            closed = true;
            break;
          } else {
            value += ch;
          }
        }
        if (!closed) {
          out.push_back(std::move(c));
          return out;
        }
      } else {
        value = std::string(token());
      }
      c.params[ascii_lower(name)] = std::move(value);
      skip_ws();
      if (i < h.size() && h[i] == ',') {
        ++i;
        skip_ws();
        // Another parameter follows if the next thing is "name=".
        std::size_t look = i;
        std::string_view next = token();
        skip_ws();
        bool is_param = !next.empty() && i < h.size() && h[i] == '=';
        i = look;
        if (!is_param) break;
      } else {
        break;
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

result<bearer_token> parse_token_answer(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return error(errc::invalid_argument, "the token endpoint's answer is not a JSON object");
  }
  const auto& o = v.get_object();
  bearer_token t;
  const auto* tok = string_at(o, "token");
  if (!tok || tok->empty()) tok = string_at(o, "access_token");
  if (!tok || tok->empty()) {
    return error(errc::invalid_argument,
                 "the token endpoint's answer has neither \"token\" nor \"access_token\"");
  }
  t.token = std::string(*tok);
  if (auto e = o.find("expires_in"); e != o.end() && e->value().is_number()) {
    double secs = e->value().to_number<double>(ec);
    if (!ec && secs >= 1 && secs < 1e9) t.lifetime = std::chrono::seconds(static_cast<long>(secs));
  }
  return t;
}

std::string token_url(std::string_view realm, std::string_view service, std::string_view scope) {
  auto encode = [](std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
      if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '/') {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += hex[c >> 4];
        out += hex[c & 15];
      }
    }
    return out;
  };
  std::string url(realm);
  char sep = url.find('?') == std::string::npos ? '?' : '&';
  if (!service.empty()) {
    url += sep;
    url += "service=" + encode(service);
    sep = '&';
  }
  if (!scope.empty()) {
    url += sep;
    url += "scope=" + encode(scope);
  }
  return url;
}

std::string error_body(std::string_view code, std::string_view message) {
  json::object e;
  e["code"] = code;
  e["message"] = message;
  e["detail"] = json::object();
  json::array errors;
  errors.push_back(std::move(e));
  json::object root;
  root["errors"] = std::move(errors);
  return json::serialize(root) + "\n";
}

tag_page page_tags(std::vector<std::string> tags, std::string_view name, std::string_view n_text,
                   std::string_view last) {
  std::sort(tags.begin(), tags.end());
  if (!last.empty()) {
    tags.erase(tags.begin(), std::upper_bound(tags.begin(), tags.end(), last));
  }
  std::size_t n = tags.size();
  // Not a number: the whole list (from_chars leaves n as it is).
  std::from_chars(n_text.data(), n_text.data() + n_text.size(), n);
  tag_page page;
  if (tags.size() > n) {
    tags.resize(n);
    if (!tags.empty()) {
      page.next = "</v2/" + std::string(name) + "/tags/list?n=" + std::to_string(n) +
                  "&last=" + tags.back() + ">; rel=\"next\"";
    }
  }
  page.tags = std::move(tags);
  return page;
}

}  // namespace pantry::registry::oci
