/* uhlm.h: every public header of libuhlm in one include, for embedders.
 *
 *   common.h       errors, version, UHLM_API, log and cancel callbacks
 *   types.h        weight types and SIMD levels
 *   tokenizer.h    SentencePiece and byte-level BPE vocabularies
 *   chat.h         chat templates
 *   model.h        models (opaque, with accessors), contexts and the batched forward pass
 *   sampler.h      sampling distributions
 *   hybrid.h       the U-HLM layer: uncertainty, verify, payload, policy, channel, verifier,
 *                  device
 *   generate.h     hybrid generation in one call
 *   remote.h       the verifier over TCP (client)
 *   server.h       the verification server
 *   wire.h         the protocol's frames
 *   prompts.h, calib.h, eval.h   evaluation: prompt sets, calibration, the harness */
#ifndef UHLM_UHLM_H
#define UHLM_UHLM_H

#include "calib.h"
#include "chat.h"
#include "common.h"
#include "engine.h"
#include "eval.h"
#include "harness.h"
#include "calib_samples.h"
#include "generate.h"
#include "hybrid.h"
#include "model.h"
#include "prompts.h"
#include "remote.h"
#include "sampler.h"
#include "server.h"
#include "tokenizer.h"
#include "types.h"
#include "wire.h"

#endif
