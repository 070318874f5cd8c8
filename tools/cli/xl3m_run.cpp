#include "xl3m_run.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "progress.h"

namespace ariadne::cli {

namespace {

ariadne_xl3m_score parse_score(const std::string& name) {
  std::string n = name;
  for (char& c : n) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c == '_') c = '-';
  }
  if (n == "last-entropy") return ARIADNE_XL3M_LAST_ENTROPY;
  if (n == "mean-q-entropy") return ARIADNE_XL3M_MEAN_Q_ENTROPY;
  if (n == "q-nll") return ARIADNE_XL3M_Q_NLL;
  if (n == "fused") return ARIADNE_XL3M_FUSED;
  fail("--xl3m-score: unknown score '{}' (expected last-entropy, mean-q-entropy, q-nll or fused)", name);
}

const char* score_name(ariadne_xl3m_score s) {
  switch (s) {
    case ARIADNE_XL3M_LAST_ENTROPY:
      return "last-entropy";
    case ARIADNE_XL3M_MEAN_Q_ENTROPY:
      return "mean-q-entropy";
    case ARIADNE_XL3M_Q_NLL:
      return "q-nll";
    case ARIADNE_XL3M_FUSED:
      return "fused";
  }
  return "?";
}

// Reads the file block by block into the selector (encoded as it arrives: the whole text is never held).
void add_file(api::Xl3m& x, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the prompt file (-f)", path);
  // At most one id per byte: with that room the ids never move (no copy while they grow).
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  if (!ec) x.reserve(static_cast<int64_t>(bytes));
  std::vector<char> block(size_t{64} << 10);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto n = static_cast<size_t>(in.gcount());
    if (n > 0) x.add_text(std::string_view(block.data(), n));
  }
  if (in.bad()) fail("{}: cannot read the prompt file (-f)", path);
}

}  // namespace

void add_xl3m_flags(CLI::App* cmd, Xl3mFlags& f) {
  cmd->add_flag("--xl3m", f.enabled,
                "Inputs longer than the window: answer from the segments the model is most certain about "
                "(XL3M); the question is --question or the input's last sentence(s)");
  f.options.push_back(cmd->add_option(
      "--question", f.question, "With --xl3m: the question (and answer lead-in), asked after the input"));
  f.options.push_back(
      cmd->add_option("--xl3m-window", f.window,
                      "With --xl3m: tokens the key context and answer may take (0: the model's "
                      "trained context)"));
  f.options.push_back(cmd->add_option("--xl3m-segment", f.segment,
                                      "With --xl3m: content tokens per segment (0: min(512, window/8))"));
  f.options.push_back(cmd->add_option("--xl3m-overlap", f.overlap,
                                      "With --xl3m: tokens consecutive segments share (-1: segment/8)"));
  f.options.push_back(cmd->add_option("--xl3m-top-k", f.top_k,
                                      "With --xl3m: most segments chosen (0: as many as the window holds)"));
  f.options.push_back(cmd->add_option("--xl3m-score", f.score,
                                      "With --xl3m: certainty score: last-entropy (default), mean-q-entropy, "
                                      "q-nll, fused (last-entropy and mean-q-entropy interleaved)"));
  f.options.push_back(
      cmd->add_option("--xl3m-separator", f.separator,
                      "With --xl3m: text between chosen spans that are not contiguous (default: "
                      "a newline)"));
  f.options.push_back(
      cmd->add_option("--xl3m-lead", f.max_lead,
                      "With --xl3m: whitespace tokens the model surely emits after the question, appended "
                      "to it for scoring so that scores are read where the answer's content starts (0: the "
                      "question as given)"));
  f.options.push_back(cmd->add_flag("--xl3m-no-snap", f.no_snap,
                                    "With --xl3m: segment starts stay where the arithmetic puts them"));
}

void check_xl3m_flags(const Xl3mFlags& f) {
  if (!f.enabled) {
    for (const CLI::Option* o : f.options)
      if (o->count() > 0) fail("{} needs --xl3m", o->get_name());
    return;
  }
  if (f.window < 0)
    fail("--xl3m-window: expected a window >= 1 token (0: the trained context), got {}", f.window);
  if (f.segment < 0) fail("--xl3m-segment: expected a length >= 1 (0: the default), got {}", f.segment);
  if (f.overlap < -1) fail("--xl3m-overlap: expected >= 0 (-1: the default), got {}", f.overlap);
  if (f.segment > 0 && f.overlap >= f.segment)
    fail("--xl3m-overlap: {} is not smaller than the segment length {}", f.overlap, f.segment);
  if (f.top_k < 0) fail("--xl3m-top-k: expected >= 0 (0: as many as fit), got {}", f.top_k);
  if (f.max_lead < 0 || f.max_lead > 16)
    fail("--xl3m-lead: expected 0 to 16 tokens (0: the question as given), got {}", f.max_lead);
  if (f.window > INT32_MAX || f.segment > INT32_MAX || f.overlap > INT32_MAX || f.top_k > INT32_MAX)
    fail("--xl3m-*: values must fit in 32 bits");
  parse_score(f.score);
}

