// The forges' pull request APIs over HTTP (forge.h's forge_client): forge_api's requests sent
// with the coordinator's blocking HTTP client, every failure worded with the forge, the request
// and the answer.

#include "pantry/orchestrator/coordinator/api_client.h"
#include "pantry/orchestrator/pins/forge.h"
#include "pantry/proxy/client.h"
#include "pantry/text.h"

#include <boost/json.hpp>

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
  const std::string forge = api_.name();
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

result<std::uint64_t> forge_client::comment(std::uint64_t number, std::string_view body) {
  auto text = send(api_.comment_request(number, body),
                   "commenting on pull request " + std::to_string(number));
  if (!text) return text.error();
  return api_.parse_comment(*text);
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
