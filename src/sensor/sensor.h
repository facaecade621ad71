/*
 * sensor: wires capture -> batcher -> uplink on one libuv loop and runs it.
 * Returns the process exit code: 0 when every packet read was acknowledged
 * by the receiver, 1 on a fatal error (message already logged).
 */
#ifndef PS_SENSOR_H
#define PS_SENSOR_H

#include "core/config.h"

int ps_sensor_run(const ps_config *cfg);

#endif
