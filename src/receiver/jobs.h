/*
 * jobs: the receiver's capture jobs (docs/http.md "Capture jobs",
 * docs/protocol.md section 12). Owns the job table, validates jobs asked for
 * over HTTP (POST /api/jobs, POST /api/alertmanager), persists each job as
 * OUTPUT/.jobs/ID.json (written atomically) and resumes them after a
 * restart, pushes JOB_START / JOB_STOP to the matching protocol v2 sessions,
 * takes JOB_STATUS counters, and writes the records of job interfaces into
 * each job's own file set, OUTPUT/job-NAME-STAMP-COUNTER.pcapng (a writer of
 * its own: the main output's format, rotation and retention).
 *
 * States: running, then finished (its duration passed, or the job's total
 * reached its packet or byte limit: records beyond it are not written),
 * stopped (DELETE) or failed (no file set could be opened). A job leaves
 * running once; its sensors get JOB_STOP then.
 *
 * Threads: the ps_jobs_http_* and ps_jobs_*_json functions run on HTTP
 * threads; everything else on the loop thread. The table is under one
 * mutex (jobs.c); each job's writer is the loop's only. An HTTP change wakes
 * the loop through a uv_async handle, so JOB_START goes out at once.
 */
#ifndef PS_RECEIVER_JOBS_H
#define PS_RECEIVER_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/wire.h"

typedef struct ps_jobs ps_jobs;
typedef struct ps_session ps_session;

typedef struct ps_jobs_opts {
    const char *dir; /* output directory; NULL (stdout output): jobs are refused */
    ps_format format;
    uint64_t rotate_bytes;
    uint32_t rotate_seconds, max_files;
    uint64_t max_total_bytes;
    unsigned mode;
    const char *app;
    uint32_t max_duration_sec, default_duration_sec, default_preroll_sec, max_jobs;
    uint32_t am_duration_sec, am_preroll_sec;
    ps_metrics *metrics; /* or NULL */
    /* The main output's sequence bookkeeping, so job files take part in
     * recovery like the main ones (writer.h); may be NULL. */
    int (*checkpoint)(void *ud, ps_buf *out);
    void (*on_recovered)(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq);
    void *ud;
} ps_jobs_opts;

/* Loads OUTPUT/.jobs/ (a job whose deadline passed while the receiver was
 * down becomes finished). -1 with err when the directory cannot be made or
 * read. */
int ps_jobs_open(ps_jobs **out, uv_loop_t *loop, const ps_jobs_opts *o, char *err, size_t errlen);
/* Loop: opens the file sets of resumed running jobs. */
void ps_jobs_start(ps_jobs *j);
/* Loop: closes the wake-up handle; call before the loop's final run. */
void ps_jobs_stop(ps_jobs *j);
/* After the loop ended: completes every job file (flush, rename) and frees. */
int ps_jobs_free(ps_jobs *j);

/* ---- HTTP threads: each returns the HTTP status and sets *body to a
 * malloc'd JSON text (an object with "error" and "field" on 4xx) ---- */
int ps_jobs_http_create(ps_jobs *j, const char *json, size_t len, char **body);
int ps_jobs_http_list(ps_jobs *j, char **body);
int ps_jobs_http_get(ps_jobs *j, const char *id, char **body);
int ps_jobs_http_delete(ps_jobs *j, const char *id, char **body);
int ps_jobs_http_alertmanager(ps_jobs *j, const char *json, size_t len, char **body);

/* ---- loop thread, for sessions ---- */

#define PS_JOBS_DROP (-2) /* a job interface whose records are dropped (unknown job) */

/* A v2 session's handshake was accepted: it gets JOB_START for each running
 * job whose sensor selector matches. ps_jobs_session_down when it closes. */
void ps_jobs_session_up(ps_jobs *j, ps_session *s, const char *sensor);
void ps_jobs_session_down(ps_jobs *j, ps_session *s);
/* IFACE with job != 0: a handle >= 0 for ps_jobs_record, PS_JOBS_DROP for a
 * job not known or not running (records counted and dropped), or -1 with
 * errno (the job's writer failed). Release with ps_jobs_iface_release. */
int ps_jobs_iface(ps_jobs *j, uint64_t job, const char *sensor, const char *name, const char *desc,
                  uint32_t linktype, uint32_t snaplen, char *err, size_t errlen);
void ps_jobs_iface_release(ps_jobs *j, int h);
/* 0 written, 1 not written (the job stopped or reached its limit), -1
 * with errno (a write failed). */
int ps_jobs_record(ps_jobs *j, int h, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data);
int ps_jobs_batch_end(ps_jobs *j, int h, uint64_t session, uint64_t seq);
void ps_jobs_iface_stats(ps_jobs *j, int h, uint64_t ts_ns, uint64_t recv, uint64_t drop,
                         uint64_t osdrop);
/* Records dropped for a job interface announced for an unknown job. */
void ps_jobs_count_dropped(ps_jobs *j, uint64_t n);
/* A JOB_STATUS: the sensor's counters for the job; one for a job not known
 * is counted and ignored. */
void ps_jobs_status(ps_jobs *j, const char *sensor, const ps_job_status *st);
/* Flushes every job's writer: 0, or -1 with errno. */
int ps_jobs_flush(ps_jobs *j);
/* About once a second: deadlines, rotation. */
void ps_jobs_tick(ps_jobs *j, uint64_t now_ns);

/* For the status page (loop thread): a JSON array of every job's summary. */
char *ps_jobs_summary_json(ps_jobs *j);

#endif
