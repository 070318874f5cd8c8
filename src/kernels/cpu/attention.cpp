#include "kernels/cpu/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/elementwise.h"

namespace ariadne::cpu {

void attention(const AttentionParams& p, ThreadPool& pool) {
  ARIADNE_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0, "heads must be a multiple of kv heads");
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t n_pairs = p.n_tokens * p.n_heads;
  pool.parallel_for(n_pairs, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(p.n_kv));  // [n_kv] one row of attention weights
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t t = pair / p.n_heads;
      const int64_t h = pair % p.n_heads;
      const int64_t g = h / group;
      const float* q = p.q + t * p.q_token_stride + h * p.head_dim;
      const float* kh = p.k + g * p.kv_head_stride;
      const float* vh = p.v + g * p.kv_head_stride;
      const int32_t limit = p.q_positions[t];
      float max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < p.n_kv; ++j) {
        if (p.kv_positions[j] > limit) {
          scores[j] = -std::numeric_limits<float>::infinity();
          continue;
        }
        const float* kj = kh + j * p.kv_entry_stride;
        float dot = 0.0f;
        for (int64_t d = 0; d < p.head_dim; ++d) dot += q[d] * kj[d];
        scores[j] = dot * p.scale;
        if (scores[j] > max) max = scores[j];
      }
      float* out = p.out + t * p.out_token_stride + h * p.head_dim;
      for (int64_t d = 0; d < p.head_dim; ++d) out[d] = 0.0f;
      if (max == -std::numeric_limits<float>::infinity())
        continue;  // nothing visible (cannot happen causally)
      double sum = 0.0;
      for (int64_t j = 0; j < p.n_kv; ++j) {
        const float e =
            scores[j] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < p.n_kv; ++j) {
        const float w = scores[j] * inv;
        if (w == 0.0f) continue;
        const float* vj = vh + j * p.kv_entry_stride;
        for (int64_t d = 0; d < p.head_dim; ++d) out[d] += w * vj[d];
      }
    }
  });
}

}  // namespace ariadne::cpu
