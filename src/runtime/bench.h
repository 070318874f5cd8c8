// The engine behind `ariadne bench`, llama-bench's counterpart: times prompt processing (pp<N>: one eval of
// N tokens) and token generation (tg<N>: N single-token evals) on a Session, optionally after filling the
// KV cache with D tokens first ("@ d<D>"), and reports tokens/s over repetitions together with the memory
// the run predicted and actually held. Formatting (markdown table, JSON) is the CLI's job.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/model_source.h"
#include "runtime/session.h"

namespace ariadne {

struct BenchOptions {
  std::vector<int64_t> n_prompt{512};  // one pp test per entry; 0 entries are skipped
  std::vector<int64_t> n_gen{128};     // one tg test per entry; 0 entries are skipped
  std::vector<int64_t> n_depth{0};     // tokens already in the KV cache when each test starts
  int n_threads = 1;
  int repetitions = 5;
  int64_t n_batch = 512;  // tokens per forward call for prefill and depth filling
  bool warmup = true;     // one untimed run per test first (page in weights, warm caches), as llama-bench
  uint64_t seed = 1;      // for the random token ids: every run of the same options feeds the same ids
  // Configurations timed on the same filled depth (e.g. attention methods): every test runs once per
  // variant, run_bench's on_variant(i) switching the session to variant i before its runs.
  int n_variants = 1;
};

// Throws Error naming the option (-p, -n, -d, -t, -r, -b) when a value is out of range or nothing would run.
void validate_bench_options(const BenchOptions& options);

// One row of the result table.
struct BenchTest {
  int64_t n_prompt = 0;  // tokens prefilled by one eval call (pp test), else 0
  int64_t n_gen = 0;     // single-token decode steps (tg test), else 0
  int64_t n_depth = 0;   // tokens in the KV cache before the timed part starts
  int variant = 0;       // of BenchOptions::n_variants

  // llama-bench's names: "pp512", "tg128", "pp512 @ d4096".
  std::string name() const;
  // Tokens a timed run evaluates (the numerator of tokens/s).
  int64_t n_tokens() const { return n_prompt + n_gen; }
};

// Every test in run order: depths in the given order, and at each depth, for each variant in turn, the pp
// tests then the tg tests (llama-bench's order).
std::vector<BenchTest> bench_plan(const BenchOptions& options);

// KV entries the session needs: the largest depth plus the largest pp or tg count.
int64_t bench_context(const BenchOptions& options);

struct ModelSummary {
  std::string architecture;                    // "llama", "qwen2", ...
  std::string description;                     // "llama 1.2B q8_0": architecture, size, main weight type
  int64_t n_params = 0;                        // elements of every tensor
  uint64_t weight_bytes = 0;                   // bytes of every tensor
  std::map<std::string, int64_t> type_counts;  // tensors by element type name
  std::map<std::string, uint64_t> type_bytes;  // tensor bytes by element type name
};
ModelSummary summarize_model(const ModelSource& source);

// Bytes of K and V one cached token costs over every layer and KV head, at the cache element type (the same
// number `ariadne info` prints as kv_bytes_per_token_f32 / _f16).
uint64_t kv_bytes_per_token(const ModelConfig& config, DType kv_type = DType::F32);

// What the run is expected to hold in memory, computed before any work starts.
struct MemoryEstimate {
  uint64_t weights = 0;      // the model's tensors (mapped from the file: resident once touched)
  uint64_t kv = 0;           // the KV cache holding n_ctx tokens (f32, whole blocks, positions included)
  uint64_t activations = 0;  // one forward call's buffers, the logits and each thread's scratch
  uint64_t total() const { return weights + kv + activations; }
};
// policy (may be null: a full cache) bounds the KV cache (KvPolicy::peak_bytes); a policy that compresses
// prompts layer by layer also keeps the residual stream of the whole prompt (counted with the activations).
MemoryEstimate estimate_bench_memory(const ModelSource& source, int64_t n_ctx, int64_t n_batch, int n_threads,
                                     DType kv_type = DType::F32, const KvPolicy* policy = nullptr);

// Throws Error saying which options to lower when the KV cache and activations (the memory that cannot be
// paged back to the file) exceed `available` bytes. available == 0 means unknown: nothing is refused.
void check_bench_memory(const std::string& model_path, const BenchOptions& options,
                        const MemoryEstimate& estimate, uint64_t available);

// Peak resident set size of this process so far (VmHWM of /proc/self/status) in bytes, 0 when unknown.
uint64_t peak_resident_bytes();

struct SampleStats {
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); 0 for a single sample
  double median = 0;
};
SampleStats sample_stats(std::span<const double> samples);

// Tokens per second of each timed run: n_tokens / (ns * 1e-9). A 0 ns sample counts as 1 ns so that every
// rate stays finite.
std::vector<double> tokens_per_second(std::span<const uint64_t> samples_ns, int64_t n_tokens);

struct BenchResult {
  BenchTest test;
  std::vector<uint64_t> samples_ns;  // [repetitions] wall time of each timed run
  SampleStats rate;                  // tokens per second over the repetitions
  uint64_t kv_bytes = 0;             // the most the session's KV cache held during a timed run
  uint64_t peak_rss_bytes = 0;       // VmHWM right after the test
  // The KV policy's work during the timed runs (summed over repetitions; 0 without a compressing policy):
  // layers compressed (each compression covers every head of one layer) and the wall time it took.
  int64_t kv_compressions = 0;
  double kv_compress_seconds = 0;
  int64_t kv_budget = 0;  // entries per KV head the policy compressed to
};

struct BenchProgress {
  enum class Phase { Warmup, Depth, Timed };
  size_t test_index = 0;  // 0-based, of n_tests
  size_t n_tests = 0;
  const BenchTest* test = nullptr;
  Phase phase = Phase::Timed;
  int repetition = 0;        // 0-based; 0 during warmup
  int64_t tokens_done = 0;   // of the current phase
  int64_t tokens_total = 0;  // of the current phase
};

using BenchResultCallback = std::function<void(const BenchResult&)>;
using BenchProgressCallback = std::function<void(const BenchProgress&)>;
using BenchVariantCallback = std::function<void(int variant)>;

// Runs every test of bench_plan(options) on session (which must hold at least bench_context(options)
// tokens) and returns the results in plan order, also handing each to on_result as soon as it is done.
// Each depth is filled once with random ids; later runs, of any variant, truncate the session back to it.
// on_variant(v) is called before a test of variant v whenever the previous test was of another one (and
// before the first test); it must be given when options.n_variants > 1. The session is left empty.
std::vector<BenchResult> run_bench(Session& session, const BenchOptions& options,
                                   const BenchResultCallback& on_result = {},
                                   const BenchProgressCallback& on_progress = {},
                                   const BenchVariantCallback& on_variant = {});

}  // namespace ariadne
