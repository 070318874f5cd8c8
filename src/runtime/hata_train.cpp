#include "runtime/hata_train.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/hamming.h"
#include "kernels/cpu/topk.h"

namespace ariadne {

namespace {

// Independent streams per (seed, purpose): splitmix64 of both.
uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Stream numbers (kept apart so no two purposes share one).
constexpr uint64_t kStreamPositions = 1ull << 40;
constexpr uint64_t kStreamEpoch = 2ull << 40;

// Uniform in [0, n) without modulo bias worth the name (Lemire's multiply-shift on 64 bits).
uint64_t uniform_below(std::mt19937_64& gen, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(gen()) * n) >> 64);
}

// Slices of the distinct queries a group's work is cut into: fixed, so the sums do not depend on threads.
constexpr int64_t kSlices = 16;

// tanh in float without a libm call per element (libm's tanhf was half of a small model's training time):
// tanh(y) = sign(y) (1 - 2 / (e^{2|y|} + 1)), with e^x = 2^n e^f (|f| <= ln2 / 2) and e^f by its Taylor
// series to f^7 (truncation below 3e-9 relative), 2^n built in the exponent bits; near 0, where that form
// cancels, the odd series y - y^3/3 + 2 y^5/15 - 17 y^7/315 instead. Absolute error about 1e-7.
float fast_tanh(float y) {
  const float a = std::min(std::abs(y), 9.0f);  // tanh(9) rounds to 1 in float
  const float x = 2.0f * a;
  const float n = std::floor(x * 1.44269504f + 0.5f);
  const float f = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float e = 1.0f / 5040;
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) e = e * f + c;
  const float scale = std::bit_cast<float>(static_cast<int32_t>(n + 127.0f) << 23);
  const float big = 1.0f - 2.0f / (e * scale + 1.0f);
  const float a2 = a * a;
  const float small = a * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315))));
  return std::copysign(a < 0.125f ? small : big, y);
}

float phi_of(float p, float sigma) {
  return fast_tanh(sigma * p / 2.0f);
}
double phi_of(double p, double sigma) {
  return std::tanh(sigma * p / 2.0);
}

// p = x W ([d] x [d][r]), then phi(p) = tanh(sigma p / 2) = 2 sigmoid(sigma p) - 1.
template <typename T>
void project_phi(const T* x, const T* w, int64_t d, int64_t r, T sigma, T* out) {
  std::fill(out, out + r, T(0));
  for (int64_t e = 0; e < d; ++e) {
    const T xe = x[e];
    const T* we = w + e * r;
    for (int64_t j = 0; j < r; ++j) out[j] += xe * we[j];
  }
  for (int64_t j = 0; j < r; ++j) out[j] = phi_of(out[j], sigma);
}

// g[d][r] += x (outer) delta
template <typename T>
void add_outer(const T* x, const T* delta, int64_t d, int64_t r, T* g) {
  for (int64_t e = 0; e < d; ++e) {
    const T xe = x[e];
    T* ge = g + e * r;
    for (int64_t j = 0; j < r; ++j) ge[j] += xe * delta[j];
  }
}

float dot(const float* a, const float* b, int64_t d) {
  float s = 0;
  for (int64_t e = 0; e < d; ++e) s += a[e] * b[e];
  return s;
}

}  // namespace

