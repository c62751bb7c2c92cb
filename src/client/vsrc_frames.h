/* vsrc_frames.h - turns the bytes of one socket read into whole frames for a client-side connection.
 *
 * Both the client's connections and vsrctl's status connections read
 * replicas' frames the same way: feed the read to the streaming reader,
 * decode each whole frame, hand it over, free it. This keeps that loop in one
 * place so the two cannot drift apart (for example in what a malformed frame
 * does to the rest of the read). */
#ifndef VSRC_FRAMES_H
#define VSRC_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vsr_wire.h"

/* Receives one decoded frame, which is freed when this returns (take what you
 * keep out of it). Returns true to go on reading, false when the connection
 * has finished or is closing, so the rest of the read must be dropped. */
typedef bool (*vsrc_frame_fn)(void *arg, vsr_wire_decoded *d);

/* Feeds `len` received bytes to `r` and hands every whole frame to `frame_fn`
 * in order, until the bytes run out or `frame_fn` returns false. Returns 0, or
 * -1 on a malformed frame: `r->err` says why, and no frame after it was
 * handed over. */
int vsrc_frames_feed(vsr_wire_reader *r, const uint8_t *data, size_t len,
		     vsrc_frame_fn frame_fn, void *arg);

#endif
