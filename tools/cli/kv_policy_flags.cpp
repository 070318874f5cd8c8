#include "kv_policy_flags.h"

#include <algorithm>
#include <climits>

#include "core/error.h"

namespace ariadne::cli {

void add_kv_policy_flags(CLI::App* cmd, KvPolicyFlags& f) {
  cmd->add_option(
      "--kv-policy", f.policy,
      "What the KV cache keeps: full (default), chelsea (clustering), streaming (sinks + recent), "
      "snapkv (observation-window voting)");
  f.budget_opt =
      cmd->add_option("--kv-budget", f.budget,
                      "Entries per KV head: a fraction of prompt + generated tokens (default 0.2), "
                      "or a whole number > 1 of entries");
  f.sink_opt = cmd->add_option("--kv-sink", f.sink,
                               "Protected first entries (default: chelsea 16, streaming 4, snapkv 0)");
  f.recent_opt = cmd->add_option("--kv-recent", f.recent,
                                 "chelsea: protected last entries (default 64); snapkv: observation window "
                                 "(default 32)");
  f.chunk_opt =
      cmd->add_option("--chelsea-chunk", f.chunk, "chelsea: chunk size of the matching (default 256)");
  f.interval_opt = cmd->add_option("--chelsea-interval", f.interval,
                                   "chelsea, streaming: decode steps between compressions (default 64)");
  f.sidecar_opt = cmd->add_option("--chelsea-sidecar", f.sidecar,
                                  "chelsea: outlier heads from this file (default: <model>.chelsea.gguf when "
                                  "present; none: no outlier heads)");
}

KvPolicyConfig kv_policy_config(const KvPolicyFlags& f, int64_t generation) {
  KvPolicyConfig c;
  c.name = f.policy;
  c.budget = f.budget;
  c.sink = f.sink;
  c.recent = f.recent;
  c.chunk = f.chunk;
  c.interval = f.interval;
  c.generation = generation;
  auto given = [](const CLI::Option* o) { return o != nullptr && o->count() > 0; };
  if (c.name == "full") {
    for (const CLI::Option* o :
         {f.budget_opt, f.sink_opt, f.recent_opt, f.chunk_opt, f.interval_opt, f.sidecar_opt})
      if (given(o)) fail("{} needs --kv-policy chelsea, streaming or snapkv", o->get_name());
  }
  if (c.name != "chelsea")
    for (const CLI::Option* o : {f.chunk_opt, f.sidecar_opt})
      if (given(o)) fail("{} applies to --kv-policy chelsea only", o->get_name());
  if (c.name == "snapkv" && given(f.interval_opt))
    fail("--chelsea-interval does not apply to snapkv (it compresses once per prompt)");
  if (f.sink < -1 || (given(f.sink_opt) && f.sink < 0))
    fail("--kv-sink: expected a count >= 0, got {}", f.sink);
  if (given(f.recent_opt) && f.recent < 0) fail("--kv-recent: expected a count >= 0, got {}", f.recent);
  if (c.name == "snapkv" && given(f.recent_opt) && f.recent < 1)
    fail("--kv-recent: snapkv's observation window needs at least 1 token");
  validate_kv_policy(c);
  return c;
}

void set_kv_policy_params(const KvPolicyFlags& f, int64_t generation, ariadne_session_params* p) {
  const KvPolicyConfig c = kv_policy_config(f, generation);
  p->kv_policy = f.policy.c_str();
  p->kv_budget = c.budget;
  // The API's 0 means "the policy's default", a negative count "none".
  p->kv_sink = c.sink < 0 ? 0 : (c.sink == 0 ? -1 : static_cast<int32_t>(c.sink));
  p->kv_recent = c.recent < 0 ? 0 : (c.recent == 0 ? -1 : static_cast<int32_t>(c.recent));
  p->chelsea_chunk = static_cast<int32_t>(c.chunk);
  p->chelsea_interval = static_cast<int32_t>(c.interval);
  p->kv_generation = static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(generation, 1), INT32_MAX));
  p->kv_sidecar = f.sidecar.empty() ? nullptr : (f.sidecar == "none" ? "" : f.sidecar.c_str());
}

}  // namespace ariadne::cli
