// The top-k attention methods of `ariadne eval` (../shared/specs/hata.md §5): hata, exact-topk, quest and
// hash-random at a budget K, all with the spec's dense layers 0 and 1 and no forced entries but the current
// token, so they compare at equal budget.
#include <memory>

#include "core/error.h"
#include "eval/methods.h"
#include "runtime/sparse_attention.h"

namespace ariadne::eval {

namespace {

class SparseAttentionMethod : public Method {
 public:
  explicit SparseAttentionMethod(SparseAttentionConfig config) : config_(std::move(config)) {}
  // Alone: every entry kept, the selector reads a subset.
  void prepare(Session& session) override {
    session.kv().set_policy(std::make_shared<FullPolicy>());
    join(session);
  }
  // After a KV policy ("chelsea:0.2+hata:1/16"): the selector reads the compressed cache.
  void join(Session& session) override {
    session.kv().set_selector(make_sparse_selector(config_, session.model().source()));
  }

 private:
  SparseAttentionConfig config_;
};

}  // namespace

void add_sparse_attention_methods(MethodRegistry& r, const MethodDefaults& defaults) {
  auto add = [&](const char* name, const char* help) {
    r.add({name, help, true, [name, defaults](const MethodSpec& spec) {
             SparseAttentionConfig c;
             c.method = name;
             if (c.method == "hata") c.sidecar = defaults.hata_sidecar;
             c.follow = defaults.attn_follow;
             c.topk = parse_topk(spec.budget, spec.text);
             validate_sparse_attention(c);
             return std::make_unique<SparseAttentionMethod>(c);
           }});
  };
  add("hata",
      "learned-hash top-k attention (weights from ariadne calibrate --method hata: --hata FILE or "
      "<model>.hata.gguf)");
  add("exact-topk", "top-k attention by the true softmax (the oracle)");
  add("quest", "top-k attention by Quest's page bounds");
  add("hash-random", "top-k attention by untrained Gaussian sign hashes");
}

}  // namespace ariadne::eval
