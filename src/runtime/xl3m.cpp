#include "runtime/xl3m.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace ariadne {

namespace {

// SentenceBoundaries flags of one token's text.
enum : uint8_t {
  kEndsLine = 1,      // the text ends with a newline
  kEndsSentence = 2,  // ends with '.', '!' or '?' (then maybe closing quotes or brackets, then spaces)
  kEndsSpace = 4,     // ends with a space or tab
  kBeginsSpace = 8,   // begins with a space or tab (after "!\n" the line start counts, not the newline)
};

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

// Closing quotes and brackets that may follow a sentence's end: ASCII ones and the UTF-8 ’ ” » (their last
// bytes; the text is scanned backwards).
size_t closing_suffix(std::string_view t) {
  size_t n = t.size();
  while (n > 0) {
    const char c = t[n - 1];
    if (c == '"' || c == '\'' || c == ')' || c == ']') {
      --n;
    } else if (n >= 3 && (t.substr(n - 3, 3) == "\xE2\x80\x99" || t.substr(n - 3, 3) == "\xE2\x80\x9D")) {
      n -= 3;
    } else if (n >= 2 && t.substr(n - 2, 2) == "\xC2\xBB") {
      n -= 2;
    } else {
      break;
    }
  }
  return n;
}

uint8_t piece_flags(std::string_view t) {
  if (t.empty()) return 0;
  uint8_t f = 0;
  if (t.back() == '\n' || t.back() == '\r') f |= kEndsLine;
  if (is_space(t.front())) f |= kBeginsSpace;
  size_t n = t.size();
  while (n > 0 && is_space(t[n - 1])) --n;
  if (n < t.size()) f |= kEndsSpace;
  n = closing_suffix(t.substr(0, n));
  if (n > 0 && (t[n - 1] == '.' || t[n - 1] == '!' || t[n - 1] == '?')) f |= kEndsSentence;
  return f;
}

bool whitespace_only(std::string_view t) {
  return std::all_of(t.begin(), t.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; });
}

// Segments for a body of n tokens: 1 when it is no longer than S, else the nominal starts j·(S − O) below
// n − S plus the last one at n − S.
int64_t segment_count(int64_t n_body, int64_t segment, int64_t overlap) {
  if (n_body <= segment) return 1;
  const int64_t step = segment - overlap;
  const int64_t last = n_body - segment;
  return (last + step - 1) / step + 1;
}

std::string lower_dashes(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == '_') c = '-';
  }
  return out;
}

}  // namespace

std::string_view xl3m_score_name(Xl3mScore score) {
  switch (score) {
    case Xl3mScore::LastEntropy:
      return "last-entropy";
    case Xl3mScore::MeanQuestionEntropy:
      return "mean-q-entropy";
    case Xl3mScore::QuestionNll:
      return "q-nll";
    case Xl3mScore::Fused:
      return "fused";
  }
  return "?";
}

std::optional<Xl3mScore> xl3m_score_from_name(std::string_view name) {
  const std::string n = lower_dashes(name);
  for (Xl3mScore s :
       {Xl3mScore::LastEntropy, Xl3mScore::MeanQuestionEntropy, Xl3mScore::QuestionNll, Xl3mScore::Fused})
    if (n == xl3m_score_name(s)) return s;
  return std::nullopt;
}

