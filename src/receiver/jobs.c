/*
 * jobs: capture jobs on the receiver (see jobs.h).
 *
 * One mutex guards the table: HTTP threads create, list and stop jobs
 * under it; the loop takes it for each job record (an uncontended lock, and
 * only on job interfaces) and for JOB_STATUS. What needs the loop (opening a
 * job's writer, JOB_START/JOB_STOP to sessions, closing the writer) is done
 * by sync(): the loop runs it on every wake-up (uv_async from an HTTP
 * thread, or from the record path when a limit is reached) and every tick.
 * A limit reached in the middle of a batch is thus acted on after the batch:
 * records beyond it are not written, the writer is completed on the next
 * loop iteration, after the hub's flush and ACK covered what was written.
 *
 * Job structs are never freed while the process runs unless evicted (the
 * oldest finished one, beyond jobs.maxJobs) with no interface referring to
 * it, so a job interface handle stays valid until released. Job ids come
 * from OUTPUT/.jobs/next, written before the id is handed out, so an id is
 * never reused by this output directory.
 *
 * Rejected: one writer for all jobs (a job's files would mix jobs), and
 * routing by file name inside the main writer (jobs need their own
 * rotation and their own end).
 */
#include "jobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <pcap/pcap.h>

#include "core/log.h"
#include "session.h"
#include "writer.h"

#define JOBS_SUBDIR ".jobs"
#define JOBS_MAX_SENSOR_GLOBS 64
#define JOBS_MAX_MSG 256
#define JOBS_MAX_FILES 10000 /* file names remembered per job */

enum { J_RUNNING = 1, J_FINISHED = 2, J_STOPPED = 3, J_FAILED = 4 };

typedef struct job_sensor {
    struct job_sensor *next;
    char id[PS_WIRE_MAX_ID_LEN + 1];
    uint32_t state;                  /* last JOB_STATUS state, 0 none yet */
    uint64_t packets, bytes, drops;  /* as the sensor reported */
    uint64_t written, written_bytes; /* records of it written to the job's files */
    char msg[JOBS_MAX_MSG];
} job_sensor;

typedef struct job {
    struct job *next;
    uint64_t id;
    char name[PS_WIRE_MAX_JOB_NAME_LEN + 1];
    char *sensors[JOBS_MAX_SENSOR_GLOBS];
    int n_sensors;
    char *namespaces, *pods, *label_selector, *interfaces, *filter; /* comma-joined */
    char *fingerprint; /* the alert's, for jobs from /api/alertmanager */
    uint64_t created_ns, start_ns, end_ns, duration_sec;
    uint64_t max_packets, max_bytes;
    uint32_t preroll_sec;
    int state;
    char reason[32]; /* why it left running: duration, packets, bytes, deleted, ... */
    uint64_t stopped_ns;
    uint64_t packets, bytes; /* written */
    uint64_t over_limit;     /* records not written: the limit was reached */
    job_sensor *per_sensor;
    char **files; /* completed files, names in the output directory */
    size_t n_files, cap_files;
    int refs; /* job interface handles pointing at it */
    struct ps_jobs *owner;
    /* loop only */
    ps_writer *w;
    int pushed, stop_sent, dirty;
} job;

typedef struct jiface {
    job *jb; /* NULL: free slot */
    int wh;  /* handle in jb->w */
    int refs;
    char sensor[PS_WIRE_MAX_ID_LEN + 1];
} jiface;

typedef struct jsess {
    ps_session *s;
    char sensor[PS_WIRE_MAX_ID_LEN + 1];
} jsess;

struct ps_jobs {
    ps_jobs_opts o;
    char *dir, *jobs_dir, *app;
    uv_loop_t *loop;
    uv_async_t wake;
    int wake_on;
    pthread_mutex_t mu;
    job *jobs; /* newest first */
    size_t n_jobs;
    uint64_t next_id;
    jiface *ifs;
    size_t n_ifs;
    jsess *sess;
    size_t n_sess, cap_sess;
    /* metrics */
    ps_metric *m_state;
    ps_series *s_state[5];
    ps_series *s_packets, *s_bytes, *s_dropped_unknown, *s_dropped_limit, *s_status_unknown;
    uint64_t dropped_unknown; /* also for the summary */
};

static const char *state_name(int st)
{
    switch (st) {
    case J_RUNNING:
        return "running";
    case J_FINISHED:
        return "finished";
    case J_STOPPED:
        return "stopped";
    case J_FAILED:
        return "failed";
    }
    return "unknown";
}

static int state_of(const char *s)
{
    for (int k = J_RUNNING; k <= J_FAILED; k++)
        if (strcmp(s, state_name(k)) == 0)
            return k;
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void job_free(job *jb)
{
    if (!jb)
        return;
    for (int k = 0; k < jb->n_sensors; k++)
        free(jb->sensors[k]);
    free(jb->namespaces);
    free(jb->pods);
    free(jb->label_selector);
    free(jb->interfaces);
    free(jb->filter);
    free(jb->fingerprint);
    while (jb->per_sensor) {
        job_sensor *n = jb->per_sensor->next;
        free(jb->per_sensor);
        jb->per_sensor = n;
    }
    for (size_t k = 0; k < jb->n_files; k++)
        free(jb->files[k]);
    free(jb->files);
    free(jb);
}

/* ------------------------------------------------------------------------ */
/* Persistence                                                              */

static int write_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static json_t *split_list(const char *s)
{
    json_t *a = json_array();
    if (!a || !s || !*s)
        return a;
    const char *p = s;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        if (!c)
            break;
        p = c + 1;
    }
    return a;
}

static json_t *time_json(uint64_t ns)
{
    if (!ns)
        return json_null();
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[64];
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000u));
    return json_string(b);
}

/* The job as JSON: what GET shows (full: with per-sensor counters and
 * files) and what is persisted (persist: nanosecond fields too). */
