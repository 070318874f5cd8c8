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
// --chat: `ariadne chat` (cmd_chat.cpp) with -p / -f as the system prompt.
//
// --xl3m (xl3m_run.cpp): an input longer than the window is answered from its segments the model is most
// certain about (../shared/specs/xl3m.md); only the answer is printed. Without it such an input is refused
// with a message that suggests it.
//
// Everything goes through the public API (include/ariadne/ariadne.hpp); generation.h holds what run and chat
// share. --ids-file reads the prompt ids from a file (a JSON array, as `ariadne tokenize` prints, or ids
// separated by commas or whitespace), for prompts too long for one command-line argument.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "generation.h"
#include "progress.h"
#include "xl3m_run.h"

namespace ariadne::cli {

namespace {

struct RunOptions {
  GenerationFlags gen;
  std::string prompt;
  std::string file;
  std::string ids;
  std::string ids_file;
  bool no_display_prompt = false;
  bool chat = false;
  std::string chat_family;
  Xl3mFlags xl3m;
  // Which prompt source was given (an empty -p "" counts).
  CLI::Option* prompt_opt = nullptr;
  CLI::Option* file_opt = nullptr;
  CLI::Option* ids_opt = nullptr;
  CLI::Option* ids_file_opt = nullptr;
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

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the {}", path, what);
  std::string text(std::istreambuf_iterator<char>(in), {});
  if (in.bad()) fail("{}: cannot read the {}", path, what);
  return text;
}

// --ids-file: a JSON array ("[1, 2, 3]", what `ariadne tokenize` prints) or ids separated by commas or
// whitespace.
std::vector<int32_t> read_id_file(const std::string& path) {
  std::string text = read_file(path, "token id file (--ids-file)");
  const size_t open = text.find_first_not_of(" \t\r\n");
  if (open != std::string::npos && text[open] == '[') {
    const size_t close = text.find_last_not_of(" \t\r\n");
    if (text[close] != ']') fail("{}: a JSON array of ids must end with ']'", path);
    text = text.substr(open + 1, close - open - 1);
  }
  std::replace(text.begin(), text.end(), ',', ' ');
  std::istringstream in(text);
  std::vector<int32_t> ids;
  for (std::string item; in >> item;) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (end != item.c_str() + item.size() || v < INT32_MIN || v > INT32_MAX)
      fail("{}: '{}' (id {}) is not a token id (--ids-file)", path, item, ids.size());
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) fail("{}: no token ids in the file (--ids-file)", path);
  return ids;
}

int run_generate(const RunOptions& o) {
  // Everything the user can get wrong is checked before the model is loaded.
  const GenerationFlags& g = o.gen;
  const CheckedGeneration checked(g);
  if (!o.chat_family.empty() && !o.chat) fail("--chat-template-family needs --chat");
  check_xl3m_flags(o.xl3m);
  if (o.xl3m.enabled && o.chat) fail("--xl3m answers one prompt; it does not combine with --chat");
  if (o.chat) {
    if (o.ids_opt->count() > 0 || o.ids_file_opt->count() > 0)
      fail("--chat takes text turns on stdin, not --ids");
    if (o.prompt_opt->count() > 0 && o.file_opt->count() > 0)
      fail("give the system prompt with -p or -f, not both");
    ChatFlags chat;
    chat.gen = g;
    chat.system = o.file_opt->count() > 0 ? read_file(o.file, "prompt file (-f)") : o.prompt;
    chat.chat_family = o.chat_family;
    return run_chat(chat, checked);
  }
  const int sources = static_cast<int>(o.prompt_opt->count() > 0) +
                      static_cast<int>(o.file_opt->count() > 0) + static_cast<int>(o.ids_opt->count() > 0) +
                      static_cast<int>(o.ids_file_opt->count() > 0);
  if (sources != 1) fail("give exactly one prompt: -p TEXT, -f FILE or --ids 1,2,3");
  const bool ids_mode = o.ids_opt->count() > 0 || o.ids_file_opt->count() > 0;
  std::vector<int32_t> prompt;
  std::string prompt_text;
  if (o.ids_opt->count() > 0) prompt = parse_id_list(o.ids);
  if (o.ids_file_opt->count() > 0) prompt = read_id_file(o.ids_file);
  if (o.xl3m.enabled) {
    Xl3mInputSource input;
    if (ids_mode) {
      input.ids = &prompt;
    } else if (o.file_opt->count() > 0) {
      input.file = &o.file;
    } else {
      input.text = &o.prompt;
    }
    return run_xl3m(g, checked, o.xl3m, input);
  }
  if (o.file_opt->count() > 0) prompt_text = read_file(o.file, "prompt file (-f)");
  if (o.prompt_opt->count() > 0) prompt_text = o.prompt;

  // What the process held before the model (code, libraries): peak resident memory minus this is what the
  // run added, the number to hold against the prediction.
  const uint64_t baseline_rss = api::peak_resident_bytes();
  const api::Model model = load_model(g, !ids_mode);
  const bool has_tokenizer = model.has_tokenizer();
  if (!g.stop.empty() && !has_tokenizer)
    fail("--stop needs a tokenizer and {} has none ({})", g.model, model.tokenizer_error());
  if (!ids_mode) {
    // Control tokens written in the prompt ("<|eot_id|>") are tokens, as llama-cli reads its prompt.
    prompt = model.tokenize(prompt_text, !g.no_bos, true);
    if (prompt.empty())
      fail("the prompt is empty after tokenization and the vocabulary adds no BOS: give some text");
  } else if (has_tokenizer) {
    // Echo what the ids say, where the tokenizer knows them all.
    const bool decodable = std::all_of(prompt.begin(), prompt.end(),
                                       [&](int32_t id) { return id >= 0 && id < model.n_tokens(); });
    if (decodable) prompt_text = model.detokenize(prompt, false);
  }
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t n_ctx = g.n_ctx > 0 ? g.n_ctx : default_context(model.n_ctx_train(), n_prompt, g.n_predict);
  if (n_prompt > n_ctx) {
    if (g.n_ctx > 0)
      fail(
          "the prompt has {} tokens but the context (-c) holds only {} (or pass --xl3m to answer from the "
          "parts of it most relevant to its question)",
          n_prompt, n_ctx);
    fail(
        "the prompt has {} tokens, more than the model's trained context of {}: pass --xl3m to answer from "
        "the parts of it most relevant to its question (with --question TEXT, or its last sentence as the "
        "question), or -c to go beyond the trained context",
        n_prompt, n_ctx);
  }
  if (n_ctx > INT32_MAX) fail("-c: a context of {} tokens is more than the {} supported", n_ctx, INT32_MAX);
  const int32_t n_vocab = model.n_vocab();
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= n_vocab)
      fail("prompt token {} (at index {}) is outside the model's vocabulary [0, {})", prompt[i], i, n_vocab);

