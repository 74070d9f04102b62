// The forges' pull request APIs, the pure half (forge.h's forge_api): each request built and each
// answer read, without a network.

#include "pantry/orchestrator/pins/forge.h"

#include "pantry/text.h"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace pantry::orchestrator::pins {
namespace {

namespace json = boost::json;
using config::pins_forge_kind;

std::string encoded(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

}  // namespace

std::string forge_api::name() const {
  const config::pins_forge& f = forge_;
  return std::string(config::to_string(f.kind)) + " " + f.repository;
}

namespace {

// A string field of `o`; null (GitHub's and GitLab's empty body) reads as "".
result<std::string> string_field(const json::object& o, std::string_view key,
                                 std::string_view forge) {
  const json::value* v = o.if_contains(key);
  if (v && v->is_null()) return std::string();
  if (!v || !v->is_string()) {
    return error(errc::invalid_argument, std::string(forge) +
                                             ": a pull request's answer has no string \"" +
                                             std::string(key) + "\"");
  }
  return std::string(v->get_string());
}

// The branch of a GitHub or Gitea pull request: head.ref.
result<std::string> head_ref(const json::object& o, std::string_view forge) {
  const json::value* head = o.if_contains("head");
  if (!head || !head->is_object()) {
    return error(errc::invalid_argument,
                 std::string(forge) + ": a pull request's answer has no object \"head\"");
  }
  return string_field(head->get_object(), "ref", forge);
}

result<pull_request> read_pr(pins_forge_kind kind, const json::value& v, std::string_view forge) {
  if (!v.is_object()) {
    return error(errc::invalid_argument,
                 std::string(forge) + ": a pull request's answer is not a JSON object");
  }
  const json::object& o = v.get_object();
  const bool gitlab = kind == pins_forge_kind::gitlab;
  pull_request pr;
  const json::value* number = o.if_contains(gitlab ? "iid" : "number");
  if (!number || !(number->is_int64() || number->is_uint64()) ||
      (number->is_int64() && number->get_int64() <= 0)) {
    return error(errc::invalid_argument, std::string(forge) +
                                             ": a pull request's answer has no positive \"" +
                                             (gitlab ? "iid" : "number") + "\"");
  }
  pr.number =
      number->is_int64() ? static_cast<std::uint64_t>(number->get_int64()) : number->get_uint64();
  auto url = string_field(o, gitlab ? "web_url" : "html_url", forge);
  if (!url) return url.error();
  pr.url = std::move(*url);
  auto head = gitlab ? string_field(o, "source_branch", forge) : head_ref(o, forge);
  if (!head) return head.error();
  pr.head = std::move(*head);
  auto title = string_field(o, "title", forge);
  if (!title) return title.error();
  pr.title = std::move(*title);
  auto body = string_field(o, gitlab ? "description" : "body", forge);
  if (!body) return body.error();
  pr.body = std::move(*body);
  auto state = string_field(o, "state", forge);
  if (!state) return state.error();
  switch (kind) {
    case pins_forge_kind::github: {
      // A closed pull request was merged when it has a merge time.
      const json::value* merged_at = o.if_contains("merged_at");
      pr.open = *state == "open";
      pr.merged = !pr.open && merged_at && merged_at->is_string();
      break;
    }
    case pins_forge_kind::gitlab:
      // "locked" is an open merge request while GitLab merges it.
      pr.open = *state == "opened" || *state == "locked";
      pr.merged = *state == "merged";
      break;
    case pins_forge_kind::gitea: {
      const json::value* merged = o.if_contains("merged");
      pr.open = *state == "open";
      pr.merged = !pr.open && merged && merged->is_bool() && merged->get_bool();
      break;
    }
    case pins_forge_kind::none:
      break;
  }
  if (!pr.open && !pr.merged && *state != "closed") {
    return error(errc::invalid_argument, std::string(forge) + ": a pull request's state " +
                                             quote_for_message(*state) + " is unknown");
  }
  return pr;
}

result<json::value> parse_json(std::string_view text, std::string_view forge) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) {
    return error(errc::invalid_argument,
                 std::string(forge) + ": the answer is not JSON (" + ec.message() + ")");
  }
  return v;
}

std::string serialized(const json::object& o) {
  return json::serialize(o);
}

}  // namespace

result<forge_api> forge_api::create(config::pins_forge forge) {
  const std::string& repo = forge.repository;
  const auto bad = [&](std::string_view why) {
    return error(errc::invalid_argument, std::string(config::to_string(forge.kind)) +
                                             " repository " + quote_for_message(repo) + " " +
                                             std::string(why));
  };
  if (forge.kind == pins_forge_kind::none) {
    return error(errc::invalid_argument, "the repository " + quote_for_message(repo) +
                                             " has no forge (kind none): set forge.kind to "
                                             "github, gitlab or gitea to open pull requests");
  }
  if (repo.empty() || repo.front() == '/' || repo.back() == '/' ||
      repo.find("//") != std::string::npos || repo.find('/') == std::string::npos) {
    return bad("is not OWNER/NAME: write it as the forge's URL of it shows it, e.g. owner/project");
  }
  for (char c : repo) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '?' || c == '#' || c == '%') {
      return bad("has a space, control character, '?', '#' or '%'");
    }
  }
  std::string prefix;
  if (forge.kind == pins_forge_kind::gitlab) {
    prefix = "/projects/" + encoded(repo);
  } else {
    if (repo.find('/') != repo.rfind('/')) return bad("is not OWNER/NAME (one '/')");
    const std::size_t slash = repo.find('/');
    prefix = "/repos/" + encoded(repo.substr(0, slash)) + "/" + encoded(repo.substr(slash + 1));
  }
  return forge_api(std::move(forge), std::move(prefix));
}

