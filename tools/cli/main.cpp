// ariadne: the command-line tool over libariadne.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"Ariadne: long-context inference for Llama-family models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ariadne 0.1.0");
  ariadne::cli::Action action;
  ariadne::cli::add_info_command(app, action);
  ariadne::cli::add_forward_command(app, action);
  ariadne::cli::add_convert_command(app, action);
  ariadne::cli::add_synth_command(app, action);
  ariadne::cli::add_tokenize_commands(app, action);
  ariadne::cli::add_run_command(app, action);
  ariadne::cli::add_chat_command(app, action);
  ariadne::cli::add_bench_command(app, action);
  ariadne::cli::add_eval_command(app, action);
  ariadne::cli::add_demo_command(app, action);
  ariadne::cli::add_calibrate_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return action();
  } catch (const ariadne::Error& e) {
    std::fprintf(stderr, "ariadne: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ariadne: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ariadne: error: %s\n", e.what());
    return 1;
  }
}
