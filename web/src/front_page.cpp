#include "pantry/web/front_page.h"

#include "pantry/text.h"
#include "pantry/web/layout.h"
#include "utc.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>

namespace pantry::web {
namespace {

namespace json = boost::json;

bool is_host_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

bool is_ipv6_char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
}

// "host[:port]" with a host name, an IPv4 address or a bracketed IPv6 literal, lowercased; nullopt
// for anything else.
std::optional<std::string> checked_authority(std::string_view a) {
  if (a.empty() || a.size() > 300) return std::nullopt;
  std::string_view host = a;
  std::string_view port;
  if (a.front() == '[') {
    const auto close = a.find(']');
    if (close == std::string_view::npos || close < 3) return std::nullopt;
    host = a.substr(0, close + 1);
    if (!std::all_of(host.begin() + 1, host.end() - 1, is_ipv6_char)) return std::nullopt;
    const auto rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
    }
  } else {
    const auto colon = a.find(':');
    if (colon != std::string_view::npos) {
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), is_host_name_char)) {
      return std::nullopt;
    }
  }
  if (a.find(':', host.size()) != std::string_view::npos) {
    auto p = parse_port(port);
    if (!p || *p == 0) return std::nullopt;
  }
  return ascii_lower(a);
}

// RFC 3339 in UTC, to the second.
std::string rfc3339(system_clock::time_point t) {
  return detail::utc_text(t, "%Y-%m-%dT%H:%M:%SZ");
}

// "just now", "5 s ago", "3 min ago", "2 h ago", "4 d ago".
std::string ago(system_clock::time_point then, system_clock::time_point now) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(now - then).count();
  if (s < 1) return "just now";
  if (s < 120) return std::to_string(s) + " s ago";
  if (s < 7200) return std::to_string(s / 60) + " min ago";
  if (s < 172800) return std::to_string(s / 3600) + " h ago";
  return std::to_string(s / 86400) + " d ago";
}

void append_escaped(std::string& out, std::string_view s) {
  append_html_escaped(out, s);
}

void append_code(std::string& out, std::string_view s) {
  out += "<code>";
  append_escaped(out, s);
  out += "</code>";
}

void append_link(std::string& out, std::string_view href, std::string_view text) {
  out += "<a href=\"";
  append_escaped(out, href);
  out += "\"><code>";
  append_escaped(out, text);
  out += "</code></a>";
}

void append_time_cell(std::string& out, const std::optional<system_clock::time_point>& t,
                      system_clock::time_point now, std::string_view cls) {
  out += "<td>";
  if (!t) {
    out += "<span class=\"muted\">never</span>";
  } else {
    out += "<span class=\"";
    out += cls;
    out += "\">";
    append_escaped(out, ago(*t, now));
    out += "</span> <span class=\"muted\">";
    append_escaped(out, rfc3339(*t));
    out += "</span>";
  }
  out += "</td>";
}

