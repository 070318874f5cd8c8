// The `ariadne` subcommands. Each file adds its subcommand to the app and sets the function that runs it.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace ariadne::cli {

using Action = std::function<int()>;

void add_forward_command(CLI::App& app, Action& action);
void add_info_command(CLI::App& app, Action& action);
void add_convert_command(CLI::App& app, Action& action);
void add_synth_command(CLI::App& app, Action& action);
void add_tokenize_commands(CLI::App& app, Action& action);  // tokenize, detokenize, chat-template
void add_run_command(CLI::App& app, Action& action);
void add_chat_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_eval_command(CLI::App& app, Action& action);  // eval tasks, run, ppl, report
void add_demo_command(CLI::App& app, Action& action);
void add_calibrate_command(CLI::App& app, Action& action);  // calibrate --method hata|...

}  // namespace ariadne::cli
