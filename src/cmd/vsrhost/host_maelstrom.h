/* host_maelstrom.h - vsrhost as a Maelstrom node: who we are, and the one writer of stdout lines. */
#ifndef HOST_MAELSTROM_H
#define HOST_MAELSTROM_H

#include <stdint.h>

#include <jansson.h>

#include "vsr.h"

/* From Maelstrom's init message: this node's id and every node's, in order
 * (a node's position is its replica index). */
extern char maelstrom_node_id[32];
extern char maelstrom_node_ids[VSR_REPLICAS_MAX][32];
extern uint32_t maelstrom_node_count;

/* Writes {"src": this node, "dest": dest, "body": body} as one line on
 * stdout (buffered until the end of the loop iteration); steals `body`. */
void maelstrom_emit(const char *dest, json_t *body);

#endif
