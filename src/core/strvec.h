/*
 * strvec: a growable vector of owned C strings, with sorted lookup.
 *
 * The receiver collects file names, object names and cache names to sort
 * and look up (the upload journal against the directory, the cache entries
 * an extraction holds, the objects a listing still has); this is the one
 * vector and comparator they share. Functions that grow the vector return 0
 * or -1 when memory cannot be allocated, leaving it unchanged.
 */
#ifndef PS_STRVEC_H
#define PS_STRVEC_H

#include <stddef.h>

typedef struct ps_strvec {
    char **v;
    size_t n, cap;
} ps_strvec;

#define PS_STRVEC_INIT                                                                             \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Appends a copy of s. */
int ps_strvec_add(ps_strvec *s, const char *p);
/* Sorts in strcmp order, for ps_strvec_has. */
void ps_strvec_sort(ps_strvec *s);
/* 1 if the sorted vector holds p. */
int ps_strvec_has(const ps_strvec *s, const char *p);
void ps_strvec_free(ps_strvec *s);

/* qsort/bsearch comparator of two char * elements. */
int ps_strcmp_p(const void *a, const void *b);

#endif
