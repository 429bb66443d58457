/* ggml_compat.h: ggml's CPU arithmetic, reproduced bit for bit in portable C, for the opt-in
 * numerics mode UHLM_NUMERICS_GGML (see ggml_forward.c and uhlm/model.h).
 *
 * Why it exists: SmolLM2 turns a one-ulp change anywhere in its forward pass into logit
 * differences of 1-2, so two correct engines that round differently decode different greedy
 * text. To decode token for token as llama.cpp does, uhlm must perform llama.cpp's very float
 * operations: the same activation quantizer (ggml's AVX2 quantize_row_q8_0/q8_1: multiply by
 * 127/max, round half to even), the same products in the same SIMD lanes, the same FMAs and
 * the same horizontal reductions. The reference is llama-cpp-python 0.3.36 (ggml 0.25.3) built
 * with GGML_NATIVE on an AVX-512 (VNNI) x86-64 CPU, GCC 12; each function names the ggml
 * routine and the SIMD branch it reproduces. Lanes are emulated with arrays and every fused
 * multiply-add is an explicit fmaf, so the results are the same on any IEEE-754 machine
 * whatever the compiler flags (this file must not be built with -ffast-math; plain ISO C
 * never contracts a*b+c). The one exception is the RoPE table, which takes cosf, sinf and
 * powf from libm as ggml does: bit for bit where both use the same libm.
 *
 * Scope: the operations a llama-architecture forward pass needs with F16, Q8_0 or Q4_1
 * matrices and an F32 KV cache (SmolLM2-135M-Instruct in its shipped Q4_1 file and uhlm's
 * F16 / Q8_0 conversions of it). */
#ifndef UHLM_GGML_COMPAT_H
#define UHLM_GGML_COMPAT_H

#include <stdint.h>

#include "model/kernels/quant.h"

/* quantize_row_q8_0 / quantize_row_q8_1 (arch/x86/quants.c, __AVX2__ branch); k % 32 == 0 */
void ggc_quantize_q8_0(const float *x, uhlm_block_q8_0 *y, int64_t k);
void ggc_quantize_q8_1(const float *x, uhlm_block_q8_1 *y, int64_t k);
/* F32 -> F16 activations (ggml_cpu_fp32_to_fp16: round to nearest even) */
void ggc_to_f16(const float *x, uint16_t *y, int64_t k);

/* ggml_vec_dot_q8_0_q8_0 and ggml_vec_dot_q4_1_q8_1 (__AVX2__ branch with AVX512-VNNI
 * integer sums); llamafile's tinyBLAS_Q0_AVX gives the same value per element for Q8_0. */
float ggc_dot_q8_0(int n, const uhlm_block_q8_0 *w, const uhlm_block_q8_0 *a);
float ggc_dot_q4_1(int n, const uhlm_block_q4_1 *w, const uhlm_block_q8_1 *a);

/* ggml_vec_dot_f32 / ggml_vec_dot_f16 (AVX-512: 4 accumulators of 16 lanes over steps of 64,
 * then their reduction tree); the "tiny" variants are llamafile's tinyBLAS<16, __m512> (one
 * accumulator of 16 lanes, _mm512_reduce_add_ps), which ggml uses for batches of n >= 2
 * columns when src1 is contiguous. n_valid <= n: elements at or past n_valid are treated as
 * the zeros (weights) that masked attention positions contribute; n % 16 == 0 for the tiny
 * variants. */
float ggc_dot_f32(int n, const float *x, const float *y);
float ggc_dot_f32_tiny(int n, const float *x, const float *y);
float ggc_dot_f16(int n, const uint16_t *x, const uint16_t *y);
float ggc_dot_f16_tiny(int n, const uint16_t *x, const uint16_t *y);

/* The dot products above with AVX2 + FMA + F16C (ggml_compat_avx2.c, x86-64 only): identical
 * results, faster. ggc_dots(1) returns them where the CPU has AVX2 (the 4x16 ones fall back
 * to the portable code when n % 64 != 0), ggc_dots(0) the portable ones. */
typedef struct {
    float (*q8_0)(int n, const uhlm_block_q8_0 *w, const uhlm_block_q8_0 *a);
    float (*q4_1)(int n, const uhlm_block_q4_1 *w, const uhlm_block_q8_1 *a);
    float (*f32)(int n, const float *x, const float *y);
    float (*f32_tiny)(int n, const float *x, const float *y);
    float (*f16)(int n, const uint16_t *x, const uint16_t *y);
    float (*f16_tiny)(int n, const uint16_t *x, const uint16_t *y);
} ggc_dot_fns;
const ggc_dot_fns *ggc_dots(int avx2);
float ggc_dot_q8_0_avx2(int n, const uhlm_block_q8_0 *w, const uhlm_block_q8_0 *a);
float ggc_dot_q4_1_avx2(int n, const uhlm_block_q4_1 *w, const uhlm_block_q8_1 *a);
float ggc_dot_f32_avx2(int n, const float *x, const float *y);
float ggc_dot_f32_tiny_avx2(int n, const float *x, const float *y);
float ggc_dot_f16_avx2(int n, const uint16_t *x, const uint16_t *y);
float ggc_dot_f16_tiny_avx2(int n, const uint16_t *x, const uint16_t *y);

/* ggml_compute_forward_rms_norm_f32 fused with the MUL by the weight:
 * y = x * (1 / sqrt(mean(x^2) + eps)) * w, the sum of squares in double. */
void ggc_rms_norm_mul(const float *x, const float *w, float *y, int n, float eps);

/* ggml_rope_cache_init for position pos (no YaRN, no frequency factors, attn_factor 1):
 * cache[2i] = cos(theta_i), cache[2i+1] = sin(theta_i), theta_i = pos * freq_scale *
 * theta_scale^i by repeated multiplication, theta_scale = powf(base, -2 / n_dims). */
void ggc_rope_cache(float *cache, int n_dims, int pos, float freq_base, float freq_scale);
/* rotate_pairs for GGML_ROPE_TYPE_NORMAL (adjacent pairs) and NEOX (i, i + n_dims/2), one head */
void ggc_rope_norm(float *v, const float *cache, int n_dims);
void ggc_rope_neox(float *v, const float *cache, int n_dims);

/* ggml_v_expf (AVX-512), one lane */
float ggc_expf(float x);
/* soft_max_f32 of one row of n_valid scores (the rest masked to -inf) scaled by `scale`:
 * p[i] for i < n_valid; ggml_vec_soft_max_f32's sum over 16-lane chunks in double. */
void ggc_soft_max(float *p, const float *kq, int n_valid, float scale);
/* ggml_vec_swiglu_f32: y = silu(x) * g with ggml_v_silu for 16-element chunks, libm's expf
 * for the remainder */
void ggc_swiglu(float *y, const float *x, const float *g, int64_t n);

#endif