template <typename T>
HataLossParts hata_loss(const HataBatch<T>& b, const T* w, T* grad, ThreadPool& pool) {
  const int64_t d = b.d, r = b.r, n_kv = b.n_kv, G = b.group, H = n_kv * G, N = b.n, NQ = b.n_queries;
  ARIADNE_CHECK(d > 0 && r > 0 && n_kv > 0 && G > 0 && N > 0 && NQ > 0, "hata_loss: empty batch");
  // Items grouped by query (a counting sort): u depends only on the query, so its gradient is summed over
  // the query's items first (§2.3, "once per distinct query").
  std::vector<int64_t> start(static_cast<size_t>(NQ + 1), 0), order(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    ARIADNE_CHECK(b.query[i] >= 0 && b.query[i] < NQ, "hata_loss: item query out of range");
    ++start[static_cast<size_t>(b.query[i]) + 1];
  }
  for (int64_t q = 0; q < NQ; ++q) start[static_cast<size_t>(q + 1)] += start[static_cast<size_t>(q)];
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i) order[static_cast<size_t>(fill[static_cast<size_t>(b.query[i])]++)] = i;
  }

  // u[q][h] = phi(q_h W_g(h))
  std::vector<T> U(static_cast<size_t>(NQ * H * r));
  pool.parallel_for(NQ, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t h = 0; h < H; ++h)
        project_phi(b.q + (q * H + h) * d, w + (h / G) * d * r, d, r, b.sigma, U.data() + (q * H + h) * r);
  });

  const int64_t slices = std::min(kSlices, NQ);
  const int64_t units = n_kv * slices;  // unit = (group g, slice of queries)
  auto slice_begin = [&](int64_t s) { return NQ * s / slices; };

  // Pass A: L_sim and sum_i v per unit.
  std::vector<double> sim_part(static_cast<size_t>(units), 0.0);
  std::vector<T> vsum_part(static_cast<size_t>(units * r), T(0));
  pool.parallel_chunks(units, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> v(static_cast<size_t>(r));
    for (int64_t unit = u0; unit < u1; ++unit) {
      const int64_t g = unit / slices, s = unit % slices;
      const T* wg = w + g * d * r;
      T* vsum = vsum_part.data() + unit * r;
      double sim = 0;
      for (int64_t q = slice_begin(s); q < slice_begin(s + 1); ++q) {
        for (int64_t o = start[static_cast<size_t>(q)]; o < start[static_cast<size_t>(q + 1)]; ++o) {
          const int64_t i = order[static_cast<size_t>(o)];
          project_phi(b.k + (i * n_kv + g) * d, wg, d, r, b.sigma, v.data());
          for (int64_t j = 0; j < r; ++j) vsum[j] += v[static_cast<size_t>(j)];
          for (int64_t h = g * G; h < (g + 1) * G; ++h) {
            const T* u = U.data() + (q * H + h) * r;
            T dist = 0;
            for (int64_t j = 0; j < r; ++j)
              dist += (u[j] - v[static_cast<size_t>(j)]) * (u[j] - v[static_cast<size_t>(j)]);
            sim += static_cast<double>(b.s[i * H + h]) * static_cast<double>(dist);
          }
        }
      }
      sim_part[static_cast<size_t>(unit)] = sim;
    }
  });

  HataLossParts loss;
  for (const double s : sim_part) loss.sim += s;
  loss.sim *= static_cast<double>(b.eps) / static_cast<double>(N);

  // m_h = (1 / (N r)) (sum_q count_q u[q][h] + sum_i v[g(h)][i])
  const T inv_nr = T(1) / (static_cast<T>(N) * static_cast<T>(r));
  std::vector<T> m(static_cast<size_t>(H * r), T(0));
  for (int64_t h = 0; h < H; ++h) {
    T* mh = m.data() + h * r;
    const int64_t g = h / G;
    for (int64_t q = 0; q < NQ; ++q) {
      const T count = static_cast<T>(start[static_cast<size_t>(q + 1)] - start[static_cast<size_t>(q)]);
      const T* u = U.data() + (q * H + h) * r;
      for (int64_t j = 0; j < r; ++j) mh[j] += count * u[j];
    }
    for (int64_t s = 0; s < slices; ++s) {
      const T* vs = vsum_part.data() + (g * slices + s) * r;
      for (int64_t j = 0; j < r; ++j) mh[j] += vs[j];
    }
    double norm2 = 0;
    for (int64_t j = 0; j < r; ++j) {
      mh[j] *= inv_nr;
      norm2 += static_cast<double>(mh[j]) * static_cast<double>(mh[j]);
    }
    loss.bal += static_cast<double>(b.lambda) * norm2;
  }

  // A_g = W_g^T W_g - I; L_dec = eta ||stack_g A_g||_F (not squared).
  std::vector<T> A(static_cast<size_t>(n_kv * r * r));
  pool.parallel_for(n_kv, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const T* wg = w + g * d * r;
      T* ag = A.data() + g * r * r;
      std::fill(ag, ag + r * r, T(0));
      for (int64_t e = 0; e < d; ++e)
        for (int64_t a = 0; a < r; ++a) {
          const T wa = wg[e * r + a];
          for (int64_t c = 0; c < r; ++c) ag[a * r + c] += wa * wg[e * r + c];
        }
      for (int64_t a = 0; a < r; ++a) ag[a * r + a] -= T(1);
    }
  });
  double dec2 = 0;
  for (const T x : A) dec2 += static_cast<double>(x) * static_cast<double>(x);
  const double mnorm = std::sqrt(dec2);
  loss.dec = static_cast<double>(b.eta) * mnorm;
  if (grad == nullptr) return loss;

  // Pass B: gradients per unit.
  const T c_sim = T(2) * b.eps / static_cast<T>(N);  // dL_sim/du = c_sim s (u - v)
  const T c_bal = T(2) * b.lambda * inv_nr;          // dL_bal/du = dL_bal/dv = c_bal m_h
  std::vector<T> g_part(static_cast<size_t>(units * d * r), T(0));
  pool.parallel_chunks(units, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> v(static_cast<size_t>(r)), dv(static_cast<size_t>(r)), gu(static_cast<size_t>(G * r)),
        bal(static_cast<size_t>(r));
    for (int64_t unit = u0; unit < u1; ++unit) {
      const int64_t g = unit / slices, s = unit % slices;
      const T* wg = w + g * d * r;
      T* gw = g_part.data() + unit * d * r;
      // sum_{h in g} c_bal m_h: every item's v gets it
      std::fill(bal.begin(), bal.end(), T(0));
      for (int64_t h = g * G; h < (g + 1) * G; ++h)
        for (int64_t j = 0; j < r; ++j)
          bal[static_cast<size_t>(j)] += c_bal * m[static_cast<size_t>(h * r + j)];
      for (int64_t q = slice_begin(s); q < slice_begin(s + 1); ++q) {
        std::fill(gu.begin(), gu.end(), T(0));
        for (int64_t o = start[static_cast<size_t>(q)]; o < start[static_cast<size_t>(q + 1)]; ++o) {
          const int64_t i = order[static_cast<size_t>(o)];
          const T* k = b.k + (i * n_kv + g) * d;
          project_phi(k, wg, d, r, b.sigma, v.data());
          std::copy(bal.begin(), bal.end(), dv.begin());
          for (int64_t hh = 0; hh < G; ++hh) {
            const int64_t h = g * G + hh;
            const T* u = U.data() + (q * H + h) * r;
            const T cs = c_sim * b.s[i * H + h];
            T* guh = gu.data() + hh * r;
            for (int64_t j = 0; j < r; ++j) {
              const T diff = cs * (u[j] - v[static_cast<size_t>(j)]);
              guh[j] += diff;
              dv[static_cast<size_t>(j)] -= diff;
            }
          }
          // delta = dL/dv (.) sigma (1 - v^2) / 2
          for (int64_t j = 0; j < r; ++j)
            dv[static_cast<size_t>(j)] *=
                b.sigma * (T(1) - v[static_cast<size_t>(j)] * v[static_cast<size_t>(j)]) / T(2);
          add_outer(k, dv.data(), d, r, gw);
        }
        const T count = static_cast<T>(start[static_cast<size_t>(q + 1)] - start[static_cast<size_t>(q)]);
        for (int64_t hh = 0; hh < G; ++hh) {
          const int64_t h = g * G + hh;
          const T* u = U.data() + (q * H + h) * r;
          T* guh = gu.data() + hh * r;
          for (int64_t j = 0; j < r; ++j)
            guh[j] = (guh[j] + count * c_bal * m[static_cast<size_t>(h * r + j)]) * b.sigma *
                     (T(1) - u[j] * u[j]) / T(2);
          add_outer(b.q + (q * H + h) * d, guh, d, r, gw);
        }
      }
    }
  });

  // Reduce in slice order, then the decorrelation term (2 eta / ||M||) W_g A_g.
  const T c_dec = mnorm > 1e-12 ? static_cast<T>(2.0 * static_cast<double>(b.eta) / mnorm) : T(0);
  pool.parallel_for(n_kv, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      T* out = grad + g * d * r;
      std::fill(out, out + d * r, T(0));
      for (int64_t s = 0; s < slices; ++s) {
        const T* part = g_part.data() + (g * slices + s) * d * r;
        for (int64_t x = 0; x < d * r; ++x) out[x] += part[x];
      }
      if (c_dec == T(0)) continue;
      const T* wg = w + g * d * r;
      const T* ag = A.data() + g * r * r;
      for (int64_t e = 0; e < d; ++e)
        for (int64_t a = 0; a < r; ++a) {
          const T wa = c_dec * wg[e * r + a];
          for (int64_t c = 0; c < r; ++c) out[e * r + c] += wa * ag[a * r + c];
        }
    }
  });
  return loss;
}

