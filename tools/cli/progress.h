// A terminal progress bar with rate and ETA, drawn on stderr only when stderr is a terminal and the
// command is not in --json mode.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ariadne::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::string unit, bool enabled);
  ~ProgressBar();
  void update(uint64_t done, uint64_t total);
  void finish();

 private:
  std::string label_;
  std::string unit_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace ariadne::cli
