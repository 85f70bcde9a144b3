// The headers the CUTLASS sm90 GEMM kernels of gemm.py use, included at file scope (the kernels'
// definitions sit in the model's anonymous namespace, where their own #includes are then no-ops).
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>
#include <cutlass/array.h>
#include <cutlass/kernel_hardware_info.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
// The sm90 implicit-GEMM convolutions of conv.py (cutlass/util/packed_stride.hpp: tools/util/include).
#include <cutlass/conv/convnd_problem_shape.hpp>
#include <cutlass/conv/dispatch_policy.hpp>
#include <cutlass/conv/collective/collective_builder.hpp>
#include <cutlass/conv/kernel/conv_universal.hpp>
#include <cutlass/conv/device/conv_universal_adapter.hpp>
