#include "pantry/orchestrator/coordinator/submit.h"

#include <boost/json/parse.hpp>

namespace pantry::orchestrator::coordinator {

namespace json = boost::json;
namespace http = boost::beast::http;

result<bool> send_tree(api_client& client, const std::filesystem::path& archive,
                       const std::string& digest) {
  const std::string path = "/api/v1/sources/" + digest;
  auto head = client.call(http::verb::head, path);
  if (!head) return head.error();
  if (head->status == 200) return false;
  if (head->status != 404) return api_client::failure("checking for the tree", *head);
  auto put = client.put_file(http::verb::put, path, archive, "application/zstd");
  if (!put) return put.error();
  if (put->status != 200 && put->status != 201)
    return api_client::failure("uploading the tree", *put);
  return true;
}

result<submitted> submit_pipeline(api_client& client, const std::string& body) {
  auto r = client.call(http::verb::post, "/api/v1/pipelines", body);
  if (!r) return r.error();
  boost::system::error_code ec;
  auto answer = json::parse(r->body, ec);
  const json::object* o = !ec && answer.is_object() ? &answer.get_object() : nullptr;
  if (r->status == 422) {
    const json::value* e = o ? o->if_contains("error") : nullptr;
    return error(errc::invalid_argument,
                 e && e->is_string() ? std::string(e->get_string()) : r->body);
  }
  if (r->status != 201) return api_client::failure("submitting", *r);
  const json::value* id = o ? o->if_contains("id") : nullptr;
  const json::value* url = o ? o->if_contains("url") : nullptr;
  if (!id || !id->is_number() || !url || !url->is_string())
    return error(errc::io_error, "submitting: " + r->method + " " + r->url +
                                     " answered 201 without the pipeline's id and url");
  return submitted{id->to_number<std::uint64_t>(), std::string(url->get_string())};
}

}  // namespace pantry::orchestrator::coordinator