Xl3mPlan plan_xl3m(int64_t n_ctx_train, int64_t n_prefix, int64_t n_body, int64_t n_question,
                   const Xl3mOptions& o) {
  Xl3mPlan p;
  p.window = o.window > 0 ? o.window : n_ctx_train;
  if (p.window <= 0)
    fail("xl3m: the model gives no trained context length; set the window (--xl3m-window) explicitly");
  if (o.n_gen < 0) fail("xl3m: expected >= 0 tokens reserved for the answer, got {}", o.n_gen);
  if (n_prefix < 0 || n_body < 0 || n_question < 0)
    fail("xl3m: negative part sizes (prefix {}, body {}, question {})", n_prefix, n_body, n_question);
  if (o.top_k < 0) fail("xl3m: top-k must be >= 0 (0: as many as fit), got {}", o.top_k);
  p.n_gen = o.n_gen;
  p.n_prefix = n_prefix;
  p.n_body = n_body;
  p.n_question = n_question;
  p.n_separator = static_cast<int64_t>(o.separator.size());
  p.bypass = n_prefix + n_body + n_question + o.n_gen <= p.window;
  if (p.bypass) return p;

  if (o.segment < 0)
    fail("xl3m: segment length (--xl3m-segment) must be >= 1 (0: the default), got {}", o.segment);
  p.segment = o.segment > 0 ? o.segment : std::max<int64_t>(1, std::min<int64_t>(512, p.window / 8));
  p.overlap = o.overlap >= 0 ? o.overlap : p.segment / 8;
  if (p.overlap >= p.segment)
    fail("xl3m: the overlap (--xl3m-overlap) must be smaller than the segment length {}, got {}", p.segment,
         p.overlap);
  if (n_question == 0) fail("xl3m: the question is empty (give one, or an input to take it from)");
  if (n_body == 0)
    fail(
        "xl3m: nothing to select from: the prefix ({} tokens) and the question ({}) fill the window of {} "
        "with {} answer tokens",
        n_prefix, n_question, p.window, p.n_gen);
  if (n_body < p.segment) {  // one segment: the whole body
    p.segment = n_body;
    p.overlap = std::min(p.overlap, n_body - 1);
  }
  if (p.sub_context() > p.window)
    fail(
        "xl3m: a sub-context (prefix {} + segment {} + question {} = {} tokens) does not fit the window "
        "of {} tokens; lower the segment length (--xl3m-segment) or shorten the question",
        n_prefix, p.segment, n_question, p.sub_context(), p.window);
  p.budget = p.window - p.n_gen - n_prefix - n_question;
  if (p.budget <= 0)
    fail(
        "xl3m: the answer ({} tokens), the prefix ({}) and the question ({}) leave no room in the window of "
        "{}; "
        "lower the answer length (-n) or shorten the question",
        p.n_gen, n_prefix, n_question, p.window);
  if (p.budget < p.segment)
    fail(
        "xl3m: the key context has room for {} content tokens (window {} - answer {} - prefix {} - question "
        "{}), less than one segment of {}; lower the segment length (--xl3m-segment) or the answer length "
        "(-n)",
        p.budget, p.window, p.n_gen, n_prefix, n_question, p.segment);
  p.n_segments = segment_count(n_body, p.segment, p.overlap);
  return p;
}

SentenceBoundaries::SentenceBoundaries(const Tokenizer& tokenizer) {
  const int32_t n = tokenizer.vocab().size();
  flags_.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id)
    flags_[static_cast<size_t>(id)] = piece_flags(tokenizer.token_to_piece(id, false));
}

bool SentenceBoundaries::starts_sentence(std::span<const int32_t> ids, int64_t i) const {
  if (i <= 0 || i >= static_cast<int64_t>(ids.size())) return false;
  auto flags = [&](int32_t id) -> uint8_t {
    return id >= 0 && static_cast<size_t>(id) < flags_.size() ? flags_[static_cast<size_t>(id)] : 0;
  };
  const uint8_t prev = flags(ids[static_cast<size_t>(i - 1)]);
  const uint8_t cur = flags(ids[static_cast<size_t>(i)]);
  return (prev & kEndsLine) != 0 ||
         ((prev & kEndsSentence) != 0 && ((prev & kEndsSpace) != 0 || (cur & kBeginsSpace) != 0));
}

std::vector<TokenSpan> xl3m_segments(int64_t n_body, int64_t segment, int64_t overlap,
                                     const std::function<bool(int64_t)>& is_start) {
  ARIADNE_CHECK(n_body >= 1 && segment >= 1 && overlap >= 0 && overlap < segment, "bad segment sizes");
  if (n_body <= segment) return {{0, n_body}};
  const int64_t step = segment - overlap;
  const int64_t last = n_body - segment;
  const int64_t radius = is_start ? overlap / 2 : 0;
  std::vector<TokenSpan> out;
  out.reserve(static_cast<size_t>(segment_count(n_body, segment, overlap)));
  out.push_back({0, segment});
  for (int64_t nominal = step; nominal < last; nominal += step) {
    const int64_t prev = out.back().begin;
    // A start must stay after the previous one, before the last, and leave no gap after the previous
    // segment (radius O/2 keeps that anyway: the overlap stays within [0, 2·O]).
    auto usable = [&](int64_t s) {
      return is_start && s > prev && s < last && s <= prev + segment && is_start(s);
    };
    int64_t start = nominal;
    for (int64_t d = 0; d <= radius; ++d) {
      if (usable(nominal - d)) {
        start = nominal - d;
        break;
      }
      if (d > 0 && usable(nominal + d)) {
        start = nominal + d;
        break;
      }
    }
    out.push_back({start, start + segment});
  }
  out.push_back({last, n_body});
  return out;
}

