#pragma once

// A job as a runner receives it: everything needed to run it without asking the coordinator
// anything but the source, the artifacts of the jobs it needs, and where its log goes. The
// built-in runner gets it as a C++ value; a remote runner (`pantry runner`) as the JSON below,
// the answer to its claim (POST /api/v1/runners/claim). Secret values travel in it: the
// coordinator sends a ticket with secrets to a remote runner over TLS only.

#include "pantry/error.h"
#include "pantry/orchestrator/coordinator/ids.h"
#include "pantry/orchestrator/runner/bundle.h"
#include "pantry/orchestrator/runner/step_request.h"

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pantry::orchestrator::coordinator {

// True iff `s` is a full git commit id as `git rev-parse` prints it: 40 lowercase hex digits.
bool is_commit_id(std::string_view s) noexcept;

// Where a pipeline's files come from.
struct source_ref {
  enum class kind { none, tree, git };
  kind type = kind::none;
  std::string tree;     // tree: "sha256:<hex>" of the archive `pantry submit` uploaded
  std::string git_url;  // git: the repository, without credentials
  std::string commit;   // git: 40 hex digits
  // git: the commit the change is based on (40 hex digits; `pantry submit --base`), "" unknown.
  // The files changed from it to `commit` run their tests early (test_order.h's "changed").
  // An uploaded tree has no base: pantry holds no repository to compare it with.
  std::string base;
  // git: a secret's name (ci.secrets) whose value is sent as the Authorization header
  // (http.extraHeader); "" for none.
  std::string git_auth_secret;
};
boost::json::object to_json(const source_ref& s);
// Errors (errc::invalid_argument) name the member: "source.commit: \"abc\" is not a full commit
// id; give the 40 hex digits `git rev-parse HEAD` prints".
result<source_ref> source_from_json(const boost::json::value& v);

// An image build (the pipeline's `build:`): the Containerfile and context within the source.
struct build_ticket {
  std::string file;     // relative to the workspace
  std::string context;  // relative to the workspace
  std::string tag;      // where the image goes in pantry's hosted registry: "ci/<project>:p<id>"
};

struct ticket {
  job_id job = 0;
  pipeline_id pipeline = 0;
  std::uint64_t lease = 0;
  int attempt = 1;
  std::string name;  // "test 1/2"
  std::string project, patch, commit;
  source_ref source;
  std::optional<build_ticket> build;  // set for the image build job; then the fields below
                                      // but timeout, env and secrets are unused
  std::string image;                  // NAME@sha256:…
  bool allow_unpinned = false;
  std::vector<std::string> steps;  // `run`: one shell script per step, run in order by one shell
  std::vector<std::pair<std::string, std::string>> env;  // the job's, then PANTRY_* and CI
  std::vector<runner::secret_value> secrets;
  std::vector<std::string> artifacts;  // paths kept after the job, relative to the workspace
  std::vector<job_id> artifacts_from;  // jobs (needed ones) whose artifacts go in first
  runner::network_mode network = runner::network_mode::isolated;
  std::optional<std::uint64_t> tmpfs;
  std::chrono::milliseconds timeout{0};  // 0: the runner's default
  // The order file (test_order.h) the job's tests run in, planned from the project's test
  // history when the job was claimed; the runner mounts it and names it in PANTRY_TEST_ORDER.
  // "" for the image build job.
  std::string test_order;
};
boost::json::object to_json(const ticket& t);
result<ticket> ticket_from_json(const boost::json::value& v);

// The body of POST /api/v1/pipelines, as `pantry submit` sends it (any holder of a submit token
// may send anything: fuzzed, tests/fuzz/submit_request_fuzz.cpp). The spec is not parsed here.
struct submit_request {
  std::string project;  // 1-200 of A-Z a-z 0-9 . _ - /
  std::string patch;    // "" or at most 200 characters: the supersede key with project
  std::string commit;   // at most 200 characters, as the submitter names it
  std::string spec;     // the .pantry.yml text
  std::string spec_file = ".pantry.yml";  // how messages name it
  source_ref source;
};
// Errors (errc::invalid_argument) name the member and the bad value.
result<submit_request> parse_submit_request(std::string_view json);
boost::json::object to_json(const submit_request& r);

}  // namespace pantry::orchestrator::coordinator