std::pair<std::string, std::string> forge_api::auth_header(std::string_view token) const {
  switch (forge_.kind) {
    case pins_forge_kind::gitlab:
      return {"PRIVATE-TOKEN", std::string(token)};
    case pins_forge_kind::gitea:
      return {"Authorization", "token " + std::string(token)};
    default:
      return {"Authorization", "Bearer " + std::string(token)};
  }
}

forge_request forge_api::open_request(std::string_view head, std::string_view base,
                                      std::string_view title, std::string_view body) const {
  json::object o;
  if (forge_.kind == pins_forge_kind::gitlab) {
    o["source_branch"] = head;
    o["target_branch"] = base;
    o["title"] = title;
    o["description"] = body;
    return {"POST", prefix_ + "/merge_requests", serialized(o)};
  }
  o["title"] = title;
  o["head"] = head;
  o["base"] = base;
  o["body"] = body;
  return {"POST", prefix_ + "/pulls", serialized(o)};
}

forge_request forge_api::list_request(pr_state state, std::string_view head, unsigned page) const {
  const std::string n = std::to_string(page);
  const std::string size = std::to_string(kPageSize);
  switch (forge_.kind) {
    case pins_forge_kind::gitlab: {
      std::string path =
          prefix_ + "/merge_requests?state=" + (state == pr_state::open ? "opened" : "closed");
      if (!head.empty()) path += "&source_branch=" + encoded(head);
      return {"GET", path + "&per_page=" + size + "&page=" + n, ""};
    }
    case pins_forge_kind::gitea:
      return {"GET",
              prefix_ + "/pulls?state=" + (state == pr_state::open ? "open" : "closed") +
                  "&limit=" + size + "&page=" + n,
              ""};
    default: {
      std::string path = prefix_ + "/pulls?state=" + (state == pr_state::open ? "open" : "closed");
      if (!head.empty()) {
        const std::string owner = forge_.repository.substr(0, forge_.repository.find('/'));
        path += "&head=" + encoded(owner + ":" + std::string(head));
      }
      return {"GET", path + "&per_page=" + size + "&page=" + n, ""};
    }
  }
}

forge_request forge_api::update_request(std::uint64_t number, std::string_view title,
                                        std::string_view body) const {
  json::object o;
  o["title"] = title;
  if (forge_.kind == pins_forge_kind::gitlab) {
    o["description"] = body;
    return {"PUT", prefix_ + "/merge_requests/" + std::to_string(number), serialized(o)};
  }
  o["body"] = body;
  return {"PATCH", prefix_ + "/pulls/" + std::to_string(number), serialized(o)};
}

forge_request forge_api::close_request(std::uint64_t number) const {
  json::object o;
  if (forge_.kind == pins_forge_kind::gitlab) {
    o["state_event"] = "close";
    return {"PUT", prefix_ + "/merge_requests/" + std::to_string(number), serialized(o)};
  }
  o["state"] = "closed";
  return {"PATCH", prefix_ + "/pulls/" + std::to_string(number), serialized(o)};
}

forge_request forge_api::comment_request(std::uint64_t number, std::string_view body) const {
  json::object o;
  o["body"] = body;
  if (forge_.kind == pins_forge_kind::gitlab)
    return {"POST", prefix_ + "/merge_requests/" + std::to_string(number) + "/notes",
            serialized(o)};
  return {"POST", prefix_ + "/issues/" + std::to_string(number) + "/comments", serialized(o)};
}

result<pull_request> forge_api::parse_one(std::string_view text) const {
  const std::string forge = name();
  auto v = parse_json(text, forge);
  if (!v) return v.error();
  return read_pr(forge_.kind, *v, forge);
}

result<std::vector<pull_request>> forge_api::parse_list(std::string_view text) const {
  const std::string forge = name();
  auto v = parse_json(text, forge);
  if (!v) return v.error();
  if (!v->is_array()) {
    return error(errc::invalid_argument, forge + ": a list of pull requests is not a JSON array");
  }
  std::vector<pull_request> out;
  for (const json::value& item : v->get_array()) {
    auto pr = read_pr(forge_.kind, item, forge);
    if (!pr) return pr.error();
    out.push_back(std::move(*pr));
  }
  return out;
}

result<std::uint64_t> forge_api::parse_comment(std::string_view text) const {
  const std::string forge = name();
  auto v = parse_json(text, forge);
  if (!v) return v.error();
  const json::value* id = v->is_object() ? v->get_object().if_contains("id") : nullptr;
  if (id && id->is_uint64()) return id->get_uint64();
  if (id && id->is_int64() && id->get_int64() > 0)
    return static_cast<std::uint64_t>(id->get_int64());
  return error(errc::invalid_argument,
               forge + ": a comment's answer is not a JSON object with a positive \"id\"");
}

bool forge_api::already_exists(unsigned status, std::string_view answer) const {
  const std::string text = ascii_lower(answer);
  switch (forge_.kind) {
    case pins_forge_kind::gitlab:
      return status == 409;
    case pins_forge_kind::gitea:
      return status == 409 || (status == 422 && text.find("already exists") != std::string::npos);
    default:
      return status == 422 && text.find("a pull request already exists") != std::string::npos;
  }
}

}  // namespace pantry::orchestrator::pins
