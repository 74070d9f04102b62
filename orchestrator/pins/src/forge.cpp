// The forges' pull request APIs: requests built and answers read here, sent with the
// coordinator's blocking HTTP client (see forge.h).

#include "pantry/orchestrator/pins/forge.h"

#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/proxy/client.h"
#include "pantry/text.h"

#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pantry::orchestrator::pins {
namespace {

namespace json = boost::json;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using config::pins_forge_kind;
using coordinator::api_client;

constexpr std::size_t kMaxAnswer = std::size_t{8} << 20;

std::string encoded(std::string_view s) {
  return boost::urls::encode(s, boost::urls::unreserved_chars);
}

std::string name_of(const config::pins_forge& f) {
  return std::string(config::to_string(f.kind)) + " " + f.repository;
}

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

// GitHub's and Gitea's validation errors say what is wrong in "errors" (GitHub: objects with a
// "message", Gitea: strings), not in the "message" that api_client::failure() quotes.
std::string details_of(std::string_view answer) {
  boost::system::error_code ec;
  const json::value v = json::parse(answer, ec);
  if (ec || !v.is_object()) return {};
  const json::value* errors = v.get_object().if_contains("errors");
  if (!errors || !errors->is_array()) return {};
  std::string out;
  for (const json::value& e : errors->get_array()) {
    const json::value* m = e.is_object() ? e.get_object().if_contains("message") : &e;
    if (m && m->is_string()) out += " (" + std::string(m->get_string()) + ")";
  }
  return out;
}

std::string serialized(const json::object& o) {
  return json::serialize(o);
}

// Sends one request with the client's connections and reads the whole answer.
asio::awaitable<result<api_client::reply>> exchange(std::shared_ptr<proxy::client> client,
                                                    proxy::request req) {
  api_client::reply out;
  out.method = std::string(http::to_string(req.method));
  out.url = req.url;
  auto sent = co_await client->send(std::move(req));
  if (!sent) co_return sent.error();
  out.status = sent->status();
  out.headers = sent->headers();
  auto text = co_await sent->read_all(kMaxAnswer);
  if (!text) co_return text.error();
  out.body = std::move(*text);
  co_return out;
}

result<std::string> read_token(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return error(errc::not_found,
                 "the forge's token file " + file + " cannot be opened: " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string token(trim_ascii_space(text.str()));
  if (token.empty()) {
    return error(errc::config_error,
                 "the forge's token file " + file + " is empty: write the API token in it");
  }
  if (token.find_first_of("\r\n") != std::string::npos) {
    return error(errc::config_error,
                 "the forge's token file " + file + " has more than one line: keep only the token");
  }
  return token;
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

result<pull_request> forge_api::parse_one(std::string_view text) const {
  const std::string forge = name_of(forge_);
  auto v = parse_json(text, forge);
  if (!v) return v.error();
  return read_pr(forge_.kind, *v, forge);
}

result<std::vector<pull_request>> forge_api::parse_list(std::string_view text) const {
  const std::string forge = name_of(forge_);
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

forge_client::forge_client(forge_api api, std::string token)
    : api_(std::move(api)), token_(std::move(token)) {
  coordinator::api_client_options opt;
  opt.user_agent = "pantry-pins";
  // The token goes in the forge's own header (send()); the client's Bearer header is not used.
  http_ = std::make_unique<api_client>(api_.forge().api, std::string(), opt);
}

forge_client::~forge_client() = default;

result<std::unique_ptr<forge_client>> forge_client::create(const config::pins_forge& forge) {
  auto api = forge_api::create(forge);
  if (!api) return api.error();
  auto token = read_token(forge.token_file);
  if (!token) return token.error();
  return std::unique_ptr<forge_client>(new forge_client(std::move(*api), std::move(*token)));
}

result<std::string> forge_client::send(const forge_request& req, std::string_view what,
                                       unsigned* status_out, std::string* answer_out) {
  proxy::request r;
  r.method = http::string_to_verb(req.method);
  r.url = http_->base_url() + req.path;
  const auto [name, value] = api_.auth_header(token_);
  r.headers.set(name, value);
  r.headers.set(http::field::accept, api_.forge().kind == pins_forge_kind::github
                                         ? "application/vnd.github+json"
                                         : "application/json");
  if (!req.body.empty()) {
    r.headers.set(http::field::content_type, "application/json");
    r.body = req.body;
  }
  const std::string forge = name_of(api_.forge());
  auto answer = http_->run(exchange(http_->http_client(), std::move(r)));
  if (!answer) {
    return error(answer.error().code, forge + ": " + std::string(what) + ": " + req.method + " " +
                                          http_->base_url() + req.path + ": " +
                                          answer.error().message);
  }
  if (status_out) *status_out = answer->status;
  if (answer_out) *answer_out = answer->body;
  if (answer->status >= 200 && answer->status < 300) return std::move(answer->body);
  const bool refused = answer->status == 401 ||
                       (answer->status == 403 && api_.forge().kind != pins_forge_kind::github);
  error e = api_client::failure(forge + ": " + std::string(what), *answer);
  e.message += details_of(answer->body);
  if (refused) {
    e.code = make_error_code(errc::config_error);
    e.message += "; the token in " + api_.forge().token_file +
                 " is refused: check that it is current and may write pull requests";
  }
  return e;
}

result<forge_client::opened> forge_client::open_or_update(std::string_view head,
                                                          std::string_view base,
                                                          std::string_view title,
                                                          std::string_view body) {
  unsigned status = 0;
  std::string answer;
  const forge_request req = api_.open_request(head, base, title, body);
  auto made = send(req, "opening a pull request of " + std::string(head), &status, &answer);
  if (made) {
    auto pr = api_.parse_one(*made);
    if (!pr) return pr.error();
    return opened{std::move(*pr), true};
  }
  if (!api_.already_exists(status, answer)) return made.error();
  auto found = find_open(head);
  if (!found) return found.error();
  if (!*found) {
    return error(errc::conflict, made.error().message + "; yet no open pull request of " +
                                     std::string(head) + " is listed");
  }
  auto updated = update((*found)->number, title, body);
  if (!updated) {
    return error(updated.error().code,
                 "already open: " + (*found)->url + "; " + updated.error().message);
  }
  return opened{std::move(*updated), false};
}

result<std::optional<pull_request>> forge_client::find_open(std::string_view head) {
  auto all = list(pr_state::open, head);
  if (!all) return all.error();
  for (pull_request& pr : *all) {
    if (pr.head == head) return std::optional<pull_request>(std::move(pr));
  }
  return std::optional<pull_request>();
}

result<pull_request> forge_client::update(std::uint64_t number, std::string_view title,
                                          std::string_view body) {
  auto text = send(api_.update_request(number, title, body),
                   "updating pull request " + std::to_string(number));
  if (!text) return text.error();
  return api_.parse_one(*text);
}

result<pull_request> forge_client::close(std::uint64_t number) {
  auto text = send(api_.close_request(number), "closing pull request " + std::to_string(number));
  if (!text) return text.error();
  return api_.parse_one(*text);
}

result<std::vector<pull_request>> forge_client::list(pr_state state, std::string_view head_prefix) {
  // An exact branch is filtered by the forge where it can; a prefix only here.
  const bool exact = !head_prefix.empty() && !head_prefix.ends_with('/');
  std::vector<pull_request> out;
  for (unsigned page = 1;; ++page) {
    auto text = send(api_.list_request(state, exact ? head_prefix : std::string_view(), page),
                     "listing pull requests");
    if (!text) return text.error();
    auto some = api_.parse_list(*text);
    if (!some) return some.error();
    for (pull_request& pr : *some) {
      if (exact ? pr.head == head_prefix : pr.head.starts_with(head_prefix)) {
        out.push_back(std::move(pr));
      }
    }
    if (some->size() < forge_api::kPageSize) break;
  }
  return out;
}

result<bool> forge_client::closed_unmerged(std::string_view head) {
  auto open = find_open(head);
  if (!open) return open.error();
  if (*open) return false;
  auto closed = list(pr_state::closed, head);
  if (!closed) return closed.error();
  for (const pull_request& pr : *closed) {
    if (!pr.merged) return true;
  }
  return false;
}

}  // namespace pantry::orchestrator::pins