TokenSpan xl3m_tail_question(std::span<const int32_t> ids, int64_t begin, const Xl3mOptions& o,
                             const Tokenizer* tokenizer, const SentenceBoundaries* boundaries) {
  int64_t end = static_cast<int64_t>(ids.size());
  if (end - begin < 2)
    fail("xl3m: an input of {} tokens has no room for content and a question", end - begin);
  if (tokenizer != nullptr) {
    const int32_t n_tokens = tokenizer->vocab().size();
    while (end - begin > 2) {
      const int32_t id = ids[static_cast<size_t>(end - 1)];
      if (id < 0 || id >= n_tokens || !whitespace_only(tokenizer->token_to_piece(id, false))) break;
      --end;
    }
  }
  const int64_t first = begin + 1;  // Body keeps at least one token
  int64_t start = std::max(first, end - std::max<int64_t>(1, o.question_tokens));
  if (boundaries != nullptr) {
    const int64_t lowest = std::max(first, end - std::max(o.max_question, o.question_tokens));
    for (int64_t j = start; j >= lowest; --j) {
      if (boundaries->starts_sentence(ids, j)) {
        start = j;
        break;
      }
    }
  }
  return {start, end};
}

std::vector<int32_t> xl3m_separator_ids(const Tokenizer& tokenizer, std::string_view text) {
  if (text.empty()) return {};
  const int32_t n = tokenizer.vocab().size();
  for (int32_t id = 0; id < n; ++id)
    if (tokenizer.token_to_piece(id, false) == text) return {id};
  return tokenizer.encode(text, false, false);
}

std::vector<int32_t> xl3m_blank_token_ids(const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  const int32_t n = tokenizer.vocab().size();
  for (int32_t id = 0; id < n; ++id) {
    const std::string piece = tokenizer.token_to_piece(id, false);
    if (!piece.empty() && piece.find_first_not_of(" \t\n\r") == std::string::npos) ids.push_back(id);
  }
  return ids;
}

std::vector<int32_t> xl3m_answer_lead(Session& session, const Xl3mInput& in, const Xl3mOptions& options) {
  std::vector<int32_t> lead;
  if (options.blank_tokens.empty() || options.max_lead <= 0 || in.question.empty()) return lead;
  std::vector<int32_t> ids(in.prefix.begin(), in.prefix.end());
  ids.insert(ids.end(), in.question.begin(), in.question.end());
  session.clear();
  std::vector<float> logits = session.eval(ids, false);
  while (static_cast<int64_t>(lead.size()) < options.max_lead) {
    const auto top = std::max_element(logits.begin(), logits.end());
    const auto id = static_cast<int32_t>(top - logits.begin());
    // p(top) = exp(−NLL(top)).
    const double p = std::exp(-nll_from_logits(logits, id));
    if (!(p >= options.lead_probability) ||
        !std::binary_search(options.blank_tokens.begin(), options.blank_tokens.end(), id))
      break;
    lead.push_back(id);
    if (static_cast<int64_t>(lead.size()) < options.max_lead)
      logits = session.eval(std::span<const int32_t>(&lead.back(), 1), false);
  }
  session.clear();
  return lead;
}