static json_t *job_json(const job *jb, int full, int persist)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_integer((json_int_t)jb->id));
    json_object_set_new(o, "name", json_string(jb->name));
    json_object_set_new(o, "state", json_string(state_name(jb->state)));
    if (jb->reason[0])
        json_object_set_new(o, "reason", json_string(jb->reason));
    json_t *sel = json_object();
    json_t *sensors = json_array();
    for (int k = 0; k < jb->n_sensors; k++)
        json_array_append_new(sensors, json_string(jb->sensors[k]));
    json_object_set_new(sel, "sensors", sensors);
    json_object_set_new(sel, "namespaces", split_list(jb->namespaces));
    json_object_set_new(sel, "pods", split_list(jb->pods));
    json_object_set_new(sel, "labelSelector",
                        json_string(jb->label_selector ? jb->label_selector : ""));
    json_object_set_new(sel, "interfaces", split_list(jb->interfaces));
    json_object_set_new(o, "selector", sel);
    json_object_set_new(o, "filter", json_string(jb->filter ? jb->filter : ""));
    json_object_set_new(o, "duration", json_integer((json_int_t)jb->duration_sec));
    json_object_set_new(o, "packets", json_integer((json_int_t)jb->max_packets));
    json_object_set_new(o, "bytes", json_integer((json_int_t)jb->max_bytes));
    json_object_set_new(o, "preroll", json_integer((json_int_t)jb->preroll_sec));
    if (jb->fingerprint)
        json_object_set_new(o, "fingerprint", json_string(jb->fingerprint));
    json_object_set_new(o, "created", time_json(jb->created_ns));
    json_object_set_new(o, "start", time_json(jb->start_ns));
    json_object_set_new(o, "end", time_json(jb->end_ns));
    json_object_set_new(o, "stopped", time_json(jb->stopped_ns));
    json_object_set_new(o, "packets_written", json_integer((json_int_t)jb->packets));
    json_object_set_new(o, "bytes_written", json_integer((json_int_t)jb->bytes));
    json_object_set_new(o, "packets_over_limit", json_integer((json_int_t)jb->over_limit));
    if (persist) {
        json_object_set_new(o, "created_ns", json_integer((json_int_t)jb->created_ns));
        json_object_set_new(o, "start_ns", json_integer((json_int_t)jb->start_ns));
        json_object_set_new(o, "end_ns", json_integer((json_int_t)jb->end_ns));
        json_object_set_new(o, "stopped_ns", json_integer((json_int_t)jb->stopped_ns));
    }
    if (full || persist) {
        json_t *ps = json_object();
        for (const job_sensor *s = jb->per_sensor; s; s = s->next) {
            json_t *e = json_object();
            json_object_set_new(e, "state",
                                s->state ? json_string(state_name((int)s->state)) : json_null());
            json_object_set_new(e, "packets", json_integer((json_int_t)s->packets));
            json_object_set_new(e, "bytes", json_integer((json_int_t)s->bytes));
            json_object_set_new(e, "drops", json_integer((json_int_t)s->drops));
            json_object_set_new(e, "packets_written", json_integer((json_int_t)s->written));
            json_object_set_new(e, "bytes_written", json_integer((json_int_t)s->written_bytes));
            if (s->msg[0])
                json_object_set_new(e, "message", json_string(s->msg));
            json_object_set_new(ps, s->id, e);
        }
        json_object_set_new(o, "sensors", ps);
        json_t *files = json_array();
        for (size_t k = 0; k < jb->n_files; k++)
            json_array_append_new(files, json_string(jb->files[k]));
        json_object_set_new(o, "files", files);
    }
    return o;
}

/* Under mu. Failures are logged: the job runs on, unpersisted. */
static void persist(ps_jobs *j, const job *jb)
{
    json_t *o = job_json(jb, 1, 1);
    char *text = o ? json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", j->jobs_dir, jb->id);
    if (!text || write_atomic(path, text) != 0)
        ps_warn("receiver", "job %" PRIu64 ": cannot save %s: %s", jb->id, path,
                text ? strerror(errno) : "out of memory");
    free(text);
}

static int save_next_id(ps_jobs *j)
{
    char path[PATH_MAX], text[32];
    snprintf(path, sizeof(path), "%s/next", j->jobs_dir);
    snprintf(text, sizeof(text), "%" PRIu64 "\n", j->next_id);
    return write_atomic(path, text);
}

static char *dup_or_null(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static uint64_t jget_u64(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static char *join_list(json_t *a)
{
    if (!json_is_array(a))
        return NULL;
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v))
            n += json_string_length(v) + 1;
    }
    char *s = calloc(1, n + 1);
    if (!s)
        return NULL;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            continue;
        if (*s)
            strcat(s, ",");
        strcat(s, json_string_value(v));
    }
    if (!*s) {
        free(s);
        return NULL;
    }
    return s;
}

static job *load_job(const char *path)
{
    json_error_t e;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    job *jb = calloc(1, sizeof(*jb));
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *st = json_string_value(json_object_get(o, "state"));
    if (!jb || !name || !st || strlen(name) > PS_WIRE_MAX_JOB_NAME_LEN || !state_of(st)) {
        free(jb);
        json_decref(o);
        return NULL;
    }
    jb->id = jget_u64(o, "id");
    snprintf(jb->name, sizeof(jb->name), "%s", name);
    jb->state = state_of(st);
    const char *reason = json_string_value(json_object_get(o, "reason"));
    snprintf(jb->reason, sizeof(jb->reason), "%s", reason ? reason : "");
    json_t *sel = json_object_get(o, "selector");
    json_t *sensors = json_object_get(sel, "sensors");
    size_t i;
    json_t *v;
    json_array_foreach(sensors, i, v)
    {
        if (json_is_string(v) && jb->n_sensors < JOBS_MAX_SENSOR_GLOBS)
            jb->sensors[jb->n_sensors++] = strdup(json_string_value(v));
    }
    jb->namespaces = join_list(json_object_get(sel, "namespaces"));
    jb->pods = join_list(json_object_get(sel, "pods"));
    jb->label_selector = dup_or_null(json_string_value(json_object_get(sel, "labelSelector")));
    jb->interfaces = join_list(json_object_get(sel, "interfaces"));
    jb->filter = dup_or_null(json_string_value(json_object_get(o, "filter")));
    jb->fingerprint = dup_or_null(json_string_value(json_object_get(o, "fingerprint")));
    jb->duration_sec = jget_u64(o, "duration");
    jb->max_packets = jget_u64(o, "packets");
    jb->max_bytes = jget_u64(o, "bytes");
    jb->preroll_sec = (uint32_t)jget_u64(o, "preroll");
    jb->created_ns = jget_u64(o, "created_ns");
    jb->start_ns = jget_u64(o, "start_ns");
    jb->end_ns = jget_u64(o, "end_ns");
    jb->stopped_ns = jget_u64(o, "stopped_ns");
    jb->packets = jget_u64(o, "packets_written");
    jb->bytes = jget_u64(o, "bytes_written");
    jb->over_limit = jget_u64(o, "packets_over_limit");
    const char *k;
    json_object_foreach(json_object_get(o, "sensors"), k, v)
    {
        job_sensor *s = calloc(1, sizeof(*s));
        if (!s)
            break;
        snprintf(s->id, sizeof(s->id), "%s", k);
        const char *ss = json_string_value(json_object_get(v, "state"));
        s->state = ss ? (uint32_t)state_of(ss) : 0;
        s->packets = jget_u64(v, "packets");
        s->bytes = jget_u64(v, "bytes");
        s->drops = jget_u64(v, "drops");
        s->written = jget_u64(v, "packets_written");
        s->written_bytes = jget_u64(v, "bytes_written");
        const char *m = json_string_value(json_object_get(v, "message"));
        snprintf(s->msg, sizeof(s->msg), "%s", m ? m : "");
        s->next = jb->per_sensor;
        jb->per_sensor = s;
    }
    json_t *files = json_object_get(o, "files");
    json_array_foreach(files, i, v)
    {
        if (!json_is_string(v) || jb->n_files >= JOBS_MAX_FILES)
            continue;
        if (jb->n_files == jb->cap_files) {
            size_t nc = jb->cap_files ? jb->cap_files * 2 : 8;
            char **f = realloc(jb->files, nc * sizeof(*f));
            if (!f)
                break;
            jb->files = f;
            jb->cap_files = nc;
        }
        jb->files[jb->n_files] = strdup(json_string_value(v));
        if (jb->files[jb->n_files])
            jb->n_files++;
    }
    json_decref(o);
    if (jb->id == 0) {
        job_free(jb);
        return NULL;
    }
    return jb;
}

