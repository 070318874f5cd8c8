#include "kernels/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/attention_tiles.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quants.h"

namespace ariadne::cpu {

namespace tiles = attention_tiles;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Entries read per split-K segment. Segment and tile boundaries are multiples of these counts from the first
// entry read, so they depend on the number of entries only (never on threads or on the query batch).
constexpr int64_t kSegment = 8 * tiles::kKeyTile;
// Query rows (tokens x GQA group) a prefill work item aims for: enough rows to reuse each converted K/V
// tile many times, few enough for the score tile ([rows][kKeyTile]) to stay in L1/L2.
constexpr int64_t kTargetRows = 64;
// Split-K is used while the (kv head, query tile) units alone give fewer than this many items per thread.
constexpr int64_t kItemsPerThread = 8;
// Upper bound on the split-K partial states; beyond it the units run whole (the result is the same).
constexpr size_t kMaxPartialBytes = size_t{64} << 20;
// The largest GQA group argmax_last is kept for (on the stack, per unit).
constexpr int64_t kMaxGroup = 64;

// --- portable tile kernels (the reference every vector path is tested against) -------------------------

void convert_scalar(tiles::RowType type, const uint8_t* const* rows, int64_t n, int64_t d, int64_t ld,
                    float* dst) {
  static const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};
  const RowKernels& kernels = row_kernels(kTypes[static_cast<int>(type)]);
  for (int64_t i = 0; i < n; ++i) {
    kernels.dequantize(rows[i], dst + i * ld, d);
    std::fill(dst + i * ld + d, dst + (i + 1) * ld, 0.0f);
  }
}

// Eight interleaved partial sums (lane k takes elements e with e % 8 == k), added pairwise.
void dots_scalar(const float* q, int64_t n_rows, const float* k, int64_t n_keys, int64_t ld, float* s) {
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t j = 0; j < n_keys; ++j) {
      const float* a = q + r * ld;
      const float* b = k + j * ld;
      float lane[8] = {};
      for (int64_t e = 0; e < ld; e += 8)
        for (int t = 0; t < 8; ++t) lane[t] += a[e + t] * b[e + t];
      s[r * tiles::kKeyTile + j] =
          ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    }
  }
}

void softmax_scalar(const tiles::SoftmaxArgs& a) {
  for (int64_t r = 0; r < a.n_rows; ++r) {
    float* s = a.s + r * tiles::kKeyTile;
    float tile_max = kNegInf;
    int32_t arg = -1;
    for (int64_t j = 0; j < a.n_keys; ++j) {
      float x = s[j] * a.scale;
      if (a.bias != nullptr) x += a.bias[j];
      if (a.key_pos != nullptr && a.key_pos[j] > a.row_limit[r]) x = kNegInf;
      s[j] = x;
      if (x > tile_max) tile_max = x, arg = static_cast<int32_t>(j);
    }
    if (a.tile_max != nullptr) a.tile_max[r] = tile_max, a.tile_argmax[r] = arg;
    if (tile_max == kNegInf) {
      a.active[r] = 0;
      continue;
    }
    const float m_new = std::max(a.m[r], tile_max);
    const float alpha = std::exp(a.m[r] - m_new);
    float sum = 0.0f;
    for (int64_t j = 0; j < a.n_keys; ++j) sum += (s[j] = std::exp(s[j] - m_new));
    a.m[r] = m_new;
    a.l[r] = a.l[r] * alpha + sum;
    a.alpha[r] = alpha;
    a.active[r] = 1;
  }
}

void accumulate_scalar(const tiles::AccumulateArgs& a) {
  for (int64_t r = 0; r < a.n_rows; ++r) {
    if (a.active[r] == 0) continue;
    float* acc = a.acc + r * a.ld;
    const float* p = a.p + r * tiles::kKeyTile;
    for (int64_t e = 0; e < a.ld; ++e) acc[e] *= a.alpha[r];
    for (int64_t j = 0; j < a.n_keys; ++j)
      for (int64_t e = 0; e < a.ld; ++e) acc[e] += p[j] * a.v[j * a.ld + e];
  }
}

const tiles::TileKernels kScalarTiles{convert_scalar, dots_scalar, softmax_scalar, accumulate_scalar};

