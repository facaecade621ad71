/*
 * podsel: capture.pods selects the pods Kubernetes' own selector semantics
 * would (k8s.io/apimachinery labels), and a wrong selector is refused with
 * a message that says where.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sensor/podsel.h"

/* A pod in namespace ns with labels "k=v" (NULL-terminated). */
static char ns_buf[64], name_buf[] = "p", uid_buf[] = "u";

static ps_pod mkpod(const char *ns, char **labels)
{
    ps_pod p;
    memset(&p, 0, sizeof(p));
    snprintf(ns_buf, sizeof(ns_buf), "%s", ns);
    p.ns = ns_buf;
    p.name = name_buf;
    p.uid = uid_buf;
    while (labels && labels[p.n_labels])
        p.n_labels++;
    for (int i = 0; i < p.n_labels; i++)
        p.labels[i] = labels[i];
    return p;
}

static int sel_match(const char *selector, const char *ns, char **labels)
{
    ps_podsel *s = NULL;
    char err[256];
    if (ps_podsel_new(&s, NULL, 0, NULL, 0, selector, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    ps_pod p = mkpod(ns, labels);
    int r = ps_podsel_match(s, &p);
    ps_podsel_free(s);
    return r;
}

static void test_operators(void **state)
{
    (void)state;
    char *web[] = {"app=web", "tier=front", "example.com/team=a", NULL};
    char *db[] = {"app=db", "canary=", NULL};
    char *none[] = {NULL};

    assert_int_equal(sel_match("app=web", "x", web), 1);
    assert_int_equal(sel_match("app==web", "x", web), 1);
    assert_int_equal(sel_match("app=web", "x", db), 0);
    assert_int_equal(sel_match("app!=web", "x", db), 1);
    assert_int_equal(sel_match("app!=web", "x", web), 0);
    /* != and notin match a pod without the key, as in Kubernetes */
    assert_int_equal(sel_match("app!=web", "x", none), 1);
    assert_int_equal(sel_match("tier notin (front)", "x", db), 1);
    assert_int_equal(sel_match("tier notin (front,back)", "x", web), 0);
    assert_int_equal(sel_match("tier in (a,front)", "x", web), 1);
    assert_int_equal(sel_match("tier in (a,b)", "x", web), 0);
    assert_int_equal(sel_match("tier in (a,b)", "x", none), 0);
    assert_int_equal(sel_match("canary", "x", db), 1); /* exists, even with an empty value */
    assert_int_equal(sel_match("canary", "x", web), 0);
    assert_int_equal(sel_match("!canary", "x", web), 1);
    assert_int_equal(sel_match("!canary", "x", db), 0);
    assert_int_equal(sel_match("canary=", "x", db), 1);
    assert_int_equal(sel_match("example.com/team=a", "x", web), 1);
    /* every requirement must hold */
    assert_int_equal(sel_match("app=web,tier in (a,front),!canary", "x", web), 1);
    assert_int_equal(sel_match("app=web,tier in (a,b),!canary", "x", web), 0);
    /* whitespace around tokens */
    assert_int_equal(sel_match("  app = web ,  tier  in ( front , b )  ", "x", web), 1);
    /* a key is matched whole, not as a prefix of another */
    char *appx[] = {"apps=web", NULL};
    assert_int_equal(sel_match("app=web", "x", appx), 0);
    assert_int_equal(sel_match("app", "x", appx), 0);
    /* numeric comparisons */
    char *rev[] = {"rev=12", NULL};
    assert_int_equal(sel_match("rev>10", "x", rev), 1);
    assert_int_equal(sel_match("rev<10", "x", rev), 0);
    assert_int_equal(sel_match("rev>10", "x", web), 0);
    /* the empty selector selects everything */
    assert_int_equal(sel_match("", "x", none), 1);
    assert_int_equal(sel_match("   ", "x", web), 1);
}

static void test_namespaces(void **state)
{
    (void)state;
    char *only[] = {"shop", "pay"};
    char *excl[] = {"kube-system"};
    char *web[] = {"app=web", NULL};
    char err[256];
    ps_podsel *s = NULL;
    assert_int_equal(ps_podsel_new(&s, only, 2, excl, 1, "app=web", err, sizeof(err)), 0);
    assert_int_equal(ps_podsel_is_all(s), 0);
    ps_pod p = mkpod("shop", web);
    assert_int_equal(ps_podsel_match(s, &p), 1);
    p = mkpod("other", web);
    assert_int_equal(ps_podsel_match(s, &p), 0);
    p = mkpod("pay", NULL);
    assert_int_equal(ps_podsel_match(s, &p), 0);
    ps_podsel_free(s);

    /* exclusion wins over inclusion */
    char *both[] = {"kube-system"};
    assert_int_equal(ps_podsel_new(&s, both, 1, excl, 1, NULL, err, sizeof(err)), 0);
    p = mkpod("kube-system", web);
    assert_int_equal(ps_podsel_match(s, &p), 0);
    ps_podsel_free(s);

    assert_int_equal(ps_podsel_new(&s, NULL, 0, NULL, 0, "", err, sizeof(err)), 0);
    assert_int_equal(ps_podsel_is_all(s), 1);
    ps_podsel_free(s);
    assert_int_equal(ps_podsel_new(&s, NULL, 0, excl, 1, NULL, err, sizeof(err)), 0);
    assert_int_equal(ps_podsel_is_all(s), 0);
    ps_podsel_free(s);
}

static void expect_error(const char *selector, const char *want)
{
    char err[512] = "";
    assert_int_equal(ps_podsel_check(selector, err, sizeof(err)), -1);
    if (!strstr(err, want)) {
        fprintf(stderr, "selector %s: got \"%s\", want \"%s\"\n", selector, err, want);
        fail();
    }
    /* the message quotes the selector */
    assert_non_null(strstr(err, selector));
    ps_podsel *s = NULL;
    assert_int_equal(ps_podsel_new(&s, NULL, 0, NULL, 0, selector, err, sizeof(err)), -1);
    assert_null(s);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("app in (a", "',' or ')' expected at 9");
    expect_error("app in a", "'(' expected at 7");
    expect_error("app in ()", "cannot be empty");
    expect_error("app=web,", "a label key expected at 8");
    expect_error(",app", "a label key expected at 0");
    expect_error("app~web", "an operator expected");
    expect_error("app=we b", "',' or the end expected at 7");
    expect_error("-app=web", "invalid label key");
    expect_error("app=-web", "invalid label value");
    expect_error("Example.com/app=web", "invalid label key"); /* prefix is lowercase DNS */
    expect_error("a/b/c=d", "invalid label key");
    expect_error("rev>ten", "an integer expected");
    expect_error("!app=web", "',' or the end expected after '!key'");
    char longname[80];
    memset(longname, 'a', 64);
    strcpy(longname + 64, "=b");
    expect_error(longname, "invalid label key");
    char longval[80] = "k=";
    memset(longval + 2, 'v', 64);
    longval[66] = '\0';
    expect_error(longval, "invalid label value");
    /* valid ones pass the check */
    char err[256];
    assert_int_equal(ps_podsel_check("app=web,tier in (a,b),!canary", err, sizeof(err)), 0);
    assert_int_equal(ps_podsel_check("app.kubernetes.io/name notin (x, y)", err, sizeof(err)), 0);
    assert_int_equal(ps_podsel_check(NULL, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
