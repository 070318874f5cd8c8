#include "eval/methods.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "runtime/kv_cache.h"

namespace ariadne::eval {

namespace {

std::optional<double> parse_positive(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v) || v <= 0) return std::nullopt;
  return v;
}

// Dense attention over every entry: the reference every other method is measured against.
class FullMethod : public Method {
 public:
  void prepare(Session& session) override {
    session.kv().set_policy(std::make_shared<FullPolicy>());
    session.kv().set_selector(nullptr);
  }
};

}  // namespace

MethodSpec parse_method_spec(std::string_view text) {
  MethodSpec s;
  s.text = std::string(text);
  const size_t colon = text.find(':');
  s.name = std::string(text.substr(0, colon));
  if (s.name.empty()) fail("method '{}' has no name (expected e.g. full or chelsea:0.2)", text);
  if (colon == std::string_view::npos) return s;
  s.budget = std::string(text.substr(colon + 1));
  const size_t slash = s.budget.find('/');
  std::optional<double> value;
  if (slash == std::string::npos) {
    value = parse_positive(s.budget);
  } else {
    const auto p = parse_positive(s.budget.substr(0, slash));
    const auto q = parse_positive(s.budget.substr(slash + 1));
    if (p && q) value = *p / *q;
  }
  if (!value)
    fail("method '{}': budget '{}' is not a positive number or fraction (expected e.g. 0.2, 1/16 or 512)",
         text, s.budget);
  s.budget_value = value;
  return s;
}

void MethodRegistry::add(MethodInfo info) {
  if (find(info.name) != nullptr) fail("method '{}' is registered twice", info.name);
  methods_.push_back(std::move(info));
}

const MethodInfo* MethodRegistry::find(std::string_view name) const {
  for (const MethodInfo& m : methods_)
    if (m.name == name) return &m;
  return nullptr;
}

std::string MethodRegistry::known() const {
  std::string out;
  for (const MethodInfo& m : methods_) {
    if (!out.empty()) out += "; ";
    out += m.name + (m.takes_budget ? ":BUDGET" : "") + " (" + m.help + ")";
  }
  return out;
}

MethodSpec MethodRegistry::parse(std::string_view text) const {
  MethodSpec s = parse_method_spec(text);
  const MethodInfo* m = find(s.name);
  if (m == nullptr)
    fail(
        "unknown method '{}' (known in this build: {}; chelsea, streaming, snapkv, hata, exact-topk, quest "
        "and "
        "xl3m join as they are implemented)",
        s.name, known());
  if (m->takes_budget && s.budget.empty())
    fail("method '{}' needs a budget: {}:BUDGET (e.g. {}:0.2)", s.name, s.name, s.name);
  if (!m->takes_budget && !s.budget.empty()) fail("method '{}' takes no budget (got '{}')", s.name, s.text);
  return s;
}

std::vector<MethodSpec> MethodRegistry::parse_list(std::string_view text) const {
  std::vector<MethodSpec> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(pos, end - pos);
    pos = end + 1;
    MethodSpec s = parse(item);
    for (const MethodSpec& o : out)
      if (o.text == s.text) fail("method '{}' is listed twice", s.text);
    out.push_back(std::move(s));
  }
  return out;
}

std::unique_ptr<Method> MethodRegistry::create(const MethodSpec& spec) const {
  const MethodInfo* m = find(spec.name);
  if (m == nullptr) parse(spec.text);  // throws the listing
  return m->create(spec);
}

MethodRegistry builtin_methods() {
  MethodRegistry r;
  r.add({"full", "dense attention over the whole KV cache", false,
         [](const MethodSpec&) { return std::make_unique<FullMethod>(); }});
  return r;
}

}  // namespace ariadne::eval
