// A thin C++ wrapper over ariadne.h: owning handles, exceptions instead of error structs.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ariadne/ariadne.h"

namespace ariadne::api {

class ApiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename T>
T* check(T* p, const ariadne_error& e) {
  if (p == nullptr) throw ApiError(e.message);
  return p;
}
inline int check(int rc, const ariadne_error& e) {
  if (rc < 0) throw ApiError(e.message);
  return rc;
}
}  // namespace detail

class Model {
 public:
  explicit Model(const std::string& path, const std::string& tokenizer = "") {
    ariadne_error e;
    model_.reset(detail::check(ariadne_model_load(path.c_str(), tokenizer.empty() ? nullptr : tokenizer.c_str(), &e), e));
  }
  int32_t n_vocab() const { return ariadne_model_n_vocab(model_.get()); }
  bool is_end_of_generation(int32_t token) const { return ariadne_model_is_end_of_generation(model_.get(), token); }
  std::vector<int32_t> tokenize(std::string_view text, bool add_special = true, bool parse_special = false) const {
    ariadne_error e;
    std::vector<int32_t> ids(text.size() + 8);
    int32_t n = detail::check(ariadne_tokenize(model_.get(), text.data(), text.size(), add_special, parse_special,
                                               ids.data(), static_cast<int32_t>(ids.size()), &e),
                              e);
    if (n > static_cast<int32_t>(ids.size())) {
      ids.resize(static_cast<size_t>(n));
      n = detail::check(ariadne_tokenize(model_.get(), text.data(), text.size(), add_special, parse_special, ids.data(),
                                         n, &e),
                        e);
    }
    ids.resize(static_cast<size_t>(n));
    return ids;
  }
  std::string piece(int32_t token, bool special = false) const {
    ariadne_error e;
    std::string out(32, '\0');
    int32_t n = detail::check(ariadne_token_to_piece(model_.get(), token, special, out.data(), 32, &e), e);
    if (n > 32) {
      out.resize(static_cast<size_t>(n));
      detail::check(ariadne_token_to_piece(model_.get(), token, special, out.data(), n, &e), e);
    }
    out.resize(static_cast<size_t>(n));
    return out;
  }
  const ariadne_model* get() const { return model_.get(); }

 private:
  std::unique_ptr<ariadne_model, decltype(&ariadne_model_free)> model_{nullptr, &ariadne_model_free};
};

class Session {
 public:
  explicit Session(const Model& model, ariadne_session_params params = {}) {
    ariadne_error e;
    session_.reset(detail::check(ariadne_session_create(model.get(), &params, &e), e));
  }
  const float* prefill(const std::vector<int32_t>& ids) {
    ariadne_error e;
    detail::check(ariadne_session_prefill(session_.get(), ids.data(), static_cast<int32_t>(ids.size()), &e), e);
    return ariadne_session_logits(session_.get());
  }
  const float* decode(int32_t token) {
    ariadne_error e;
    detail::check(ariadne_session_decode(session_.get(), token, &e), e);
    return ariadne_session_logits(session_.get());
  }
  ariadne_cache_stats cache_stats() const { return ariadne_session_cache_stats(session_.get()); }
  int32_t n_past() const { return ariadne_session_n_past(session_.get()); }

 private:
  std::unique_ptr<ariadne_session, decltype(&ariadne_session_free)> session_{nullptr, &ariadne_session_free};
};

class Sampler {
 public:
  Sampler(const Model& model, const ariadne_sampler_params& params) {
    ariadne_error e;
    sampler_.reset(detail::check(ariadne_sampler_create(model.get(), &params, &e), e));
  }
  int32_t sample(const float* logits) {
    ariadne_error e;
    const int32_t t = ariadne_sampler_sample(sampler_.get(), logits, &e);
    if (t < 0) throw ApiError(e.message);
    ariadne_sampler_accept(sampler_.get(), t);
    return t;
  }

 private:
  std::unique_ptr<ariadne_sampler, decltype(&ariadne_sampler_free)> sampler_{nullptr, &ariadne_sampler_free};
};

}  // namespace ariadne::api
