#pragma once

// The pin bot's forges: the pull requests (GitLab: merge requests) of its branches on GitHub,
// GitLab and Gitea, through each one's REST API. Opening one, finding the one of a branch,
// updating its title and body, commenting on it and closing it (a superseded one), and listing a
// repository's pull requests (to count the bot's open ones and to learn which of its branches were
// closed without merging).
//
// Two layers: the pure one (forge_api) builds each request (method, path, JSON body, auth header)
// and reads each answer, so that unit tests check them byte for byte without a network; the
// client (forge_client) sends them with the coordinator's blocking HTTP client and words every
// failure with the forge, the request and the answer. A refused token (401, 403 on GitLab and
// Gitea) names the token file, never the token.
//
// Thread safety: forge_api is immutable; forge_client is one call at a time (it owns an
// api_client).

#include "pantry/config/config.h"
#include "pantry/error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::coordinator {
class api_client;
}

namespace pantry::orchestrator::pins {

// A pull request as the forges describe it, in their common terms.
struct pull_request {
  std::uint64_t number = 0;  // GitHub and Gitea "number", GitLab "iid"
  std::string url;           // the page a person opens (html_url, web_url)
  std::string head;          // the branch it merges
  std::string title;
  std::string body;  // GitLab's "description"
  bool open = false;
  bool merged = false;  // closed by merging it (never true while open)
  friend bool operator==(const pull_request&, const pull_request&) = default;
};

// Which pull requests a listing asks for.
enum class pr_state { open, closed };

// One REST request, before it is sent.
struct forge_request {
  std::string method;  // "GET", "POST", "PATCH", "PUT"
  std::string path;    // appended to the forge's api URL, with its query
  std::string body;    // JSON, or empty for GET
  friend bool operator==(const forge_request&, const forge_request&) = default;
};

// The requests and answers of one repository on one forge. Pure.
class forge_api {
 public:
  // Errors (invalid_argument) name a forge of kind none and a repository that is not
  // "OWNER/NAME" (GitHub, Gitea) or a project path (GitLab: groups allowed, no empty segment).
  static result<forge_api> create(config::pins_forge forge);

  const config::pins_forge& forge() const noexcept { return forge_; }
  // "github octo/app": how messages name the forge and repository.
  std::string name() const;

  // The authorization header for `token` as the forge documents it: GitHub
  // {"Authorization", "Bearer T"}, GitLab {"PRIVATE-TOKEN", "T"}, Gitea {"Authorization", "token
  // T"}.
  std::pair<std::string, std::string> auth_header(std::string_view token) const;

  // GitHub and Gitea: POST /repos/O/R/pulls {title, head, base, body}; GitLab: POST
  // /projects/ID/merge_requests {source_branch, target_branch, title, description}, ID being the
  // URL-encoded project path.
  forge_request open_request(std::string_view head, std::string_view base, std::string_view title,
                             std::string_view body) const;
  // Page `page` (from 1) of the repository's pull requests in `state`, kPageSize a page; with a
  // `head`, only that branch's (GitHub head=OWNER:BRANCH, GitLab source_branch=; Gitea has no
  // such filter: the caller filters by pull_request::head).
  forge_request list_request(pr_state state, std::string_view head, unsigned page) const;
  // GitHub and Gitea: PATCH /repos/O/R/pulls/N {title, body}; GitLab: PUT
  // /projects/ID/merge_requests/N {title, description}.
  forge_request update_request(std::uint64_t number, std::string_view title,
                               std::string_view body) const;
  // The same with {state: "closed"} (GitLab {state_event: "close"}).
  forge_request close_request(std::uint64_t number) const;
  // A comment `body` on pull request `number`: GitHub and Gitea POST /repos/O/R/issues/N/comments
  // {body} (a pull request is an issue there), GitLab POST /projects/ID/merge_requests/N/notes
  // {body}.
  forge_request comment_request(std::uint64_t number, std::string_view body) const;

  // One pull request of an answer (to open, update and close). Errors (invalid_argument) name
  // the forge and the field that is missing or of the wrong type.
  result<pull_request> parse_one(std::string_view json) const;
  // The pull requests of a listing's answer (a JSON array).
  result<std::vector<pull_request>> parse_list(std::string_view json) const;
  // The id of the comment (GitLab: note) of a comment_request's answer. Errors
  // (invalid_argument) name the forge and what the answer lacks.
  result<std::uint64_t> parse_comment(std::string_view json) const;

  // Whether a refused open_request means that an open pull request of that branch already
  // exists: GitHub 422 with "A pull request already exists", GitLab 409, Gitea 409 or 422 with
  // "already exists".
  bool already_exists(unsigned status, std::string_view answer) const;

  static constexpr unsigned kPageSize = 50;

 private:
  explicit forge_api(config::pins_forge forge, std::string prefix)
      : forge_(std::move(forge)), prefix_(std::move(prefix)) {}

  config::pins_forge forge_;
  std::string prefix_;  // "/repos/O/R" or "/projects/ID"
};

// A forge's pull requests over HTTP(S).
class forge_client {
 public:
  // Reads the token from forge.token_file (trailing whitespace dropped). Errors name a forge
  // that create() refuses, and a token file that cannot be read or is empty.
  static result<std::unique_ptr<forge_client>> create(const config::pins_forge& forge);
  ~forge_client();
  forge_client(const forge_client&) = delete;
  forge_client& operator=(const forge_client&) = delete;

  // The result of open_or_update().
  struct opened {
    pull_request pr;
    bool created = false;  // false: it was open already and was updated
  };

  // Opens the pull request of `head` into `base`; when the forge answers that one is open already
  // ("already open: URL"), finds it and updates its title and body instead.
  result<opened> open_or_update(std::string_view head, std::string_view base,
                                std::string_view title, std::string_view body);
  // The open pull request of branch `head`, if there is one.
  result<std::optional<pull_request>> find_open(std::string_view head);
  result<pull_request> update(std::uint64_t number, std::string_view title, std::string_view body);
  result<pull_request> close(std::uint64_t number);
  // Adds the comment `body` to pull request `number`; the comment's id.
  result<std::uint64_t> comment(std::uint64_t number, std::string_view body);
  // Every pull request in `state` (all pages) whose branch starts with `head_prefix`.
  result<std::vector<pull_request>> list(pr_state state, std::string_view head_prefix);
  // Whether a pull request of branch `head` was closed without merging (and none is open).
  result<bool> closed_unmerged(std::string_view head);

  const forge_api& api() const noexcept { return api_; }

 private:
  forge_client(forge_api api, std::string token);
  // The answer's body of a 2xx; else an error naming the forge, `what`, the request and the
  // answer. `status_out` and `answer_out` receive any answer's status and body.
  result<std::string> send(const forge_request& req, std::string_view what,
                           unsigned* status_out = nullptr, std::string* answer_out = nullptr);

  forge_api api_;
  std::string token_;
  std::unique_ptr<coordinator::api_client> http_;
};

}  // namespace pantry::orchestrator::pins
