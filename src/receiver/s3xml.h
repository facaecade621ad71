/*
 * s3xml: reads the XML answers of S3 and STS (ListObjectsV2 pages,
 * CreateMultipartUpload and CompleteMultipartUpload results, <Error> bodies,
 * AssumeRoleWithWebIdentity) into a small read-only document: its elements
 * in document order, each with its local name and its text. What s3.c looks
 * up in an answer, nothing more.
 *
 * Accepted: one well-formed XML 1.0 document in UTF-8 (also UTF-16,
 * ISO-8859-1, US-ASCII), at most PS_S3XML_MAX_INPUT bytes. Refused, with a
 * sentence in err naming the line and column: anything malformed or
 * truncated, an undeclared namespace prefix, a document type declaration
 * (S3 and STS never send one; refusing it means no entity is ever declared,
 * so none is expanded, and nothing external is ever loaded), elements nested
 * deeper than PS_S3XML_MAX_DEPTH, more than PS_S3XML_MAX_ELEMENTS elements,
 * and an element holding more than PS_S3XML_MAX_TEXT bytes of text of its
 * own. What an answer can make us hold is bounded by its size: its text and
 * its names (each at most its size, twice that in ISO-8859-1), 20 bytes per
 * element (1.25 MiB at most), plus expat's own buffers.
 *
 * Names are local names: namespaces are resolved and dropped, so "Key"
 * matches <Key> in S3's namespace (xmlns="http://s3.amazonaws.com/doc/
 * 2006-03-01/"), in STS's, under any prefix, or in none.
 *
 * The text of an element is all the character data inside it, its
 * descendants' included, in document order: entities and character
 * references decoded, CDATA sections included, comments and processing
 * instructions left out, whitespace kept (libxml2's xmlNodeGetContent).
 *
 * Elements are numbered in document order; the root is PS_S3XML_ROOT (0).
 *
 * Thread: a document is used by one thread at a time; documents are
 * independent of each other.
 */
#ifndef PS_S3XML_H
#define PS_S3XML_H

#include <stddef.h>

#define PS_S3XML_MAX_INPUT (16u << 20) /* bytes of XML (s3.c keeps at most 4 MiB) */
#define PS_S3XML_MAX_DEPTH 32          /* S3's answers nest 4 deep */
#define PS_S3XML_MAX_ELEMENTS 65536    /* a 1000-key listing page has about 10,000 */
#define PS_S3XML_MAX_TEXT (64u << 10)  /* keys are at most 1 KiB, session tokens a few */

#define PS_S3XML_ROOT 0

/* Errors (negative). */
#define PS_S3XML_E_REFUSED -1 /* not XML, or not XML this module accepts */
#define PS_S3XML_E_NOMEM -2

typedef struct ps_s3xml ps_s3xml;

/* Parses len bytes of data. 0 and *out (the caller frees it with
 * ps_s3xml_free), or a negative code, *out untouched and err filled: "out of
 * memory", or for PS_S3XML_E_REFUSED e.g. "line 3 column 7: mismatched
 * tag". */
int ps_s3xml_parse(ps_s3xml **out, const void *data, size_t len, char *err, size_t errlen);

/* Wipes the text (an STS answer carries secrets) and frees; NULL is a no-op. */
void ps_s3xml_free(ps_s3xml *d);

/* The local name of element e (e < the number of elements). */
const char *ps_s3xml_name(const ps_s3xml *d, size_t e);

/* The next child of parent named name after the child `after` (after ==
 * parent: the first); 0 when there is no other (the root is nobody's child).
 *   for (size_t c = ps_s3xml_child(d, r, r, "Contents"); c;
 *        c = ps_s3xml_child(d, r, c, "Contents")) */
size_t ps_s3xml_child(const ps_s3xml *d, size_t parent, size_t after, const char *name);

/* The text of the first element named name at or below e, in document order,
 * as a NUL-terminated copy the caller frees; NULL when there is no such
 * element (or on out of memory). */
char *ps_s3xml_text(const ps_s3xml *d, size_t e, const char *name);

#endif
