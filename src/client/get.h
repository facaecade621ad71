/*
 * get: `packetstreamer get`, the client of the receiver's extraction API.
 *
 * Asks GET /api/packets (docs/http.md, "Extraction") for the packets of a
 * time window and selectors, writes the pcapng it answers to a file (written
 * under a temporary name and renamed when complete, so a failed or
 * interrupted fetch never leaves a truncated capture behind under the name
 * asked for) or to stdout, and with --follow goes on with the live stream
 * (/live) after the window. A progress line (bytes, packets, rate) goes to
 * stderr when it is a terminal.
 *
 * Exit codes: 0 done (or stopped by SIGINT/SIGTERM while following),
 * 1 the receiver refused or could not be reached (its reason on stderr),
 * 2 usage.
 */
#ifndef PS_GET_H
#define PS_GET_H

/* argv[0] is "get". Runs to completion on the calling thread. */
int ps_get_main(int argc, char **argv);

#endif