const tiles::TileKernels& tile_kernels(Isa isa) {
  switch (isa) {
#if defined(ARIADNE_HAVE_X86_KERNELS)
    case Isa::Avx512:
      return tiles::kAvx512Tiles;
    case Isa::Avx2:
      return tiles::kAvx2Tiles;
#endif
    default:
      return kScalarTiles;
  }
}

tiles::RowType row_type(DType t) {
  switch (t) {
    case DType::F32:
      return tiles::RowType::F32;
    case DType::F16:
      return tiles::RowType::F16;
    case DType::BF16:
      return tiles::RowType::BF16;
    case DType::Q8_0:
      return tiles::RowType::Q8_0;
    default:
      fail("attention: KV cache type {} is not supported (expected f32, f16, bf16 or q8_0)", dtype_name(t));
  }
}

// --- the tiled, split-K driver ------------------------------------------------------------------------

// Online-softmax state of a set of query rows, in one float buffer: m [rows], l [rows], acc [rows][ld]
// (m = -inf: nothing seen; the output is acc / l).
struct State {
  float* m;
  float* l;
  float* acc;
};

size_t state_floats(int64_t rows, int64_t ld) {
  return static_cast<size_t>(rows * (ld + 2));
}

State state_at(float* base, int64_t rows) {
  return {base, base + rows, base + 2 * rows};
}

// The largest logit one query row has seen and the entry it came from (argmax_last).
struct Best {
  float logit = kNegInf;
  int32_t entry = -1;
};

// The query rows of one unit of work: tokens [t0, t0 + n_tok) of kv head g, each token's `group` query heads
// (row r is token t0 + r / group, query head g * group + r % group).
struct Unit {
  int64_t g = 0, t0 = 0, n_tok = 0, n_rows = 0;
};

// What every work item of a call shares.
struct Plan {
  const AttentionParams& p;
  const tiles::TileKernels& kernels;
  tiles::RowType type;
  size_t row_bytes;
  int64_t group;
  int64_t d;
  int64_t ld;           // head_dim padded to tiles::kPad
  int64_t tile_tokens;  // query tokens per unit
  int64_t n_qtiles;
  int64_t max_rows;  // tile_tokens * group

  int64_t n_read(int64_t g) const {
    const KvHeadView& kv = p.heads[g];
    return kv.indices != nullptr ? kv.n_indices : kv.n;
  }
  int64_t n_segments(int64_t g) const { return (n_read(g) + kSegment - 1) / kSegment; }
  Unit unit(int64_t g, int64_t qt) const {
    Unit u;
    u.g = g;
    u.t0 = qt * tile_tokens;
    u.n_tok = std::min(tile_tokens, p.n_tokens - u.t0);
    u.n_rows = u.n_tok * group;
    return u;
  }
};

// The entries of one tile of keys: where their rows are, their positions and biases.
struct TileRefs {
  TileRefs()
      : k_rows(tiles::kKeyTile),
        v_rows(tiles::kKeyTile),
        key_pos(tiles::kKeyTile),
        entry(tiles::kKeyTile),
        bias(tiles::kKeyTile) {}
  std::vector<const uint8_t*> k_rows, v_rows;  // [kKeyTile] the rows in the cache
  std::vector<int32_t> key_pos;                // [kKeyTile]
  std::vector<int32_t> entry;                  // [kKeyTile] index of each among the head's entries
  std::vector<float> bias;                     // [kKeyTile]
  int64_t n_keys = 0;
  int32_t min_pos = 0, max_pos = 0;
};

// Per-thread buffers, sized for the largest unit.
struct Scratch {
  explicit Scratch(const Plan& plan)
      : q(static_cast<size_t>(plan.max_rows * plan.ld)),
        limit(static_cast<size_t>(plan.max_rows)),
        k(static_cast<size_t>(tiles::kKeyTile * plan.ld)),
        v(k.size()),
        s(static_cast<size_t>(plan.max_rows * tiles::kKeyTile)),
        alpha(static_cast<size_t>(plan.max_rows)),
        active(static_cast<size_t>(plan.max_rows)),
        tile_max(static_cast<size_t>(plan.max_rows)),
        tile_argmax(static_cast<size_t>(plan.max_rows)),
        segment(state_floats(plan.max_rows, plan.ld)),
        total(segment.size()) {}

