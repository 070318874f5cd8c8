// The KV-policy flags shared by run, chat, bench (and eval's NAME:BUDGET methods): --kv-policy, --kv-budget,
// --kv-sink, --kv-recent, --chelsea-chunk, --chelsea-interval, --chelsea-sidecar (docs/chelsea.md).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "ariadne/ariadne.h"
#include "runtime/kv_policies.h"

namespace ariadne::cli {

struct KvPolicyFlags {
  std::string policy = "full";
  double budget = 0.2;
  int64_t sink = -1;  // -1: the policy's default
  int64_t recent = -1;
  int64_t chunk = 256;
  int64_t interval = 64;
  std::string sidecar;  // "": <model>.chelsea.gguf when present; "none": no outlier heads
  // Which flags were given (a flag for another policy is an error, not silently ignored).
  CLI::Option* budget_opt = nullptr;
  CLI::Option* sink_opt = nullptr;
  CLI::Option* recent_opt = nullptr;
  CLI::Option* chunk_opt = nullptr;
  CLI::Option* interval_opt = nullptr;
  CLI::Option* sidecar_opt = nullptr;
};

void add_kv_policy_flags(CLI::App* cmd, KvPolicyFlags& flags);

// The checked config (Error naming the flag); generation: Γ, the tokens expected after each prompt.
KvPolicyConfig kv_policy_config(const KvPolicyFlags& flags, int64_t generation);

// Fills the session parameters' KV-policy fields (pointers into flags: valid while flags lives).
void set_kv_policy_params(const KvPolicyFlags& flags, int64_t generation, ariadne_session_params* params);

}  // namespace ariadne::cli
