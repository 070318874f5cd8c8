// `ariadne bench` with --attn (../shared/specs/hata.md): the selector on the bench session with the split of
// its time per test, and --attn-only, the attention part of a decode step alone (runtime/attention_bench.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attention_flags.h"
#include "core/dtype.h"
#include "formats/model_source.h"
#include "runtime/session.h"

namespace ariadne::cli {

// One attention method of a bench run (nothing for dense) and what it did per test. `ariadne bench --attn
// dense,hata` times each method on the same filled depth, switching the session's selector between them.
class BenchAttention {
 public:
  // flags with flags.method replaced by `method` (dense takes none of the sparse flags).
  BenchAttention(const AttentionFlags& flags, const std::string& method, const ModelSource& source);
  bool active() const { return selector_ != nullptr; }
  const std::string& method() const { return method_; }
  // Makes this the session's attention (the selector starts afresh: codes are rebuilt for what is cached).
  void install(Session& session) const;
  // What the selector did since the last call (one test): JSON for the test's record, per decode token.
  nlohmann::json take(int64_t n_gen);
  // The lines printed under the table: the description and, per tg test, the time split per token.
  void print_summary() const;

 private:
  std::string method_;
  std::shared_ptr<SparseSelector> selector_;
  SparseAttentionStats last_;
  std::vector<std::string> lines_;
};

// The methods of a comma list given to bench's --attn ("dense,hash-random"), each once; Error on an empty
// item or a repeat.
std::vector<std::string> bench_attention_methods(const std::string& list);

// --attn-only: dense and the selector at each depth, one layer of the model's shape; a table or JSON.
int run_attention_only_bench(const std::string& model_path, const AttentionFlags& flags,
                             const std::vector<int64_t>& depths, int n_threads, int repetitions,
                             DType kv_type, bool json);

}  // namespace ariadne::cli
