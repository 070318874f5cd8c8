// Running methods on task instances (long-context-eval.md §1 "Decoding", §6): greedy generation of the
// answer after the prompt, scored against the references, with the memory and time it took.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/methods.h"
#include "eval/tasks.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::eval {

// One line of a results file: an instance run with a method.
struct SampleResult {
  std::string id;
  std::string task;
  std::string variant;
  int64_t target_len = 0;
  std::string method;  // as given on the command line ("chelsea:0.2")
  std::string prediction;
  double score = 0;              // 0-1, by the instance's metric
  std::optional<double> strict;  // single-answer tasks
  int64_t n_prompt = 0;          // prompt tokens as this model's tokenizer counts them
  int64_t n_fed = 0;             // tokens the model read: the prompt, or the context the method selected
  int64_t n_generated = 0;
  std::string stop_reason;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  uint64_t kv_bytes = 0;        // the KV cache at the end of the instance
  uint64_t kv_peak_bytes = 0;   // the most it held after any prefill chunk or decode step
  uint64_t peak_rss_bytes = 0;  // the process's peak resident memory so far (VmHWM)
  std::string model;
  // Context-selecting methods (xl3m, truncate): what they chose and how well, else null. Keys: bypass,
  // n_segments, n_spans, spans, scored_tokens, seconds, and per queried needle its Body token span
  // (gold_spans), whether the chosen spans hold it whole (gold_recall: the fraction that are held) and the
  // best rank of its segments, those holding the most of it (gold_ranks, 1 = the most certain; null when no
  // segment was scored).
  nlohmann::json selection;
};

nlohmann::json to_json(const SampleResult& r);
SampleResult result_from_json(const nlohmann::json& j, const std::string& where);

struct RunnerOptions {
  int n_threads = 1;
  int64_t n_batch = 512;
  DType kv_type = DType::F32;
  std::string model_name;  // recorded in results
};

class Runner {
 public:
  Runner(std::shared_ptr<const ModelSource> source, const Tokenizer& tokenizer, const MethodRegistry& methods,
         RunnerOptions options);
  // The prompt's tokens as this runner feeds them.
  std::vector<int32_t> prompt_tokens(const TaskSample& sample) const;
  // Sizes the session for instances of up to n_tokens prompt + generated tokens (done on demand otherwise).
  void reserve(int64_t n_tokens);
  // Runs one instance with one method: prepare, prefill, greedy decode of at most max_new_tokens (stops at
  // end of generation), score.
  SampleResult run(const TaskSample& sample, const MethodSpec& method);

 private:
  std::shared_ptr<const ModelSource> source_;
  const Tokenizer& tokenizer_;
  const MethodRegistry& methods_;
  RunnerOptions options_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<SentenceBoundaries> boundaries_;  // built for the first context-selecting method
  std::vector<int32_t> separator_;
  std::vector<int32_t> blank_tokens_;
};

}  // namespace ariadne::eval
