#include "eval/runner.h"

#include <algorithm>
#include <span>

#include "core/error.h"
#include "eval/scoring.h"
#include "runtime/bench.h"
#include "runtime/generate.h"

namespace ariadne::eval {

nlohmann::json to_json(const SampleResult& r) {
  const double ms_per_token =
      r.n_generated > 0 ? 1000.0 * r.decode_seconds / static_cast<double>(r.n_generated) : 0.0;
  nlohmann::json j = {{"id", r.id},
                      {"task", r.task},
                      {"variant", r.variant},
                      {"target_len", r.target_len},
                      {"method", r.method},
                      {"prediction", r.prediction},
                      {"score", r.score},
                      {"strict", r.strict ? nlohmann::json(*r.strict) : nlohmann::json(nullptr)},
                      {"n_prompt", r.n_prompt},
                      {"n_fed", r.n_fed},
                      {"n_generated", r.n_generated},
                      {"stop_reason", r.stop_reason},
                      {"prefill_seconds", r.prefill_seconds},
                      {"decode_seconds", r.decode_seconds},
                      {"decode_ms_per_token", ms_per_token},
                      {"kv_bytes", r.kv_bytes},
                      {"kv_peak_bytes", r.kv_peak_bytes},
                      {"peak_rss_bytes", r.peak_rss_bytes},
                      {"model", r.model}};
  if (!r.selection.is_null()) j["selection"] = r.selection;
  return j;
}

namespace {

template <typename T>
T get(const nlohmann::json& j, const char* name, const std::string& where, std::optional<T> fallback = {}) {
  if (!j.contains(name) || j[name].is_null()) {
    if (fallback) return *fallback;
    fail("{}: the result has no field '{}'", where, name);
  }
  try {
    return j[name].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: field '{}' has the wrong type ({})", where, name, j[name].dump());
  }
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  return static_cast<size_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
}

// What a context selection did, with the queried needles' places (needle token offsets count the prompt's
// tokens before the needle; its length is its text's own token count, which may differ by a token at the
// edges from how the prompt splits it).
nlohmann::json selection_json(const ContextSelection& c, const TaskSample& sample, const Tokenizer& tokenizer,
                              int64_t n_prefix, int64_t n_body) {
  nlohmann::json spans = nlohmann::json::array();
  for (const TokenSpan& s : c.spans) spans.push_back({s.begin, s.end});
  const std::vector<size_t> order = xl3m_rank_order(c.scores);
  std::vector<int64_t> rank(c.segments.size());
  for (size_t r = 0; r < order.size(); ++r) rank[order[r]] = static_cast<int64_t>(r) + 1;
  nlohmann::json gold_spans = nlohmann::json::array();
  nlohmann::json gold_ranks = nlohmann::json::array();
  int64_t n_gold = 0;
  int64_t n_held = 0;
  for (const Needle& nd : sample.needles) {
    if (nd.role != "query" || nd.text.empty()) continue;
    const int64_t begin = std::clamp<int64_t>(nd.token_offset - n_prefix, 0, n_body);
    const int64_t end = std::clamp<int64_t>(
        begin + static_cast<int64_t>(tokenizer.encode(nd.text, false, false).size()), begin, n_body);
    ++n_gold;
    gold_spans.push_back({begin, end});
    n_held += std::any_of(c.spans.begin(), c.spans.end(),
                          [&](const TokenSpan& s) { return s.begin <= begin && end <= s.end; });
    // The needle's segments: those holding the most of it (all of it, when one does).
    int64_t most = 0;
    for (const TokenSpan& g : c.segments)
      most = std::max(most, std::min(end, g.end) - std::max(begin, g.begin));
    int64_t best = 0;
    for (size_t i = 0; i < c.segments.size(); ++i) {
      const int64_t held = std::min(end, c.segments[i].end) - std::max(begin, c.segments[i].begin);
      if (most > 0 && held == most && (best == 0 || rank[i] < best)) best = rank[i];
    }
    gold_ranks.push_back(best > 0 ? nlohmann::json(best) : nlohmann::json(nullptr));
  }
  nlohmann::json j = {
      {"bypass", c.bypass},       {"n_segments", c.segments.size()},  {"n_spans", c.spans.size()},
      {"spans", spans},           {"scored_tokens", c.scored_tokens}, {"seconds", c.seconds},
      {"gold_spans", gold_spans}, {"gold_ranks", gold_ranks}};
  j["gold_recall"] = n_gold > 0 ? nlohmann::json(static_cast<double>(n_held) / static_cast<double>(n_gold))
                                : nlohmann::json(nullptr);
  return j;
}

}  // namespace

SampleResult result_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected a JSON object (one result per line)", where);
  SampleResult r;
  r.id = get<std::string>(j, "id", where);
  r.task = get<std::string>(j, "task", where);
  r.variant = get<std::string>(j, "variant", where, std::string());
  r.target_len = get<int64_t>(j, "target_len", where);
  r.method = get<std::string>(j, "method", where);
  r.prediction = get<std::string>(j, "prediction", where, std::string());
  r.score = get<double>(j, "score", where);
  if (j.contains("strict") && !j["strict"].is_null()) r.strict = get<double>(j, "strict", where);
  r.n_prompt = get<int64_t>(j, "n_prompt", where, 0);
  r.n_fed = get<int64_t>(j, "n_fed", where, r.n_prompt);
  r.n_generated = get<int64_t>(j, "n_generated", where, 0);
  r.stop_reason = get<std::string>(j, "stop_reason", where, std::string());
  r.prefill_seconds = get<double>(j, "prefill_seconds", where, 0.0);
  r.decode_seconds = get<double>(j, "decode_seconds", where, 0.0);
  r.kv_bytes = get<uint64_t>(j, "kv_bytes", where, 0);
  r.kv_peak_bytes = get<uint64_t>(j, "kv_peak_bytes", where, 0);
  r.peak_rss_bytes = get<uint64_t>(j, "peak_rss_bytes", where, 0);
  r.model = get<std::string>(j, "model", where, std::string());
  if (j.contains("selection")) r.selection = j["selection"];
  return r;
}

