// ariadne chat: an interactive conversation with the chat template, over the public API.
//
// Each stdin line is a user turn ("/reset" starts the conversation over, "/exit" or end of input ends it;
// empty lines are skipped). The whole conversation is rendered with the model's chat template (or
// --chat-template-family) and tokenized; the KV cache keeps what earlier turns evaluated, and only the
// tokens past the longest prefix the cache already holds are prefilled. When re-rendering changes earlier
// tokens (templates strip the reply, or the reply re-tokenizes differently from how it was generated; after
// /reset, everything past the system prompt) the cache is truncated to the common prefix, not cleared.
// Each turn therefore answers exactly as a fresh `ariadne run` on the rendered conversation would: the
// sampler starts over at the seed every turn and sees the whole conversation for its penalties.
//
// The reply streams to stdout followed by a newline; with --json one object per turn instead (text,
// tokens, stop reason, tokens reused from the cache and prefilled, timings). "> " is shown on stderr
// before each turn only when stdin is a terminal. --verbose prints each turn's statistics on stderr.
// `ariadne run --chat` is this command with -p / -f as the system prompt.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "generation.h"
#include "progress.h"

namespace ariadne::cli {

int run_chat(const ChatFlags& f, const CheckedGeneration& checked) {
  const GenerationFlags& g = f.gen;
  const api::Model model = load_model(g, /*need_tokenizer=*/true);
  std::string tmpl;
  if (!f.chat_family.empty()) {
    tmpl = api::builtin_chat_template(f.chat_family);
  } else if (model.chat_template() != nullptr) {
    tmpl = model.chat_template();
  } else {
    fail(
        "{}: the model has no chat template; pick a built-in one with --chat-template-family (llama3, "
        "llama2, mistral, chatml, qwen2, qwen3)",
        g.model);
  }
  const std::string bos_text = model.bos() >= 0 ? model.token_text(model.bos()) : "";

  const int64_t n_ctx = g.n_ctx > 0 ? g.n_ctx : default_context(model.n_ctx_train(), 0, 0);
  api::Session session(model, session_params(g, n_ctx));
  if (!g.json && g.kv.policy != "full")
    std::fprintf(stderr, "ariadne: kv policy: %s\n", session.kv_policy().c_str());
  api::Sampler sampler(model, checked.sampler());
  api::TextStream text(model, g.stop);
  const bool interactive = !g.json && ::isatty(STDIN_FILENO) == 1;

  std::vector<api::ChatMessage> messages;
  if (!f.system.empty()) messages.push_back({"system", f.system});
  const size_t n_fixed = messages.size();  // what /reset keeps
  int turn = 0;
  std::string line;
  for (;;) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line == "/reset") {
      // The cache keeps its tokens: the next turn truncates it to what it shares with the new conversation
      // (the system prompt), so that prefix is not evaluated again.
      messages.resize(n_fixed);
      if (interactive || f.verbose) std::fprintf(stderr, "ariadne: conversation reset\n");
      continue;
    }
    if (line.empty()) continue;
    ++turn;
    messages.push_back({"user", line});
    const std::string rendered =
        model.apply_chat_template(messages, /*add_generation_prompt=*/true, tmpl.c_str());
    // A template that writes bos_token itself gets no second BOS from the tokenizer.
    const bool add_bos =
        !g.no_bos && (bos_text.empty() || rendered.compare(0, bos_text.size(), bos_text) != 0);
    const std::vector<int32_t> ids = model.tokenize(rendered, add_bos, /*parse_special=*/true);
    if (ids.empty()) fail("turn {}: the conversation is empty after tokenization", turn);
    if (static_cast<int64_t>(ids.size()) > session.n_ctx())
      fail("turn {}: the conversation has {} tokens but the context holds only {} (raise -c, or /reset)",
           turn, ids.size(), session.n_ctx());

    // Reuse the longest prefix the cache holds; at least the last token is evaluated again, for its logits.
    const std::vector<int32_t> cached = session.tokens();
    size_t reused = 0;
    while (reused < cached.size() && reused < ids.size() && cached[reused] == ids[reused]) ++reused;
    reused = std::min(reused, ids.size() - 1);
    const size_t dropped = cached.size() - reused;
    if (dropped > 0) session.truncate(static_cast<int32_t>(reused));
    const std::vector<int32_t> fresh(ids.begin() + static_cast<std::ptrdiff_t>(reused), ids.end());

    sampler.reset();
    for (const int32_t id : ids) sampler.accept(id);
    text.begin(ids);
    session.reset_timings();
    ProgressBar bar("prefill", "tok", !g.json && static_cast<int64_t>(fresh.size()) > g.n_batch);
    session.prefill(fresh, [&](int32_t done, int32_t total) {
      bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
      if (done == total) bar.finish();
      return true;
    });
    const double prefill_seconds = session.timings().prefill_seconds;
    std::function<void(std::string_view)> on_text;
    if (!g.json) on_text = write_out;
    const Decoded r = decode_loop(model, session, sampler, &text, g.n_predict, on_text, {});
    const std::string reply(text.text());
    messages.push_back({"assistant", reply});

    const ariadne_cache_stats cache = session.cache_stats();
    if (g.json) {
      const nlohmann::json j = {
          {"turn", turn},
          {"text", reply},
          {"generated_tokens", r.tokens},
          {"stop_reason", r.stop_reason},
          {"n_reused", reused},
          {"n_dropped", dropped},
          {"n_prompt", fresh.size()},
          {"n_past", session.n_past()},
          {"kv_cache_bytes", cache.bytes},
          {"seed", sampler.seed()},
          {"timings", {{"prefill_seconds", prefill_seconds}, {"decode_seconds", r.seconds}}}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      std::fflush(stdout);
    } else {
      write_out("\n");
    }
    if (f.verbose)
      std::fprintf(
          stderr,
          "ariadne: turn %d: %zu tokens reused from the KV cache, %zu dropped, %zu prefilled in %.3f s | "
          "generated %zu in %.3f s (stop: %s) | cache %d tokens, %.2f MiB | seed %llu\n",
          turn, reused, dropped, fresh.size(), prefill_seconds, r.tokens.size(), r.seconds,
          r.stop_reason.c_str(), session.n_past(), cache.bytes / 1048576.0,
          static_cast<unsigned long long>(sampler.seed()));
  }
  return 0;
}

namespace {

struct ChatCliOptions {
  ChatFlags chat;
};

}  // namespace

void add_chat_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<ChatCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "chat", "Interactive chat: each stdin line is a user turn (/reset starts over, /exit or EOF ends)");
  add_generation_flags(cmd, o->chat.gen);
  cmd->add_option("--system", o->chat.system, "System prompt");
  cmd->add_option(
      "--chat-template-family", o->chat.chat_family,
      "Built-in chat template instead of the model's: llama3, llama2, mistral, chatml, qwen2, qwen3");
  cmd->add_flag("--json", o->chat.gen.json,
                "One JSON object per turn: text, tokens, stop reason, tokens reused and prefilled, timings");
  cmd->add_flag("-v,--verbose", o->chat.verbose,
                "Per-turn statistics on stderr: tokens reused from the cache, prefilled, generated");
  cmd->callback([o, &action] {
    action = [o] {
      const CheckedGeneration checked(o->chat.gen);
      return run_chat(o->chat, checked);
    };
  });
}

}  // namespace ariadne::cli