void append_services(std::string& out, const front_page& p) {
  const std::string base = p.base.url();
  out += "<section id=\"serves\">\n<h2>What this pantry serves</h2>\n<ul>\n";
  std::vector<std::string> pypi_names;
  std::vector<std::string> oci_names;
  for (const auto& u : p.upstreams) {
    (u.protocol == "pypi" ? pypi_names : oci_names).push_back(u.name);
  }
  if (!pypi_names.empty()) {
    out += "<li><strong>A PyPI cache</strong> at ";
    append_link(out, "/simple/", base + "/simple/");
    out +=
        " (PEP 503 HTML and PEP 691 JSON, the JSON API under <code>/pypi/</code>, files under "
        "<code>/files/</code>), from ";
    for (std::size_t i = 0; i < pypi_names.size(); ++i) {
      if (i > 0) out += ", ";
      append_code(out, pypi_names[i]);
    }
    out += ".</li>\n";
  }
  if (!p.pypi_hosted.empty()) {
    out += "<li><strong>Private Python packages</strong>: twine uploads to ";
    for (std::size_t i = 0; i < p.pypi_hosted.size(); ++i) {
      if (i > 0) out += ", ";
      append_code(out, base + "/" + p.pypi_hosted[i] + "/");
    }
    out +=
        " (a user of <code>oci.hosted.users</code>, the token as password); their projects are "
        "served on <code>/simple/</code> in place of any upstream's of the same name.</li>\n";
  }
  if (!oci_names.empty() || !p.oci_hosted_prefix.empty()) {
    out += "<li><strong>A container registry</strong> (OCI distribution) at ";
    append_code(out, base + "/v2/");
    out += ": a pull-through cache of ";
    for (std::size_t i = 0; i < oci_names.size(); ++i) {
      if (i > 0) out += ", ";
      append_code(out, oci_names[i]);
      if (oci_names[i] == p.default_oci_upstream) {
        out += " (at the root: ";
        append_code(out, p.base.authority + "/library/busybox:1.36");
        out += ")";
      } else {
        out += " (under its name: ";
        append_code(out, p.base.authority + "/" + oci_names[i] + "/org/app:1.0");
        out += ")";
      }
    }
    if (oci_names.empty()) out += "no upstream";
    out += ".";
    if (!p.oci_hosted_prefix.empty()) {
      out += " Its own repositories under ";
      append_code(out, p.base.authority + "/" + p.oci_hosted_prefix);
      out += " take pushes after <code>docker login ";
      append_escaped(out, p.base.authority);
      out += "</code>.";
    }
    out += "</li>\n";
  }
  if (p.runner) {
    out +=
        "<li><strong>A runner</strong>: <code>pantry run</code> runs steps in pinned "
        "containers and <code>pantry build</code> builds images, on this machine.</li>\n";
  }
  if (p.ci) {
    out +=
        "<li><strong>A CI coordinator</strong>: pipelines from <code>.pantry.yml</code>, "
        "submitted with <code>pantry submit</code>.</li>\n";
  }
  if (!p.runner_of.empty()) {
    out += "<li><strong>A remote runner</strong> that takes its jobs from the coordinator at ";
    append_code(out, p.runner_of);
    out += ".</li>\n";
  }
  out += "<li>Operations: ";
  append_link(out, "/healthz", "/healthz");
  out += ", ";
  append_link(out, "/metrics", "/metrics");
  out += " (Prometheus).</li>\n</ul>\n</section>\n";
}

void append_settings(std::string& out, const front_page& p) {
  out +=
      "<section id=\"clients\">\n<h2>Client settings</h2>\n<p class=\"muted\">For this "
      "server as you reached it: ";
  append_code(out, p.base.url());
  out += ".</p>\n";
  for (const auto& s : p.settings) {
    out += "<h3 id=\"client-";
    append_escaped(out, s.id);
    out += "\">";
    append_escaped(out, s.client);
    out += " <span class=\"muted\">(";
    append_escaped(out, s.where);
    out += ")</span></h3>\n<pre><code>";
    append_escaped(out, s.text);
    out += "</code></pre>\n";
  }
  out += "</section>\n";
}

void append_upstreams(std::string& out, const front_page& p) {
  out += "<section id=\"upstreams\">\n<h2>Upstreams</h2>\n";
  if (p.upstreams.empty()) {
    out += "<p>None configured.</p>\n</section>\n";
    return;
  }
  out +=
      "<table>\n<tr><th>protocol</th><th>name</th><th>URL</th><th>last success</th>"
      "<th>last failure</th></tr>\n";
  for (const auto& u : p.upstreams) {
    out += "<tr><td>";
    append_escaped(out, u.protocol == "pypi" ? "PyPI" : "OCI");
    out += "</td><td>";
    append_code(out, u.name);
    out += "</td><td>";
    append_code(out, u.url);
    if (u.credentials) out += " <span class=\"muted\">(with credentials)</span>";
    out += "</td>";
    append_time_cell(out, u.last_success, p.now, "ok");
    append_time_cell(out, u.last_failure, p.now, "bad");
    out += "</tr>\n";
    if (u.last_failure && !u.failure.empty()) {
      out += "<tr><td></td><td colspan=\"4\" class=\"muted\">last failure: ";
      append_escaped(out, u.failure);
      out += "</td></tr>\n";
    }
  }
  out +=
      "</table>\n<p class=\"muted\">Times are the upstream client's last answer (any status "
      "below 500) and last failure (no answer, or a 5xx) since this pantry started, per origin: "
      "upstreams at one scheme, host and port share them.</p>\n"
      "</section>\n";
}