template HataLossParts hata_loss<float>(const HataBatch<float>&, const float*, float*, ThreadPool&);
template HataLossParts hata_loss<double>(const HataBatch<double>&, const double*, double*, ThreadPool&);

HataCalibrationData collect_hata_data(Session& session, const std::vector<std::vector<int32_t>>& docs,
                                      std::vector<int32_t> layers, int64_t m, uint64_t seed,
                                      const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig& c = session.model().config();
  if (docs.empty()) fail("calibration needs at least one document");
  HataCalibrationData out;
  out.n_doc = static_cast<int64_t>(docs.size());
  out.doc_len = static_cast<int64_t>(docs[0].size());
  out.n_head = c.n_head;
  out.n_kv = c.n_head_kv;
  out.head_dim = c.head_dim;
  if (out.doc_len < 2) fail("calibration documents need at least 2 tokens, got {}", out.doc_len);
  for (const auto& doc : docs)
    ARIADNE_CHECK(static_cast<int64_t>(doc.size()) == out.doc_len,
                  "calibration documents must have one length");
  if (out.doc_len > session.n_ctx())
    fail("calibration documents of {} tokens do not fit the session's context of {}", out.doc_len,
         session.n_ctx());
  std::sort(layers.begin(), layers.end());
  out.layers = layers;
  const int64_t lo = out.doc_len / 2, span = out.doc_len - lo;
  out.m = std::min(m, span);
  if (out.m < 1) fail("calibration needs at least one query position per document (m = {})", m);

  // m distinct positions per document from U[doc_len/2, doc_len-1] (a partial Fisher-Yates shuffle).
  out.t.resize(static_cast<size_t>(out.n_doc * out.m));
  for (int64_t doc = 0; doc < out.n_doc; ++doc) {
    std::mt19937_64 gen(stream_seed(seed, kStreamPositions + static_cast<uint64_t>(doc)));
    std::vector<int32_t> all(static_cast<size_t>(span));
    for (int64_t i = 0; i < span; ++i) all[static_cast<size_t>(i)] = static_cast<int32_t>(lo + i);
    for (int64_t i = 0; i < out.m; ++i)
      std::swap(all[static_cast<size_t>(i)],
                all[static_cast<size_t>(
                    i + static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(span - i))))]);
    std::sort(all.begin(), all.begin() + out.m);
    std::copy_n(all.begin(), out.m, out.t.begin() + doc * out.m);
  }

  const int64_t d = c.head_dim, H = c.n_head, n_kv = c.n_head_kv;
  std::vector<int32_t> slot(static_cast<size_t>(c.n_layer), -1);
  out.data.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= c.n_layer)
      fail("layer {} is outside the model's {} layers", layers[i], c.n_layer);
    slot[static_cast<size_t>(layers[i])] = static_cast<int32_t>(i);
    out.data[i].keys.resize(static_cast<size_t>(out.n_doc * out.doc_len * n_kv * d));
    out.data[i].q.resize(static_cast<size_t>(out.n_doc * out.m * H * d));
  }

  // The model reports each layer's post-RoPE queries and keys chunk by chunk (blocks::attention's
  // "q_rope" / "k_rope"); rows count up from position 0 of the document.
  int64_t doc = 0;
  std::vector<int64_t> q_rows(static_cast<size_t>(c.n_layer)), k_rows(static_cast<size_t>(c.n_layer));
  ops::Context& ctx = session.context();
  const ops::Observer saved = ctx.observer;
  ctx.observer = [&](const char* name, int layer, const float* data, int64_t rows, int64_t cols) {
    if (layer < 0 || layer >= c.n_layer || slot[static_cast<size_t>(layer)] < 0) return;
    HataCalibrationData::Layer& L = out.data[static_cast<size_t>(slot[static_cast<size_t>(layer)])];
    const std::string_view what(name);
    if (what == "k_rope") {
      int64_t& row0 = k_rows[static_cast<size_t>(layer)];
      uint16_t* dst = L.keys.data() + (doc * out.doc_len + row0) * n_kv * d;
      for (int64_t x = 0; x < rows * n_kv * d; ++x) dst[x] = f32_to_bf16(data[x]);
      row0 += rows;
    } else if (what == "q_rope") {
      int64_t& row0 = q_rows[static_cast<size_t>(layer)];
      const int32_t* t = out.t.data() + doc * out.m;
      for (int64_t j = 0; j < out.m; ++j)
        if (t[j] >= row0 && t[j] < row0 + rows)
          std::copy_n(data + (t[j] - row0) * H * d, H * d, L.q.data() + ((doc * out.m + j) * H) * d);
      row0 += rows;
    }
  };
  try {
    for (doc = 0; doc < out.n_doc; ++doc) {
      std::fill(q_rows.begin(), q_rows.end(), 0);
      std::fill(k_rows.begin(), k_rows.end(), 0);
      session.clear();
      session.eval(docs[static_cast<size_t>(doc)], false);
      if (progress) progress(doc + 1, out.n_doc);
    }
  } catch (...) {
    ctx.observer = saved;
    throw;
  }
  ctx.observer = saved;
  session.clear();
  return out;
}

