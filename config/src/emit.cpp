#include "emit.h"

#include "message.h"

namespace pantry::config::detail {

std::string secret(const std::string& value, secrets s) {
  return s == secrets::shown ? value : std::string(kHiddenSecret);
}

std::optional<std::string> placeholder_problem(std::string_view value, std::string_view what) {
  if (value != kHiddenSecret) return std::nullopt;
  return quote(value) + " is the placeholder `pantry config show` prints in place of a " +
         std::string(what) + "; put the real " + std::string(what) +
         " here (`pantry config show --secrets` prints the configured one)";
}

std::optional<std::string> read_token(reader& r, const entry& e, std::size_t min_chars) {
  auto s = r.as_scalar(e, "a token");
  if (!s) return std::nullopt;
  if (auto why = placeholder_problem(*s, "token")) {
    r.fail(e, *why);
    return std::nullopt;
  }
  if (s->size() < min_chars) {
    // The value is a secret: never echo it.
    r.fail(e, "the " + std::string(e.key) + " has " + std::to_string(s->size()) +
                  " characters; use at least " + std::to_string(min_chars) +
                  ", e.g. the output of `openssl rand -hex 24`");
    return std::nullopt;
  }
  return s;
}

}  // namespace pantry::config::detail
