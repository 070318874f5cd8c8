#include "kernels/cpu/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/quants.h"

namespace ariadne::cpu {

void attention(const AttentionParams& p, ThreadPool& pool) {
  ARIADNE_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0, "heads must be a multiple of kv heads");
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t d = p.head_dim;
  const size_t row = row_bytes(p.kv_type, d);
  const RowKernels& kernels = row_kernels(p.kv_type);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  pool.parallel_for(p.n_tokens * p.n_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;                         // [entries read] logits, then weights
    std::vector<float> value(static_cast<size_t>(d));  // one dequantized value row
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t t = pair / p.n_heads;
      const int64_t h = pair % p.n_heads;
      const KvHeadView& kv = p.heads[h / group];
      const float* q = p.q + t * p.q_token_stride + h * d;
      float* out = p.out + t * p.out_token_stride + h * d;
      const int64_t n_read = kv.indices != nullptr ? kv.n_indices : kv.n;
      auto entry = [&](int64_t i) { return kv.indices != nullptr ? kv.indices[i] : i; };
      auto k_row = [&](int64_t j) { return kv.k_blocks[j / p.block_size] + (j % p.block_size) * row; };
      auto v_row = [&](int64_t j) { return kv.v_blocks[j / p.block_size] + (j % p.block_size) * row; };

      scores.assign(static_cast<size_t>(n_read), kNegInf);
      float max = kNegInf;
      const int32_t limit = p.q_positions[t];
      for (int64_t i = 0; i < n_read; ++i) {
        const int64_t j = entry(i);
        if (kv.positions[j] > limit) continue;
        float s = kernels.dot(k_row(j), q, d) * p.scale;
        if (kv.bias != nullptr) s += kv.bias[j];
        scores[static_cast<size_t>(i)] = s;
        if (s > max) max = s;
      }
      for (int64_t e = 0; e < d; ++e) out[e] = 0.0f;
      if (max == kNegInf) continue;  // nothing visible to this query
      double sum = 0.0;
      for (float& s : scores) {
        s = s == kNegInf ? 0.0f : std::exp(s - max);
        sum += s;
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t i = 0; i < n_read; ++i) {
        const float w = scores[static_cast<size_t>(i)] * inv;
        if (w == 0.0f) continue;
        kernels.dequantize(v_row(entry(i)), value.data(), d);
        for (int64_t e = 0; e < d; ++e) out[e] += w * value[static_cast<size_t>(e)];
      }
    }
  });
}

}  // namespace ariadne::cpu
