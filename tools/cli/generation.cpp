#include "generation.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace ariadne::cli {

namespace {

// llama.cpp's form: TOKEN+BIAS or TOKEN-BIAS, e.g. 15043+1, 2-inf (ban token 2).
ariadne_logit_bias parse_logit_bias(const std::string& text) {
  const size_t sign = text.find_first_of("+-", 1);
  if (sign == std::string::npos)
    fail("--logit-bias: '{}' is not TOKEN+BIAS or TOKEN-BIAS (e.g. 15043+1 or 2-inf)", text);
  std::istringstream token_in(text.substr(0, sign));
  long long token = 0;
  if (!(token_in >> token) || !(token_in >> std::ws).eof() || token < 0 || token > INT32_MAX)
    fail("--logit-bias: '{}' does not start with a token id", text);
  const std::string bias_text = text.substr(sign + 1);
  char* end = nullptr;
  const float bias = std::strtof(bias_text.c_str(), &end);
  if (bias_text.empty() || end != bias_text.c_str() + bias_text.size() || std::isnan(bias))
    fail("--logit-bias: '{}' has no bias value after the sign (a number or inf)", text);
  return {static_cast<int32_t>(token), text[sign] == '-' ? -bias : bias};
}

uint64_t parse_seed(const std::string& text) {
  if (text == "-1") return ARIADNE_SEED_RANDOM;
  std::istringstream in(text);
  uint64_t seed = 0;
  if (text.empty() || text[0] == '-' || !(in >> seed) || !in.eof() || seed == ARIADNE_SEED_RANDOM)
    fail("--seed: '{}' is not a seed (an integer in [0, 2^64 - 2], or -1 for a random one)", text);
  return seed;
}

}  // namespace

