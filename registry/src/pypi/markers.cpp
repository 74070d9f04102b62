#include "pantry/registry/pypi/markers.h"

#include "pantry/text.h"

#include <algorithm>
#include <array>
#include <set>
#include <utility>

namespace pantry::registry::pypi {

struct marker::node {
  enum class kind { compare, all, any };
  struct operand {
    bool variable = false;
    std::string value;  // a variable's PEP 508 name, or the string's contents
  };

  kind what = kind::compare;
  operand lhs;
  std::string op;  // "==", …, "in", "not in"
  operand rhs;
  std::vector<std::shared_ptr<const node>> children;  // of `all` (and) and `any` (or)
};

namespace {

using node = marker::node;

// Deep enough for any marker a person or a build backend writes; keeps a hostile one from
// exhausting the stack.
constexpr int kMaxNesting = 64;

// PEP 508's names, and the dotted spellings of older metadata that packaging still reads.
constexpr std::array<std::pair<std::string_view, std::string_view>, 18> kVariables = {{
    {"implementation_name", "implementation_name"},
    {"implementation_version", "implementation_version"},
    {"os_name", "os_name"},
    {"platform_machine", "platform_machine"},
    {"platform_python_implementation", "platform_python_implementation"},
    {"platform_release", "platform_release"},
    {"platform_system", "platform_system"},
    {"platform_version", "platform_version"},
    {"python_full_version", "python_full_version"},
    {"python_version", "python_version"},
    {"sys_platform", "sys_platform"},
    {"extra", "extra"},
    {"os.name", "os_name"},
    {"sys.platform", "sys_platform"},
    {"platform.version", "platform_version"},
    {"platform.machine", "platform_machine"},
    {"platform.python_implementation", "platform_python_implementation"},
    {"python_implementation", "platform_python_implementation"},
}};

// The comparison operators, longest first where one begins another.
constexpr std::array<std::string_view, 8> kComparisons = {
    "===", "==", "!=", "<=", ">=", "~=", "<", ">"};

bool is_word_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.';
}

class marker_parser {
 public:
  explicit marker_parser(std::string_view text) : s_(text) {}

  result<std::shared_ptr<const node>> parse() {
    auto root = parse_or(0);
    if (!root) return root;
    skip_space();
    if (pos_ != s_.size()) return fail("\"and\", \"or\" or the end of the marker");
    return root;
  }

 private:
  result<std::shared_ptr<const node>> parse_or(int depth) {
    return parse_joined(depth, "or", node::kind::any);
  }

  // `and` binds tighter than `or`: an `or` list of `and` lists of atoms.
  result<std::shared_ptr<const node>> parse_joined(int depth, std::string_view word,
                                                   node::kind kind) {
    const bool is_or = kind == node::kind::any;
    auto first = is_or ? parse_joined(depth, "and", node::kind::all) : parse_atom(depth);
    if (!first) return first;
    if (!keyword(word)) return first;
    auto joined = std::make_shared<node>();
    joined->what = kind;
    joined->children.push_back(std::move(*first));
    do {
      auto next = is_or ? parse_joined(depth, "and", node::kind::all) : parse_atom(depth);
      if (!next) return next;
      joined->children.push_back(std::move(*next));
    } while (keyword(word));
    return std::shared_ptr<const node>(std::move(joined));
  }

  result<std::shared_ptr<const node>> parse_atom(int depth) {
    skip_space();
    if (peek() == '(') {
      if (depth >= kMaxNesting) {
        return fail("at most " + std::to_string(kMaxNesting) + " nested parentheses");
      }
      ++pos_;
      auto inner = parse_or(depth + 1);
      if (!inner) return inner;
      skip_space();
      if (peek() != ')') return fail("\")\"");
      ++pos_;
      return inner;
    }
    auto c = std::make_shared<node>();
    auto lhs = parse_operand();
    if (!lhs) return lhs.error();
    c->lhs = std::move(*lhs);
    auto op = parse_operator();
    if (!op) return op.error();
    c->op = std::move(*op);
    auto rhs = parse_operand();
    if (!rhs) return rhs.error();
    c->rhs = std::move(*rhs);
    return std::shared_ptr<const node>(std::move(c));
  }

