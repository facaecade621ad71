/*
 * strvec: see strvec.h.
 */
#include "strvec.h"

#include <stdlib.h>
#include <string.h>

int ps_strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ps_strvec_add(ps_strvec *s, const char *p)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(p)))
        return -1;
    s->n++;
    return 0;
}

void ps_strvec_sort(ps_strvec *s)
{
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), ps_strcmp_p);
}

int ps_strvec_has(const ps_strvec *s, const char *p)
{
    return s->n && bsearch(&p, s->v, s->n, sizeof(*s->v), ps_strcmp_p) != NULL;
}

void ps_strvec_free(ps_strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