double entropy_from_logits(std::span<const float> logits) {
  double m = -std::numeric_limits<double>::infinity();
  for (const float z : logits) m = std::max(m, static_cast<double>(z));
  if (!std::isfinite(m)) return std::numeric_limits<double>::quiet_NaN();
  // H = log Z − Σ p·z with z shifted by m: Z = Σ e^(z−m), H = log Z − Σ e^(z−m)·(z−m) / Z.
  double sum = 0.0;
  double weighted = 0.0;
  for (const float z : logits) {
    const double d = static_cast<double>(z) - m;
    const double e = std::exp(d);
    if (e == 0.0) continue;  // also z = −inf (a banned token): contributes nothing
    sum += e;
    weighted += e * d;
  }
  return std::log(sum) - weighted / sum;
}

double nll_from_logits(std::span<const float> logits, int32_t target) {
  ARIADNE_CHECK(target >= 0 && static_cast<size_t>(target) < logits.size(), "target outside the logits");
  double m = -std::numeric_limits<double>::infinity();
  for (const float z : logits) m = std::max(m, static_cast<double>(z));
  if (!std::isfinite(m)) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0.0;
  for (const float z : logits) sum += std::exp(static_cast<double>(z) - m);
  return std::log(sum) - (static_cast<double>(logits[static_cast<size_t>(target)]) - m);
}

int64_t xl3m_logit_rows(int64_t n_vocab) {
  return std::clamp<int64_t>((int64_t{4} << 20) / std::max<int64_t>(1, n_vocab), 1, 512);
}

std::vector<double> score_xl3m_segments(Session& session, const Xl3mInput& in,
                                        std::span<const TokenSpan> segments, Xl3mScore score,
                                        const std::function<void(int64_t, int64_t)>& progress) {
  const auto n_prefix = static_cast<int64_t>(in.prefix.size());
  const auto n_question = static_cast<int64_t>(in.question.size());
  const auto n_body = static_cast<int64_t>(in.body.size());
  const int64_t n_vocab = session.model().config().n_vocab;
  const auto total = static_cast<int64_t>(segments.size());
  if (n_question == 0) fail("xl3m: the question is empty");
  session.clear();
  if (n_prefix > 0) session.eval(in.prefix, false);
  const int64_t rows = xl3m_logit_rows(n_vocab);
  std::vector<int32_t> ids;
  std::vector<double> scores(segments.size());
  std::vector<double> last(score == Xl3mScore::Fused ? segments.size() : 0);  // Fused: LastEntropy's
  const bool mean_entropy = score == Xl3mScore::MeanQuestionEntropy || score == Xl3mScore::Fused;
  for (int64_t i = 0; i < total; ++i) {
    const TokenSpan g = segments[static_cast<size_t>(i)];
    ARIADNE_CHECK(g.begin >= 0 && g.begin < g.end && g.end <= n_body, "segment outside the body");
    const auto segment = in.body.subspan(static_cast<size_t>(g.begin), static_cast<size_t>(g.size()));
    session.truncate(n_prefix);  // P stays; the previous sub-context goes
    double value = 0.0;
    if (score == Xl3mScore::LastEntropy) {
      ids.assign(segment.begin(), segment.end());
      ids.insert(ids.end(), in.question.begin(), in.question.end());
      value = entropy_from_logits(session.eval(ids, false));
    } else {
      // Row k predicts question token k (k < |Xt|) or the answer (k = |Xt|): row 0 is the segment's last,
      // row k >= 1 the question's token k − 1. Q_NLL needs no row after the question's last token, so that
      // token is not evaluated.
      double sum = 0.0;
      int64_t count = 0;
      auto add_row = [&](std::span<const float> row, int64_t k) {
        if (mean_entropy) {
          const double h = entropy_from_logits(row);
          sum += h;
          if (k == n_question && !last.empty()) last[static_cast<size_t>(i)] = h;  // the answer's row
        } else {
          sum += nll_from_logits(row, in.question[static_cast<size_t>(k)]);
        }
        ++count;
      };
      add_row(session.eval(segment, false), 0);
      const int64_t n_fed = mean_entropy ? n_question : n_question - 1;
      for (int64_t b = 0; b < n_fed; b += rows) {
        const int64_t n = std::min(rows, n_fed - b);
        const std::vector<float> logits =
            session.eval(in.question.subspan(static_cast<size_t>(b), static_cast<size_t>(n)), true);
        for (int64_t r = 0; r < n; ++r)
          add_row(std::span<const float>(logits).subspan(static_cast<size_t>(r * n_vocab),
                                                         static_cast<size_t>(n_vocab)),
                  b + r + 1);
      }
      value = sum / static_cast<double>(count);
    }
    scores[static_cast<size_t>(i)] = value;
    if (progress) progress(i + 1, total);
  }
  session.truncate(n_prefix);
  if (score == Xl3mScore::Fused) return xl3m_fuse_scores(last, scores);
  return scores;
}