void add_generation_flags(CLI::App* cmd, GenerationFlags& f) {
  cmd->add_option("-m,--model", f.model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  cmd->add_option("--tokenizer", f.tokenizer, "Tokenizer file (llama2.c checkpoints: tokenizer.bin)");
  cmd->add_option("-n,--n-predict", f.n_predict, "Tokens to generate (-1: until the context is full)");
  cmd->add_option(
      "-c,--ctx-size", f.n_ctx,
      "Context size in tokens (0: min(trained, 4096); run raises it to prompt + -n, up to trained)");
  cmd->add_option("-b,--batch-size", f.n_batch, "Prompt tokens per forward call while prefilling");
  cmd->add_option("--cache-type", f.cache_type, "KV cache type: f32 (default, exact), f16, bf16, q8_0");
  cmd->add_flag(
      "--exact-matmul", f.exact_matmul,
      "Quantized weights with f32 activations instead of 8-bit ones (slower; the dequantized model's "
      "exact arithmetic)");
  cmd->add_option("-t,--threads", f.threads, "CPU threads (default: all cores)");
  cmd->add_option("--temp", f.sampler.temperature, "Temperature (<= 0: greedy)");
  cmd->add_option("--top-k", f.sampler.top_k, "Top-k (0: off)");
  cmd->add_option("--top-p", f.sampler.top_p, "Top-p, in (0, 1] (1: off)");
  cmd->add_option("--min-p", f.sampler.min_p, "Min-p, in [0, 1] (0: off)");
  cmd->add_option("--repeat-penalty", f.sampler.repeat_penalty, "Repeat penalty (1: off)");
  cmd->add_option("--repeat-last-n", f.sampler.repeat_last_n, "Tokens the penalties look back on (0: off)");
  cmd->add_option("--presence-penalty", f.sampler.presence_penalty, "Presence penalty (0: off)");
  cmd->add_option("--frequency-penalty", f.sampler.frequency_penalty, "Frequency penalty (0: off)");
  cmd->add_option("-s,--seed", f.seed, "Sampling seed (-1: random; the one used is reported)");
  cmd->add_option("-l,--logit-bias", f.logit_bias, "TOKEN+BIAS or TOKEN-BIAS, e.g. 2-inf bans token 2");
  cmd->add_option("--stop", f.stop, "Stop when the text contains this string (repeatable; not printed)");
  cmd->add_flag("--ignore-eos", f.ignore_eos, "Never sample the end-of-generation tokens");
  cmd->add_flag("--no-bos", f.no_bos, "Do not add BOS to the prompt text");
  add_kv_policy_flags(cmd, f.kv);
  add_attention_flags(cmd, f.attn);
}

CheckedGeneration::CheckedGeneration(const GenerationFlags& f) : sampler_(f.sampler) {
  sampler_.seed = parse_seed(f.seed);
  for (const std::string& b : f.logit_bias) biases_.push_back(parse_logit_bias(b));
  sampler_.logit_bias = biases_.data();
  sampler_.n_logit_bias = static_cast<int32_t>(biases_.size());
  sampler_.ignore_eos = f.ignore_eos;
  api::Sampler::validate(sampler_);
  if (f.n_predict < -1)
    fail("-n: expected -1 (until the context is full) or a count >= 0, got {}", f.n_predict);
  if (f.n_ctx < 0 || f.n_ctx > INT32_MAX)
    fail("-c: expected a context size >= 1 (or 0 for the default), got {}", f.n_ctx);
  if (f.n_batch < 1 || f.n_batch > INT32_MAX) fail("-b: expected a batch size >= 1, got {}", f.n_batch);
  for (const std::string& s : f.stop)
    if (s.empty()) fail("--stop: a stop string must not be empty");
  const std::string& t = f.cache_type;
  if (t != "f32" && t != "f16" && t != "bf16" && t != "q8_0")
    fail("--cache-type: unknown KV cache type '{}' (expected f32, f16, bf16 or q8_0)", t);
  kv_policy_config(f.kv, 512);  // throws naming the flag
  attention_config(f.attn);
}

api::Model load_model(const GenerationFlags& f, bool need_tokenizer) {
  if (!f.tokenizer.empty() && !std::ifstream(f.tokenizer))
    fail("{}: cannot open the tokenizer file (--tokenizer)", f.tokenizer);
  api::Model model(f.model, f.tokenizer);
  if (need_tokenizer && !model.has_tokenizer()) fail("{}", model.tokenizer_error());
  return model;
}

ariadne_session_params session_params(const GenerationFlags& f, int64_t n_ctx, int64_t generation) {
  ariadne_session_params p{};
  p.n_ctx = static_cast<int32_t>(n_ctx);
  p.n_threads =
      f.threads > 0 ? f.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p.n_batch = static_cast<int32_t>(f.n_batch);
  p.kv_type = f.cache_type.c_str();
  p.exact_matmul = f.exact_matmul;
  if (f.kv.policy != "full")
    set_kv_policy_params(f.kv, generation >= 0 ? generation : (f.n_predict >= 0 ? f.n_predict : 512), &p);
  set_attention_params(f.attn, &p);
  return p;
}

int64_t default_context(int64_t n_ctx_train, int64_t n_prompt, int32_t n_predict) {
  const int64_t trained = n_ctx_train > 0 ? n_ctx_train : INT64_MAX;
  const int64_t need = n_prompt + std::max<int32_t>(n_predict, 0);
  return std::max(std::min<int64_t>(trained, 4096), std::min(need, trained));
}

Decoded decode_loop(const api::Model& model, api::Session& session, api::Sampler& sampler,
                    api::TextStream* text, int32_t n_predict,
                    const std::function<void(std::string_view)>& on_text,
                    const std::function<void(int32_t)>& on_token) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto emit = [&] {
    const std::string_view piece = text->take();
    if (!piece.empty() && on_text) on_text(piece);
  };
  Decoded d;
  const float* logits = session.logits();
  if (n_predict == 0) d.stop_reason = "length";
  while (d.stop_reason.empty()) {
    const int32_t token = sampler.sample(logits, /*accept=*/false);
    if (model.is_end_of_generation(token)) {
      d.stop_reason = "eos";
      break;
    }
    sampler.accept(token);
    d.tokens.push_back(token);
    if (on_token) on_token(token);
    if (text != nullptr) {
      const bool stopped = text->push(token);
      emit();
      if (stopped) {
        d.stop_reason = "stop";
        break;
      }
    }
    if (n_predict >= 0 && static_cast<int64_t>(d.tokens.size()) >= n_predict) {
      d.stop_reason = "length";
    } else if (session.n_past() >= session.n_ctx()) {
      d.stop_reason = "context";
    } else {
      logits = session.decode(token);
    }
  }
  if (text != nullptr && d.stop_reason != "stop") {
    if (text->finish()) d.stop_reason = "stop";
    emit();
  }
  d.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return d;
}

void write_out(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

double per_second(int64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

void print_kv_policy_summary(const api::Session& session) {
  const ariadne_cache_stats cache = session.cache_stats();
  const ariadne_kv_policy_stats p = session.kv_policy_stats();
  if (p.budget_clamped)
    std::fprintf(
        stderr,
        "ariadne: warning: the KV budget was raised to the policy's minimum of %lld entries per head\n",
        static_cast<long long>(p.budget));
  std::fprintf(stderr,
               "ariadne: kv cache: %.2f MiB held (%.2f MiB full), %lld entries, budget %lld per head | %lld "
               "layer compressions after the prompt (%.3f s), %lld during decode (%.3f s)\n",
               cache.bytes / 1048576.0, cache.bytes_capacity / 1048576.0,
               static_cast<long long>(cache.entries), static_cast<long long>(p.budget),
               static_cast<long long>(p.prefill_compressions), p.prefill_seconds,
               static_cast<long long>(p.decode_compressions), p.decode_seconds);
}

}  // namespace ariadne::cli
