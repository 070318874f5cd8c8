// ariadne run: generate text from a prompt, streamed to stdout as it is produced.
//
// Flags follow llama.cpp's llama-cli where it has them (-m -p -f -n -c -b -t -s -l, --temp, --top-k, ...).
// Output: the prompt (unless --no-display-prompt), then the generated text, flushed per piece, then a
// newline; a summary (stop reason, token counts, speeds, seed) goes to stderr. Without a tokenizer (a
// Hugging Face folder with no tokenizer.json, fed with --ids) the generated ids are printed instead,
// comma-separated. --json prints one object instead of all of this.
//
// Default context (-c 0): the smaller of the model's trained context and 4096, raised to prompt + -n when
// that is more (never past the trained context: going beyond it takes an explicit -c). The KV memory for
// it is checked against available memory when the session is created, which fails with a clear message.
// -n -1 (the default) generates until an end-of-generation token or a full context.
//
// --chat: each stdin line is a user turn, rendered with the model's chat template (or
// --chat-template-family); -p / -f give the system prompt; replies stream to stdout, one line each, or
// one JSON object per turn with --json. The conversation stays in the KV memory between turns.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache_type.h"
#include "commands.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "progress.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"

namespace ariadne::cli {

namespace {

struct RunOptions {
  std::string model;
  std::string prompt;
  std::string file;
  std::string ids;
  std::string tokenizer;
  int32_t n_predict = -1;
  int64_t n_ctx = 0;
  int64_t n_batch = 512;
  std::string cache_type = "f32";
  int threads = 0;
  SamplerParams sampler;
  std::string seed = "-1";
  std::vector<std::string> stop;
  std::vector<std::string> logit_bias;
  bool ignore_eos = false;
  bool no_bos = false;
  bool no_display_prompt = false;
  bool json = false;
  bool chat = false;
  std::string chat_family;
  // Which prompt source was given (an empty -p "" counts).
  CLI::Option* prompt_opt = nullptr;
  CLI::Option* file_opt = nullptr;
  CLI::Option* ids_opt = nullptr;
};

// "1,2,3" -> ids. Whitespace around an id is allowed; anything else that is not an integer is not.
std::vector<int32_t> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(begin, end - begin);
    std::istringstream in(item);
    long long v = 0;
    if (!(in >> v) || !(in >> std::ws).eof() || v < INT32_MIN || v > INT32_MAX)
      fail("--ids: '{}' is not a token id (expected comma-separated integers such as 1,2,3)", item);
    ids.push_back(static_cast<int32_t>(v));
    begin = end + 1;
  }
  return ids;
}

// llama.cpp's form: TOKEN+BIAS or TOKEN-BIAS, e.g. 15043+1, 2-inf (ban token 2).
std::pair<int32_t, float> parse_logit_bias(const std::string& text) {
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
  if (text == "-1") return kRandomSeed;
  std::istringstream in(text);
  uint64_t seed = 0;
  if (text.empty() || text[0] == '-' || !(in >> seed) || !in.eof() || seed == kRandomSeed)
    fail("--seed: '{}' is not a seed (an integer in [0, 2^64 - 2], or -1 for a random one)", text);
  return seed;
}

std::string read_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the prompt file (-f)", path);
  std::string text(std::istreambuf_iterator<char>(in), {});
  if (in.bad()) fail("{}: cannot read the prompt file (-f)", path);
  return text;
}

// The tokenizer to use: --tokenizer or the model's own. With --ids a model may have none (Hugging Face
// test folders): then nullptr, and the reason is kept for the user.
std::unique_ptr<Tokenizer> load_tokenizer(const RunOptions& o, bool ids_mode, std::string* missing) {
  if (!o.tokenizer.empty() && !std::ifstream(o.tokenizer))
    fail("{}: cannot open the tokenizer file (--tokenizer)", o.tokenizer);
  if (!ids_mode || !o.tokenizer.empty()) return Tokenizer::create(load_model_vocab(o.model, o.tokenizer));
  try {
    return Tokenizer::create(load_model_vocab(o.model));
  } catch (const Error& e) {
    *missing = e.what();
    return nullptr;
  }
}

int64_t default_context(const ModelConfig& config, int64_t n_prompt, int32_t n_predict) {
  const int64_t trained = config.n_ctx_train > 0 ? config.n_ctx_train : INT64_MAX;
  const int64_t need = n_prompt + std::max<int32_t>(n_predict, 0);
  return std::max(std::min<int64_t>(trained, 4096), std::min(need, trained));
}

