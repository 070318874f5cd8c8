// XL3M (../shared/specs/xl3m.md): questions over inputs longer than the model's trained window C, with the
// model unchanged. The input is P (an instruction header shared by every sub-context, BOS included) +
// Body (the content) + Xt (the question, ending where the answer starts). Body is cut into overlapping
// segments of S tokens; each sub-context [P, segment, Xt] is scored by the model's certainty about what
// follows (the entropy of its next-token distribution by default); the most certain segments that fit the
// budget C - gen - |P| - |Xt| are spliced back in their original order, overlaps merged, and the answer is
// generated from that key context like from any prompt.
//
// Decisions worth knowing:
//  - Sub-contexts run one after another on one Session: P is evaluated once, and each segment continues
//    from it after Session::truncate(|P|) drops the previous segment's entries. So P's KV is shared without
//    copying, positions restart after P for every segment, and no segment sees another. The engine's
//    sessions hold one sequence, so the spec's "batch" (sub-contexts per forward pass) is always 1 here;
//    each sub-context is fed in the session's n_batch-token chunks, and only the logit rows a score needs
//    are computed (the last one, or |Xt| + 1 in chunks of bounded size).
//  - Memory: the KV cache of one sub-context (at most C tokens), one forward call's activations and a
//    bounded block of logit rows, whatever the input length; per input token only its id (4 bytes) and per
//    segment its span and score (estimate_xl3m_memory).
//  - Scores are computed in double from full-vocabulary logits at temperature 1; lower means more relevant.
//    NaN scores rank last.
//  - Splicing works on token ids (never detokenised and re-tokenised); the separator goes only between
//    spans that are not contiguous in Body.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/bench.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace ariadne {

// Certainty scores (xl3m.md §2).
enum class Xl3mScore {
  LastEntropy,          // entropy of the next-token distribution after the last token of Xt (1 logit row)
  MeanQuestionEntropy,  // mean entropy of the |Xt| + 1 rows that predict each token of Xt and the answer
  QuestionNll,          // mean negative log-likelihood of the Xt tokens given P and the segment
  // [ours] LastEntropy and MeanQuestionEntropy interleaved: the score of a segment is its place in the
  // sequence that takes, in turn, the most certain segment not yet taken by LastEntropy and the most
  // certain not yet taken by MeanQuestionEntropy, so selection takes the top picks of both. Both come from
  // the rows MeanQuestionEntropy evaluates (its last row is LastEntropy's).
  Fused,
};

// "last-entropy", "mean-q-entropy", "q-nll", "fused".
std::string_view xl3m_score_name(Xl3mScore score);
// Those names, or the spec's LAST_ENTROPY, MEAN_Q_ENTROPY, Q_NLL (any case, '-' or '_').
std::optional<Xl3mScore> xl3m_score_from_name(std::string_view name);

struct Xl3mOptions {
  int64_t window = 0;    // C: tokens the key context may hold; 0: the model's trained context
  int64_t n_gen = 512;   // tokens reserved for the answer
  int64_t segment = 0;   // S: content tokens per segment; 0: min(512, C / 8)
  int64_t overlap = -1;  // O: tokens consecutive segments share; -1: S / 8
  int64_t top_k = 0;     // most segments chosen; 0: as many as the budget holds
  Xl3mScore score = Xl3mScore::LastEntropy;
  bool snap = true;                // later segment starts move to the nearest sentence start within ±O/2
  std::vector<int32_t> separator;  // ids between spans that are not contiguous in Body
  int64_t question_tokens = 64;    // question taken from the input's tail when none is given
  int64_t max_question = 512;      // most tokens that tail question may grow to when snapped
  // [ours] Where the answer's content starts (spec pitfall "formatting tails"): when the model, given P and
  // Xt alone, puts at least lead_probability on a token of blank_tokens (sorted ids of whitespace-only
  // tokens: xl3m_blank_token_ids) as the next one, that token is appended to Xt for scoring, up to max_lead
  // of them. A tokenizer that splits " 37846" into " " and digits otherwise has every score read at a
  // space the model predicts with certainty whatever the segment says. The key context keeps Xt as given.
  // Empty blank_tokens or max_lead 0: Xt is scored as given (the spec's rule).
  std::vector<int32_t> blank_tokens;
  int64_t max_lead = 2;
  double lead_probability = 0.5;
};

