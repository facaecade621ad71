/*
 * job: `packetstreamer job start|list|stop`, the client of the receiver's
 * capture job API (docs/http.md, "Capture jobs").
 *
 *   job start NAME [--pod NS/NAME]... [--namespace NS]... [--sensor GLOB]...
 *             [--label-selector SEL] [--iface GLOB]... [--filter BPF]
 *             [--duration DUR] [--packets N] [--bytes N] [--preroll SEC]
 *   job list [ID]
 *   job stop ID
 *
 * Each sends one request (POST /api/jobs, GET /api/jobs[/ID], DELETE
 * /api/jobs/ID) and prints the answer: a table for list, the job as JSON
 * with --json or for a single job. --receiver URL and --token-file F as for
 * `packetstreamer get`.
 *
 * Exit codes: 0 done, 1 the receiver refused (its message, naming the field
 * at fault, on stderr) or could not be reached, 2 usage.
 */
#ifndef PS_CLIENT_JOB_H
#define PS_CLIENT_JOB_H

/* argv[0] is "job". Runs to completion on the calling thread. */
int ps_job_main(int argc, char **argv);

#endif
