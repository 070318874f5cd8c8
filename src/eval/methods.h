// Long-context methods by name, as `ariadne eval run --method full,chelsea:0.2,hata:1/16` names them.
//
// A method prepares a Session before each instance: what its KV cache keeps (KvPolicy: Chelsea,
// StreamingLLM, SnapKV) and what attention reads (AttentionSelector: HATA, exact top-k, Quest). The
// harness sees nothing else, so a method joins by adding one entry to builtin_methods() (or to a registry
// a caller builds) and every command of `ariadne eval` can run it. A method may also choose what the model
// reads instead of the whole prompt (select_context: XL3M's question-driven segments, truncation), from
// the prompt's parts P (header), Body and Xt (question) as token ids.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/session.h"
#include "runtime/xl3m.h"

namespace ariadne::eval {

// "name" or "name:budget"; the budget is a number or a fraction p/q ("0.2", "1/16", "512").
struct MethodSpec {
  std::string text;                    // as given: the method's label in results
  std::string name;                    // before the colon
  std::string budget;                  // after it (empty: none)
  std::optional<double> budget_value;  // the budget as a number
  // "chelsea:0.2+hata:1/16": the methods composed, in order (empty for a single method; name is then the
  // parts' names joined by '+').
  std::vector<MethodSpec> parts;
};

// Parses one spec; throws Error on an empty name or a budget that is not a positive number or fraction.
MethodSpec parse_method_spec(std::string_view text);

// An instance's prompt as a context-selecting method sees it: the prompt's own tokens split where the
// header ends and the question starts, with what splicing needs.
struct PromptParts {
  std::span<const int32_t> prefix;    // P: BOS, chat template start, the task's header
  std::span<const int32_t> body;      // the haystack
  std::span<const int32_t> question;  // Xt: the question and the answer lead-in (chat template end)
  int64_t max_new_tokens = 0;         // the answer's room
  const SentenceBoundaries* boundaries = nullptr;  // the tokenizer's sentence starts (null: none)
  std::span<const int32_t> separator;              // ids between spans that are not contiguous
  std::span<const int32_t> blank_tokens;           // whitespace-only token ids (Xl3mOptions::blank_tokens)
};

// What a context-selecting method chose.
struct ContextSelection {
  std::vector<int32_t> ids;         // what the model reads instead of the prompt
  bool bypass = false;              // the prompt fit: ids is the prompt
  std::vector<TokenSpan> spans;     // the Body spans ids holds, in order
  std::vector<TokenSpan> segments;  // segments scored (empty when none were)
  std::vector<double> scores;       // [segments], lower: more relevant
  int64_t scored_tokens = 0;        // tokens the selection evaluated
  double seconds = 0;
};

class Method {
 public:
  virtual ~Method() = default;
  // Sets the session up for a fresh sequence (the session is empty when this is called).
  virtual void prepare(Session& session) = 0;
  // Sets the session up as a later part of a composition, after the earlier parts' prepare (default:
  // prepare). A method that only chooses what attention reads keeps the KV policy an earlier part set.
  virtual void join(Session& session) { prepare(session); }
  // True for methods that choose what the model reads (select_context).
  virtual bool selects_context() const { return false; }
  // Called before prepare with the session empty (it is cleared afterwards); runs whatever it needs on
  // the session and returns the ids to feed.
  virtual ContextSelection select_context(Session& session, const PromptParts& parts);
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

// The methods this build has: full; xl3m, xl3m-mean-q-entropy, xl3m-q-nll (XL3M with each certainty score);
// truncate (P + the last tokens of Body + Xt, the key context's budget); hata, exact-topk, quest,
// hash-random (sparse_methods.cpp) (more join as they are implemented). Any of them compose with '+'.
struct MethodDefaults {
  std::string hata_sidecar;  // hata's weights; empty: <model>.hata.gguf
  bool attn_follow = true;   // the top-k methods' SparseAttentionConfig::follow
};
MethodRegistry builtin_methods(const MethodDefaults& defaults = {});

// Adds the KV policies chelsea, streaming and snapkv, each NAME:BUDGET with the budget a fraction of prompt +
// answer tokens (0.2) or a number of entries per KV head (1024), at their default parameters; chelsea reads
// its outlier heads from <model>.chelsea.gguf when present (kv_policy_methods.cpp).
void add_kv_policy_methods(MethodRegistry& registry);
// For users: what a KV-policy method will load (chelsea's outlier sidecar, or why none); "" for other
// methods.
std::string kv_policy_method_note(const MethodSpec& spec, const ModelSource& source);

// Adds the top-k attention methods hata, exact-topk, quest and hash-random, each NAME:K with K a fraction of
// each head's entries (1/16) or a count (512) (sparse_methods.cpp).
void add_sparse_attention_methods(MethodRegistry& registry, const MethodDefaults& defaults);

}  // namespace ariadne::eval