/* Newest first, by id. */
static void insert_sorted(ps_jobs *j, job *jb)
{
    job **pp = &j->jobs;
    while (*pp && (*pp)->id > jb->id)
        pp = &(*pp)->next;
    jb->next = *pp;
    *pp = jb;
    j->n_jobs++;
}

static int load_all(ps_jobs *j, char *err, size_t errlen)
{
    DIR *d = opendir(j->jobs_dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", j->jobs_dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    uint64_t now = now_ns();
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", j->jobs_dir, e->d_name) >= sizeof(path))
            continue;
        job *jb = load_job(path);
        if (!jb) {
            ps_warn("receiver", "ignoring %s: not a job this receiver wrote", path);
            continue;
        }
        if (jb->id >= j->next_id)
            j->next_id = jb->id + 1;
        if (jb->state == J_RUNNING && jb->end_ns && jb->end_ns <= now) {
            jb->state = J_FINISHED;
            snprintf(jb->reason, sizeof(jb->reason), "duration");
            jb->stopped_ns = jb->end_ns;
            persist(j, jb);
        }
        if (jb->state != J_RUNNING)
            jb->pushed = jb->stop_sent = 1;
        insert_sorted(j, jb);
    }
    closedir(d);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/next", j->jobs_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        uint64_t v = 0;
        if (fscanf(f, "%" SCNu64, &v) == 1 && v > j->next_id)
            j->next_id = v;
        fclose(f);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Open, free                                                               */

static void on_wake(uv_async_t *a);

int ps_jobs_open(ps_jobs **out, uv_loop_t *loop, const ps_jobs_opts *o, char *err, size_t errlen)
{
    ps_jobs *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    j->o = *o;
    j->loop = loop;
    j->next_id = 1;
    pthread_mutex_init(&j->mu, NULL);
    if (o->dir) {
        j->dir = strdup(o->dir);
        size_t n = strlen(o->dir) + sizeof(JOBS_SUBDIR) + 2;
        j->jobs_dir = malloc(n);
        if (!j->dir || !j->jobs_dir) {
            snprintf(err, errlen, "out of memory");
            ps_jobs_free(j);
            return -1;
        }
        snprintf(j->jobs_dir, n, "%s/%s", o->dir, JOBS_SUBDIR);
        if (mkdir(j->jobs_dir, 0750) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", j->jobs_dir, strerror(errno));
            ps_jobs_free(j);
            return -1;
        }
        if (load_all(j, err, errlen) != 0) {
            ps_jobs_free(j);
            return -1;
        }
    }
    j->app = strdup(o->app ? o->app : "packetstreamer");
    j->o.app = j->app;
    j->o.dir = j->dir;
    if (o->metrics) {
        j->m_state = ps_metrics_family(o->metrics, PS_METRIC_GAUGE, "packetstreamer_receiver_jobs",
                                       "Capture jobs the receiver keeps, by state.", "state");
        for (int k = J_RUNNING; k <= J_FAILED && j->m_state; k++)
            j->s_state[k] = ps_metric_series(j->m_state, state_name(k), NULL, NULL);
        ps_metric *m = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                                         "packetstreamer_receiver_job_packets_total",
                                         "Packets written to capture jobs' files.", NULL);
        j->s_packets = m ? ps_metric_series(m, NULL, NULL, NULL) : NULL;
        m = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                              "packetstreamer_receiver_job_packet_bytes_total",
                              "Bytes of packets written to capture jobs' files.", NULL);
        j->s_bytes = m ? ps_metric_series(m, NULL, NULL, NULL) : NULL;
        m = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                              "packetstreamer_receiver_job_packets_dropped_total",
                              "Job packets not written, by reason: unknown_job (an interface of a "
                              "job this receiver does not run), limit (the job had reached its "
                              "packet or byte limit, or had stopped).",
                              "reason");
        j->s_dropped_unknown = m ? ps_metric_series(m, "unknown_job", NULL, NULL) : NULL;
        j->s_dropped_limit = m ? ps_metric_series(m, "limit", NULL, NULL) : NULL;
        m = ps_metrics_family(o->metrics, PS_METRIC_COUNTER,
                              "packetstreamer_receiver_job_status_unknown_total",
                              "JOB_STATUS frames for a job this receiver does not know.", NULL);
        j->s_status_unknown = m ? ps_metric_series(m, NULL, NULL, NULL) : NULL;
    }
    if (!j->app) {
        snprintf(err, errlen, "out of memory");
        ps_jobs_free(j);
        return -1;
    }
    uv_async_init(loop, &j->wake, on_wake);
    j->wake.data = j;
    j->wake_on = 1;
    *out = j;
    return 0;
}

/* Under mu (on_job_file_closed, which it calls, does not lock). */
static void close_writer(ps_jobs *j, job *jb)
{
    (void)j;
    if (!jb->w)
        return;
    ps_writer *w = jb->w;
    jb->w = NULL;
    if (ps_writer_free(w) != 0)
        ps_warn("receiver", "job %s: completing its capture file failed: %s", jb->name,
                strerror(errno));
}

/* Under mu, as every wake(): an HTTP thread may ask for a job while the
 * loop shuts down, and must never send to a closed handle. */
void ps_jobs_stop(ps_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    if (j->wake_on) {
        uv_close((uv_handle_t *)&j->wake, NULL);
        j->wake_on = 0;
    }
    pthread_mutex_unlock(&j->mu);
}

int ps_jobs_free(ps_jobs *j)
{
    if (!j)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb; jb = jb->next) {
        if (jb->w) {
            close_writer(j, jb);
            persist(j, jb);
        }
    }
    pthread_mutex_unlock(&j->mu);
    while (j->jobs) {
        job *n = j->jobs->next;
        job_free(j->jobs);
        j->jobs = n;
    }
    free(j->ifs);
    free(j->sess);
    free(j->dir);
    free(j->jobs_dir);
    free(j->app);
    pthread_mutex_destroy(&j->mu);
    free(j);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Loop side: writers, frames to sessions                                   */

