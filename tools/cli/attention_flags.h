// The decode-attention flags shared by run, chat and bench (../shared/specs/hata.md): --attn, --topk,
// --attn-dense-layers, --attn-sink, --attn-recent, --hata.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ariadne/ariadne.hpp"
#include "runtime/sparse_attention.h"

namespace ariadne::cli {

struct AttentionFlags {
  std::string method = "dense";
  std::string topk;  // "1/16", "512"; empty: the spec's default budget
  std::string dense_layers = "0,1";
  int64_t sink = 0;
  int64_t recent = 0;
  std::string hata;           // empty: <model>.hata.gguf
  std::string score;          // hata, hash-random: norm or hamming; empty: the sidecar's (norm)
  std::string follow = "on";  // on or off: SparseAttentionConfig::follow
  int64_t hash_bits = 128;    // hash-random: bits per code
  // Which flags were given (one that does not apply to --attn dense is an error, not silently ignored).
  CLI::Option* topk_opt = nullptr;
  CLI::Option* dense_opt = nullptr;
  CLI::Option* sink_opt = nullptr;
  CLI::Option* recent_opt = nullptr;
  CLI::Option* hata_opt = nullptr;
  CLI::Option* score_opt = nullptr;
  CLI::Option* follow_opt = nullptr;
  CLI::Option* bits_opt = nullptr;
};

void add_attention_flags(CLI::App* cmd, AttentionFlags& flags);

// The checked config (Error naming the flag).
SparseAttentionConfig attention_config(const AttentionFlags& flags);

// Fills the session parameters' attention fields (pointers into flags: valid while flags lives).
void set_attention_params(const AttentionFlags& flags, ariadne_session_params* params);

// One line on stderr after a generation: what attention read.
void print_attention_summary(const api::Session& session);
// The same as a JSON object: the description and ariadne_attention_stats.
nlohmann::json attention_json(const api::Session& session);

}  // namespace ariadne::cli
