// One constructor per model family file. Model::create picks one from ModelConfig::arch.
#pragma once

#include <memory>

#include "models/model.h"

namespace ariadne {

std::unique_ptr<Model> make_llama_model(std::shared_ptr<const ModelSource> source);  // llama, mistral
std::unique_ptr<Model> make_qwen2_model(std::shared_ptr<const ModelSource> source);
std::unique_ptr<Model> make_qwen3_model(std::shared_ptr<const ModelSource> source);

}  // namespace ariadne