namespace {

// The labels of one layer: for every (document, query, head) the top P = floor(0.1 (t + 1)) logits,
// descending (§2.3 step 4).
struct Labels {
  std::vector<std::vector<float>> positives;  // [n_doc * m * H]

  // s for logit z of query (doc, j) and head h: 20 - 19 rho / (P - 1) for a positive of rank rho, else -1.
  // Ties share the rank of the first of them.
  float label(int64_t index, float z) const {
    const std::vector<float>& p = positives[static_cast<size_t>(index)];
    if (p.empty() || z < p.back()) return -1.0f;
    if (p.size() == 1) return 20.0f;
    // rank = how many positives are strictly larger (p is descending)
    const auto rho = std::lower_bound(p.begin(), p.end(), z, std::greater<float>()) - p.begin();
    return 20.0f - 19.0f * static_cast<float>(rho) / static_cast<float>(p.size() - 1);
  }
};

void key_row(const HataCalibrationData& data, const HataCalibrationData::Layer& L, int64_t doc, int64_t i,
             int64_t g, float* out) {
  const int64_t d = data.head_dim;
  const uint16_t* src = L.keys.data() + ((doc * data.doc_len + i) * data.n_kv + g) * d;
  for (int64_t e = 0; e < d; ++e) out[e] = bf16_to_f32(src[e]);
}

Labels make_labels(const HataCalibrationData& data, const HataCalibrationData::Layer& L, ThreadPool& pool) {
  const int64_t H = data.n_head, d = data.head_dim, G = H / data.n_kv;
  Labels labels;
  labels.positives.resize(static_cast<size_t>(data.n_doc * data.m * H));
  pool.parallel_chunks(data.n_doc * data.m, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> k(static_cast<size_t>(d)), z;
    for (int64_t dq = b0; dq < b1; ++dq) {
      const int64_t doc = dq / data.m;
      const int64_t t = data.t[static_cast<size_t>(dq)];
      const int64_t P = (t + 1) / 10;  // floor(0.1 (t + 1))
      for (int64_t h = 0; h < H; ++h) {
        z.resize(static_cast<size_t>(t + 1));
        const float* q = L.q.data() + (dq * H + h) * d;
        for (int64_t i = 0; i <= t; ++i) {
          key_row(data, L, doc, i, h / G, k.data());
          z[static_cast<size_t>(i)] = dot(q, k.data(), d);
        }
        std::partial_sort(z.begin(), z.begin() + P, z.end(), std::greater<float>());
        labels.positives[static_cast<size_t>(dq * H + h)].assign(z.begin(), z.begin() + P);
      }
    }
  });
  return labels;
}

}  // namespace