static void on_job_file_closed(void *ud, const char *path, uint64_t packets, uint64_t bytes)
{
    job *jb = ud;
    /* Called by the job's writer, always with mu held (records, ticks and
     * close_writer all run under it). */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    ps_info("receiver", "job %s: wrote %s (%" PRIu64 " packets, %" PRIu64 " bytes)", jb->name, path,
            packets, bytes);
    if (jb->n_files >= JOBS_MAX_FILES)
        return;
    if (jb->n_files == jb->cap_files) {
        size_t nc = jb->cap_files ? jb->cap_files * 2 : 8;
        char **f = realloc(jb->files, nc * sizeof(*f));
        if (!f)
            return;
        jb->files = f;
        jb->cap_files = nc;
    }
    jb->files[jb->n_files] = strdup(base);
    if (jb->files[jb->n_files])
        jb->n_files++;
    jb->dirty = 1;
}

/* The writer has one ud (the job); the sequence bookkeeping is the main
 * output's (receiver.c), reached through the job's owner. */
static int job_checkpoint(void *ud, ps_buf *out)
{
    job *jb = ud;
    return jb->owner->o.checkpoint(jb->owner->o.ud, out);
}

static void job_recovered(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    job *jb = ud;
    jb->owner->o.on_recovered(jb->owner->o.ud, id, id_len, session, seq);
}

static int open_writer(ps_jobs *j, job *jb)
{
    char path[PATH_MAX], err[512];
    const char *ext = j->o.format == PS_FORMAT_PCAPNG ? "pcapng" : "pcap";
    snprintf(path, sizeof(path), "%s/job-%s.%s", j->dir, jb->name, ext);
    ps_writer_opts wo = {.path = path,
                         .format = j->o.format,
                         .rotate_bytes = j->o.rotate_bytes,
                         .rotate_seconds = j->o.rotate_seconds,
                         .max_files = j->o.max_files,
                         .max_total_bytes = j->o.max_total_bytes,
                         .app = j->app,
                         .mode = j->o.mode,
                         .checkpoint = j->o.checkpoint ? job_checkpoint : NULL,
                         .on_recovered = j->o.on_recovered ? job_recovered : NULL,
                         .on_file_closed = on_job_file_closed,
                         .ud = jb};
    jb->owner = j;
    if (ps_writer_open(&jb->w, &wo, err, sizeof(err)) != 0) {
        ps_error("receiver", "job %s: %s", jb->name, err);
        return -1;
    }
    return 0;
}

static int sensor_matches(const job *jb, const char *sensor)
{
    if (jb->n_sensors == 0)
        return 1;
    for (int k = 0; k < jb->n_sensors; k++)
        if (fnmatch(jb->sensors[k], sensor, 0) == 0)
            return 1;
    return 0;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

static void send_start(ps_jobs *j, const job *jb, ps_session *s)
{
    (void)j;
    ps_job_start f = {.job = jb->id,
                      .start_ns = jb->start_ns,
                      .end_ns = jb->end_ns,
                      .max_packets = jb->max_packets,
                      .max_bytes = jb->max_bytes,
                      .preroll_sec = jb->preroll_sec,
                      .name = jb->name,
                      .name_len = (uint16_t)strlen(jb->name),
                      .namespaces = jb->namespaces,
                      .namespaces_len = (uint16_t)slen(jb->namespaces),
                      .pods = jb->pods,
                      .pods_len = (uint16_t)slen(jb->pods),
                      .label_selector = jb->label_selector,
                      .label_selector_len = (uint16_t)slen(jb->label_selector),
                      .interfaces = jb->interfaces,
                      .interfaces_len = (uint16_t)slen(jb->interfaces),
                      .filter = jb->filter,
                      .filter_len = (uint16_t)slen(jb->filter)};
    ps_buf b = PS_BUF_INIT;
    if (ps_wire_encode_job_start(&b, &f) != 0 || ps_session_send(s, b.data, b.len) != 0)
        ps_warn("receiver", "job %s: cannot send it to a sensor", jb->name);
    ps_buf_free(&b);
}

static void send_stop(const job *jb, ps_session *s)
{
    ps_buf b = PS_BUF_INIT;
    if (ps_wire_encode_job_stop(&b, jb->id) == 0)
        (void)ps_session_send(s, b.data, b.len);
    ps_buf_free(&b);
}

static void update_gauges(ps_jobs *j)
{
    uint64_t n[5] = {0};
    for (job *jb = j->jobs; jb; jb = jb->next)
        if (jb->state >= J_RUNNING && jb->state <= J_FAILED)
            n[jb->state]++;
    for (int k = J_RUNNING; k <= J_FAILED; k++)
        if (j->s_state[k])
            ps_series_set(j->s_state[k], (double)n[k]);
}

/* Acts on what changed (loop thread): new jobs get their writer and their
 * JOB_STARTs, ended ones their JOB_STOPs and their files completed. */
static void sync_jobs(ps_jobs *j)
{
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb; jb = jb->next) {
        if (jb->state == J_RUNNING && !jb->pushed) {
            jb->pushed = 1;
            if (open_writer(j, jb) != 0) {
                jb->state = J_FAILED;
                snprintf(jb->reason, sizeof(jb->reason), "output");
                jb->stopped_ns = now_ns();
                jb->stop_sent = 1;
                persist(j, jb);
                continue;
            }
            ps_info("receiver", "job %s (%" PRIu64 ") running", jb->name, jb->id);
            for (size_t k = 0; k < j->n_sess; k++)
                if (sensor_matches(jb, j->sess[k].sensor))
                    send_start(j, jb, j->sess[k].s);
        }
        if (jb->state != J_RUNNING && !jb->stop_sent) {
            jb->stop_sent = 1;
            for (size_t k = 0; k < j->n_sess; k++)
                if (sensor_matches(jb, j->sess[k].sensor))
                    send_stop(jb, j->sess[k].s);
            close_writer(j, jb);
            ps_info("receiver", "job %s (%" PRIu64 ") %s (%s): %" PRIu64 " packets", jb->name,
                    jb->id, state_name(jb->state), jb->reason, jb->packets);
            jb->dirty = 1;
        }
        if (jb->dirty) {
            jb->dirty = 0;
            persist(j, jb);
        }
    }
    update_gauges(j);
    pthread_mutex_unlock(&j->mu);
}

static void on_wake(uv_async_t *a)
{
    sync_jobs(a->data);
}

/* Under mu (see ps_jobs_stop). */
static void wake(ps_jobs *j)
{
    if (j->wake_on)
        uv_async_send(&j->wake);
}

void ps_jobs_start(ps_jobs *j)
{
    if (j)
        sync_jobs(j);
}

/* Under mu. */
static void end_job(ps_jobs *j, job *jb, int state, const char *reason)
{
    if (jb->state != J_RUNNING)
        return;
    jb->state = state;
    snprintf(jb->reason, sizeof(jb->reason), "%s", reason);
    jb->stopped_ns = now_ns();
    jb->dirty = 1;
    wake(j);
}

void ps_jobs_tick(ps_jobs *j, uint64_t now)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb; jb = jb->next) {
        if (jb->state == J_RUNNING && jb->end_ns && now >= jb->end_ns)
            end_job(j, jb, J_FINISHED, "duration");
        if (jb->w && ps_writer_tick(jb->w, now) != 0)
            ps_warn("receiver", "job %s: rotating its files failed: %s", jb->name, strerror(errno));
    }
    pthread_mutex_unlock(&j->mu);
    sync_jobs(j);
}