  // A KV policy's budget counts the tokens to generate: -n, or what the context leaves for them.
  const ariadne_session_params sp =
      session_params(g, n_ctx, g.n_predict >= 0 ? g.n_predict : n_ctx - n_prompt);
  const ariadne_memory_estimate predicted = model.estimate_memory(sp);
  api::Session session(model, sp);
  if (!g.json && g.kv.policy != "full")
    std::fprintf(stderr, "ariadne: kv policy: %s\n", session.kv_policy().c_str());
  api::Sampler sampler(model, checked.sampler());
  for (const int32_t id : prompt) sampler.accept(id);
  std::unique_ptr<api::TextStream> text;
  if (has_tokenizer) {
    text = std::make_unique<api::TextStream>(model, g.stop);
    text->begin(prompt);
  }

  const bool show_prompt = !g.json && !o.no_display_prompt && has_tokenizer;
  ProgressBar bar("prefill", "tok", !g.json);
  session.prefill(prompt, [&](int32_t done, int32_t total) {
    bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
    if (done < total) return true;
    // The bar's line is finished before stdout writes, so that on one terminal they do not overwrite.
    bar.finish();
    if (show_prompt) write_out(prompt_text);
    return true;
  });
  const double prefill_seconds = session.timings().prefill_seconds;

  bool first_id = true;
  std::function<void(std::string_view)> on_text;
  std::function<void(int32_t)> on_token;
  if (!g.json && has_tokenizer) on_text = write_out;
  if (!g.json && !has_tokenizer) {
    on_token = [&](int32_t id) {
      std::string piece = first_id ? "" : ",";
      piece += std::to_string(id);
      write_out(piece);
      first_id = false;
    };
  }
  const Decoded r = decode_loop(model, session, sampler, text.get(), g.n_predict, on_text, on_token);
  const auto n_gen = static_cast<int64_t>(r.tokens.size());