  result<node::operand> parse_operand() {
    skip_space();
    const char quote = peek();
    if (quote == '"' || quote == '\'') {
      const std::size_t close = s_.find(quote, pos_ + 1);
      if (close == std::string_view::npos) return fail("the closing " + std::string(1, quote));
      node::operand o{false, std::string(s_.substr(pos_ + 1, close - pos_ - 1))};
      pos_ = close + 1;
      return o;
    }
    const std::size_t start = pos_;
    while (is_word_char(peek()))
      ++pos_;
    const std::string_view word = s_.substr(start, pos_ - start);
    if (word.empty())
      return fail("a marker variable (python_version, sys_platform, …) or a quoted string");
    for (const auto& [spelling, name] : kVariables) {
      if (word == spelling) return node::operand{true, std::string(name)};
    }
    pos_ = start;
    return fail("a marker variable, not " + quote_for_message(word) +
                " (the variables are python_version, python_full_version, os_name, "
                "sys_platform, platform_release, platform_system, platform_version, "
                "platform_machine, platform_python_implementation, implementation_name, "
                "implementation_version and extra; strings need quotes)");
  }

  result<std::string> parse_operator() {
    skip_space();
    for (auto op : kComparisons) {
      if (s_.substr(pos_).starts_with(op)) {
        pos_ += op.size();
        return std::string(op);
      }
    }
    if (keyword("in")) return std::string("in");
    const std::size_t save = pos_;
    if (keyword("not") && keyword("in")) return std::string("not in");
    pos_ = save;
    return fail("a comparison operator (==, !=, <, <=, >, >=, ~=, ===, in, not in)");
  }

  // Skips white space and `word` if it stands there as a whole word; else stays.
  bool keyword(std::string_view word) {
    const std::size_t save = pos_;
    skip_space();
    if (s_.substr(pos_).starts_with(word) && !is_word_char(peek(word.size()))) {
      pos_ += word.size();
      return true;
    }
    pos_ = save;
    return false;
  }

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t'))
      ++pos_;
  }

  char peek(std::size_t ahead = 0) const noexcept {
    return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0';
  }

