/*
 * test_jobs: the receiver's job table without sessions: validation answers,
 * persistence in OUTPUT/.jobs and what a restart makes of it (resumed,
 * finished while down, ids never reused), jobs.maxJobs eviction, the
 * Alertmanager payload, and the packet limit on the record path with a real
 * job writer (the files it completes are listed on the job).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "receiver/jobs.h"
#include "testutil.h"

typedef struct fx {
    char dir[256];
    uv_loop_t loop;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(tu_mkdtemp(f->dir, sizeof(f->dir), "test_jobs"), 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static ps_jobs *open_jobs(fx *f, uint32_t max_jobs)
{
    ps_jobs_opts o = {.dir = f->dir,
                      .format = PS_FORMAT_PCAPNG,
                      .app = "test",
                      .max_duration_sec = 600,
                      .default_duration_sec = 60,
                      .default_preroll_sec = 2,
                      .max_jobs = max_jobs,
                      .am_duration_sec = 30,
                      .am_preroll_sec = 5};
    ps_jobs *j = NULL;
    char err[256];
    assert_int_equal(ps_jobs_open(&j, &f->loop, &o, err, sizeof(err)), 0);
    return j;
}

static void close_jobs(fx *f, ps_jobs *j)
{
    ps_jobs_stop(j);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(ps_jobs_free(j), 0);
}

/* POST; returns the status, *out the parsed answer (caller decrefs). */
static int create(ps_jobs *j, const char *text, json_t **out)
{
    char *body = NULL;
    int st = ps_jobs_http_create(j, text, strlen(text), &body);
    assert_non_null(body);
    *out = json_loads(body, 0, NULL);
    assert_non_null(*out);
    free(body);
    return st;
}

static json_t *get(ps_jobs *j, const char *id, int want)
{
    char *body = NULL;
    assert_int_equal(ps_jobs_http_get(j, id, &body), want);
    json_t *o = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(o);
    return o;
}

static const char *sfield(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void test_validation(void **state)
{
    fx *f = *state;
    ps_jobs *j = open_jobs(f, 8);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"name\":\"a\",\"duration\":601}", "duration"},
        {"{\"name\":\"a\",\"duration\":\"10x\"}", "duration"},
        {"{\"name\":\"a\",\"duration\":\"\"}", "duration"},
        {"{\"name\":\"a\",\"duration\":true}", "duration"},
        {"{\"name\":\"A\"}", "name"},
        {"{\"name\":\"\"}", "name"},
        {"{\"name\":\"a b\"}", "name"},
        {"{\"name\":\"a\",\"filter\":\"ip and\"}", "filter"},
        {"{\"name\":\"a\",\"filter\":7}", "filter"},
        {"{\"name\":\"a\",\"bytes\":\"9\"}", "bytes"},
        {"{\"name\":\"a\",\"preroll\":-1}", "preroll"},
        {"{\"name\":\"a\",\"selector\":[]}", "selector"},
        {"{\"name\":\"a\",\"selector\":{\"sensors\":[\"\"]}}", "selector.sensors"},
        {"{\"name\":\"a\",\"selector\":{\"interfaces\":[\"a,b\"]}}", "selector.interfaces"},
        {"{\"name\":\"a\",\"selector\":{\"pods\":[\"a/b/c\"]}}", "selector.pods"},
        {"{\"name\":\"a\",\"selector\":{\"labelSelector\":5}}", "selector.labelSelector"},
        {"{\"name\":\"a\",\"extra\":1}", "extra"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        json_t *o;
        int st = create(j, bad[k].body, &o);
        if (st != 400 || strcmp(sfield(o, "field"), bad[k].field) != 0)
            fail_msg("%s: %d field '%s', want 400 '%s' (%s)", bad[k].body, st, sfield(o, "field"),
                     bad[k].field, sfield(o, "error"));
        json_decref(o);
    }
    json_t *o;
    assert_int_equal(create(j, "[1]", &o), 400);
    json_decref(o);
    assert_int_equal(create(j, "{", &o), 400);
    json_decref(o);
    /* Defaults; "5m" is 300 s; an empty selector is everything. */
    assert_int_equal(create(j, "{\"name\":\"d\",\"duration\":\"5m\",\"selector\":{}}", &o), 201);
    assert_int_equal(json_integer_value(json_object_get(o, "duration")), 300);
    assert_int_equal(json_integer_value(json_object_get(o, "preroll")), 2);
    assert_string_equal(sfield(o, "state"), "running");
    json_decref(o);
    close_jobs(f, j);
}