  if (g.json) {
    const ariadne_cache_stats cache = session.cache_stats();
    nlohmann::json j;
    j["text"] = text ? nlohmann::json(std::string(text->text())) : nlohmann::json(nullptr);
    j["prompt_tokens"] = prompt;
    j["n_prompt"] = n_prompt;
    j["generated_tokens"] = r.tokens;
    j["n_generated"] = n_gen;
    j["stop_reason"] = r.stop_reason;
    j["seed"] = sampler.seed();
    j["n_ctx"] = session.n_ctx();
    j["timings"] = {{"prefill_seconds", prefill_seconds},
                    {"decode_seconds", r.seconds},
                    {"prefill_tokens_per_second", per_second(n_prompt, prefill_seconds)},
                    {"decode_tokens_per_second", per_second(n_gen, r.seconds)}};
    j["kv_cache"] = {{"type", g.cache_type},
                     {"bytes", cache.bytes},
                     {"bytes_capacity", cache.bytes_capacity},
                     {"entries", cache.entries}};
    const ariadne_kv_policy_stats ps = session.kv_policy_stats();
    j["kv_policy"] = {{"name", g.kv.policy},
                      {"description", session.kv_policy()},
                      {"budget_entries", ps.budget},
                      {"budget_clamped", ps.budget_clamped},
                      {"prefill_compressions", ps.prefill_compressions},
                      {"decode_compressions", ps.decode_compressions},
                      {"prefill_compress_seconds", ps.prefill_seconds},
                      {"decode_compress_seconds", ps.decode_seconds}};
    // The prediction (ariadne_estimate_memory, as `ariadne bench` prints it) next to what the process held.
    j["memory"] = {{"predicted_bytes",
                    {{"weights", predicted.weights},
                     {"kv", predicted.kv},
                     {"activations", predicted.activations},
                     {"total", predicted.total}}},
                   {"peak_rss_bytes", api::peak_resident_bytes()},
                   {"baseline_rss_bytes", baseline_rss},
                   {"available_bytes", predicted.available}};
    if (g.attn.method != "dense") j["attention"] = attention_json(session);
    // Generated bytes need not be valid UTF-8 (a model may stop inside a character).
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  write_out("\n");
  if (!has_tokenizer)
    std::fprintf(stderr, "ariadne: no tokenizer (%s): printed token ids\n", model.tokenizer_error().c_str());
  std::fprintf(stderr,
               "ariadne: stop: %s | prompt %lld tokens in %.3f s (%.1f tok/s) | generated %lld tokens in "
               "%.3f s (%.1f tok/s) | seed %llu\n",
               r.stop_reason.c_str(), static_cast<long long>(n_prompt), prefill_seconds,
               per_second(n_prompt, prefill_seconds), static_cast<long long>(n_gen), r.seconds,
               per_second(n_gen, r.seconds), static_cast<unsigned long long>(sampler.seed()));
  if (g.kv.policy != "full") print_kv_policy_summary(session);
  if (g.attn.method != "dense") print_attention_summary(session);
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt, streamed to stdout");
  add_generation_flags(cmd, o->gen);
  o->prompt_opt = cmd->add_option("-p,--prompt", o->prompt, "Prompt text (BOS added as the vocabulary says)");
  o->file_opt = cmd->add_option("-f,--file", o->file, "Read the prompt text from a file");
  o->ids_opt = cmd->add_option("--ids", o->ids, "Prompt as comma-separated token ids, fed exactly as given");
  o->ids_file_opt = cmd->add_option("--ids-file", o->ids_file,
                                    "Prompt ids from a file: a JSON array (as `ariadne tokenize` prints) or "
                                    "ids separated by commas or whitespace");
  cmd->add_flag("--no-display-prompt", o->no_display_prompt, "Print only the generated text");
  cmd->add_flag("--json", o->gen.json,
                "Print one JSON object: text, tokens, stop reason, seed, timings, memory");
  cmd->add_flag("--chat", o->chat, "Chat as `ariadne chat` does, with -p / -f as the system prompt");
  add_xl3m_flags(cmd, o->xl3m);
  cmd->add_option(
      "--chat-template-family", o->chat_family,
      "Built-in chat template instead of the model's: llama3, llama2, mistral, chatml, qwen2, qwen3");
  cmd->callback([o, &action] { action = [o] { return run_generate(*o); }; });
}

}  // namespace ariadne::cli