HataWeights train_hata(const ModelSource& source, const HataCalibrationData& data, const HataTrainOptions& o,
                       ThreadPool& pool, const std::function<void(const HataTrainProgress&)>& on_step) {
  const auto t_start = std::chrono::steady_clock::now();
  const ModelConfig& c = source.config;
  ARIADNE_CHECK(data.n_head == c.n_head && data.n_kv == c.n_head_kv && data.head_dim == c.head_dim,
                "calibration data of another model");
  const HataTrainInfo& hp = o.hyper;
  if (hp.items < 1 || hp.epochs < 1 || hp.iters < 1)
    fail("calibration: items, epochs and iterations must be >= 1 (got {}, {}, {})", hp.items, hp.epochs,
         hp.iters);
  HataWeights weights = random_hata_weights(c, data.layers, o.rbits, hp.seed);
  weights.score = o.score;
  weights.fingerprint = hata_fingerprint(source);
  weights.train = hp;
  weights.train.n_doc = data.n_doc;
  weights.train.doc_len = data.doc_len;
  weights.train.m = data.m;

  const int64_t H = c.n_head, n_kv = c.n_head_kv, d = c.head_dim, r = o.rbits, N = hp.items;
  const int64_t NQ = data.n_doc * data.m;
  // The item pool: triples (doc, t, i <= t); prefix[x] = items before query x.
  std::vector<int64_t> prefix(static_cast<size_t>(NQ + 1), 0);
  for (int64_t x = 0; x < NQ; ++x)
    prefix[static_cast<size_t>(x + 1)] = prefix[static_cast<size_t>(x)] + data.t[static_cast<size_t>(x)] + 1;

  std::vector<float> keys(static_cast<size_t>(N * n_kv * d)), labels(static_cast<size_t>(N * H));
  std::vector<int32_t> query(static_cast<size_t>(N)), key_index(static_cast<size_t>(N));
  std::vector<float> grad(static_cast<size_t>(n_kv * d * r)), momentum(grad.size());
  for (size_t li = 0; li < data.layers.size(); ++li) {
    const int32_t layer = data.layers[li];
    const HataCalibrationData::Layer& L = data.data[li];
    const Labels lab = make_labels(data, L, pool);
    float* w = weights.layer(layer);
    HataBatch<float> batch;
    batch.d = d;
    batch.r = r;
    batch.n_kv = n_kv;
    batch.group = H / n_kv;
    batch.n_queries = NQ;
    batch.q = L.q.data();
    batch.n = N;
    batch.k = keys.data();
    batch.query = query.data();
    batch.s = labels.data();
    batch.sigma = static_cast<float>(hp.sigma);
    batch.eps = static_cast<float>(hp.eps);
    batch.lambda = static_cast<float>(hp.lambda);
    batch.eta = static_cast<float>(hp.eta);
    int64_t step = 0;
    for (int64_t epoch = 0; epoch < hp.epochs; ++epoch) {
      // Draw N items uniformly from the pool (with replacement), then their keys and labels.
      std::mt19937_64 gen(stream_seed(
          hp.seed, kStreamEpoch + static_cast<uint64_t>(layer) * 1000003u + static_cast<uint64_t>(epoch)));
      for (int64_t i = 0; i < N; ++i) {
        const auto x = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(prefix.back())));
        const int64_t qx = std::upper_bound(prefix.begin(), prefix.end(), x) - prefix.begin() - 1;
        query[static_cast<size_t>(i)] = static_cast<int32_t>(qx);
        key_index[static_cast<size_t>(i)] = static_cast<int32_t>(x - prefix[static_cast<size_t>(qx)]);
      }
      pool.parallel_for(N, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t qx = query[static_cast<size_t>(i)];
          const int64_t doc = qx / data.m;
          for (int64_t g = 0; g < n_kv; ++g)
            key_row(data, L, doc, key_index[static_cast<size_t>(i)], g, keys.data() + (i * n_kv + g) * d);
          for (int64_t h = 0; h < H; ++h) {
            const float z =
                dot(L.q.data() + (qx * H + h) * d, keys.data() + (i * n_kv + h / batch.group) * d, d);
            labels[static_cast<size_t>(i * H + h)] = lab.label(qx * H + h, z);
          }
        }
      });
      for (int64_t it = 0; it < hp.iters; ++it) {
        const HataLossParts loss = hata_loss(batch, w, grad.data(), pool);
        // SGD with momentum and weight decay, PyTorch's semantics (§2.3 optimizer).
        const auto wd = static_cast<float>(hp.weight_decay), mu = static_cast<float>(hp.momentum),
                   lr = static_cast<float>(hp.lr);
        for (size_t x = 0; x < grad.size(); ++x) {
          const float gx = grad[x] + wd * w[x];
          momentum[x] = step == 0 ? gx : mu * momentum[x] + gx;
          w[x] -= lr * momentum[x];
        }
        ++step;
        if (on_step) on_step({layer, step, hp.epochs * hp.iters, loss});
      }
    }
  }
  weights.train.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return weights;
}