void append_cache(std::string& out, const front_page& p) {
  const auto& c = p.cache;
  out += "<section id=\"cache\">\n<h2>Cache</h2>\n<table>\n<tr><th>size</th><td>";
  append_escaped(out, human_bytes(c.bytes));
  out += " of ";
  append_escaped(out, human_bytes(c.quota));
  out += " quota";
  if (c.quota > 0) {
    out += " (" + std::to_string(c.bytes * 100 / c.quota) + "%)";
  }
  out += "</td></tr>\n<tr><th>blobs</th><td>" + std::to_string(c.objects) + "</td></tr>\n";
  out += "<tr><th>entries</th><td>" + std::to_string(c.entries) + "</td></tr>\n";
  out += "<tr><th>hits since start</th><td>" + std::to_string(c.hits) + "</td></tr>\n";
  out += "<tr><th>misses since start</th><td>" + std::to_string(c.misses) + "</td></tr>\n";
  out += "</table>\n</section>\n";
}

void append_ci(std::string& out, const front_page& p) {
  if (!p.ci) return;
  out += "<section id=\"ci\">\n<h2>CI</h2>\n<p>The coordinator's API is at ";
  append_code(out, p.base.url() + "/api/v1/");
  out +=
      "; its routes need a token of <code>ci.tokens</code> "
      "(<code>Authorization: Bearer …</code>).</p>\n<ul>\n";
  out += "<li>";
  append_code(out, "GET /api/v1/pipelines");
  out += ": recent pipelines; ";
  append_code(out, "GET /api/v1/pipelines/<id>");
  out += ", its jobs; ";
  append_code(out, "GET /api/v1/pipelines/<id>/log?follow=1");
  out += ", its log as NDJSON.</li>\n<li>";
  append_code(out, "GET /api/v1/jobs/<id>/log");
  out += ": one job's log.</li>\n<li>";
  append_code(out, "pantry submit --url " + p.base.url() + " --token TOKEN --wait");
  out +=
      ": submit the working tree's <code>.pantry.yml</code> and follow it.</li>\n</ul>\n"
      "</section>\n";
}

json::value time_or_null(const std::optional<system_clock::time_point>& t) {
  if (!t) return nullptr;
  return json::string(rfc3339(*t));
}

// An upstream and what the client last saw from it, as the front page and /readyz show it.
json::object upstream_json(const upstream_state& u) {
  json::object o;
  o["protocol"] = u.protocol;
  o["name"] = u.name;
  o["url"] = u.url;
  o["last_success"] = time_or_null(u.last_success);
  o["last_failure"] = time_or_null(u.last_failure);
  if (u.last_failure) {
    o["failure"] = u.failure;
  } else {
    o["failure"] = nullptr;
  }
  return o;
}

// What a reload did, as /readyz and the reload route show it.
json::object reload_object(const config::reload_report& r) {
  json::object o;
  o["outcome"] = config::to_string(r.outcome);
  o["source"] = r.source;
  o["at"] = rfc3339(r.at);
  if (r.outcome == config::reload_outcome::refused) o["error"] = r.error;
  json::array changed;
  for (const auto& c : r.changed)
    changed.emplace_back(c);
  o["changed"] = std::move(changed);
  json::array restart;
  for (const auto& c : r.needs_restart) {
    json::object k;
    k["key"] = c.key;
    k["running"] = c.running;
    k["wanted"] = c.wanted;
    restart.emplace_back(std::move(k));
  }
  o["needs_restart"] = std::move(restart);
  return o;
}

}  // namespace