int ps_jobs_flush(ps_jobs *j)
{
    if (!j)
        return 0;
    int rc = 0, e = 0;
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb; jb = jb->next)
        if (jb->w && ps_writer_flush(jb->w) != 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
    pthread_mutex_unlock(&j->mu);
    errno = e;
    return rc;
}

void ps_jobs_session_up(ps_jobs *j, ps_session *s, const char *sensor)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    if (j->n_sess == j->cap_sess) {
        size_t nc = j->cap_sess ? j->cap_sess * 2 : 16;
        jsess *n = realloc(j->sess, nc * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&j->mu);
            ps_warn("receiver", "out of memory: sensor %s gets no capture jobs", sensor);
            return;
        }
        j->sess = n;
        j->cap_sess = nc;
    }
    j->sess[j->n_sess].s = s;
    snprintf(j->sess[j->n_sess].sensor, sizeof(j->sess[0].sensor), "%s", sensor);
    j->n_sess++;
    /* A sensor that was away when a job stopped keeps running it (jobs
     * survive reconnects) until its own deadline: it is told again. A
     * JOB_STOP for a job it does not run is ignored. */
    uint64_t now = now_ns();
    for (job *jb = j->jobs; jb; jb = jb->next) {
        if (!sensor_matches(jb, sensor))
            continue;
        if (jb->state == J_RUNNING && jb->pushed && jb->w)
            send_start(j, jb, s);
        else if (jb->state != J_RUNNING && jb->stop_sent && (jb->end_ns == 0 || jb->end_ns > now))
            send_stop(jb, s);
    }
    pthread_mutex_unlock(&j->mu);
}

void ps_jobs_session_down(ps_jobs *j, ps_session *s)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    for (size_t k = 0; k < j->n_sess; k++)
        if (j->sess[k].s == s) {
            j->sess[k] = j->sess[--j->n_sess];
            break;
        }
    pthread_mutex_unlock(&j->mu);
}

static job *find_job(ps_jobs *j, uint64_t id)
{
    for (job *jb = j->jobs; jb; jb = jb->next)
        if (jb->id == id)
            return jb;
    return NULL;
}

static job_sensor *sensor_entry(job *jb, const char *sensor)
{
    for (job_sensor *s = jb->per_sensor; s; s = s->next)
        if (strcmp(s->id, sensor) == 0)
            return s;
    job_sensor *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->id, sizeof(s->id), "%s", sensor);
    s->next = jb->per_sensor;
    jb->per_sensor = s;
    return s;
}

int ps_jobs_iface(ps_jobs *j, uint64_t id, const char *sensor, const char *name, const char *desc,
                  uint32_t linktype, uint32_t snaplen, char *err, size_t errlen)
{
    if (!j)
        return PS_JOBS_DROP;
    pthread_mutex_lock(&j->mu);
    job *jb = find_job(j, id);
    if (!jb || jb->state != J_RUNNING || !jb->w) {
        pthread_mutex_unlock(&j->mu);
        return PS_JOBS_DROP;
    }
    size_t slot = j->n_ifs;
    for (size_t k = 0; k < j->n_ifs; k++)
        if (!j->ifs[k].jb) {
            slot = k;
            break;
        }
    if (slot == j->n_ifs) {
        jiface *n = realloc(j->ifs, (j->n_ifs + 1) * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&j->mu);
            snprintf(err, errlen, "out of memory");
            errno = ENOMEM;
            return -1;
        }
        j->ifs = n;
        j->ifs[j->n_ifs].jb = NULL;
        j->n_ifs++;
    }
    int wh = ps_writer_iface(jb->w, sensor, name, desc, linktype, snaplen, err, errlen);
    if (wh < 0) {
        int e = errno;
        pthread_mutex_unlock(&j->mu);
        errno = e;
        return -1;
    }
    jiface *f = &j->ifs[slot];
    f->jb = jb;
    f->wh = wh;
    f->refs = 1;
    snprintf(f->sensor, sizeof(f->sensor), "%s", sensor);
    jb->refs++;
    (void)sensor_entry(jb, sensor);
    pthread_mutex_unlock(&j->mu);
    return (int)slot;
}

void ps_jobs_iface_release(ps_jobs *j, int h)
{
    if (!j || h < 0 || (size_t)h >= j->n_ifs)
        return;
    pthread_mutex_lock(&j->mu);
    jiface *f = &j->ifs[h];
    if (f->jb) {
        if (f->jb->w)
            ps_writer_iface_release(f->jb->w, f->wh);
        f->jb->refs--;
        f->jb = NULL;
    }
    pthread_mutex_unlock(&j->mu);
}

void ps_jobs_count_dropped(ps_jobs *j, uint64_t n)
{
    if (!j)
        return;
    j->dropped_unknown += n;
    if (j->s_dropped_unknown)
        ps_series_add(j->s_dropped_unknown, n);
}

