/*
 * s3xml: expat's callbacks build a flat table rather than a tree. Elements
 * are appended in document order, so an element's descendants are the rows
 * after it up to its `end`, and its direct children are found by jumping
 * from one child's `end` to the next. All character data goes, in order,
 * into one buffer; an element records where the buffer stood when it opened
 * and when it closed, so its text (its own and its descendants') is the
 * span between: no per-element copies, and libxml2's xmlNodeGetContent
 * without walking a tree.
 *
 * expat rather than libxml2: libxml2 pulled ICU and libstdc++ into every
 * packetstreamer process, sensors included (about 2 MiB of resident memory
 * at start, 35 MB of libraries in the images), for the few answers s3.c
 * reads. expat has no dependencies. Its defaults are what we want: no
 * external entities are loaded (no handler is set for them), parameter
 * entities are not parsed, and its protection against entity amplification
 * (2.4 and later) stays on; refusing a DOCTYPE outright goes further, as no
 * entity can then be declared at all.
 *
 * Namespaces: the parser is created with a separator, so expat resolves
 * prefixes and hands us "URI|local" (or "local"); the part after the last
 * '|' is kept, as no local name can hold a '|'.
 */
#include "s3xml.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "core/buf.h"

#define NS_SEP '|'

typedef struct elem {
    uint32_t name;           /* offset of its local name (NUL-terminated) in names */
    uint32_t text, text_end; /* its text: text.data[text, text_end) */
    uint32_t end;            /* one past its last descendant's row */
    uint32_t own;            /* bytes of text directly inside it (PS_S3XML_MAX_TEXT) */
} elem;

struct ps_s3xml {
    elem *el;
    size_t n, cap;
    ps_buf names, text;
};

/* The parse in progress, expat's user data. */
typedef struct parse {
    ps_s3xml *d;
    XML_Parser p;
    size_t open[PS_S3XML_MAX_DEPTH]; /* the rows of the open elements, root first */
    size_t depth;
    int stopped, nomem;
    char why[200]; /* why we stopped expat; "" when expat stopped by itself */
} parse;

static void stop(parse *ps, int nomem)
{
    ps->stopped = 1;
    ps->nomem = nomem;
    XML_StopParser(ps->p, XML_FALSE);
}

/* Handlers check `stopped`: expat may deliver an event or two after
 * XML_StopParser (the end of an empty element refused at its start). */

static void on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    parse *ps = ud;
    ps_s3xml *d = ps->d;
    if (ps->stopped)
        return;
    const char *local = strrchr(name, NS_SEP);
    local = local ? local + 1 : name;
    if (ps->depth == PS_S3XML_MAX_DEPTH) {
        snprintf(ps->why, sizeof(ps->why), "<%.64s> is nested deeper than %d elements", local,
                 PS_S3XML_MAX_DEPTH);
        stop(ps, 0);
        return;
    }
    if (d->n == PS_S3XML_MAX_ELEMENTS) {
        snprintf(ps->why, sizeof(ps->why), "more than %d elements", PS_S3XML_MAX_ELEMENTS);
        stop(ps, 0);
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        elem *el = realloc(d->el, cap * sizeof(*el));
        if (!el) {
            stop(ps, 1);
            return;
        }
        d->el = el;
        d->cap = cap;
    }
    elem *e = &d->el[d->n];
    e->name = (uint32_t)d->names.len;
    if (ps_buf_append(&d->names, local, strlen(local) + 1) != 0) {
        stop(ps, 1);
        return;
    }
    e->text = e->text_end = (uint32_t)d->text.len;
    e->end = 0;
    e->own = 0;
    ps->open[ps->depth++] = d->n++;
}

static void on_end(void *ud, const XML_Char *name)
{
    (void)name;
    parse *ps = ud;
    if (ps->stopped || ps->depth == 0)
        return;
    elem *e = &ps->d->el[ps->open[--ps->depth]];
    e->text_end = (uint32_t)ps->d->text.len;
    e->end = (uint32_t)ps->d->n;
}

