// `ariadne calibrate --method chelsea` (../shared/specs/chelsea.md §2 "Outlier calibration"): measures each
// KV head's attention-output error under Chelsea at budget R on windows of plain text, marks the worst ρ_out
// of them as outlier heads and writes <model>.chelsea.gguf (runtime/chelsea_calibrate.h does the work).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "calibrate_hata.h"  // CalibrateCommon

namespace ariadne::cli {

struct ChelseaCalibrateFlags {
  double budget = 0.2;  // R
  double outlier_fraction = 0.04;
  int64_t windows = 8;
  int64_t ctx = 0;  // 0: min(8192, the trained context)
  int64_t steps = 64;
  int64_t sink = 16;
  int64_t recent = 64;
  int64_t chunk = 256;
  int64_t interval = 64;
  int64_t n_batch = 512;
  // The flags given (checked against --method: a Chelsea flag for another method is an error).
  std::vector<CLI::Option*> options;
};

void add_chelsea_calibrate_flags(CLI::App* cmd, ChelseaCalibrateFlags& flags);
int run_chelsea_calibration(const CalibrateCommon& common, const ChelseaCalibrateFlags& flags);

}  // namespace ariadne::cli