  std::vector<float> q;        // [rows][ld] the unit's queries, zero-padded
  std::vector<int32_t> limit;  // [rows] causal limit (the row's token position)
  int32_t min_limit = 0, max_limit = 0;
  std::vector<float> k, v;  // [kKeyTile][ld] one tile of keys / values as f32
  std::vector<float> s;     // [rows][kKeyTile] scores, then softmax weights
  std::vector<float> alpha;
  std::vector<uint8_t> active;
  std::vector<float> tile_max;  // [rows] softmax's per-row maximum and its key, for argmax_last
  std::vector<int32_t> tile_argmax;
  TileRefs refs[2];                       // the tile being computed and the next one
  std::vector<float> segment, total;      // State buffers
  int64_t loaded_g = -1, loaded_t0 = -1;  // the unit whose queries q holds
};

void load_queries(const Plan& plan, const Unit& u, Scratch& sc) {
  if (sc.loaded_g == u.g && sc.loaded_t0 == u.t0) return;
  const AttentionParams& p = plan.p;
  sc.min_limit = std::numeric_limits<int32_t>::max();
  sc.max_limit = std::numeric_limits<int32_t>::min();
  for (int64_t r = 0; r < u.n_rows; ++r) {
    const int64_t t = u.t0 + r / plan.group;
    const int64_t h = u.g * plan.group + r % plan.group;
    float* dst = sc.q.data() + r * plan.ld;
    std::memcpy(dst, p.q + t * p.q_token_stride + h * plan.d, static_cast<size_t>(plan.d) * sizeof(float));
    std::fill(dst + plan.d, dst + plan.ld, 0.0f);
    const int32_t limit = p.q_positions[t];
    sc.limit[static_cast<size_t>(r)] = limit;
    sc.min_limit = std::min(sc.min_limit, limit);
    sc.max_limit = std::max(sc.max_limit, limit);
  }
  sc.loaded_g = u.g;
  sc.loaded_t0 = u.t0;
}

void gather_tile(const Plan& plan, const KvHeadView& kv, bool all_visible, int64_t i0, int64_t n_keys,
                 TileRefs& t) {
  const int64_t block_size = plan.p.block_size;
  t.n_keys = n_keys;
  t.min_pos = std::numeric_limits<int32_t>::max();
  t.max_pos = std::numeric_limits<int32_t>::min();
  int64_t block = i0 / block_size, row = i0 % block_size;  // of the next entry when reading densely
  for (int64_t j = 0; j < n_keys; ++j) {
    int64_t entry = i0 + j;
    if (kv.indices != nullptr) {
      entry = kv.indices[i0 + j];
      block = entry / block_size;
      row = entry % block_size;
    } else if (row == block_size) {
      ++block;
      row = 0;
    }
    // When no entry can be in any row's future, the bound stands in for the position: nothing is hidden
    // either way, and a sparse read does not pay a cache miss per entry for it.
    const int32_t pos = all_visible ? kv.max_position : kv.positions[entry];
    t.key_pos[static_cast<size_t>(j)] = pos;
    t.entry[static_cast<size_t>(j)] = static_cast<int32_t>(entry);
    t.min_pos = std::min(t.min_pos, pos);
    t.max_pos = std::max(t.max_pos, pos);
    const size_t offset = static_cast<size_t>(row) * plan.row_bytes;
    t.k_rows[static_cast<size_t>(j)] = kv.k_blocks[block] + offset;
    t.v_rows[static_cast<size_t>(j)] = kv.v_blocks[block] + offset;
    if (kv.bias != nullptr) t.bias[static_cast<size_t>(j)] = kv.bias[entry];
    ++row;
  }
}