std::vector<double> xl3m_fuse_scores(std::span<const double> a, std::span<const double> b) {
  ARIADNE_CHECK(a.size() == b.size(), "one score of each kind per segment");
  const size_t n = a.size();
  std::vector<double> fused(n, -1.0);  // -1: not placed yet
  const std::vector<size_t> by_a = xl3m_rank_order(a), by_b = xl3m_rank_order(b);
  size_t next_a = 0, next_b = 0;
  for (size_t place = 0; place < n; ++place) {
    // a's turn on even places, b's on odd ones: the best of that order not placed yet.
    const std::vector<size_t>& order = place % 2 == 0 ? by_a : by_b;
    size_t& next = place % 2 == 0 ? next_a : next_b;
    while (fused[order[next]] >= 0.0) ++next;  // some segment is unplaced, so this stops within order
    fused[order[next]] = static_cast<double>(place);
  }
  return fused;
}

std::vector<size_t> xl3m_rank_order(std::span<const double> scores) {
  auto key = [&](size_t i) {
    const double s = scores[i];
    return std::isnan(s) ? std::numeric_limits<double>::infinity() : s;
  };
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  return order;
}

Xl3mSelection select_xl3m_segments(std::span<const TokenSpan> segments, std::span<const double> scores,
                                   int64_t budget, int64_t top_k, int64_t n_separator) {
  ARIADNE_CHECK(segments.size() == scores.size(), "one score per segment");
  const std::vector<size_t> order = xl3m_rank_order(scores);

  Xl3mSelection sel;
  std::vector<TokenSpan> trial;
  for (const size_t i : order) {
    if (top_k > 0 && static_cast<int64_t>(sel.chosen.size()) == top_k) break;
    // trial = chosen ∪ segment i, merged (overlapping or touching spans become one).
    const TokenSpan s = segments[i];
    trial.clear();
    bool placed = false;
    auto append = [&](TokenSpan t) {
      if (!trial.empty() && t.begin <= trial.back().end) {
        trial.back().end = std::max(trial.back().end, t.end);
      } else {
        trial.push_back(t);
      }
    };
    for (const TokenSpan& c : sel.spans) {
      if (!placed && s.begin < c.begin) {
        append(s);
        placed = true;
      }
      append(c);
    }
    if (!placed) append(s);
    int64_t tokens = 0;
    for (const TokenSpan& t : trial) tokens += t.size();
    tokens += n_separator * (static_cast<int64_t>(trial.size()) - 1);
    if (tokens > budget) continue;  // a later segment overlapping the chosen ones may still fit
    sel.spans.swap(trial);
    sel.n_tokens = tokens;
    sel.chosen.push_back(static_cast<int64_t>(i));
  }
  return sel;
}

std::vector<int32_t> splice_xl3m(const Xl3mInput& in, std::span<const TokenSpan> spans,
                                 std::span<const int32_t> separator) {
  std::vector<int32_t> key(in.prefix.begin(), in.prefix.end());
  for (size_t k = 0; k < spans.size(); ++k) {
    const TokenSpan s = spans[k];
    ARIADNE_CHECK(s.begin >= 0 && s.begin <= s.end && s.end <= static_cast<int64_t>(in.body.size()),
                  "span outside the body");
    ARIADNE_CHECK(k == 0 || s.begin >= spans[k - 1].end, "spans out of order or overlapping");
    if (k > 0 && s.begin != spans[k - 1].end) key.insert(key.end(), separator.begin(), separator.end());
    key.insert(key.end(), in.body.begin() + s.begin, in.body.begin() + s.end);
  }
  key.insert(key.end(), in.question.begin(), in.question.end());
  return key;
}