// Tokens [begin, end) of Body.
struct TokenSpan {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const TokenSpan&) const = default;
};

// The sizes of one request, resolved and checked (plan_xl3m).
struct Xl3mPlan {
  int64_t window = 0;  // C
  int64_t n_gen = 0;
  int64_t segment = 0;  // S (n_body when Body is shorter)
  int64_t overlap = 0;  // O
  int64_t n_prefix = 0;
  int64_t n_body = 0;
  int64_t n_question = 0;
  int64_t n_separator = 0;
  int64_t budget = 0;   // C - gen - |P| - |Xt|: Body tokens plus separators the key context may hold
  bool bypass = false;  // |P| + |Body| + |Xt| + gen <= C: the input is fed whole, nothing is scored
  int64_t n_segments = 0;
  int64_t sub_context() const { return n_prefix + segment + n_question; }  // tokens of one sub-context
};

// Resolves the defaults against the model's trained context and checks the invariants: a sub-context
// |P| + S + |Xt| fits in C and the budget holds at least one segment (else Error naming the option to
// change). A bypassed request is not checked further.
Xl3mPlan plan_xl3m(int64_t n_ctx_train, int64_t n_prefix, int64_t n_body, int64_t n_question,
                   const Xl3mOptions& options);

// Where sentences and lines start, from each token's text (computed once per vocabulary).
class SentenceBoundaries {
 public:
  explicit SentenceBoundaries(const Tokenizer& tokenizer);
  // True when a sentence or line starts at ids[i] (i >= 1): the previous token ends a line, or it ends a
  // sentence ('.', '!' or '?', maybe followed by closing quotes or brackets) and whitespace follows it.
  bool starts_sentence(std::span<const int32_t> ids, int64_t i) const;

 private:
  std::vector<uint8_t> flags_;  // [n_tokens] per id
};

// Segments of Body (spec §2 step 1): S tokens each, nominal starts j·(S − O) with the first at 0; when
// is_start is given, each later start moves to the nearest index within ±O/2 for which it is true (the
// earlier one on a tie), staying between its neighbours; the last segment is [n_body − S, n_body). Their
// union is Body; consecutive overlaps are exactly O without snapping and within [0, 2·O] with it. Body
// shorter than S gives one segment.
std::vector<TokenSpan> xl3m_segments(int64_t n_body, int64_t segment, int64_t overlap,
                                     const std::function<bool(int64_t)>& is_start = nullptr);

// The start of the question taken from ids[begin, end) when the caller gives none: the last
// question_tokens tokens, moved back to the nearest sentence or line start within max_question tokens (none
// found: kept), with tokens that are only whitespace dropped from the end first (xl3m.md §6: the answer
// must start where Xt ends). Returns {question begin, question end}.
TokenSpan xl3m_tail_question(std::span<const int32_t> ids, int64_t begin, const Xl3mOptions& options,
                             const Tokenizer* tokenizer, const SentenceBoundaries* boundaries);

// The separator's ids: one token whose text is exactly `text` when the vocabulary has it (a "\n" byte
// token), else the text's encoding without BOS.
std::vector<int32_t> xl3m_separator_ids(const Tokenizer& tokenizer, std::string_view text);

// Sorted ids of the tokens whose text is non-empty and only spaces, tabs, newlines or carriage returns.
std::vector<int32_t> xl3m_blank_token_ids(const Tokenizer& tokenizer);

// Entropy of softmax(logits), H = log Z − Σ p_v·z_v, in double (shifted by the maximum for accuracy).
double entropy_from_logits(std::span<const float> logits);
// −log softmax(logits)[target], in double.
double nll_from_logits(std::span<const float> logits, int32_t target);

struct Xl3mInput {
  std::span<const int32_t> prefix;    // P: BOS, template, instruction header
  std::span<const int32_t> body;      // the content
  std::span<const int32_t> question;  // Xt, ending where the answer starts
};