static void test_persist_and_resume(void **state)
{
    fx *f = *state;
    ps_jobs *j = open_jobs(f, 8);
    json_t *o;
    assert_int_equal(create(j,
                            "{\"name\":\"keep\",\"duration\":600,\"selector\":{\"pods\":"
                            "[\"shop/api-1\"],\"namespaces\":[\"shop\",\"pay\"]},"
                            "\"filter\":\"tcp port 80\",\"packets\":9}",
                            &o),
                     201);
    json_int_t keep = json_integer_value(json_object_get(o, "id"));
    json_decref(o);
    assert_int_equal(create(j, "{\"name\":\"short\",\"duration\":1}", &o), 201);
    json_int_t shortid = json_integer_value(json_object_get(o, "id"));
    json_decref(o);
    char *body = NULL;
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", (long long)keep);
    close_jobs(f, j);
    char path[512];
    snprintf(path, sizeof(path), "%s/.jobs/%lld.json", f->dir, (long long)keep);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    sleep(1);
    usleep(200000);

    j = open_jobs(f, 8);
    o = get(j, ids, 200);
    assert_string_equal(sfield(o, "state"), "running");
    assert_string_equal(sfield(o, "filter"), "tcp port 80");
    assert_int_equal(json_integer_value(json_object_get(o, "packets")), 9);
    json_t *sel = json_object_get(o, "selector");
    assert_string_equal(json_string_value(json_array_get(json_object_get(sel, "namespaces"), 1)),
                        "pay");
    assert_string_equal(json_string_value(json_array_get(json_object_get(sel, "pods"), 0)),
                        "shop/api-1");
    json_decref(o);
    snprintf(ids, sizeof(ids), "%lld", (long long)shortid);
    o = get(j, ids, 200);
    assert_string_equal(sfield(o, "state"), "finished"); /* its end passed while down */
    assert_string_equal(sfield(o, "reason"), "duration");
    json_decref(o);
    /* A new job gets a new id, even after the highest one is deleted. */
    assert_int_equal(ps_jobs_http_delete(j, ids, &body), 200);
    free(body);
    assert_int_equal(create(j, "{\"name\":\"next\"}", &o), 201);
    assert_true(json_integer_value(json_object_get(o, "id")) > shortid);
    json_decref(o);
    o = get(j, "999", 404);
    json_decref(o);
    o = get(j, "-1", 404);
    json_decref(o);
    close_jobs(f, j);
}

static void test_max_jobs(void **state)
{
    fx *f = *state;
    ps_jobs *j = open_jobs(f, 2);
    json_t *o;
    assert_int_equal(create(j, "{\"name\":\"a\"}", &o), 201);
    json_int_t a = json_integer_value(json_object_get(o, "id"));
    json_decref(o);
    assert_int_equal(create(j, "{\"name\":\"b\"}", &o), 201);
    json_decref(o);
    /* Both run: no room. */
    assert_int_equal(create(j, "{\"name\":\"c\"}", &o), 429);
    json_decref(o);
    char ids[32], *body = NULL;
    snprintf(ids, sizeof(ids), "%lld", (long long)a);
    assert_int_equal(ps_jobs_http_delete(j, ids, &body), 200);
    free(body);
    /* The loop has to act on the stop (JOB_STOP, files) before it can go. */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(create(j, "{\"name\":\"c\"}", &o), 201);
    json_decref(o);
    o = get(j, ids, 404); /* the oldest finished one was forgotten */
    json_decref(o);
    char path[512];
    snprintf(path, sizeof(path), "%s/.jobs/%s.json", f->dir, ids);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(ps_jobs_http_list(j, &body), 200);
    o = json_loads(body, 0, NULL);
    free(body);
    assert_int_equal(json_array_size(o), 2);
    json_decref(o);
    close_jobs(f, j);
}