int run_xl3m(const GenerationFlags& g, const CheckedGeneration& checked, const Xl3mFlags& f,
             const Xl3mInputSource& input) {
  const uint64_t baseline_rss = api::peak_resident_bytes();
  const bool ids_mode = input.ids != nullptr;
  const api::Model model = load_model(g, !ids_mode);
  const bool has_tokenizer = model.has_tokenizer();
  if (!g.stop.empty() && !has_tokenizer)
    fail("--stop needs a tokenizer and {} has none ({})", g.model, model.tokenizer_error());
  if (!f.question.empty() && !has_tokenizer)
    fail("--question needs a tokenizer and {} has none ({})", g.model, model.tokenizer_error());

  ariadne_xl3m_params xp = ariadne_xl3m_default_params();
  xp.window = static_cast<int32_t>(f.window);
  xp.n_gen = g.n_predict >= 0 ? g.n_predict : 512;
  xp.segment = static_cast<int32_t>(f.segment);
  xp.overlap = static_cast<int32_t>(f.overlap);
  xp.top_k = static_cast<int32_t>(f.top_k);
  xp.score = parse_score(f.score);
  xp.snap = !f.no_snap;
  xp.max_lead = static_cast<int32_t>(f.max_lead);
  xp.separator = f.separator.c_str();
  xp.add_bos = !g.no_bos;
  api::Xl3m x(model, xp);
  if (ids_mode) {
    // Ids are fed exactly as given: a leading BOS is the prefix every sub-context starts with.
    const std::vector<int32_t>& ids = *input.ids;
    const bool bos = !ids.empty() && model.bos() >= 0 && ids.front() == model.bos();
    x.set_prefix_tokens(bos ? std::vector<int32_t>{ids.front()} : std::vector<int32_t>{});
    x.add_tokens(std::vector<int32_t>(ids.begin() + (bos ? 1 : 0), ids.end()));
  } else if (input.file != nullptr) {
    add_file(x, *input.file);
  } else {
    x.add_text(*input.text);
  }
  if (!f.question.empty()) x.set_question_text(f.question);

  const int64_t window = f.window > 0 ? f.window : model.n_ctx_train();
  if (window <= 0) fail("{}: the model gives no trained context; pass --xl3m-window", g.model);
  const int64_t n_ctx = g.n_ctx > 0 ? g.n_ctx : window;
  if (n_ctx > INT32_MAX) fail("-c: a context of {} tokens is more than the {} supported", n_ctx, INT32_MAX);

  // The scores read prefill logits, so the scoring session keeps every KV entry (a compressing policy would
  // change them). The answer gets its own session below, made with every flag, so a KV policy applies to
  // the key context (xl3m.md §3: Chelsea and HATA act on the final pass).
  ariadne_xl3m_stats st{};
  {
    ariadne_session_params plain = session_params(g, n_ctx);
    plain.kv_policy = nullptr;
    api::Session scorer(model, plain);
    ProgressBar bar("xl3m", "seg", !g.json);
    x.select(scorer, [&](int32_t done, int32_t total) {
      bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
      return true;
    });
    bar.finish();
    st = x.stats();
  }
  const std::vector<int32_t> key = x.key_context();
  const auto n_key = static_cast<int64_t>(key.size());
  const double scoring_tps = st.seconds > 0 ? static_cast<double>(st.scored_tokens) / st.seconds : 0.0;
  if (!g.json) {
    if (st.bypass) {
      std::fprintf(stderr, "ariadne: xl3m: the input (%lld tokens) fits the window of %d: fed whole\n",
                   static_cast<long long>(st.n_input), st.window);
    } else {
      std::fprintf(
          stderr,
          "ariadne: xl3m: %lld input tokens, window %d | %d segments of %d (overlap %d) scored by %s in "
          "%.2f s (%.0f tok/s) | %d chosen in %d spans -> key context %lld tokens\n",
          static_cast<long long>(st.n_input), st.window, st.n_segments, st.segment, st.overlap,
          score_name(st.score), st.seconds, scoring_tps, st.n_chosen, st.n_spans,
          static_cast<long long>(n_key));
    }
  }

  const ariadne_session_params sp = session_params(g, n_ctx);
  const ariadne_memory_estimate predicted = model.estimate_memory(sp);
  api::Session session(model, sp);
  if (!g.json && g.kv.policy != "full")
    std::fprintf(stderr, "ariadne: kv policy: %s\n", session.kv_policy().c_str());
  api::Sampler sampler(model, checked.sampler());
  for (const int32_t id : key) sampler.accept(id);
  std::unique_ptr<api::TextStream> text;
  if (has_tokenizer) {
    text = std::make_unique<api::TextStream>(model, g.stop);
    text->begin(key);
  }
  ProgressBar bar("prefill", "tok", !g.json);
  session.prefill(key, [&](int32_t done, int32_t total) {
    bar.update(static_cast<uint64_t>(done), static_cast<uint64_t>(total));
    if (done == total) bar.finish();
    return true;
  });
  const double prefill_seconds = session.timings().prefill_seconds;

  bool first_id = true;
  std::function<void(std::string_view)> on_text;
  std::function<void(int32_t)> on_token;
  if (!g.json && has_tokenizer) on_text = write_out;
  if (!g.json && !has_tokenizer) {
    on_token = [&](int32_t id) {
      write_out((first_id ? "" : ",") + std::to_string(id));
      first_id = false;
    };
  }
  const Decoded r = decode_loop(model, session, sampler, text.get(), g.n_predict, on_text, on_token);
  const auto n_gen = static_cast<int64_t>(r.tokens.size());

  if (g.json) {
    nlohmann::json spans = nlohmann::json::array();
    for (int32_t i = 0; i < st.n_spans; ++i) {
      const auto [b, e] = x.span(i);
      spans.push_back({b, e});
    }
    // The ten most certain segments (rank order).
    std::vector<ariadne_xl3m_segment> segments;
    for (int32_t i = 0; i < st.n_segments; ++i) segments.push_back(x.segment(i));
    nlohmann::json top = nlohmann::json::array();
    for (int32_t i = 0; i < st.n_segments; ++i) {
      const ariadne_xl3m_segment& s = segments[static_cast<size_t>(i)];
      if (s.rank < 10)
        top.push_back({{"index", i},
                       {"begin", s.begin},
                       {"end", s.end},
                       {"score", s.score},
                       {"rank", s.rank},
                       {"chosen", s.chosen}});
    }
    std::sort(top.begin(), top.end(),
              [](const nlohmann::json& a, const nlohmann::json& b) { return a["rank"] < b["rank"]; });
    const ariadne_cache_stats cache = session.cache_stats();
    nlohmann::json j;
    j["text"] = text ? nlohmann::json(std::string(text->text())) : nlohmann::json(nullptr);
    j["n_input"] = st.n_input;
    j["key_tokens"] = key;
    j["n_key"] = n_key;
    j["generated_tokens"] = r.tokens;
    j["n_generated"] = n_gen;
    j["stop_reason"] = r.stop_reason;
    j["seed"] = sampler.seed();
    j["n_ctx"] = session.n_ctx();
    j["xl3m"] = {{"bypass", st.bypass},
                 {"window", st.window},
                 {"n_gen", st.n_gen},
                 {"n_prefix", st.n_prefix},
                 {"n_body", st.n_body},
                 {"n_question", st.n_question},
                 {"n_lead", st.n_lead},
                 {"segment", st.segment},
                 {"overlap", st.overlap},
                 {"budget", st.budget},
                 {"score", score_name(st.score)},
                 {"n_segments", st.n_segments},
                 {"n_chosen", st.n_chosen},
                 {"spans", spans},
                 {"top_segments", top},
                 {"scored_tokens", st.scored_tokens},
                 {"seconds", st.seconds},
                 {"tokens_per_second", scoring_tps}};
    j["timings"] = {{"prefill_seconds", prefill_seconds},
                    {"decode_seconds", r.seconds},
                    {"prefill_tokens_per_second", per_second(n_key, prefill_seconds)},
                    {"decode_tokens_per_second", per_second(n_gen, r.seconds)}};
    j["kv_policy"] = session.kv_policy();
    j["kv_cache"] = {{"type", g.cache_type},
                     {"bytes", cache.bytes},
                     {"bytes_capacity", cache.bytes_capacity},
                     {"entries", cache.entries}};
    j["memory"] = {{"predicted_bytes",
                    {{"weights", predicted.weights},
                     {"kv", predicted.kv},
                     {"activations", predicted.activations},
                     {"total", predicted.total}}},
                   {"peak_rss_bytes", api::peak_resident_bytes()},
                   {"baseline_rss_bytes", baseline_rss},
                   {"available_bytes", predicted.available}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  write_out("\n");
  if (g.kv.policy != "full") print_kv_policy_summary(session);
  if (!has_tokenizer)
    std::fprintf(stderr, "ariadne: no tokenizer (%s): printed token ids\n", model.tokenizer_error().c_str());
  std::fprintf(
      stderr,
      "ariadne: stop: %s | key context %lld tokens in %.3f s (%.1f tok/s) | generated %lld tokens in "
      "%.3f s (%.1f tok/s) | seed %llu | peak RSS %.1f MiB\n",
      r.stop_reason.c_str(), static_cast<long long>(n_key), prefill_seconds,
      per_second(n_key, prefill_seconds), static_cast<long long>(n_gen), r.seconds,
      per_second(n_gen, r.seconds), static_cast<unsigned long long>(sampler.seed()),
      static_cast<double>(api::peak_resident_bytes()) / 1048576.0);
  return 0;
}

}  // namespace ariadne::cli
