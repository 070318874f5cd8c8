// Writing a loaded model as a GGUF file that llama.cpp loads: its tensor names, metadata keys, tensor
// types, and its Q/K row order for llama-style RoPE.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "formats/model_source.h"

namespace ariadne {

class GgufWriter;

struct ConvertOptions {
  DType type = DType::F16;  // weight matrices; norms, biases and rope factors stay f32 as in llama.cpp
  std::string name;         // general.name; default: the source's folder or file name
  // Called after each tensor with (tensors done, tensors total).
  std::function<void(size_t, size_t)> progress;
  // Adds metadata the converter does not own (the tokenizer, written by the layer that reads it).
  std::function<void(GgufWriter&)> extra_metadata;
};

// The type a tensor gets in the output: 1-D tensors stay f32; matrices take options.type when their rows
// split into whole blocks of it, else f16 (the fallback llama.cpp's quantizer also uses).
DType output_type(const TensorView& t, DType requested);

// Hugging Face stores Q and K rows of each head as two halves (NeoX pairs (i, i+d/2)); llama.cpp's
// llama/mistral GGUF files interleave them (pairs (2i, 2i+1)). Returns the source row that lands at
// output row r for a [n_heads*head_dim][...] projection.
int64_t interleave_source_row(int64_t r, int64_t head_dim);

// Converts source to GGUF at out_path. Tensors are processed one at a time (in row chunks) so memory
// stays small whatever the model size.
void convert_to_gguf(const ModelSource& source, const std::string& out_path, const ConvertOptions& options,
                     ThreadPool& pool);

}  // namespace ariadne
