/* hybrid.h: the transport-free U-HLM layer (DESIGN §2-§5) in one include.
 *
 *   uncertainty.h  u(t): temperature perturbation (and entropy / maxprob / margin)
 *   verify.h       accept / reject / resample, and the position-keyed RNG streams
 *   payload.h      f32 / f16 / topk encodings of x and the exact reconstruction x̃
 *   policy.h       the five modes and the skip decision
 *   channel.h      Shannon-rate uplink/downlink, Rayleigh block fading, link-time totals
 *   verifier.h     the server-side interface and its in-process implementation
 *   engine.h       the verification engine: sessions, batched flush, verdicts
 *   device.h       the device loop and its statistics */
#ifndef UHLM_HYBRID_H
#define UHLM_HYBRID_H

#include "channel.h"
#include "device.h"
#include "engine.h"
#include "payload.h"
#include "policy.h"
#include "uncertainty.h"
#include "verifier.h"
#include "verify.h"

#endif