// The tokens appended to Xt for scoring (Xl3mOptions::blank_tokens): the model's greedy continuation of
// P + Xt while it is a blank token of probability >= lead_probability, at most max_lead tokens. Evaluates
// on session (cleared before and after); empty when blank_tokens is empty or max_lead is 0.
std::vector<int32_t> xl3m_answer_lead(Session& session, const Xl3mInput& input, const Xl3mOptions& options);

// Scores each segment's sub-context [P, body[segment], Xt] on session (spec §2 step 2); lower is more
// certain. The session is cleared first and left holding P. progress(done, total) after each segment.
// Fused scores are places 0, 1, ... (xl3m_fuse_scores of the two entropies).
std::vector<double> score_xl3m_segments(Session& session, const Xl3mInput& input,
                                        std::span<const TokenSpan> segments, Xl3mScore score,
                                        const std::function<void(int64_t, int64_t)>& progress = nullptr);

// Segment indices from the most certain to the least: ascending score, ties to the earlier segment, NaN
// last (the order selection takes them in; position r holds the segment of rank r).
std::vector<size_t> xl3m_rank_order(std::span<const double> scores);

// The Fused score from two score lists of the same segments: places 0, 1, 2, ... in the order that takes
// a's most certain segment not placed yet, then b's, then a's, ... (orders from xl3m_rank_order).
std::vector<double> xl3m_fuse_scores(std::span<const double> a, std::span<const double> b);

struct Xl3mSelection {
  std::vector<int64_t> chosen;   // segment indices in the order they were taken (most certain first)
  std::vector<TokenSpan> spans;  // their union, overlapping or touching segments merged, by start
  int64_t n_tokens = 0;          // tokens of spans plus the separators between them
};

// Budget-greedy selection (spec §2 step 3): segments in order of ascending score (ties: the earlier
// segment) are added while the merged union plus separators fits the budget; one that does not fit is
// skipped (a later one overlapping the chosen set may still fit); at most top_k when top_k > 0.
Xl3mSelection select_xl3m_segments(std::span<const TokenSpan> segments, std::span<const double> scores,
                                   int64_t budget, int64_t top_k, int64_t n_separator);

// P + the spans of Body in order, the separator between spans that are not contiguous + Xt (step 4).
std::vector<int32_t> splice_xl3m(const Xl3mInput& input, std::span<const TokenSpan> spans,
                                 std::span<const int32_t> separator);

struct Xl3mResult {
  Xl3mPlan plan;
  std::vector<TokenSpan> segments;
  std::vector<double> scores;  // [segments]
  Xl3mSelection selection;
  std::vector<int32_t> key;   // the key context: what to generate from
  std::vector<int32_t> lead;  // tokens appended to Xt for scoring (xl3m_answer_lead)
  double seconds = 0;         // scoring and selecting
  int64_t scored_tokens = 0;  // tokens the scoring passes evaluated (P once, then S + |Xt| per segment)
};

// Steps 1-4: plan, segment (snapping with boundaries when given and options.snap), score on session,
// select and splice. A bypassed request's key is the input as it is. The session must hold a sub-context
// and the key context (Error otherwise); it is left cleared. options.window 0 means the model's trained
// context.
Xl3mResult xl3m_key_context(Session& session, const Xl3mInput& input, const Xl3mOptions& options,
                            const SentenceBoundaries* boundaries = nullptr,
                            const std::function<void(int64_t, int64_t)>& progress = nullptr);

// Memory of a request, predicted before any work: the session part depends only on C, n_batch, the
// threads and the vocabulary (a sub-context's KV cache, one forward call, the question's logit rows),
// the input part only on the input's length (its ids, each segment's span and score).
struct Xl3mMemoryEstimate {
  MemoryEstimate session;  // weights, KV cache of C tokens, activations with the question's logit rows
  uint64_t input = 0;      // 4 bytes per input token + per segment
  uint64_t total() const { return session.total() + input; }
};
Xl3mMemoryEstimate estimate_xl3m_memory(const ModelSource& source, const Xl3mPlan& plan, int64_t n_batch,
                                        int n_threads, DType kv_type = DType::F32);

// Logit rows the question-row scores (MEAN_Q_ENTROPY, Q_NLL) ask of one Session::eval call: at most 4 Mi
// floats of logits (16 MiB), at least 1, at most 512.
int64_t xl3m_logit_rows(int64_t n_vocab);

}  // namespace ariadne
