#include "bot_ci.h"

#include "pantry/orchestrator/coordinator/source.h"
#include "pantry/orchestrator/pins/status.h"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <system_error>
#include <utility>

namespace pantry::orchestrator::pins {

namespace json = boost::json;
namespace http = boost::beast::http;
using coordinator::api_client;

namespace {

coordinator::api_client_options options() {
  coordinator::api_client_options o;
  o.user_agent = "pantry-pins/" PANTRY_VERSION;
  return o;
}

// The submit_request JSON of a branch's pipeline, its files from `source`.
std::string pipeline_body(const std::string& project, const std::string& branch,
                          const std::string& commit, const std::string& spec, json::object source) {
  json::object body;
  body["project"] = project;
  body["patch"] = branch;
  body["commit"] = commit;
  body["spec"] = spec;
  body["spec_file"] = ".pantry.yml";
  body["source"] = std::move(source);
  return json::serialize(body);
}

}  // namespace

bot_ci::bot_ci(std::string url, std::string token)
    : client_(std::move(url), std::move(token), options()) {}

result<coordinator::submitted> bot_ci::submit(const std::string& project, const std::string& branch,
                                              const std::string& commit,
                                              const std::filesystem::path& tree,
                                              const std::filesystem::path& archive,
                                              const std::string& spec) {
  auto packed = coordinator::pack_tree(tree, archive);
  if (!packed) return packed.error();
  const std::string digest = packed->sha256.str();
  auto sent = coordinator::send_tree(client_, archive, digest);
  std::error_code ec;
  std::filesystem::remove(archive, ec);
  if (!sent) return sent.error();
  json::object source;
  source["tree"] = digest;
  return coordinator::submit_pipeline(
      client_, pipeline_body(project, branch, commit, spec, std::move(source)));
}

result<coordinator::submitted> bot_ci::submit_git(const std::string& project,
                                                  const std::string& branch,
                                                  const std::string& commit, const std::string& url,
                                                  const std::string& base,
                                                  const std::string& auth_secret,
                                                  const std::string& spec) {
  json::object source;
  source["git"] = url;
  source["commit"] = commit;
  if (!base.empty()) source["base"] = base;
  if (!auth_secret.empty()) source["auth_secret"] = auth_secret;
  return coordinator::submit_pipeline(
      client_, pipeline_body(project, branch, commit, spec, std::move(source)));
}

result<std::string> bot_ci::status(std::uint64_t id) {
  auto r = client_.call(http::verb::get, "/api/v1/pipelines/" + std::to_string(id));
  if (!r) return r.error();
  if (r->status != 200) return api_client::failure("reading pipeline " + std::to_string(id), *r);
  boost::system::error_code ec;
  auto v = json::parse(r->body, ec);
  std::string state = !ec && v.is_object() ? pipeline_state_of(v.get_object()) : std::string();
  if (state.empty())
    return error(errc::io_error, "pipeline " + std::to_string(id) + ": " + r->url +
                                     " answered without the pipeline's state");
  return state;
}

}  // namespace pantry::orchestrator::pins