static void on_text(void *ud, const XML_Char *s, int len)
{
    parse *ps = ud;
    ps_s3xml *d = ps->d;
    if (ps->stopped || ps->depth == 0 || len <= 0)
        return;
    elem *e = &d->el[ps->open[ps->depth - 1]];
    if ((size_t)len > PS_S3XML_MAX_TEXT - e->own) {
        snprintf(ps->why, sizeof(ps->why), "the text of <%.64s> is longer than %u bytes",
                 (const char *)d->names.data + e->name, PS_S3XML_MAX_TEXT);
        stop(ps, 0);
        return;
    }
    e->own += (uint32_t)len;
    if (ps_buf_append(&d->text, s, (size_t)len) != 0)
        stop(ps, 1);
}

static void on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                       int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    parse *ps = ud;
    if (ps->stopped)
        return;
    snprintf(ps->why, sizeof(ps->why), "a document type declaration (<!DOCTYPE>), refused");
    stop(ps, 0);
}

int ps_s3xml_parse(ps_s3xml **out, const void *data, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "no XML: the answer is empty");
        return PS_S3XML_E_REFUSED;
    }
    if (len > PS_S3XML_MAX_INPUT) {
        snprintf(err, errlen, "%zu bytes of XML, more than %u", len, PS_S3XML_MAX_INPUT);
        return PS_S3XML_E_REFUSED;
    }
    ps_s3xml *d = calloc(1, sizeof(*d));
    XML_Parser p = d ? XML_ParserCreateNS(NULL, NS_SEP) : NULL;
    /* The text is at most as long as UTF-8 input (entities only shrink):
     * reserving it now means one allocation, and no copy of a secret left
     * behind by a realloc. */
    if (!p || ps_buf_reserve_exact(&d->text, len) != 0) {
        if (p)
            XML_ParserFree(p);
        ps_s3xml_free(d);
        snprintf(err, errlen, "out of memory");
        return PS_S3XML_E_NOMEM;
    }
    parse ps = {.d = d, .p = p};
    XML_SetUserData(p, &ps);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    int rc = 0;
    if (XML_Parse(p, data, (int)len, 1) != XML_STATUS_OK) {
        enum XML_Error code = XML_GetErrorCode(p);
        if (ps.nomem || code == XML_ERROR_NO_MEMORY) {
            snprintf(err, errlen, "out of memory");
            rc = PS_S3XML_E_NOMEM;
        } else {
            snprintf(err, errlen, "line %lu column %lu: %s",
                     (unsigned long)XML_GetCurrentLineNumber(p),
                     (unsigned long)XML_GetCurrentColumnNumber(p) + 1,
                     ps.why[0] ? ps.why : XML_ErrorString(code));
            rc = PS_S3XML_E_REFUSED;
        }
    }
    XML_ParserFree(p);
    if (rc != 0) {
        ps_s3xml_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ps_s3xml_free(ps_s3xml *d)
{
    if (!d)
        return;
    if (d->text.data)
        explicit_bzero(d->text.data, d->text.cap);
    ps_buf_free(&d->text);
    ps_buf_free(&d->names);
    free(d->el);
    free(d);
}

const char *ps_s3xml_name(const ps_s3xml *d, size_t e)
{
    return (const char *)d->names.data + d->el[e].name;
}

size_t ps_s3xml_child(const ps_s3xml *d, size_t parent, size_t after, const char *name)
{
    size_t i = after > parent ? d->el[after].end : parent + 1;
    for (; i < d->el[parent].end; i = d->el[i].end)
        if (strcmp(ps_s3xml_name(d, i), name) == 0)
            return i;
    return 0;
}

char *ps_s3xml_text(const ps_s3xml *d, size_t e, const char *name)
{
    for (size_t i = e; i < d->el[e].end; i++) {
        if (strcmp(ps_s3xml_name(d, i), name) != 0)
            continue;
        size_t len = d->el[i].text_end - d->el[i].text;
        char *t = malloc(len + 1);
        if (t) {
            memcpy(t, d->text.data + d->el[i].text, len);
            t[len] = '\0';
        }
        return t;
    }
    return NULL;
}
