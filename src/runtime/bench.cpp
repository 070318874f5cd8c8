#include "runtime/bench.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "runtime/kv_cache.h"

namespace ariadne {

namespace {

// Positions are int32 throughout the model code, so no test may reach past INT32_MAX tokens.
constexpr int64_t kMaxTokens = INT32_MAX;

int64_t largest(const std::vector<int64_t>& values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

void check_counts(const std::vector<int64_t>& values, const char* flag, const char* what) {
  for (const int64_t v : values)
    if (v < 0 || v > kMaxTokens)
      fail("{}: {} is not a valid {} (expected 0 to {})", flag, v, what, kMaxTokens);
}

std::string short_count(int64_t n) {
  if (n >= 1000000000) return fmt::format("{:.1f}B", n / 1e9);
  if (n >= 1000000) return fmt::format("{:.0f}M", n / 1e6);
  return fmt::format("{:.0f}K", n / 1e3);
}

double mib(uint64_t bytes) {
  return bytes / 1048576.0;
}

}  // namespace

void validate_bench_options(const BenchOptions& o) {
  check_counts(o.n_prompt, "-p", "prompt length");
  check_counts(o.n_gen, "-n", "generation length");
  check_counts(o.n_depth, "-d", "depth");
  if (o.n_depth.empty()) fail("-d: no depth given (expected e.g. 0 or 0,4096)");
  if (o.n_variants < 1 || o.n_variants > 64)
    fail("bench: {} variants is out of range (expected 1 to 64)", o.n_variants);
  if (largest(o.n_prompt) == 0 && largest(o.n_gen) == 0)
    fail("-p and -n are all 0: nothing to benchmark (give -p N or -n N with N > 0)");
  if (o.n_threads < 1 || o.n_threads > 1024)
    fail("-t: {} threads is out of range (expected 1 to 1024)", o.n_threads);
  if (o.repetitions < 1 || o.repetitions > 1000000)
    fail("-r: {} repetitions is out of range (expected 1 to 1000000)", o.repetitions);
  if (o.n_batch < 1 || o.n_batch > kMaxTokens)
    fail("-b: batch size {} is out of range (expected 1 to {})", o.n_batch, kMaxTokens);
  // Each term is at most INT32_MAX (checked above), so the sum cannot overflow int64.
  const int64_t n_ctx = bench_context(o);
  if (n_ctx > kMaxTokens)
    fail("-d {} plus -p/-n {} is a context of {} tokens, more than the {} supported", largest(o.n_depth),
         std::max(largest(o.n_prompt), largest(o.n_gen)), n_ctx, kMaxTokens);
}

std::string BenchTest::name() const {
  std::string s = n_prompt > 0 && n_gen == 0   ? fmt::format("pp{}", n_prompt)
                  : n_gen > 0 && n_prompt == 0 ? fmt::format("tg{}", n_gen)
                                               : fmt::format("pp{}+tg{}", n_prompt, n_gen);
  if (n_depth > 0) s += fmt::format(" @ d{}", n_depth);
  return s;
}

std::vector<BenchTest> bench_plan(const BenchOptions& o) {
  std::vector<BenchTest> plan;
  for (const int64_t d : o.n_depth) {
    for (int v = 0; v < o.n_variants; ++v) {
      for (const int64_t p : o.n_prompt)
        if (p > 0) plan.push_back({p, 0, d, v});
      for (const int64_t n : o.n_gen)
        if (n > 0) plan.push_back({0, n, d, v});
    }
  }
  return plan;
}

int64_t bench_context(const BenchOptions& o) {
  return largest(o.n_depth) + std::max(largest(o.n_prompt), largest(o.n_gen));
}

ModelSummary summarize_model(const ModelSource& source) {
  ModelSummary s;
  s.architecture = std::string(arch_name(source.config.arch));
  for (const auto& [name, t] : source.tensors) {
    const std::string type(dtype_name(t.type));
    s.n_params += t.numel();
    s.weight_bytes += t.nbytes;
    ++s.type_counts[type];
    s.type_bytes[type] += t.nbytes;
  }
  // The type holding most bytes names the model, as llama.cpp's "Q8_0" in "llama 1B Q8_0": norms and
  // biases stay f32 in every file and would otherwise mislabel it.
  std::string main_type = "?";
  uint64_t main_bytes = 0;
  for (const auto& [type, bytes] : s.type_bytes)
    if (bytes > main_bytes) {
      main_type = type;
      main_bytes = bytes;
    }
  s.description = fmt::format("{} {} {}", s.architecture, short_count(s.n_params), main_type);
  return s;
}

uint64_t kv_bytes_per_token(const ModelConfig& c, DType kv_type) {
  return 2 * static_cast<uint64_t>(c.n_layer) * static_cast<uint64_t>(c.n_head_kv) *
         row_bytes(kv_type, c.head_dim);
}

MemoryEstimate estimate_bench_memory(const ModelSource& source, int64_t n_ctx, int64_t n_batch, int n_threads,
                                     DType kv_type, const KvPolicy* policy) {
  const ModelConfig& c = source.config;
  MemoryEstimate m;
  for (const auto& [name, t] : source.tensors) m.weights += t.nbytes;
  // The cache's own accounting when every head is full: whole blocks, plus each entry's position.
  KvCacheOptions kv;
  kv.n_layer = c.n_layer;
  kv.n_kv_heads = c.n_head_kv;
  kv.head_dim = c.head_dim;
  kv.n_ctx = n_ctx;
  kv.type = kv_type;
  m.kv = policy != nullptr ? policy->peak_bytes(kv) : KvCache::bytes_needed(kv);
  // The largest forward call holds min(n_batch, n_ctx) tokens. Per token it keeps (blocks::Activations) the
  // residual, the normalised input and the sub-block output [n_embd] each, q and the attention output
  // [n_head*head_dim], k and v [n_head_kv*head_dim], gate and up [n_ff].
  const uint64_t tokens = static_cast<uint64_t>(std::min(n_batch, n_ctx));
  const uint64_t per_token =
      3 * c.n_embd + 2 * c.n_head * c.head_dim + 2 * c.n_head_kv * c.head_dim + 2 * c.n_ff;
  // Session::eval's logits row plus the row it discards for non-final chunks.
  const uint64_t logits = 2 * static_cast<uint64_t>(c.n_vocab);
  // Each thread: attention scores over the whole context and one value row, and the prefill matmul's
  // dequantized tile (32 Ki floats, kernels/cpu/matmul.cpp).
  const uint64_t per_thread = static_cast<uint64_t>(n_ctx + c.head_dim) + 32 * 1024;
  // The model's f32 copies of the norm weights.
  const uint64_t norms = static_cast<uint64_t>((2 * c.n_layer + 1) * c.n_embd);
  // Layer-by-layer prefill (a compressing policy): the residual stream of the whole prompt.
  const uint64_t residual =
      policy != nullptr && policy->compresses_prefill() ? static_cast<uint64_t>(n_ctx * c.n_embd) : 0;
  m.activations = sizeof(float) * (tokens * per_token + logits +
                                   static_cast<uint64_t>(n_threads) * per_thread + norms + residual);
  return m;
}

void check_bench_memory(const std::string& model_path, const BenchOptions& o, const MemoryEstimate& m,
                        uint64_t available) {
  const uint64_t need = m.kv + m.activations;
  if (available == 0 || need <= available) return;
  fail(
      "{}: a benchmark context of {} tokens (largest -d {} + largest -p/-n {}) needs {:.1f} MiB of KV cache "
      "and {:.1f} MiB of activations, but only {:.1f} MiB of memory is available; lower -d, -p or -n "
      "(or -b and -t to shrink the activations)",
      model_path, bench_context(o), largest(o.n_depth), std::max(largest(o.n_prompt), largest(o.n_gen)),
      mib(m.kv), mib(m.activations), mib(available));
}

uint64_t peak_resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    uint64_t kib = 0;
    if (fields >> kib) return kib * 1024;
    return 0;
  }
  return 0;
}

