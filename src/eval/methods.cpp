#include "eval/methods.h"

#include <algorithm>
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

Xl3mInput xl3m_input(const PromptParts& parts) {
  Xl3mInput in;
  in.prefix = parts.prefix;
  in.body = parts.body;
  in.question = parts.question;
  return in;
}

// XL3M (../shared/specs/xl3m.md) with one certainty score, window = the model's trained context, answer
// room = the instance's max_new_tokens; dense attention on the key context.
class Xl3mMethod : public FullMethod {
 public:
  explicit Xl3mMethod(Xl3mScore score) : score_(score) {}
  bool selects_context() const override { return true; }
  void join(Session&) override {}  // after another part: keeps what it set up for the final pass
  ContextSelection select_context(Session& session, const PromptParts& parts) override {
    FullMethod::prepare(session);  // the scoring passes read a plain cache
    Xl3mOptions o;
    o.n_gen = parts.max_new_tokens;
    o.score = score_;
    o.separator.assign(parts.separator.begin(), parts.separator.end());
    o.blank_tokens.assign(parts.blank_tokens.begin(), parts.blank_tokens.end());
    const Xl3mResult r = xl3m_key_context(session, xl3m_input(parts), o, parts.boundaries);
    ContextSelection c;
    c.ids = r.key;
    c.bypass = r.plan.bypass;
    c.spans = r.plan.bypass ? std::vector<TokenSpan>{{0, r.plan.n_body}} : r.selection.spans;
    c.segments = r.segments;
    c.scores = r.scores;
    c.scored_tokens = r.scored_tokens;
    c.seconds = r.seconds;
    return c;
  }

 private:
  Xl3mScore score_;
};

// Tail truncation at XL3M's budget (xl3m.md §5): P + the last C − gen − |P| − |Xt| tokens of Body + Xt.
class TruncateMethod : public FullMethod {
 public:
  bool selects_context() const override { return true; }
  void join(Session&) override {}
  ContextSelection select_context(Session& session, const PromptParts& parts) override {
    const auto n_prefix = static_cast<int64_t>(parts.prefix.size());
    const auto n_body = static_cast<int64_t>(parts.body.size());
    const auto n_question = static_cast<int64_t>(parts.question.size());
    const int64_t window = session.model().config().n_ctx_train;
    ContextSelection c;
    c.bypass = n_prefix + n_body + n_question + parts.max_new_tokens <= window;
    const int64_t budget = window - parts.max_new_tokens - n_prefix - n_question;
    if (!c.bypass && budget < 0)
      fail(
          "truncate: the header ({} tokens) and question ({}) leave no room in the trained context of {} for "
          "{} answer tokens",
          n_prefix, n_question, window, parts.max_new_tokens);
    c.spans = {{c.bypass ? 0 : n_body - budget, n_body}};
    c.ids = splice_xl3m(xl3m_input(parts), c.spans, {});
    return c;
  }
};

// Methods applied one after another to the same session ("chelsea:0.2+hata:1/16").
class ComposedMethod : public Method {
 public:
  explicit ComposedMethod(std::vector<std::unique_ptr<Method>> parts) : parts_(std::move(parts)) {}
  void prepare(Session& session) override {
    parts_.front()->prepare(session);
    for (size_t i = 1; i < parts_.size(); ++i) parts_[i]->join(session);
  }
  // A context-selecting part (xl3m, truncate) chooses what the model reads; the other parts act on the pass
  // that answers from it (xl3m.md §3: Chelsea and HATA on the final pass).
  bool selects_context() const override {
    return std::any_of(parts_.begin(), parts_.end(), [](const auto& p) { return p->selects_context(); });
  }
  ContextSelection select_context(Session& session, const PromptParts& prompt) override {
    for (const auto& p : parts_)
      if (p->selects_context()) return p->select_context(session, prompt);
    return Method::select_context(session, prompt);
  }

 private:
  std::vector<std::unique_ptr<Method>> parts_;
};

}  // namespace

ContextSelection Method::select_context(Session&, const PromptParts&) {
  fail("this method does not select context");
}

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
  if (text.find('+') != std::string_view::npos) {
    MethodSpec s;
    s.text = std::string(text);
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t end = text.find('+', pos);
      if (end == std::string_view::npos) end = text.size();
      MethodSpec part = parse(text.substr(pos, end - pos));
      s.name += (s.parts.empty() ? "" : "+") + part.name;
      s.parts.push_back(std::move(part));
      pos = end + 1;
    }
    return s;
  }
  MethodSpec s = parse_method_spec(text);
  const MethodInfo* m = find(s.name);
  if (m == nullptr) fail("unknown method '{}' (known: {})", s.name, known());
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
  if (!spec.parts.empty()) {
    std::vector<std::unique_ptr<Method>> parts;
    for (const MethodSpec& p : spec.parts) parts.push_back(create(p));
    return std::make_unique<ComposedMethod>(std::move(parts));
  }
  const MethodInfo* m = find(spec.name);
  if (m == nullptr) parse(spec.text);  // throws the listing
  return m->create(spec);
}

MethodRegistry builtin_methods(const MethodDefaults& defaults) {
  MethodRegistry r;
  r.add({"full", "dense attention over the whole KV cache", false,
         [](const MethodSpec&) { return std::make_unique<FullMethod>(); }});
  r.add({"xl3m", "XL3M: the segments with the lowest next-token entropy after the question, in order", false,
         [](const MethodSpec&) { return std::make_unique<Xl3mMethod>(Xl3mScore::LastEntropy); }});
  r.add({"xl3m-mean-q-entropy", "XL3M scored by the mean entropy over the question's rows", false,
         [](const MethodSpec&) { return std::make_unique<Xl3mMethod>(Xl3mScore::MeanQuestionEntropy); }});
  r.add({"xl3m-q-nll", "XL3M scored by the question's negative log-likelihood", false,
         [](const MethodSpec&) { return std::make_unique<Xl3mMethod>(Xl3mScore::QuestionNll); }});
  r.add({"xl3m-fused", "XL3M taking the top segments by last-token and by mean question entropy in turn",
         false, [](const MethodSpec&) { return std::make_unique<Xl3mMethod>(Xl3mScore::Fused); }});
  r.add({"truncate", "the last tokens of the body that fit the trained context, header and question kept",
         false, [](const MethodSpec&) { return std::make_unique<TruncateMethod>(); }});
  add_sparse_attention_methods(r, defaults);
  add_kv_policy_methods(r);
  return r;
}

}  // namespace ariadne::eval
