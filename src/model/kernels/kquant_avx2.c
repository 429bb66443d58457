/* kquant_avx2.c: AVX2 K-quant matmul kernels (see kquant.h for the arithmetic they share with
 * the scalar kernels, bit for bit). */
#include "model/kernels/kquant.h"

void uhlm_kernels_kquant_avx2(uhlm_kernels *k) { (void)k; }