int ps_jobs_record(ps_jobs *j, int h, uint64_t ts_ns, uint32_t caplen, uint32_t origlen,
                   const uint8_t *data)
{
    pthread_mutex_lock(&j->mu);
    jiface *f = &j->ifs[h];
    job *jb = f->jb;
    int rc = 1;
    if (!jb || jb->state != J_RUNNING || !jb->w) {
        jb = NULL;
    } else if ((jb->max_packets && jb->packets >= jb->max_packets) ||
               (jb->max_bytes && jb->bytes + caplen > jb->max_bytes)) {
        end_job(j, jb, J_FINISHED,
                jb->max_packets && jb->packets >= jb->max_packets ? "packets" : "bytes");
    }
    if (jb && jb->state != J_RUNNING)
        jb = NULL;
    if (!jb) {
        if (f->jb && f->jb->state != J_RUNNING)
            f->jb->over_limit++;
        if (j->s_dropped_limit)
            ps_series_add(j->s_dropped_limit, 1);
        pthread_mutex_unlock(&j->mu);
        return 1;
    }
    if (ps_writer_record(jb->w, f->wh, ts_ns, caplen, origlen, data) != 0) {
        int e = errno;
        pthread_mutex_unlock(&j->mu);
        errno = e;
        return -1;
    }
    rc = 0;
    jb->packets++;
    jb->bytes += caplen;
    jb->dirty = 1; /* saved by the next tick's sync: a restart resumes near this count */
    job_sensor *s = sensor_entry(jb, f->sensor);
    if (s) {
        s->written++;
        s->written_bytes += caplen;
    }
    if (j->s_packets)
        ps_series_add(j->s_packets, 1);
    if (j->s_bytes)
        ps_series_add(j->s_bytes, caplen);
    if ((jb->max_packets && jb->packets >= jb->max_packets) ||
        (jb->max_bytes && jb->bytes >= jb->max_bytes))
        end_job(j, jb, J_FINISHED,
                jb->max_packets && jb->packets >= jb->max_packets ? "packets" : "bytes");
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int ps_jobs_batch_end(ps_jobs *j, int h, uint64_t session, uint64_t seq)
{
    pthread_mutex_lock(&j->mu);
    jiface *f = &j->ifs[h];
    int rc = 0;
    if (f->jb && f->jb->w)
        rc = ps_writer_batch_end(f->jb->w, f->wh, f->sensor, session, seq);
    int e = errno;
    pthread_mutex_unlock(&j->mu);
    errno = e;
    return rc;
}

void ps_jobs_iface_stats(ps_jobs *j, int h, uint64_t ts_ns, uint64_t recv, uint64_t drop,
                         uint64_t osdrop)
{
    if (!j || h < 0)
        return;
    pthread_mutex_lock(&j->mu);
    jiface *f = &j->ifs[h];
    if (f->jb && f->jb->w)
        ps_writer_iface_stats(f->jb->w, f->wh, ts_ns, recv, drop, osdrop);
    pthread_mutex_unlock(&j->mu);
}

void ps_jobs_status(ps_jobs *j, const char *sensor, const ps_job_status *st)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    job *jb = find_job(j, st->job);
    job_sensor *s = jb ? sensor_entry(jb, sensor) : NULL;
    if (!s) {
        pthread_mutex_unlock(&j->mu);
        if (j->s_status_unknown)
            ps_series_add(j->s_status_unknown, 1);
        ps_debug("receiver", "sensor %s: status for unknown job %" PRIu64, sensor, st->job);
        return;
    }
    int changed = s->state != st->state;
    s->state = st->state;
    s->packets = st->packets;
    s->bytes = st->bytes;
    s->drops = st->drops;
    size_t n = st->msg_len < sizeof(s->msg) - 1 ? st->msg_len : sizeof(s->msg) - 1;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)st->msg[k];
        s->msg[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    s->msg[n] = '\0';
    if (changed) {
        jb->dirty = 1;
        if (st->state == PS_JOB_FAILED)
            ps_warn("receiver", "job %s failed on sensor %s: %s", jb->name, sensor, s->msg);
    }
    pthread_mutex_unlock(&j->mu);
}

/* ------------------------------------------------------------------------ */
/* HTTP side: validation and the table                                      */

static char *error_body(const char *field, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *error_body(const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg));
    if (field)
        json_object_set_new(o, "field", json_string(field));
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return t;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PS_WIRE_MAX_JOB_NAME_LEN)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= '0' && s[k] <= '9') || s[k] == '-'))
            return 0;
    return 1;
}

/* "30s", "5m", "2h", "90" or a JSON number: seconds, or 0 when invalid. */
static uint64_t parse_duration(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    if (!json_is_string(v))
        return 0;
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-' || *s == '+' || n == 0 || n > 100000000ull)
        return 0;
    uint64_t mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    if (*end)
        return 0;
    return n * mul;
}

/* A JSON array of strings into a comma-joined string: NULL for none, "" on
 * error (message in why). */
static int list_field(json_t *sel, const char *key, int pods, char **out, char *why, size_t whylen)
{
    *out = NULL;
    json_t *a = json_object_get(sel, key);
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a)) {
        snprintf(why, whylen, "must be a list of strings");
        return -1;
    }
    size_t i, total = 0;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            snprintf(why, whylen, "must be a list of non-empty strings");
            return -1;
        }
        const char *s = json_string_value(v);
        if (strchr(s, ',') || strlen(s) != json_string_length(v)) {
            snprintf(why, whylen, "'%s' holds a comma or a NUL", s);
            return -1;
        }
        if (pods) {
            const char *sl = strchr(s, '/');
            if (!sl || sl == s || !sl[1] || strchr(sl + 1, '/')) {
                snprintf(why, whylen, "'%s' is not NAMESPACE/NAME", s);
                return -1;
            }
        }
        total += json_string_length(v) + 1;
    }
    if (total > PS_WIRE_MAX_JOB_SEL_LEN + 1) {
        snprintf(why, whylen, "longer than %u bytes joined", PS_WIRE_MAX_JOB_SEL_LEN);
        return -1;
    }
    *out = join_list(a);
    return 0;
}

/* Under mu: a free place for one more job, evicting the oldest finished
 * one beyond jobs.maxJobs. 0, or -1 when all kept jobs are running. */
static int make_room(ps_jobs *j)
{
    while (j->n_jobs >= j->o.max_jobs) {
        job **victim = NULL;
        for (job **pp = &j->jobs; *pp; pp = &(*pp)->next)
            if ((*pp)->state != J_RUNNING && (*pp)->refs == 0 && (*pp)->stop_sent && !(*pp)->w)
                victim = pp;
        if (!victim)
            return -1;
        job *v = *victim;
        *victim = v->next;
        j->n_jobs--;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%" PRIu64 ".json", j->jobs_dir, v->id);
        unlink(path);
        job_free(v);
    }
    return 0;
}

/* Builds a job from a request (HTTP thread); NULL with *status and *body
 * set on a validation error. */
