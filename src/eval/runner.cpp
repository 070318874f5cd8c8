#include "eval/runner.h"

#include <algorithm>

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
                      {"n_generated", r.n_generated},
                      {"stop_reason", r.stop_reason},
                      {"prefill_seconds", r.prefill_seconds},
                      {"decode_seconds", r.decode_seconds},
                      {"decode_ms_per_token", ms_per_token},
                      {"kv_bytes", r.kv_bytes},
                      {"kv_peak_bytes", r.kv_peak_bytes},
                      {"peak_rss_bytes", r.peak_rss_bytes},
                      {"model", r.model}};
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
  r.n_generated = get<int64_t>(j, "n_generated", where, 0);
  r.stop_reason = get<std::string>(j, "stop_reason", where, std::string());
  r.prefill_seconds = get<double>(j, "prefill_seconds", where, 0.0);
  r.decode_seconds = get<double>(j, "decode_seconds", where, 0.0);
  r.kv_bytes = get<uint64_t>(j, "kv_bytes", where, 0);
  r.kv_peak_bytes = get<uint64_t>(j, "kv_peak_bytes", where, 0);
  r.peak_rss_bytes = get<uint64_t>(j, "peak_rss_bytes", where, 0);
  r.model = get<std::string>(j, "model", where, std::string());
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
  methods_.create(method)->prepare(session);

  SampleResult r;
  r.id = sample.id;
  r.task = sample.task;
  r.variant = sample.variant;
  r.target_len = sample.target_len;
  r.method = method.text;
  r.model = options_.model_name;
  r.n_prompt = static_cast<int64_t>(prompt.size());

  GenerationOptions go;
  go.n_predict = sample.max_new_tokens;
  go.sampler.temperature = 0.0f;  // greedy, no penalties (spec §1 "Decoding")
  go.sampler.repeat_penalty = 1.0f;
  go.sampler.seed = 0;
  go.n_batch = options_.n_batch;
  uint64_t peak = 0;
  go.on_prefill = [&](int64_t, int64_t) { peak = std::max(peak, session.kv().bytes()); };
  go.on_token = [&](int32_t) { peak = std::max(peak, session.kv().bytes()); };
  const GenerationResult g = generate(session, &tokenizer_, prompt, go);

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
