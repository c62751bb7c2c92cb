/* host_teeth.h - test-only hooks of vsrhost-teeth (never in vsrhost). */
#ifndef HOST_TEETH_H
#define HOST_TEETH_H

#include <stdbool.h>

/* The log's reaper held (proctest open-reclaim-teeth, VSRH_TEETH_HOLD_REAPER):
 * from host_teeth_reaper_hold(true) until host_teeth_reaper_hold(false),
 * files handed to the reaper wait here instead of being freed a slice at a
 * time in the background; a flush (a disk found full, the store's
 * disk-full hook) still frees them at once. Wired by --wrap at link time
 * (vsr_reaper_add, vsr_reaper_idle, vsr_reaper_flush). */
void host_teeth_reaper_hold(bool on);

#endif
