// Token sampler for generation: turns one step's logits into the next token id.
//
// The chain and its order follow llama.cpp's default (common/sampling.cpp), restricted to the stages a
// user of `llama-cli` meets without extra flags:
//
//   logit bias -> penalties (repeat, frequency, presence) -> top-k -> top-p -> min-p -> temperature
//   -> draw from the softmax
//
// Decisions worth knowing (they differ from, or pin down, llama.cpp's behaviour):
//  - temperature <= 0 (negative included, as llama-cli clamps it to 0) means greedy: the argmax of the
//    biased and penalised logits, the lowest id on ties. The filters cannot change the argmax, so they
//    are skipped.
//  - top-p and min-p see probabilities at temperature 1, over the candidates top-k left (as llama.cpp:
//    temperature comes last in its default chain).
//  - The penalties count only the last repeat_last_n accepted tokens; repeat_last_n = 0 disables all
//    three penalties (as llama.cpp).
//  - Reproducibility: the generator is std::mt19937_64, whose output sequence the standard fixes, and the
//    uniform double is built from its raw 64 bits here (the std distributions are implementation-defined).
//    Candidates are always visited in an order fixed by (logit descending, id ascending) or by id, never
//    in an order a sort implementation chooses. The same seed, parameters and logits therefore give the
//    same tokens with any compiler; the only platform dependence left is the last ulp of std::exp, which
//    moves a draw only when the uniform lands within ~1e-16 of a bin edge.
//  - seed = kRandomSeed (the default, like llama.cpp's LLAMA_DEFAULT_SEED) draws a seed from
//    std::random_device at construction; Sampler::seed() tells which, so a run can be repeated.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace ariadne {

inline constexpr uint64_t kRandomSeed = UINT64_MAX;

struct SamplerParams {
  float temperature = 0.8f;        // --temp; <= 0: greedy
  int32_t top_k = 40;              // --top-k; 0: disabled
  float top_p = 0.95f;             // --top-p; in (0, 1], 1: disabled
  float min_p = 0.05f;             // --min-p; in [0, 1], 0: disabled
  float repeat_penalty = 1.0f;     // --repeat-penalty; > 0, 1: disabled
  int32_t repeat_last_n = 64;      // --repeat-last-n; >= 0, 0: all penalties disabled
  float presence_penalty = 0.0f;   // --presence-penalty; 0: disabled (negative encourages repeats)
  float frequency_penalty = 0.0f;  // --frequency-penalty; 0: disabled (negative encourages repeats)
  uint64_t seed = kRandomSeed;     // --seed
  // --logit-bias: (token, bias) added to the raw logit before anything else; -INFINITY bans the token
  // (e.g. EOS for --ignore-eos). A token listed twice gets both biases.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// Throws Error naming the CLI flag (--temp, --top-k, ...) of the first invalid value: NaN or infinite
// anywhere (a -INFINITY logit bias excepted), top_k < 0, top_p outside (0, 1], min_p outside [0, 1],
// repeat_penalty <= 0, repeat_last_n < 0. Token ids of logit_bias are checked by Sampler, which knows
// the vocabulary size.
void validate(const SamplerParams& params);

// One kept token and its final probability (after every filter and the temperature).
struct TokenProb {
  int32_t id;
  float p;
};

class Sampler {
 public:
  // Validates params (Error) and that every logit_bias token is in [0, n_vocab).
  Sampler(SamplerParams params, int32_t n_vocab);

  // logits: [n_vocab], raw model output for the next position. Throws Error when a logit is NaN or
  // +infinity, or when every token is banned (-infinity). Advances the generator once unless greedy;
  // does not record the token: call accept() with the token actually used.
  int32_t sample(std::span<const float> logits);

  // The distribution sample() would draw from: the surviving tokens with their probabilities, in draw
  // order (by logit descending, or by id when no filter needed sorting). Greedy gives one token, p = 1.
  // Does not touch the generator.
  std::vector<TokenProb> probabilities(std::span<const float> logits);

  // Records a token for the penalties: the prompt's tokens as well as the generated ones.
  void accept(int32_t token);

  // Applies the logit bias and the penalties in place, exactly as the first stages of sample() do.
  // logits: [n_vocab].
  void adjust_logits(std::span<float> logits) const;

  // Forgets the accepted tokens and reseeds the generator with seed(), so that the same calls again give
  // the same tokens.
  void reset();

  uint64_t seed() const { return seed_; }
  int32_t n_vocab() const { return n_vocab_; }
  const SamplerParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };

  bool greedy() const { return !(params_.temperature > 0.0f); }
  bool penalties_enabled() const;
  // Fills candidates_ with the tokens that survive the chain and probs_ with their final probabilities,
  // in draw order. Greedy leaves candidates_ = {argmax}, probs_ = {1}.
  void run_chain(std::span<const float> logits);
  // Makes candidates_[0, count) the `count` best candidates, in order; the first n_sorted_ already are.
  void sort_prefix(size_t count);
  float max_candidate_logit() const;
  // sum_i exp(logit_i - max_logit) over candidates_: the softmax normaliser at temperature 1.
  double softmax_mass(float max_logit) const;
  void apply_top_k();
  // max_logit and total: softmax_mass() over the candidates top-p normalises over, which may be more
  // than are left (see run_chain).
  void apply_top_p(float max_logit, double total);
  void apply_min_p();
  // Softmax of candidates_' logits / temperature into probs_.
  void compute_probs(float temperature);

  SamplerParams params_;
  int32_t n_vocab_;
  uint64_t seed_;
  std::mt19937_64 rng_;

  // Penalty window: the last repeat_last_n accepted tokens as a ring, and how often each token occurs in
  // it. counts_ is dense because lookups happen for every window entry on every step.
  std::vector<int32_t> window_;  // [min(accepted, repeat_last_n)], oldest at window_head_ once full
  size_t window_head_ = 0;
  std::vector<int32_t> counts_;  // [n_vocab]

  // Per-step scratch, kept to avoid reallocating 150K-entry buffers every token.
  std::vector<float> adjusted_;        // [n_vocab] logits after bias and penalties
  std::vector<Candidate> candidates_;  // [n_candidates]
  size_t n_sorted_ = 0;                // candidates_[0, n_sorted_) are the best, in order
  std::vector<double> probs_;          // [n_candidates], sums to 1
};

}  // namespace ariadne