static job *job_from_json(ps_jobs *j, json_t *o, int *status, char **body)
{
    static const char *const top[] = {"name",    "selector", "filter",  "duration",
                                      "packets", "bytes",    "preroll", NULL};
    static const char *const selk[] = {"sensors",       "namespaces", "pods",
                                       "labelSelector", "interfaces", NULL};
    *status = 400;
    if (!json_is_object(o)) {
        *body = error_body(NULL, "the body must be a JSON object");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (int i = 0; top[i]; i++)
            ok |= strcmp(k, top[i]) == 0;
        if (!ok) {
            *body = error_body(k,
                               "unknown field '%s' (fields: name, selector, filter, duration, "
                               "packets, bytes, preroll)",
                               k);
            return NULL;
        }
    }
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || !valid_name(json_string_value(name))) {
        *body = error_body("name", "name must be 1..63 characters of a-z, 0-9 and '-'");
        return NULL;
    }
    job *jb = calloc(1, sizeof(*jb));
    if (!jb) {
        *status = 500;
        *body = error_body(NULL, "out of memory");
        return NULL;
    }
    snprintf(jb->name, sizeof(jb->name), "%s", json_string_value(name));
    json_t *sel = json_object_get(o, "selector");
    char why[300];
    if (sel && !json_is_null(sel)) {
        if (!json_is_object(sel)) {
            *body = error_body("selector", "selector must be an object");
            goto bad;
        }
        json_object_foreach(sel, k, v)
        {
            int ok = 0;
            for (int i = 0; selk[i]; i++)
                ok |= strcmp(k, selk[i]) == 0;
            if (!ok) {
                char f[128];
                snprintf(f, sizeof(f), "selector.%s", k);
                *body = error_body(f,
                                   "unknown field '%s' (selector fields: sensors, namespaces, "
                                   "pods, labelSelector, interfaces)",
                                   f);
                goto bad;
            }
        }
        json_t *sensors = json_object_get(sel, "sensors");
        if (sensors && !json_is_null(sensors)) {
            size_t i;
            if (!json_is_array(sensors) || json_array_size(sensors) > JOBS_MAX_SENSOR_GLOBS) {
                *body = error_body("selector.sensors",
                                   "selector.sensors must be a list of at "
                                   "most %d sensor ids or globs",
                                   JOBS_MAX_SENSOR_GLOBS);
                goto bad;
            }
            json_array_foreach(sensors, i, v)
            {
                if (!json_is_string(v) || json_string_length(v) == 0 ||
                    json_string_length(v) > PS_WIRE_MAX_ID_LEN) {
                    *body = error_body("selector.sensors",
                                       "selector.sensors holds an empty or too long entry");
                    goto bad;
                }
                jb->sensors[jb->n_sensors] = strdup(json_string_value(v));
                if (!jb->sensors[jb->n_sensors]) {
                    *status = 500;
                    *body = error_body(NULL, "out of memory");
                    goto bad;
                }
                jb->n_sensors++;
            }
        }
        static const struct {
            const char *key, *field;
            int pods;
            size_t off;
        } lists[] = {
            {"namespaces", "selector.namespaces", 0, offsetof(job, namespaces)},
            {"pods", "selector.pods", 1, offsetof(job, pods)},
            {"interfaces", "selector.interfaces", 0, offsetof(job, interfaces)},
        };
        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
            char **dst = (char **)((char *)jb + lists[i].off);
            if (list_field(sel, lists[i].key, lists[i].pods, dst, why, sizeof(why)) != 0) {
                *body = error_body(lists[i].field, "%s %s", lists[i].field, why);
                goto bad;
            }
        }
        json_t *ls = json_object_get(sel, "labelSelector");
        if (ls && !json_is_null(ls)) {
            if (!json_is_string(ls) || json_string_length(ls) > PS_WIRE_MAX_JOB_SEL_LEN ||
                strlen(json_string_value(ls)) != json_string_length(ls)) {
                *body = error_body("selector.labelSelector",
                                   "selector.labelSelector must be a string of at most %u bytes",
                                   PS_WIRE_MAX_JOB_SEL_LEN);
                goto bad;
            }
            jb->label_selector = dup_or_null(json_string_value(ls));
        }
    }
    json_t *filter = json_object_get(o, "filter");
    if (filter && !json_is_null(filter)) {
        if (!json_is_string(filter) || json_string_length(filter) > PS_WIRE_MAX_JOB_SEL_LEN ||
            strlen(json_string_value(filter)) != json_string_length(filter)) {
            *body = error_body("filter", "filter must be a string of at most %u bytes",
                               PS_WIRE_MAX_JOB_SEL_LEN);
            goto bad;
        }
        const char *fs = json_string_value(filter);
        if (*fs) {
            pcap_t *p = pcap_open_dead(DLT_EN10MB, 262144);
            struct bpf_program prog;
            if (!p) {
                *status = 500;
                *body = error_body(NULL, "out of memory");
                goto bad;
            }
            if (pcap_compile(p, &prog, fs, 1, PCAP_NETMASK_UNKNOWN) != 0) {
                *body = error_body("filter", "filter: %s", pcap_geterr(p));
                pcap_close(p);
                goto bad;
            }
            pcap_freecode(&prog);
            pcap_close(p);
            jb->filter = strdup(fs);
        }
    }
    json_t *dur = json_object_get(o, "duration");
    uint32_t maxd = j->o.max_duration_sec;
    if (dur && !json_is_null(dur)) {
        jb->duration_sec = parse_duration(dur);
        if (jb->duration_sec == 0) {
            *body = error_body("duration", "duration must be a positive number of seconds or "
                                           "a string like \"30s\", \"5m\", \"1h\"");
            goto bad;
        }
        if (jb->duration_sec > maxd) {
            *body = error_body("duration",
                               "duration %" PRIu64 " s is over the maximum of %u s "
                               "(jobs.maxDurationSec)",
                               jb->duration_sec, maxd);
            goto bad;
        }
    } else {
        jb->duration_sec = j->o.default_duration_sec < maxd ? j->o.default_duration_sec : maxd;
    }
    static const char *const lim[] = {"packets", "bytes"};
    for (int i = 0; i < 2; i++) {
        json_t *l = json_object_get(o, lim[i]);
        if (!l || json_is_null(l))
            continue;
        if (!json_is_integer(l) || json_integer_value(l) < 0) {
            *body = error_body(lim[i], "%s must be a non-negative integer (0: no limit)", lim[i]);
            goto bad;
        }
        if (i == 0)
            jb->max_packets = (uint64_t)json_integer_value(l);
        else
            jb->max_bytes = (uint64_t)json_integer_value(l);
    }
    json_t *pre = json_object_get(o, "preroll");
    jb->preroll_sec = j->o.default_preroll_sec;
    if (pre && !json_is_null(pre)) {
        if (!json_is_integer(pre) || json_integer_value(pre) < 0 ||
            json_integer_value(pre) > PS_WIRE_MAX_PREROLL_SEC) {
            *body = error_body("preroll", "preroll must be an integer of 0..%u seconds",
                               PS_WIRE_MAX_PREROLL_SEC);
            goto bad;
        }
        jb->preroll_sec = (uint32_t)json_integer_value(pre);
    }
    return jb;
bad:
    job_free(jb);
    return NULL;
}

/* Under mu: gives jb its id and times, persists it, adds it. status/body
 * on failure. */
static int add_job(ps_jobs *j, job *jb, int *status, char **body)
{
    for (job *o = j->jobs; o; o = o->next)
        if (o->state == J_RUNNING && strcmp(o->name, jb->name) == 0) {
            *status = 409;
            *body =
                error_body("name", "a job named '%s' is running (id %" PRIu64 ")", jb->name, o->id);
            return -1;
        }
    if (make_room(j) != 0) {
        *status = 429;
        *body =
            error_body(NULL, "%u jobs are running (jobs.maxJobs): stop one first", j->o.max_jobs);
        return -1;
    }
    jb->id = j->next_id++;
    if (save_next_id(j) != 0) {
        *status = 500;
        *body = error_body(NULL, "cannot save %s/next: %s", j->jobs_dir, strerror(errno));
        return -1;
    }
    jb->created_ns = jb->start_ns = now_ns();
    jb->end_ns = jb->start_ns + jb->duration_sec * 1000000000ull;
    jb->state = J_RUNNING;
    persist(j, jb);
    insert_sorted(j, jb);
    return 0;
}

static char *dump(json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return t;
}