  error fail(const std::string& expected) const {
    return error(errc::invalid_argument, "marker " + quote_for_message(s_) + ": at offset " +
                                             std::to_string(pos_) + ", expected " + expected);
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

bool compare_as_strings(std::string_view l, std::string_view op, std::string_view r) {
  if (op == "==" || op == "===") return l == r;
  if (op == "!=") return l != r;
  if (op == "<") return l < r;
  if (op == "<=") return l <= r;
  if (op == ">") return l > r;
  if (op == ">=") return l >= r;
  return false;  // ~= orders versions only
}

bool evaluate_compare(const node& n, const marker_environment& env) {
  const auto value = [&](const node::operand& o) -> std::string {
    if (!o.variable) return o.value;
    const std::string* v = env.find(o.value);
    return v != nullptr ? *v : std::string();
  };
  std::string l = value(n.lhs);
  std::string r = value(n.rhs);
  // PEP 685: extras compare in their normalized form.
  if ((n.lhs.variable && n.lhs.value == "extra") || (n.rhs.variable && n.rhs.value == "extra")) {
    l = normalize_project_name(l);
    r = normalize_project_name(r);
  }
  if (n.op == "in") return r.find(l) != std::string::npos;
  if (n.op == "not in") return r.find(l) == std::string::npos;
  auto clause = specifier::parse(n.op + r);
  auto candidate = version::parse(l);
  if (clause && candidate) return clause->matches(*candidate);
  return compare_as_strings(l, n.op, r);
}

bool evaluate_node(const node& n, const marker_environment& env) {
  switch (n.what) {
    case node::kind::compare:
      return evaluate_compare(n, env);
    case node::kind::all:
      return std::all_of(n.children.begin(), n.children.end(),
                         [&](const auto& c) { return evaluate_node(*c, env); });
    case node::kind::any:
      return std::any_of(n.children.begin(), n.children.end(),
                         [&](const auto& c) { return evaluate_node(*c, env); });
  }
  return false;
}

void render_operand(std::string& out, const node::operand& o) {
  if (o.variable) {
    out += o.value;
    return;
  }
  const char quote = o.value.find('"') == std::string::npos ? '"' : '\'';
  out += quote;
  out += o.value;
  out += quote;
}

void render(std::string& out, const node& n, bool inside_and) {
  switch (n.what) {
    case node::kind::compare:
      render_operand(out, n.lhs);
      out += ' ';
      out += n.op;
      out += ' ';
      render_operand(out, n.rhs);
      return;
    case node::kind::all:
    case node::kind::any: {
      const bool is_or = n.what == node::kind::any;
      const bool parens = is_or && inside_and;
      if (parens) out += '(';
      for (std::size_t i = 0; i < n.children.size(); ++i) {
        if (i > 0) out += is_or ? " or " : " and ";
        render(out, *n.children[i], !is_or);
      }
      if (parens) out += ')';
      return;
    }
  }
}

void collect_variables(const node& n, std::set<std::string>& out) {
  if (n.lhs.variable) out.insert(n.lhs.value);
  if (n.rhs.variable) out.insert(n.rhs.value);
  for (const auto& c : n.children)
    collect_variables(*c, out);
}

bool is_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

// ---- marker_environment -------------------------------------------------------------------------

const std::string* marker_environment::find(std::string_view name) const noexcept {
  const std::pair<std::string_view, const std::string*> fields[] = {
      {"implementation_name", &implementation_name},
      {"implementation_version", &implementation_version},
      {"os_name", &os_name},
      {"platform_machine", &platform_machine},
      {"platform_python_implementation", &platform_python_implementation},
      {"platform_release", &platform_release},
      {"platform_system", &platform_system},
      {"platform_version", &platform_version},
      {"python_full_version", &python_full_version},
      {"python_version", &python_version},
      {"sys_platform", &sys_platform},
      {"extra", &extra},
  };
  for (const auto& [field, value] : fields) {
    if (field == name) return value;
  }
  return nullptr;
}

result<marker_environment> marker_environment::for_target(std::string_view python,
                                                          std::string_view platform,
                                                          std::string_view machine) {
  marker_environment env;
  const std::size_t dot = python.find('.');
  const std::size_t dot2 = dot == std::string_view::npos ? dot : python.find('.', dot + 1);
  const std::string_view major = python.substr(0, dot);
  const std::string_view minor =
      dot == std::string_view::npos ? "" : python.substr(dot + 1, dot2 - dot - 1);
  const std::string_view micro = dot2 == std::string_view::npos ? "0" : python.substr(dot2 + 1);
  if (!is_digits(major) || !is_digits(minor) || !is_digits(micro)) {
    return error(errc::invalid_argument,
                 "python version " + quote_for_message(python) +
                     ": expected MAJOR.MINOR or MAJOR.MINOR.MICRO, e.g. 3.12 or 3.12.1");
  }
  env.python_version = std::string(major) + "." + std::string(minor);
  env.python_full_version = env.python_version + "." + std::string(micro);
  env.implementation_version = env.python_full_version;
  if (machine.empty()) {
    return error(errc::invalid_argument, "machine \"\": name one, e.g. x86_64 or aarch64");
  }
  env.platform_machine = std::string(machine);
  const std::string p = ascii_lower(platform);
  if (p == "linux") {
    env.sys_platform = "linux";
    env.platform_system = "Linux";
    env.os_name = "posix";
  } else if (p == "macos" || p == "darwin") {
    env.sys_platform = "darwin";
    env.platform_system = "Darwin";
    env.os_name = "posix";
    if (machine == "aarch64") env.platform_machine = "arm64";
  } else if (p == "windows" || p == "win32") {
    env.sys_platform = "win32";
    env.platform_system = "Windows";
    env.os_name = "nt";
    if (machine == "x86_64") env.platform_machine = "AMD64";
  } else {
    return error(errc::invalid_argument,
                 "platform " + quote_for_message(platform) + ": expected linux, macos or windows");
  }
  return env;
}

// ---- marker -------------------------------------------------------------------------------------

result<marker> marker::parse(std::string_view text) {
  auto root = marker_parser(text).parse();
  if (!root) return root.error();
  marker m;
  m.root_ = std::move(*root);
  return m;
}

bool marker::evaluate(const marker_environment& env) const {
  return root_ == nullptr || evaluate_node(*root_, env);
}

std::string marker::str() const {
  std::string out;
  if (root_ != nullptr) render(out, *root_, false);
  return out;
}

std::vector<std::string> marker::variables() const {
  std::set<std::string> names;
  if (root_ != nullptr) collect_variables(*root_, names);
  return {names.begin(), names.end()};
}

// ---- requirement --------------------------------------------------------------------------------

result<requirement> requirement::parse(std::string_view text) {
  const std::string_view t = trim_ascii_space(text);
  const std::string quoted = "requirement " + quote_for_message(t);
  const auto fail = [&](const std::string& why) {
    return error(errc::invalid_argument, quoted + ": " + why);
  };
  std::size_t pos = 0;
  while (pos < t.size() && (is_word_char(t[pos]) || t[pos] == '-'))
    ++pos;
  requirement r;
  r.name = std::string(t.substr(0, pos));
  if (!is_valid_project_name(r.name)) {
    return fail(
        "no project name at the start (letters, digits, '-', '_' and '.', starting and "
        "ending with a letter or digit)");
  }
  const auto skip_space = [&] {
    while (pos < t.size() && is_ascii_space(t[pos]))
      ++pos;
  };
  skip_space();
  if (pos < t.size() && t[pos] == '[') {
    const std::size_t close = t.find(']', pos);
    if (close == std::string_view::npos) return fail("'[' of the extras is not closed");
    const std::string_view list = t.substr(pos + 1, close - pos - 1);
    if (!trim_ascii_space(list).empty()) {
      for (std::size_t start = 0; start <= list.size();) {
        std::size_t comma = list.find(',', start);
        if (comma == std::string_view::npos) comma = list.size();
        const std::string_view extra = trim_ascii_space(list.substr(start, comma - start));
        if (!is_valid_project_name(extra)) {
          return fail(quote_for_message(extra) + " is not an extra's name");
        }
        r.extras.emplace_back(extra);
        start = comma + 1;
      }
    }
    pos = close + 1;
    skip_space();
  }
  std::string_view marker_text;
  bool has_marker = false;
  if (pos < t.size() && t[pos] == '@') {
    ++pos;
    skip_space();
    const std::size_t start = pos;
    while (pos < t.size() && !is_ascii_space(t[pos]))
      ++pos;
    r.url = std::string(t.substr(start, pos - start));
    if (r.url.empty()) return fail("no URL after '@'");
    const std::string_view rest = trim_ascii_space(t.substr(pos));
    if (!rest.empty()) {
      if (rest.front() != ';') {
        return fail("unexpected " + quote_for_message(rest) +
                    " after the URL (a marker follows white space and ';')");
      }
      marker_text = rest.substr(1);
      has_marker = true;
    }
  } else {
    std::string_view spec = t.substr(pos);
    if (const std::size_t semi = spec.find(';'); semi != std::string_view::npos) {
      marker_text = spec.substr(semi + 1);
      has_marker = true;
      spec = spec.substr(0, semi);
    }
    spec = trim_ascii_space(spec);
    if (spec.starts_with("(")) {
      if (!spec.ends_with(")")) return fail("'(' of the version specifiers is not closed");
      spec = spec.substr(1, spec.size() - 2);
    }
    auto specs = specifier_set::parse(spec);
    if (!specs) return fail(specs.error().message);
    r.specifiers = std::move(*specs);
  }
  if (has_marker) {
    if (trim_ascii_space(marker_text).empty()) return fail("nothing after ';' (no marker)");
    auto m = marker::parse(trim_ascii_space(marker_text));
    if (!m) return fail(m.error().message);
    r.environment = std::move(*m);
  }
  return r;
}

bool requirement::applies_to(const marker_environment& env) const {
  return !environment || environment->evaluate(env);
}

std::string requirement::str() const {
  std::string out = name;
  if (!extras.empty()) {
    out += '[';
    for (std::size_t i = 0; i < extras.size(); ++i)
      out += (i == 0 ? "" : ",") + extras[i];
    out += ']';
  }
  if (!url.empty()) {
    out += " @ " + url;
    if (environment) out += " ; " + environment->str();
    return out;
  }
  out += specifiers.str();
  if (environment) out += "; " + environment->str();
  return out;
}

}  // namespace pantry::registry::pypi
