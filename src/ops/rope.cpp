#include "ops/rope.h"

#include "core/error.h"
#include "kernels/cpu/elementwise.h"

namespace ariadne::ops {

void rope(const Context& ctx, const RopeTable& table, float* x, int64_t n_tokens, int64_t n_heads,
          int64_t head_dim, int64_t token_stride, const int32_t* positions) {
  ARIADNE_CHECK(head_dim % 2 == 0 && static_cast<int64_t>(table.inv_freq.size()) == head_dim / 2,
                "rope: table does not match head_dim");
  ctx.pool.parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    cpu::RopeParams p{};
    p.n_tokens = end - begin;
    p.n_heads = n_heads;
    p.head_dim = head_dim;
    p.token_stride = token_stride;
    p.positions = positions + begin;
    p.inv_freq = table.inv_freq.data();
    p.position_scale = table.position_scale;
    p.neox = table.neox;
    cpu::rope(x + begin * token_stride, p);
  });
}

}  // namespace ariadne::ops