std::string reload_json(const config::reload_report& report) {
  return json::serialize(reload_object(report)) + "\n";
}

std::string base_address::host() const {
  if (!authority.empty() && authority.front() == '[') {
    return authority.substr(0, authority.find(']') + 1);
  }
  return authority.substr(0, authority.find(':'));
}

base_address base_address_of(std::string_view host_header, std::string_view forwarded_proto,
                             std::string_view fallback) {
  base_address b;
  if (ascii_iequals(trim_ascii_space(forwarded_proto), "https")) b.scheme = "https";
  auto checked = checked_authority(trim_ascii_space(host_header));
  b.authority = checked ? *checked : std::string(fallback);
  return b;
}

std::string without_user_info(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return "(not a URL)";
  boost::urls::url u(*parsed);
  u.remove_userinfo();
  return std::string(u.buffer());
}

std::vector<upstream_state> upstreams_of(const config::config& cfg) {
  std::vector<upstream_state> out;
  for (const auto& u : cfg.pypi.upstreams) {
    upstream_state s;
    s.protocol = "pypi";
    s.name = u.name;
    s.url = without_user_info(u.url);
    s.credentials = s.url != u.url;
    out.push_back(std::move(s));
  }
  for (const auto& u : cfg.oci.upstreams) {
    upstream_state s;
    s.protocol = "oci";
    s.name = u.name;
    s.url = without_user_info(u.url);
    s.credentials = s.url != u.url || !u.username.empty();
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<client_setting> client_settings(const config::config& cfg, const base_address& base) {
  std::vector<client_setting> out;
  const std::string url = base.url();
  const bool plain = base.scheme != "https";
  if (!cfg.pypi.upstreams.empty()) {
    const std::string index = url + "/simple/";
    // pip ignores a plain-HTTP index on any host but localhost unless it is a trusted host.
    std::string env = "export PIP_INDEX_URL=" + index + "\n";
    if (plain) env += "export PIP_TRUSTED_HOST=" + base.host() + "\n";
    out.push_back({"pip", "pip", "shell", env});
    std::string conf = "[global]\nindex-url = " + index + "\n";
    if (plain) conf += "trusted-host = " + base.host() + "\n";
    out.push_back({"pip-conf", "pip", "/etc/pip.conf or ~/.config/pip/pip.conf", conf});
    out.push_back({"uv", "uv", "shell",
                   "export UV_DEFAULT_INDEX=" + index + "\nexport UV_INDEX_URL=" + index +
                       "   # uv before 0.4.23\n"});
    out.push_back({"poetry", "poetry", "pyproject.toml",
                   "[[tool.poetry.source]]\nname = \"pantry\"\nurl = \"" + index +
                       "\"\npriority = \"primary\"   # poetry before 1.5: default = true\n"});
  }
  for (const auto& h : cfg.pypi.hosted) {
    out.push_back({"twine-" + h.name, "twine (" + h.name + ")",
                   "~/.pypirc, then twine upload -r " + h.name + " dist/*",
                   "[distutils]\nindex-servers = " + h.name + "\n\n[" + h.name +
                       "]\nrepository = " + url + "/" + h.name +
                       "/\nusername = <a user of oci.hosted.users>\npassword = <its token>\n"});
  }
  if (!cfg.oci.upstreams.empty()) {
    if (cfg.oci.default_upstream == "docker.io") {
      std::string daemon = "{\n  \"registry-mirrors\": [\"" + url + "\"]";
      if (plain) daemon += ",\n  \"insecure-registries\": [\"" + base.authority + "\"]";
      daemon += "\n}\n";
      out.push_back(
          {"dockerd", "dockerd", "/etc/docker/daemon.json, then restart dockerd", daemon});
    }
    std::string podman;
    for (const auto& u : cfg.oci.upstreams) {
      const std::string mirror =
          u.name == cfg.oci.default_upstream ? base.authority : base.authority + "/" + u.name;
      if (!podman.empty()) podman += "\n";
      podman += "[[registry]]\nprefix = \"" + u.name + "\"\nlocation = \"" + u.name +
                "\"\n[[registry.mirror]]\nlocation = \"" + mirror + "\"\n";
      if (plain) podman += "insecure = true\n";
    }
    out.push_back({"podman", "podman, buildah, skopeo", "/etc/containers/registries.conf", podman});
    for (const auto& u : cfg.oci.upstreams) {
      out.push_back({"containerd-" + u.name, "containerd (" + u.name + ")",
                     "/etc/containerd/certs.d/" + u.name + "/hosts.toml",
                     "server = \"" + without_user_info(u.url) + "\"\n\n[host.\"" + url +
                         "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"});
    }
  }
  return out;
}

front_page make_front_page(const config::config& cfg, const base_address& base,
                           std::string version) {
  front_page p;
  p.version = std::move(version);
  p.base = base;
  p.settings = client_settings(cfg, base);
  p.upstreams = upstreams_of(cfg);
  p.cache.quota = cfg.cache.max_size;
  p.default_oci_upstream = cfg.oci.default_upstream;
  p.oci_hosted_prefix = cfg.oci.hosted.prefix;
  for (const auto& h : cfg.pypi.hosted)
    p.pypi_hosted.push_back(h.name);
  p.runner = cfg.runner.enabled;
  p.ci = cfg.ci.enabled && cfg.ci.runner_of.url.empty();
  if (!cfg.ci.runner_of.url.empty()) p.runner_of = without_user_info(cfg.ci.runner_of.url);
  return p;
}

bool wants_json(const std::vector<std::string_view>& accept_lines) {
  double json_q = 0;
  double html_q = 0;
  for (auto line : accept_lines) {
    while (!line.empty()) {
      const auto comma = line.find(',');
      std::string_view range = line.substr(0, comma);
      line = comma == std::string_view::npos ? std::string_view{} : line.substr(comma + 1);
      const auto semi = range.find(';');
      const std::string_view type = trim_ascii_space(range.substr(0, semi));
      double q = 1;
      if (semi != std::string_view::npos) {
        std::string_view params = range.substr(semi + 1);
        const auto qpos = params.find("q=");
        if (qpos != std::string_view::npos) {
          std::string_view v = trim_ascii_space(params.substr(qpos + 2));
          v = v.substr(0, v.find(';'));
          q = 0;
          // "1", "0.8", "0.123": the integer part, then up to three decimals.
          if (!v.empty() && (v.front() == '0' || v.front() == '1')) {
            q = v.front() - '0';
            double scale = 0.1;
            for (std::size_t i = 2; i < v.size() && i < 5 && v[1] == '.'; ++i, scale /= 10) {
              if (!std::isdigit(static_cast<unsigned char>(v[i]))) break;
              q += (v[i] - '0') * scale;
            }
          }
        }
      }
      if (ascii_iequals(type, "application/json")) json_q = std::max(json_q, q);
      if (ascii_iequals(type, "text/html")) html_q = std::max(html_q, q);
    }
  }
  return json_q > 0 && json_q >= html_q;
}

std::string render_html(const front_page& p) {
  std::string body;
  body += "<h1>pantry ";
  append_escaped(body, p.version);
  body += " at ";
  append_escaped(body, p.base.authority);
  body += "</h1>\n<p>A caching proxy for Python packages and container images";
  if (p.ci) body += ", and a CI coordinator";
  body += ". This page as JSON: <code>curl -H 'Accept: application/json' ";
  append_escaped(body, p.base.url());
  body += "/</code></p>\n";
  append_services(body, p);
  append_settings(body, p);
  append_upstreams(body, p);
  append_cache(body, p);
  append_ci(body, p);
  body += "<p class=\"muted\">Rendered ";
  append_escaped(body, rfc3339(p.now));
  body += ".</p>\n";
  return html_document("Overview", "/", body);
}

std::string render_json(const front_page& p) {
  json::object o;
  o["version"] = p.version;
  o["url"] = p.base.url();
  json::object serves;
  json::array pypi;
  json::array oci;
  for (const auto& u : p.upstreams)
    (u.protocol == "pypi" ? pypi : oci).push_back(json::value(u.name));
  if (!pypi.empty()) {
    json::object s;
    s["index_url"] = p.base.url() + "/simple/";
    s["upstreams"] = std::move(pypi);
    serves["pypi"] = std::move(s);
  }
  if (!p.pypi_hosted.empty()) {
    json::array hosted;
    for (const auto& name : p.pypi_hosted) {
      json::object h;
      h["name"] = name;
      h["repository_url"] = p.base.url() + "/" + name + "/";
      hosted.push_back(std::move(h));
    }
    serves["pypi_hosted"] = std::move(hosted);
  }
  if (!oci.empty() || !p.oci_hosted_prefix.empty()) {
    json::object s;
    s["registry"] = p.base.authority;
    s["default_upstream"] = p.default_oci_upstream;
    s["upstreams"] = std::move(oci);
    if (!p.oci_hosted_prefix.empty()) s["hosted_prefix"] = p.oci_hosted_prefix;
    serves["oci"] = std::move(s);
  }
  serves["runner"] = p.runner;
  if (p.ci) {
    json::object s;
    s["api"] = p.base.url() + "/api/v1/";
    s["pipelines"] = p.base.url() + "/api/v1/pipelines";
    s["token_required"] = true;
    serves["ci"] = std::move(s);
  }
  if (!p.runner_of.empty()) serves["runner_of"] = p.runner_of;
  o["serves"] = std::move(serves);
  json::array settings;
  for (const auto& s : p.settings) {
    json::object so;
    so["id"] = s.id;
    so["client"] = s.client;
    so["where"] = s.where;
    so["text"] = s.text;
    settings.push_back(std::move(so));
  }
  o["client_settings"] = std::move(settings);
  json::array ups;
  for (const auto& u : p.upstreams) {
    json::object uo = upstream_json(u);
    uo["credentials"] = u.credentials;
    ups.push_back(std::move(uo));
  }
  o["upstreams"] = std::move(ups);
  json::object c;
  c["bytes"] = p.cache.bytes;
  c["quota"] = p.cache.quota;
  c["objects"] = p.cache.objects;
  c["entries"] = p.cache.entries;
  c["hits"] = p.cache.hits;
  c["misses"] = p.cache.misses;
  o["cache"] = std::move(c);
  o["now"] = rfc3339(p.now);
  return json::serialize(o) + "\n";
}

readiness assess_readiness(const std::vector<upstream_state>& upstreams,
                           const std::string& cache_problem,
                           const std::optional<config::reload_report>& last_reload) {
  readiness r;
  r.ready = cache_problem.empty();
  bool degraded = false;
  json::array ups;
  for (const auto& u : upstreams) {
    // The later of the two records is the upstream's state now.
    const char* state = "unknown";
    if (u.last_failure && (!u.last_success || *u.last_failure > *u.last_success)) {
      state = "failing";
      degraded = true;
    } else if (u.last_success) {
      state = "up";
    }
    json::object uo = upstream_json(u);
    uo["state"] = state;
    ups.push_back(std::move(uo));
  }
  json::object o;
  o["ready"] = r.ready;
  o["degraded"] = degraded;
  if (r.ready) {
    o["cache"] = "ok";
  } else {
    o["cache"] = cache_problem;
  }
  o["upstreams"] = std::move(ups);
  // The running config is valid (it was checked before it ran); a refused reload says that the
  // file on disk is not, and that what runs is older than it.
  json::object cfg;
  cfg["valid"] = !last_reload || last_reload->outcome != config::reload_outcome::refused;
  if (last_reload) {
    cfg["last_reload"] = reload_object(*last_reload);
  } else {
    cfg["last_reload"] = nullptr;
  }
  o["config"] = std::move(cfg);
  r.json = json::serialize(o) + "\n";
  return r;
}

}  // namespace pantry::web