static void test_alertmanager(void **state)
{
    fx *f = *state;
    ps_jobs *j = open_jobs(f, 8);
    static const char am[] =
        "{\"version\":\"4\",\"status\":\"firing\",\"receiver\":\"r\",\"groupLabels\":{},"
        "\"commonLabels\":{},\"alerts\":["
        "{\"status\":\"firing\",\"labels\":{\"alertname\":\"Disk_Full!\",\"namespace\":\"db\"},"
        "\"annotations\":{},\"startsAt\":\"2026-12-05T07:00:00Z\",\"fingerprint\":\"ABC123\"},"
        "{\"status\":\"firing\",\"labels\":{\"alertname\":\"X\",\"namespace\":\"bad/ns\"},"
        "\"fingerprint\":\"f2\"},"
        "{\"status\":\"firing\",\"labels\":{\"alertname\":\"X\"},\"fingerprint\":\"f3\"},"
        "{\"status\":\"resolved\",\"labels\":{\"namespace\":\"db\"},\"fingerprint\":\"f4\"}]}";
    char *body = NULL;
    assert_int_equal(ps_jobs_http_alertmanager(j, am, sizeof(am) - 1, &body), 200);
    json_t *o = json_loads(body, 0, NULL);
    free(body);
    json_t *started = json_object_get(o, "started");
    assert_int_equal(json_array_size(started), 1);
    json_t *jb = json_array_get(started, 0);
    assert_string_equal(sfield(jb, "name"), "disk-full--abc123");
    assert_int_equal(json_integer_value(json_object_get(jb, "duration")), 30);
    assert_int_equal(json_integer_value(json_object_get(jb, "preroll")), 5);
    assert_int_equal(json_array_size(json_object_get(json_object_get(jb, "selector"), "pods")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "skipped")), 3);
    json_decref(o);
    assert_int_equal(ps_jobs_http_alertmanager(j, am, sizeof(am) - 1, &body), 200);
    o = json_loads(body, 0, NULL);
    free(body);
    assert_int_equal(json_array_size(json_object_get(o, "started")), 0); /* not twice */
    json_decref(o);
    assert_int_equal(ps_jobs_http_alertmanager(j, "[]", 2, &body), 400);
    free(body);
    close_jobs(f, j);
}

/* The record path against a real job writer: exactly `packets` records are
 * written, the rest refused, and the job finishes with reason "packets". */
static void test_packet_limit(void **state)
{
    fx *f = *state;
    ps_jobs *j = open_jobs(f, 8);
    json_t *o;
    assert_int_equal(create(j, "{\"name\":\"lim\",\"packets\":3}", &o), 201);
    json_int_t id = json_integer_value(json_object_get(o, "id"));
    json_decref(o);
    ps_jobs_start(j); /* opens the job's writer */
    char err[256];
    assert_int_equal(ps_jobs_iface(j, 12345, "s1", "eth0", "", 1, 65535, err, sizeof(err)),
                     PS_JOBS_DROP);
    int h = ps_jobs_iface(j, (uint64_t)id, "s1", "eth0", "", 1, 65535, err, sizeof(err));
    assert_true(h >= 0);
    uint8_t pkt[60] = {0};
    int written = 0, refused = 0;
    for (int k = 0; k < 5; k++) {
        pkt[0] = (uint8_t)k;
        int rc = ps_jobs_record(j, h, 1700000000000000000ull + (uint64_t)k, sizeof(pkt),
                                sizeof(pkt), pkt);
        assert_true(rc == 0 || rc == 1);
        written += rc == 0;
        refused += rc == 1;
    }
    assert_int_equal(written, 3);
    assert_int_equal(refused, 2);
    assert_int_equal(ps_jobs_batch_end(j, h, 1, 1), 0);
    assert_int_equal(ps_jobs_flush(j), 0);
    ps_job_status js = {.job = (uint64_t)id, .state = PS_JOB_STOPPED, .packets = 5, .drops = 2};
    ps_jobs_status(j, "s1", &js);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* the loop stops it: files completed */
    ps_jobs_iface_release(j, h);
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    o = get(j, ids, 200);
    assert_string_equal(sfield(o, "state"), "finished");
    assert_string_equal(sfield(o, "reason"), "packets");
    assert_int_equal(json_integer_value(json_object_get(o, "packets_written")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "packets_over_limit")), 2);
    json_t *s1 = json_object_get(json_object_get(o, "sensors"), "s1");
    assert_int_equal(json_integer_value(json_object_get(s1, "packets")), 5);
    assert_int_equal(json_integer_value(json_object_get(s1, "packets_written")), 3);
    assert_string_equal(sfield(s1, "state"), "stopped");
    json_t *files = json_object_get(o, "files");
    assert_int_equal(json_array_size(files), 1);
    const char *name = json_string_value(json_array_get(files, 0));
    assert_true(strncmp(name, "job-lim-", 8) == 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    size_t len = 0;
    void *data = tu_slurp(path, &len);
    assert_non_null(data);
    assert_true(len > 3 * sizeof(pkt));
    free(data);
    json_decref(o);
    close_jobs(f, j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alertmanager, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packet_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