// Converts a tile's rows to f32 (convert) eight at a time, asking between them for the next tile's rows
// (next, null when there is none to read) to be brought towards L2: the requests are spread over the work
// instead of issued in a burst, and a decode step, which reads every row once from memory, keeps misses in
// flight while it computes (measured at depth 32768 against no prefetching and against one burst per tile:
// dense and sparse reads both ~5% faster, docs/hata.md). The split does not change a value.
void convert_ahead(const Plan& plan, const std::vector<const uint8_t*>& rows, int64_t n,
                   const std::vector<const uint8_t*>* next, int64_t n_next, float* dst) {
  if (next == nullptr) {
    plan.kernels.convert(plan.type, rows.data(), n, plan.d, plan.ld, dst);
    return;
  }
  auto prefetch = [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j)
      for (size_t off = 0; off < plan.row_bytes; off += 64)
        __builtin_prefetch((*next)[static_cast<size_t>(j)] + off, 0, 2);
  };
  constexpr int64_t kStep = 8;
  for (int64_t c = 0; c < n; c += kStep) {
    prefetch(c, std::min(c + kStep, n_next));
    plan.kernels.convert(plan.type, rows.data() + c, std::min(kStep, n - c), plan.d, plan.ld,
                         dst + c * plan.ld);
  }
  prefetch(n, n_next);
}

// The state of the unit's rows over segment `seg` alone: tile after tile of kKeyTile entries, each an
// online-softmax step. Tiles whose keys are all later than every row's position are skipped; for a row
// that sees no key of a tile, processing or skipping it is the same (the row is left untouched), which is
// what makes a token's result independent of the other tokens in its unit.
// best: null, or [group] the running argmax of the last token's rows (the unit holds the last token).
void run_segment(const Plan& plan, const Unit& u, int64_t seg, Scratch& sc, State st, Best* best) {
  const AttentionParams& p = plan.p;
  const KvHeadView& kv = p.heads[u.g];
  const int64_t ld = plan.ld;
  std::fill(st.m, st.m + u.n_rows, kNegInf);
  std::fill(st.l, st.l + u.n_rows, 0.0f);
  std::fill(st.acc, st.acc + u.n_rows * ld, 0.0f);
  const int64_t begin = seg * kSegment;
  const int64_t end = std::min(plan.n_read(u.g), begin + kSegment);
  TileRefs* tile = &sc.refs[0];
  TileRefs* next = &sc.refs[1];
  const bool all_visible = kv.max_position <= sc.min_limit;
  if (begin < end) gather_tile(plan, kv, all_visible, begin, std::min(tiles::kKeyTile, end - begin), *tile);
  for (int64_t i0 = begin; i0 < end; i0 += tiles::kKeyTile, std::swap(tile, next)) {
    const int64_t i1 = i0 + tiles::kKeyTile;
    if (i1 < end) {
      gather_tile(plan, kv, all_visible, i1, std::min(tiles::kKeyTile, end - i1), *next);
    }
    const bool ahead = i1 < end && next->min_pos <= sc.max_limit;  // the next tile will be read
    if (tile->min_pos > sc.max_limit) continue;                    // every key is in every row's future
    const int64_t n_keys = tile->n_keys;

    convert_ahead(plan, tile->k_rows, n_keys, ahead ? &next->k_rows : nullptr, ahead ? next->n_keys : 0,
                  sc.k.data());
    plan.kernels.dots(sc.q.data(), u.n_rows, sc.k.data(), n_keys, ld, sc.s.data());
    tiles::SoftmaxArgs sm;
    sm.s = sc.s.data();
    sm.n_rows = u.n_rows;
    sm.n_keys = n_keys;
    sm.scale = p.scale;
    sm.bias = kv.bias != nullptr ? tile->bias.data() : nullptr;
    // null: no key is hidden from any row
    sm.key_pos = tile->max_pos > sc.min_limit ? tile->key_pos.data() : nullptr;
    sm.row_limit = sc.limit.data();
    sm.m = st.m;
    sm.l = st.l;
    sm.alpha = sc.alpha.data();
    sm.active = sc.active.data();
    if (best != nullptr) {
      sm.tile_max = sc.tile_max.data();
      sm.tile_argmax = sc.tile_argmax.data();
    }
    plan.kernels.softmax(sm);
    if (best != nullptr) {
      // The last token's rows: tiles come in ascending entry order and a tile reports its lowest argmax, so
      // a strictly larger logit keeps the lowest index on a tie.
      const int64_t r0 = (p.n_tokens - 1 - u.t0) * plan.group;
      for (int64_t h = 0; h < plan.group; ++h) {
        const auto r = static_cast<size_t>(r0 + h);
        if (sc.tile_max[r] > best[h].logit)
          best[h] = {sc.tile_max[r], tile->entry[static_cast<size_t>(sc.tile_argmax[r])]};
      }
    }
    if (std::none_of(sc.active.begin(), sc.active.begin() + u.n_rows, [](uint8_t a) { return a != 0; }))
      continue;
    convert_ahead(plan, tile->v_rows, n_keys, ahead ? &next->v_rows : nullptr, ahead ? next->n_keys : 0,
                  sc.v.data());
    tiles::AccumulateArgs ac;
    ac.p = sc.s.data();
    ac.n_rows = u.n_rows;
    ac.n_keys = n_keys;
    ac.v = sc.v.data();
    ac.ld = ld;
    ac.alpha = sc.alpha.data();
    ac.active = sc.active.data();
    ac.acc = st.acc;
    plan.kernels.accumulate(ac);
  }
}

