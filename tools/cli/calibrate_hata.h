// `ariadne calibrate --method hata` (../shared/specs/hata.md §2.3): trains HATA's hash weights from plain
// text and writes the sidecar (runtime/hata_train.h does the work).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace ariadne::cli {

// What every calibration method of `ariadne calibrate` takes.
struct CalibrateCommon {
  std::string method;
  std::string model;
  std::string tokenizer;
  std::string text;
  std::string output;  // empty: the method's default beside the model
  int threads = 0;     // 0: every core
  uint64_t seed = 42;
  bool json = false;
  bool quiet = false;
};

struct HataCalibrateFlags {
  int64_t bits = 128;
  int64_t docs = 16;
  int64_t doc_len = 0;  // 0: min(trained context, 32768)
  int64_t items = 98304;
  int64_t epochs = 15;
  int64_t iters = 20;
  int64_t queries = 8;  // m, query positions per document
  std::string dense_layers = "0,1";
  std::string score = "norm";
  int64_t heldout = 1;
  int64_t memory_mib = 0;  // 0: half the available memory
  // The flags given (checked against --method: a HATA flag for another method is an error).
  std::vector<CLI::Option*> options;
};

void add_hata_calibrate_flags(CLI::App* cmd, HataCalibrateFlags& flags);
int run_hata_calibration(const CalibrateCommon& common, const HataCalibrateFlags& flags);

}  // namespace ariadne::cli
