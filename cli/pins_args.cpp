// The arguments of `pantry pins check` (pins.h): in pantry_cli, apart from the command, so that
// unit tests link the parser without its client.

#include "pins.h"

#include "pantry/text.h"

namespace pantry::cli {

result<pins_check_options> parse_pins_check_args(const std::vector<std::string>& args) {
  const auto usage = [](std::string message) {
    return error(errc::invalid_argument, "pantry pins: " + std::move(message));
  };
  pins_check_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (const auto eq = name.find('='); name.starts_with("--") && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (name == "--open-prs") {
      if (value) return usage("--open-prs takes no value");
      o.open_prs = true;
      continue;
    }
    std::optional<std::string>* slot = nullptr;
    if (name == "--config") slot = &o.config_file;
    if (name == "--repo") slot = &o.repo;
    if (name == "--only") slot = &o.only;
    if (name == "--pantry") slot = &o.pantry;
    if (!slot) {
      if (!name.starts_with("-")) return usage("takes no argument " + quote_for_message(name));
      return usage("unknown option " + name +
                   " (it takes --config, --repo, --only, --pantry, and for bump --open-prs)");
    }
    if (!value) {
      if (i + 1 >= args.size()) return usage(name + " needs a value");
      value = args[++i];
    }
    if (value->empty()) return usage(name + " has an empty value");
    *slot = std::move(*value);
  }
  if (o.only) {
    if (!is_valid_project_name(*o.only))
      return usage("--only " + quote_for_message(*o.only) +
                   " is not a project name (letters, digits, '.', '-', '_')");
    o.only = normalize_project_name(*o.only);
  }
  if (o.pantry) {
    const std::string lower = ascii_lower(*o.pantry);
    if (!(lower.starts_with("http://") || lower.starts_with("https://")) ||
        lower.find('/', lower.find("://") + 3) == lower.find("://") + 3)
      return usage("--pantry " + quote_for_message(*o.pantry) +
                   " is not pantry's URL (e.g. http://pantry.internal:8585)");
    while (o.pantry->ends_with("/"))
      o.pantry->pop_back();
    if (o.pantry->ends_with("/simple")) o.pantry->resize(o.pantry->size() - 7);
  }
  return o;
}

result<pins_check_options> parse_pins_status_args(const std::vector<std::string>& args) {
  auto o = parse_pins_check_args(args);
  if (!o) return o;
  if (o->only) return error(errc::invalid_argument, "pantry pins: --only is for check and bump");
  if (o->open_prs) return error(errc::invalid_argument, "pantry pins: --open-prs is for bump");
  return o;
}

}  // namespace pantry::cli