void clear_state(State st, int64_t rows) {
  std::fill(st.m, st.m + rows, kNegInf);
  std::fill(st.l, st.l + rows, 0.0f);
}

// total <- merge(total, part): the log-sum-exp merge of two softmax states. Segments are folded into the
// total one at a time in segment order by every path (split-K or not), so the result is the same.
void merge_state(State total, const State& part, int64_t rows, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const float pm = part.m[r];
    if (pm == kNegInf) continue;  // the segment had nothing for this row
    float* acc = total.acc + r * ld;
    const float* pacc = part.acc + r * ld;
    if (total.m[r] == kNegInf) {
      total.m[r] = pm;
      total.l[r] = part.l[r];
      std::copy(pacc, pacc + ld, acc);
      continue;
    }
    const float m = std::max(total.m[r], pm);
    const float a = std::exp(total.m[r] - m);
    const float b = std::exp(pm - m);
    for (int64_t e = 0; e < ld; ++e) acc[e] = acc[e] * a + pacc[e] * b;
    total.l[r] = total.l[r] * a + part.l[r] * b;
    total.m[r] = m;
  }
}

void write_output(const Plan& plan, const Unit& u, const State& total) {
  const AttentionParams& p = plan.p;
  for (int64_t r = 0; r < u.n_rows; ++r) {
    const int64_t t = u.t0 + r / plan.group;
    const int64_t h = u.g * plan.group + r % plan.group;
    float* out = p.out + t * p.out_token_stride + h * plan.d;
    const float* acc = total.acc + r * plan.ld;
    if (total.m[r] == kNegInf) {  // nothing visible to this query
      std::fill(out, out + plan.d, 0.0f);
      continue;
    }
    const float inv = 1.0f / total.l[r];
    for (int64_t e = 0; e < plan.d; ++e) out[e] = acc[e] * inv;
  }
}

// argmax_last of the unit's kv head, from the last token's best entries.
void write_argmax(const Plan& plan, const Unit& u, const Best* best) {
  for (int64_t h = 0; h < plan.group; ++h) plan.p.argmax_last[u.g * plan.group + h] = best[h].entry;
}

// Calls fn(item, scratch) for every item in [0, n_items) with items handed out dynamically (each is
// computed entirely by one thread, so the assignment never changes a result).
template <typename Fn>
void for_each_item(ThreadPool& pool, const Plan& plan, int64_t n_items, Fn&& fn) {
  std::atomic<int64_t> next{0};
  pool.run([&](int) {
    if (next.load(std::memory_order_relaxed) >= n_items) return;
    Scratch sc(plan);
    for (int64_t item = next.fetch_add(1, std::memory_order_relaxed); item < n_items;
         item = next.fetch_add(1, std::memory_order_relaxed))
      fn(item, sc);
  });
}

}  // namespace