double per_second(int64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

void write_out(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// Interactive chat: each stdin line is a user turn; the conversation is rendered with the chat template
// and only what is new since the last turn is evaluated. The KV memory holds exactly the tokens of the
// rendered conversation so far; when re-rendering changes earlier tokens (templates strip or re-tokenize
// the assistant's reply differently from how it was generated), the session is cleared and the
// conversation evaluated again from the start, since Session cannot drop only its tail.
int run_chat(const RunOptions& o, const SamplerParams& sampler) {
  if (o.ids_opt->count() > 0) fail("--chat takes text turns on stdin, not --ids");
  if (o.prompt_opt->count() > 0 && o.file_opt->count() > 0)
    fail("give the system prompt with -p or -f, not both");
  std::string system = o.prompt;
  if (o.file_opt->count() > 0) system = read_prompt_file(o.file);
  std::shared_ptr<const ModelSource> source = open_model(o.model);
  std::string unused;
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(o, false, &unused);
  const Vocab& vocab = tokenizer->vocab();
  const std::string source_text =
      o.chat_family.empty() ? vocab.chat_template : builtin_chat_template(o.chat_family);
  if (source_text.empty())
    fail(
        "{}: the model has no chat template; pick a built-in one with --chat-template-family (llama3, "
        "llama2, mistral, chatml, qwen2, qwen3)",
        o.model);
  const ChatTemplate tmpl(source_text);
  ChatTemplateOptions render_options;
  render_options.add_generation_prompt = true;
  if (vocab.bos_id >= 0) render_options.bos_token = vocab.tokens[static_cast<size_t>(vocab.bos_id)];
  if (vocab.eos_id >= 0) render_options.eos_token = vocab.tokens[static_cast<size_t>(vocab.eos_id)];

  SessionOptions so;
  so.n_ctx = o.n_ctx > 0 ? o.n_ctx : default_context(source->config, 0, 0);
  so.n_batch = o.n_batch;
  so.kv_type = parse_cache_type(o.cache_type);
  so.n_threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Session session(source, so);
  const bool interactive = !o.json && ::isatty(STDIN_FILENO) == 1;

  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  std::vector<int32_t> in_kv;  // the tokens the session holds, [session.n_past()]
  std::string line;
  for (;;) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    messages.push_back({"user", line});
    const std::string text = tmpl.render(messages, render_options);
    // A template that writes bos_token itself gets no second BOS from the tokenizer.
    const bool add_bos =
        !o.no_bos && (render_options.bos_token.empty() ||
                      text.compare(0, render_options.bos_token.size(), render_options.bos_token) != 0);
    const std::vector<int32_t> ids = tokenizer->encode(text, add_bos, true);
    size_t reused = 0;
    while (reused < in_kv.size() && reused < ids.size() && in_kv[reused] == ids[reused]) ++reused;
    if (reused < in_kv.size() || reused == ids.size()) {
      session.clear();
      in_kv.clear();
      reused = 0;
    }
    const std::span<const int32_t> fresh = std::span<const int32_t>(ids).subspan(reused);
    GenerationOptions go;
    go.n_predict = o.n_predict;
    go.sampler = sampler;
    go.stop = o.stop;
    go.ignore_eos = o.ignore_eos;
    go.n_batch = o.n_batch;
    if (!o.json) go.on_text = write_out;
    const GenerationResult r = generate(session, tokenizer.get(), fresh, go);
    in_kv.insert(in_kv.end(), fresh.begin(), fresh.end());
    // Every generated token but the last was evaluated.
    in_kv.insert(in_kv.end(), r.tokens.begin(),
                 r.tokens.begin() + (session.n_past() - static_cast<int64_t>(in_kv.size())));
    messages.push_back({"assistant", r.text});
    if (o.json) {
      const nlohmann::json j = {
          {"text", r.text},     {"generated_tokens", r.tokens}, {"stop_reason", r.stop_reason},
          {"n_reused", reused}, {"n_prompt", r.n_prompt},       {"seed", r.seed}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      std::fflush(stdout);
    } else {
      write_out("\n");
    }
  }
  return 0;
}

int run_generate(const RunOptions& o) {
  // Everything the user can get wrong is checked before the model is loaded.
  SamplerParams sampler = o.sampler;
  sampler.seed = parse_seed(o.seed);
  for (const std::string& b : o.logit_bias) sampler.logit_bias.push_back(parse_logit_bias(b));
  validate(sampler);
  if (o.n_predict < -1)
    fail("-n: expected -1 (until the context is full) or a count >= 0, got {}", o.n_predict);
  if (o.n_ctx < 0) fail("-c: expected a context size >= 1 (or 0 for the default), got {}", o.n_ctx);
  if (o.n_batch < 1) fail("-b: expected a batch size >= 1, got {}", o.n_batch);
  for (const std::string& s : o.stop)
    if (s.empty()) fail("--stop: a stop string must not be empty");
  if (!o.chat_family.empty() && !o.chat) fail("--chat-template-family needs --chat");
  if (o.chat) return run_chat(o, sampler);
  const int sources = static_cast<int>(o.prompt_opt->count() > 0) +
                      static_cast<int>(o.file_opt->count() > 0) + static_cast<int>(o.ids_opt->count() > 0);
  if (sources != 1) fail("give exactly one prompt: -p TEXT, -f FILE or --ids 1,2,3");
  const bool ids_mode = o.ids_opt->count() > 0;
  std::vector<int32_t> prompt;
  std::string prompt_text;
  if (ids_mode) prompt = parse_id_list(o.ids);
  if (o.file_opt->count() > 0) prompt_text = read_prompt_file(o.file);
  if (o.prompt_opt->count() > 0) prompt_text = o.prompt;

  std::shared_ptr<const ModelSource> source = open_model(o.model);
  std::string missing_tokenizer;
  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(o, ids_mode, &missing_tokenizer);
  if (!o.stop.empty() && tokenizer == nullptr)
    fail("--stop needs a tokenizer and {} has none ({})", o.model, missing_tokenizer);
  if (!ids_mode) {
    // Control tokens written in the prompt ("<|eot_id|>") are tokens, as llama-cli reads its prompt.
    prompt = tokenizer->encode(prompt_text, !o.no_bos, true);
    if (prompt.empty())
      fail("the prompt is empty after tokenization and the vocabulary adds no BOS: give some text");
  } else if (tokenizer != nullptr) {
    // Echo what the ids say, where the tokenizer knows them all.
    const bool decodable = std::all_of(prompt.begin(), prompt.end(),
                                       [&](int32_t id) { return id >= 0 && id < tokenizer->vocab().size(); });
    if (decodable) prompt_text = tokenizer->decode(prompt, false);
  }
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : default_context(source->config, n_prompt, o.n_predict);
  if (n_prompt > n_ctx) {
    if (o.n_ctx > 0) fail("the prompt has {} tokens but the context (-c) holds only {}", n_prompt, n_ctx);
    fail("the prompt has {} tokens, more than the model's trained context of {} (pass -c to go beyond it)",
         n_prompt, n_ctx);
  }

  SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_batch = o.n_batch;
  so.kv_type = parse_cache_type(o.cache_type);
  so.n_threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Session session(source, so);

  const bool show_prompt = !o.json && !o.no_display_prompt && tokenizer != nullptr;
  ProgressBar bar("prefill", "tok", !o.json);
  GenerationOptions go;
  go.n_predict = o.n_predict;
  go.sampler = sampler;
  go.stop = o.stop;
  go.ignore_eos = o.ignore_eos;
  go.n_batch = o.n_batch;
  go.on_prefill = [&](int64_t done, int64_t total) {
    bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
    if (done < total) return;
    // The bar's line is finished before stdout writes, so that on one terminal they do not overwrite.
    bar.finish();
    if (show_prompt) write_out(prompt_text);
  };
  bool first_id = true;
  if (!o.json && tokenizer != nullptr) go.on_text = write_out;
  if (!o.json && tokenizer == nullptr) {
    go.on_token = [&](int32_t id) {
      std::string piece = first_id ? "" : ",";
      piece += std::to_string(id);
      write_out(piece);
      first_id = false;
    };
  }
  const GenerationResult r = generate(session, tokenizer.get(), prompt, go);
  const auto n_gen = static_cast<int64_t>(r.tokens.size());

  if (o.json) {
    nlohmann::json j;
    j["text"] = tokenizer != nullptr ? nlohmann::json(r.text) : nlohmann::json(nullptr);
    j["prompt_tokens"] = prompt;
    j["n_prompt"] = n_prompt;
    j["generated_tokens"] = r.tokens;
    j["n_generated"] = n_gen;
    j["stop_reason"] = r.stop_reason;
    j["seed"] = r.seed;
    j["n_ctx"] = session.n_ctx();
    j["timings"] = {{"prefill_seconds", r.prefill_seconds},
                    {"decode_seconds", r.decode_seconds},
                    {"prefill_tokens_per_second", per_second(n_prompt, r.prefill_seconds)},
                    {"decode_tokens_per_second", per_second(n_gen, r.decode_seconds)}};
    // Generated bytes need not be valid UTF-8 (a model may stop inside a character).
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  write_out("\n");
  if (tokenizer == nullptr)
    std::fprintf(stderr, "ariadne: no tokenizer (%s): printed token ids\n", missing_tokenizer.c_str());
  std::fprintf(stderr,
               "ariadne: stop: %s | prompt %lld tokens in %.3f s (%.1f tok/s) | generated %lld tokens in "
               "%.3f s (%.1f tok/s) | seed %llu\n",
               r.stop_reason.c_str(), static_cast<long long>(n_prompt), r.prefill_seconds,
               per_second(n_prompt, r.prefill_seconds), static_cast<long long>(n_gen), r.decode_seconds,
               per_second(n_gen, r.decode_seconds), static_cast<unsigned long long>(r.seed));
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt, streamed to stdout");
  cmd->add_option("-m,--model", o->model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  o->prompt_opt = cmd->add_option("-p,--prompt", o->prompt, "Prompt text (BOS added as the vocabulary says)");
  o->file_opt = cmd->add_option("-f,--file", o->file, "Read the prompt text from a file");
  o->ids_opt = cmd->add_option("--ids", o->ids, "Prompt as comma-separated token ids, fed exactly as given");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer file (llama2.c checkpoints: tokenizer.bin)");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (-1: until the context is full)");
  cmd->add_option("-c,--ctx-size", o->n_ctx,
                  "Context size in tokens (0: min(trained, 4096), raised to prompt + -n up to trained)");
  cmd->add_option("-b,--batch-size", o->n_batch, "Prompt tokens per forward call while prefilling");
  cmd->add_option("--cache-type", o->cache_type, "KV cache type: f32 (default, exact), f16, bf16, q8_0");
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: all cores)");
  cmd->add_option("--temp", o->sampler.temperature, "Temperature (<= 0: greedy)");
  cmd->add_option("--top-k", o->sampler.top_k, "Top-k (0: off)");
  cmd->add_option("--top-p", o->sampler.top_p, "Top-p, in (0, 1] (1: off)");
  cmd->add_option("--min-p", o->sampler.min_p, "Min-p, in [0, 1] (0: off)");
  cmd->add_option("--repeat-penalty", o->sampler.repeat_penalty, "Repeat penalty (1: off)");
  cmd->add_option("--repeat-last-n", o->sampler.repeat_last_n, "Tokens the penalties look back on (0: off)");
  cmd->add_option("--presence-penalty", o->sampler.presence_penalty, "Presence penalty (0: off)");
  cmd->add_option("--frequency-penalty", o->sampler.frequency_penalty, "Frequency penalty (0: off)");
  cmd->add_option("-s,--seed", o->seed, "Sampling seed (-1: random; the one used is reported)");
  cmd->add_option("-l,--logit-bias", o->logit_bias, "TOKEN+BIAS or TOKEN-BIAS, e.g. 2-inf bans token 2");
  cmd->add_option("--stop", o->stop, "Stop when the text contains this string (repeatable; not printed)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Never sample the end-of-generation tokens");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS to a -p / -f prompt");
  cmd->add_flag("--no-display-prompt", o->no_display_prompt, "Print only the generated text");
  cmd->add_flag("--json", o->json, "Print one JSON object: text, tokens, stop reason, seed, timings");
  cmd->add_flag("--chat", o->chat,
                "Chat: each stdin line is a user turn, rendered with the chat template (-p: system prompt); "
                "--json prints one object per turn");
  cmd->add_option(
      "--chat-template-family", o->chat_family,
      "Built-in chat template instead of the model's: llama3, llama2, mistral, chatml, qwen2, qwen3");
  cmd->callback([o, &action] { action = [o] { return run_generate(*o); }; });
}

}  // namespace ariadne::cli
