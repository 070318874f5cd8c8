// The KV-policy methods of `ariadne eval`: chelsea, streaming and snapkv at a budget (NAME:BUDGET).
#include <memory>

#include "eval/methods.h"
#include "runtime/chelsea_sidecar.h"
#include "runtime/kv_policies.h"

namespace ariadne::eval {

namespace {

KvPolicyConfig method_config(const MethodSpec& spec) {
  KvPolicyConfig c;
  c.name = spec.name;
  c.budget = *spec.budget_value;
  validate_kv_policy(c);
  return c;
}

// Sets the session's KV policy; the runner then sets its generation budget to the instance's answer room.
class KvPolicyMethod : public Method {
 public:
  explicit KvPolicyMethod(KvPolicyConfig config) : config_(std::move(config)) {}

  void prepare(Session& session) override {
    KvPolicyConfig c = config_;
    if (c.name == "chelsea") {
      const ChelseaOutliers found = load_chelsea_outliers(session.model().source(), c.budget);
      c.outliers = found.outliers;
      c.outliers_source = found.path;
    }
    session.kv().set_policy(make_kv_policy(c));
  }

 private:
  KvPolicyConfig config_;
};

}  // namespace

void add_kv_policy_methods(MethodRegistry& r) {
  const std::pair<const char*, const char*> methods[] = {
      {"chelsea", "Chelsea: KV entries merged by chunked soft matching into degree-weighted centroids"},
      {"streaming", "StreamingLLM: 4 attention sinks and the most recent entries"},
      {"snapkv", "SnapKV: the entries the last 32 prompt tokens vote for, and those 32"}};
  for (const auto& [name, help] : methods)
    r.add({name, std::string(help) + " (budget: a fraction of prompt + answer tokens, or entries per head)",
           true,
           [](const MethodSpec& spec) { return std::make_unique<KvPolicyMethod>(method_config(spec)); }});
}

std::string kv_policy_method_note(const MethodSpec& spec, const ModelSource& source) {
  std::string note;
  for (const MethodSpec& part : spec.parts.empty() ? std::vector<MethodSpec>{spec} : spec.parts)
    if (part.name == "chelsea" && part.budget_value)
      note += (note.empty() ? "" : "; ") + part.text + ": " +
              load_chelsea_outliers(source, *part.budget_value).note;
  return note;
}

}  // namespace ariadne::eval