void attention(const AttentionParams& p, ThreadPool& pool) {
  ARIADNE_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0, "heads must be a multiple of kv heads");
  ARIADNE_CHECK(p.head_dim > 0 && p.head_dim % block_size(p.kv_type) == 0,
                "head_dim must be a positive multiple of the KV type's block size");
  ARIADNE_CHECK(p.block_size > 0, "KV block size must be positive");
  if (p.n_tokens <= 0) return;
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t ld = (p.head_dim + tiles::kPad - 1) / tiles::kPad * tiles::kPad;
  const int64_t tile_tokens = std::min(p.n_tokens, std::max<int64_t>(1, kTargetRows / group));
  const Plan plan{p,
                  tile_kernels(active_isa()),
                  row_type(p.kv_type),
                  row_bytes(p.kv_type, p.head_dim),
                  group,
                  p.head_dim,
                  ld,
                  tile_tokens,
                  (p.n_tokens + tile_tokens - 1) / tile_tokens,
                  tile_tokens * group};

  ARIADNE_CHECK(p.argmax_last == nullptr || group <= kMaxGroup,
                "attention: argmax_last needs a GQA group <= 64");
  // Whether a unit holds the last token's rows, whose argmax is wanted.
  auto holds_last = [&](const Unit& u) { return p.argmax_last != nullptr && u.t0 + u.n_tok == p.n_tokens; };
  const int64_t n_units = p.n_kv_heads * plan.n_qtiles;
  int64_t max_segments = 0;
  for (int64_t g = 0; g < p.n_kv_heads; ++g) max_segments = std::max(max_segments, plan.n_segments(g));
  const size_t unit_state = state_floats(plan.max_rows, ld);
  const bool split =
      pool.size() > 1 && max_segments > 1 && n_units < kItemsPerThread * pool.size() &&
      static_cast<size_t>(n_units * max_segments) * unit_state * sizeof(float) <= kMaxPartialBytes;

  if (split) {
    // Split-K (decode): every (unit, segment) is an item writing its partial state; then each unit folds its
    // segments in order.
    std::vector<float> partial(static_cast<size_t>(n_units * max_segments) * unit_state);
    auto partial_state = [&](int64_t unit, int64_t seg) {
      return state_at(partial.data() + static_cast<size_t>(unit * max_segments + seg) * unit_state,
                      plan.max_rows);
    };
    std::vector<Best> partial_best(
        p.argmax_last != nullptr ? static_cast<size_t>(n_units * max_segments * group) : 0);
    auto best_of = [&](const Unit& u, int64_t unit, int64_t seg) -> Best* {
      if (!holds_last(u)) return nullptr;
      return partial_best.data() + (unit * max_segments + seg) * group;
    };
    for_each_item(pool, plan, n_units * max_segments, [&](int64_t item, Scratch& sc) {
      const int64_t unit = item / max_segments, seg = item % max_segments;
      const Unit u = plan.unit(unit % p.n_kv_heads, unit / p.n_kv_heads);
      if (seg >= plan.n_segments(u.g)) return;
      load_queries(plan, u, sc);
      run_segment(plan, u, seg, sc, partial_state(unit, seg), best_of(u, unit, seg));
    });
    for_each_item(pool, plan, n_units, [&](int64_t unit, Scratch& sc) {
      const Unit u = plan.unit(unit % p.n_kv_heads, unit / p.n_kv_heads);
      const State total = state_at(sc.total.data(), plan.max_rows);
      clear_state(total, u.n_rows);
      Best best[kMaxGroup];
      for (int64_t seg = 0; seg < plan.n_segments(u.g); ++seg) {
        merge_state(total, partial_state(unit, seg), u.n_rows, ld);
        if (const Best* b = best_of(u, unit, seg))
          for (int64_t h = 0; h < group; ++h)
            if (b[h].logit > best[h].logit) best[h] = b[h];
      }
      write_output(plan, u, total);
      if (holds_last(u)) write_argmax(plan, u, best);
    });
    return;
  }

  // Whole units (prefill): each item runs its segments in order, folding each into its total. The last
  // query tiles see the most keys under the causal mask, so they are handed out first.
  for_each_item(pool, plan, n_units, [&](int64_t item, Scratch& sc) {
    const Unit u = plan.unit(item % p.n_kv_heads, plan.n_qtiles - 1 - item / p.n_kv_heads);
    load_queries(plan, u, sc);
    const State total = state_at(sc.total.data(), plan.max_rows);
    const State segment = state_at(sc.segment.data(), plan.max_rows);
    clear_state(total, u.n_rows);
    Best best[kMaxGroup];  // segments in order: a strictly larger logit keeps the lowest index
    for (int64_t seg = 0; seg < plan.n_segments(u.g); ++seg) {
      run_segment(plan, u, seg, sc, segment, holds_last(u) ? best : nullptr);
      merge_state(total, segment, u.n_rows, ld);
    }
    write_output(plan, u, total);
    if (holds_last(u)) write_argmax(plan, u, best);
  });
}

}  // namespace ariadne::cpu