int ps_jobs_http_create(ps_jobs *j, const char *text, size_t len, char **body)
{
    if (!j->dir) {
        *body = error_body(NULL, "capture jobs need an output directory (output.file.path)");
        return 409;
    }
    json_error_t e;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!o) {
        *body = error_body(NULL, "not JSON: %s (line %d)", e.text, e.line);
        return 400;
    }
    int status;
    job *jb = job_from_json(j, o, &status, body);
    json_decref(o);
    if (!jb)
        return status;
    pthread_mutex_lock(&j->mu);
    if (add_job(j, jb, &status, body) != 0) {
        pthread_mutex_unlock(&j->mu);
        job_free(jb);
        return status;
    }
    *body = dump(job_json(jb, 1, 0));
    wake(j);
    pthread_mutex_unlock(&j->mu);
    return 201;
}

int ps_jobs_http_list(ps_jobs *j, char **body)
{
    json_t *a = json_array();
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb && a; jb = jb->next)
        json_array_append_new(a, job_json(jb, 0, 0));
    pthread_mutex_unlock(&j->mu);
    *body = dump(a);
    return 200;
}

static int parse_id(const char *s, uint64_t *id)
{
    char *end;
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v == 0)
        return -1;
    *id = v;
    return 0;
}

int ps_jobs_http_get(ps_jobs *j, const char *ids, char **body)
{
    uint64_t id;
    if (parse_id(ids, &id) != 0) {
        *body = error_body("id", "not a job id: '%s'", ids);
        return 404;
    }
    pthread_mutex_lock(&j->mu);
    job *jb = find_job(j, id);
    *body = jb ? dump(job_json(jb, 1, 0)) : error_body("id", "no job %" PRIu64, id);
    pthread_mutex_unlock(&j->mu);
    return jb ? 200 : 404;
}

int ps_jobs_http_delete(ps_jobs *j, const char *ids, char **body)
{
    uint64_t id;
    if (parse_id(ids, &id) != 0) {
        *body = error_body("id", "not a job id: '%s'", ids);
        return 404;
    }
    pthread_mutex_lock(&j->mu);
    job *jb = find_job(j, id);
    if (jb) {
        end_job(j, jb, J_STOPPED, "deleted");
        persist(j, jb);
        *body = dump(job_json(jb, 1, 0));
    } else {
        *body = error_body("id", "no job %" PRIu64, id);
    }
    pthread_mutex_unlock(&j->mu);
    return jb ? 200 : 404;
}

/* A Kubernetes object name as an alert label may hold it: 1..253 bytes of
 * [a-z0-9.-]; anything else is not a pod or namespace the sensors know. */
static int k8s_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n;
}

/* An alert's name part: lowercase [a-z0-9-], other bytes as '-'. */
static void name_part(char *out, size_t outlen, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 1 < outlen; s++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '-';
        out[n++] = c;
    }
    out[n] = '\0';
}

int ps_jobs_http_alertmanager(ps_jobs *j, const char *text, size_t len, char **body)
{
    if (!j->dir) {
        *body = error_body(NULL, "capture jobs need an output directory (output.file.path)");
        return 409;
    }
    json_error_t e;
    json_t *o = json_loadb(text, len, 0, &e);
    if (!json_is_object(o)) {
        json_decref(o);
        *body = error_body(NULL, "not a JSON object: %s", e.text);
        return 400;
    }
    json_t *alerts = json_object_get(o, "alerts");
    if (!json_is_array(alerts)) {
        json_decref(o);
        *body = error_body("alerts", "an Alertmanager webhook payload has an 'alerts' list");
        return 400;
    }
    json_t *started = json_array(), *skipped = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        const char *status = json_string_value(json_object_get(a, "status"));
        json_t *labels = json_object_get(a, "labels");
        const char *ns = json_string_value(json_object_get(labels, "namespace"));
        const char *pod = json_string_value(json_object_get(labels, "pod"));
        const char *alertname = json_string_value(json_object_get(labels, "alertname"));
        const char *fp = json_string_value(json_object_get(a, "fingerprint"));
        if (!status || strcmp(status, "firing") != 0 || !k8s_name(ns) || !fp || !*fp ||
            (pod && *pod && !k8s_name(pod))) {
            json_array_append_new(skipped, json_string(fp ? fp : ""));
            continue;
        }
        char an[40], fpp[24], name[PS_WIRE_MAX_JOB_NAME_LEN + 1];
        name_part(an, sizeof(an), alertname ? alertname : "alert");
        name_part(fpp, sizeof(fpp), fp);
        snprintf(name, sizeof(name), "%s-%.16s", an[0] ? an : "alert", fpp);
        job *jb = calloc(1, sizeof(*jb));
        if (!jb)
            break;
        snprintf(jb->name, sizeof(jb->name), "%s", name);
        jb->namespaces = strdup(ns);
        if (pod && *pod) {
            size_t n = strlen(ns) + strlen(pod) + 2;
            jb->pods = malloc(n);
            if (jb->pods)
                snprintf(jb->pods, n, "%s/%s", ns, pod);
        }
        jb->fingerprint = strdup(fp);
        uint32_t maxd = j->o.max_duration_sec;
        jb->duration_sec = j->o.am_duration_sec < maxd ? j->o.am_duration_sec : maxd;
        jb->preroll_sec = j->o.am_preroll_sec;
        if (!jb->namespaces || !jb->fingerprint || (pod && *pod && !jb->pods) || strchr(ns, ',') ||
            (pod && strchr(pod, ',')) || strlen(ns) > 253 || (pod && strlen(pod) > 253)) {
            job_free(jb);
            json_array_append_new(skipped, json_string(fp));
            continue;
        }
        pthread_mutex_lock(&j->mu);
        int dup = 0;
        for (job *x = j->jobs; x; x = x->next)
            if (x->state == J_RUNNING && x->fingerprint && strcmp(x->fingerprint, fp) == 0)
                dup = 1;
        int st;
        char *eb = NULL;
        if (dup || add_job(j, jb, &st, &eb) != 0) {
            pthread_mutex_unlock(&j->mu);
            if (eb)
                ps_warn("receiver", "alertmanager: alert %s not started: %s", fp, eb);
            free(eb);
            job_free(jb);
            json_array_append_new(skipped, json_string(fp));
            continue;
        }
        json_array_append_new(started, job_json(jb, 0, 0));
        pthread_mutex_unlock(&j->mu);
        ps_info("receiver", "alertmanager: alert %s in %s%s%s started job %s", fp, ns,
                pod ? "/" : "", pod ? pod : "", name);
    }
    json_decref(o);
    pthread_mutex_lock(&j->mu);
    wake(j);
    pthread_mutex_unlock(&j->mu);
    json_t *r = json_object();
    json_object_set_new(r, "started", started);
    json_object_set_new(r, "skipped", skipped);
    *body = dump(r);
    return 200;
}

char *ps_jobs_summary_json(ps_jobs *j)
{
    if (!j)
        return strdup("[]");
    json_t *a = json_array();
    pthread_mutex_lock(&j->mu);
    for (job *jb = j->jobs; jb && a; jb = jb->next)
        json_array_append_new(a, job_json(jb, 1, 0));
    pthread_mutex_unlock(&j->mu);
    return dump(a);
}
