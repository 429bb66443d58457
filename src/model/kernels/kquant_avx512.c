/* kquant_avx512.c: AVX-512 K-quant matmul kernels. */
#include "model/kernels/kquant.h"

void uhlm_kernels_kquant_avx512(uhlm_kernels *k, int has_vnni) { (void)k; (void)has_vnni; }