Xl3mResult xl3m_key_context(Session& session, const Xl3mInput& in, const Xl3mOptions& options,
                            const SentenceBoundaries* boundaries,
                            const std::function<void(int64_t, int64_t)>& progress) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  Xl3mResult r;
  r.plan = plan_xl3m(session.model().config().n_ctx_train, static_cast<int64_t>(in.prefix.size()),
                     static_cast<int64_t>(in.body.size()), static_cast<int64_t>(in.question.size()), options);
  session.clear();
  if (r.plan.bypass) {
    r.key = splice_xl3m(in, std::vector<TokenSpan>{{0, r.plan.n_body}}, {});
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return r;
  }
  if (session.n_ctx() < r.plan.sub_context())
    fail(
        "xl3m: the session holds {} tokens, fewer than one sub-context of {} (prefix {} + segment {} + "
        "question {})",
        session.n_ctx(), r.plan.sub_context(), r.plan.n_prefix, r.plan.segment, r.plan.n_question);
  // Scoring reads Xt + lead (Xl3mOptions::blank_tokens); the plan must hold that sub-context.
  r.lead = xl3m_answer_lead(session, in, options);
  std::vector<int32_t> scored_question(in.question.begin(), in.question.end());
  scored_question.insert(scored_question.end(), r.lead.begin(), r.lead.end());
  Xl3mInput scored = in;
  scored.question = scored_question;
  if (!r.lead.empty()) {
    r.plan = plan_xl3m(session.model().config().n_ctx_train, r.plan.n_prefix, r.plan.n_body,
                       static_cast<int64_t>(scored_question.size()), options);
    if (session.n_ctx() < r.plan.sub_context())
      fail(
          "xl3m: the session holds {} tokens, fewer than one sub-context of {} (question and answer lead {})",
          session.n_ctx(), r.plan.sub_context(), r.plan.n_question);
  }
  std::function<bool(int64_t)> is_start;
  if (options.snap && boundaries != nullptr)
    is_start = [&](int64_t i) { return boundaries->starts_sentence(in.body, i); };
  r.segments = xl3m_segments(r.plan.n_body, r.plan.segment, r.plan.overlap, is_start);
  r.scores = score_xl3m_segments(session, scored, r.segments, options.score, progress);
  session.clear();
  const int64_t per_question =
      options.score == Xl3mScore::QuestionNll ? r.plan.n_question - 1 : r.plan.n_question;
  r.scored_tokens = r.plan.n_prefix;
  for (const TokenSpan& s : r.segments) r.scored_tokens += s.size() + per_question;
  if (!options.blank_tokens.empty() && options.max_lead > 0)  // xl3m_answer_lead's pass
    r.scored_tokens += r.plan.n_prefix + static_cast<int64_t>(in.question.size()) +
                       std::min<int64_t>(static_cast<int64_t>(r.lead.size()), options.max_lead - 1);
  r.selection = select_xl3m_segments(r.segments, r.scores, r.plan.budget, options.top_k, r.plan.n_separator);
  r.key = splice_xl3m(in, r.selection.spans, options.separator);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

Xl3mMemoryEstimate estimate_xl3m_memory(const ModelSource& source, const Xl3mPlan& plan, int64_t n_batch,
                                        int n_threads, DType kv_type) {
  Xl3mMemoryEstimate m;
  m.session = estimate_bench_memory(source, plan.window, n_batch, n_threads, kv_type);
  // The question's logit rows (MEAN_Q_ENTROPY, Q_NLL), a sub-context's ids and the key context's.
  const auto n_vocab = static_cast<uint64_t>(source.config.n_vocab);
  m.session.activations +=
      sizeof(float) * static_cast<uint64_t>(xl3m_logit_rows(source.config.n_vocab)) * n_vocab +
      2 * sizeof(int32_t) * static_cast<uint64_t>(plan.window);
  const auto n_input = static_cast<uint64_t>(plan.n_prefix + plan.n_body + plan.n_question);
  m.input = sizeof(int32_t) * n_input +
            (sizeof(TokenSpan) + sizeof(double) + sizeof(size_t)) * static_cast<uint64_t>(plan.n_segments);
  return m;
}

}  // namespace ariadne
