#pragma once

// pantry's file URLs: /files/<upstream>/<host[:port]>/<path>[?<query>], i.e. the upstream URL
// without its scheme under the upstream's name. Stable across restarts and cache expiry, and the
// origin can be read off the path without a lookup.

#include "pantry/error.h"

#include <string>
#include <string_view>

namespace pantry::registry::pypi {

// The pantry path of the file at `absolute_url` from upstream `upstream_name`:
// "/files/<upstream_name>/<host[:port]>/<path>[?<query>]", host lowercased, path and query kept
// percent-encoded as upstream gives them, userinfo and fragment dropped. Returns "" unless
// `absolute_url` is an http(s) URL with a host whose path is a list of non-empty segments none of
// which decodes to ".", "..", or anything holding '/', '\' or a control character (every
// file_entry::url a parser returns qualifies), or `upstream_name` is not a valid name segment
// ([A-Za-z0-9._-]+, not "." or "..").
std::string file_path_for(std::string_view upstream_name, std::string_view absolute_url);

// A file path taken apart.
struct file_location {
  std::string upstream;  // the upstream's name
  std::string location;  // "<host[:port]>/<path>[?<query>]": the upstream URL without its scheme

  friend bool operator==(const file_location&, const file_location&) = default;
};

// Parses a request target made by `file_path_for` (the inverse: it holds
// `file_path_for(u, url) == "/files/" + r.upstream + "/" + r.location`). Fails with
// errc::invalid_argument, quoting the target, on anything else or anything hostile: a missing
// "/files/" prefix, a bad upstream name, an empty segment ("//"), "." or ".." segments (also
// percent-encoded), an encoded '/', '\' or NUL ("%2f", "%5c", "%00"), raw control characters,
// spaces, non-ASCII bytes, a fragment, userinfo, or a host that is not a host.
result<file_location> parse_file_path(std::string_view target);

}  // namespace pantry::registry::pypi