SampleStats sample_stats(std::span<const double> samples) {
  SampleStats s;
  if (samples.empty()) return s;
  const double n = static_cast<double>(samples.size());
  double sum = 0;
  for (const double x : samples) sum += x;
  s.mean = sum / n;
  // Two passes (sum of squared deviations) rather than sum(x^2) - n*mean^2, which cancels badly when the
  // spread is small next to the mean, as it is for steady timings.
  if (samples.size() > 1) {
    double sq = 0;
    for (const double x : samples) sq += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(sq / (n - 1));
  }
  std::vector<double> sorted(samples.begin(), samples.end());
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  s.median = sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return s;
}

std::vector<double> tokens_per_second(std::span<const uint64_t> samples_ns, int64_t n_tokens) {
  std::vector<double> rates;
  rates.reserve(samples_ns.size());
  for (const uint64_t ns : samples_ns)
    rates.push_back(static_cast<double>(n_tokens) * 1e9 / static_cast<double>(std::max<uint64_t>(ns, 1)));
  return rates;
}

std::vector<BenchResult> run_bench(Session& session, const BenchOptions& o,
                                   const BenchResultCallback& on_result,
                                   const BenchProgressCallback& on_progress,
                                   const BenchVariantCallback& on_variant) {
  validate_bench_options(o);
  if (o.n_variants > 1 && !on_variant) fail("bench: {} variants but no way to switch them", o.n_variants);
  if (session.n_ctx() < bench_context(o))
    fail("the session holds {} tokens but the benchmark needs {} (largest -d plus largest -p/-n)",
         session.n_ctx(), bench_context(o));
  const int64_t n_vocab = session.model().config().n_vocab;
  // Random ids, as llama-bench feeds: the speed of a dense forward pass does not depend on which tokens
  // they are, and a fixed seed makes two runs of the same options feed the same ones.
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(n_vocab - 1));
  auto random_ids = [&](int64_t n) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t& id : ids) id = pick(rng);
    return ids;
  };

  const std::vector<BenchTest> plan = bench_plan(o);
  std::vector<BenchResult> results;
  int64_t held_depth = -1;  // depth of the random ids at the start of the cache, -1: none
  int variant = -1;         // the variant the session is set to
  for (size_t ti = 0; ti < plan.size(); ++ti) {
    const BenchTest& t = plan[ti];
    if (t.variant != variant && on_variant) on_variant(t.variant);
    variant = t.variant;
    auto report = [&](BenchProgress::Phase phase, int rep, int64_t done, int64_t total) {
      if (!on_progress) return;
      BenchProgress p;
      p.test_index = ti;
      p.n_tests = plan.size();
      p.test = &t;
      p.phase = phase;
      p.repetition = rep;
      p.tokens_done = done;
      p.tokens_total = total;
      on_progress(p);
    };

    // The depth is filled (untimed, in -b chunks so that progress can be shown between them) once, and
    // every later run, of this test or of the next one at the same depth, truncates the cache back to it
    // (llama-bench restores a saved state the same way). Without a compressing policy a deeper test goes on
    // from the depth held (a cache of random ids is one whatever order they came in), so -d 16384,32768
    // fills 32768 tokens, not 49152.
    auto restore_depth = [&](int rep) {
      if (held_depth == t.n_depth) {
        session.truncate(t.n_depth);
        return;
      }
      const KvPolicy* policy = session.kv().policy();
      const bool compressing = policy != nullptr && policy->compresses_prefill();
      int64_t done = 0;
      if (!compressing && held_depth > 0 && held_depth < t.n_depth) {
        session.truncate(held_depth);
        done = held_depth;
      } else {
        session.clear();
      }
      held_depth = -1;
      if (compressing && t.n_depth > 1) {
        // One eval (chunked by the session), so that the policy sees the whole depth as one prompt and
        // compresses it layer by layer.
        report(BenchProgress::Phase::Depth, rep, 0, t.n_depth);
        session.eval(random_ids(t.n_depth), false, [&](int64_t done, int64_t total) {
          report(BenchProgress::Phase::Depth, rep, done, total);
          return true;
        });
      } else {
        while (done < t.n_depth) {
          report(BenchProgress::Phase::Depth, rep, done, t.n_depth);
          const int64_t len = std::min(o.n_batch, t.n_depth - done);
          session.eval(random_ids(len), false);
          done += len;
        }
      }
      held_depth = t.n_depth;
    };
    if (o.warmup) {
      // As llama-bench: the whole prompt for pp, one token for tg (here at the test's depth).
      const int64_t n = t.n_prompt > 0 ? t.n_prompt : 1;
      restore_depth(0);
      report(BenchProgress::Phase::Warmup, 0, 0, n);
      session.eval(random_ids(n), false);
    }

    BenchResult r;
    r.test = t;
    for (int rep = 0; rep < o.repetitions; ++rep) {
      restore_depth(rep);
      const std::vector<int32_t> ids = random_ids(t.n_tokens());  // drawn before the clock starts
      report(BenchProgress::Phase::Timed, rep, 0, t.n_tokens());
      const KvPolicy* policy = session.kv().policy();
      const KvPolicyStats before = policy != nullptr ? policy->stats() : KvPolicyStats{};
      const auto start = std::chrono::steady_clock::now();
      if (t.n_prompt > 0) {
        // The cache is largest after a chunk (a compressing policy shrinks each layer once it is complete).
        session.eval(ids, false, [&](int64_t, int64_t) {
          r.kv_bytes = std::max<uint64_t>(r.kv_bytes, session.kv().bytes());
          return true;
        });
      } else {
        for (int64_t i = 0; i < t.n_gen; ++i) {
          session.eval(std::span(ids).subspan(static_cast<size_t>(i), 1), false);
          if (policy != nullptr) r.kv_bytes = std::max<uint64_t>(r.kv_bytes, session.kv().bytes());
        }
      }
      const auto stop = std::chrono::steady_clock::now();
      r.samples_ns.push_back(
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count()));
      // Without a policy the cache only grows within a run, so its size now is the most this run held.
      r.kv_bytes = std::max<uint64_t>(r.kv_bytes, session.kv().bytes());
      if (policy != nullptr) {
        const KvPolicyStats after = policy->stats();
        r.kv_compressions += after.prefill_compressions + after.decode_compressions -
                             before.prefill_compressions - before.decode_compressions;
        r.kv_compress_seconds +=
            after.prefill_seconds + after.decode_seconds - before.prefill_seconds - before.decode_seconds;
        r.kv_budget = after.budget;
      }
    }
    r.rate = sample_stats(tokens_per_second(r.samples_ns, t.n_tokens()));
    r.peak_rss_bytes = peak_resident_bytes();
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  }
  session.clear();
  return results;
}

}  // namespace ariadne
