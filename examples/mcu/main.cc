// Classify one image on a microcontroller with TensorFlow Lite Micro, using the four
// files `python -m convert mcu ARTDIR --out DIR` writes (model_data.h/.cc, model_ops.h,
// model_io.h). Build it inside a project that already compiles TensorFlow Lite Micro
// (see README.md beside this file); it cannot be built without those sources.
//
// The two names below belong to the reference model (`make demo`, model "mnist_mlp").
// For another model, take them from DIR/mcu.json: "model": {"namespace", "array"}.

#include <cstdint>

#include "model_data.h"
#include "model_io.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace model = mnist_mlp_model;
#define MODEL_DATA g_mnist_mlp_model_data

namespace {

// The tensor arena: measured on the build machine plus a margin (mcu.json "arena").
// 16-byte alignment keeps the allocator from losing bytes to padding.
alignas(16) uint8_t tensor_arena[model::kTensorArenaBytes];

// One raw image: uint8 pixels, row-major, channels last, as the camera or sensor gives
// them (model::preprocessing describes the expected size and colours). Replace this
// blank frame with a real one.
uint8_t frame[model::kInputElements];

// The int8 input the model was trained and measured with: a table lookup per pixel,
// made by keras2edge from its own runtime, so no float rounding can differ here.
void QuantiseInput(const uint8_t* pixels, int8_t* input) {
  for (int i = 0; i < model::kInputElements; ++i) {
    input[i] = model::kInputFromPixel[i % model::kPixelChannels][pixels[i]];
  }
}

}  // namespace

int main() {
  tflite::InitializeTarget();

  const tflite::Model* tfl_model = tflite::GetModel(MODEL_DATA);
  if (tfl_model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("model schema %d, expected %d", static_cast<int>(tfl_model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }

  // Exactly the kernels the model uses (model_ops.h), nothing else in flash.
  static model::OpResolver resolver;
  if (model::RegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("registering the model's operators failed");
    return 1;
  }

  static tflite::MicroInterpreter interpreter(tfl_model, resolver, tensor_arena, model::kTensorArenaBytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("tensor arena of %u bytes is too small", model::kTensorArenaBytes);
    return 1;
  }
  MicroPrintf("arena: %u of %u bytes used", static_cast<unsigned>(interpreter.arena_used_bytes()),
              model::kTensorArenaBytes);

  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8 || input->bytes != static_cast<size_t>(model::kInputElements)) {
    MicroPrintf("unexpected input tensor");
    return 1;
  }
  QuantiseInput(frame, input->data.int8);

  if (interpreter.Invoke() != kTfLiteOk) {
    MicroPrintf("Invoke failed");
    return 1;
  }

  // The class is the largest int8 output; dequantise it only to show a score.
  const int8_t* scores = interpreter.output(0)->data.int8;
  int best = 0;
  for (int i = 1; i < model::kNumClasses; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  const float score = (scores[best] - model::kOutputZeroPoint) * model::kOutputScale;
  MicroPrintf("label %s, %s %d/1000", model::kClassLabels[best], model::kOutputIsLogits ? "logit" : "probability",
              static_cast<int>(score * 1000.0f));
  return 0;
}