double hata_recall(const HataCalibrationData& data, const HataWeights& weights, HataScore score,
                   double fraction, ThreadPool& pool) {
  const int64_t H = data.n_head, n_kv = data.n_kv, d = data.head_dim, G = H / n_kv;
  const int64_t r = weights.rbits, words = r / 64;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  double sum = 0;
  int64_t count = 0;
  for (size_t li = 0; li < data.layers.size(); ++li) {
    const float* w = weights.layer(data.layers[li]);
    if (w == nullptr) continue;
    const HataCalibrationData::Layer& L = data.data[li];
    const int64_t units = data.n_doc * n_kv;  // (doc, g): its keys are encoded once for every query
    std::vector<double> part(static_cast<size_t>(units), 0.0);
    pool.parallel_chunks(units, 1, [&](int64_t u0, int64_t u1) {
      std::vector<float> keys(static_cast<size_t>(data.doc_len * d)), proj(static_cast<size_t>(r)), norm,
          oracle, fs;
      std::vector<uint32_t> scratch;
      std::vector<uint64_t> kc(static_cast<size_t>(data.doc_len * words)), qc(static_cast<size_t>(G * words));
      std::vector<uint32_t> ham, hist;
      std::vector<int32_t> exact, hashed;
      for (int64_t unit = u0; unit < u1; ++unit) {
        const int64_t doc = unit / n_kv, g = unit % n_kv;
        for (int64_t i = 0; i < data.doc_len; ++i) key_row(data, L, doc, i, g, keys.data() + i * d);
        cpu::hash_encode(keys.data(), data.doc_len, d, w + g * d * r, r, kc.data(), proj.data());
        norm.resize(static_cast<size_t>(data.doc_len));
        for (int64_t i = 0; i < data.doc_len; ++i)
          norm[static_cast<size_t>(i)] = std::sqrt(dot(keys.data() + i * d, keys.data() + i * d, d));
        for (int64_t j = 0; j < data.m; ++j) {
          const int64_t t = data.t[static_cast<size_t>(doc * data.m + j)], n = t + 1;
          const int64_t k =
              std::clamp<int64_t>(static_cast<int64_t>(std::ceil(fraction * static_cast<double>(n))), 1, n);
          const float* q = L.q.data() + ((doc * data.m + j) * H + g * G) * d;
          // Oracle: sum over the group of each head's softmax.
          oracle.assign(static_cast<size_t>(n), 0.0f);
          std::vector<float> z(static_cast<size_t>(n));
          for (int64_t h = 0; h < G; ++h) {
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t i = 0; i < n; ++i)
              mx = std::max(mx, z[static_cast<size_t>(i)] = dot(q + h * d, keys.data() + i * d, d) * scale);
            double s = 0;
            for (int64_t i = 0; i < n; ++i)
              s += std::exp(static_cast<double>(z[static_cast<size_t>(i)] - mx));
            for (int64_t i = 0; i < n; ++i)
              oracle[static_cast<size_t>(i)] +=
                  static_cast<float>(std::exp(static_cast<double>(z[static_cast<size_t>(i)] - mx)) / s);
          }
          exact.resize(static_cast<size_t>(n));
          exact.resize(
              static_cast<size_t>(cpu::topk_largest_f32(oracle.data(), n, 0, 0, k, exact.data(), scratch)));
          for (int64_t h = 0; h < G; ++h)
            cpu::hash_encode(q + h * d, 1, d, w + g * d * r, r, qc.data() + h * words, proj.data());
          ham.resize(static_cast<size_t>(n));
          cpu::hamming_group(qc.data(), G, kc.data(), n, words, ham.data());
          hashed.resize(static_cast<size_t>(n));
          int64_t got = 0;
          if (score == HataScore::Hamming) {
            got = cpu::topk_smallest_u32(ham.data(), n, static_cast<uint32_t>(G * r), 0, 0, k, hashed.data(),
                                         hist);
          } else {
            fs.resize(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i)
              fs[static_cast<size_t>(i)] =
                  (static_cast<float>(G) -
                   2.0f * static_cast<float>(ham[static_cast<size_t>(i)]) / static_cast<float>(r)) *
                  norm[static_cast<size_t>(i)];
            got = cpu::topk_largest_f32(fs.data(), n, 0, 0, k, hashed.data(), scratch);
          }
          hashed.resize(static_cast<size_t>(got));
          std::vector<int32_t> both;
          std::set_intersection(exact.begin(), exact.end(), hashed.begin(), hashed.end(),
                                std::back_inserter(both));
          part[static_cast<size_t>(unit)] += static_cast<double>(both.size()) / static_cast<double>(k);
        }
      }
    });
    for (const double p : part) sum += p;
    count += units * data.m;
  }
  return count == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / static_cast<double>(count);
}

