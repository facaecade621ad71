/* Unit tests for strvec: the receiver's vector of owned names and its
 * sorted lookup (the upload journal, extraction's cache names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/strvec.h"

static void test_add_sort_has(void **state)
{
    (void)state;
    ps_strvec s = PS_STRVEC_INIT;
    assert_int_equal(ps_strvec_has(&s, "a"), 0); /* empty */
    char name[32];
    /* past the first growth (64), in reverse order */
    for (int i = 199; i >= 0; i--) {
        snprintf(name, sizeof(name), "cap-%03d.pcapng", i);
        assert_int_equal(ps_strvec_add(&s, name), 0);
    }
    assert_int_equal(s.n, 200);
    ps_strvec_sort(&s);
    for (size_t i = 1; i < s.n; i++)
        assert_true(strcmp(s.v[i - 1], s.v[i]) < 0);
    assert_string_equal(s.v[0], "cap-000.pcapng");
    assert_int_equal(ps_strvec_has(&s, "cap-137.pcapng"), 1);
    assert_int_equal(ps_strvec_has(&s, "cap-200.pcapng"), 0);
    assert_int_equal(ps_strvec_has(&s, "cap-13"), 0); /* a prefix is not a name */
    /* copies: the caller's buffer may change */
    snprintf(name, sizeof(name), "changed");
    assert_int_equal(ps_strvec_has(&s, "cap-199.pcapng"), 1);
    ps_strvec_free(&s);
    assert_null(s.v);
    assert_int_equal(s.n, 0);
    ps_strvec_free(&s); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_sort_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
