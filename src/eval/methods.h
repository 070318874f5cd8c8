// Long-context methods by name, as `ariadne eval run --method full,chelsea:0.2,hata:1/16` names them.
//
// A method prepares a Session before each instance: what its KV cache keeps (KvPolicy: Chelsea,
// StreamingLLM, SnapKV) and what attention reads (AttentionSelector: HATA, exact top-k, Quest). The
// harness sees nothing else, so a method joins by adding one entry to builtin_methods() (or to a registry
// a caller builds) and every command of `ariadne eval` can run it. Methods that change how a prompt is fed
// (XL3M's question-driven segments) will extend this interface when they arrive.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/session.h"

namespace ariadne::eval {

// "name" or "name:budget"; the budget is a number or a fraction p/q ("0.2", "1/16", "512").
struct MethodSpec {
  std::string text;                    // as given: the method's label in results
  std::string name;                    // before the colon
  std::string budget;                  // after it (empty: none)
  std::optional<double> budget_value;  // the budget as a number
};

// Parses one spec; throws Error on an empty name or a budget that is not a positive number or fraction.
MethodSpec parse_method_spec(std::string_view text);

class Method {
 public:
  virtual ~Method() = default;
  // Sets the session up for a fresh sequence (the session is empty when this is called).
  virtual void prepare(Session& session) = 0;
};

struct MethodInfo {
  std::string name;
  std::string help;  // one line
  bool takes_budget = false;
  std::function<std::unique_ptr<Method>(const MethodSpec&)> create;
};

class MethodRegistry {
 public:
  // Throws Error when the name is taken.
  void add(MethodInfo info);
  const MethodInfo* find(std::string_view name) const;
  // "full (dense: keeps every KV entry), ..." for messages.
  std::string known() const;
  // Checks the name and the budget against the registry: an unknown name throws Error listing the known
  // methods; a budget where the method takes none (or none where it needs one) throws too.
  MethodSpec parse(std::string_view text) const;
  // "full,chelsea:0.2" -> specs, each checked; duplicates are an error.
  std::vector<MethodSpec> parse_list(std::string_view text) const;
  std::unique_ptr<Method> create(const MethodSpec& spec) const;

 private:
  std::vector<MethodInfo> methods_;
};

// The methods this build has: full (more join as they are implemented).
MethodRegistry builtin_methods();

}  // namespace ariadne::eval