HataCalibration calibrate_hata(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                               const HataCalibrateOptions& o,
                               const std::function<void(const HataCalibrateProgress&)>& on_progress) {
  const ModelConfig& c = source->config;
  HataCalibration out;
  const int64_t trained = c.n_ctx_train > 0 ? c.n_ctx_train : 32768;
  const int64_t doc_len = o.doc_len > 0 ? o.doc_len : std::min<int64_t>(trained, 32768);
  if (doc_len < 16) fail("--doc-len: expected at least 16 tokens per document, got {}", doc_len);
  if (o.n_doc < 1) fail("--docs: expected at least 1 document, got {}", o.n_doc);
  if (o.heldout_docs < 0) fail("held-out documents: expected >= 0, got {}", o.heldout_docs);
  const int64_t available = static_cast<int64_t>(tokens.size()) / doc_len;
  if (available < o.heldout_docs + 1)
    fail(
        "the calibration text has {} tokens: {} documents of {} tokens need {} (give more text or lower "
        "--doc-len)",
        tokens.size(), o.heldout_docs + 1, doc_len, (o.heldout_docs + 1) * doc_len);
  out.n_doc = std::min(o.n_doc, available - o.heldout_docs);
  out.doc_len = doc_len;
  auto document = [&](int64_t i) {
    std::vector<int32_t> d(tokens.begin() + i * doc_len, tokens.begin() + (i + 1) * doc_len);
    if (o.bos_id >= 0) d[0] = o.bos_id;
    return d;
  };
  std::vector<std::vector<int32_t>> docs, heldout;
  for (int64_t i = 0; i < out.n_doc; ++i) docs.push_back(document(i));
  for (int64_t i = 0; i < o.heldout_docs; ++i) heldout.push_back(document(out.n_doc + i));

  const std::vector<int32_t> layers = hata_hashed_layers(c.n_layer, o.dense_layers);
  if (layers.empty()) fail("every layer is dense: nothing to calibrate (--dense-layers)");
  // Memory per layer: keys in bf16 and queries in f32 for training and held-out documents, plus the labels'
  // positives (a tenth of each query's keys).
  const auto docs_all = static_cast<uint64_t>(out.n_doc + o.heldout_docs);
  const uint64_t per_layer =
      docs_all * static_cast<uint64_t>(doc_len * c.n_head_kv * c.head_dim) * 2 +
      static_cast<uint64_t>(out.n_doc * o.train.hyper.m + o.heldout_docs * o.heldout_m) *
          static_cast<uint64_t>(c.n_head * c.head_dim) * 4 +
      static_cast<uint64_t>(out.n_doc * o.train.hyper.m * c.n_head * doc_len) * 4 / 10;
  uint64_t limit = o.memory_limit;
  if (limit == 0) limit = available_memory_bytes() / 2;
  const int64_t per_group =
      limit == 0 ? static_cast<int64_t>(layers.size())
                 : std::clamp<int64_t>(static_cast<int64_t>(limit / std::max<uint64_t>(per_layer, 1)), 1,
                                       static_cast<int64_t>(layers.size()));
  out.groups = (static_cast<int64_t>(layers.size()) + per_group - 1) / per_group;

  SessionOptions so;
  so.n_ctx = doc_len;
  so.n_threads = o.n_threads;
  so.n_batch = o.n_batch;
  Session session(source, so);
  ThreadPool pool(o.n_threads);
  HataWeights all;
  double recall_learned = 0, recall_random = 0;
  int64_t recall_layers = 0;
  const auto t_start = std::chrono::steady_clock::now();
  for (int64_t gi = 0; gi < out.groups; ++gi) {
    const std::vector<int32_t> group(
        layers.begin() + gi * per_group,
        layers.begin() + std::min<int64_t>(static_cast<int64_t>(layers.size()), (gi + 1) * per_group));
    auto t0 = std::chrono::steady_clock::now();
    HataCalibrateProgress p;
    p.group = gi;
    p.groups = out.groups;
    p.total = static_cast<int64_t>(docs.size() + heldout.size());
    const HataCalibrationData data = collect_hata_data(session, docs, group, o.train.hyper.m,
                                                       o.train.hyper.seed, [&](int64_t done, int64_t) {
                                                         p.done = done;
                                                         if (on_progress) on_progress(p);
                                                       });
    HataCalibrationData held;
    if (!heldout.empty())
      held = collect_hata_data(session, heldout, group, o.heldout_m, o.train.hyper.seed + 1,
                               [&](int64_t done, int64_t) {
                                 p.done = static_cast<int64_t>(docs.size()) + done;
                                 if (on_progress) on_progress(p);
                               });
    out.collect_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    t0 = std::chrono::steady_clock::now();
    p.phase = HataCalibrateProgress::Phase::Train;
    p.total = static_cast<int64_t>(group.size()) * o.train.hyper.epochs * o.train.hyper.iters;
    int64_t done = 0;
    std::vector<std::vector<HataLossParts>> curve(group.size());
    HataWeights w = train_hata(*source, data, o.train, pool, [&](const HataTrainProgress& s) {
      const size_t li = static_cast<size_t>(std::find(group.begin(), group.end(), s.layer) - group.begin());
      curve[li].push_back(s.loss);
      p.done = ++done;
      p.layer = s.layer;
      p.loss = s.loss;
      if (on_progress) on_progress(p);
    });
    out.train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    if (!heldout.empty()) {
      p.phase = HataCalibrateProgress::Phase::Recall;
      p.done = 0;
      p.total = 1;
      if (on_progress) on_progress(p);
      const HataWeights rnd = random_hata_weights(c, group, o.train.rbits, o.train.hyper.seed);
      const auto n = static_cast<double>(group.size());
      recall_learned += n * hata_recall(held, w, o.train.score, o.recall_fraction, pool);
      recall_random += n * hata_recall(held, rnd, o.train.score, o.recall_fraction, pool);
      recall_layers += static_cast<int64_t>(group.size());
    }
    if (gi == 0) {
      all = std::move(w);
    } else {
      all.layers.insert(all.layers.end(), w.layers.begin(), w.layers.end());
      for (auto& v : w.w) all.w.push_back(std::move(v));
    }
    for (auto& cv : curve) out.curve.push_back(std::move(cv));
  }
  all.train.n_doc = out.n_doc;
  all.train.doc_len = doc_len;
  all.train.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  out.weights = std::move(all);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.recall_learned = recall_layers > 0 ? recall_learned / static_cast<double>(recall_layers) : nan;
  out.recall_random = recall_layers > 0 ? recall_random / static_cast<double>(recall_layers) : nan;
  return out;
}

}  // namespace ariadne
