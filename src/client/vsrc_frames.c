/* vsrc_frames.c - the read loop shared by client and status connections: bytes in, frames out. */
#include "vsrc_frames.h"

#include <assert.h>

int vsrc_frames_feed(vsr_wire_reader *r, const uint8_t *data, size_t len,
		     vsrc_frame_fn frame_fn, void *arg)
{
	assert(frame_fn != NULL);
	size_t off = 0;
	/* Each round consumes bytes or yields a frame, so the loop ends with
	 * the read; `used` is at most what was offered. */
	while (off < len) {
		size_t used = 0;
		int rc = vsr_wire_reader_feed(r, data + off, len - off, &used);
		assert(used <= len - off);
		off += used;
		if (rc == 0)
			return 0; /* every byte is buffered, no whole frame yet */
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		if (rc == 1)
			rc = vsr_wire_reader_decode(r, &d);
		if (rc < 0) {
			vsr_wire_decoded_free(&d);
			return -1;
		}
		bool more = frame_fn(arg, &d);
		vsr_wire_decoded_free(&d);
		if (!more)
			return 0;
	}
	return 0;
}
