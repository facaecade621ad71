/*
 * fuzz_s3xml: an S3 or STS answer (ps_s3xml_parse), the bytes an object
 * store, or whatever answers in its place, sends the receiver; then what
 * s3.c does with it: the root's name, each <Contents> child's Key, Size and
 * LastModified, the first Code, Message, UploadId and NextContinuationToken.
 * Whatever the input, a refusal leaves *out untouched and says why; an
 * accepted document has names without a namespace or '|', texts no longer
 * than the input's characters could make, and children that are children.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "receiver/s3xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void text(const ps_s3xml *d, size_t e, const char *name, size_t size)
{
    char *t = ps_s3xml_text(d, e, name);
    /* UTF-8 from ISO-8859-1 at most doubles; UTF-16 is less */
    check(!t || strlen(t) <= 2 * size);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    ps_s3xml *d = (ps_s3xml *)&d;
    char err[256] = "";
    int rc = ps_s3xml_parse(&d, data, size, err, sizeof(err));
    if (rc != 0) {
        check((rc == PS_S3XML_E_REFUSED || rc == PS_S3XML_E_NOMEM) && err[0] &&
              d == (ps_s3xml *)&d);
        return 0;
    }
    const char *root = ps_s3xml_name(d, PS_S3XML_ROOT);
    check(root[0] && !strchr(root, '|') && !strchr(root, ':'));
    static const char *const names[] = {
        "Code", "Message", "UploadId", "IsTruncated", "NextContinuationToken", "AccessKeyId"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        text(d, PS_S3XML_ROOT, names[i], size);
    size_t n = 0, prev = 0;
    for (size_t c = ps_s3xml_child(d, 0, 0, "Contents"); c;
         c = ps_s3xml_child(d, 0, c, "Contents")) {
        check(c > prev && strcmp(ps_s3xml_name(d, c), "Contents") == 0);
        prev = c;
        text(d, c, "Key", size);
        text(d, c, "Size", size);
        text(d, c, "LastModified", size);
        n++;
    }
    check(n < PS_S3XML_MAX_ELEMENTS && n <= size / 11); /* "<Contents/>" */
    ps_s3xml_free(d);
    return 0;
}