Runner::Runner(std::shared_ptr<const ModelSource> source, const Tokenizer& tokenizer,
               const MethodRegistry& methods, RunnerOptions options)
    : source_(std::move(source)), tokenizer_(tokenizer), methods_(methods), options_(std::move(options)) {}

std::vector<int32_t> Runner::prompt_tokens(const TaskSample& sample) const {
  return tokenizer_.encode(sample.prompt(), sample.add_special, sample.parse_special);
}

void Runner::reserve(int64_t n_tokens) {
  if (session_ && session_->n_ctx() >= n_tokens) return;
  SessionOptions so;
  so.n_ctx = n_tokens;
  so.n_threads = options_.n_threads;
  so.n_batch = options_.n_batch;
  so.kv_type = options_.kv_type;
  session_.reset();  // the old cache goes before the new one is sized against available memory
  session_ = std::make_unique<Session>(source_, so);
}

SampleResult Runner::run(const TaskSample& sample, const MethodSpec& method) {
  const std::vector<int32_t> prompt = prompt_tokens(sample);
  reserve(static_cast<int64_t>(prompt.size()) + sample.max_new_tokens);
  Session& session = *session_;
  session.clear();
  const std::unique_ptr<Method> m = methods_.create(method);
  std::vector<int32_t> fed;
  nlohmann::json selection;
  if (m->selects_context()) {
    // P ends where the header's own tokens stop matching the prompt's, Xt starts where header + body's do.
    const std::vector<int32_t> header =
        tokenizer_.encode(sample.header, sample.add_special, sample.parse_special);
    const std::vector<int32_t> header_body =
        tokenizer_.encode(sample.header + sample.body, sample.add_special, sample.parse_special);
    const size_t n_prefix = common_prefix(header, prompt);
    const size_t n_head_body = std::max(n_prefix, common_prefix(header_body, prompt));
    if (!boundaries_) {
      boundaries_ = std::make_unique<SentenceBoundaries>(tokenizer_);
      separator_ = xl3m_separator_ids(tokenizer_, "\n");
      blank_tokens_ = xl3m_blank_token_ids(tokenizer_);
    }
    PromptParts parts;
    const std::span<const int32_t> all(prompt);
    parts.prefix = all.subspan(0, n_prefix);
    parts.body = all.subspan(n_prefix, n_head_body - n_prefix);
    parts.question = all.subspan(n_head_body);
    parts.max_new_tokens = sample.max_new_tokens;
    parts.boundaries = boundaries_.get();
    parts.separator = separator_;
    parts.blank_tokens = blank_tokens_;
    ContextSelection c = m->select_context(session, parts);
    session.clear();
    selection = selection_json(c, sample, tokenizer_, static_cast<int64_t>(n_prefix),
                               static_cast<int64_t>(parts.body.size()));
    fed = std::move(c.ids);
  }
  m->prepare(session);
  // A KV policy's budget counts the answer's tokens (chelsea.md §2: Γ is the request's max_tokens).
  if (KvPolicy* policy = session.kv().policy()) policy->set_generation_budget(sample.max_new_tokens);

  SampleResult r;
  r.id = sample.id;
  r.task = sample.task;
  r.variant = sample.variant;
  r.target_len = sample.target_len;
  r.method = method.text;
  r.model = options_.model_name;
  r.n_prompt = static_cast<int64_t>(prompt.size());
  r.selection = std::move(selection);
  const std::vector<int32_t>& input = m->selects_context() ? fed : prompt;
  r.n_fed = static_cast<int64_t>(input.size());

  GenerationOptions go;
  go.n_predict = sample.max_new_tokens;
  go.sampler.temperature = 0.0f;  // greedy, no penalties (spec §1 "Decoding")
  go.sampler.repeat_penalty = 1.0f;
  go.sampler.seed = 0;
  go.n_batch = options_.n_batch;
  uint64_t peak = 0;
  go.on_prefill = [&](int64_t, int64_t) { peak = std::max(peak, session.kv().bytes()); };
  go.on_token = [&](int32_t) { peak = std::max(peak, session.kv().bytes()); };
  const GenerationResult g = generate(session, &tokenizer_, input, go);

  r.prediction = g.text;
  r.n_generated = static_cast<int64_t>(g.tokens.size());
  r.stop_reason = g.stop_reason;
  r.prefill_seconds = g.prefill_seconds;
  r.decode_seconds = g.decode_seconds;
  r.kv_bytes = session.kv().bytes();
  r.kv_peak_bytes = std::max(peak, r.kv_bytes);
  r.peak_rss_bytes = peak_resident_bytes();
  const SampleScore s = score_prediction(g.text, sample.references, sample.metric, sample.strict);
  r.score = s.score;
  r.strict = s.strict;
  session.clear();
  return r;
}

}  // namespace ariadne::eval
