/*
 * receiver: listener + sessions + writer on one libuv loop. Returns the
 * process exit code: 0 after a clean SIGTERM/SIGINT shutdown (files flushed,
 * closed and renamed), 1 when it cannot start (message logged).
 */
#ifndef PS_RECEIVER_H
#define PS_RECEIVER_H

#include "core/config.h"

int ps_receiver_run(const ps_config *cfg);

#endif
